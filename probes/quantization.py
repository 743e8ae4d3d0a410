"""Quantization probes: are the weights the forward pass uses really ternary, not collapsed, and
does each layer compute what the b1.58 reference computes?

Both probes read a layer's *effective* weight by running it, not by trusting its attributes: a
one-hot input row quantizes exactly (absmax 1 -> code 127 -> 1), so layer(I) is W_eff transposed.
This works for any user's BitLinear that maps (N, in) -> (N, out).
"""
from __future__ import annotations

import torch

from probes import bitlinear as bl
from probes import reference as ref
from probes.core import FAIL, WARN, Measurement, Subject, Threshold, latent_weight, layer_release, probe, quant_layers

# Measured (bitcheck selftest, tiny preset; docs/PROBES.md "Self-test"): the largest zero share of any
# layer is 0.32 at init and 0.378-0.385 after 400 steps (3 seeds); a planted collapse (one outlier
# per layer inflating mean|W|) gives 0.99998.
ZERO_SHARE = Threshold("max_zero_share", warn=0.75, fail=0.9, source="healthy 0.32-0.385; collapse 0.99998")
NON_TERNARY = Threshold("non_ternary_layers", warn=None, fail=0, source="any non-ternary layer is a bug")
# Deviations from b1.58 that still train (issue #22): one scale per output row (per-channel mean|W|: every
# row has one nonzero magnitude, rows differ), and b1 binary codes. A WARN naming the deviation, never a
# FAIL on their own. A layer of >= BINARY_MIN_WEIGHTS weights with one magnitude and no zero code is
# binary (b1): b1.58's absmean rounding gives Gaussian-like latents ~31% zeros (0.32-0.385 measured above).
PER_CHANNEL = Threshold("per_channel_layers", warn=0, fail=None,
                        source="b1.58: one scale per tensor; per-output-channel scales train (a deviation)")
BINARY_MIN_WEIGHTS = 256
BINARY = Threshold("binary_layers", warn=0, fail=None,
                   source="healthy: every layer has zeros; b1 sign codes: none (BitNet b1, a deviation that trains)")
# Flip rate: share of ternary codes that changed between the last two snapshots (100 steps apart in
# quick-arith). Healthy selftest runs: 0.059-0.070 at step 400 (3 seeds). A WARN only: no planted bug needs it (an LR
# blow-up flips 0.056 per 10 steps and is caught by update_ratio), but churn above 0.3 is worth a look.
FLIP_RATE = Threshold("last_flip_rate", warn=0.3, fail=None, source="healthy 0.067 per 100 steps; informational")
# Relative error ||layer(x) - reference(x)|| / ||reference(x)||. Measured: healthy 3e-7 (float32
# rounding); missing activation quant 6.5e-3; full precision 1.13; inverted scale 2093.
REF_ERROR = Threshold("max_relative_error", warn=1e-4, fail=1e-3,
                      source="healthy 3e-7; no act-quant 6.5e-3; fp weights 1.13; inverted scale 2093")


@torch.no_grad()
def effective_weight(layer: torch.nn.Module) -> torch.Tensor:
    """(out, in) weight the layer actually applies, read off its response to one-hot inputs. A layer that
    normalizes its input inside (probes/bitlinear.py) is read through its norm: one-hot rows scaled by
    the norm's own output, or, where the norm mixes features, the weight operand its forward hands to
    the matmul."""
    w = layer.weight
    what, pre = bl.quantizer_input(layer)
    if what != "none":
        read = bl.diagonal_read(layer, pre)
        if read is None:
            read = bl.applied_weight(layer)
        if read is not None:
            return read
    eye = torch.eye(w.shape[1], dtype=w.dtype, device=w.device)  # (in, in)
    return layer(eye).T  # (out, in)


