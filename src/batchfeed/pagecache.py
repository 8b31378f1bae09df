"""The page cache of a file: how much of it is resident, and dropping it before a cold read.

A cold-cache measurement is only honest if the file's pages really left memory. The kernel
keeps a page while any process maps it, and ``POSIX_FADV_DONTNEED`` is a request, not an
order: :func:`drop` asks (after an ``fsync``, so no dirty page is skipped) and returns what
:func:`resident_fraction` (``mincore``) then sees, so the caller can report or refuse a
measurement whose file stayed cached. Linux only; elsewhere both raise ``OSError``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["drop", "resident_fraction"]

_PAGE = mmap.PAGESIZE


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mmap.restype = ctypes.c_void_p
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
    return libc


def resident_fraction(path: str | os.PathLike) -> float:
    """The fraction of ``path``'s pages in the page cache now (``mincore`` over a read-only map
    that is never touched, so asking faults nothing in)."""
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    pages = (size + _PAGE - 1) // _PAGE
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of {str(path)!r}: {os.strerror(err)}")
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore on {str(path)!r}: {os.strerror(err)}")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return int((np.frombuffer(vec, dtype=np.uint8) & 1).sum()) / pages


def drop(paths: Iterable[str | os.PathLike]) -> dict[str, float]:
    """Ask the kernel to drop each file's cached pages (``fsync``, then ``POSIX_FADV_DONTNEED``);
    returns each file's resident fraction afterwards (0.0 when it worked).

    Pages some process still maps stay: close memory maps of the files first
    (:meth:`batchfeed.sources.NpyDataset.close`).
    """
    out = {}
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        out[str(Path(p))] = resident_fraction(p)
    return out
