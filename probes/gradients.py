"""Gradient and optimizer probes: does the straight-through estimator deliver the right gradient to
every latent weight, and are the optimizer's steps a sane size?

STE reference: with both quantizers passed through as the identity, a layer y = Xq Wq^T receives
dL/dW = grad_y^T Xq. Hooks capture each layer's real input and output gradient on one backward
pass, and probes/reference.py computes what the weight gradient must then be.
"""
from __future__ import annotations

import math
import re
from contextlib import nullcontext

import torch

from probes import bitlinear as bl
from probes import reference as ref
from probes.core import (
    SKIP,
    Measurement,
    Subject,
    Threshold,
    first_batch,
    large_on_cpu,
    latent_weight,
    lm_loss,
    probe,
    quant_layers,
    release_freed_memory,
)

# Relative error of each latent weight's gradient against the STE reference. Measured (selftest):
# healthy 1e-5 at init, 6e-5 trained (float32); STE missing: 1.0.
STE_ERROR = Threshold("max_relative_error", warn=1e-3, fail=1e-2, source="healthy 1e-5..6e-5; no STE 1.0")
DEAD_LAYERS = Threshold("zero_or_nonfinite_layers", warn=None, fail=0, source="any dead layer is a bug")
# Mean ||grad|| of the first block's quantized layers over that of the last block's. Measured:
# healthy 1.4-3.0 at init (32-wide test model, 3 seeds) and 1.65-2.14 trained (selftest, 3 seeds).
# No planted bug moves it (it is the generic vanishing/exploding check); outside [1e-3, 1e3]
# gradients vanish or explode through depth.
DEPTH_RATIO_HIGH = Threshold("first_last_ratio", warn=1e2, fail=1e3, source="healthy 1.4-3.0")
DEPTH_RATIO_LOW = Threshold("first_last_ratio_low", warn=1e-2, fail=1e-3, higher_is_worse=False,
                            source="healthy 1.4-3.0")
# Per-step update size ||dW|| / ||W|| of the latent weights (median over layers, recorded during
# training). Measured (selftest, LR 3e-3, 3 seeds): healthy 0.0023-0.022; LR 1.0 (x300): 4.8.
UPDATE_RATIO = Threshold("max_median_update_ratio", warn=0.3, fail=1.0, source="healthy 0.0023-0.022; LR x300 4.8")
UPDATE_RATIO_LOW = Threshold("min_median_update_ratio", warn=1e-6, fail=None, higher_is_worse=False,
                             source="healthy >= 0.0023 (selftest); a WARN for an optimizer that stopped")


# On a large model on a CPU (probes.core.large_on_cpu) the gradient pass takes GRAD_PASS_LARGE_ROWS rows of the
# batch: the seed design's 95M held ~1.2 GB of saved activations and quantized weights for 8 rows of 64 tokens (the
# quantized weights, 283 MB, do not shrink with the batch; the activations and the 32,000-way logits do).
# The STE comparison is exact on any batch and every layer still gets its gradient (benchmarks/diagnose_95m.py).
GRAD_PASS_LARGE_ROWS = 1


@probe("ste_gradient_flow", branch="gradients", needs=("batches",),
       catches="missing STE, dead layers, vanishing/exploding depth ratio",
       fails_when="STE error > 1e-2, any zero/NaN gradient, block ratio outside [1e-3, 1e3]",
       measured="1e-5..6e-5 vs 1.0 (no STE); block ratio 1.4-3.0 healthy")