def _levels(mag: torch.Tensor) -> int:
    """Distinct nonzero magnitudes (to 1e-4 of the largest) in a flat |W| tensor."""
    nz = mag[mag > 0]
    return int(torch.unique(torch.round(nz / nz.max() * 1e4)).numel()) if nz.numel() else 0


def ternary_stats(w_eff: torch.Tensor) -> dict:
    """Levels of |W_eff|: a ternary layer has one nonzero magnitude (its scale); `row_levels`: the most
    magnitudes in any output row (1 with several `levels`: one scale per output row, per-channel)."""
    mag = w_eff.abs().double()
    nz = mag[mag > 0]
    scale = nz.max().item() if nz.numel() else 0.0
    levels = _levels(mag.flatten())
    row_levels = max((_levels(row) for row in mag), default=0) if levels > 1 else levels
    n = w_eff.numel()
    return {"scale": scale, "levels": levels, "row_levels": row_levels, "n": n,
            "minus": (w_eff < 0).sum().item() / n, "zero": (w_eff == 0).sum().item() / n,
            "plus": (w_eff > 0).sum().item() / n}


@probe("ternary_distribution", branch="quantization", kind="static",
       catches="collapse to zeros; a layer that is not ternary; binary b1 codes or one scale per output row (WARN: "
               "deviations that train); code churn (WARN)",
       fails_when="zero share > 0.9, any layer with > 1 nonzero magnitude in an output row",
       measured="0.32-0.385 vs collapse 0.99998; 14/14 layers non-ternary with quantization skipped")
def ternary_distribution(s: Subject):
    """Per layer: shares of -1/0/+1 in the effective weights and the scale. FAIL when a layer is not
    ternary (more than one nonzero magnitude) or has collapsed to nearly all zeros; during training
    also the flip rate of the codes between snapshots (stuck vs churning)."""
    layers = quant_layers(s.model, s.layer_pattern)
    if not layers:
        return Measurement(None, [NON_TERNARY], "no quantized layers found")
    release, table = layer_release(s), {}
    for name, m in layers:
        table[name] = ternary_stats(effective_weight(m))
        release()
    per_channel = [n for n, t in table.items() if t["levels"] > 1 and t["row_levels"] == 1]
    non_ternary = [n for n, t in table.items() if t["levels"] > 1 and n not in per_channel]
    binary = [n for n, t in table.items() if t["levels"] == 1 and t["zero"] == 0 and t["n"] >= BINARY_MIN_WEIGHTS]
    zero = max(t["zero"] for t in table.values())
    flips = s.history.flip_rates or []
    values = {"max_zero_share": zero, "non_ternary_layers": len(non_ternary), "binary_layers": len(binary),
              "per_channel_layers": len(per_channel)}
    thresholds = [ZERO_SHARE, NON_TERNARY, BINARY, PER_CHANNEL]
    if flips:
        values["last_flip_rate"] = flips[-1]["rate"]
        thresholds.append(FLIP_RATE)
    worst_layer = max(table, key=lambda n: table[n]["zero"])
    if non_ternary:
        msg = f"{len(non_ternary)}/{len(table)} layers are not ternary (e.g. {non_ternary[0]}: " \
              f"{table[non_ternary[0]]['levels']} magnitudes)"
    elif binary:
        msg = (f"{len(binary)}/{len(table)} layers are binary (b1), not ternary (b1.58): no zero codes (e.g. "
               f"{binary[0]}); b1 trains, but is not the b1.58 design")
    elif per_channel:
        msg = (f"{len(per_channel)}/{len(table)} layers are ternary with one scale per output row (per-channel "
               f"mean|W|, e.g. {per_channel[0]}: {table[per_channel[0]]['levels']} row scales); b1.58 uses one scale "
               "per tensor: a deviation that trains")
    else:
        msg = f"{len(table)} layers ternary; largest zero share {zero:.2f} ({worst_layer})"
    if flips:
        msg += f"; flip rate {flips[-1]['rate']:.3f} at step {flips[-1]['step']}"
    hint = ("The forward pass does not use quantized weights: apply weight_quant (with STE) in every "
            "BitLinear." if non_ternary else
            "b1.58 rounds W / mean|W| to {-1, 0, 1}: sign() gives binary b1 codes." if binary else
            "b1.58 takes one mean|W| over the whole weight, not one per output row." if per_channel else
            "Weights collapsed to zero: an outlier inflates mean|W|, or weight decay/LR is too high.")
    return Measurement(values, thresholds, msg, hint, details={"layers": table, "flip_rates": flips}, values=values)


