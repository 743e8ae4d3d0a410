"""bitcheck.watch's cost in a plain loop: step time with and without the watcher, and the watcher's memory.

    .venv/bin/python benchmarks/watch_overhead.py --preset 12m --steps 300 --every 100 --rounds 3

Alternates bare and watched runs of the same loop (same seed, same data) `rounds` times and prints the median over
rounds of each run's mean step time, and their ratio (#24's target: <= 1.01 at the default cadence), then the bytes the watcher
holds (its packed codes: 2 bits per quantized weight) against the model's parameter bytes (target: < 1/8).
One process, one run at a time; give it one thread (OMP_NUM_THREADS=1) beside other work.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from bitcheck.bitnet.config import TrainConfig, preset_config
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.train import build_optimizer
from bitcheck.watch import UPDATE_SAMPLE, watch


def run(preset: str, steps: int, every: int, watched: bool, batch: int, seq: int, vocab: int) -> tuple[float, int, int]:
    """(mean step seconds after 10 warm-up steps, watcher bytes, parameter bytes) of one loop: the mean, so the
    looks' cost (one step in `every`) counts."""
    torch.manual_seed(0)
    model = BitNet(preset_config(preset, vocab_size=vocab))
    opt = build_optimizer(model, TrainConfig(steps=steps, lr=1e-3, warmup_steps=10))
    g = torch.Generator().manual_seed(0)
    w = watch(model, opt, out=tempfile.mkdtemp(), every=every) if watched else None
    times = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, vocab, (batch, seq + 1), generator=g)
        t0 = time.perf_counter()
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        if w is not None:
            w.step(step, loss=loss.item())
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    # what it holds between looks: the packed codes, and at a look the update/weight samples (UPDATE_SAMPLE a tensor)
    held = (sum(a.nbytes for a in w._codes.values())
            + sum(min(p.numel(), UPDATE_SAMPLE) * 4 for g in opt.param_groups for p in g["params"])) if w is not None else 0
    if w is not None:
        w.close()
    return statistics.fmean(times[10:]), held, sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="12m")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=2048)
    a = ap.parse_args()
    bare, watched, held, params = [], [], 0, 1
    for _ in range(a.rounds):
        bare.append(run(a.preset, a.steps, a.every, False, a.batch, a.seq, a.vocab)[0])
        t, held, params = run(a.preset, a.steps, a.every, True, a.batch, a.seq, a.vocab)
        watched.append(t)
    b, w = statistics.median(bare), statistics.median(watched)
    print(f"{a.preset}: bare {b * 1e3:.1f} ms/step, watched {w * 1e3:.1f} ms/step (every {a.every}): ratio {w / b:.3f} "
          f"(median of {a.rounds} alternating rounds)")
    print(f"watcher holds {held:,} bytes (codes and update samples) vs {params:,} parameter bytes: {held / params:.4f} (target < 0.125)")


if __name__ == "__main__":
    main()
