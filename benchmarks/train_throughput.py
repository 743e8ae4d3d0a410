"""Training throughput (tokens/s) of the presets: fp32 vs bf16, eager vs compiled.

    .venv/bin/python benchmarks/train_throughput.py --presets tiny,5m --steps 30
    .venv/bin/python benchmarks/train_throughput.py --presets tiny --precisions fp32,bf16 --compile both
    .venv/bin/python benchmarks/train_throughput.py --presets 1m,5m,12m --vocab 2048 --batch 32 --seq 256 \
        --compile both      # the TinyStories shapes (1m keeps its 192 characters)
    .venv/bin/python benchmarks/train_throughput.py --presets tiny --precisions fp32 --compile both \
        --linear both       # the cost of ternary training: the same model with nn.Linear

Times full training steps (forward, backward, clip, AdamW) on random tokens after warm-up steps,
and prints the median step time and tokens/s per configuration, plus each one's ratio to the first
row (one run, one machine: compare ratios, not absolute figures across runs). `--linear` swaps every
BitLinear for an nn.Linear of the same shape (no quantizers, no STE): the full-precision twin.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bitcheck.bitnet.config import TrainConfig, preset_config
from bitcheck.bitnet.model import BitLinear, BitNet
from bitcheck.bitnet.train import build_optimizer


def full_precision(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every BitLinear by an nn.Linear with the same weight (in place)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BitLinear):
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=False)
                plain.weight = child.weight
                setattr(parent, name, plain)
    return model


def measure(preset: str, precision: str, compiled: bool, batch: int, seq: int, steps: int, warmup: int,
            device: str, vocab: int = 32, layer: str = "bitlinear") -> dict:
    torch.manual_seed(0)
    cfg = preset_config(preset, vocab_size=vocab if preset in ("tiny", "5m") else None)
    model = BitNet(cfg)
    if layer == "linear":
        model = full_precision(model)
    model = model.to(device)
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
            "layer": layer,
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
    ap.add_argument("--linear", choices=["bitlinear", "linear", "both"], default="bitlinear",
                    help="BitLinear (ternary, the default), nn.Linear in its place, or both")
    args = ap.parse_args()
    compiles = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    layers = ["bitlinear", "linear"] if args.linear == "both" else [args.linear]
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'preset':7} {'params':>10} {'prec':5} {'compiled':8} {'layer':9} {'B x T':>9} {'step ms':>9} "
          f"{'tok/s':>10} {'ratio':>6} {'bit/lin':>9} {'warmup s':>8}")
    base = None
    for preset in args.presets.split(","):
        for prec in args.precisions.split(","):
            for comp in compiles:
                ternary = None
                for layer in layers:
                    r = measure(preset, prec, comp, args.batch, args.seq, args.steps, args.warmup, args.device,
                                args.vocab, layer)
                    base = base or r["tokens_per_s"]
                    # bit/lin (on the nn.Linear row): BitLinear's tokens/s over its nn.Linear twin's,
                    # the two measured one after the other
                    ternary = r["tokens_per_s"] if layer == "bitlinear" else ternary
                    vs = f"{ternary / r['tokens_per_s']:>9.2f}" if layer == "linear" and ternary else f"{'':>9}"
                    print(f"{r['preset']:7} {r['params']:>10,} {prec:5} {str(comp):8} {layer:9} "
                          f"{r['batch']:>4}x{r['seq']:<4} {r['median_step_s'] * 1e3:>9.1f} {r['tokens_per_s']:>10,.0f} "
                          f"{r['tokens_per_s'] / base:>6.2f} {vs} {r['warmup_s']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
