"""`bitcheck selftest`: the toolkit proves itself. Train a small healthy BitNet on arithmetic, plant
each known bug into a copy, run every probe and the decision tree, and check that the tree names the
right part; run the healthy setup on several seeds and count false alarms.

    report = run_selftest(seeds=(0, 1, 2), bugs=None)   # None = every bug
    report["ok"]  # False if any bug was missed / misattributed or any healthy seed raised an alarm

Bugs are planted from outside the model code (patched forwards, swapped callables, altered weights
or batches), exactly as a user's broken trainer would present them. Not covered: bugs that need
multi-GPU or real data.
"""
from __future__ import annotations

from bitcheck.bitnet.config import ConfigError
from bitcheck.judge.plants import BUGS, SELFTEST_STEPS, healthy_setup
from bitcheck.judge.subjects import probe_results
from bitcheck.judge.verdict import Evidence, judge


def _row(name: str, probes: list[dict], expected: str | None) -> dict:
    verdict = judge(probes, Evidence())
    fired = [p["name"] for p in probes if p["status"] in ("FAIL", "ERROR")]
    warned = [p["name"] for p in probes if p["status"] == "WARN"]
    right = verdict.part == expected if expected else verdict.category.value == "INFRASTRUCTURE OK"
    return {"case": name, "fired": fired, "warned": warned, "verdict": verdict.category.value,
            "part": verdict.part, "expected": expected or "INFRASTRUCTURE OK", "right": right,
            "values": {p["name"]: p["value"] for p in probes}}


def run_selftest(seeds=(0,), bugs=None, steps: int = SELFTEST_STEPS, progress=None) -> dict:
    """Plant the bugs into the seed-`seeds[0]` setup; run every seed healthy. `progress(msg)` is told
    what runs next."""
    tell = progress or (lambda msg: None)
    names = list(BUGS) if bugs is None else list(bugs)
    unknown = [b for b in names if b not in BUGS]
    if unknown:
        raise ConfigError(f"unknown bug(s) {', '.join(unknown)}; choose from {', '.join(BUGS)}")
    rows, healthy = [], []
    setups = {}
    for seed in seeds:
        tell(f"training healthy setup, seed {seed}")
        setups[seed] = healthy_setup(seed, steps)
        tell(f"probing healthy setup, seed {seed}")
        healthy.append(_row(f"healthy seed {seed}", probe_results(setups[seed].subject()), None))
    base = setups[seeds[0]]
    for name in names:
        tell(f"planting {name}")
        plant, expected = BUGS[name]
        rows.append(_row(name, probe_results(plant(base)), expected))
    missed = [r["case"] for r in rows if not r["right"]]
    alarms = [r["case"] for r in healthy if not r["right"] or r["fired"]]
    return {"bugs": rows, "healthy": healthy, "missed": missed, "false_alarms": alarms,
            "ok": not missed and not alarms}
