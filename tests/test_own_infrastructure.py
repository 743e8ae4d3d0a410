"""Your infrastructure, not ours: a user's own model (level 1), optimizer and schedule (level 2) and
training loop (level 3, bitcheck.user.session) on the quick tasks, written apart from bitcheck
(tests/user_train.py). Healthy, each level passes quick-arith (slow tests); each planted training-time
bug is named with the right part after a short run; bad adapters are one line and exit 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitcheck.commands.cli import app
from bitcheck.user.session import Session
from tests import user_train

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu"]


def _run(tmp_path, *args, code=None):
    result = runner.invoke(app, ["quick-arith", *FAST, "--out", str(tmp_path / "runs"), "--json", *args])
    assert "Traceback" not in result.output, result.output[-3000:]
    if code is not None:
        assert result.exit_code == code, result.output[-3000:]
    return result, json.loads(result.stdout) if result.exit_code in (0, 1) else None


def _status(report):
    return {p["name"]: p["status"] for p in report["probes"]}


@pytest.mark.training
@pytest.mark.parametrize("adapter,args,part,probe", [
    ("no_ste", ["--steps", "30", "--layers", r"(qkv|proj|fc|out)$"], "gradients/STE", "ste_gradient_flow"),
    ("stuck_in_warmup", ["--steps", "30"], "optimizer", "schedule_shape"),
    ("wd_kept_in_stage2", ["--steps", "30"], "optimizer", "schedule_shape"),
    ("decays_norms", ["--steps", "30"], "optimizer", "decay_groups"),
])
def test_planted_bugs_in_model_and_optimizer(tmp_path, adapter, args, part, probe):
    """Levels 1 and 2: the user's layer without STE, their schedule stuck in warmup, their weight decay kept
    on in stage 2, their weight decay on norms and embeddings are each an INFRASTRUCTURE BUG in the right
    part. Each is a mechanism, not a learning rate, so 30 steps are enough: the STE's gradients and the param
    groups are there from the first step, and past the run a copy of their optimizer and schedule is stepped
    to the recipe's horizon (3000 steps) without training."""
    _, report = _run(tmp_path, "--model", f"tests.user_train:{adapter}", *args, code=1)
    v = report["verdict"]
    assert (v["category"], v["part"]) == ("INFRASTRUCTURE BUG", part), v
    assert _status(report)[probe] == "FAIL", _status(report)


@pytest.mark.training
def test_healthy_short_run_blames_nothing(tmp_path):
    """The healthy adapter (model, optimizer, schedule, sampler, KV cache) after 150 steps: no probe FAILs,
    the schedule was applied as the recipe intends, the verdict states the reference."""
    _, report = _run(tmp_path, "--model", "tests.user_train:healthy", "--steps", "150", "--no-bisect", code=1)
    st = _status(report)
    assert not [n for n, s in st.items() if s in ("FAIL", "ERROR")], st
    assert st["schedule_shape"] == st["decay_groups"] == st["sampler"] == st["kv_cache_parity"] == "PASS"
    assert st["inference_parity"] == "SKIP"  # no inference_model hook: said so
    assert report["verdict"]["category"] == "UNDERTRAINED" and "bitcheck's own BitNet" in report["verdict"]["diagnosis"]
    scalars = (tmp_path / "runs").glob("*/metrics/scalars.jsonl")
    rows = [json.loads(line) for line in next(scalars).read_text().splitlines()]
    assert rows[-1]["weight_decay"] == 0.1 and 0 < rows[0]["lr"] < rows[-1]["lr"]  # what their schedule applied
    # its checkpoint holds their weights: diagnose says how to load it, in one line
    diag = runner.invoke(app, ["diagnose", report["metrics"]["checkpoint"]])
    assert diag.exit_code == 2 and "trained your own model (tests.user_train:healthy)" in diag.output, diag.output


