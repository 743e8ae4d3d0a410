"""Reading a user's BitLinear as it is written: what its quantizers see, and which weight its forward applies.

Users write BitLinear in many correct shapes. The activation quantizer may see the layer's input as
given, or that input after a normalization *inside* the layer: a parameter-free RMSNorm (the b1.58
"training tips" code), an RMSNorm with a gain or a LayerNorm (the original BitNet's SubLN,
transformers' `AutoBitLinear(use_rms_norm=True)`). The weight may be quantized before the matmul,
as integer codes with the scale applied after it, through a custom `autograd.Function` or a tensor
subclass. The probes compare a layer with the reference (probes/reference.py) on the quantizer's own
input, so a norm counts as part of the input, never as a deviation of the quantizer:

    pre = quantizer_input(layer)          # x (..., in) -> what the activation quantizer sees (..., in)
    reference_output(layer, pre(x))       # what the layer must compute on x (plus its bias)
    w = applied_weight(layer)             # (out, in): the weight operand its forward hands to the matmul

A norm inside is recognised by behaviour, not by name: a layer that quantizes per token is positively
homogeneous (layer(c x) = c layer(x) without bias), a layer that normalizes first is scale invariant
(layer(c x) = layer(x)). The norm is then the layer's child module that receives the layer's input
(any class), or, where the forward normalizes functionally, the parameter-free RMSNorm or LayerNorm
whose reference output fits the layer best.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from probes import reference as ref
from probes.core import latent_weight

# Scale invariance: layer(4x) against layer(x), relative, on inputs of RMS ~1. A norm inside gives the
# norm's eps effect and rounding only (~1e-6 in float32, ~1e-2 in bf16); a plain layer differs by 3x (300%),
# exactly (per-token absmax is homogeneous: 4x scales every code's dequantized value by 4).
SCALE_INVARIANT = 0.1
NORM_EPS = 1e-6  # a functional norm's eps: 1e-5 or 1e-6 both change an RMS-1 input by < 1e-5


class _MatmulOperands(TorchFunctionMode):
    """Records the operands of every linear / matmul call made inside the `with` block."""
    CALLS = {F.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm}

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.CALLS and len(args) >= 2 and all(isinstance(a, torch.Tensor) for a in args[:2]):
            self.calls.append((args[0].detach(), args[1].detach()))
        elif func is F.linear and args and "weight" in kwargs:
            self.calls.append((args[0].detach(), kwargs["weight"].detach()))
        return func(*args, **kwargs)


def _latent(layer: torch.nn.Module) -> torch.Tensor:
    return latent_weight(layer).detach()


@torch.no_grad()
def applied_weight(layer: torch.nn.Module, x: torch.Tensor | None = None) -> torch.Tensor | None:
    """(out, in): the weight operand the layer's forward hands to F.linear or a matmul (the one that
    correlates best with the latent weight, oriented like it), or None when its forward calls neither
    (a custom kernel). Codes applied before a separate scale come back as codes."""
    w = _latent(layer)
    out_f, in_f = w.shape
    if x is None:
        x = torch.randn(2, in_f, generator=torch.Generator().manual_seed(0)).to(w)
    mode = _MatmulOperands()
    with mode:
        layer(x)
    best, best_fit = None, -1.0
    for _, op in mode.calls:
        for cand in (op, op.T) if op.dim() == 2 else ():
            if cand.shape != (out_f, in_f):
                continue
            a, b = cand.double().flatten(), w.double().flatten()
            fit = float((a @ b).abs() / (a.norm() * b.norm()).clamp(min=1e-30))
            if fit > best_fit:
                best, best_fit = cand, fit
    return best


def clear_input(pre: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """x moved so that pre(x) lies clear of the activation quantizer's rounding ties (ref.clear_of_ties),
    for a per-element norm: each tied element of pre(x) is moved by the element's own gain pre(x)/x."""
    for _ in range(rounds):
        xp = pre(x)
        cleared = ref.clear_of_ties(xp)
        if torch.equal(cleared, xp):
            break
        gain = torch.where(x != 0, xp / torch.where(x != 0, x, torch.ones_like(x)), torch.ones_like(x))
        x = torch.where(cleared != xp, x + (cleared - xp) / torch.where(gain != 0, gain, torch.ones_like(gain)), x)
    return x


