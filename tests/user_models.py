"""A user's own small BitNet, written independently of bitcheck/bitnet/model.py, with factories as
`bitcheck diagnose CKPT --model tests.user_models:FACTORY` takes them: healthy, and with one
planted bug each. The layers come from tests/conform_layers.py (a correct b1.58 layer and its
hidden-bug variants); a learned position embedding and its own KV cache make it unlike ours.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.conform_layers import FullPrecision, GoodBitLinear, InvertedScale, NoEps, NoSTE, PerTensorActQuant, _wq

D, LAYERS, HEADS, BLOCK = 64, 2, 4, 128
LAYER_REGEX = r"(qkv|proj|fc|out)$"  # for the bug variants, whose class names lack "BitLinear"


class Block(nn.Module):
    def __init__(self, linear, causal: bool, sub_norms: bool = False):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(D), nn.RMSNorm(D)
        self.qkv, self.proj = linear(D, 3 * D), linear(D, D)
        self.fc, self.out = linear(D, 4 * D), linear(4 * D, D)
        self.causal = causal
        # BitNet b1.58's attention/FFN sub-norms before the output projections (HF BitNet has them)
        self.sub_attn, self.sub_ffn = (nn.RMSNorm(D), nn.RMSNorm(4 * D)) if sub_norms else (nn.Identity(), nn.Identity())

    def forward(self, x, cache=None):
        B, T, _ = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, T, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        # a single new token attends to the whole cache; a full sequence needs the causal mask
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and T > 1)
        x = x + self.proj(self.sub_attn(a.transpose(1, 2).reshape(B, T, D)))
        return x + self.out(self.sub_ffn(F.gelu(self.fc(self.n2(x)))))


class UserLM(nn.Module):
    def __init__(self, vocab: int, linear=GoodBitLinear, causal: bool = True, kv_offset_bug: bool = False,
                 tie: bool = False, sub_norms: bool = False):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, D), nn.Embedding(BLOCK, D)
        self.blocks = nn.ModuleList(Block(linear, causal, sub_norms) for _ in range(LAYERS))
        self.norm, self.head = nn.RMSNorm(D), nn.Linear(D, vocab, bias=False)
        self.kv_offset_bug = kv_offset_bug
        for p in (self.tok.weight, self.pos.weight, self.head.weight):
            nn.init.normal_(p, std=0.02)
        if tie:
            self.head.weight = self.tok.weight

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


def noisy(path):
    """Healthy, but prints while it builds, as real model code does ("using slow attention")."""
    print("WARNING: flash attention not found, using slow attention")
    return healthy(path)


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
    from bitcheck.user.factory import full_forward_generate
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


def train(model: UserLM, ids: torch.Tensor, steps: int, offset: int = 1, seed: int = 0) -> UserLM:
    """The user's own trainer: AdamW, 16 random windows of 64 tokens, targets `offset` tokens ahead
    (1 is right; 2 is the labels-shifted-twice bug: the dataset and the loss each shift once)."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ix = torch.randint(0, len(ids) - 64 - offset, (16,), generator=g)
        x = torch.stack([ids[i:i + 64] for i in ix])
        y = torch.stack([ids[i + offset:i + 64 + offset] for i in ix])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


# ---- #14: loaders, layers and deployment paths with the bug in the wrong place to look ----------------

def prefixed_strict_false(path):
    """The checkpoint's keys carry a 'model.' prefix; load_state_dict(strict=False) loads none of them."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = UserLM(sd["model.tok.weight"].shape[0])
    model.load_state_dict(sd, strict=False)
    return _bundle(model)


def prefixed_stripped(path):
    """The same file loaded right: the prefix stripped, strict=True."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = UserLM(sd["model.tok.weight"].shape[0])
    model.load_state_dict({k.removeprefix("model."): v for k, v in sd.items()})
    return _bundle(model)


