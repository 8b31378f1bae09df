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


@st.composite
def loader_shapes(draw):
    """``(n, batch_size, drop_last)`` for batching properties. Example: ``(97, 8, True)``."""
    return draw(sizes), draw(batch_sizes), draw(drop_lasts)