@pytest.mark.parametrize("adapter,needle", [
    ("raises", "build(spec) raised RuntimeError: config.yaml not found"),
    ("not_a_module", "returned dict, not a torch.nn.Module"),
    ("small_vocab", "outputs 18 logits but the task's vocabulary has 21"),
    ("short_context", "does not run on ids of shape (2, 16)"),
    ("nowhere", "has no attribute 'nowhere'"),
])
def test_bad_adapters_exit_2_and_write_nothing(tmp_path, adapter, needle):
    result, _ = _run(tmp_path, "--model", f"tests.user_train:{adapter}", code=2)
    assert needle in result.output, result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("args,needle", [(["--reference"], "--reference needs --model"),
                                          (["--layers", "fc$"], "--layers needs --model")])
def test_options_for_your_model_need_a_model(tmp_path, args, needle):
    result, _ = _run(tmp_path, *args, code=2)
    assert needle in result.output and not (tmp_path / "runs").exists()


STORIES = ["tinystories", "--data", "synthetic:300", "--preset", "tiny", "--seq", "32", "--batch", "8", "--steps", "30",
           "--eval-every", "10", "--sample-every", "0", "--device", "cpu", "--json"]


@pytest.mark.training
@pytest.mark.parametrize("adapter,extra,expected", [
    ("healthy", [], ("UNDERTRAINED", "training length")),
    ("decays_norms", [], ("INFRASTRUCTURE BUG", "optimizer")),
    ("no_ste", ["--layers", r"(qkv|proj|fc|out)$"], ("INFRASTRUCTURE BUG", "gradients/STE")),
])
def test_tinystories_trains_your_model(tmp_path, adapter, extra, expected):
    """Level 1/2 on stories: the user's model, optimizer and schedule trained by `tinystories --model`; the
    healthy codebase is judged on its curve (30 steps: UNDERTRAINED, no probe FAILs), its planted bugs named."""
    result = runner.invoke(app, [*STORIES, "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "runs"),
                                 "--model", f"tests.user_train:{adapter}", *extra])
    assert "Traceback" not in result.output and result.exit_code == 1, result.output[-3000:]
    report = json.loads(result.stdout)
    assert (report["verdict"]["category"], report["verdict"]["part"]) == expected, report["verdict"]
    st = _status(report)
    if adapter == "healthy":
        # 30 steps write gibberish, which the tree reads as undertrained, not broken generation
        assert {n for n, v in st.items() if v in ("FAIL", "ERROR")} <= {"gibberish", "repetition"}, st
        assert st["schedule_shape"] == st["sampler"] == st["kv_cache_parity"] == "PASS", st
    scalars = next((tmp_path / "runs").glob("*/metrics/scalars.jsonl")).read_text().splitlines()
    rows = [json.loads(line) for line in scalars]
    assert rows and all("lr" in r for r in rows)


def _session(tmp_path, **kw):
    return Session("arith", out=str(tmp_path / "runs"), **kw)


@pytest.mark.training
def test_session_steps_bound_the_loop(tmp_path):
    """Session(steps=N): the loop's range (s.max_steps) and its evaluation stop at N, the report says the
    step limit stopped it (the bisection's retrain gets the same limit: Session._loop_swap)."""
    s = _session(tmp_path, steps=20, eval_every=10)
    assert s.max_steps == 20
    model, opt = user_train.train_loop(s)
    report = s.finish(model, optimizer=opt, bisect=False).to_dict()
    assert (report["metrics"]["steps"], report["metrics"]["stopped"]) == (20, "steps"), report["metrics"]
    with pytest.raises(ValueError, match="steps must be positive"):
        _session(tmp_path, steps=0)


@pytest.mark.training
@pytest.mark.parametrize("bug,steps,part,probe", [
    ("labels_shifted_twice", 100, "data/labels", "label_offset"),  # gain 3.91 / 3.69 nats (seeds 0-1) vs 0.5
    ("loss_over_ignored", 200, "loss/causality", "logged_loss"),
    ("lr_per_micro_batch", 200, "optimizer", "schedule_shape"),
])
def test_planted_bugs_in_the_users_loop(tmp_path, bug, steps, part, probe):
    """Level 3: the user's loop shifts labels twice, takes the loss over ignored positions, or steps its LR
    schedule once per micro-batch: named with the right part."""
    s = _session(tmp_path)
    model, opt = user_train.train_loop(s, bug=bug, steps=steps, grad_accum=2 if bug == "lr_per_micro_batch" else 1)
    report = s.finish(model, optimizer=opt)
    v = report.verdict
    assert (v.category.value, v.part) == ("INFRASTRUCTURE BUG", part), v
    assert {p["name"]: p["status"] for p in report.probes}[probe] == "FAIL"
    assert (tmp_path / "runs").glob("*/report.json")


