"""Property tests of any BitLinear against the reference b1.58 math, driven by hypothesis.

    results = check_layer(Harness(lambda i, o: MyBitLinear(i, o)), max_examples=100)
    [r.to_dict() for r in results]   # name, status, message, counterexample (shrunk), hint

A layer is anything built as `make(in_features, out_features)` with a float `.weight` of shape
(out, in) that maps (1, N, in) -> (1, N, out), as a language model calls it, or else (N, in) -> (N, out)
(`input_rank` fixes either), on the harness' device. A norm inside the layer, before its activation
quantizer (b1.58's training tips, SubLN), is a design: the properties are tested on its output. Before any property runs, `inspect_layer` measures the layer's pieces apart: can it
be built, set and run at all (else `Untestable`: one line saying how to make it testable), does it add
a bias (output at zero input), does it normalise its input (output unchanged when the input is scaled
4x), is its weight binary (no zero codes where b1.58 has them). Each property then tests one piece with
the others taken from the layer itself or the reference, so a wrong weight path does not fail the
activation or STE properties, and names what it finds: a bias, an in-layer norm, binary weights, one
activation scale per tensor, a non-identity STE, half-up rounding, an unclamped scale on small rows.
A failing property reports hypothesis' shrunk example with the layer's output next to the expected
value and the seed that rebuilds it. Used by `bitcheck conform`; our own BitLinear and an independent
correct layer pass every property (tests/test_conform.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from probes import bitlinear as bl
from probes import reference as ref
from probes.core import latent_weight

REL_TOL = 1e-4  # float32 layers vs the float64 reference: ours measures ~3e-7 (probes/quantization.py)
# inspect_layer's bars. A b1.58 layer is scale-equivariant (per-token absmax: y(4x) = 4 y(x) exactly up
# to float rounding); a layer normalising its input gives y(4x) = y(x). Gaussian latents give b1.58
# ~31% zero codes; a binary layer 0%.
NORM_RATIO = 2.0  # ||y(4x)|| / ||y(x)|| below this: the output ignores the input's scale
BINARY_MIN_REF_ZEROS = 0.2  # the reference's zero share on the inspection weight (0.31 measured)
SMALL_ROW = 1.27e-3  # rows with max|x| below 127 * eps: where a scale floored on max|x|/127 goes wrong


class Untestable(Exception):
    """The layer cannot be put through the properties; the message says what failed and how to make
    it testable (--factory, --device, --input-rank)."""


class Mismatch(AssertionError):
    """A property's failure with the layer's values next to the expected ones (for the report)."""

    def __init__(self, message: str, got: torch.Tensor | None = None, want: torch.Tensor | None = None):
        super().__init__(message)
        self.got, self.want = got, want


@dataclass
class Harness:
    """How to build, set and call the layer under test."""
    make: Callable[[int, int], torch.nn.Module]
    device: str = "cpu"
    input_rank: int | None = None  # 2: (N, in); 3: (1, N, in); None: 3 where the layer takes it, else 2
    name: str = "make"  # how messages call the constructor (the user's class or factory)
    facts: dict = field(default_factory=dict)  # what inspect_layer measured

    def build(self, w: torch.Tensor) -> torch.nn.Module:
        """A layer of w's shape (out, in) whose latent weight is w."""
        n_out, n_in = w.shape
        try:
            layer = self.make(n_in, n_out)
        except Exception as e:  # noqa: BLE001 - the user's constructor: report, do not crash
            raise Untestable(f"could not build the layer as {self.name}({n_in}, {n_out}): {type(e).__name__}: "
                             f"{str(e)[:160]} (give --factory module.path:fn(in_features, out_features))") from None
        if not isinstance(layer, torch.nn.Module):
            raise Untestable(f"{self.name}({n_in}, {n_out}) returned {type(layer).__name__}, not a torch.nn.Module")
        weight = getattr(layer, "weight", None)
        if not (isinstance(weight, torch.Tensor) and weight.is_floating_point() and tuple(weight.shape) == (n_out, n_in)):
            packed = [f"{n} {t.dtype} {tuple(t.shape)}" for n, t in layer.state_dict().items()
                      if not t.is_floating_point()]
            if packed:
                raise Untestable(f"inference-only layer: it stores packed/integer weights ({', '.join(packed[:2])}) "
                                 f"and no latent float weight of shape ({n_out}, {n_in}) to set; conform tests "
                                 "training layers (check a packed deployment with `bitcheck export` parity)")
            if isinstance(weight, torch.Tensor) and tuple(weight.shape) == (n_in, n_out):
                raise Untestable(f"the layer stores its weight transposed, ({n_in}, {n_out}) = (in, out); conform "
                                 "expects nn.Linear's (out_features, in_features)")
            floats = [f"{n} {tuple(t.shape)}" for n, t in layer.named_parameters() if t.dim() == 2]
            got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else "no .weight"
            raise Untestable(f"{self.name}({n_in}, {n_out}) has no float .weight of shape ({n_out}, {n_in}) ({got}"
                             + (f"; its 2-D parameters: {', '.join(floats[:3])}" if floats else "") + "): conform sets "
                             "`.weight` (out_features, in_features) as nn.Linear names it; wrap the layer in a "
                             "--factory whose result has that attribute")
        # eval mode (dropout off) and float32: conform checks the quantization logic, not bf16 rounding
        if weight.dtype in (torch.float16, torch.bfloat16):
            self.facts["cast_from"] = str(weight.dtype).replace("torch.", "")
        layer = layer.to(self.device, torch.float32).eval()
        with torch.no_grad():  # the latent: behind a parametrization, `.weight` is the computed (quantized) one
            latent_weight(layer).copy_(w.to(layer.weight.dtype))
        return layer

    def call(self, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """layer on x (N, in) in the harness' rank and device: its output as returned (autograd intact)."""
        xin = x.to(self.device)
        y = layer(xin[None] if self.input_rank == 3 else xin)
        return y[0] if isinstance(y, (tuple, list)) else y

    def norm_of(self, layer: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The norm inside `layer` that inspect_layer found (its child module, or the parameter-free
        function), on the layer's device; None without one. Looked up by name: on a tiny layer (one or two
        features) finding it again by its behaviour is not reliable."""
        what = self.facts.get("input_norm")
        if not what:
            return None
        if what.startswith("module "):
            return layer.get_submodule(what.split()[1])
        return bl.rms_norm if what == "functional RMSNorm" else bl.layer_norm

    def quantizer_input(self, layer: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """x (N, in) on the CPU -> what the layer's activation quantizer sees, on the CPU, when the layer
        normalizes its input inside (probes/bitlinear.py: found by inspect_layer); None without a norm."""
        pre = self.norm_of(layer)
        if pre is None:
            return None
        dev = layer.weight.device
        return lambda x: pre(x.to(dev)).cpu()

    def run(self, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """layer on x (N, in) -> (N, out) on the CPU."""
        y = self.call(layer, x)
        return (y[0] if self.input_rank == 3 else y).cpu()


def inspect_layer(h: Harness) -> dict:
    """Build and run the layer once, measuring its pieces apart; raises Untestable with how to fix."""
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(16, 32, generator=g), torch.randn(4, 32, generator=g)
    layer = h.build(w)
    if h.input_rank is None:
        h.input_rank = _rank_it_takes(h, layer, x)
    h.facts["input_rank"] = h.input_rank
    try:
        with torch.no_grad():
            y = h.run(layer, x)
    except Exception as e:  # noqa: BLE001 - the user's forward
        raise Untestable(_forward_error(h, layer, x, e)) from None
    if tuple(y.shape) != (4, 16):
        raise Untestable(f"the layer maps {tuple(x.shape) if h.input_rank == 2 else (1, *x.shape)} to "
                         f"{tuple(y.shape)}, not (..., 16) for out_features 16")
    with torch.no_grad():
        random = not torch.equal(h.run(layer, x), y)
    scale_ratio = scale_ratio_of(h, layer, x, y)
    if scale_ratio < NORM_RATIO and not random:
        # a norm inside, before the activation quantizer (b1.58's training tips, SubLN, use_rms_norm): the
        # properties hold on the norm's output (what the quantizer sees)
        what, _ = bl.quantizer_input(layer)
        h.facts["input_norm"] = None if what == "none" else what
        if h.facts["input_norm"] and _constant_on_one_feature(h):
            # a norm that removes the mean (LayerNorm) maps one feature to its shift and two to +-1 (its
            # Jacobian is then ~0, all eps): the cases start at three features
            h.facts["min_in"] = 3
    w_eff, zero = _effective(h, layer, 32)
    ref_zeros = float((ref.ternary_codes(w)[0] == 0).double().mean())
    facts = {"bias": 0.0 if random else float(zero.abs().max()), "random": random,
             "normalises": scale_ratio < NORM_RATIO, "scale_ratio": scale_ratio,
             "shares_scale": _shares_scale(h, layer, x),
             "zero_share": float((w_eff == 0).double().mean()), "reference_zero_share": ref_zeros}
    mags = torch.unique(w_eff.abs()[w_eff != 0].double())
    one_level = bool(mags.numel()) and float(mags.max() / mags.min() - 1) < REL_TOL
    facts["binary"] = facts["zero_share"] == 0.0 and ref_zeros > BINARY_MIN_REF_ZEROS and one_level
    facts["stored"] = _rel(w_eff / (w_eff.abs().max() or 1), w / w.abs().max()) < 1e-3  # W applied as is
    rows = w.abs().mean(dim=1, keepdim=True).clamp(min=ref.EPS)  # one scale per output row (per-channel)
    facts["per_row"] = not facts["stored"] and _rel(w_eff, (w / rows).round().clamp(-1, 1) * rows) < 1e-3
    want = ref.dequant_weight(w)
    nz = (want != 0) & (w_eff != 0)
    facts["onehot_factor"] = float((w_eff[nz].double() / want[nz].double()).mean()) if bool(nz.any()) else 1.0
    h.facts = {**h.facts, **facts}
    return h.facts


def _rank_it_takes(h: Harness, layer: torch.nn.Module, x: torch.Tensor) -> int:
    """3 when the layer maps (1, N, in) to (1, N, out), as language models call it: a token axis beside the
    batch is where an activation scale shared across the sequence shows (on (N, in), absmax over dim 1
    is per token); 2 otherwise (its errors are then reported on (N, in))."""
    try:
        with torch.no_grad():
            y = Harness(h.make, h.device, 3).run(layer, x)
        return 3 if tuple(y.shape) == (x.shape[0], 16) else 2
    except Exception:  # noqa: BLE001 - the user's forward: a layer that takes only (N, in)
        return 2


def _constant_on_one_feature(h: Harness) -> bool:
    """A layer of one input feature gives the same output for x = 0.5 and x = -2 (a norm that removes the
    mean leaves nothing of one feature)."""
    try:
        layer = h.build(torch.ones(4, 1))
        with torch.no_grad():
            y = h.run(layer, torch.tensor([[0.5], [-2.0]]))
        return bool(torch.equal(y[0], y[1]))
    except Exception:  # noqa: BLE001 - a layer that cannot be built or run with one feature
        return True


def scale_ratio_of(h: Harness, layer, x: torch.Tensor, y: torch.Tensor) -> float:
    """||y(4x) - y(0)|| / ||y(x) - y(0)||: 4 for a per-token quantizer, 1 for a layer that normalizes first."""
    with torch.no_grad():
        zero = h.run(layer, torch.zeros(1, x.shape[1]))[0]
        zero = zero if bool(torch.isfinite(zero).all()) else torch.zeros_like(zero)
        return float((h.run(layer, 4 * x) - zero).norm() / (y - zero).norm().clamp(min=1e-30))


def _forward_error(h: Harness, layer, x, e: Exception) -> str:
    what = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    if "cuda" in str(e).lower() and h.device == "cpu":
        return f"the layer raised {what} on the CPU: it runs only on CUDA; rerun with --device cuda"
    if h.input_rank == 2:
        try:
            with torch.no_grad():
                Harness(h.make, h.device, 3).run(layer, x)
            return f"the layer raised {what} on 2-D input (N, in) but runs on 3-D (B, T, in): rerun with --input-rank 3"
        except Exception:  # noqa: BLE001 - it fails on 3-D too: report the 2-D error
            pass
    return f"the layer raised {what} on input {tuple(x.shape) if h.input_rank == 2 else (1, *x.shape)}"


@st.composite
def cases(draw, ties: bool = False, min_in: int = 1):
    """(W (out, in), x (N, in)) float32: Gaussian values from a drawn seed (no accidental ties),
    a drawn power-of-two scale (activations down to max|x| ~ 1e-6, below the 1.27e-3 where a badly
    floored scale shows), and optionally an all-zero activation row, an outlier weight, or weights at
    exactly +-0.5 and +-1.5 times mean|W| (rounding ties)."""
    n_in, n_out, n_tok = draw(st.integers(min_in, 32)), draw(st.integers(1, 16)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    w_scale = 2.0 ** draw(st.integers(-10, 10))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_out, n_in, generator=g) * w_scale
    x = torch.randn(n_tok, n_in, generator=g) * 2.0 ** draw(st.integers(-6, 6))
    if draw(st.booleans()):
        x[draw(st.integers(0, n_tok - 1))] *= 2.0 ** draw(st.integers(-14, -8))  # a row of tiny activations
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
    return w, x, seed


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double(), b.detach().double()
    return float((a64 - b64).norm() / b64.norm().clamp(min=1e-30)) if b64.numel() else 0.0


def _effective(h: Harness, layer, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_eff (out, in), bias (out,)): the layer's response to one-hot inputs minus its response to 0
    (one-hot rows quantize exactly under per-token int8 activations: absmax 1 -> code 127 -> 1)."""
    with torch.no_grad():
        zero = h.run(layer, torch.zeros(1, n_in))[0]
        zero = zero if bool(torch.isfinite(zero).all()) else torch.zeros_like(zero)  # NaN: zero_rows_finite's finding
        pre = h.quantizer_input(layer)
        if pre is not None:  # one-hot rows of RMS 1 through the norm: each response divided by the norm's output
            eye = torch.eye(n_in) * n_in ** 0.5
            normed = pre(eye)
            diag = torch.diagonal(normed)
            if torch.equal(normed, torch.diag_embed(diag)) and bool((diag != 0).all()):
                return ((h.run(layer, eye) - zero) / diag[:, None]).T, zero
            applied = bl.applied_weight(layer, torch.randn(1, 2, n_in).to(layer.weight) if h.input_rank == 3 else None)
            if applied is not None:  # a norm that mixes features (LayerNorm): the matmul's weight operand
                return applied.float().cpu(), zero
        return (h.run(layer, torch.eye(n_in)) - zero).T, zero


def _norm_note(h: Harness) -> str:
    if h.facts.get("input_norm"):  # found and tested through: the property's finding is the quantizer's
        return f" (tested on the output of the layer's input norm: {h.facts['input_norm']})"
    if h.facts.get("random"):
        return " (the layer is not deterministic: see deterministic; its other properties cannot be judged)"
    return (" (the layer normalises its input inside: outputs ignore the input's scale, y(4x) / y(x) = "
            f"{h.facts['scale_ratio']:.2f}; b1.58 puts RMSNorm before BitLinear, so this layer differs on purpose "
            "if it has an in-layer RMSNorm, e.g. use_rms_norm)") if h.facts.get("normalises") else ""


def prop_ternary(h, w, x):
    """The weight the layer applies (its one-hot response minus its bias) is ternary times one scale,
    with zero codes where b1.58 has them (binary b1 layers have none)."""
    w_eff, _ = _effective(h, h.build(w), w.shape[1])
    mags = torch.unique(w_eff.abs()[w_eff != 0].double())
    spread = float(mags.max() / mags.min() - 1) if mags.numel() else 0.0
    # w + (q(w) - w).detach() in float32 cancels to ~ulp(max|W|) of the applied magnitude: a layer applying
    # weights far smaller than its latents (an inverted scale) is not "not ternary" for that
    tol = max(REL_TOL, 4 * torch.finfo(torch.float32).eps * float(w.abs().max()) / float(mags.min() or 1))
    if spread >= tol:
        cause = ("; the layer applies its weight as stored (an offline mode expecting pre-quantized codes, or "
                 "quantization forgotten)" if h.facts.get("stored") else PER_ROW if h.facts.get("per_row") else "")
        raise Mismatch(f"{mags.numel()} distinct weight magnitudes (spread {spread:.3g}): not ternary x one scale"
                       + cause + _norm_note(h), w_eff, ref.dequant_weight(w))
    ref_zeros = int((ref.ternary_codes(w)[0] == 0).sum())
    if ref_zeros and not bool((w_eff == 0).any()) and w.numel() >= 4:
        raise Mismatch(f"binary (b1), not ternary (b1.58): no weight maps to 0 where b1.58 gives {ref_zeros} zero "
                       "codes (codes are sign(W - mean) or sign(W))", w_eff, ref.dequant_weight(w))


def prop_scale(h, w, x):
    """The applied weight is round(W / mean|W|) clamped to {-1, 0, 1} times mean|W| (eps 1e-5):
    the scale convention, rounding (ties to even) and clamping of b1.58."""
    w_eff, _ = _effective(h, h.build(w), w.shape[1])
    want = ref.dequant_weight(w)
    err = _rel(w_eff, want)
    if err < REL_TOL:
        return
    nz = (want != 0) & (w_eff != 0)
    ratio = (w_eff[nz].double() / want[nz].double()) if bool(nz.any()) else torch.ones(1, dtype=torch.float64)
    const = bool(nz.any()) and float(ratio.max() / ratio.min() - 1) < 1e-3
    cause = ""
    if h.facts.get("normalises") or h.facts.get("random"):
        cause = _norm_note(h)
        if const and not h.facts.get("random"):
            cause = f"; off by the constant factor {float(ratio.mean()):.4g}" + cause
    else:
        ties = ((w.double().abs() / w.double().abs().mean().clamp(min=ref.EPS)) - 0.5).abs() < 1e-6
        wrong = (w_eff.double() - want.double()).abs() > 1e-6 * want.double().abs().max().clamp(min=1e-30)
        factor = float(ratio.mean())
        m = float(w.double().abs().mean())
        if h.facts.get("stored"):
            cause = "; the layer applies its weight as stored (not quantized)"
        elif h.facts.get("per_row"):
            cause = PER_ROW
        elif h.facts.get("binary"):
            cause = "; the layer has no zero codes: binary (b1), not ternary (b1.58)"
        elif const and abs(m - 1) > 1e-2 and abs(factor * m * m - 1) < 1e-3:
            cause = "; every weight off by 1/mean|W|^2: the scale is divided where b1.58 multiplies (codes x mean|W|)"
        elif bool(wrong.any()) and bool((wrong <= ties).all()):
            cause = "; only weights at exactly 0.5 x mean|W| differ: they round half up, b1.58 rounds ties to even (0)"
        elif const and abs((factor - 1) - ref.EPS / m) < 0.05 * ref.EPS / m:
            cause = "; the scale is mean|W| + 1e-5: b1.58 clamps (max(mean|W|, 1e-5)), it does not add eps"
        elif h.facts.get("binary"):
            cause = "; the layer has no zero codes: binary (b1), not ternary (b1.58)"
        elif abs(h.facts.get("onehot_factor", 1) - 127 / 128) < 1e-4:
            cause = ("; every weight off by 127/128: the activation quantizer uses 128 levels (x * 128 / max|x|, "
                     "clamped to 127) where b1.58 uses 127, so even a one-hot input is not kept exact")
        elif bool(wrong.any()) and bool((wrong <= ties).all()):
            cause = "; only weights at exactly 0.5 x mean|W| differ: they round half up, b1.58 rounds ties to even (0)"
        elif const and abs(factor - 127 / 128) < 1e-4:
            cause = ("; every weight off by 127/128: the activation quantizer uses 128 levels (x * 128 / max|x|, "
                     "clamped to 127) where b1.58 uses 127, so even a one-hot input is not kept exact")
        elif const and abs(factor - 1) > 1e-3:
            cause = (f"; every weight off by the same factor {factor:.4g}: the scale convention (codes x "
                     "mean|W|; 1/mean|W| is the inference-side weight_scale, divided, never multiplied)")
    raise Mismatch(f"applied weight differs from codes x mean|W| (relative error {err:.3g}){cause}", w_eff, want)


def prop_forward(h, w, x):
    """The output equals per-token absmax int8 activations times the layer's own applied weight (its
    weight path is ternary_weights' and scale_convention's to judge), plus its bias."""
    layer = h.build(w)
    w_eff, bias = _effective(h, layer, w.shape[1])
    with torch.no_grad():
        y = h.run(layer, x)
        pre = h.quantizer_input(layer)
        x_q = x if pre is None else pre(x)  # what the activation quantizer sees
    want = (ref.dequant_activations(x_q).double() @ w_eff.double().T + bias.double()).to(y.dtype)
    err = _rel(y, want)
    if err < REL_TOL:
        return
    cause = "" if h.facts.get("input_norm") else _norm_note(h)
    if not cause and not bool(torch.isfinite(y).all()):
        cause = "; the output is not finite (see zero_rows_finite)"
    elif not cause:
        per_tensor = (ref.dequant_activations(x.reshape(1, -1)).reshape(x.shape).double() @ w_eff.double().T
                      + bias.double())
        small = x.abs().amax(-1) < SMALL_ROW
        row_err = (y.double() - want.double()).norm(dim=-1) / want.double().norm(dim=-1).clamp(min=1e-30)
        plain = x.double() @ w_eff.double().T + bias.double()
        if _rel(y, plain) < REL_TOL:
            cause = "; it matches unquantized activations: the activation quantizer is missing"
        elif abs(h.facts.get("onehot_factor", 1) - 127 / 128) < 1e-4 and h.facts.get("shares_scale"):
            cause = ("; one activation scale for the whole tensor, with 128 levels (x * 128 / max|x|) where b1.58 "
                     "takes one per token with 127")
        elif h.facts.get("shares_scale") or (x.shape[0] > 1 and _rel(y, per_tensor) < REL_TOL):
            cause = ("; the activation scale is shared across tokens (one per tensor): scaling one token changes the "
                     "others' outputs; quantize per token (absmax over the features)")
        elif bool(small.any()) and bool((row_err[~small] < REL_TOL).all()):
            cause = (f"; only rows with max|x| < {SMALL_ROW:g} differ: the scale floor is applied to max|x| / 127 "
                     "(or not at all) in one place; clamp max|x| at 1e-5 in both quantization and dequantization")
    raise Mismatch(f"output differs from per-token int8 activations x the layer's own weights (relative error "
                   f"{err:.3g}){cause}", y, want)


PER_ROW = "; one scale per output row (per-channel mean|W|): b1.58 uses one scale per tensor"


def _shares_scale(h: Harness, layer, x: torch.Tensor) -> bool:
    """Scaling the last token 8x changes the other tokens' outputs (a per-token quantizer cannot)."""
    boosted = x.clone()
    boosted[-1] *= 8.0
    with torch.no_grad():
        a, b = h.run(layer, x)[:-1], h.run(layer, boosted)[:-1]
    return _rel(b, a) > REL_TOL


def prop_ste(h, w, x):
    """On one token (so the activation scale's granularity does not matter), the input gradient is
    grad @ W_applied and the latent weight's gradient grad^T @ Xq: the straight-through estimator."""
    layer = h.build(w)
    w_eff, _ = _effective(h, layer, w.shape[1])
    x1 = (x[:1] / x[:1].abs().max().clamp(min=1e-30)).clone().requires_grad_(True)  # max|x| = 1: clear of scale floors
    y = h.call(layer, x1)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape).to(y.device)
    (y * g).sum().backward()
    if latent_weight(layer).grad is None:
        raise Mismatch("no gradient reaches the latent weight (the quantizer is applied outside autograd: no STE)")
    if x1.grad is None:
        raise Mismatch("no gradient reaches the input")
    g2 = g.reshape(-1, g.shape[-1]).cpu().double()  # (1, out)
    want_x = (g2 @ w_eff.double()).reshape(x1.shape)
    pre = h.quantizer_input(layer)
    x_q = x1.detach()
    if pre is not None:  # through the norm: the STE's input gradient carried back by the norm's own Jacobian
        x_q = pre(x1.detach())
        want_x = torch.autograd.functional.vjp(pre, x1.detach(), want_x.to(x1.dtype))[1].double()
    _, want_w = ref.ste_grads(x_q, w, g2.float())
    ex, ew = _rel(x1.grad, want_x), _rel(latent_weight(layer).grad.cpu(), want_w)
    # the weight gradient is grad^T @ (the activations as the layer quantizes them): with the per-token
    # reference, or unquantized (int8_activations' finding, not the STE's)
    own_w = (g2.T @ x_q.double()).to(want_w.dtype)
    if ex < REL_TOL and (ew < REL_TOL or _rel(latent_weight(layer).grad.cpu(), own_w) < REL_TOL):
        return
    act_path = h.facts.get("shares_scale") or abs(h.facts.get("onehot_factor", 1) - 127 / 128) < 1e-4
    if (ex >= REL_TOL and not _norm_note(h) and not act_path and _rel(w, ref.dequant_weight(w)) > 1e-2
            and _rel(x1.grad, (g2 @ w.double()).reshape(x1.shape)) < REL_TOL):
        raise Mismatch("STE gradients differ from the reference: the input gradient uses the latent weight, not the "
                       "quantized one (the straight-through trick wraps the whole product; apply it to each "
                       "quantizer)", x1.grad, want_x)
    got_w, ref_w = latent_weight(layer).grad.cpu().double().flatten(), want_w.double().flatten()
    c = float(got_w @ ref_w / (ref_w @ ref_w).clamp(min=1e-30))
    cause = "" if h.facts.get("input_norm") else _norm_note(h)  # an unread norm changes both gradients
    if not cause and ew >= REL_TOL and _rel(got_w, c * ref_w) < 1e-3 and abs(c - 1) > 1e-2:
        cause = (f"; the weight gradient is {c:.4g} x the straight-through one (mean|W| = {float(w.abs().mean()):.4g}): "
                 "the STE is not the identity, write w + (q(w) - w).detach()")
    elif not cause and ex < REL_TOL:
        cause = ("; the input gradient passes straight through; the weight gradient follows the layer's own "
                 "activation quantization, which differs from b1.58's (see int8_activations)")
    elif not cause and act_path:
        cause = "; a consequence of the activation quantizer (see int8_activations)"
    raise Mismatch(f"STE gradients differ from the reference (input {ex:.3g}, weight {ew:.3g}){cause}",
                   latent_weight(layer).grad.cpu(), want_w)


