"""Training logs with a known answer, generated from a loss law with noise: what `bitcheck curve` is
tested on, and docs/CURVE.md's walk-through of a typical large run.

    python -m synthetic.curves typical /tmp/typical-run       # metrics/scalars.jsonl + config.json
    rows = generate(CurveSpec(kind="falling", seed=3))

The loss follows the saturating power law in the learning-rate area with an annealing term (Tissue et
al. 2024, momentum-free; the data term of Hoffmann et al. 2022):

    L(t) = E + B * (S1(t) / S1_ref)^(-beta) - C * (1 - lr(t) / lr_peak) + noise,   S1 = sum of lr / lr_peak

under the BitNet b1.58 two-stage schedule (linear warmup; lr falls linearly to half the peak at 50% of
the steps with weight decay 0.1; then to a tenth with weight decay 0). Written here again, on purpose,
apart from bitcheck/bitnet/train.py: a generator that shared the code under test could not catch it.
Kinds (each a known answer): "falling" (cut at 20% of its horizon: undertrained), "paying" (a whole run
whose law still pays 4% per doubling: undertrained), "saturated" (the power law spent: flat), "spike"
(saturated with a spike that recovers), "micro_batch" (the schedule stepped once per micro-batch, k=4:
warmup and decay 4x fast; an infrastructure bug), "nonfinite" (the loss becomes NaN), "diverged" (a
spike it never recovers from), "typical" (docs/CURVE.md's 95M / 32K / 400K-step run).
Plain Python: no torch, no numpy, nothing from bitcheck or probes.
"""
from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CurveSpec:
    kind: str = "saturated"
    seed: int = 0
    steps: int = 20_000  # the schedule's horizon
    log_every: int = 20
    tokens_per_step: int = 8192
    lr: float = 1.5e-3
    warmup: int = 500
    E: float = 2.0  # irreducible loss of this model on this data
    B: float = 0.6  # reducible loss at S1 = S1_ref
    beta: float = 0.5
    C: float = 0.15  # loss bought by annealing the LR to zero
    noise: float = 0.02  # sd of one logged training loss (batch noise)
    init: float = 10.4  # the law diverges at S1 -> 0; a fresh model starts near ln(vocab) (ln 32000 = 10.4)
    ref_fraction: float = 1.0  # S1_ref as a fraction of the horizon's area: where B is measured
    cut: float = 1.0  # log only this fraction of the horizon (a run still going, or stopped early)
    micro_batches: int = 1  # > 1: the scheduler stepped once per micro-batch (the bug)
    schedule: str = "two_stage"  # or "cosine" (to a tenth of the peak, weight decay 0.1 throughout)
    events: dict = field(default_factory=dict)  # spike_at, nan_at, diverge_at (fractions of the horizon)
    config: dict = field(default_factory=dict)  # extra keys for config.json (model shape)


KINDS = {
    "falling": dict(cut=0.2, B=1.2, beta=0.4, ref_fraction=1.0),
    "saturated": dict(B=0.6, beta=1.2, ref_fraction=0.02),
    # a whole two-stage run whose law still pays: 2x the tokens buy B * (1 - 2^-0.3) = 0.094 (4% of the loss)
    # although stage 2's LR decay flattens the end of the logged curve
    "paying": dict(B=0.5, beta=0.3, ref_fraction=1.0),
    "spike": dict(B=0.6, beta=1.2, ref_fraction=0.02, events={"spike_at": 0.6}),
    "micro_batch": dict(B=0.6, beta=1.2, ref_fraction=0.02, micro_batches=4),
    "nonfinite": dict(B=0.6, beta=1.2, ref_fraction=0.02, events={"nan_at": 0.7}),
    "diverged": dict(B=0.6, beta=1.2, ref_fraction=0.02, events={"diverge_at": 0.8}),
    # docs/CURVE.md's typical case: 95M parameters, a 32K vocabulary tied to a 768-wide model, 400K steps of
    # 8,192 tokens (3.3B tokens), LR 1.5e-3 two-stage with 2,000 warmup steps; its loss law spent by the end
    "typical": dict(steps=400_000, log_every=100, warmup=2000, E=3.05, B=0.5, beta=0.9, ref_fraction=0.05,
                    C=0.12, noise=0.03, events={"spike_at": 0.31},
                    config={"vocab_size": 32000, "hidden_size": 768, "num_hidden_layers": 12,
                            "intermediate_size": 1536, "num_attention_heads": 12, "tie_word_embeddings": True,
                            "n_params": 95_000_000}),
}


