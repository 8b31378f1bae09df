"""What a measurement ran on, and how it shows progress: one CPU-name reader, one load-average
reader, one storage describer (out-of-core benchmarks), one reader of the time a thread waited
for a CPU (the disturbance check of timed claims) and one progress bar for the commands
(``batchfeed compare``, ``batchfeed bench``)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["cpu_name", "cpu_wait", "load_average", "progress_bar", "storage_name"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages as ``"0.52 0.61 0.70"`` (``"unknown"`` where the OS has none):
    how busy the cores a measurement shared were."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_wait() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a CPU since it started (the
    kernel's ``run_delay``, second field of ``/proc/thread-self/schedstat``); ``None`` where the OS
    does not say. Other processes taking the cores show here, not in the thread's CPU time."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def storage_name(path: str | os.PathLike) -> str:
    """The block device and file system holding ``path``, as the kernel describes them (Linux
    ``/sys`` and ``/proc/mounts``; elsewhere just the path): device name, size, driver, the
    ``rotational`` flag as reported (virtual disks report what the host tells them) and the
    file system type and mount point."""
    p = Path(path).resolve()
    st = p.stat()
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    mounts = []
    for line in (_read(Path("/proc/mounts")) or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and (str(p) + "/").startswith(fields[1].rstrip("/") + "/"):
            mounts.append((len(fields[1]), fields[0], fields[1], fields[2]))
    fs = f"{max(mounts)[3]} mounted at {max(mounts)[2]}" if mounts else "unknown file system"
    sys_dev = Path(f"/sys/dev/block/{major}:{minor}")
    if not sys_dev.exists():
        return f"{max(mounts)[1] if mounts else 'device ' + f'{major}:{minor}'}, {fs}"
    dev = sys_dev.resolve()
    disk = dev.parent if (dev / "partition").exists() else dev
    size = _read(disk / "size")
    driver = Path(os.path.realpath(disk / "device" / "driver")).name if (disk / "device" / "driver").exists() else ""
    rot = _read(disk / "queue" / "rotational")
    parts = [f"/dev/{dev.name}"]
    if size:
        parts.append(f"{int(size) * 512 / 2**30:.0f} GiB")
    if driver:
        parts.append(f"driver {driver}")
    if rot is not None:
        parts.append(f"rotational={rot} (as reported)")
    return f"{', '.join(parts)}; {fs}"


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr that shows only after 2 s and only on a terminal; None when disabled.
    ``options`` go to tqdm (``unit_scale=True`` for byte counts)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; without it, no bar
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, delay=2.0, leave=False, disable=None,
                dynamic_ncols=True, **options)