def prop_zero_rows(h, w, x):
    """An all-zero activation row and an all-zero weight give finite outputs and gradients."""
    layer = h.build(torch.zeros_like(w))
    xz = x.clone()
    xz[0] = 0.0
    xz.requires_grad_(True)
    y = h.call(layer, xz)
    y.sum().backward()
    if not bool(torch.isfinite(y).all()):
        raise Mismatch("non-finite output with the weight zeroed and input row 0 zeroed", y.detach().cpu())
    grads = [t for t in (xz.grad, latent_weight(layer).grad) if t is not None]  # a missing one is ste_gradients' finding
    if not all(bool(torch.isfinite(t).all()) for t in grads):
        raise Mismatch("non-finite gradients for an all-zero row")


def prop_deterministic(h, w, x):
    """The same input gives the same output twice."""
    layer = h.build(w)
    with torch.no_grad():
        a, b = h.run(layer, x), h.run(layer, x)
    if not torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True):  # NaN is zero_rows_finite's finding
        raise Mismatch(f"two calls differ (max gap {float((a - b).abs().nan_to_num().max()):.3g})", a, b)


# name, check, strategy, fix hint
PROPERTIES: list[tuple[str, Callable, Callable, str]] = [
    ("ternary_weights", prop_ternary, cases,
     "Quantize the weight in forward: (W / s).round().clamp(-1, 1) * s with one scale s per tensor (round, not "
     "sign: b1.58 has zero codes)."),
    ("scale_convention", prop_scale, lambda **kw: cases(ties=True, **kw),
     "Use s = W.abs().mean().clamp(min=1e-5) and multiply the codes by s (not by 1/s); round ties to even."),
    ("int8_activations", prop_forward, cases,
     "Quantize activations per token: x * 127 / max|x| (clamped 1e-5), round, clamp [-128, 127], divide back."),
    ("ste_gradients", prop_ste, cases,
     "Write both quantizers as x + (q(x) - x).detach() so gradients pass straight through."),
    ("zero_rows_finite", prop_zero_rows, cases,
     "Clamp both scales' denominators with eps 1e-5: max|x| and mean|W| of an all-zero row are 0."),
    ("deterministic", prop_deterministic, cases, "Remove randomness from forward (dropout, noise) in eval."),
]


