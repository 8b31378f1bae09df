"""What a measurement ran on, and how it shows progress: one CPU-name reader and one progress
bar for the commands (``batchfeed compare``, ``batchfeed bench``)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["cpu_name", "progress_bar"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar on stderr that shows only after 2 s and only on a terminal; None when disabled."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; without it, no bar
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, delay=2.0, leave=False, disable=None,
                dynamic_ncols=True)
