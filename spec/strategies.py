"""Every hypothesis strategy of the spec, in one place."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

#: Dataset sizes for batching properties: 1..500 samples.
sizes = st.integers(min_value=1, max_value=500)
#: Batch sizes: 1..64.
batch_sizes = st.integers(min_value=1, max_value=64)
drop_lasts = st.booleans()

#: Dtypes a loader must preserve.
feature_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.uint8])
label_dtypes = st.sampled_from([torch.int64, torch.int32, torch.float32, torch.bool])

#: Per-sample feature shapes: (), (F,), (C, H) ... with small sides.
feature_shapes = st.lists(st.integers(min_value=1, max_value=4), min_size=0, max_size=3).map(tuple)


@st.composite
def pair_data(draw, min_n: int = 1, max_n: int = 64):
    """Aligned ``(X, y)`` of any supported dtypes and feature shape.

    Example: ``(tensor of shape (7, 2, 3) float16, tensor of shape (7,) int32)``.
    Sample ``i`` carries ``i`` in every feature (mod 256 for uint8) and ``i`` as label
    (``i % 2`` for bool), so a wrong pair is visible.
    """
    n = draw(st.integers(min_value=min_n, max_value=max_n))
    shape = draw(feature_shapes)
    xdt, ydt = draw(feature_dtypes), draw(label_dtypes)
    base = torch.arange(n, dtype=torch.int64)
    if xdt == torch.uint8:
        base_x = base % 256
    else:
        base_x = base
    X = base_x.reshape(n, *([1] * len(shape))).expand(n, *shape).to(xdt).contiguous()
    y = (base % 2).to(torch.bool) if ydt == torch.bool else base.to(ydt)
    return X, y


# --- lazy sources and transforms -------------------------------------------------------


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