def spec_for(kind: str, seed: int = 0, **overrides) -> CurveSpec:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    return CurveSpec(kind=kind, seed=seed, **{**KINDS[kind], **overrides})


def two_stage(step: int, spec: CurveSpec) -> tuple[float, float]:
    """(lr, weight decay) at 0-based update `step`: BitNet b1.58's two-stage schedule, or a cosine."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup, 0.1
    if spec.schedule == "cosine":
        progress = min((step - spec.warmup) / max(1, spec.steps - spec.warmup), 1.0)
        return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))), 0.1
    mid = spec.steps // 2
    if step < mid:
        return spec.lr * (1 - 0.5 * (step - spec.warmup) / max(1, mid - spec.warmup)), 0.1
    progress = min((step - mid) / max(1, spec.steps - mid), 1.0)
    return spec.lr * (0.5 - 0.4 * progress), 0.0


def generate(spec: CurveSpec) -> list[dict]:
    """Logged rows {step, tokens, loss, lr, weight_decay, grad_norm} every `log_every` steps up to `cut`."""
    rng = random.Random(spec.seed)
    ref_area = spec.ref_fraction * sum(two_stage(s, spec)[0] for s in range(spec.steps)) / spec.lr
    rows, area, loss_scale = [], 0.0, 1.0
    last = int(spec.steps * spec.cut)
    ev = {k: int(v * spec.steps) for k, v in spec.events.items()}
    for step in range(last):
        lr, wd = two_stage(step * spec.micro_batches, spec)  # what the optimizer actually held
        area += lr / spec.lr
        if (step + 1) % spec.log_every and step + 1 != last:
            continue
        s = step + 1
        loss = min(spec.E + spec.B * (area / ref_area) ** -spec.beta - spec.C * (1 - lr / spec.lr), spec.init)
        grad = 0.3 + 0.5 * (loss - spec.E) + abs(rng.gauss(0, 0.05))
        if "spike_at" in ev and ev["spike_at"] <= s < ev["spike_at"] + spec.steps // 100:
            frac = (s - ev["spike_at"]) / (spec.steps // 100)  # up at once, back within 1% of the run
            loss += 1.5 * (1 - frac)
            grad *= 1 + 30 * (1 - frac)
        if "diverge_at" in ev and s >= ev["diverge_at"]:
            loss_scale = min(loss_scale * 1.02, 3.0)
            loss = max(loss * loss_scale, loss + 2.0)
        row = {"step": s, "tokens": s * spec.tokens_per_step, "loss": loss + rng.gauss(0, spec.noise),
               "lr": lr, "weight_decay": wd, "grad_norm": grad}
        if "nan_at" in ev and s >= ev["nan_at"]:
            row["loss"], row["grad_norm"] = float("nan"), float("nan")
        rows.append(row)
    return rows


def config_of(spec: CurveSpec) -> dict:
    """The config the run intended: its schedule and batch (and the model's shape, where the kind has one)."""
    return {"train": {"lr": spec.lr, "warmup_steps": spec.warmup, "max_steps": spec.steps, "schedule": spec.schedule,
                      "weight_decay": 0.1, "tokens_per_step": spec.tokens_per_step,
                      "gradient_accumulation_steps": spec.micro_batches},
            "model": dict(spec.config)}


def write_run(spec: CurveSpec, folder: str | Path) -> Path:
    """A run folder: metrics/scalars.jsonl and config.json (the layout bitcheck and many loops write)."""
    folder = Path(folder)
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics" / "scalars.jsonl", "w") as f:
        for row in generate(spec):
            f.write(json.dumps(row) + "\n")
    (folder / "config.json").write_text(json.dumps(config_of(spec), indent=2) + "\n")
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m synthetic.curves KIND FOLDER   (KIND: {', '.join(KINDS)})")
    print(write_run(spec_for(sys.argv[1]), sys.argv[2]))
