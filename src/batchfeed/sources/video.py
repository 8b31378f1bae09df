"""Clips of consecutive frames from a ``T x H x W x C`` uint8 ``.npy`` or a folder of frame images."""

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
    natural_key,
    read_npy_header,
)
from .images import IMAGE_EXTENSIONS, decode_image

__all__ = ["VideoFramesDataset"]


class VideoFramesDataset(WindowedSource):
    """Clips of ``clip_length`` consecutive frames, ``stride`` frames apart.

    Clip ``i`` holds frames ``[i * stride, i * stride + clip_length)`` as a float32
    ``(clip_length, C, H, W)`` tensor in [0, 1]; ``len == (T - clip_length) // stride + 1``.

    Args:
        source: a ``.npy`` file of uint8 ``(T, H, W, C)`` frames (memory-mapped; only the
            clip's frames are read), or a folder of frame images in natural name order
            (``f2`` before ``f10``), each decoded with Pillow when a clip needs it.
        labels: ``.npy`` of one label per frame (a clip takes its ``label_at`` frame's:
            "last" by default) or per clip, or None (the label is the clip's index).
        clip_length: k, frames per clip. stride: defaults to ``clip_length`` (no overlap).
        mode: Pillow mode for a frame folder ("RGB", "L", "RGBA").

    Raises:
        FileNotFoundError: source or labels missing. SourceError: a ``.npy`` that is not
        uint8 ``(T, H, W, C)``, truncated; a frame folder whose frames differ in size or
        cannot be opened (named). ValueError: fewer frames than one clip, no frames, or a
        label count that fits neither frames nor clips.
    """

    _per_process = ("_mm",)

    def __init__(
        self,
        source: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        *,
        clip_length: int,
        stride: int | None = None,
        label_at: str = "last",
        mode: str = "RGB",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, target_transform, seed)
        self.clip_length = check_positive_int("clip_length", clip_length)
        self.stride = self.clip_length if stride is None else check_positive_int("stride", stride)
        self.source = Path(source)
        self.mode = mode
        self.frames: list[str] | None = None
        if self.source.is_dir():
            self._index_folder()
        else:
            h = read_npy_header(self.source, "video file")
            if len(h.shape) != 4 or h.dtype != np.uint8:
                raise SourceError(f"video file {str(h.path)!r} has shape {h.shape} {h.dtype}; expected uint8 (T, H, W, C)")
            if 0 in h.shape[1:]:
                raise SourceError(f"video file {str(h.path)!r} has shape {h.shape}: empty frames")
            self.num_frames, self.frame_shape = h.shape[0], h.shape[1:]
        if self.num_frames < self.clip_length:
            raise ValueError(f"video {str(self.source)!r} has {self.num_frames} frames, fewer than one clip of {self.clip_length}")
        self.labels = WindowLabels(labels, length=self.num_frames, window=self.clip_length, stride=self.stride,
                                   label_at=label_at, owner="VideoFramesDataset")
        self._mm: np.ndarray | None = None

    def _index_folder(self) -> None:
        from PIL import Image, UnidentifiedImageError

        if self.mode not in ("RGB", "L", "RGBA"):
            raise ValueError(f"mode must be 'RGB', 'L' or 'RGBA', got {self.mode!r}")
        names = sorted((f for f in os.listdir(self.source) if f.lower().endswith(IMAGE_EXTENSIONS)), key=natural_key)
        if not names:
            raise ValueError(f"frame folder {str(self.source)!r} has no frame images ({', '.join(IMAGE_EXTENSIONS)})")
        self.frames = [str(self.source / f) for f in names]
        size = None
        for f in self.frames:  # headers only: Pillow reads the size without decoding pixels
            try:
                with Image.open(f) as img:
                    s = img.size
            except (UnidentifiedImageError, OSError) as exc:
                raise SourceError(f"frame {f!r} cannot be opened: {type(exc).__name__}: {exc}") from exc
            if size is None:
                size = s
            elif s != size:
                raise SourceError(f"frame {f!r} is {s[0]}x{s[1]} (WxH), but {self.frames[0]!r} is {size[0]}x{size[1]}")
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[self.mode]
        self.num_frames, self.frame_shape = len(self.frames), (size[1], size[0], channels)

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.start_of(i)
        if self.frames is not None:
            x = torch.stack([decode_image(f, self.mode) for f in self.frames[s:s + self.clip_length]])
        else:
            if self._mm is None:
                self._mm = np.load(self.source, mmap_mode="r")
            clip = torch.from_numpy(np.array(self._mm[s:s + self.clip_length]))
            x = clip.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        return x, self.labels(i)

    def __repr__(self) -> str:
        kind = "frames folder" if self.frames is not None else "npy"
        return (f"VideoFramesDataset(n={len(self)}, {kind} {str(self.source)!r}, frames={self.num_frames}, "
                f"frame_shape={tuple(self.frame_shape)}, clip_length={self.clip_length}, stride={self.stride})")
