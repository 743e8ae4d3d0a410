"""Reference BitNet b1.58 math, written independently of bitcheck/bitnet/model.py.

A bug in the BitLinear under test must not be able to hide itself, so this file shares no code
with it and computes the same quantities a second way: integer codes and scales explicitly, in
float64, with the integer matmul available as its own path.

    codes, scale = ternary_codes(w)             # codes in {-1, 0, 1} (int8), scale = mean|W|
    q, inv = int8_activations(x)                # q in [-128, 127] (int8), x ~= q / inv per token
    y = bitlinear(x, w)                         # fake-quantized output, like training computes it
    ties = near_ties(w)                         # weights float32 may round either way (|W| ~ 0.5 gamma)
    y_int = bitlinear_integer(x, w)             # the packed-inference path: integer accumulate, then scale
    gx, gw = ste_grads(x, w, grad_out)          # what a straight-through estimator must give

References: Ma et al. 2024 "The Era of 1-bit LLMs" and its training-tips note (absmean weight
quantization with eps 1e-5, per-token absmax int8 activations, STE). Not covered: per-group or
per-channel weight scales (b1.58 uses one scale per tensor).
"""
from __future__ import annotations

import torch

EPS = 1e-5  # b1.58's floor on both scales
QMAX, QMIN = 127, -128
# A float32 layer computes W / mean|W| with a rounded mean (cascade summation: relative error up to
# ~log2(n) ulps) and a rounded quotient, so a weight whose |W| / gamma lies within a few ulps of the
# 0.5 boundary may legitimately get the other code than this float64 reference gives. Measured: of 36
# trained quick-run checkpoints (~420K quantized weights each) one had such a weight, 2.3e-8 from the
# boundary, and that single code moved a layer's output by 7e-3 relative, a false FAIL. 16 ulps of
# the weight's dtype (1.9e-6 for float32) covers the summation error; healthy checkpoints' nearest
# weights sit 3.6e-7..1e-5 from the boundary; 11 of 36 checkpoints have 1-4 weights inside.
TIE_ULPS = 16
# Activations: the probe inputs keep every scaled element this far (in int8 code units) from a .5
# boundary, so an act-quant written as x / max * 127 rather than x * (127 / max) rounds the same.
ACT_TIE_MARGIN = 1e-3


def ternary_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes in {-1, 0, 1} and the per-tensor scale gamma = max(mean|W|, eps)."""
    w64 = w.detach().to(torch.float64)
    gamma = torch.clamp(torch.mean(torch.abs(w64)), min=EPS)
    codes = torch.clamp(torch.round(w64 / gamma), -1, 1).to(torch.int8)
    return codes, gamma


def near_ties(w: torch.Tensor) -> torch.Tensor:
    """Bool mask (out, in) of weights whose code depends on float rounding: ||W| / gamma - 0.5| is
    within TIE_ULPS ulps of w's dtype. A checker takes the tested layer's own code there."""
    w64 = w.detach().to(torch.float64)
    gamma = torch.clamp(torch.mean(torch.abs(w64)), min=EPS)
    tol = TIE_ULPS * torch.finfo(w.dtype).eps
    return (torch.abs(w64) / gamma - 0.5).abs() < tol


def clear_of_ties(x: torch.Tensor) -> torch.Tensor:
    """x with every element whose scaled value x * 127 / max|x| lies within ACT_TIE_MARGIN of a .5
    rounding boundary moved 10 margins away (never the row's absmax, which scales to exactly 127)."""
    x64 = x.detach().to(torch.float64)
    inv = QMAX / torch.clamp(torch.amax(torch.abs(x64), dim=-1, keepdim=True), min=EPS)
    scaled = x64 * inv
    frac = scaled - torch.floor(scaled)
    tied = (frac - 0.5).abs() < ACT_TIE_MARGIN
    return torch.where(tied, (scaled + 10 * ACT_TIE_MARGIN) / inv, x64).to(x.dtype)


def dequant_weight(w: torch.Tensor) -> torch.Tensor:
    codes, gamma = ternary_codes(w)
    return (codes.to(torch.float64) * gamma).to(w.dtype)


def int8_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token int8 codes and the per-token factor 127 / max(max|x|, eps) (shape (..., 1))."""
    x64 = x.detach().to(torch.float64)
    absmax = torch.clamp(torch.amax(torch.abs(x64), dim=-1, keepdim=True), min=EPS)
    inv = QMAX / absmax
    q = torch.clamp(torch.round(x64 * inv), QMIN, QMAX).to(torch.int8)
    return q, inv


def dequant_activations(x: torch.Tensor) -> torch.Tensor:
    q, inv = int8_activations(x)
    return (q.to(torch.float64) / inv).to(x.dtype)


def bitlinear(x: torch.Tensor, w: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantized forward: dequantized int8 activations times dequantized ternary weights.
    `codes` (out, in) replaces the reference's own ternary codes (e.g. at near_ties)."""
    xq = dequant_activations(x).to(torch.float64)
    own, gamma = ternary_codes(w)
    wq = (own if codes is None else codes).to(torch.float64) * gamma
    return (xq @ wq.T).to(x.dtype)


def bitlinear_integer(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The integer path of packed inference: int8 x ternary accumulated exactly in int64, then
    one multiply by gamma and one divide by the activation factor. Equals `bitlinear` up to
    float rounding; a model whose training path disagrees with this will not survive export."""
    q, inv = int8_activations(x)
    codes, gamma = ternary_codes(w)
    acc = q.to(torch.int64) @ codes.to(torch.int64).T  # exact integer accumulation
    return (acc.to(torch.float64) * gamma / inv).to(x.dtype)


def ste_grads(x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of sum(grad_out * bitlinear(x, w)) under the straight-through estimator: both
    quantizers count as the identity, so dL/dx = grad_out @ Wq and dL/dW = grad_out^T @ Xq."""
    g = grad_out.detach().to(torch.float64).reshape(-1, grad_out.shape[-1])  # (N, out)
    wq = dequant_weight(w).to(torch.float64)  # (out, in)
    gx = (g @ wq).reshape(x.shape).to(x.dtype)
    return gx, ste_weight_grad(x, w, grad_out)


def ste_weight_grad(x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """ste_grads' dL/dW = grad_out^T @ Xq alone, (out, in) in w's dtype: no copy of the weight is made, so a large
    layer's check costs its activations only."""
    g = grad_out.detach().to(torch.float64).reshape(-1, grad_out.shape[-1])  # (N, out)
    xq = dequant_activations(x).to(torch.float64).reshape(-1, x.shape[-1])  # (N, in)
    return (g.T @ xq).to(w.dtype)
