"""Argument types shared by the ``batchfeed`` commands: each bad value becomes one line
naming the argument and the value, and exit status 2."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["OneLineParser", "device", "directory", "list_of", "loader", "non_negative_int", "output_file", "positive_float", "positive_int"]


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end with status 2 and ONE line naming the argument (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            # "1e6" is a common way to write a sample count; accept it when it is a whole number.
            value = int(float(text)) if ("e" in text.lower() and float(text).is_integer()) else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a {what}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _int_at_least(1, "positive integer")
non_negative_int = _int_at_least(0, "non-negative integer")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def device(text: str) -> str:
    """``cpu`` or ``cuda[:N]``; CUDA without a CUDA device is refused, saying so."""
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu or cuda)") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device must be cpu or cuda, got {text!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} requested, but torch sees no CUDA device")
    return str(dev)


def loader(text: str) -> str:
    """``module:callable`` naming a loader that can be imported; the value itself is returned."""
    from .loaders import resolve

    try:
        resolve(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def list_of(kind: Callable[[str], float | int], what: str) -> Callable[[str], list]:
    """A comma-separated list of ``kind`` values."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"must be a comma-separated list of {what}, got {text!r}")
        try:
            return [kind(p) for p in parts]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"must be a comma-separated list of {what}, got {text!r} ({exc})") from None

    return parse


def _is_devnull(path: Path) -> bool:
    try:
        return os.path.samefile(path, os.devnull)
    except OSError:
        return False


def output_file(text: str) -> Path:
    """A file the command can write: its folder exists and takes new files, and it is not a folder.

    Checked before any work starts, by creating (and removing) a temporary file in the
    folder, so that a bad path fails at once, not after the experiment.
    """
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: it is a folder")
    if path.exists() and not path.is_file() and not _is_devnull(path):
        # /dev/full, a FIFO, a terminal: a report written there is lost or blocks.
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: not a regular file")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: folder {str(folder)!r} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError("permission denied")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: cannot create files in {str(folder)!r} ({reason})") from None
    return path


def directory(text: str) -> Path:
    """An existing folder the command can create files in (checked at once, by creating one)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing folder")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot create files in {text!r} ({exc.strerror or exc})") from None
    return path
