"""Lazy sources: map-style datasets that read only the samples an index asks for.

Each returns ``(x, y)`` tensors, validates its files in the constructor (errors name the
file), opens files lazily once per process (so DataLoader workers can use them) and
applies per-sample transforms (:mod:`batchfeed.transforms`) reproducibly by seed.
How to use each in a few lines: docs/datasets.md. The helpers they share that other modules
use too: ``read_npy_header`` (a ``.npy`` file's shape and dtype, checked, without reading its
data), ``sample_generator`` (the seeded generator of one sample in one epoch) and
``apply_transform`` (a transform called with that generator when it takes one).
"""

from ._common import SourceDataset, SourceError, apply_transform, read_npy_header, sample_generator
from .csv import CsvDataset
from .csv_convert import CsvConversion, convert_csv
from .images import IMAGE_EXTENSIONS, ImageFolderDataset, decode_image
from .npy import NpyDataset, write_npy_dataset
from .sensors import SensorWindowDataset
from .video import VideoFramesDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "CsvConversion",
    "CsvDataset",
    "ImageFolderDataset",
    "NpyDataset",
    "SensorWindowDataset",
    "SourceDataset",
    "SourceError",
    "VideoFramesDataset",
    "apply_transform",
    "convert_csv",
    "decode_image",
    "read_npy_header",
    "sample_generator",
    "write_npy_dataset",
]
