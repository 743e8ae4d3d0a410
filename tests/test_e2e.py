"""End to end: the real `bitcheck quick-arith` learns arithmetic; Ctrl-C loses nothing."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitcheck.cli import app


@pytest.mark.slow
def test_quick_arith_learns(tmp_path):
    """The default CPU recipe reaches PASS (+ and - >= 90% held-out) and says so with exit 0."""
    result = CliRunner().invoke(app, ["quick-arith", "--device", "cpu", "--seed", "1", "--out", str(tmp_path),
                                      "--json"])
    report = json.loads(result.stdout)
    m = report["metrics"]
    assert result.exit_code == 0, report["verdict"]
    assert report["verdict"]["status"] == "PASS" and m["stopped"] == "early"
    assert m["accuracy"]["+"] >= 0.9 and m["accuracy"]["-"] >= 0.9
    assert m["final_loss"] < 0.3 * m["loss_at_init"]  # real learning, not a lucky eval


def _bitcheck(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "bitcheck", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_saves_checkpoint_and_report(tmp_path):
    """SIGINT mid-training: a checkpoint and the report of what ran are written; exit 130."""
    proc = _bitcheck("quick-arith", "--no-compile", "--device", "cpu", "--steps", "100000", "--out", str(tmp_path))
    deadline = time.time() + 120
    scalars = None
    while time.time() < deadline:
        found = list(Path(tmp_path).glob("*/metrics/scalars.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            scalars = found[0]
            break
        time.sleep(0.5)
    assert scalars is not None, proc.communicate(timeout=5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    run = scalars.parent.parent
    report = json.loads((run / "report.json").read_text())
    assert report["metrics"]["stopped"] == "interrupted"
    assert "--resume" in " ".join(report["verdict"]["next_steps"])
    step = report["metrics"]["steps"]
    assert step >= 20 and (run / "checkpoints" / f"step_{step}" / "checkpoint.pt").is_file()
    assert "Traceback" not in err