@probe("quantization_applied", branch="quantization", kind="static",
       catches="full-precision training, 1/mean|W| scale, missing activation quant; per-channel weight scales, b1 "
               "codes, 4-bit activations (WARN: variants that train, each matched exactly)",
       fails_when="relative error vs reference > 1e-3 in a layer no b1.58 variant explains",
       measured="3e-7 vs 6.5e-3 (no act quant), 1.13 (fp), 2093 (inverted scale)")
def quantization_applied(s: Subject):
    """Each quantized layer's output equals the reference BitLinear (probes/reference.py) on the same
    input. Catches full-precision training, mean|W| vs 1/mean|W| scale mix-ups and missing
    activation quantization. Weights within float rounding of the 0.5 code boundary (reference
    near_ties, 0-4 per trained quick model) take the layer's own code: either is right there."""
    layers = quant_layers(s.model, s.layer_pattern)
    if not layers:
        return Measurement(None, [REF_ERROR], "no quantized layers found")
    g = torch.Generator().manual_seed(0)
    errors, norms, deviations = {}, {}, {}
    release = layer_release(s)
    with torch.no_grad():
        for name, m in layers:
            release()
            what, pre = bl.quantizer_input(m)
            if what != "none":
                norms[name] = what
            w = latent_weight(m)
            x = _probe_input(w.shape[1], g).to(w)
            x = bl.clear_input(pre, x) if what != "none" else ref.clear_of_ties(x)
            codes = ref.ternary_codes(w)[0]
            ties = ref.near_ties(w)
            if ties.any():  # float rounding may send these either way: the layer's own code counts
                codes = torch.where(ties, effective_weight(m).sign().to(codes.dtype), codes)
            try:  # (B, T, in) as a language model calls it; (N, in) for a layer that takes only that
                y = m(x)
            except RuntimeError:
                x = x.flatten(0, 1)
                y = m(x)
            want = bl.reference_output(m, pre(x), codes=codes)
            denom = want.norm().item() or 1.0
            errors[name] = (y - want).norm().item() / denom if torch.isfinite(y).all() else float("inf")
            if REF_ERROR.judge(errors[name]) != "PASS" and torch.isfinite(y).all():
                found = _deviation(m, pre(x), y)
                if found is not None:
                    deviations[name] = found
    kept = {n: e for n, e in errors.items() if n not in deviations}
    name, err = max((kept or {"-": 0.0}).items(), key=lambda kv: kv[1])
    inside = (f"; {len(norms)}/{len(layers)} layers normalize their input inside ({next(iter(norms.values()))}): "
              "checked on the norm's output" if norms else "")
    if deviations:
        kinds = sorted(set(deviations.values()))
        inside += (f"; {len(deviations)}/{len(layers)} layers deviate from b1.58 in a way that trains ("
                   f"{', '.join(kinds)}): each matches that variant exactly")
    measured = Measurement(err, [REF_ERROR], f"largest relative error vs reference {err:.2e} ({name}){inside}",
                           "Layer output differs from F.linear(act_quant(x), weight_quant(W)): check the scale "
                           "convention (multiply by mean|W|, not 1/mean|W|), that weights are quantized in forward, "
                           "and that activations are quantized per token to int8.",
                           details={"relative_error": errors, "input_norm": norms, "deviations": deviations})
    if measured.judged() == FAIL and err > 1.0:
        measured.message += " (error > 100%: scale inverted or wrong by orders of magnitude)"
    elif deviations and measured.judged() == "PASS":
        measured.status = WARN
        measured.hint = ("b1.58 uses one mean|W| per weight tensor, ternary codes and per-token int8 activations; "
                         "these layers train, but are not b1.58 (compare before you blame the design)")
    return measured


