"""The one judge: a Subject and the evidence of a run or a file -> probes -> decision tree -> Report.

    report = assess("quick-arith", subject, evidence, metrics, QUICK, run_dir=str(run.path))
    write_report(run, report.to_dict()); raise SystemExit(report.exit_code)

Every command builds its (Subject, Evidence) and calls `assess`; nothing else runs the probes and the
tree, writes a report dict or computes an exit code. After Ctrl-C only the quick weight-level probes
("static") run, so the report of what ran is written promptly.
"""
from __future__ import annotations

from dataclasses import dataclass

from bitcheck.rundir import RunDir
from bitcheck.subjects import probe_results
from bitcheck.verdict import QUICK, Evidence, Policy, Verdict, judge
from probes import Subject


@dataclass
class Report:
    command: str
    verdict: Verdict
    metrics: dict
    probes: list[dict]
    run_dir: str | None
    stopped: str | None = None  # how the run ended (a bitcheck.train.Stop value), for the exit code

    def to_dict(self) -> dict:
        """report.json's schema: command, verdict, metrics, probes, run_dir."""
        return {"command": self.command, "verdict": self.verdict.to_dict(), "metrics": self.metrics,
                "probes": self.probes, "run_dir": self.run_dir}

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 130 a run interrupted before it passed."""
        if self.verdict.status == "PASS":
            return 0
        return 130 if self.stopped == "interrupted" else 1


def assess(command: str, subject: Subject | None, evidence: Evidence, metrics: dict, policy: Policy = QUICK,
           run_dir: str | None = None, probes: list[dict] | None = None) -> Report:
    """Run the probes on `subject` and the tree on their results with `evidence`; `run_dir` is the
    report's run directory (None for a file diagnosed outside one). `probes`: results already run on
    this subject (a second judgement with more evidence, e.g. a bisection, does not probe again)."""
    if probes is None:
        probes = probe_results(subject, kinds=("static",) if evidence.stopped == "interrupted" else policy.kinds)
    return Report(command, judge(probes, evidence, policy), metrics, probes, run_dir, evidence.stopped)


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
