"""Lazy sources: map-style datasets that read only the samples an index asks for.

Each returns ``(x, y)`` tensors, validates its files in the constructor (errors name the
file), opens files lazily once per process (so DataLoader workers can use them) and
applies per-sample transforms (:mod:`batchfeed.transforms`) reproducibly by seed.
How to use each in a few lines: docs/datasets.md.
"""

from ._common import SourceDataset, SourceError
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
    "convert_csv",
    "decode_image",
    "write_npy_dataset",
]
