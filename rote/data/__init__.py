"""Datasets for rote, one concept per module; import names from their module.

registry    what each dataset is: files, pinned hashes, image shape, classes
sources     finding, fetching, verifying and caching those files; load_dataset
idx         readers for the IDX and npz formats
cifar       reader for CIFAR's python format: pickled batches, unpickled only once their MD5 matched
corruption  label and input corruptions
prepare     from a dataset and a run's settings (preprocessing included) to the arrays a run trains on

Nothing here imports torch; converting arrays to tensors is the caller's job.
"""
