"""A CSV file converted to ``.npy`` files in one streaming pass, for :class:`NpyDataset`.

:class:`~batchfeed.sources.CsvDataset` reads numeric CSV only (no quoting) and parses a row
per sample. Real CSV files quote fields, carry text columns and name their columns in a
header; converting once to ``.npy`` handles all of that and then feeds at the speed of
``TensorLoader(NpyDataset(...))`` (docs/datasets.md, "CSV files").
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import numbers
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import check_positive_int
from ._common import SourceError, existing_file
from ._fields import BadField, fill_text, parse_fields

__all__ = ["CsvConversion", "convert_csv", "numpy_dtype"]

#: Fields held at once when ``chunk_rows`` is not given: about 5 MB of Python strings.
CHUNK_FIELDS = 1 << 16

Column = int | str


@dataclass(frozen=True)
class CsvConversion:
    """What :func:`convert_csv` wrote: the files, the row count and which CSV columns went where.

    ``feature_columns`` and ``label_column`` are 0-based positions in the CSV; ``columns`` is the
    header's names (None with ``header=False``).
    """

    source: Path
    features: Path
    labels: Path | None
    rows: int
    columns: tuple[str, ...] | None
    feature_columns: tuple[int, ...]
    label_column: int | None
    bytes_read: int

    def dataset(self, **kwargs: Any) -> Any:
        """``NpyDataset(features, labels, **kwargs)`` over the files written (needs a labels file)."""
        from .npy import NpyDataset

        if self.labels is None:
            raise ValueError("this conversion wrote no labels file; NpyDataset needs one")
        return NpyDataset(self.features, self.labels, **kwargs)


def numpy_dtype(name: str, dtype: Any) -> np.dtype:
    """A torch or numpy dtype as a native-order numpy float or integer dtype."""
    try:
        dt = torch.empty((), dtype=dtype).numpy().dtype if isinstance(dtype, torch.dtype) else np.dtype(dtype)
    except (TypeError, RuntimeError):
        raise TypeError(f"{name} must be a float or integer dtype (torch or numpy), got {dtype!r}") from None
    if dt.kind not in "fiu":
        raise TypeError(f"{name} must be a float or integer dtype (torch or numpy), got {dtype!r}")
    return dt.newbyteorder("=")


class _NpyWriter:
    """An ``.npy`` file written block by block under a temporary name beside ``dst``; the header
    reserves room for any row count and is rewritten with the final one; :meth:`commit` renames."""

    def __init__(self, dst: Path, dtype: np.dtype, row_shape: tuple[int, ...]) -> None:
        self.dst, self.dtype, self.row_shape, self.rows = dst, dtype, row_shape, 0
        self.tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
        self._f = open(self.tmp, "xb")
        self._header()
        self._data_offset = self._f.tell()

    def _header(self) -> None:
        np.lib.format.write_array_header_1_0(self._f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                       "fortran_order": False, "shape": (self.rows, *self.row_shape)})

    def write(self, block: np.ndarray) -> None:
        self._f.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        self.rows += len(block)

    def commit(self) -> None:
        self._f.seek(0)
        self._header()  # numpy pads the row count to 21 digits: the header keeps its length
        if self._f.tell() != self._data_offset:  # pragma: no cover - guarded by the padding
            raise AssertionError(f"the .npy header of {str(self.dst)!r} changed length")
        self._f.close()
        os.replace(self.tmp, self.dst)

    def discard(self) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def _position(col: Any, what: str, names: tuple[str, ...] | None, ncols: int, where: str) -> int:
    """The 0-based position of column ``col`` (a header name, or an index; negative from the end)."""
    if isinstance(col, str):
        if names is None:
            raise ValueError(f"{where}: {what} {col!r} is a name, but the file is read with header=False; give an index")
        hits = [j for j, name in enumerate(names) if name == col]
        if not hits:
            raise ValueError(f"{where}: {what} {col!r} is not a column; the header has {list(names)}")
        if len(hits) > 1:
            raise ValueError(f"{where}: {what} {col!r} names {len(hits)} columns (indices {hits}); give an index")
        return hits[0]
    if isinstance(col, bool) or not isinstance(col, numbers.Integral):
        raise TypeError(f"{what} must be a column index or a header name, got {type(col).__name__} {col!r}")
    if not -ncols <= col < ncols:
        raise ValueError(f"{where}: {what} {col} is out of range; the file has {ncols} columns")
    return int(col) % ncols


def _layout(first: list[str], where: str, header: bool, label_column: Column | None,
            feature_columns: Iterable[Column] | None, labelled: bool) -> tuple[tuple[str, ...] | None, tuple[int, ...], int | None]:
    """The header's names, the features' positions and the label's, from the first row."""
    ncols = len(first)
    names = tuple(c.strip() for c in first) if header else None
    label = _position(-1 if label_column is None else label_column, "label_column", names, ncols, where) if labelled else None
    if feature_columns is None:
        feats = tuple(j for j in range(ncols) if j != label)
    else:
        if isinstance(feature_columns, (str, bytes)) or not isinstance(feature_columns, Iterable):
            raise TypeError(f"feature_columns must be a sequence of column indices or names, got {feature_columns!r}")
        feats = tuple(_position(c, "feature column", names, ncols, where) for c in feature_columns)
        repeated = sorted({j for j in feats if feats.count(j) > 1})
        if repeated:
            raise ValueError(f"{where}: feature_columns selects column index {repeated[0]} more than once")
        if label in feats:
            raise ValueError(f"{where}: feature_columns includes the label column (index {label})")
    if not feats:
        raise ValueError(f"{where} has {ncols} column(s): none is left for the features")
    return names, feats, label


