"""Datasets for rote: reading IDX/npz files and finding verified copies.

Nothing here imports torch; converting arrays to tensors is the caller's job.
"""

from rote.data.idx import read_idx, read_idx_images, read_idx_labels, read_npz
from rote.data.sources import (
    DATASETS,
    Dataset,
    DatasetSpec,
    FileSpec,
    Source,
    cache_dir,
    dataset_status,
    default_sources,
    fetch,
    get_spec,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "FileSpec",
    "Source",
    "cache_dir",
    "dataset_status",
    "default_sources",
    "fetch",
    "get_spec",
    "load_dataset",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "read_npz",
]
