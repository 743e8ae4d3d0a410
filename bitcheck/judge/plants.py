"""The known bugs, planted into a small healthy BitNet from outside its code (patched forwards, swapped
callables, altered weights or batches), exactly as a user's broken trainer would present them.

    s = healthy_setup(seed=0)                   # the tiny preset trained SELFTEST_STEPS steps on arithmetic
    probes, evidence = BUGS["ste_missing"][0](s)  # the probes' view of the planted copy; part expected

Public: `bitcheck selftest` (bitcheck/commands/selftest.py) plants each one and checks the part named,
and the probes' tests plant the same forwards (no_ste, inverted_scale, ...) to prove each probe both ways.
"""
from __future__ import annotations

import copy
import tempfile
import types
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from bitcheck.bitnet.config import TrainConfig, preset_config
from bitcheck.bitnet.model import (
    Attention,
    BitLinear,
    BitNet,
    KVCache,
    PackedBitLinear,
    RMSNorm,
    activation_quant,
    apply_rope,
    packed_model,
    sample_next,
    weight_quant,
)
from bitcheck.bitnet.rundir import RunDir
from bitcheck.bitnet.tasks import task_batches
from bitcheck.bitnet.train import Trainer
from bitcheck.judge.subjects import LogitsOnly, make_watchers, task_subject
from probes import TokenizerAdapter
from synthetic.arithmetic import ArithmeticTask

# The healthy setup: the tiny preset, trained just long enough that its samples are arithmetic-like
# lines (the generation probes then have something healthy to judge). Measured: 400 steps at batch
# 32 take ~35 s eager on the 2-core CPU.
SELFTEST_STEPS = 400


@dataclass
class Setup:
    model: BitNet
    task: ArithmeticTask
    seed: int
    watchers: list
    optimizer: torch.optim.Optimizer | None

    def subject(self, **changes):
        s = task_subject(self.model, self.model.config, self.task,
                         task_batches(self.task, self.seed, 32, 64, False), self.seed, self.watchers, self.optimizer)
        s.tensors = self.model.state_dict()  # the trained checkpoint: weights_loaded checks the model holds it
        return replace(s, **changes) if changes else s


def train_steps(model: BitNet, task, seed: int, steps: int, lr: float, watchers: list, start_from=None,
           batches=None) -> Trainer:
    """Train `model` in place on the task's batches (or `batches(step, micro) -> (x, y)`)."""
    cfg = TrainConfig(steps=steps, batch_size=32, seq_len=64, lr=lr, warmup_steps=min(50, steps // 4),
                      schedule="cosine", device="cpu", seed=seed, log_every=50)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(tmp, "selftest")
        meta = {"model_config": model.config, "tokenizer": task.tokenizer.to_json(), "task": {"name": "arith"}}
        trainer = Trainer(model, cfg, batches or task_batches(task, seed, 32, 64, False), run, meta,
                          progress=False, watchers=watchers)
        trainer.run()
    return trainer


def healthy_setup(seed: int, steps: int = SELFTEST_STEPS) -> Setup:
    task = ArithmeticTask()
    torch.manual_seed(seed)
    model = BitNet(preset_config("tiny", vocab_size=task.tokenizer.vocab_size))
    watchers = make_watchers(every_flip=100, every_update=50)
    trainer = train_steps(model, task, seed, steps, 3e-3, watchers)
    return Setup(model.eval(), task, seed, watchers, trainer.optimizer)


# ---- the planted bugs: each returns a Subject ------------------------------------------------------

def patch_bitlinear(model: BitNet, forward) -> BitNet:
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, BitLinear):
            m.forward = types.MethodType(forward, m)
    return model


def no_ste(self, x):  # quantizers applied without the straight-through estimator
    return F.linear(activation_quant(x), weight_quant(self.weight))


def no_quant(self, x):  # full-precision training
    return F.linear(x, self.weight)


def inverted_scale(self, x):  # codes divided by mean|W| instead of multiplied
    s = self.weight.abs().mean().clamp(min=1e-5)
    wq = (self.weight / s).round().clamp(-1, 1) / s
    return F.linear(x + (activation_quant(x) - x).detach(), self.weight + (wq - self.weight).detach())


