"""Hypothesis strategies for the quantization tests: small shapes first, then bounded 32-bit floats
(no NaN/Inf unless a test asks), drawn by hypothesis itself so failures shrink."""
import torch
from hypothesis import strategies as st

FLOAT = dict(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def matrices(draw, max_rows=8, max_cols=16, bound=1e3, zero_rows=True):
    """A float32 (rows, cols) tensor; sometimes with an all-zero row, outliers and .5 ties."""
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    scale = draw(st.sampled_from([2.0**-10, 1.0, float(bound)]))
    values = draw(st.lists(st.floats(-scale, scale, **FLOAT), min_size=rows * cols, max_size=rows * cols))
    t = torch.tensor(values, dtype=torch.float32).reshape(rows, cols)
    if zero_rows and rows > 1 and draw(st.booleans()):
        t[draw(st.integers(0, rows - 1))] = 0.0
    return t


@st.composite
def generic_matrices(draw, max_rows=8, max_cols=32):
    """Gaussian values from a drawn seed and scale: ties at rounding boundaries have probability ~0,
    so two correct implementations in different precisions must agree exactly on codes."""
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(2.0**-10, 1024.0, **FLOAT))
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * scale