@dataclass
class PropertyResult:
    name: str
    status: str  # PASS | FAIL | ERROR
    message: str
    hint: str = ""
    counterexample: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _values(t: torch.Tensor | None) -> list | None:
    return None if t is None else [round(float(v), 6) for v in t.detach().flatten()[:8]]


def _describe(w, x, seed) -> dict:
    """A counterexample small enough to print and to rebuild: shapes, the seed, and the values when few."""
    d = {"seed": seed, "weight_shape": list(w.shape), "input_shape": list(x.shape),
         "weight_mean_abs": float(w.abs().mean()), "input_absmax": float(x.abs().max())}
    if w.numel() <= 16:
        d["weight"] = w.tolist()
    if x.numel() <= 16:
        d["input"] = x.tolist()
    return d


def check_property(name: str, check: Callable, strategy: Callable, hint: str, h: Harness, max_examples: int | None,
                   profile: bool = False) -> PropertyResult:
    """One property over hypothesis' examples. By default derandomized and without a database, so the same layer
    gives the same report every time (`bitcheck conform`); `profile`: the settings of hypothesis' loaded profile
    (a user's test suite: their max_examples, database, derandomize, CI profile), `max_examples` only where given."""
    last: dict = {}
    fixed = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
    chosen = (settings(settings.default, **fixed, **({"max_examples": max_examples} if max_examples else {}))
              if profile else settings(max_examples=max_examples or 100, database=None, derandomize=True, **fixed))
    examples = chosen.max_examples

    @chosen
    @given(strategy(min_in=h.facts.get("min_in", 1)))
    def run(case):
        w, x, seed = case
        last.clear()
        last.update(_describe(w, x, seed))
        check(h, w, x)

    try:
        run()
    except Untestable as e:
        return PropertyResult(name, "ERROR", str(e), "", dict(last))
    except Mismatch as e:  # hypothesis replays the shrunk example last, so `last` is minimal
        example = dict(last, output=_values(e.got), expected=_values(e.want))
        return PropertyResult(name, "FAIL", str(e).splitlines()[0], hint, example)
    except Flaky:
        return PropertyResult(name, "FAIL", "the layer gives different results on the same input: not deterministic "
                              "(see deterministic); this property cannot be judged", hint, dict(last))
    except AssertionError as e:
        return PropertyResult(name, "FAIL", str(e).splitlines()[0], hint, dict(last))
    except Exception as e:  # noqa: BLE001 - the layer itself raised on a valid input
        return PropertyResult(name, "FAIL", f"layer raised {type(e).__name__}: {str(e)[:200]}", hint, dict(last))
    return PropertyResult(name, "PASS", f"held on {examples} examples")


