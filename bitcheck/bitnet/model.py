"""BitNet b1.58 decoder: ternary BitLinear layers in a small Llama-style transformer.

    model = BitNet(ModelConfig(vocab_size=32))
    logits, loss = model(idx, targets)            # logits for every position: (B, T, V)
    out = model.generate(idx, 20, temperature=0)  # KV-cached decoding

References: Ma et al. 2024, "The Era of 1-bit LLMs" (b1.58) and its training-tips note (weights
round(W / mean|W|) clamped to {-1, 0, 1}, per-token absmax int8 activations, straight-through
estimator, sub-layer RMSNorm before each quantized input); Su et al. 2021 (RoPE); Shazeer 2020 (SwiGLU).
Embeddings and the tied lm_head stay full precision. The packed 2-bit integer inference path lives
in bitcheck/commands/export.py; this model always runs the fake-quantized training path.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from bitcheck.bitnet.config import PRESET_NOTES, PRESETS, ModelConfig, preset_config

QUANT_EPS = 1e-5  # floor on the scales: an all-zero weight or activation row must stay finite


def ternary_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes in {-1, 0, 1} as floats, the per-tensor scale mean|W| clamped to eps)."""
    scale = w.abs().mean().clamp(min=QUANT_EPS)
    return (w / scale).round().clamp(-1, 1), scale


def weight_quant(w: torch.Tensor) -> torch.Tensor:
    """Ternary weights times one per-tensor scale mean|W| (returned dequantized, same shape)."""
    codes, scale = ternary_codes(w)
    return codes * scale


def activation_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8: x * 127 / max|x| rounded to [-128, 127], returned dequantized."""
    scale = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=QUANT_EPS)
    return (x * scale).round().clamp(-128, 127) / scale


class BitLinear(nn.Linear):
    """nn.Linear whose forward sees ternary weights and int8 activations; gradients pass straight
    through both quantizers to the full-precision latent weight (STE). No bias, as in b1.58."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # STE: the value is the quantized one, the gradient that of the identity.
        x_q = x + (activation_quant(x) - x).detach()
        w_q = self.weight + (weight_quant(self.weight) - self.weight).detach()
        return F.linear(x_q, w_q)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # computed in fp32 so bf16/fp16 autocast cannot underflow the mean square
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(head_dim: int, n_pos: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # (n_pos, hd/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, nh, T, hd); cos/sin: (T, hd/2). Rotate pairs (first half, second half) of each head.
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hd/2) each
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