def ste_gradient_flow(s: Subject):
    """After one backward pass every quantized layer's latent weight has a finite, non-zero gradient
    equal to the STE reference; the gradient-norm ratio between first and last layers is sane.

    Each layer's gradient is judged the moment it has accumulated and then freed, so a 95M-parameter
    model's quantized layers never hold all their gradients at once (benchmarks/diagnose_95m.py). Other
    parameters keep requires_grad: freezing them would cut the gradient of a model that recomputes
    activations (reentrant checkpointing needs an input that requires grad)."""
    model = s.model
    layers = quant_layers(model, s.layer_pattern)
    if not layers:
        return Measurement(None, [DEAD_LAYERS], "no quantized layers found")
    weights = {name: latent_weight(m) for name, m in layers}
    inputs, gouts, table, errors, dead, handles = {}, {}, {}, {}, set(), []

    # On a large model on a CPU, the memory each layer's forward and check free goes back to the system at once:
    # glibc otherwise keeps the weight-sized temporaries in its heap between the saved tensors, and the 95M
    # design's pass peaked at +0.8 GB over the model instead of +0.5 (benchmarks/diagnose_95m.py, docs/COMMANDS.md)
    large = large_on_cpu(s)  # one row, the saved quantized weights packed (_pack_ternary), memory returned per layer
    release = release_freed_memory if large else (lambda: None)
    judging = []  # non-empty while a layer is judged: quantizer_input calls the layer, which is not the pass

    def judge_layer(name: str, m, g: torch.Tensor) -> None:
        table[name] = norm = g.norm().item()
        x, gout = inputs.pop(name, None), gouts.pop(name, None)
        if not torch.isfinite(g).all() or norm == 0.0:
            dead.add(name)
        if name in dead or x is None or gout is None:
            errors[name] = 1.0
            return
        judging.append(name)
        try:
            _, pre = bl.quantizer_input(m)  # a norm inside the layer: the quantizer sees its output
            with torch.no_grad():
                want = ref.ste_weight_grad(pre(x), weights[name], gout)
        finally:
            judging.pop()
        errors[name] = (g - want).norm().item() / max(want.norm().item(), 1e-30)

    def on_forward(mod, inp, out, n):
        if judging:
            return
        release()  # the layer's quantizer temporaries, freed: back to the system before the next layer's
        inputs[n] = inp[0].detach()
        if isinstance(out, torch.Tensor) and out.requires_grad:  # dL/d(output), before the weight's gradient
            out.register_hook(lambda g, n=n: gouts.__setitem__(n, g.detach()))

    sharing: dict[int, list] = {}  # latent weight -> the layers that use it (one hook judges them all)
    for name, m in layers:
        sharing.setdefault(id(weights[name]), []).append((name, m))

    def on_grad(p):
        for n, m in sharing[id(p)]:
            judge_layer(n, m, p.grad)
        p.grad = None
        release()

    for name, m in layers:
        handles.append(m.register_forward_hook(lambda mod, inp, out, n=name: on_forward(mod, inp, out, n)))
    for group in sharing.values():
        w = weights[group[0][0]]
        if w.requires_grad and w.is_leaf:
            handles.append(w.register_post_accumulate_grad_hook(on_grad))
    model.train()
    model.zero_grad(set_to_none=True)
    x, y = first_batch(s)
    if large:
        x, y = x[:GRAD_PASS_LARGE_ROWS], y[:GRAD_PASS_LARGE_ROWS]
    try:
        with (torch.autograd.graph.saved_tensors_hooks(_pack_ternary, _unpack_ternary) if large else nullcontext()):
            loss = lm_loss(model, x, y)
            if loss.requires_grad:  # else no latent weight is on a differentiable path (STE missing everywhere)
                loss.backward()
    finally:
        for h in handles:
            h.remove()
    for name, _ in layers:
        if name not in table:  # no gradient reached the latent weight at all
            table[name], errors[name] = 0.0, 1.0
            dead.add(name)
    table = {name: table[name] for name, _ in layers}  # in the model's order
    dead = [name for name in table if name in dead]
    model.zero_grad(set_to_none=True)
    first, last = _depth_ends(table)
    ratio = first / last if last > 0 else math.inf
    worst = max(errors, key=errors.get)
    values = {"max_relative_error": errors[worst], "zero_or_nonfinite_layers": len(dead),
              "first_last_ratio": ratio, "first_last_ratio_low": ratio}
    msg = (f"{len(dead)}/{len(layers)} layers get no usable gradient (e.g. {dead[0]})" if dead else
           f"all {len(layers)} layers get gradients; worst STE error {errors[worst]:.1e} ({worst}); "
           f"first/last norm ratio {ratio:.3g}")
    return Measurement(values, [STE_ERROR, DEAD_LAYERS, DEPTH_RATIO_HIGH, DEPTH_RATIO_LOW], msg,
                       "Latent weights must receive gradients through the quantizer: write it as "
                       "w + (quant(w) - w).detach() (and likewise for activations); round() alone has zero gradient.",
                       details={"grad_norm": table, "relative_error": errors}, values=values)


