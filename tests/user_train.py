"""A user's own BitNet training code, written apart from bitcheck's: their model (fused QKV, learned
positions, GELU MLP, torch's RMSNorm, the b1.58 layer of tests/conform_layers.py), their AdamW param
groups, their two-stage LR / weight-decay scheduler, and their training loop. This module is an
adapter as `bitcheck quick-arith --model tests.user_train` takes it; the namespaces at the end are
the same codebase with one planted bug each (`--model tests.user_train:no_ste`), and `train_loop` is
their loop for bitcheck.user.session (level 3), with its own planted bugs.
"""
from __future__ import annotations

import types

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.conform_layers import GoodBitLinear, NoSTE


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, linear):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = linear(d, 3 * d), linear(d, d)
        self.norm_out = nn.RMSNorm(d)

    def forward(self, x, cache=None):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        return self.proj(self.norm_out(a.transpose(1, 2).reshape(B, T, D)))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, linear):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = Attention(d, heads, linear)
        self.fc, self.n3, self.out = linear(d, ffn), nn.RMSNorm(ffn), linear(ffn, d)

    def forward(self, x, cache=None):
        x = x + self.attn(self.n1(x), cache)
        return x + self.out(self.n3(F.gelu(self.fc(self.n2(x)))))


class UserBitNet(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, ffn: int, block: int, linear=GoodBitLinear):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads, ffn, linear) for _ in range(layers))
        self.norm, self.head = nn.RMSNorm(d), nn.Linear(d, vocab, bias=False)
        for p in (self.tok.weight, self.pos.weight, self.head.weight):
            nn.init.normal_(p, std=0.02)

    def forward(self, idx, caches=None, start: int = 0):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(start, start + T, device=idx.device))
        for i, b in enumerate(self.blocks):
            x = b(x, caches[i] if caches is not None else None)
        return self.head(self.norm(x))


# ---- the adapter hooks ---------------------------------------------------------------------------------

def build(spec, linear=GoodBitLinear):
    return UserBitNet(spec.vocab_size, spec.n_embd, spec.n_layer, spec.n_head, spec.ffn_hidden, spec.block_size,
                      linear)


def param_groups(model, decay_everything: bool = False):
    """Matrices decay; norms, biases and embeddings do not (unless the bug says otherwise)."""
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay = [p for p in model.parameters() if decay_everything or (p.dim() >= 2 and id(p) not in embeds)]
    rest = [p for p in model.parameters() if all(p is not q for q in decay)]
    return [{"params": decay, "decay": True}, {"params": rest, "decay": False}]


class TwoStage:
    """The user's BitNet b1.58 two-stage schedule, torch style (step() after every optimizer step):
    warmup to the peak, linear to half the peak at 50% with weight decay, then to 10% without."""

    def __init__(self, opt, recipe, stuck_in_warmup: bool = False, wd_in_stage2: bool = False):
        self.opt, self.r, self.t = opt, recipe, 0
        self.stuck, self.wd2 = stuck_in_warmup, wd_in_stage2
        self._apply()

    def values(self, t: int) -> tuple[float, float]:
        r = self.r
        if self.stuck:  # the bug: its step counter never advances, so the LR stays at warmup's first value
            t = 0
        if t < r.warmup_steps:
            return r.lr * (t + 1) / r.warmup_steps, r.weight_decay
        mid = r.steps // 2
        if t < mid:
            frac = (t - r.warmup_steps) / max(1, mid - r.warmup_steps)
            return r.lr + (r.lr * r.second_peak_ratio - r.lr) * frac, r.weight_decay
        frac = min((t - mid) / max(1, r.steps - mid), 1.0)
        lr = r.lr * r.second_peak_ratio + (r.lr * r.final_lr_ratio - r.lr * r.second_peak_ratio) * frac
        return lr, (r.weight_decay if self.wd2 else 0.0)

    def _apply(self):
        lr, wd = self.values(self.t)
        for g in self.opt.param_groups:
            g["lr"] = lr
            g["weight_decay"] = wd if g.get("decay") else 0.0

    def step(self):
        self.t += 1
        self._apply()

    def state_dict(self):
        return {"t": self.t}

    def load_state_dict(self, d):
        self.t = d["t"]
        self._apply()


def optimizer(model, recipe, **bugs):
    opt = torch.optim.AdamW(param_groups(model, bugs.pop("decay_everything", False)), lr=recipe.lr,
                            betas=recipe.betas, weight_decay=recipe.weight_decay)
    return opt, TwoStage(opt, recipe, **bugs)


def sampler(logits, temperature, top_k, generator):
    logits = logits / temperature
    if top_k is not None:
        logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[..., -1:], float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def incremental_logits(model, idx):
    caches = [[] for _ in model.blocks]
    return torch.cat([model(idx[:, t:t + 1], caches, t) for t in range(idx.shape[1])], 1)


# ---- the same codebase with one bug each (level 1 and 2) ---------------------------------------------------

