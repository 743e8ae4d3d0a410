"""Numerics probe: where does the first NaN/Inf come from?

Forward hooks on every module record, in execution order, the first one whose output is not
finite; parameters, gradients and optimizer state are scanned; and each quantized layer is fed an
all-zero activation row, the classic source of 0/0 in absmax quantization.
"""
from __future__ import annotations

import torch

from probes.core import Measurement, Subject, Threshold, first_batch, lm_loss, probe, quant_layers

# Any non-finite value is a bug; there is no healthy amount.
NONFINITE = Threshold("nonfinite_findings", warn=None, fail=0, source="healthy runs: always 0")


def _finite(t) -> bool:
    return not isinstance(t, torch.Tensor) or not t.is_floating_point() or bool(torch.isfinite(t).all())


@probe("nonfinite", branch="numerics",
       catches="NaN/Inf in parameters, gradients, optimizer state, activations; all-zero row",
       fails_when="any finding (names the first module)",
       measured="0 vs 1 (absmax without eps)")
def nonfinite(s: Subject):
    """Names the first module whose forward output is NaN/Inf, checks parameters, gradients and
    optimizer state, and that an all-zero activation row gives finite output in every quantized layer."""
    model = s.model
    findings: list[str] = []
    for name, p in model.named_parameters():
        if not _finite(p):
            findings.append(f"parameter {name}")
        if p.grad is not None and not _finite(p.grad):
            findings.append(f"gradient of {name}")
    opt = s.history.optimizer
    if opt is not None:
        for i, state in enumerate(opt.state.values()):
            if any(not _finite(v) for v in state.values()):
                findings.append(f"optimizer state #{i}")
                break
    first_bad: list[str] = []

    def hook(mod, inp, out, name=None):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not first_bad and any(not _finite(o) for o in outs):
            first_bad.append(name)
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            if s.batches:
                x, y = first_batch(s)
            else:
                x = torch.randint(0, s.vocab_size or 2, (2, 16), device=s.device)
                y = None
            model.eval()
            loss = lm_loss(model, x, y) if y is not None else None
    finally:
        for h in handles:
            h.remove()
    if first_bad:
        findings.append(f"forward output of {first_bad[0]} (first non-finite module)")
    if loss is not None and not torch.isfinite(loss):
        findings.append("the loss")
    zero_row = []
    with torch.no_grad():
        for name, m in quant_layers(model, s.layer_pattern):
            out = m(torch.zeros(2, m.weight.shape[1], dtype=m.weight.dtype, device=m.weight.device))
            if not _finite(out):
                zero_row.append(name)
    if zero_row:
        findings.append(f"all-zero input row -> NaN/Inf in {zero_row[0]} ({len(zero_row)} layers)")
    msg = "; ".join(findings) if findings else "all parameters, gradients, activations and zero rows finite"
    hint = ("Clamp the absmax/absmean scales with an eps (1e-5) before dividing." if zero_row else
            "Find the first non-finite module above; lower the LR or use fp32 if it appears during training.")
    return Measurement(len(findings), [NONFINITE], msg, hint,
                       details={"findings": findings, "first_module": first_bad[0] if first_bad else None})
