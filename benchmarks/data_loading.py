"""Is data loading ever the bottleneck? Times TokenBatches (random windows of the memory-mapped uint16
token file) against one training step of the TinyStories presets.

    .venv/bin/python benchmarks/data_loading.py [--stories 20000] [--batch 32] [--seq 256]

Builds a token cache of generated stories (synthetic:N, byte-level BPE 2048) in a temporary folder,
prints the tokenizing rate, then the median time to draw one batch (cold: first touch of the file
pages; warm: afterwards) and its share of the fp32 eager training step of 1m and 12m.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from bitcheck.bitnet import tokenizer as toks
from bitcheck.bitnet.config import TrainConfig, preset_config
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.textdata import TokenBatches, build_cache, open_source
from bitcheck.bitnet.train import build_optimizer


def median_s(fn, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=256)
    args = ap.parse_args()
    src = open_source(f"synthetic:{args.stories}")
    tok = toks.train(src.stories("train"), 2048)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        cache = build_cache(src, tok, d, progress=False)
        secs = time.perf_counter() - t
        n = cache.meta["train"]["tokens"] + cache.meta["val"]["tokens"]
        print(f"tokenize {args.stories:,} stories -> {n:,} tokens in {secs:.1f} s ({n / secs:,.0f} tok/s, "
              f"{cache.bytes_per_token('train'):.2f} bytes/token)")
        batches = TokenBatches(cache.train, args.seq, args.batch, seed=0)
        cold = median_s(lambda i: batches(i), 50)
        warm = median_s(lambda i: batches(i), 200)
        print(f"batch {args.batch}x{args.seq}: cold {cold * 1e3:.2f} ms, warm {warm * 1e3:.2f} ms "
              f"({args.batch * args.seq / warm:,.0f} tok/s of loading)")
        for preset in ("1m", "12m"):
            cfg = preset_config(preset)
            model = BitNet(cfg)
            opt = build_optimizer(model, TrainConfig())
            x, y = batches(0)
            x, y = x % cfg.vocab_size, y % cfg.vocab_size

            def step(_):
                _, loss = model(x, y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            s = median_s(step, 5)
            print(f"{preset}: train step {s * 1e3:.0f} ms; loading is {warm / s:.2%} of it")


if __name__ == "__main__":
    main()