# Autograd keeps every quantized layer's weight w + (q(w) - w).detach() for the backward: a float copy of the
# model's quantized weights (283 MB of the 95M design). On a large model on a CPU such a tensor, ternary times one
# scale up to float rounding (|w + (q - w) - q| <= 1 ulp of q), is kept as int8 codes and the scale: a quarter of
# the bytes; each value comes back within 1e-6 of itself, far below STE_ERROR's 1e-2. Any other saved tensor
# (activations, per-channel scales, a parameter itself) is kept as it is.
PACK_MIN_NUMEL = 1 << 16


def _pack_ternary(t: torch.Tensor):
    if t.numel() < PACK_MIN_NUMEL or not t.is_floating_point() or t.is_leaf or t.dim() != 2:
        return t
    d = t.detach()
    scale = d.abs().amax()
    if not torch.isfinite(scale) or scale == 0:
        return t
    codes = torch.round(d / scale)
    if float((d - codes * scale).abs().amax()) > 1e-6 * float(scale):
        return t
    return codes.to(torch.int8), scale, t.dtype


def _unpack_ternary(packed):
    if isinstance(packed, torch.Tensor):
        return packed
    codes, scale, dtype = packed
    return (codes.to(dtype) * scale).to(dtype)


def _depth_ends(table: dict[str, float]) -> tuple[float, float]:
    """Mean gradient norm of the first and of the last block. The block is the first integer in a
    layer's name (blocks.3.attn.q_proj -> 3); comparing whole blocks, not single layers, keeps a
    naturally small q_proj gradient at init from reading as vanishing. Without numbers: first/last layer."""
    depth = {n: int(m.group()) for n in table if (m := re.search(r"\d+", n))}
    if len(set(depth.values())) < 2:
        names = list(table)
        return table[names[0]], table[names[-1]]
    lo, hi = min(depth.values()), max(depth.values())
    first = [table[n] for n, d in depth.items() if d == lo]
    last = [table[n] for n, d in depth.items() if d == hi]
    return sum(first) / len(first), sum(last) / len(last)


@probe("update_ratio", branch="optimizer", kind="training",
       catches="LR blow-up",
       fails_when="median per-step ||dW||/||W|| > 1.0",
       measured="0.0023-0.022 vs 4.8 (LR x300)")
def update_ratio(s: Subject):
    """Per-layer ||delta W|| / ||W|| of optimizer steps recorded during training (UpdateWatch), within
    a healthy band: far above it the learning rate blows the weights around, far below nothing learns."""
    records = s.history.update_ratios or []
    if not records:
        return Measurement(message="no update ratios were recorded during training", status=SKIP)
    medians = [r["median"] for r in records]
    values = {"max_median_update_ratio": max(medians), "min_median_update_ratio": min(medians)}
    peak = max(records, key=lambda r: r["median"])
    return Measurement(values, [UPDATE_RATIO, UPDATE_RATIO_LOW],
                       f"median update ratio {min(medians):.2e}..{max(medians):.2e} over {len(records)} samples "
                       f"(peak at step {peak['step']})",
                       "Updates are far too large: lower the learning rate (ternary latents flip wholesale).",
                       details={"records": records}, values=values)


class UpdateWatch:
    """Training-time watcher: every `every` steps, ||W_after - W_before|| / ||W_before|| per quantized layer."""

    def __init__(self, every: int = 50, pattern: str | None = None):
        self.every, self.pattern = every, pattern
        self.records: list[dict] = []
        self._before: dict | None = None

    def before_step(self, model, step: int) -> None:
        self._before = None
        if step % self.every == 0:
            self._before = {n: latent_weight(m).detach().clone() for n, m in quant_layers(model, self.pattern)}

    def after_step(self, model, step: int) -> None:
        if self._before is None:
            return
        ratios = {}
        for n, m in quant_layers(model, self.pattern):
            w0 = self._before[n]
            ratios[n] = ((latent_weight(m).detach() - w0).norm() / w0.norm().clamp(min=1e-12)).item()
        vals = sorted(ratios.values())
        self.records.append({"step": step, "median": vals[len(vals) // 2], "max": vals[-1]})
        self._before = None
