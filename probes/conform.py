"""Property tests of any BitLinear against the reference b1.58 math, driven by hypothesis.

    results = check_layer(lambda i, o: MyBitLinear(i, o), max_examples=100)
    [r.to_dict() for r in results]   # name, status, message, counterexample (shrunk), hint

A layer is anything built as `make(in_features, out_features)` with a `.weight` of shape
(out, in) that maps (N, in) -> (N, out). Each property draws shapes, weight scales from 2^-10 to
2^10, all-zero rows, outliers and exact .5 ties, sets the layer's weight, and compares with
probes/reference.py. A failing property reports hypothesis' shrunk minimal example. Used by
`bitcheck conform`; our own BitLinear must pass every property (tests/test_conform.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import reference as ref

REL_TOL = 1e-4  # float32 layers vs the float64 reference: ours measures ~3e-7 (probes/quantization.py)


@dataclass
class PropertyResult:
    name: str
    status: str  # PASS | FAIL | ERROR
    message: str
    hint: str = ""
    counterexample: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@st.composite
def cases(draw, ties: bool = False):
    """(W (out, in), x (N, in)) float32: Gaussian values from a drawn seed (no accidental ties),
    a drawn power-of-two scale, and optionally an all-zero activation row, an outlier weight, or
    weights at exactly +-0.5 and +-1.5 times mean|W| (rounding ties)."""
    n_in, n_out, n_tok = draw(st.integers(1, 32)), draw(st.integers(1, 16)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    w_scale = 2.0 ** draw(st.integers(-10, 10))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_out, n_in, generator=g) * w_scale
    x = torch.randn(n_tok, n_in, generator=g) * 2.0 ** draw(st.integers(-6, 6))
    if ties:
        # as many |W| = 0.5 s as 1.5 s (plus one 1.0 s if odd): mean|W| is exactly s, and W / s hits
        # the rounding boundary 0.5 (ties to even: code 0) and 1.5 (code 2, clamped to 1)
        n = n_out * n_in
        mags = torch.tensor([0.5] * (n // 2) + [1.5] * (n // 2) + [1.0] * (n % 2))
        mags = mags[torch.randperm(n, generator=g)].reshape(n_out, n_in)
        w = (torch.randint(0, 2, (n_out, n_in), generator=g) * 2 - 1) * mags * w_scale
    elif draw(st.booleans()):
        w[0, 0] = w_scale * draw(st.sampled_from([8.0, 64.0]))  # an outlier inflating mean|W|
    if draw(st.booleans()):
        x[draw(st.integers(0, n_tok - 1))] = 0.0
    return w, x


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double(), b.detach().double()
    return float((a64 - b64).norm() / b64.norm().clamp(min=1e-30)) if b64.numel() else 0.0


def _layer(make, w: torch.Tensor) -> torch.nn.Module:
    layer = make(w.shape[1], w.shape[0])
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(w.shape):
        raise TypeError(f"layer built as ({w.shape[1]}, {w.shape[0]}) has no weight of shape {tuple(w.shape)}")
    with torch.no_grad():
        weight.copy_(w)
    return layer


def _out(layer, x):
    y = layer(x)
    return y[0] if isinstance(y, (tuple, list)) else y


def prop_ternary(make, w, x):
    """The weight the layer applies is ternary times one scale (read off one-hot inputs, which
    int8 activation quantization keeps exact)."""
    layer = _layer(make, w)
    with torch.no_grad():
        w_eff = _out(layer, torch.eye(w.shape[1])).T
    mags = torch.unique(w_eff.abs()[w_eff != 0].double())
    spread = float(mags.max() / mags.min() - 1) if mags.numel() else 0.0
    assert spread < REL_TOL, f"{mags.numel()} distinct weight magnitudes (spread {spread:.3g}): not ternary x one scale"


def prop_scale(make, w, x):
    """The applied weight is round(W / mean|W|) clamped to {-1, 0, 1} times mean|W| (eps 1e-5):
    the scale convention, rounding (ties to even) and clamping of b1.58."""
    layer = _layer(make, w)
    with torch.no_grad():
        w_eff = _out(layer, torch.eye(w.shape[1])).T
    err = _rel(w_eff, ref.dequant_weight(w))
    assert err < REL_TOL, f"applied weight differs from codes x mean|W| (relative error {err:.3g})"


def prop_forward(make, w, x):
    """The output equals the reference: per-token absmax int8 activations times ternary weights."""
    with torch.no_grad():
        y = _out(_layer(make, w), x)
    err = _rel(y, ref.bitlinear(x, w))
    assert err < REL_TOL, f"output differs from the b1.58 reference (relative error {err:.3g})"


def prop_ste(make, w, x):
    """After backward, the input and latent-weight gradients equal the straight-through reference."""
    layer = _layer(make, w)
    xr = x.clone().requires_grad_(True)
    y = _out(layer, xr)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    (y * g).sum().backward()
    gx, gw = ref.ste_grads(x, w, g)
    assert layer.weight.grad is not None, "no gradient reaches the latent weight"
    assert xr.grad is not None, "no gradient reaches the input"
    ex, ew = _rel(xr.grad, gx), _rel(layer.weight.grad, gw)
    assert ex < REL_TOL and ew < REL_TOL, f"STE gradients differ from the reference (input {ex:.3g}, weight {ew:.3g})"


def prop_zero_rows(make, w, x):
    """An all-zero activation row and an all-zero weight give finite outputs and gradients."""
    layer = _layer(make, torch.zeros_like(w))
    xz = x.clone()
    xz[0] = 0.0
    xz.requires_grad_(True)
    y = _out(layer, xz)
    y.sum().backward()
    assert torch.isfinite(y).all(), "non-finite output with the weight zeroed and input row 0 zeroed"
    grads = [t for t in (xz.grad, layer.weight.grad) if t is not None]  # a missing one is ste_gradients' finding
    assert all(torch.isfinite(t).all() for t in grads), "non-finite gradients for an all-zero row"


def prop_deterministic(make, w, x):
    """The same input gives the same output twice."""
    layer = _layer(make, w)
    with torch.no_grad():
        a, b = _out(layer, x), _out(layer, x)
    same = torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)  # NaN is zero_rows_finite's finding
    assert same, f"two calls differ (max gap {float((a - b).abs().nan_to_num().max()):.3g})"


# name, check, strategy, fix hint
PROPERTIES: list[tuple[str, Callable, Callable, str]] = [
    ("ternary_weights", prop_ternary, cases,
     "Quantize the weight in forward: (W / s).round().clamp(-1, 1) * s with one scale s per tensor."),
    ("scale_convention", prop_scale, lambda: cases(ties=True),
     "Use s = W.abs().mean().clamp(min=1e-5) and multiply the codes by s (not by 1/s); round ties to even."),
    ("int8_activations", prop_forward, cases,
     "Quantize activations per token: x * 127 / max|x| (clamped 1e-5), round, clamp [-128, 127], divide back."),
    ("ste_gradients", prop_ste, cases,
     "Write both quantizers as x + (q(x) - x).detach() so gradients pass straight through."),
    ("zero_rows_finite", prop_zero_rows, cases,
     "Clamp both scales' denominators with eps 1e-5: max|x| and mean|W| of an all-zero row are 0."),
    ("deterministic", prop_deterministic, cases, "Remove randomness from forward (dropout, noise) in eval."),
]


def _describe(w, x) -> dict:
    """A counterexample small enough to print: shapes, and the values when they are few."""
    d = {"weight_shape": list(w.shape), "input_shape": list(x.shape),
         "weight_mean_abs": float(w.abs().mean()), "input_absmax": float(x.abs().max())}
    if w.numel() <= 16:
        d["weight"] = w.tolist()
    if x.numel() <= 16:
        d["input"] = x.tolist()
    return d


def check_property(name: str, check: Callable, strategy: Callable, hint: str, make, max_examples: int
                   ) -> PropertyResult:
    last: dict = {}

    # derandomized and without a database: the same layer gives the same report every time
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategy())
    def run(case):
        w, x = case
        last.clear()
        last.update(_describe(w, x))
        check(make, w, x)

    try:
        run()
    except AssertionError as e:  # hypothesis replays the shrunk example last, so `last` is minimal
        return PropertyResult(name, "FAIL", str(e).splitlines()[0], hint, dict(last))
    except Exception as e:  # noqa: BLE001 - the layer itself raised on a valid input
        return PropertyResult(name, "FAIL", f"layer raised {type(e).__name__}: {str(e)[:200]}", hint, dict(last))
    return PropertyResult(name, "PASS", f"held on {max_examples} examples")


def check_layer(make: Callable[[int, int], torch.nn.Module], max_examples: int = 100,
                names: list[str] | None = None) -> list[PropertyResult]:
    return [check_property(n, c, s, h, make, max_examples) for n, c, s, h in PROPERTIES if not names or n in names]
