"""Hypothesis strategies for the lazy sources and transforms (to merge into strategies.py)."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def window_shapes(draw, max_length: int = 120):
    """``(T, L, S)`` with ``1 <= L <= T``: a series length, a window and a stride. Example: ``(37, 5, 3)``."""
    window = draw(st.integers(1, 24))
    stride = draw(st.integers(1, 24))
    length = draw(st.integers(window, max(window, max_length)))
    return length, window, stride


#: Numbers as written in a CSV cell: integers and floats over many magnitudes, both signs.
csv_numbers = st.one_of(
    st.integers(-10**6, 10**6).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64),
    st.floats(-1e-3, 1e-3, allow_nan=False, allow_infinity=False),
)


@st.composite
def csv_tables(draw):
    """A numeric CSV as text, with the values it must parse to.

    Example: ``{"text": "a,b,label\\r\\n1.5,-2,1\\r\\n", "rows": [[1.5, -2.0, 1.0]], "ncols": 3,
    "header": True, "delimiter": ",", "label_column": 2, "blank_lines": []}``. Labels are
    integers (the label column's values); blank lines may sit between rows.
    """
    ncols = draw(st.integers(2, 6), label="ncols")
    n = draw(st.integers(1, 25), label="rows")
    label = draw(st.integers(0, ncols - 1), label="label_column")
    header = draw(st.booleans(), label="header")
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]), label="delimiter")
    newline = draw(st.sampled_from(["\n", "\r\n"]), label="newline")
    rows = []
    for _ in range(n):
        row = [draw(csv_numbers) for _ in range(ncols)]
        row[label] = float(draw(st.integers(0, 9)))
        rows.append(row)
    blank_after = draw(st.sets(st.integers(0, n - 1), max_size=3), label="blank after rows")
    lines = []
    if header:
        lines.append(delimiter.join(f"c{j}" for j in range(ncols)))
    for k, row in enumerate(rows):
        lines.append(delimiter.join(repr(v) if not v.is_integer() else str(int(v)) for v in row))
        if k in blank_after:
            lines.append("")
    trailing = draw(st.booleans(), label="trailing newline")
    text = newline.join(lines) + (newline if trailing else "")
    return {"text": text, "rows": rows, "ncols": ncols, "header": header, "delimiter": delimiter,
            "label_column": label}
