"""A user's own small BitNet, written independently of bitcheck/model.py, with factories as
`bitcheck diagnose CKPT --model tests.user_models:FACTORY` takes them: healthy, and with one
planted bug each. The layers come from tests/conform_layers.py (a correct b1.58 layer and its
hidden-bug variants); a learned position embedding and its own KV cache make it unlike ours.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.conform_layers import FullPrecision, GoodBitLinear, InvertedScale, NoEps, NoSTE

D, LAYERS, HEADS, BLOCK = 64, 2, 4, 128
LAYER_REGEX = r"(qkv|proj|fc|out)$"  # for the bug variants, whose class names lack "BitLinear"


class Block(nn.Module):
    def __init__(self, linear, causal: bool):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(D), nn.RMSNorm(D)
        self.qkv, self.proj = linear(D, 3 * D), linear(D, D)
        self.fc, self.out = linear(D, 4 * D), linear(4 * D, D)
        self.causal = causal

    def forward(self, x, cache=None):
        B, T, _ = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, T, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        # a single new token attends to the whole cache; a full sequence needs the causal mask
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and T > 1)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.out(F.gelu(self.fc(self.n2(x))))


class UserLM(nn.Module):
    def __init__(self, vocab: int, linear=GoodBitLinear, causal: bool = True, kv_offset_bug: bool = False):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, D), nn.Embedding(BLOCK, D)
        self.blocks = nn.ModuleList(Block(linear, causal) for _ in range(LAYERS))
        self.norm, self.head = nn.RMSNorm(D), nn.Linear(D, vocab, bias=False)
        self.kv_offset_bug = kv_offset_bug
        for p in (self.tok.weight, self.pos.weight, self.head.weight):
            nn.init.normal_(p, std=0.02)

    def forward(self, idx, caches=None, start: int = 0):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(start, start + T, device=idx.device))
        for i, b in enumerate(self.blocks):
            x = b(x, caches[i] if caches is not None else None)
        return self.head(self.norm(x))

    def incremental(self, idx):
        """Logits of idx decoded one token at a time through the KV cache."""
        caches = [[] for _ in self.blocks]
        out = []
        for t in range(idx.shape[1]):
            start = 0 if self.kv_offset_bug else t  # the bug: every cached token at position 0
            out.append(self(idx[:, t:t + 1], caches, start))
        return torch.cat(out, 1)


def good_sampler(logits, temperature, top_k, generator):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def sampler_ignoring_temperature(logits, temperature, top_k, generator):
    return good_sampler(logits, 1.0, top_k, generator)


def load(path: str, vocab: int | None = None, **kw) -> UserLM:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = UserLM(vocab or sd["tok.weight"].shape[0], **kw)
    model.load_state_dict(sd)
    return model


def _bundle(model: UserLM, sampler=good_sampler) -> dict:
    return {"model": model, "block_size": BLOCK, "sampler": sampler,
            "incremental_logits": lambda m, idx: m.incremental(idx),
            "fresh_model": lambda: UserLM(model.tok.num_embeddings)}


# ---- factories: factory(checkpoint_path) -----------------------------------------------------------

def healthy(path):
    return _bundle(load(path))


def with_tokenizer(path):
    """(model, tokenizer): the tokenizer.json saved beside the checkpoint."""
    from pathlib import Path

    from tokenizers import Tokenizer
    return load(path), Tokenizer.from_file(str(Path(path).parent / "tokenizer.json"))


def bare(path):
    """Only the module: the probes that need the user's sampler, cache or init SKIP."""
    return load(path)


def no_ste(path):
    return _bundle(load(path, linear=NoSTE))


def inverted_scale(path):
    return _bundle(load(path, linear=InvertedScale))


def full_precision(path):
    return _bundle(load(path, linear=FullPrecision))


def zero_row_nan(path):
    return _bundle(load(path, linear=NoEps))


def no_causal_mask(path):
    return _bundle(load(path, causal=False))


def kv_offset(path):
    return _bundle(load(path, kv_offset_bug=True))


def temperature_ignored(path):
    return _bundle(load(path), sampler=sampler_ignoring_temperature)


def shifted_ids(path):
    """The user's generate returns ids off by one (a vocabulary offset between model and decoder)."""
    from bitcheck.user_model import full_forward_generate
    gen = full_forward_generate(BLOCK)

    def generate(model, idx, n):
        out = gen(model, idx, n)
        out[:, idx.shape[1]:] = (out[:, idx.shape[1]:] + 1) % model.tok.num_embeddings
        return out
    return {**_bundle(load(path)), "generate": generate}


def raises(path):
    raise RuntimeError(f"cannot open {path}: config.json missing")


def not_a_module(path):
    return {"weights": torch.load(path, weights_only=True)}