def no_eps(self, x):  # absmax without the eps floor: 0/0 on an all-zero row
    scale = 127.0 / x.abs().amax(dim=-1, keepdim=True)
    xq = (x * scale).round().clamp(-128, 127) / scale
    return F.linear(x + (xq - x).detach(), self.weight + (weight_quant(self.weight) - self.weight).detach())


def leaky_attention(self, x, cos, sin, cache):  # the causal mask forgotten
    B, T, C = x.shape
    q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
    k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
    v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    rep = self.n_head // self.n_kv_head
    y = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1))
    return self.o_proj(self.sub_norm(y.transpose(1, 2).contiguous().view(B, T, C)))


def bug_ste_missing(s: Setup):
    return s.subject(model=LogitsOnly(patch_bitlinear(s.model, no_ste)))


def bug_quant_skipped(s: Setup):
    return s.subject(model=LogitsOnly(patch_bitlinear(s.model, no_quant)))


def bug_scale_inverted(s: Setup):
    return s.subject(model=LogitsOnly(patch_bitlinear(s.model, inverted_scale)))


def bug_ternary_collapse(s: Setup):
    model = copy.deepcopy(s.model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BitLinear):
                m.weight[0, 0] = 100 * m.weight.abs().sum()  # one outlier inflates mean|W|
    return s.subject(model=LogitsOnly(model), tensors=model.state_dict())  # the checkpoint holds the collapse


def bug_nan_zero_row(s: Setup):
    return s.subject(model=LogitsOnly(patch_bitlinear(s.model, no_eps)))


def bug_causal_leak(s: Setup):
    model = copy.deepcopy(s.model)
    for m in model.modules():
        if isinstance(m, Attention):
            m.forward = types.MethodType(leaky_attention, m)
    return s.subject(model=LogitsOnly(model))


def bug_targets_unshifted(s: Setup):
    subject = s.subject()
    batches = []
    for x, y in subject.batches:
        y2 = x.clone()
        y2[y < 0] = -1
        batches.append((x, y2))
    return replace(subject, batches=batches)


