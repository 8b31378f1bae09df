"""The page-cache instruments of the cold-cache benchmarks (batchfeed.pagecache) and the storage
the files are on (batchfeed.machine.storage_name): a cold measurement is only as good as its
drop, so the drop is checked here, including what defeats it (a page still mapped)."""

from __future__ import annotations

import mmap
import os
import sys

import numpy as np
import pytest

from batchfeed.machine import storage_name
from batchfeed.pagecache import drop, resident_fraction

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise: Linux only")


def cached_file(path, size: int = 1 << 20):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    path.read_bytes()  # every page read, so every page cached
    return path


def droppable(path) -> bool:
    """Whether this file system lets a file's pages go (tmpfs keeps them: they are the file)."""
    return drop([path])[str(path)] == 0.0


def test_reading_caches_a_file_and_drop_empties_its_cache(tmp_path):
    path = cached_file(tmp_path / "a.bin")
    assert resident_fraction(path) == 1.0
    if not droppable(path):
        pytest.skip(f"{storage_name(tmp_path)}: this file system keeps a file's pages")
    assert resident_fraction(path) == 0.0
    with open(path, "rb") as f:
        f.read(4096)
    assert 0.0 < resident_fraction(path) < 1.0, "one page read back (and perhaps its readahead), not the whole file"


def test_a_page_still_mapped_is_not_dropped(tmp_path):
    """Why the cold benchmark closes every rival's memory maps before dropping: a mapped page stays."""
    path = cached_file(tmp_path / "b.bin")
    if not droppable(path):
        pytest.skip(f"{storage_name(tmp_path)}: this file system keeps a file's pages")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        m[:].count(b"x")  # touch every page through the map
        assert drop([path])[str(path)] == 1.0
    assert drop([path])[str(path)] == 0.0


def test_an_empty_file_has_nothing_resident(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    assert resident_fraction(tmp_path / "e") == 0.0


def test_storage_name_names_the_file_system_and_its_mount(tmp_path):
    name = storage_name(tmp_path)
    mounts = [line.split()[1] for line in open("/proc/mounts")]
    assert "mounted at" in name and any(f"mounted at {m}" in name for m in mounts), name


def test_a_missing_file_is_an_os_error_naming_it(tmp_path):
    with pytest.raises(OSError):
        resident_fraction(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        drop([os.fspath(tmp_path / "missing")])
