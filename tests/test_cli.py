"""The CLI through typer's CliRunner: exit codes 0/1/2, --json on stdout, one-line usage errors."""
import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from bitcheck.commands.cli import app

runner = CliRunner()
FAST = ["--no-compile", "--device", "cpu"]


def _one_line_error(result, needle):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert needle in result.output, result.output
    assert len([line for line in result.output.strip().splitlines() if line.strip()]) <= 2, result.output


def test_presets_json():
    """`bitcheck presets --json` lists every preset with its exact parameter count."""
    result = runner.invoke(app, ["presets", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) >= {"tiny", "1m", "5m", "12m"}
    assert rows["12m"]["vocab_size"] == 2048 and 10e6 < rows["12m"]["params"] < 13e6


@pytest.mark.parametrize("args,needle", [
    (["--preset", "huge"], "unknown preset"),
    (["--steps", "0"], "--steps must be positive"),
    (["--minutes", "-1"], "--minutes must be positive"),
    (["--ops", "+%"], "unknown operator"),
    (["--precision", "fp8"], "unknown precision"),
])
def test_bad_options_exit_2(tmp_path, args, needle):
    """Each user mistake is one clear line and exit 2, and no run directory is created."""
    result = runner.invoke(app, ["quick-arith", *FAST, "--out", str(tmp_path / "runs"), *args])
    _one_line_error(result, needle)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unwritable_out(tmp_path):
    """An --out that cannot be written is exit 2 with the reason."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["quick-arith", *FAST, "--steps", "5", "--out", str(blocker / "runs")])
    _one_line_error(result, "cannot write to output directory")
    assert blocker.read_text() == "not a folder"


def test_resume_bad_inputs(tmp_path):
    """--resume of a missing dir, a corrupt checkpoint or a foreign file: exit 2, file untouched."""
    _one_line_error(runner.invoke(app, ["quick-arith", *FAST, "--resume", str(tmp_path / "nope")]),
                    "not a run directory")
    ck = tmp_path / "run" / "checkpoints" / "step_3" / "checkpoint.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"\x80\x02garbage that is not a checkpoint")
    digest = hashlib.sha256(ck.read_bytes()).hexdigest()
    _one_line_error(runner.invoke(app, ["quick-arith", *FAST, "--resume", str(tmp_path / "run")]),
                    "not a readable bitcheck checkpoint")
    assert hashlib.sha256(ck.read_bytes()).hexdigest() == digest
    torch.save({"weights": torch.zeros(3)}, ck)
    _one_line_error(runner.invoke(app, ["quick-arith", *FAST, "--resume", str(tmp_path / "run")]),
                    "missing model_state_dict")


@pytest.mark.training
def test_short_run_fails_with_json_report(tmp_path):
    """A run too short to learn is FAIL (exit 1); --json prints the report schema on stdout."""
    result = runner.invoke(app, ["quick-arith", *FAST, "--steps", "20", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["command"] == "quick-arith"
    assert report["verdict"]["status"] == "FAIL" and report["verdict"]["next_steps"]
    assert report["verdict"]["category"] == "UNDERTRAINED"
    assert set(report) >= {"command", "verdict", "metrics", "probes", "run_dir"}
    statuses = {p["name"]: p["status"] for p in report["probes"]}
    bad = {name for name, status in statuses.items() if status in ("FAIL", "ERROR")}
    assert len(statuses) >= 13 and bad <= {"repetition", "gibberish"}, statuses  # 20 steps write gibberish
    for p in report["probes"]:
        assert set(p) >= {"name", "status", "value", "thresholds", "message", "hint", "branch"}
    m = report["metrics"]
    assert m["steps"] == 20 and set(m["accuracy"]) == {"+", "-"}
    # within the loss_at_init probe's WARN bar: on the answer tokens only (digits, '-', newline) a fresh
    # tiny model measures ln(vocab) + 0.128..0.144 over data seeds 0-7; on uniform random targets
    # every preset is within 0.1 (test_model.py)
    assert abs(m["loss_at_init"] - m["ln_vocab"]) < 0.15
    run = tmp_path / report["run_dir"].split("/")[-1]
    for rel in ("config.json", "report.json", "report.md", "report.html", "loss_curve.png", "metrics/scalars.jsonl",
                "metrics/evals.jsonl", "samples/samples.jsonl", "checkpoints/step_20/checkpoint.pt"):
        assert (run / rel).is_file(), rel
    rec = json.loads((run / "metrics/scalars.jsonl").read_text().splitlines()[-1])
    assert set(rec) >= {"step", "loss", "lr", "weight_decay", "grad_norm", "tokens_per_s", "elapsed_s"}
    sample = json.loads((run / "samples/samples.jsonl").read_text().splitlines()[0])
    assert set(sample) >= {"step", "prompt", "generated_text"}

    # `bitcheck report` re-renders it in every format, with the run's exit code
    for fmt, needle in (("md", "# bitcheck quick-arith"), ("html", "<!doctype html>"), ("json", '"verdict"')):
        shown = runner.invoke(app, ["report", str(run), "--format", fmt])
        assert shown.exit_code == 1 and needle in shown.stdout
    assert runner.invoke(app, ["report", str(tmp_path / "nothing")]).exit_code == 2

    # resume the same run for 10 more steps: it continues from step 20, in place
    again = runner.invoke(app, ["quick-arith", "--resume", str(run), "--steps", "30", "--json"])
    assert again.exit_code == 1, again.output
    assert json.loads(again.stdout)["metrics"]["steps"] == 30
    steps = [json.loads(line)["step"] for line in (run / "metrics/scalars.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 30


@pytest.mark.training
@pytest.mark.parametrize("command, keys", [
    ("quick-json", {"parse", "schema", "diversity", "field_diversity"}),
    ("quick-python", {"parse", "indent", "runs", "distinct"}),
])
def test_other_quick_commands_short_run(tmp_path, command, keys):
    """quick-json / quick-python: same schema and exit codes as quick-arith; a 5-step run is FAIL;
    resuming it as the other task is a usage error."""
    result = runner.invoke(app, [command, *FAST, "--steps", "5", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output[-2000:]
    report = json.loads(result.stdout)
    assert report["command"] == command and report["verdict"]["status"] == "FAIL"
    assert set(report["metrics"]["accuracy"]) == keys
    assert set(report["metrics"]["pass_criteria"]) <= keys
    assert {p["name"] for p in report["probes"]} >= {"repetition", "gibberish", "data_decode"}
    other = "quick-python" if command == "quick-json" else "quick-json"
    _one_line_error(runner.invoke(app, [other, "--resume", report["run_dir"]]), "run, not")
    _one_line_error(runner.invoke(app, [command, *FAST, "--preset", "nope"]), "unknown preset")


def test_json_on_usage_error():
    """With --json a user mistake is still exit 2 and one line on stderr, and stdout holds one JSON document
    (an error object), so a script never parses an empty stdout."""
    result = runner.invoke(app, ["quick-arith", *FAST, "--steps", "0", "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and "--steps must be positive" in error["error"]
    assert "--steps must be positive" in result.stderr


def test_user_code_prints_go_to_stderr(tmp_path):
    """A user's model code that prints while it builds does not break --json: its text goes to stderr."""
    from tests.user_models import UserLM
    torch.manual_seed(0)
    torch.save(UserLM(64).state_dict(), tmp_path / "init.pt")
    result = runner.invoke(app, ["diagnose", str(tmp_path / "init.pt"), "--model", "tests.user_models:noisy", "--json"])
    assert result.exit_code in (0, 1), result.output[-2000:]
    assert json.loads(result.stdout)["command"] == "diagnose"
    assert "using slow attention" in result.stderr and "using slow attention" not in result.stdout
