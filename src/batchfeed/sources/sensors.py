"""Sliding windows over a long multichannel time series held in a ``.npy`` memory map."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ._common import (
    SourceError,
    WindowedSource,
    WindowLabels,
    check_positive_int,
    read_npy_header,
)

__all__ = ["SensorWindowDataset"]


class SensorWindowDataset(WindowedSource):
    """Windows of ``window`` time steps, ``stride`` apart, over a ``(T, C)`` (or ``(T,)``) series.

    Window ``i`` covers steps ``[i * stride, i * stride + window)`` and comes back as a
    ``(C, window)`` tensor (channels first, as ``nn.Conv1d`` takes it) of ``dtype``;
    ``len(dataset) == (T - window) // stride + 1``: every window fits, the last partial
    one is dropped. Only the window asked for is read from the memory map.

    Args:
        series: ``.npy`` path of a numeric ``(T, C)`` or ``(T,)`` array (one row per step).
        labels: ``.npy`` of ``T`` per-step labels (a window takes the label at ``label_at``:
            "last" step by default, "first" or "center"), or of one label per window, or
            None (the label is the window's index). See :class:`WindowLabels`.
        window, stride: positive integers; ``stride`` defaults to ``window`` (no overlap).
        dtype: the windows' dtype (default float32).

    Raises:
        FileNotFoundError: a file is missing. SourceError: not a readable numeric 1-d/2-d
        ``.npy`` (truncated, wrong shape or dtype). ValueError: ``T < window`` (no window),
        or a label count that is neither ``T`` nor the number of windows.
    """

    _per_process = ("_mm",)

    def __init__(
        self,
        series: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        *,
        window: int,
        stride: int | None = None,
        label_at: str = "last",
        dtype: torch.dtype = torch.float32,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, target_transform, seed)
        self.window = check_positive_int("window", window)
        self.stride = self.window if stride is None else check_positive_int("stride", stride)
        h = read_npy_header(series, "series file")
        if len(h.shape) not in (1, 2) or h.dtype.kind not in "biuf":
            raise SourceError(f"series file {str(h.path)!r} has shape {h.shape} {h.dtype}; expected a numeric (T, C) or (T,) array")
        if len(h.shape) == 2 and h.shape[1] == 0:
            raise SourceError(f"series file {str(h.path)!r} has shape {h.shape}: no channels")
        self.length = h.shape[0]
        self.channels = h.shape[1] if len(h.shape) == 2 else 1
        if self.length < self.window:
            raise ValueError(f"series file {str(h.path)!r} has {self.length} steps, fewer than one window of {self.window}")
        self.series_path: Path = h.path
        self.dtype = dtype
        self.labels = WindowLabels(labels, length=self.length, window=self.window, stride=self.stride,
                                   label_at=label_at, owner="SensorWindowDataset")
        self._mm: np.ndarray | None = None

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._mm is None:
            self._mm = np.load(self.series_path, mmap_mode="r")
        s = self.start_of(i)
        block = np.array(self._mm[s:s + self.window])
        x = torch.from_numpy(block.reshape(self.window, self.channels)).T.contiguous().to(self.dtype)
        return x, self.labels(i)

    def __repr__(self) -> str:
        return (f"SensorWindowDataset(n={len(self)}, series={str(self.series_path)!r} ({self.length}, {self.channels}), "
                f"window={self.window}, stride={self.stride})")
