"""Datasets for rote, one concept per module; import names from their module.

registry    what each dataset is: files, pinned hashes, image shape, classes, the readers of its forms
dataset     a loaded dataset in memory, and the one helper that reads a stack's channel layout
checksums   checking a file against its pin (SHA-256, or MD5 for CIFAR), gzip with a size limit
formats     the reader interface and the steps every reader shares (verify, collect bad files, status)
idx         the IDX format (MNIST, Fashion-MNIST), raw or .gz
cifar       CIFAR's python format: pickled batches, unpickled only once their MD5 matched
npz         the one npz reader: Keras' mnist.npz and a user's own file (--dataset npz:PATH)
cache       rote's cache of verified files
sources     where files come from (a user's directory, the cache, mirrors, archives, npm, a system
            directory), tried in order; load_dataset, fetch, dataset_status
corruption  label and input corruptions
prepare     from a dataset and a run's settings (preprocessing included) to the arrays a run trains on

Imports point down this list's layers: checksums and dataset, then formats, then the readers
(idx, cifar, npz), then registry, cache and sources.  Nothing here imports torch.
"""
