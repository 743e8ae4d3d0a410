"""Reference BitNet b1.58 math, written independently of bitcheck/model.py.

A bug in the BitLinear under test must not be able to hide itself, so this file shares no code
with it and computes the same quantities a second way: integer codes and scales explicitly, in
float64, with the integer matmul available as its own path.

    codes, scale = ternary_codes(w)             # codes in {-1, 0, 1} (int8), scale = mean|W|
    q, inv = int8_activations(x)                # q in [-128, 127] (int8), x ~= q / inv per token
    y = bitlinear(x, w)                         # fake-quantized output, like training computes it
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


def ternary_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes in {-1, 0, 1} and the per-tensor scale gamma = max(mean|W|, eps)."""
    w64 = w.detach().to(torch.float64)
    gamma = torch.clamp(torch.mean(torch.abs(w64)), min=EPS)
    codes = torch.clamp(torch.round(w64 / gamma), -1, 1).to(torch.int8)
    return codes, gamma


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


def bitlinear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Fake-quantized forward: dequantized int8 activations times dequantized ternary weights."""
    xq = dequant_activations(x).to(torch.float64)
    wq = dequant_weight(w).to(torch.float64)
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
    xq = dequant_activations(x).to(torch.float64).reshape(-1, x.shape[-1])  # (N, in)
    wq = dequant_weight(w).to(torch.float64)  # (out, in)
    gx = (g @ wq).reshape(x.shape).to(x.dtype)
    gw = (g.T @ xq).to(w.dtype)
    return gx, gw
