"""BitLinear as users write it, with a norm *inside* the layer before the activation quantizer, each
written apart from bitcheck and from each other (tests/test_layer_designs.py):

- `TipsBitLinear`: the b1.58 "training tips" shape: a parameter-free RMSNorm computed in forward, then
  both quantizers as `x + (q(x) - x).detach()`, then F.linear.
- `GainedBitLinear`: an RMSNorm child module with a learned gain, the STE as a custom autograd.Function,
  codes applied in the matmul and both scales after it, and a bias.
- `SubLNBitLinear`: the original BitNet's SubLN: a LayerNorm child, weights quantized through
  `torch.nn.utils.parametrize`, `x @ W.T` instead of F.linear.

Each has `per_sequence=True`, the real bug seen in public code at its buggy commit: one activation
scale for the whole (B, T, in) input instead of one per token.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize


def _absmax(x: torch.Tensor, per_sequence: bool) -> torch.Tensor:
    dims = tuple(range(1, x.dim())) if per_sequence and x.dim() > 2 else (-1,)
    return x.abs().amax(dim=dims, keepdim=True).clamp(min=1e-5)


class TipsBitLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = False, per_sequence: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self.per_sequence = per_sequence

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)  # RMSNorm, no gain
        s = 127.0 / _absmax(x, self.per_sequence)
        x_q = x + ((x * s).round().clamp(-128, 127) / s - x).detach()
        w = self.weight
        gamma = w.abs().mean().clamp(min=1e-5)
        w_q = w + ((w / gamma).round().clamp(-1, 1) * gamma - w).detach()
        return F.linear(x_q, w_q, self.bias)


class _Codes(torch.autograd.Function):
    """round() and clamp forward, identity backward: the STE as a custom Function (both inside it, so
    the clamp does not zero the gradient of the weights beyond the scale)."""
    @staticmethod
    def forward(ctx, t, lo, hi):
        return t.round().clamp(lo, hi)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps, self.gain = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.gain * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class GainedBitLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, per_sequence: bool = False):
        super().__init__()
        self.norm = RMSNorm(in_features)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * in_features ** -0.5)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.per_sequence = per_sequence

    def forward(self, x):
        x = self.norm(x)
        s_x = 127.0 / _absmax(x, self.per_sequence).detach()  # scales are constants to the STE
        codes_x = _Codes.apply(x * s_x, -128, 127)
        s_w = self.weight.abs().mean().clamp(min=1e-5).detach()
        codes_w = _Codes.apply(self.weight / s_w, -1, 1)
        return F.linear(codes_x, codes_w) * s_w / s_x + self.bias  # integer-style matmul, scales after


class _Ternary(nn.Module):
    def forward(self, w):
        gamma = w.abs().mean().clamp(min=1e-5)
        return w + ((w / gamma).round().clamp(-1, 1) * gamma - w).detach()


class SubLNBitLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, per_sequence: bool = False):
        super().__init__()
        self.ln = nn.LayerNorm(in_features)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * in_features ** -0.5)
        parametrize.register_parametrization(self, "weight", _Ternary())
        self.per_sequence = per_sequence

    def forward(self, x):
        x = self.ln(x)
        s = 127.0 / _absmax(x, self.per_sequence)
        x = x + ((x * s).round().clamp(-128, 127) / s - x).detach()
        return x @ self.weight.T


DESIGNS = {"tips": TipsBitLinear, "gained": GainedBitLinear, "subln": SubLNBitLinear}


def build_tips(spec):
    """`--model tests.layer_designs:build_tips`: the user's model of tests/user_train.py on TipsBitLinear."""
    from tests.user_train import build
    return build(spec, TipsBitLinear)


def build_gained(spec):
    """`--model tests.layer_designs:build_gained`: the same model on GainedBitLinear."""
    from tests.user_train import build
    return build(spec, GainedBitLinear)
