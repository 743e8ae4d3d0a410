"""Measure quick-run recipes: steps and wall time until the task's PASS criteria hold.

    .venv/bin/python benchmarks/quick_recipe.py --variants default,all_tokens --seeds 0
    .venv/bin/python benchmarks/quick_recipe.py --task json --seeds 0,1,2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quick_recipe.py --threads 1 ...   # two side by side

Each variant is the CPU default recipe of the task (bitcheck.quick.default_recipe) with a few
fields changed ("model.*" fields change the preset's shape). Runs go to a temporary folder; one
line per run is printed (and appended to --log as JSON with the score at every evaluation).
These are the measurements the README's "Choosing the recipe" tables quote.
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
    "wd0": {"weight_decay": 0.0},
    "batch128": {"batch_size": 128},
    "warm300": {"warmup_steps": 300},
    "layers4": {"model.n_layer": 4},
    "heads4kv2": {"model.n_head": 4, "model.n_kv_head": 2},  # the tiny preset before 8 heads
    "kv4": {"model.n_head": 4, "model.n_kv_head": 4},
    "embd192": {"model.n_embd": 192, "model.n_head": 6, "model.n_kv_head": 3, "model.ffn_hidden": 576},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="arith", choices=("arith", "json", "python"))
    ap.add_argument("--variants", default="default")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--log", default=None, help="append one JSON line per run here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (two 1-thread runs side by side)")
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    print(f"{'task':6} {'variant':12} {'preset':6} {'seed':>4} {'verdict':7} {'steps':>6} {'seconds':>8} "
          f"{'tok/s':>8}  scores", flush=True)
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as out:
                opts = QuickOptions(task=args.task, preset=args.preset, seed=seed, out=out, minutes=args.minutes,
                                    steps=args.steps, progress=False, overrides={k: v for k, v in VARIANTS[name].items() if not k.startswith("model.")},
                                    model_overrides={k[6:]: v for k, v in VARIANTS[name].items()
                                                     if k.startswith("model.")})
                report, _ = run_quick(opts)
                # the scores at each evaluation: the learning curve
                with open(f"{report['run_dir']}/metrics/evals.jsonl") as f:
                    evals = [json.loads(line) for line in f]
                curve = {e["step"]: {k: round(v, 3) for k, v in e["score"]["per_group"].items()} for e in evals}
            m = report["metrics"]
            scores = " ".join(f"{k} {v:.1%}" for k, v in m["accuracy"].items())
            # every probe that is not PASS, so a healthy run's claim "all PASS or justified SKIP" is checked
            other = {p["name"]: p["status"] for p in report["probes"] if p["status"] != "PASS"}
            print(f"{args.task:6} {name:12} {m['preset']:6} {seed:>4} {report['verdict']['status']:7} {m['steps']:>6} "
                  f"{m['elapsed_s']:>8.1f} {m['tokens_per_s'] or 0:>8,.0f}  {scores}  {report['verdict']['category']}; "
                  f"not PASS: {other or 'none'}", flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps({"task": args.task, "variant": name, "seed": seed, "verdict": report["verdict"]["status"],
                                        **{k: m[k] for k in ("preset", "steps", "elapsed_s", "accuracy",
                                                             "tokens_per_s")}, "curve": curve,
                                        "category": report["verdict"]["category"], "probes_not_pass": other}) + "\n")


if __name__ == "__main__":
    main()
