"""The data layer: load and validate datasets, long-tail them, split them, and make views.

Imports only torch, torchvision and numpy; medmnist and PIL are imported inside
the functions that need them, and nothing is read or created at import.
"""

from ssnas_core.data.dataset import (
    MULTILABEL_TASK,
    TASKS,
    DatasetChecksumError,
    DatasetChecksumWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageDataset,
    Split,
)
from ssnas_core.data.imagefolder import load_imagefolder
from ssnas_core.data.longtail import limit_indices, longtail_counts, longtail_dataset, longtail_indices
from ssnas_core.data.npz import load_npz_dataset
from ssnas_core.data.registry import DATASETS, available_datasets, load_dataset, register_dataset
from ssnas_core.data.splits import bilevel_split
from ssnas_core.data.synthetic import make_synthetic, write_npz
from ssnas_core.data.views import TwoViews

__all__ = [
    "DATASETS",
    "MULTILABEL_TASK",
    "TASKS",
    "DatasetChecksumError",
    "DatasetChecksumWarning",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageDataset",
    "Split",
    "TwoViews",
    "available_datasets",
    "bilevel_split",
    "limit_indices",
    "load_dataset",
    "load_imagefolder",
    "load_npz_dataset",
    "longtail_counts",
    "longtail_dataset",
    "longtail_indices",
    "make_synthetic",
    "register_dataset",
    "write_npz",
]