@torch.no_grad()
def diagonal_read(layer: torch.nn.Module, pre: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    """(out, in): the applied weight read off one-hot inputs (scaled to RMS 1) through a per-element norm:
    each one-hot row quantizes exactly, so the response is W_eff times the norm's output on that row.
    None when the norm mixes features (a LayerNorm's output of a one-hot row is not one-hot)."""
    w = _latent(layer)
    n = w.shape[1]
    eye = torch.eye(n, dtype=w.dtype, device=w.device) * n ** 0.5  # (in, in), each row of RMS 1
    normed = pre(eye)
    diag = torch.diagonal(normed)
    if not torch.equal(normed, torch.diag_embed(diag)) or not bool((diag != 0).all()):
        return None
    return ((layer(eye) - _bias(layer)) / diag[:, None]).T


def _child_norm(layer: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module | None:
    """The child module that receives the layer's own input and keeps its shape (its input norm)."""
    seen: list[torch.nn.Module] = []
    handles = [m.register_forward_hook(
        lambda mod, inp, out: seen.append(mod) if inp and isinstance(inp[0], torch.Tensor) and inp[0].shape == x.shape
        and torch.equal(inp[0], x) and isinstance(out, torch.Tensor) and out.shape == x.shape else None)
        for _, m in layer.named_children()]
    try:
        layer(x)
    finally:
        for h in handles:
            h.remove()
    return seen[0] if seen else None


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMSNorm over the last axis (the b1.58 training-tips code)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free LayerNorm over the last axis."""
    return F.layer_norm(x, x.shape[-1:], eps=NORM_EPS)


def _bias(layer: torch.nn.Module) -> torch.Tensor | float:
    b = getattr(layer, "bias", None)
    return b.detach() if isinstance(b, torch.Tensor) else 0.0


def reference_output(layer: torch.nn.Module, x_pre: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
    """(..., out): the b1.58 reference on the quantizer's input, plus the layer's bias."""
    return ref.bitlinear(x_pre, _latent(layer).to(x_pre.dtype), codes=codes) + _bias(layer)


@torch.no_grad()
def quantizer_input(layer: torch.nn.Module) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """(description, pre): `pre(x)` is what the layer's activation quantizer sees for the input x
    (..., in): x itself, or x after the norm inside the layer. `description` says which, for reports:
    "none", "module <name> (<class>)", "functional RMSNorm" or "functional LayerNorm"."""
    w = _latent(layer)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, w.shape[1], generator=g).to(w)
    try:
        y1 = layer(x).float()
    except RuntimeError:  # a layer that takes only (B, T, in)
        x = x[None]
        y1 = layer(x).float()
    y4 = layer(4 * x).float()
    b = _bias(layer)
    plain = ((y4 - b) - 4 * (y1 - b)).norm() / (4 * (y1 - b)).norm().clamp(min=1e-30)
    invariant = (y4 - y1).norm() / y1.norm().clamp(min=1e-30)
    if not invariant < SCALE_INVARIANT or not invariant < plain:
        return "none", lambda t: t
    child = _child_norm(layer, x)
    if child is not None:
        name = next(n for n, m in layer.named_children() if m is child)
        return f"module {name} ({type(child).__name__})", child
    # a functional norm: the parameter-free one whose reference output fits the layer's
    fits = {}
    for what, fn in (("functional RMSNorm", rms_norm), ("functional LayerNorm", layer_norm)):
        want = reference_output(layer, fn(ref.clear_of_ties(x)))
        fits[what] = float((layer(ref.clear_of_ties(x)) - want).norm() / want.norm().clamp(min=1e-30))
    what = min(fits, key=fits.get)
    return what, rms_norm if what == "functional RMSNorm" else layer_norm
