"""`bitcheck diagnose` of a 95M-parameter BitNet checkpoint with its factory: the user's scale (#22).

    .venv/bin/python benchmarks/diagnose_95m.py [--repeats 1] [--keep DIR]

Saves a random-init 95.4M BitNet of the seed design's 95M shape (vocabulary 32,000, hidden 768, 8 layers,
12 heads, 6 KV heads, FFN 3072) as `{'model': state_dict}` (fp32, ~382 MB), then runs, in a fresh process
per repeat, `python -m bitcheck diagnose FILE --model benchmarks.diagnose_95m:factory --json` (the factory
only: no tokenizer, no text, as a user first calls it). Prints each run's wall time and peak resident
memory (the child's ru_maxrss) against the file's size. Target (#22): <= 60 s and peak RSS <= 3x the file.

The factory is what a user writes: build the model, `torch.load` the file, `load_state_dict`, return it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.model import BitNet

CONFIG = ModelConfig(vocab_size=32000, n_embd=768, n_layer=8, n_head=12, n_kv_head=6, ffn_hidden=3072,
                     block_size=256)


def factory(path: str) -> torch.nn.Module:
    """The user's loader: the model, then its saved weights (strict)."""
    model = BitNet(CONFIG)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model


def run_once(path: Path) -> tuple[float, int, dict]:
    """(wall seconds, peak RSS bytes, the report) of one diagnose in a fresh process."""
    code = ("import resource, sys, runpy; sys.argv = ['bitcheck'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('bitcheck', run_name='__main__')\n"
            "finally:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, "diagnose", str(path), "--model",
                        "benchmarks.diagnose_95m:factory", "--json"], capture_output=True, text=True, env=env,
                       cwd=root)
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        sys.exit(f"diagnose exited {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
    peak_kib = int(p.stderr.strip().splitlines()[-1])  # ru_maxrss is KiB on Linux
    return wall, peak_kib * 1024, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--keep", help="write the checkpoint here (reused when present) instead of a temporary folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or tmp) / "bitnet-95m.pt"
        if not path.is_file():
            torch.manual_seed(0)
            model = BitNet(CONFIG)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict()}, path)
            del model
        size = path.stat().st_size
        print(f"95M BitNet ({sum(t.numel() for t in torch.load(path, weights_only=True, mmap=True)['model'].values()):,} "
              f"values), {size / 1e6:.0f} MB; threads {os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())}; "
              f"parent RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
        walls, peaks = [], []
        for i in range(args.repeats):
            wall, peak, report = run_once(path)
            walls.append(wall)
            peaks.append(peak)
            statuses = {r["name"]: r["status"] for r in report.get("probes", [])}
            ran = sum(s != "SKIP" for s in statuses.values())
            print(f"run {i + 1}: {wall:6.1f} s, peak RSS {peak / 1e9:.2f} GB ({peak / size:.2f}x the file); "
                  f"{ran} probes ran, verdict {report['verdict']['status']}")
        print(f"median {statistics.median(walls):.1f} s (target <= 60), peak RSS {statistics.median(peaks) / size:.2f}x "
              f"the file (target <= 3x)")


if __name__ == "__main__":
    main()
