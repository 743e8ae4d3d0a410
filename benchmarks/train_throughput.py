"""Training throughput (tokens/s) of the presets: fp32 vs bf16, eager vs compiled.

    .venv/bin/python benchmarks/train_throughput.py --presets tiny,5m --steps 30
    .venv/bin/python benchmarks/train_throughput.py --presets tiny --precisions fp32,bf16 --compile both
    .venv/bin/python benchmarks/train_throughput.py --presets 1m,5m,12m --vocab 2048 --batch 32 --seq 256 \
        --compile both      # the TinyStories shapes (1m keeps its 192 characters)

Times full training steps (forward, backward, clip, AdamW) on random tokens after warm-up steps,
and prints the median step time and tokens/s per configuration, plus each one's ratio to the first
row (one run, one machine: compare ratios, not absolute figures across runs).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bitcheck.config import TrainConfig, preset_config
from bitcheck.model import BitNet
from bitcheck.train import build_optimizer


def measure(preset: str, precision: str, compiled: bool, batch: int, seq: int, steps: int, warmup: int,
            device: str, vocab: int = 32) -> dict:
    torch.manual_seed(0)
    cfg = preset_config(preset, vocab_size=vocab if preset in ("tiny", "5m") else None)
    model = BitNet(cfg).to(device)
    opt = build_optimizer(model, TrainConfig(), fused=device == "cuda")
    fwd = torch.compile(model) if compiled else model
    seq = min(seq, cfg.block_size)
    x = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
    ctx = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16"
           else torch.autocast(device_type="cpu", enabled=False))
    times = []
    t_first = time.perf_counter()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with ctx:
            _, loss = fwd(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i == warmup - 1:
            warm_s = time.perf_counter() - t_first
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"preset": preset, "params": model.num_params(), "precision": precision, "compiled": compiled,
            "batch": batch, "seq": seq, "median_step_s": med, "tokens_per_s": batch * seq / med,
            "warmup_s": warm_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,1m,5m,12m")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--compile", choices=["no", "yes", "both"], default="no")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--vocab", type=int, default=32, help="vocabulary of presets that take it from a tokenizer")
    args = ap.parse_args()
    compiles = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'preset':7} {'params':>10} {'prec':5} {'compiled':8} {'B x T':>9} {'step ms':>9} "
          f"{'tok/s':>10} {'ratio':>6} {'warmup s':>8}")
    base = None
    for preset in args.presets.split(","):
        for prec in args.precisions.split(","):
            for comp in compiles:
                r = measure(preset, prec, comp, args.batch, args.seq, args.steps, args.warmup, args.device, args.vocab)
                base = base or r["tokens_per_s"]
                print(f"{r['preset']:7} {r['params']:>10,} {prec:5} {str(comp):8} {r['batch']:>4}x{r['seq']:<4} "
                      f"{r['median_step_s'] * 1e3:>9.1f} {r['tokens_per_s']:>10,.0f} "
                      f"{r['tokens_per_s'] / base:>6.2f} {r['warmup_s']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
