"""A numeric CSV file read one row at a time, through a byte-offset index built in one pass."""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch

from ._common import SourceDataset, SourceError, existing_file

__all__ = ["CsvDataset"]


def _is_integral(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex)


class CsvDataset(SourceDataset):
    """Rows of a numeric CSV file as ``(features, label)`` pairs, read on demand.

    The constructor makes one streaming pass over the file: it checks every row (column
    count, every field a number, integral labels when ``label_dtype`` is an integer type)
    and records the byte offset where each row starts. ``dataset[i]`` then seeks to row
    ``i`` and parses that one line; the file is never held in memory. The index costs 8
    bytes per row (plus 8 per row if the file has blank lines, to keep line numbers).

    Args:
        path: the CSV file. Fields are separated by ``delimiter``; no quoting (for quoted
            fields, text columns and speed, convert once with :func:`batchfeed.convert_csv`). Blank lines
            are skipped. ``\\r\\n`` line ends are accepted. ``nan``/``inf`` parse as floats.
        label_column: the label's column, as an index (negative counts from the end;
            default the last) or, with a header, a column name. Every other column is a feature.
        header: True if the first non-blank line holds column names.
        dtype: features' dtype (default float32). label_dtype: the label's (default int64).

    Raises:
        FileNotFoundError: no such file.
        SourceError (a ValueError): a malformed row, naming file and line: wrong column
            count, a field that is not a number, a non-integral label for an integer dtype.
        ValueError: no data rows, or a label column that does not exist.
    """

    _per_process = ("_fh",)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        label_column: int | str = -1,
        header: bool = True,
        delimiter: str = ",",
        dtype: torch.dtype = torch.float32,
        label_dtype: torch.dtype = torch.int64,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, target_transform, seed)
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"'":
            raise ValueError(f"delimiter must be one character other than a quote or line end, got {delimiter!r}")
        for name, dt in (("dtype", dtype), ("label_dtype", label_dtype)):
            if not isinstance(dt, torch.dtype):
                raise TypeError(f"{name} must be a torch.dtype, got {dt!r}")
        self.path: Path = existing_file(path, "CSV file")
        self.delimiter = delimiter
        self.dtype, self.label_dtype = dtype, label_dtype
        self.header = bool(header)
        self.columns: list[str] | None = None
        self._fh: IO[bytes] | None = None
        self._index(label_column)

    # -- the one streaming pass ---------------------------------------------------------
    def _index(self, label_column: int | str) -> None:
        sep = self.delimiter.encode()
        offsets, lines = array("q"), array("q")
        ncols: int | None = None
        gaps = False
        pos, line_no = 0, 0
        label: int | None = None
        with open(self.path, "rb") as f:
            for raw in f:
                line_no += 1
                start, pos = pos, pos + len(raw)
                body = raw.rstrip(b"\r\n")
                if not body.strip():
                    gaps = True
                    continue
                fields = body.split(sep)
                if ncols is None:
                    ncols = len(fields)
                    if self.header:
                        self.columns = [c.decode("utf-8", "replace").strip() for c in fields]
                    label = self._label_index(label_column, ncols)
                    if self.header:
                        continue
                if len(fields) != ncols:
                    raise SourceError(f"{str(self.path)!r} line {line_no}: expected {ncols} columns, got {len(fields)}")
                self._parse(fields, label, line_no)
                offsets.append(start)
                lines.append(line_no)
        if not offsets:
            what = "only a header" if self.columns is not None else "no rows"
            raise ValueError(f"CSV file {str(self.path)!r} has {what}: a dataset needs at least one data row")
        assert ncols is not None and label is not None
        self.num_columns, self.label_index = ncols, label
        self._offsets = np.frombuffer(offsets, dtype=np.int64).copy()
        first = lines[0]
        # Line numbers are kept only when blank lines break the row -> line arithmetic.
        self._lines = None if not gaps else np.frombuffer(lines, dtype=np.int64).copy()
        self._first_line = first

    def _label_index(self, label_column: int | str, ncols: int) -> int:
        if isinstance(label_column, str):
            if self.columns is None:
                raise ValueError(f"label_column={label_column!r} is a name, but {str(self.path)!r} is read with header=False")
            if label_column not in self.columns:
                raise ValueError(f"label_column={label_column!r} is not a column of {str(self.path)!r}; columns: {self.columns}")
            return self.columns.index(label_column)
        if isinstance(label_column, bool) or not isinstance(label_column, (int, np.integer)):
            raise TypeError(f"label_column must be an int or a column name, got {label_column!r}")
        if not -ncols <= label_column < ncols:
            raise ValueError(f"label_column={label_column} out of range for {str(self.path)!r} with {ncols} columns")
        if ncols < 2:
            raise ValueError(f"{str(self.path)!r} has {ncols} column; need at least one feature and a label")
        return int(label_column) % ncols

    def _parse(self, fields: list[bytes], label: int, line_no: int) -> tuple[list[float], float]:
        values: list[float] = []
        for j, field in enumerate(fields):
            try:
                values.append(float(field))
            except ValueError:
                name = f" ({self.columns[j]})" if self.columns else ""
                raise SourceError(
                    f"{str(self.path)!r} line {line_no}: column {j + 1}{name}: "
                    f"{field.decode('utf-8', 'replace').strip()!r} is not a number"
                ) from None
        y = values.pop(label)
        if _is_integral(self.label_dtype) and self.label_dtype != torch.bool and not float(y).is_integer():
            raise SourceError(f"{str(self.path)!r} line {line_no}: label {y!r} is not an integer (label_dtype={self.label_dtype})")
        return values, y

    # -- reading -------------------------------------------------------------------------
    def __del__(self) -> None:
        fh = self.__dict__.get("_fh")
        if fh is not None:
            fh.close()

    def __len__(self) -> int:
        return len(self._offsets)

    def line_of(self, i: int) -> int:
        """The 1-based line number of row ``i`` in the file."""
        return int(self._lines[i]) if self._lines is not None else self._first_line + i

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._fh is None:
            self._fh = open(self.path, "rb")
        self._fh.seek(int(self._offsets[i]))
        body = self._fh.readline().rstrip(b"\r\n")
        fields = body.split(self.delimiter.encode())
        if len(fields) != self.num_columns:
            raise SourceError(
                f"{str(self.path)!r} line {self.line_of(i)}: expected {self.num_columns} columns, got {len(fields)} "
                "(the file changed after it was indexed?)"
            )
        values, y = self._parse(fields, self.label_index, self.line_of(i))
        return torch.tensor(values, dtype=self.dtype), torch.tensor(y, dtype=self.label_dtype)

    def __repr__(self) -> str:
        return f"CsvDataset(n={len(self)}, path={str(self.path)!r}, columns={self.num_columns}, label_column={self.label_index})"
