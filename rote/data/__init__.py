"""Datasets for rote, one concept per module; import names from their module.

registry    what each dataset is: files, pinned hashes, image shape, classes
sources     finding, fetching, verifying and caching those files; load_dataset
idx         readers for the IDX and npz formats
corruption  label and input corruptions
prepare     from a dataset and a run's settings to the arrays a run trains on

Nothing here imports torch; converting arrays to tensors is the caller's job.
"""