def bug_lossy_tokenizer(s: Setup):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    subject = s.subject()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # the seed recipe's bug: spaces and newlines lost
    tok.train_from_iterator(subject.texts, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"]))
    return replace(subject, tokenizer=TokenizerAdapter(tok))


def offset_incremental(model, idx):  # the position is not advanced after the first token
    inner = model.inner
    cache = KVCache(inner.config.n_layer)
    out = [inner(idx[:, :1], cache=cache)[0]]
    cache.pos -= 1
    out += [inner(idx[:, t:t + 1], cache=cache)[0] for t in range(1, idx.shape[1])]
    return torch.cat(out, dim=1)


def bug_kv_cache_offset(s: Setup):
    return s.subject(incremental_logits=offset_incremental)


def bug_sampler_temperature(s: Setup):
    return s.subject(sampler=lambda logits, t, k, g: sample_next(logits, 1.0, k, None, g))


def bug_lr_blowup(s: Setup):
    model = copy.deepcopy(s.model)
    watchers = make_watchers(every_flip=10, every_update=5)
    trainer = train_steps(model, s.task, s.seed, 30, 1.0, watchers)  # LR 1.0: ~300x the healthy 3e-3
    return Setup(model.eval(), s.task, s.seed, watchers, trainer.optimizer).subject()


def bug_oversized_init(s: Setup):
    cfg = s.model.config

    def fresh():
        m = BitNet(cfg)
        torch.nn.init.normal_(m.embed.weight, std=1.0)  # tied N(0, 1) embedding
        return LogitsOnly(m)
    return s.subject(fresh_model=fresh)


def scale_over(dim):  # activation absmax over `dim` (None: the whole tensor) instead of per token
    def forward(self, x):
        absmax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
        scale = 127.0 / absmax.clamp(min=1e-5)
        xq = (x * scale).round().clamp(-128, 127) / scale
        return F.linear(x + (xq - x).detach(), self.weight + (weight_quant(self.weight) - self.weight).detach())
    return forward


def bug_activation_scale_per_tensor(s: Setup):
    return s.subject(model=LogitsOnly(patch_bitlinear(s.model, scale_over(None))))


def bug_activation_scale_per_sequence(s: Setup):  # one scale per feature column of each sequence
    return s.subject(model=LogitsOnly(patch_bitlinear(s.model, scale_over(-2))))


def bug_labels_shifted_twice(s: Setup):
    """The dataset shifts the targets and the loss shifts them again: the model learns token t + 2."""
    torch.manual_seed(s.seed)
    model = BitNet(s.model.config)
    batches = task_batches(s.task, s.seed, 32, 65, False)

    def twice(step, micro):
        x, y = batches(step, micro)
        return x[:, :-1], y[:, 1:]  # targets x[t + 2]
    train_steps(model, s.task, s.seed, SELFTEST_STEPS, 3e-3, [], batches=twice)
    return s.subject(model=LogitsOnly(model.eval()), tensors=model.state_dict(),
                     inference_model=LogitsOnly(packed_model(model)))


def bug_weights_not_loaded(s: Setup):
    """The checkpoint holds the trained weights, the model a fresh init (strict=False on other keys)."""
    torch.manual_seed(s.seed + 1)
    return s.subject(model=LogitsOnly(BitNet(s.model.config).eval()))


def options_top_p_bug(logits, temperature, top_k, generator, top_p=None):  # keeps cumsum <= p only
    logits = logits.float() / temperature
    if top_p is not None:
        ordered, order = torch.sort(logits, descending=True)
        drop = ordered.softmax(-1).cumsum(-1) > top_p
        drop[..., 0] = False
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return sample_next(logits, 1.0, top_k, None, generator)


def bug_top_p_drops_crossing(s: Setup):
    return s.subject(sampler=options_top_p_bug)


def bug_export_scale_multiplied(s: Setup):
    """The converter stores mean|W| where inference divides by weight_scale = 1/mean|W|."""
    twin = packed_model(s.model)
    for m in twin.modules():
        if isinstance(m, PackedBitLinear):
            m.weight_scale = 1.0 / m.weight_scale
    return s.subject(inference_model=LogitsOnly(twin))


def bug_inference_without_sub_norms(s: Setup):
    """The inference model is built without the attention/FFN sub-norms the model was trained with:
    every quantized layer matches its twin, the model's output does not."""
    twin = packed_model(s.model)
    for module in list(twin.modules()):
        for name, child in list(module.named_children()):
            if name.startswith("sub_norm") and isinstance(child, RMSNorm):
                setattr(module, name, torch.nn.Identity())
    return s.subject(inference_model=LogitsOnly(twin))


# bug name -> (planting function, the part the tree must name)
BUGS = {
    "ste_missing": (bug_ste_missing, "gradients/STE"),
    "quantization_skipped": (bug_quant_skipped, "quantization"),
    "scale_inverted": (bug_scale_inverted, "quantization"),
    "ternary_collapse": (bug_ternary_collapse, "quantization"),
    "nan_zero_row": (bug_nan_zero_row, "numerics"),
    "causal_mask_leak": (bug_causal_leak, "loss/causality"),
    "targets_not_shifted": (bug_targets_unshifted, "data/tokenizer"),
    "lossy_tokenizer": (bug_lossy_tokenizer, "data/tokenizer"),
    "kv_cache_offset": (bug_kv_cache_offset, "generation"),
    "sampler_ignores_temperature": (bug_sampler_temperature, "generation"),
    "lr_blowup": (bug_lr_blowup, "optimizer"),
    "oversized_embedding_init": (bug_oversized_init, "loss/causality"),
    # #14: the root cause, not the first symptom
    "activation_scale_per_tensor": (bug_activation_scale_per_tensor, "quantization"),
    "activation_scale_per_sequence": (bug_activation_scale_per_sequence, "quantization"),
    "labels_shifted_twice": (bug_labels_shifted_twice, "data/labels"),
    "weights_not_loaded": (bug_weights_not_loaded, "checkpoint loading"),
    "top_p_drops_crossing_token": (bug_top_p_drops_crossing, "generation"),
    "export_scale_multiplied": (bug_export_scale_multiplied, "export/conversion"),
    "inference_without_sub_norms": (bug_inference_without_sub_norms, "inference model/loader"),
}
FAST_BUGS = ("ste_missing", "quantization_skipped", "scale_inverted", "nan_zero_row", "causal_mask_leak",
             "targets_not_shifted", "kv_cache_offset", "sampler_ignores_temperature",
             "activation_scale_per_sequence", "weights_not_loaded", "top_p_drops_crossing_token",
             "export_scale_multiplied", "inference_without_sub_norms")
