"""Many positioned reads in one system call: Linux's ``io_uring``, through ``ctypes`` and numpy.

:func:`batchfeed.sources.rows.pread_rows` reads a batch's rows as a list of ``readv``s, one per
run of nearby rows (a fully shuffled batch: one per row). Made one ``os.preadv`` at a time, each
costs a Python call and a system call, with the GIL held in between; measured (docs/benchmarks.md,
"preadv at memory speed") that was 19x slower than a memory map with the page cache warm. Here
the whole list becomes submission-queue entries, written by numpy into the ring the kernel shares
with the process, and one ``io_uring_enter`` submits them and waits for all of them (the GIL
released by ``ctypes``). Cached pages are copied inline; reads that miss the cache run in
parallel on the kernel's workers, which a sequence of ``preadv`` calls never does.

No library is used: the kernel interface is three system calls and three shared mappings
(``io_uring_setup(2)``, ``io_uring_enter(2)``), and no well-kept Python binding of it exists
that numpy can fill without a Python call per entry. Where ``io_uring`` is missing or refused
(an old kernel, ``kernel.io_uring_disabled``, a container's seccomp filter) :func:`ring` raises
``OSError`` and the caller falls back to ``os.preadv``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import threading

import numpy as np

__all__ = ["Ring", "ring"]

#: System call numbers (the same on x86-64 and arm64, the two architectures this is tried on).
_SETUP, _ENTER = 425, 426
_OFF_SQ_RING, _OFF_CQ_RING, _OFF_SQES = 0, 0x8000000, 0x10000000
_FEAT_SINGLE_MMAP = 1
_ENTER_GETEVENTS = 1
_OP_READV = 1
_EINTR = 4
#: Submission-queue entries of a ring (a batch with more reads is submitted in turns).
ENTRIES = 1024

_SQE = np.dtype({"names": ["opcode", "fd", "off", "addr", "len", "user_data"],
                 "formats": [np.uint8, np.int32, np.uint64, np.uint64, np.uint32, np.uint64],
                 "offsets": [0, 4, 8, 16, 24, 32], "itemsize": 64})
_CQE = np.dtype({"names": ["user_data", "res"], "formats": [np.uint64, np.int32], "offsets": [0, 8], "itemsize": 16})

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class Ring:
    """One ``io_uring`` instance: a submission and a completion queue shared with the kernel.

    Not thread-safe: :func:`ring` gives each thread (and each process) its own.
    """

    def __init__(self, entries: int = ENTRIES) -> None:
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
            raise OSError("io_uring: Linux on x86-64 or arm64 only")
        params = (ctypes.c_uint32 * 30)()
        fd = _syscall(ctypes.c_long(_SETUP), ctypes.c_long(entries), params)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"io_uring_setup: {os.strerror(err)}")
        self.fd, self.pid = int(fd), os.getpid()
        p = np.frombuffer(params, dtype=np.uint32).copy()
        sq_entries, cq_entries = int(p[0]), int(p[1])
        sq_off, cq_off = p[10:20], p[20:30]
        sq_size, cq_size = int(sq_off[6]) + sq_entries * 4, int(cq_off[5]) + cq_entries * _CQE.itemsize
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        try:
            if p[5] & _FEAT_SINGLE_MMAP:
                self._sq_map = self._cq_map = mmap.mmap(self.fd, max(sq_size, cq_size), flags, prot, offset=_OFF_SQ_RING)
            else:
                self._sq_map = mmap.mmap(self.fd, sq_size, flags, prot, offset=_OFF_SQ_RING)
                self._cq_map = mmap.mmap(self.fd, cq_size, flags, prot, offset=_OFF_CQ_RING)
            self._sqe_map = mmap.mmap(self.fd, sq_entries * _SQE.itemsize, flags, prot, offset=_OFF_SQES)
        except OSError:
            os.close(self.fd)
            raise
        sq, cq = np.frombuffer(self._sq_map, dtype=np.uint32), np.frombuffer(self._cq_map, dtype=np.uint32)
        self._sq, self._cq = sq, cq
        self._sq_tail, self._sq_mask = int(sq_off[1]) // 4, int(sq[int(sq_off[2]) // 4])
        self._sq_array = sq[int(sq_off[6]) // 4:int(sq_off[6]) // 4 + sq_entries]
        self._cq_head, self._cq_tail, self._cq_mask = int(cq_off[0]) // 4, int(cq_off[1]) // 4, int(cq[int(cq_off[2]) // 4])
        self._sqes = np.frombuffer(self._sqe_map, dtype=_SQE)
        self._cqes = np.frombuffer(self._cq_map, dtype=np.uint8)[int(cq_off[5]):int(cq_off[5]) + cq_entries * 16].view(_CQE)
        self.entries = sq_entries

    def readv(self, fd: int, offsets: np.ndarray, iovecs: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Read ``k`` ``readv``s at once: the ``i``-th reads at file offset ``offsets[i]`` into
        ``counts[i]`` consecutive entries of ``iovecs`` (an ``(n, 2)`` uint64 array of address,
        length; the entries of read ``i`` follow those of read ``i - 1``). Returns each read's
        result (bytes read, or ``-errno``), in the reads' order. Every buffer must stay alive."""
        k = len(offsets)
        res = np.empty(k, dtype=np.int64)
        first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.uint64)
        base = iovecs.ctypes.data
        for a in range(0, k, self.entries):
            b = min(k, a + self.entries)
            batch = np.zeros(b - a, dtype=_SQE)
            batch["opcode"], batch["fd"], batch["off"] = _OP_READV, fd, offsets[a:b]
            batch["addr"], batch["len"] = base + first[a:b] * 16, counts[a:b]
            batch["user_data"] = np.arange(a, b, dtype=np.uint64)
            self._submit(batch, res)
        return res

    def _submit(self, batch: np.ndarray, res: np.ndarray) -> None:
        k = len(batch)
        tail = int(self._sq[self._sq_tail])
        pos = (tail + np.arange(k, dtype=np.int64)) & self._sq_mask
        self._sqes[pos] = batch
        self._sq_array[pos] = pos
        self._sq[self._sq_tail] = (tail + k) & 0xFFFFFFFF
        pending, done = k, 0
        while done < k:
            got = _syscall(ctypes.c_long(_ENTER), ctypes.c_long(self.fd), ctypes.c_long(pending),
                           ctypes.c_long(k - done), ctypes.c_long(_ENTER_GETEVENTS), None, ctypes.c_long(0))
            if got < 0:
                err = ctypes.get_errno()
                if err != _EINTR:
                    raise OSError(err, f"io_uring_enter: {os.strerror(err)}")
                got = 0
            pending -= min(pending, int(got))
            done += self._reap(res)

    def _reap(self, res: np.ndarray) -> int:
        head, tail = int(self._cq[self._cq_head]), int(self._cq[self._cq_tail])
        n = (tail - head) & 0xFFFFFFFF
        if n:
            cqes = self._cqes[(head + np.arange(n, dtype=np.int64)) & self._cq_mask]
            res[cqes["user_data"].astype(np.int64)] = cqes["res"]
            self._cq[self._cq_head] = tail
        return n

    def close(self) -> None:
        """Unmap the queues and close the ring."""
        if self.fd < 0:
            return
        del self._sq, self._cq, self._sq_array, self._sqes, self._cqes
        for m in {id(x): x for x in (self._sq_map, self._cq_map, self._sqe_map)}.values():
            m.close()
        os.close(self.fd)
        self.fd = -1

    def __del__(self) -> None:
        try:
            if self.pid == os.getpid():
                self.close()
        except (AttributeError, OSError, BufferError):
            pass


_local = threading.local()


def ring() -> Ring:
    """This thread's ring, made on first use (a forked child makes its own). Raises ``OSError``
    where ``io_uring`` cannot be used."""
    r = getattr(_local, "ring", None)
    if r is None or r.pid != os.getpid():
        r = _local.ring = Ring()
    return r