class KVCache:
    """Per-layer keys and values of the tokens decoded so far; `pos` is how many there are."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)  # (B, nkv, pos + T, hd)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.q_proj = BitLinear(cfg.n_embd, cfg.n_head * self.head_dim)
        self.k_proj = BitLinear(cfg.n_embd, cfg.n_kv_head * self.head_dim)
        self.v_proj = BitLinear(cfg.n_embd, cfg.n_kv_head * self.head_dim)
        # b1.58 normalises every quantized input; o_proj's input is the attention output
        self.sub_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.o_proj = BitLinear(cfg.n_embd, cfg.n_embd)

    def forward(self, x, cos, sin, cache: KVCache | None):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.update(self.layer_idx, k, v)  # (B, nkv, past + T, hd)
        rep = self.n_head // self.n_kv_head
        k = k.repeat_interleave(rep, dim=1)  # (B, nh, past + T, hd)
        v = v.repeat_interleave(rep, dim=1)
        if past == 0:
            # no cached prefix: the plain causal mask
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            # one new token attends to everything cached: no mask needed
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            # a chunk after a cached prefix: query i sees keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.o_proj(self.sub_norm(y))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = BitLinear(cfg.n_embd, cfg.ffn_hidden)
        self.up_proj = BitLinear(cfg.n_embd, cfg.ffn_hidden)
        self.sub_norm = RMSNorm(cfg.ffn_hidden, cfg.norm_eps)
        self.down_proj = BitLinear(cfg.ffn_hidden, cfg.n_embd)

    def forward(self, x):
        return self.down_proj(self.sub_norm(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(self, x, cos, sin, cache):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache)
        return x + self.ffn(self.ffn_norm(x))


class BitNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # full precision, tied to the head
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=self.config.init_std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """idx (B, T) token ids -> (logits (B, T, V), loss or None).

        targets (B, T) with -1 for positions that carry no loss; cache continues a decode."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        cos = self.rope_cos[start:start + T]  # (T, hd/2)
        sin = self.rope_sin[start:start + T]
        x = self.embed(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin, cache)
        if cache is not None:
            cache.pos += T
        logits = F.linear(self.norm(x), self.embed.weight)  # tied head: (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(B * T, -1), targets.reshape(B * T), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
                 seed: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """Append up to max_new_tokens to idx (B, T). temperature 0 is greedy. Rows that emitted
        eos_id keep emitting it; decoding stops once every row has. Same seed, same text."""
        gen = None
        if seed is not None:
            gen = torch.Generator(device=idx.device).manual_seed(seed)
        block = self.config.block_size
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        cache, fed = None, 0  # fed: how many tokens of idx the cache already holds
        for _ in range(max_new_tokens):
            if use_cache and (cache is None or cache.pos >= block):
                # (re)start the cache on the most recent tokens; past block_size it slides by
                # half a block so the re-prefill is paid once per block/2 tokens, not per token
                keep = min(idx.size(1), block) if cache is None else block // 2
                cache, fed = KVCache(self.config.n_layer), idx.size(1) - keep
            if use_cache:
                logits, _ = self(idx[:, fed:], cache=cache)
                fed = idx.size(1)
            else:
                logits, _ = self(idx[:, -block:])
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, gen)  # (B,)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done |= nxt == eos_id
            idx = torch.cat([idx, nxt[:, None]], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return idx


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (B, V) -> token ids (B,). temperature 0 is argmax; top_k then top_p filter."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (B, V)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token once the mass before it already reaches top_p (the top token always stays)
        drop = (cum - sorted_logits.softmax(-1)) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---- the packed inference twin ----------------------------------------------------------------
# What a deployed b1.58 model runs: 2-bit codes in the Hugging Face BitNet layout (uint8, four codes
# per byte along the output dimension, code + 1 in bits 2i..2i+1 for output row i * rows + r) and
# `weight_scale` = 1/mean|W|. bitcheck/commands/export.py writes these tensors to files; the parity probe
# (probes/parity.py) holds `packed_model(model)` to the fake-quantized training forward.

def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """Ternary codes (out, in) in {-1, 0, 1} -> uint8 (ceil(out / 4), in) in the HF layout; rows
    past `out` are padded with code 0."""
    out_rows = codes.shape[0]
    rows = -(-out_rows // 4)
    padded = torch.zeros(rows * 4, codes.shape[1], dtype=torch.int32, device=codes.device)
    padded[:out_rows] = codes.to(torch.int32) + 1
    packed = torch.zeros(rows, codes.shape[1], dtype=torch.int32, device=codes.device)
    for i in range(4):
        packed |= padded[i * rows:(i + 1) * rows] << (2 * i)
    return packed.to(torch.uint8)


def unpack_codes(packed: torch.Tensor, out_rows: int) -> torch.Tensor:
    p = packed.to(torch.int32)
    codes = torch.cat([(p >> (2 * i)) & 3 for i in range(4)], dim=0)[:out_rows] - 1
    return codes.to(torch.int8)


def ternary(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int8, mean|W| clamped): BitLinear's own rounding (model.ternary_codes)."""
    codes, scale = ternary_codes(weight.detach())
    return codes.to(torch.int8), scale


class PackedBitLinear(nn.Module):
    """Inference-only BitLinear from packed codes: per-token int8 activations, exact integer
    accumulation, then y = acc / (activation factor * weight_scale)."""

    def __init__(self, packed: torch.Tensor, weight_scale: torch.Tensor, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("codes", unpack_codes(packed, out_features))  # (out, in) int8
        self.register_buffer("weight_scale", weight_scale.reshape(()).float())  # 1 / mean|W|

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=QUANT_EPS)  # (..., 1)
        q = (x * factor).round().clamp(-128, 127)  # int8 values, kept in float
        acc = q.double() @ self.codes.double().T  # exact: |acc| <= 128 * in_features
        return (acc / (factor.double() * self.weight_scale.double())).to(x.dtype)


def packed_model(model: BitNet) -> BitNet:
    """A copy of `model` whose BitLinear layers are PackedBitLinear built from its own weights:
    the in-memory equivalent of export + load_packed, for the parity probe."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BitLinear):
                codes, scale = ternary(child.weight)
                setattr(module, child_name, PackedBitLinear(pack_codes(codes), 1.0 / scale,
                                                            child.in_features, child.out_features))
    return twin.eval()


def preset_rows() -> list[dict]:
    """Every preset with its exact parameter count (`bitcheck presets`); presets that take the
    vocabulary from a tokenizer are counted with the arithmetic one (21 tokens)."""
    rows = []
    for name in PRESETS:
        cfg = preset_config(name, vocab_size=None if PRESETS[name]["vocab_size"] else 21)
        rows.append({"name": name, "params": BitNet(cfg).num_params(), "note": PRESET_NOTES[name],
                     "vocab_from_tokenizer": PRESETS[name]["vocab_size"] is None, **cfg.to_dict()})
    return rows
