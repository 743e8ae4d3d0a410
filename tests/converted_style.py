"""A user's BitNet made the way many are: a float Llama-style model (RMSNorm, rotary-free learned positions,
separate q/k/v with grouped KV heads, SwiGLU MLP) written with nn.Linear, then converted by the user's own
`replace_linears` into their BitLinear (an RMSNorm with a gain *inside* the layer, before the activation
quantizer, as in b1.58's training tips), keeping the head in full precision. Its forward returns an
object with `.logits` (Hugging Face style). Written apart from bitcheck.

As an adapter (`quick-arith --model tests.converted_style`): `build(spec)` is the healthy model;
`inverted_scale` is the same codebase whose BitLinear multiplies the codes by 1/mean|W| (a scale
convention mix-up seen in public code). tests/test_codebases.py runs both.
"""
from __future__ import annotations

import types
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, hidden: int):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = nn.RMSNorm(d), nn.RMSNorm(d)
        self.self_attn, self.mlp = Attention(d, heads, kv_heads), MLP(d, hidden)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaLike(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, kv_heads: int, hidden: int, block: int):
        super().__init__()
        self.embed_tokens, self.embed_positions = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.layers = nn.ModuleList(Layer(d, heads, kv_heads, hidden) for _ in range(layers))
        self.norm, self.lm_head = nn.RMSNorm(d), nn.Linear(d, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, input_ids, labels=None):
        T = input_ids.shape[1]
        x = self.embed_tokens(input_ids) + self.embed_positions(torch.arange(T, device=input_ids.device))
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.norm(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return CausalLMOutput(logits=logits, loss=loss)


class BitLinear(nn.Linear):
    """nn.Linear with b1.58 quantization and an RMSNorm (with gain) on its input, inside the layer."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, invert: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self.norm = nn.RMSNorm(in_features, eps=1e-6)
        self.invert = invert

    def forward(self, x):
        x = self.norm(x)
        x_scale = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        x_q = x + ((x * x_scale).round().clamp(-128, 127) / x_scale - x).detach()
        w = self.weight
        w_scale = 1.0 / w.abs().mean().clamp(min=1e-5)  # the codes are divided back by this
        codes = (w * w_scale).round().clamp(-1, 1)
        w_q = codes * w_scale if self.invert else codes / w_scale
        return F.linear(x_q, w + (w_q - w).detach(), self.bias)


def replace_linears(model: nn.Module, skip: tuple[str, ...] = ("lm_head",), invert: bool = False) -> nn.Module:
    """The user's conversion: every nn.Linear but the head becomes a BitLinear with the same weight."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear) and name not in skip:
            new = BitLinear(child.in_features, child.out_features, bias=child.bias is not None, invert=invert)
            new.weight = child.weight
            setattr(model, name, new)
        else:
            replace_linears(child, skip, invert)
    return model


def build(spec, invert: bool = False):
    model = LlamaLike(spec.vocab_size, spec.n_embd, spec.n_layer, spec.n_head, spec.n_kv_head, spec.ffn_hidden,
                      spec.block_size)
    return replace_linears(model, invert=invert)


inverted_scale = types.SimpleNamespace(build=lambda spec: build(spec, invert=True))