def added_sub_norms(path):
    """A loader for a model with sub-norms the checkpoint never had, with strict=False: they stay at their
    init of ones (what a version bump of the model code does to old checkpoints)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = UserLM(sd["tok.weight"].shape[0], sub_norms=True)
    model.load_state_dict(sd, strict=False)
    return _bundle(model)


def untied_head(path):
    """A model trained with a tied head, saved without the duplicate key (as safetensors does), loaded
    into an untied model with strict=False: the head stays at its random init."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = UserLM(sd["tok.weight"].shape[0])
    model.load_state_dict(sd, strict=False)
    return _bundle(model)


def tied(path):
    """The same file loaded right: the head tied to the embedding, as trained."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = UserLM(sd["tok.weight"].shape[0], tie=True)
    model.load_state_dict(sd, strict=False)  # head.weight is the embedding: nothing else is missing
    return _bundle(model)


def _aq_over(x, dim):
    s = 127.0 / x.abs().amax(dim=dim, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


class PerSequenceActQuant(GoodBitLinear):
    """Activation absmax over the sequence axis: one scale per feature column of each sequence."""

    def forward(self, x):
        xq = _aq_over(x, -2)
        return F.linear(x + (xq - x).detach(), self.weight + (_wq(self.weight) - self.weight).detach())


def per_sequence_scale(path):
    return _bundle(load(path, linear=PerSequenceActQuant))


def per_tensor_scale(path):
    return _bundle(load(path, linear=PerTensorActQuant))


class PackedBitLinear(nn.Module):
    """The deployed layer: int8 ternary codes and weight_scale = 1/mean|W| (divided out at the end),
    per-token int8 activations, integer accumulation."""

    def __init__(self, layer: nn.Linear, scale_bug: bool = False):
        super().__init__()
        s = layer.weight.detach().abs().mean().clamp(min=1e-5)
        self.register_buffer("codes", (layer.weight.detach() / s).round().clamp(-1, 1).to(torch.int8))
        # the converter bug: it stores mean|W| where inference expects 1/mean|W| (and divides by it)
        self.register_buffer("weight_scale", s if scale_bug else 1.0 / s)

    def forward(self, x):
        inv = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        q = (x * inv).round().clamp(-128, 127)
        return (q @ self.codes.to(q.dtype).T) / inv / self.weight_scale


def deploy(model: UserLM, sub_norms: bool = False, scale_bug: bool = False) -> UserLM:
    """The user's converter and inference loader: every quantized layer packed; `sub_norms` is a loader
    that always builds the sub-norms, also for a checkpoint trained without them (strict=False)."""
    inf = UserLM(model.tok.num_embeddings, sub_norms=sub_norms)
    inf.load_state_dict(model.state_dict(), strict=False)
    for block in inf.blocks:
        for name in ("qkv", "proj", "fc", "out"):
            setattr(block, name, PackedBitLinear(getattr(block, name), scale_bug))
    return inf.eval()


def deployed(path):
    model = load(path)
    return {**_bundle(model), "inference_model": deploy(model)}


def deployed_with_sub_norms(path):
    model = load(path)
    return {**_bundle(model), "inference_model": deploy(model, sub_norms=True)}


def converter_scale_multiplied(path):
    model = load(path)
    return {**_bundle(model), "inference_model": deploy(model, scale_bug=True)}


def top_p_sampler(logits, temperature, top_k, generator, top_p=None):
    """The common top-p bug: keeps the tokens with cumsum <= p, dropping the one that crosses p."""
    logits = logits / temperature
    if top_p is not None:
        ordered, order = torch.sort(logits, descending=True)
        drop = ordered.softmax(-1).cumsum(-1) > top_p
        drop[..., 0] = False
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return good_sampler(logits, 1.0, top_k, generator)


def top_p_drops_crossing(path):
    return _bundle(load(path), sampler=top_p_sampler)


class BitNetLinear(GoodBitLinear):
    """A correct layer under a name without 'BitLinear' (as some packages spell it): found by behaviour."""


def renamed_layers(path):
    return _bundle(load(path, linear=BitNetLinear))


def no_ste_unnamed(path):
    """The no-STE bug in layers bitcheck must find by behaviour (no --layers)."""
    return _bundle(load(path, linear=NoSTE))
