"""Measure quick-run recipes: steps and wall time until the task's PASS criteria hold.

The PASS tables of docs/MEASUREMENTS.md come from the default command exactly as users run it, timed from start
to verdict (a fresh `bitcheck quick-<task>` process per seed, compiled on CPU, its own defaults):

    .venv/bin/python benchmarks/quick_recipe.py --cli --cold --task arith --seeds 0-19     # alone
    .venv/bin/python benchmarks/quick_recipe.py --cli --task json --seeds 0-9 --parallel 2  # side by side,
                                                                  # one thread each (OMP_NUM_THREADS=1)

Exploring recipes: each variant is the CPU default recipe of the task (bitcheck.commands.quick.default_recipe)
with a few fields changed ("model.*" fields change the preset's shape), run in this process:

    .venv/bin/python benchmarks/quick_recipe.py --variants default,rows64 --seeds 0,1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quick_recipe.py --threads 1 ...   # two side by side

Runs go to a temporary folder; one line per run is printed (and appended to --log as JSON with the
score and validation loss at every evaluation), then a summary: PASS count, median and worst steps
and seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bitcheck.commands.quick import QuickOptions, run_quick

VARIANTS: dict[str, dict] = {
    "default": {},
    "eager": {"compile": False},
    "all_tokens": {"answer_only": False},
    # arithmetic: 64 x 64-token rows of packed lines (the recipe before one problem per row)
    "rows64": {"seq_len": 64, "batch_size": 64},
    "constant": {"cycle_steps": 10**9},  # no decay: the peak LR after warmup
    "cycle1200": {"cycle_steps": 1200},
    "cycle3000": {"cycle_steps": 3000},
    "lr1.5e-3": {"lr": 1.5e-3},
    "lr6e-3": {"lr": 6e-3},
    "batch512": {"batch_size": 512},
    "bf16": {"precision": "bf16"},
    "wd0": {"weight_decay": 0.0},
    "layers3": {"model.n_layer": 3},
    "heads4kv2": {"model.n_head": 4, "model.n_kv_head": 2},  # the tiny preset before 8 heads
}


def parse_seeds(spec: str) -> list[int]:
    """'0-19' or '0,3,5' -> seeds."""
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def record(task: str, variant: str, seed: int, report: dict, wall_s: float | None) -> dict:
    """One run's line: verdict, steps, seconds, the learning curve and every probe that is not PASS
    (so a healthy run's claim "all PASS or justified SKIP" is checked)."""
    with open(Path(report["run_dir"]) / "metrics" / "evals.jsonl") as f:
        evals = [json.loads(line) for line in f]
    m = report["metrics"]
    return {"task": task, "variant": variant, "seed": seed, "verdict": report["verdict"]["status"],
            "category": report["verdict"]["category"], "wall_s": wall_s,
            **{k: m.get(k) for k in ("preset", "steps", "stopped", "elapsed_s", "accuracy", "tokens_per_s")},
            "curve": {e["step"]: {**{k: round(v, 3) for k, v in e["score"]["per_group"].items()},
                                  **({"val_loss": round(e["val_loss"], 4)} if "val_loss" in e else {})}
                      for e in evals},
            "probes_not_pass": {p["name"]: p["status"] for p in report["probes"] if p["status"] != "PASS"}}


# Bugs planted into training (BitLinear.forward replaced for the whole run), to measure how long a
# broken run takes to reach its verdict: `--plant no_ste`.
PLANTS = ("no_ste", "no_quant", "inverted_scale")  # BitLinear forwards of bitcheck/judge/plants.py


def run_variant(task: str, name: str, seed: int, args) -> dict:
    if args.plant:
        from bitcheck.bitnet import model
        from bitcheck.judge import plants
        model.BitLinear.forward = getattr(plants, args.plant)
    with tempfile.TemporaryDirectory() as out:
        fields = VARIANTS[name]
        opts = QuickOptions(task=task, preset=args.preset, seed=seed, out=out, minutes=args.minutes,
                            steps=args.steps, progress=False,
                            overrides={k: v for k, v in fields.items() if not k.startswith("model.")},
                            model_overrides={k[6:]: v for k, v in fields.items() if k.startswith("model.")})
        report = run_quick(opts).to_dict()
        return record(task, name, seed, report, None)


def run_cli(task: str, seed: int, args, threads: int | None) -> dict:
    """The default command in a fresh process, timed from start to verdict."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    with tempfile.TemporaryDirectory() as out:
        if args.cold:  # an empty compile cache, as on a new user's first run
            env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(out) / "inductor-cache")
        cmd = [sys.executable, "-m", "bitcheck", f"quick-{task}", "--seed", str(seed), "--out", out, "--json"]
        if args.minutes is not None:
            cmd += ["--minutes", str(args.minutes)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if done.returncode not in (0, 1):
            raise SystemExit(f"seed {seed}: exit {done.returncode}\n{done.stderr[-2000:]}")
        return record(task, "cli", seed, json.loads(done.stdout), wall)


def line(r: dict) -> str:
    scores = " ".join(f"{k} {v:.1%}" for k, v in r["accuracy"].items())
    wall = f"{r['wall_s']:>7.1f}" if r["wall_s"] is not None else f"{'-':>7}"
    return (f"{r['task']:6} {r['variant']:12} {r['seed']:>4} {r['verdict']:7} {r['stopped']:8} {r['steps']:>6} "
            f"{r['elapsed_s']:>8.1f} {wall} {r['tokens_per_s'] or 0:>8,.0f}  {scores}  {r['category']}; "
            f"not PASS: {r['probes_not_pass'] or 'none'}")


def summary(rows: list[dict]) -> str:
    """PASS count, median and worst steps and seconds to PASS (wall seconds when timed from the command)."""
    passed = [r for r in rows if r["verdict"] == "PASS"]
    out = f"{len(passed)} of {len(rows)} PASS"
    if passed:
        steps = sorted(r["steps"] for r in passed)
        secs = sorted(r["wall_s"] if r["wall_s"] is not None else r["elapsed_s"] for r in passed)
        what = "wall s" if passed[0]["wall_s"] is not None else "training s"
        out += (f"; steps median {statistics.median(steps):.0f}, worst {steps[-1]}; {what} median "
                f"{statistics.median(secs):.0f}, worst {secs[-1]:.0f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="arith", choices=("arith", "json", "python"))
    ap.add_argument("--cli", action="store_true", help="time the default command, a fresh process per seed")
    ap.add_argument("--cold", action="store_true",
                    help="with --cli: each run starts with an empty torch.compile cache (a first run)")
    ap.add_argument("--parallel", type=int, default=1, choices=(1, 2),
                    help="with --cli: 2 runs side by side, one thread each")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--seeds", default="0", help="'0-19' or '0,1,2'")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--minutes", type=float, default=None, help="budget (default: the recipe's)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--log", default=None, help="append one JSON line per run here")
    ap.add_argument("--plant", choices=sorted(PLANTS), default=None, help="train with this bug planted")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (two 1-thread runs side by side)")
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    seeds = parse_seeds(args.seeds)
    print(f"{'task':6} {'variant':12} {'seed':>4} {'verdict':7} {'stopped':8} {'steps':>6} {'train s':>8} "
          f"{'wall s':>7} {'tok/s':>8}  scores", flush=True)
    rows: list[dict] = []

    def done(r: dict) -> None:
        rows.append(r)
        print(line(r), flush=True)
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps(r) + "\n")

    if args.cli:
        threads = 1 if args.parallel == 2 else None
        with ThreadPoolExecutor(args.parallel) as pool:
            for r in pool.map(lambda s: run_cli(args.task, s, args, threads), seeds):
                done(r)
        print(f"{args.task}: {summary(rows)} ({'two runs side by side, one thread each' if threads else 'alone'})")
        return
    for name in args.variants.split(","):
        for seed in seeds:
            done(run_variant(args.task, name, seed, args))
        print(f"{args.task} {name}: {summary([r for r in rows if r['variant'] == name])}", flush=True)


if __name__ == "__main__":
    main()