def _column(j: int, names: tuple[str, ...] | None) -> str:
    """Column ``j`` (0-based) as error messages name it: counted from 1, with its header name."""
    return f"column {j + 1}" + (f" ({names[j]!r})" if names is not None else "")


@contextmanager
def _located(path: Path, reader: Any, encoding: str) -> Iterator[None]:
    """csv.Error and undecodable bytes become a SourceError naming the file and the line (and
    the line the failing row starts on, when it started earlier: a quote never closed)."""
    try:
        yield
    except csv.Error as exc:
        line = reader.line_num
        start = _row_start(path, encoding, reader.dialect)
        began = f" (the row starts on line {start}: a quote not closed?)" if start < line else ""
        raise SourceError(f"{str(path)!r} line {line}: malformed CSV: {exc}{began}") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{str(path)!r} line {_undecodable_line(path, encoding)}: not {encoding} text: {exc.reason}") from None


def _row_start(path: Path, encoding: str, dialect: Any) -> int:
    """The line where the row the reader failed on begins: one past the last row read whole
    (read again, only after an error)."""
    last = 0
    with open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f, dialect)
        try:
            for _ in reader:
                last = reader.line_num
        except csv.Error:
            pass
    return last + 1


def _undecodable_line(path: Path, encoding: str) -> str:
    """The first physical line of ``path`` that does not decode (found only after an error)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                return f"{number} (byte {exc.start + 1})"
    return "?"  # pragma: no cover - a multi-byte encoding whose lines do not decode alone


def _check_outputs(src: Path, features: Any, labels: Any) -> tuple[Path, Path | None]:
    outs = [Path(features)] + ([Path(labels)] if labels is not None else [])
    for p in outs:
        if not p.parent.is_dir():
            raise FileNotFoundError(f"output folder {str(p.parent)!r} (for {str(p)!r}) does not exist")
        if p.exists() and not p.is_file():
            raise ValueError(f"output {str(p)!r} exists and is not a regular file")
        if p.resolve() == src.resolve():
            raise ValueError(f"output {str(p)!r} is the CSV file itself")
    if len(outs) == 2 and outs[0].resolve() == outs[1].resolve():
        raise ValueError(f"features and labels are the same file {str(outs[0])!r}")
    return outs[0], (outs[1] if labels is not None else None)


def _check_options(delimiter: str, encoding: str, labels: Any, label_column: Any, chunk_rows: int | None) -> None:
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"encoding {encoding!r} is not a text encoding Python knows") from None
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"delimiter must be one character other than a quote or line end, got {delimiter!r}")
    if labels is None and label_column is not None:
        raise ValueError(f"label_column={label_column!r} given but no labels file to write it to")
    if chunk_rows is not None:
        check_positive_int("chunk_rows", chunk_rows)


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


class _Rows:
    """The CSV's data rows in chunks of fields, checked for their field count, parsed into arrays."""

    def __init__(self, path: Path, reader: Any, layout: tuple[tuple[str, ...] | None, tuple[int, ...], int | None],
                 first: list[str] | None, ncols: int, dtypes: tuple[np.dtype, np.dtype], chunk_rows: int | None) -> None:
        self.path, self.reader, self.ncols = path, reader, ncols
        self.names, self.feats, self.label = layout
        self.dtype, self.label_dtype = dtypes
        self.first_line = reader.line_num
        self.first = first  # the first row when it is data (header=False)
        self.fill: str | None = None  # the text an empty feature field stands for (None: an error)
        self.chunk_rows = chunk_rows or max(1, CHUNK_FIELDS // (len(self.feats) + 1))

    def chunks(self) -> Iterator[tuple[list[str], list[str], list[int]]]:
        """(features' fields flat, labels' fields, each row's line) per ``chunk_rows`` rows."""
        reader, ncols, label, chunk = self.reader, self.ncols, self.label, self.chunk_rows
        feats = self.feats
        pick = itemgetter(*feats) if len(feats) > 1 else (lambda row, j=feats[0]: (row[j],))
        fields: list[str] = []
        labels: list[str] = []
        lines: list[int] = []
        pending = [] if self.first is None else [self.first]
        for row in itertools.chain(pending, reader):
            if len(row) != ncols or ncols == 1:
                if _is_blank(row):
                    continue
                if len(row) != ncols:
                    raise SourceError(f"{str(self.path)!r} line {reader.line_num}: {len(row)} fields, but line "
                                      f"{self.first_line} has {ncols}")
            fields.extend(pick(row))
            if label is not None:
                labels.append(row[label])
            lines.append(reader.line_num)
            if len(lines) == chunk:
                yield fields, labels, lines
                fields, labels, lines = [], [], []
        if lines:
            yield fields, labels, lines

    def _error(self, line: int, column: int, text: str, reason: str) -> SourceError:
        return SourceError(f"{str(self.path)!r} line {line}, {_column(column, self.names)}: {_shown(text)} {reason}")

    def arrays(self, fields: list[str], labels: list[str], lines: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """One chunk as ``(rows, features)`` and ``(rows,)`` arrays, or the first bad field, located."""
        width = len(self.feats)
        try:
            x = parse_fields(fields, self.dtype, self.fill).reshape(len(lines), width)
        except BadField as bad:
            raise self._error(lines[bad.index // width], self.feats[bad.index % width], fields[bad.index], bad.reason) from None
        if self.label is None:
            return x, None
        try:
            return x, parse_fields(labels, self.label_dtype)
        except BadField as bad:
            raise self._error(lines[bad.index], self.label, labels[bad.index], bad.reason) from None


def _first_row(reader: Any) -> list[str] | None:
    for row in reader:
        if not _is_blank(row):
            return row
    return None


def _write_all(rows: _Rows, writers: list[_NpyWriter], raw: Any, progress: Callable[[int], Any] | None) -> None:
    done = 0
    for chunk in rows.chunks():
        x, y = rows.arrays(*chunk)
        del chunk  # or this chunk's strings stay alive while the next one is read: twice the memory
        writers[0].write(x)
        if y is not None:
            writers[1].write(y)
        del x, y
        if progress is not None:
            pos = raw.tell()
            progress(pos - done)
            done = pos
    if writers[0].rows == 0:
        raise SourceError(f"CSV file {str(rows.path)!r} has only a header (line {rows.first_line}): no data rows")


def convert_csv(
    path: str | os.PathLike,
    features: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    label_column: Column | None = None,
    feature_columns: Iterable[Column] | None = None,
    header: bool = True,
    delimiter: str = ",",
    dtype: Any = torch.float32,
    label_dtype: Any = torch.int64,
    missing: float | None = None,
    encoding: str = "utf-8-sig",
    chunk_rows: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> CsvConversion:
    """Convert the CSV file ``path`` to ``features`` (an ``(n, f)`` ``.npy``) and ``labels`` (``(n,)``),
    streaming: ``chunk_rows`` rows are held at a time, never the file.

    The CSV is read by Python's :mod:`csv` module (``strict``): quoted fields, delimiters, quotes
    (``""``) and line breaks inside quotes, ``\\r\\n`` line ends, a UTF-8 byte-order mark; blank
    lines are skipped. With ``header`` (default) the first non-blank row names the columns.

    Args:
        label_column: the label's column, an index (negative from the end) or a header name;
            default the last. Only with ``labels``; without, every selected column is a feature.
        feature_columns: the features' columns (indices or names), written in this order; default
            every column but the label. Columns not selected are not parsed (text is fine there).
        dtype, label_dtype: torch or numpy dtypes of the two files (default float32, int64).
            Fields are read as Python's ``float()``/``int()`` read them (``nan``, ``inf``, ``1e3``;
            an integer dtype takes ``3`` and ``3.0``, not ``3.5``); a finite value the dtype cannot
            hold is an error, not an infinity or a wrapped integer.
        missing: the value of an empty (or blank) feature field, e.g. ``float("nan")``; default
            None: an empty field is an error. Labels are never filled.
        chunk_rows: rows parsed at once (default: 65,536 fields' worth).
        progress: called with the number of CSV bytes read since its last call.

    Both files are written under temporary names beside their targets and renamed at the end:
    on any error no output is left behind (an existing file of that name is untouched).

    Raises:
        FileNotFoundError: no such CSV file, or no such output folder.
        SourceError (a ValueError): naming the file and the line (``csv.reader``'s ``line_num``, the
            last physical line of the row) and, for a bad field, its column: an empty file, only a
            header, a row with another field count, a field that is not a number, not an integer
            or out of the dtype's range, malformed quoting, bytes that are not ``encoding``.
        ValueError: a column name not in the header, an index out of range, a bad option.
    """
    src = existing_file(path, "CSV file")
    _check_options(delimiter, encoding, labels, label_column, chunk_rows)
    dtypes = (numpy_dtype("dtype", dtype), numpy_dtype("label_dtype", label_dtype))
    fill = fill_text(missing, dtypes[0])
    fpath, lpath = _check_outputs(src, features, labels)
    with open(src, "rb") as raw, io.TextIOWrapper(raw, encoding=encoding, newline="") as text:
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        with _located(src, reader, encoding):
            first = _first_row(reader)
            if first is None:
                raise SourceError(f"CSV file {str(src)!r} is empty" + (" (blank lines only)" if reader.line_num else ""))
            where = f"{str(src)!r} line {reader.line_num}"
            layout = _layout(first, where, header, label_column, feature_columns, lpath is not None)
            rows = _Rows(src, reader, layout, None if header else first, len(first), dtypes, chunk_rows)
            rows.fill = fill
            writers: list[_NpyWriter] = []
            try:
                writers.append(_NpyWriter(fpath, dtypes[0], (len(layout[1]),)))
                if lpath is not None:
                    writers.append(_NpyWriter(lpath, dtypes[1], ()))
                _write_all(rows, writers, raw, progress)
                for w in writers:
                    w.commit()
            except BaseException:
                for w in writers:
                    w.discard()
                raise
    return CsvConversion(src, fpath, lpath, writers[0].rows, layout[0], layout[1], layout[2], src.stat().st_size)
