"""Images in one subfolder per class, decoded lazily with Pillow."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ._common import SourceDataset, SourceError, natural_key

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "decode_image"]

#: File name endings taken as images (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")


def decode_image(path: str | os.PathLike, mode: str = "RGB", size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image file as a float32 ``C x H x W`` tensor in [0, 1].

    ``mode`` is a Pillow mode ("RGB": C=3, "L": C=1, "RGBA": C=4); ``size=(H, W)`` resizes
    (bilinear). Raises SourceError (a ValueError) naming the file if Pillow cannot open or
    fully decode it (corrupt, truncated, not an image), FileNotFoundError if it is gone.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()  # decode now: a truncated file fails here, not later
            img = img.convert(mode)
            if size is not None:
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.array(img, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SourceError(f"image {str(p)!r} cannot be decoded: {type(exc).__name__}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


class ImageFolderDataset(SourceDataset):
    """``root/<class>/**/<image>`` as ``(C x H x W float32 in [0, 1], class index int64)``.

    Classes are the subfolders of ``root`` in sorted order (``classes``, ``class_to_idx``);
    images are found recursively under each, by extension (``IMAGE_EXTENSIONS``), in
    natural order (``img2`` before ``img10``). Only the file list is built up front; each
    image is decoded when its index is asked for. Decoding uses Pillow (torchvision's
    decoder does not import beside torch 2.13.0's CPU wheel; see docs/datasets.md).

    Args:
        root: the folder of class folders.
        mode: Pillow mode images are converted to ("RGB", "L", "RGBA").
        size: ``(H, W)`` to resize every image to, so batches of mixed sizes collate.
        verify: True opens every file at construction (header and Pillow's ``verify()``),
            so a corrupt file fails there instead of mid-epoch. Costs one open per file.

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or not a folder.
        ValueError: no class folders, a class folder without images, or no images.
        SourceError (a ValueError): naming the file, when an image cannot be decoded
            (at ``dataset[i]``, or at construction with ``verify=True``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        mode: str = "RGB",
        size: tuple[int, int] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        verify: bool = False,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, target_transform, seed)
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image root {str(self.root)!r} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"image root {str(self.root)!r} is not a folder")
        if mode not in ("RGB", "L", "RGBA"):
            raise ValueError(f"mode must be 'RGB', 'L' or 'RGBA', got {mode!r}")
        if size is not None and (len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)):
            raise ValueError(f"size must be (H, W) positive integers or None, got {size!r}")
        self.mode, self.size = mode, (tuple(size) if size is not None else None)
        exts = tuple(e.lower() for e in extensions)
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not self.classes:
            raise ValueError(f"image root {str(self.root)!r} has no class subfolders")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for c in self.classes:
            found = []
            for dirpath, dirnames, filenames in os.walk(self.root / c):
                dirnames.sort()
                found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(exts)]
            if not found:
                raise ValueError(f"class folder {str(self.root / c)!r} has no images (extensions {', '.join(exts)})")
            found.sort(key=lambda p: natural_key(os.path.relpath(p, self.root / c)))
            self.samples += [(p, self.class_to_idx[c]) for p in found]
        if verify:
            for path, _ in self.samples:
                _verify(path)

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[i]
        return decode_image(path, self.mode, self.size), torch.tensor(label, dtype=torch.int64)

    def __repr__(self) -> str:
        return f"ImageFolderDataset(n={len(self)}, root={str(self.root)!r}, classes={len(self.classes)}, mode={self.mode!r})"


def _verify(path: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SourceError(f"image {path!r} cannot be decoded: {type(exc).__name__}: {exc}") from exc