def _act_quant(x: torch.Tensor, q: float, lo: float, hi: float) -> torch.Tensor:
    """Per-token absmax fake quantization with q / max|x| and codes clamped to [lo, hi] (float64)."""
    x = x.double()
    s = q / x.abs().amax(dim=-1, keepdim=True).clamp(min=ref.EPS)
    return (x * s).round().clamp(lo, hi) / s


def _deviation(layer: torch.nn.Module, x_pre: torch.Tensor, y: torch.Tensor) -> str | None:
    """The b1.58 variant that trains and that the layer computes exactly (relative error <= REF_ERROR.warn)
    on the quantizer's input x_pre, or None: one weight scale per output row (per-channel), binary b1
    codes (both read off the weight the layer applies, with per-token int8 activations), or 4-bit
    per-token activations with the b1.58 weight."""
    bias = bl._bias(layer)
    y64 = y.double()

    def close(want: torch.Tensor) -> bool:
        want = want + (bias.double() if isinstance(bias, torch.Tensor) else bias)
        return float((y64 - want).norm() / want.norm().clamp(min=1e-30)) <= REF_ERROR.warn
    w_eff = effective_weight(layer).double()
    stats = ternary_stats(w_eff)
    per_channel = stats["levels"] > 1 and stats["row_levels"] == 1
    binary = stats["levels"] == 1 and stats["zero"] == 0
    if (per_channel or binary) and close(ref.dequant_activations(x_pre).double() @ w_eff.T):
        return "per-channel weight scales" if per_channel else "binary (b1) weights"
    codes, gamma = ref.ternary_codes(latent_weight(layer))
    w_ref = codes.double() * gamma
    for q in (7, 8):
        if close(_act_quant(x_pre, q, -8, 7) @ w_ref.T):
            return "4-bit activations"
    return None


def _probe_input(n: int, g: torch.Generator) -> torch.Tensor:
    """(2, 8, n) Gaussian tokens at scales 1/4..2, with an all-zero token (must match and stay finite) and a
    token with one outlier feature: under a scale shared across the sequence (or a norm inside the layer
    followed by one), the outlier coarsens the other tokens' grid and the output leaves the reference."""
    x = torch.randn(2, 8, n, generator=g) * 2.0 ** (torch.arange(8) % 4 - 2).view(1, 8, 1)
    x[0, 0] = 0.0
    x[1, -1, 0] = 8.0 * n ** 0.5
    return x


class FlipWatch:
    """Training-time watcher: every `every` steps, the share of ternary codes (of the latent weights,
    by the reference quantizer) that changed since the previous snapshot."""

    def __init__(self, every: int = 100, pattern: str | None = None):
        self.every, self.pattern = every, pattern
        self.records: list[dict] = []
        self._prev: dict | None = None

    def before_step(self, model, step: int) -> None:
        pass

    def after_step(self, model, step: int) -> None:
        if (step + 1) % self.every:
            return
        codes = {n: ref.ternary_codes(latent_weight(m))[0] for n, m in quant_layers(model, self.pattern)}
        if self._prev is not None:
            changed = sum(int((codes[n] != self._prev[n]).sum()) for n in codes)
            total = sum(c.numel() for c in codes.values())
            self.records.append({"step": step + 1, "rate": changed / max(total, 1)})
        self._prev = codes


