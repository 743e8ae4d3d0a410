"""The run directory and checkpoints.

    runs/<run_id>/config.json                      model, training and task configs
    runs/<run_id>/metrics/scalars.jsonl            step, loss, lr, weight_decay, grad_norm, tokens_per_s, elapsed_s
    runs/<run_id>/metrics/evals.jsonl              periodic task evaluations
    runs/<run_id>/samples/samples.jsonl            step, prompt, generated_text
    runs/<run_id>/checkpoints/step_<N>/checkpoint.pt
    runs/<run_id>/report.json, report.md, report.html, loss_curve.png

What a checkpoint holds, and how it is written and read, is bitcheck/bitnet/checkpoint.py. Writes here go
to a temporary file first and are renamed into place.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from bitcheck.errors import UserError


class RunDirError(UserError):
    """A run directory or checkpoint the user pointed at cannot be used: reported as one line."""


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metrics = self.path / "metrics" / "scalars.jsonl"
        self.evals = self.path / "metrics" / "evals.jsonl"
        self.samples = self.path / "samples" / "samples.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.config = self.path / "config.json"
        self.report_json = self.path / "report.json"
        self.report_md = self.path / "report.md"
        self.report_html = self.path / "report.html"
        self.loss_png = self.path / "loss_curve.png"

    @classmethod
    def create(cls, root: str | Path, prefix: str) -> "RunDir":
        """A new, empty run directory under root; never reuses an existing one."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".bitcheck-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise RunDirError(f"cannot write to output directory {root}: {e.strerror or e}") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = root / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
            except FileExistsError:
                continue
            run = cls(path)
            for sub in (run.metrics.parent, run.samples.parent, run.checkpoints):
                sub.mkdir(parents=True, exist_ok=True)
            return run
        raise RunDirError(f"could not find a free run directory name under {root}")

    @classmethod
    def existing(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"{path} is not a run directory (no such directory)")
        run = cls(path)
        if not run.checkpoints.is_dir():
            raise RunDirError(f"{path} is not a run directory (no checkpoints/ folder)")
        for sub in (run.metrics.parent, run.samples.parent):  # a copied run may hold its checkpoints alone
            sub.mkdir(exist_ok=True)
        return run

    def latest_checkpoint(self) -> Path:
        found = []
        for d in self.checkpoints.glob("step_*"):
            m = re.fullmatch(r"step_(\d+)", d.name)
            if m and (d / "checkpoint.pt").is_file():
                found.append((int(m.group(1)), d / "checkpoint.pt"))
        if not found:
            raise RunDirError(f"{self.path} has no checkpoint to resume from")
        return max(found)[1]

    def read_jsonl(self, path: Path) -> list[dict]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_after(self, path: Path, step: int) -> None:
        """Drop records logged after `step`: a resumed run re-does those steps."""
        if path.exists():
            keep = [r for r in self.read_jsonl(path) if r.get("step", 0) <= step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def empty_output_dir(path: str | Path) -> Path:
    """A folder for output files that is new or empty (never mixes with or overwrites older files)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(f"--out {path} exists and is not an empty folder; give a new one")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot write to output directory {path} ({e.strerror or e})") from None
    return path


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
