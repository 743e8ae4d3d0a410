"""Configuration dataclasses: one per concern (model shape, training recipe), plus presets.

Every module is built from its config alone, and configs round-trip through plain JSON so that
checkpoints carry a readable copy (`ModelConfig.from_dict` fills keys older files lack, and says so).
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

from bitcheck.errors import UserError


class ConfigError(UserError):
    """A user-facing configuration mistake (unknown preset, bad value): reported as one line."""


@dataclass
class ModelConfig:
    vocab_size: int = 32  # overwritten from the tokenizer for the synthetic tasks
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2  # grouped-query attention: each K/V head serves n_head // n_kv_head query heads
    ffn_hidden: int = 768  # SwiGLU inner width
    block_size: int = 256  # longest context; RoPE tables are built for this many positions
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    # 0.02 keeps the tied-embedding logits near zero at init: their std is 0.02 * sqrt(n_embd)
    # (0.39 at n_embd 384), so the step-0 loss sits within ~0.08 nats of ln(vocab).
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"n_head {self.n_head} is not divisible by n_kv_head {self.n_kv_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"head dim {self.n_embd // self.n_head} must be even for RoPE")
        for name in ("vocab_size", "n_embd", "n_layer", "ffn_hidden", "block_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        missing = known - set(d)
        if missing:
            warnings.warn(f"model config lacks {sorted(missing)}; using defaults for them")
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"model config has unknown keys {sorted(unknown)}")
        return cls(**d)


# The seed design's shapes. vocab_size None means "take it from the task's tokenizer".
# `tiny` is the CPU default of the quick runs, chosen by measurement (docs/MEASUREMENTS.md, "Choosing the
# quick-run recipes"): 8 heads of size 16 rather than 4 sharing 2 KV heads, because reading the units digits
# of both operands takes separate lookups; the 4-head shape left some seeds stuck below 50%.
PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=None, n_embd=128, n_layer=2, n_head=8, n_kv_head=8, ffn_hidden=384, block_size=128),
    "1m": dict(vocab_size=192, n_embd=128, n_layer=5, n_head=4, n_kv_head=4, ffn_hidden=336, block_size=512),
    "5m": dict(vocab_size=None, n_embd=256, n_layer=4, n_head=4, n_kv_head=2, ffn_hidden=768, block_size=256),
    "12m": dict(vocab_size=2048, n_embd=384, n_layer=6, n_head=8, n_kv_head=4, ffn_hidden=1152, block_size=256),
}

PRESET_NOTES = {
    "tiny": "quick runs' CPU default (~0.43M with the arithmetic vocab)",
    "1m": "the public 1M ternary TinyStories model's shape",
    "5m": "seed design's '~5M'; quick-arith default on CUDA",
    "12m": "seed design's TinyStories model (2K BPE vocab)",
}


def preset_config(name: str, vocab_size: int | None = None, **overrides) -> ModelConfig:
    """Build the ModelConfig of a preset; `vocab_size` fills presets that take it from a tokenizer."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    d = dict(PRESETS[name])
    if d["vocab_size"] is None:
        d["vocab_size"] = vocab_size if vocab_size is not None else 32
    elif vocab_size is not None and vocab_size != d["vocab_size"]:
        raise ConfigError(
            f"preset {name!r} has a vocabulary of {d['vocab_size']} but the tokenizer has {vocab_size}")
    d.update(overrides)
    return ModelConfig(**d)


@dataclass
class TrainConfig:
    steps: int = 2000  # schedule horizon; the run may stop earlier (time budget, early PASS)
    max_steps: int | None = None  # a step limit below the horizon (None: the horizon is the limit)
    max_minutes: float | None = None  # wall-clock budget; None = no limit
    batch_size: int = 64
    seq_len: int = 64
    grad_accum: int = 1
    lr: float = 3e-3  # peak learning rate
    warmup_steps: int = 100
    schedule: str = "two_stage"  # "two_stage" (BitNet b1.58) or "cosine"
    # Two-stage: stage 1 decays linearly from lr to second_peak_ratio * lr at 50% of training,
    # stage 2 decays from there to final_lr_ratio * lr. Cosine decays lr to final_lr_ratio * lr.
    second_peak_ratio: float = 0.5
    final_lr_ratio: float = 0.1
    # Cosine only: 0 = one cosine over `steps`; N = warm restarts, a cosine cycle every N steps after
    # warmup (SGDR, Loshchilov & Hutter 2017), for runs whose length is decided while they train.
    cycle_steps: int = 0
    # 0 = never; N = stop ("stalled") after N evaluations in which neither the validation loss fell
    # below its best by stall_rel (relative) nor the task's gate score rose above its best by stall_gate.
    stall_evals: int = 0
    stall_rel: float = 0.01
    stall_gate: float = 0.01
    weight_decay: float = 0.1  # stage 1 only for two_stage (0 in stage 2), throughout for cosine
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    device: str = "auto"  # "auto" = cuda if available else cpu
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + grad scaler, CUDA only)
    compile: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # 0 = no periodic evaluation
    ckpt_every: int = 0  # 0 = checkpoint only at the end (and on Ctrl-C)
    extra: dict = field(default_factory=dict)  # task-specific settings, kept for the record

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ConfigError(f"steps must be positive, got {self.steps}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"max_steps must be positive, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"minutes must be positive, got {self.max_minutes}")
        if self.schedule not in ("two_stage", "cosine"):
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose two_stage or cosine")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"unknown precision {self.precision!r}; choose fp32, bf16 or fp16")
        for name in ("batch_size", "seq_len", "grad_accum"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
