"""The one judge: a Subject and the evidence of a run or a file -> probes -> decision tree -> Report.

    report = assess("quick-arith", subject, facts.evidence(curve, passed, where), facts, QUICK, run_dir=str(run.path))
    write_report(run, report.to_dict()); return report      # the CLI renders it and exits report.exit_code

Every command builds its (Subject, Evidence) and calls `assess`; nothing else runs the probes and the
tree, writes a report dict or computes an exit code. After Ctrl-C only the quick weight-level probes
("static") run, so the report of what ran is written promptly. A run of the user's model that did not
learn may be bisected: `retrain` is that second opinion, asked once by the judge and judged again.
The commands that check without the tree (conform's properties, export's parity, the self-test's
matrix) return an `Outcome`, whose exit code is decided here too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from bitcheck.bitnet.rundir import RunDir
from bitcheck.judge.facts import RunFacts
from bitcheck.judge.subjects import probe_results
from bitcheck.judge.verdict import QUICK, STEEP_DROP, Category, Evidence, Policy, Verdict, judge
from probes import Subject

# exit codes of every command (README, "Exit codes"); 2, a user mistake, is the CLI's (errors.UserError)
EXIT_PASS, EXIT_FAIL, EXIT_INTERRUPTED = 0, 1, 130
# the verdicts a retrain with swapped components can explain (bitcheck/user/bisection.py)
RETRAIN_EXPLAINS = (Category.UNDERTRAINED, Category.TOO_SMALL)


@dataclass
class Report:
    command: str
    verdict: Verdict
    facts: RunFacts  # report.json's metrics derive from it
    probes: list[dict]
    run_dir: str | None
    stopped: str | None = None  # how the run ended (a bitcheck.bitnet.train.Stop value), for the exit code

    def to_dict(self) -> dict:
        """report.json's schema: command, verdict, metrics, probes, run_dir."""
        return {"command": self.command, "verdict": self.verdict.to_dict(), "metrics": self.facts.metrics(),
                "probes": self.probes, "run_dir": self.run_dir}

    @property
    def exit_code(self) -> int:
        """0 PASS (or WARN: a log that cannot decide, CANNOT TELL), 1 FAIL, 130 a run interrupted before it passed."""
        if self.verdict.status in ("PASS", "WARN"):
            return EXIT_PASS
        return EXIT_INTERRUPTED if self.stopped == "interrupted" else EXIT_FAIL


def saved_exit_code(report: dict) -> int:
    """The exit code of a report.json re-rendered later (`bitcheck report`): 0 PASS or WARN, else 1."""
    return EXIT_PASS if report["verdict"]["status"] in ("PASS", "WARN") else EXIT_FAIL


@dataclass
class Outcome:
    """The result of a command that checks without the decision tree; `data` is what it prints (--json)."""
    command: str
    passed: bool
    data: dict

    def to_dict(self) -> dict:
        return self.data

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_FAIL


def conform_outcome(layer: str, properties: list[dict], facts: dict | None = None) -> Outcome:
    """`bitcheck conform`: passes when every property holds (a SKIP or ERROR does not). `facts`: what
    probes/conform.py's inspect_layer found; the report states the input rank and the norm tested through."""
    facts = facts or {}
    found = {"input": "(1, N, in)" if facts.get("input_rank") == 3 else "(N, in)",
             "input_norm": facts.get("input_norm"), "cast_from": facts.get("cast_from")}
    return Outcome("conform", all(r["status"] == "PASS" for r in properties),
                   {"command": "conform", "layer": layer, "found": found, "properties": properties})


def export_outcome(out: str, result: dict) -> Outcome:
    """`bitcheck export`: passes when the packed inference path holds parity with the training forward."""
    return Outcome("export", result["parity"]["status"] == "PASS", {"command": "export", "out": out, **result})


def selftest_outcome(result: dict) -> Outcome:
    """`bitcheck selftest`: passes when every planted bug is caught and attributed and no healthy seed alarms."""
    return Outcome("selftest", bool(result["ok"]), result)


def assess(command: str, subject: Subject | None, evidence: Evidence, facts: RunFacts, policy: Policy = QUICK,
           run_dir: str | None = None, probes: list[dict] | None = None,
           retrain: Callable[[], list[dict]] | None = None) -> Report:
    """Run the probes on `subject` and the tree on their results with `evidence` (from `facts`, which
    the report carries as its metrics: bitcheck/judge/facts.py); `run_dir` is the
    report's run directory (None for a file diagnosed outside one). `probes`: results already run on
    this subject. `retrain`: () -> bisection rows ({"swap", "passed", "steps", ...}, bitcheck/user/bisection.py),
    called once when the verdict is UNDERTRAINED or MODEL TOO SMALL after a run that was not
    interrupted; the rows become a fact and evidence, and the tree judges again."""
    if probes is None:
        probes = probe_results(subject, kinds=("static",) if evidence.stopped == "interrupted" else policy.kinds)
    verdict = judge(probes, evidence, policy)
    if (retrain is not None and evidence.stopped != "interrupted" and not evidence.bisection
            and verdict.category in RETRAIN_EXPLAINS):
        facts = facts.with_(bisection=retrain())
        evidence = dataclasses.replace(evidence, bisection=facts.bisection)
        verdict = judge(probes, evidence, policy)
    return Report(command, verdict, facts, probes, run_dir, evidence.stopped)


def decide(probes: list[dict], metrics: dict, scalars: list[dict], task_passed: bool | None,
           run_dir: str = "RUN_DIR", steep_drop: float = STEEP_DROP) -> dict:
    """The tree on plain data: a report's metrics dict and loss-curve rows -> the verdict dict
    {status, category, part, diagnosis, evidence, next_steps}."""
    return judge(probes, RunFacts(**metrics).evidence(scalars, task_passed, run_dir),
                 Policy(steep_drop=steep_drop)).to_dict()


def run_curve(run: RunDir, upto: int | None = None, validation: bool = False, min_points: int = 0) -> list[dict]:
    """The loss curve of a run directory, cut at step `upto`: the validation losses of evals.jsonl when
    `validation` and there are at least `min_points` of them, else the training losses of scalars.jsonl."""
    def cut(rows):
        return [r for r in rows if upto is None or r.get("step", 0) <= upto]
    if validation:
        evals = [r for r in cut(run.read_jsonl(run.evals)) if "val_loss" in r]
        if len(evals) >= min_points:
            return [{"step": r["step"], "loss": r["val_loss"]} for r in evals]
    return cut(run.read_jsonl(run.metrics))