# Per-token activation scale: each token's output of a quantized layer must not depend on the other
# tokens' inputs (b1.58 takes absmax per token). The probe scales the last token of the layer's real
# input (captured on the first batch, in the shape the model feeds it: (B, T, in) or (N, in)) by
# TOKEN_BOOST, so that token holds the largest |x| of every row, column and of the tensor, and measures
# the change of every *other* token's output. Measured (tests' user model, tests/test_root_cause.py;
# bitcheck's tiny preset, selftest): per-token absmax exactly 0 (every healthy model); one scale per
# tensor 0.086 / 0.083; absmax over the sequence axis (one scale per feature column) 0.017 / 0.013.
TOKEN_BOOST = 8.0
OTHER_TOKENS = Threshold("max_other_token_change", warn=1e-5, fail=1e-3,
                         source="per-token absmax 0; per-sequence 0.013-0.017, per-tensor 0.083-0.086")


def layer_inputs(model: torch.nn.Module, layers: list, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The first input each layer receives in a forward pass of the model on ids x (B, T)."""
    from probes.core import logits_of
    inputs: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(module, args, output):  # returns None: the output is left alone
            inputs.setdefault(name, args[0].detach())
        return hook
    hooks = [m.register_forward_hook(capture(n)) for n, m in layers]
    try:
        with torch.no_grad():
            logits_of(model.eval(), x)
    finally:
        for h in hooks:
            h.remove()
    return inputs


def other_token_change(layer: torch.nn.Module, inp: torch.Tensor) -> float:
    """max over tokens but the last of |layer(x') - layer(x)| / max|layer(x)|, where x' is x with its last
    token (along dim -2) scaled by TOKEN_BOOST and given one outlier feature. 0 for any per-token quantizer.
    The outlier is what a norm inside the layer keeps: it rescales the boosted token back to RMS 1, but
    that token's absmax after the norm stays ~sqrt(in) against ~3 for the others."""
    boosted = inp.clone()
    boosted[..., -1, :] *= TOKEN_BOOST
    boosted[..., -1, 0] = TOKEN_BOOST * inp.shape[-1] ** 0.5 * inp.abs().max().clamp(min=1e-6)
    with torch.no_grad():
        a, b = layer(inp)[..., :-1, :], layer(boosted)[..., :-1, :]
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-30))


@probe("per_token_scale", branch="quantization", needs=("batches",), kind="static",
       catches="activation absmax taken per tensor or over the sequence axis instead of per token (it also "
               "leaks the future into the past)",
       fails_when="another token's output moves by > 1e-3 (relative) when one token's input grows 8x",
       measured="per-token 0 vs 0.013-0.017 (per feature column over the sequence), 0.083-0.086 (per tensor)")
def per_token_scale(s: Subject):
    """Each quantized layer quantizes activations per token: on its real input, scaling one token
    up leaves every other token's output unchanged."""
    from probes.core import first_batch
    layers = quant_layers(s.model, s.layer_pattern)
    if not layers:
        return Measurement(None, [OTHER_TOKENS], "no quantized layers found")
    x = first_batch(s)[0][:2, :16]
    inputs = layer_inputs(s.model, layers, x)
    modules = dict(layers)
    changes = {n: other_token_change(modules[n], inp) for n, inp in inputs.items() if inp.dim() >= 2 and inp.shape[-2] > 1}
    if not changes:
        return Measurement(None, [OTHER_TOKENS], "no quantized layer ran on more than one token")
    worst = max(changes, key=changes.get)
    return Measurement(changes[worst], [OTHER_TOKENS],
                       f"scaling one token's input {TOKEN_BOOST:g}x moves other tokens' outputs by "
                       f"{changes[worst]:.1e} ({worst})"
                       + (": the activation scale is shared across tokens (per tensor or over the sequence axis), "
                          "not per token" if changes[worst] > OTHER_TOKENS.fail else ""),
                       "Take the activation absmax per token: x.abs().amax(dim=-1, keepdim=True) over the features, "
                       "not over the sequence axis or the whole tensor (a shared scale also leaks future tokens "
                       "into earlier positions).", details={"other_token_change": changes})