@pytest.mark.training
def test_loop_hooks_accumulation_and_resume(tmp_path):
    """Level 3 hooks: the user's accumulation and resume, healthy then with the bug, judged against one
    large batch and against straight training."""
    s = _session(tmp_path)
    model, opt = user_train.train_loop(s, steps=30)
    ok = s.finish(model, optimizer=opt, accumulate=user_train.accumulate, resume=user_train.resume_hooks(s))
    st = {p["name"]: p for p in ok.probes}
    assert st["grad_accumulation"]["status"] == st["resume_state"]["status"] == "PASS", st["resume_state"]
    bad = _session(tmp_path).finish(model, optimizer=opt, accumulate=user_train.accumulate_per_micro_batch)
    assert (bad.verdict.part, {p["name"]: p["status"] for p in bad.probes}["grad_accumulation"]) == \
        ("loss/causality", "FAIL")
    lost = _session(tmp_path).finish(model, optimizer=opt, resume=user_train.resume_hooks(s, keep_optimizer_state=False))
    assert (lost.verdict.part, {p["name"]: p["status"] for p in lost.probes}["resume_state"]) == ("optimizer", "FAIL")


@pytest.mark.slow
@pytest.mark.parametrize("level", ["model", "optimizer", "loop"])
def test_healthy_user_infrastructure_passes(tmp_path, level):
    """The user's healthy codebase passes quick-arith at every level: their model in our loop, their
    model and optimizer/schedule in our loop, and their own loop (examples/own_loop.py, the level-3
    script in docs/OWN_CODE.md): INFRASTRUCTURE OK."""
    if level == "loop":  # the level-3 script (docs/OWN_CODE.md), run as a user runs it
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "own_loop.py")], cwd=tmp_path, text=True,
                              capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1200)
        assert done.returncode == 0 and "PASS: INFRASTRUCTURE OK" in done.stdout, (done.stdout, done.stderr[-3000:])
        report = json.loads(next((tmp_path / "runs").glob("*/report.json")).read_text())
    else:
        spec = "tests.user_train:build" if level == "model" else "tests.user_train:healthy"
        _, report = _run(tmp_path, "--model", spec, code=0)
    assert report["verdict"]["category"] == "INFRASTRUCTURE OK", report["verdict"]
    assert not [p["name"] for p in report["probes"] if p["status"] in ("FAIL", "ERROR")]


@pytest.mark.slow
def test_bisection_names_what_no_probe_can(tmp_path):
    """Their optimizer's param groups leave the quantized layers out: nothing learns but the embeddings and
    norms, and no probe fails. Swapping in bitcheck's BitLinear does not help; bitcheck's optimizer
    does: the verdict names the optimizer, with the bisection as evidence."""
    _, report = _run(tmp_path, "--model", "tests.user_train:frozen_layers", "--minutes", "5", code=1)
    v = report["verdict"]
    assert (v["category"], v["part"]) == ("INFRASTRUCTURE BUG", "optimizer"), v
    swaps = {b["swap"]: b["passed"] for b in report["metrics"]["bisection"]}
    assert swaps == {"bitlinear": False, "optimizer": True}
    assert not [p["name"] for p in report["probes"] if p["status"] in ("FAIL", "ERROR")]


@pytest.mark.slow
def test_loop_bisection_names_the_loop(tmp_path):
    """Level 3, a bug no probe names: the loop's optimizer leaves the quantized layers out. Given a fresh
    model, the session retrains it in bitcheck's loop, which learns: the verdict names the training loop."""
    s = _session(tmp_path, minutes=5)
    model, opt = user_train.train_loop(s, bug="frozen_layers")
    report = s.finish(model, optimizer=opt, fresh_model=lambda: user_train.build(s.spec)).to_dict()
    v = report["verdict"]
    assert (v["category"], v["part"]) == ("INFRASTRUCTURE BUG", "training loop"), v
    assert [(b["swap"], b["passed"]) for b in report["metrics"]["bisection"]] == [("loop", True)]