NORM_TOL = 1e-3  # relative; eps placement (1e-5 vs 1e-6, inside or outside the root) moves it ~1e-6
NORMS = (("RMSNorm", bl.rms_norm), ("LayerNorm", bl.layer_norm))  # what a norm inside the layer may be


def check_norm(h: Harness) -> PropertyResult | None:
    """The norm inside the layer on its own (None without one): its output on inputs of RMS ~3 with a
    mean is RMSNorm or LayerNorm of the input times its gain (plus its shift), the gain set to random
    values first so one the norm ignores shows. The quantizer properties are tested on its output."""
    if not h.facts.get("input_norm"):
        return None
    g = torch.Generator().manual_seed(2)
    layer = h.build(torch.randn(16, 32, generator=g))
    what, pre = h.facts["input_norm"], h.norm_of(layer)
    x = torch.randn(6, 32, generator=g) * 3 + 0.5
    gain, shift = torch.ones(32), torch.zeros(32)
    if isinstance(pre, torch.nn.Module):
        with torch.no_grad():
            for name, p in pre.named_parameters():
                if p.dim() == 1 and p.numel() == 32:  # a gain (weight, gain, scale) or a shift (bias, beta)
                    value = torch.rand(32, generator=g) - 0.5 if name.endswith(("bias", "beta")) else \
                        torch.rand(32, generator=g) + 0.5
                    p.copy_(value.to(p))
                    shift, gain = (value, gain) if name.endswith(("bias", "beta")) else (shift, value)
    with torch.no_grad():
        y = pre(x.to(layer.weight.device)).float().cpu()
    fits = {kind: _rel(y, fn(x) * gain + shift) for kind, fn in NORMS}
    kind = min(fits, key=fits.get)
    if fits[kind] < NORM_TOL:
        return PropertyResult("input_norm", "PASS", f"{what}: {kind} of the input" +
                              (" times its gain" if not torch.equal(gain, torch.ones(32)) else "") +
                              f" (relative error {fits[kind]:.1e}); the quantizer properties were tested on its output")
    unit = {k: _rel(y, fn(x)) for k, fn in NORMS}
    cause = (" its gain is not applied" if min(unit.values()) < NORM_TOL and not torch.equal(gain, torch.ones(32))
             else f" the output's RMS is {float(y.pow(2).mean(-1).sqrt().mean()):.3g} (gain and shift removed, a "
                  f"unit norm gives 1)")
    return PropertyResult("input_norm", "FAIL", f"{what} is neither RMSNorm nor LayerNorm of its input (closest: "
                          f"{kind}, relative error {fits[kind]:.2e}):{cause}",
                          "Normalize over the last axis: x * rsqrt(mean(x^2) + eps), times the gain if it has one.",
                          {"input": _values(x[:1]), "output": _values(y[:1])})


def check_layer(h: Harness | Callable[[int, int], torch.nn.Module], max_examples: int | None = 100,
                names: list[str] | None = None, profile: bool = False) -> list[PropertyResult]:
    """Inspect the layer (raises Untestable), then run each property. `h` is a Harness or a bare
    make(in_features, out_features) run on the CPU with 2-D inputs. `profile`: hypothesis' loaded profile
    decides the examples (check_property)."""
    h = h if isinstance(h, Harness) else Harness(h)
    inspect_layer(h)
    results = [check_property(n, c, s, t, h, max_examples, profile) for n, c, s, t in PROPERTIES
               if not names or n in names]
    norm = check_norm(h) if not names or "input_norm" in names else None
    if norm is not None:
        results.insert(0, norm)
    if h.facts["bias"] > 0:
        results.insert(0, PropertyResult(
            "no_bias", "FAIL", f"the layer adds a bias (output at zero input up to {h.facts['bias']:.3g}); the other "
            "properties were tested with it subtracted", "b1.58's BitLinear has no bias: build it with bias=False."))
    return results
