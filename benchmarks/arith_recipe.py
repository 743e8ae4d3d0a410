"""Measure quick-arith recipes: steps and wall time until + and - reach 90% held-out accuracy.

    .venv/bin/python benchmarks/arith_recipe.py --variants default,all_tokens --seeds 0
    .venv/bin/python benchmarks/arith_recipe.py --variants default --seeds 0,1,2

Each variant is the CPU default recipe (bitcheck.quick.default_recipe) with a few fields changed.
Runs go to a temporary folder; one line per run is printed (and appended to --log as JSON).
These are the measurements the README's "Choosing the recipe" table quotes.
"""
from __future__ import annotations

import argparse
import json
import tempfile

from bitcheck.quick import QuickOptions, run_quick

VARIANTS: dict[str, dict] = {
    "default": {},
    "eager": {"compile": False},
    "all_tokens": {"answer_only": False},
    "two_stage": {"schedule": "two_stage"},
    "lr1e-3": {"lr": 1e-3},
    "lr6e-3": {"lr": 6e-3},
    "lr1e-2": {"lr": 1e-2},
    "batch32": {"batch_size": 32},
    "bf16": {"precision": "bf16"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="default")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--log", default=None, help="append one JSON line per run here")
    args = ap.parse_args()
    print(f"{'variant':12} {'preset':6} {'seed':>4} {'verdict':7} {'steps':>6} {'seconds':>8} {'+ acc':>6} "
          f"{'- acc':>6} {'tok/s':>8}", flush=True)
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as out:
                opts = QuickOptions(task="arith", preset=args.preset, seed=seed, out=out, minutes=args.minutes,
                                    steps=args.steps, progress=False, overrides=dict(VARIANTS[name]))
                report, _ = run_quick(opts)
            m = report["metrics"]
            acc = m["accuracy"]
            print(f"{name:12} {m['preset']:6} {seed:>4} {report['verdict']['status']:7} {m['steps']:>6} "
                  f"{m['elapsed_s']:>8.1f} {acc.get('+', 0):>6.1%} {acc.get('-', 0):>6.1%} "
                  f"{m['tokens_per_s'] or 0:>8,.0f}", flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps({"variant": name, "seed": seed, "verdict": report["verdict"]["status"],
                                        **{k: m[k] for k in ("preset", "steps", "elapsed_s", "accuracy",
                                                             "tokens_per_s")}}) + "\n")


if __name__ == "__main__":
    main()