HOOKS = dict(build=build, optimizer=optimizer, sampler=sampler, incremental_logits=incremental_logits)
healthy = types.SimpleNamespace(**HOOKS)
no_ste = types.SimpleNamespace(**{**HOOKS, "build": lambda spec: build(spec, NoSTE)})
stuck_in_warmup = types.SimpleNamespace(**{**HOOKS, "optimizer": lambda m, r: optimizer(m, r, stuck_in_warmup=True)})
# weight decay kept on in stage 2 (seen in public code, fixed upstream): a quick run PASSes in stage 1, so only
# the schedule stepped to the horizon shows it
wd_kept_in_stage2 = types.SimpleNamespace(**{**HOOKS, "optimizer": lambda m, r: optimizer(m, r, wd_in_stage2=True)})
decays_norms = types.SimpleNamespace(**{**HOOKS, "optimizer": lambda m, r: optimizer(m, r, decay_everything=True,
                                                                                     wd_in_stage2=True)})


def optimizer_skipping_matrices(model, recipe):
    """The bug no probe names: the param groups leave out every 2-D weight (a name filter gone wrong), so
    the quantized layers never train; the schedule is applied exactly as the recipe says."""
    opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.dim() < 2 or p is model.tok.weight],
                              "decay": False}], lr=recipe.lr, betas=recipe.betas, weight_decay=0.0)
    return opt, TwoStage(opt, recipe)


frozen_layers = types.SimpleNamespace(**{**HOOKS, "optimizer": optimizer_skipping_matrices})


def raises(spec):
    raise RuntimeError("config.yaml not found")


def not_a_module(spec):
    return {"weights": 1}


def small_vocab(spec):
    return build(type(spec)(**{**spec.to_dict(), "vocab_size": spec.vocab_size - 3}))


def short_context(spec):
    return build(type(spec)(**{**spec.to_dict(), "block_size": 8}))


# ---- level 3: the user's own loop through bitcheck.user.session ------------------------------------------------

def train_loop(session, bug: str | None = None, steps: int | None = None, grad_accum: int = 1):
    """The user's loop: their model, optimizer and schedule, their loss; `bug` plants one of
    labels_shifted_twice, loss_over_ignored, lr_per_micro_batch, frozen_layers (the loop's optimizer
    leaves the quantized layers out). Returns (model, optimizer)."""
    torch.manual_seed(session.seed)
    model = build(session.spec)
    make_optimizer = optimizer_skipping_matrices if bug == "frozen_layers" else optimizer
    opt, sched = make_optimizer(model, session.recipe)
    session.watch(model, opt)
    for step in range(steps or session.max_steps):
        total = 0.0
        # accumulation as most loops write it: the step's batch split into grad_accum micro-batches
        for x, y in zip(*(t.chunk(grad_accum) for t in session.batch(step))):
            logits = model(x)
            if bug == "labels_shifted_twice":  # the dataset already shifted: shifting again learns t+2
                loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=-1)
            elif bug == "loss_over_ignored":  # targets rebuilt from the inputs: every position counts
                full = torch.cat([x[:, 1:], y[:, -1:].clamp(min=0)], 1)
                loss = F.cross_entropy(logits.flatten(0, 1), full.flatten())
            else:
                loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1)
            (loss / grad_accum).backward()
            total += loss.item() / grad_accum
            if bug == "lr_per_micro_batch":
                sched.step()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr, wd = opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]
        opt.step()
        opt.zero_grad(set_to_none=True)
        if bug != "lr_per_micro_batch":
            sched.step()
        session.log(step + 1, total, lr=lr, weight_decay=wd)
        if session.due(step + 1) and session.evaluate(model, step + 1).stop:
            break
    return model, opt


def accumulate(model, micro_batches):
    """The user's gradient accumulation: sum of token losses over the whole batch's target count."""
    n = sum(int((y >= 0).sum()) for _, y in micro_batches)
    for x, y in micro_batches:
        F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum").div(n).backward()


def accumulate_per_micro_batch(model, micro_batches):
    """The bug: each micro-batch averaged over its own targets, then over the micro-batches."""
    for x, y in micro_batches:
        (F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1) / len(micro_batches)).backward()


def resume_hooks(session, keep_optimizer_state: bool = True) -> dict:
    """The user's checkpointing of their whole training state, (model, optimizer, schedule): save/load of
    all three (or, the bug, without the optimizer's state)."""
    def make():
        torch.manual_seed(0)
        model = build(session.spec)
        opt, sched = optimizer(model, session.recipe)
        return model, opt, sched

    def train(model, opt, sched, batches):
        for x, y in batches:
            F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()

    def save(model, opt, sched, path):
        state = {"model": model.state_dict(), "sched": sched.state_dict()}
        if keep_optimizer_state:
            state["opt"] = opt.state_dict()
        torch.save(state, path)

    def load(path):
        state = torch.load(path, weights_only=True)
        model, opt, sched = make()
        model.load_state_dict(state["model"])
        if "opt" in state:
            opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        return model, opt, sched
    return {"make": make, "train": train, "save": save, "load": load}
