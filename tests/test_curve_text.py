"""`bitcheck curve` on the logs users have (#23): text logs as loops print them, configs where they live, a
Git LFS pointer, and noise that is no finding. Every log here is written by the test from generated curves
(synthetic/curves.py) in the line shapes of llm.c, nanoGPT and hand-written loops; none is copied."""
import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitcheck.commands.cli import app
from bitcheck.commands.curve import CurveOptions, check_curve
from bitcheck.user.runlog import LogError, read_log
from bitcheck.user.runspec import read_spec
from bitcheck.user.textlog import parse_line
from probes.curve import find_spikes
from synthetic.curves import generate, spec_for

runner = CliRunner()
# The tests that run the whole command (check_curve: read, fit with its bootstrap, judge, write the report and its
# plots; 4-10 s each) are `training` tests by the marker's definition: `make test` runs them, `make test-fast` not.


def _judge(tmp_path, run, **opts):
    report = check_curve(CurveOptions(run=str(run), out=str(tmp_path / "out"), **opts)).to_dict()
    return report, {p["name"]: p for p in report["probes"]}


def _llmc(rows, val_every=10):
    """llm.c's main.log: `s:N trl:X lr:Y norm:Z` per step, `s:N tel:X` at evaluations (lr with 6 decimals)."""
    lines = []
    for i, r in enumerate(rows):
        if i % val_every == 0:
            lines.append(f"s:{r['step']} tel:{r['loss'] + 0.05:.4f}")
        lines.append(f"s:{r['step']} trl:{r['loss']:.6f} lr:{r['lr']:.6f} norm:{r['grad_norm']:.4f}")
    return "\n".join(lines) + "\n"


def _nanogpt(rows, eval_every=10):
    """nanoGPT's stdout: a banner, `step N: train loss X, val loss Y` at evaluations, `iter N: loss X, ...`."""
    lines = ["Overriding config with config/train_bitnet.py:", "number of parameters: 95.40M",
             "compiling the model... (takes a ~minute)"]
    for i, r in enumerate(rows):
        if i % eval_every == 0:
            lines.append(f"step {r['step']}: train loss {r['loss']:.4f}, val loss {r['loss'] + 0.05:.4f}")
            lines.append("saving checkpoint to out-bitnet")
        lines.append(f"iter {r['step']}: loss {r['loss']:.4f}, time 105.23ms, mfu 12.34%")
    return "\n".join(lines) + "\n"


def _pipes(rows):
    return "".join(f"2026-01-01 12:00:00 INFO step {r['step']:>6} | train loss {r['loss']:.4f} | lr {r['lr']:.3e} | "
                   f"grad norm {r['grad_norm']:.3f} | 1234 tok/s\n" for r in rows)


def test_line_shapes():
    """Each shape gives its step and metrics; a banner or progress line without a metric gives nothing."""
    assert parse_line("s:120 trl:3.4521 lr:0.000600 norm:0.91") == (120, {"loss": 3.4521, "lr": 6e-4, "grad_norm": 0.91})
    assert parse_line("s:250 tel:3.51") == (250, {"val_loss": 3.51})
    assert parse_line("iter 120: loss 3.4521, time 105.23ms, mfu 12.34%") == (120, {"loss": 3.4521})
    assert parse_line("step 250: train loss 3.4012, val loss 3.5098") == (250, {"loss": 3.4012, "val_loss": 3.5098})
    assert parse_line("step 00120/21400 (0.56%) | loss: 3.452 | lrm: 1.00 | dt: 105ms") == (120, {"loss": 3.452})
    assert parse_line("INFO step 30 train/loss 2.5 val/loss 2.7 learning rate 3e-4") == \
        (30, {"loss": 2.5, "val_loss": 2.7, "lr": 3e-4})
    assert parse_line("Epoch 1, step=20, loss=nan")[1]["loss"] != parse_line("Epoch 1, step=20, loss=nan")[1]["loss"]
    assert parse_line("number of parameters: 124.04M") == (None, {})
    assert parse_line("weight norm 3.2 step 4 loss 2") == (4, {"loss": 2.0})  # a weight norm is no grad norm


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
@pytest.mark.parametrize("shape", ["llmc", "nanogpt", "pipes"])
def test_text_logs_read_as_committed(tmp_path, shape):
    """llm.c's main.log, nanoGPT's stdout and a pipe-separated log give the rows of the run that printed them,
    and the report says what was recognised."""
    rows = generate(spec_for("saturated", seed=0))
    text = {"llmc": _llmc, "nanogpt": _nanogpt, "pipes": _pipes}[shape](rows)
    path = tmp_path / ("main.log" if shape == "llmc" else "train.txt")
    path.write_text(text)
    log = read_log(str(path))
    assert [r["step"] for r in log.rows] == [r["step"] for r in rows]
    assert all(abs(a["loss"] - b["loss"]) < 1e-3 for a, b in zip(log.rows, rows))
    want = {"llmc": {"loss", "val_loss", "lr", "grad_norm"}, "nanogpt": {"loss", "val_loss"},
            "pipes": {"loss", "lr", "grad_norm"}}[shape]
    assert want <= set(log.rows[-1]) | set(log.rows[0]) and "text log:" in log.read_as
    report, probes = _judge(tmp_path, path, lr=1.5e-3, warmup=500, steps=20_000, schedule="two_stage")
    assert report["verdict"]["category"] != "INFRASTRUCTURE BUG", report["verdict"]
    assert "text log:" in report["metrics"]["log"]


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_lr_printed_with_six_decimals_decays_to_zero(tmp_path):
    """A linear decay to 0 printed with 6 decimals reads 0.000001 and 0.000000 at the end: within the printed
    step of the intended LR, not a schedule deviation."""
    spec = spec_for("saturated", seed=0)
    rows = generate(spec)
    peak = 6e-4
    for r in rows:
        s = r["step"]
        r["lr"] = peak * s / spec.warmup if s <= spec.warmup else peak * (spec.steps - s) / (spec.steps - spec.warmup)
    path = tmp_path / "main.log"
    path.write_text(_llmc(rows))
    log = read_log(str(path))
    assert log.resolution["lr"] == pytest.approx(1e-6) and log.rows[-1]["lr"] == 0.0
    _, probes = _judge(tmp_path, path, lr=peak, warmup=spec.warmup, steps=spec.steps, schedule="linear")
    assert probes["logged_schedule"]["status"] == "PASS", probes["logged_schedule"]["message"]
    # the tolerance is the printed step, not a blanket: the same log printed at 3 decimals would hide a bug
    rows[len(rows) // 2]["lr"] *= 3
    path.write_text(_llmc(rows))
    _, probes = _judge(tmp_path, path, lr=peak, warmup=spec.warmup, steps=spec.steps, schedule="linear")
    assert probes["logged_schedule"]["status"] != "PASS"


def test_json_lines_under_a_text_name(tmp_path):
    """JSON lines saved as train.log are read as JSON lines, not as text."""
    rows = generate(spec_for("saturated", seed=0))
    path = tmp_path / "train.log"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = read_log(str(path))
    assert len(log.rows) == len(rows) and log.read_as is None and "weight_decay" in log.rows[0]


def test_unknown_text_and_lfs_pointer_are_one_line_errors(tmp_path):
    """Prose is no log (exit 2, the shapes it reads named); a Git LFS pointer says to pull the file."""
    prose = tmp_path / "notes.txt"
    prose.write_text("we trained for a while\nit looked fine\n")
    with pytest.raises(LogError, match="unknown log format"):
        read_log(str(prose))
    pointer = tmp_path / "metrics.jsonl"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123456\n")
    result = runner.invoke(app, ["curve", str(pointer), "--json"])
    assert result.exit_code == 2 and "git lfs pull" in result.output
    assert "error" in json.loads(result.stdout)


def test_lightning_hparams_beside_metrics_csv(tmp_path):
    """Lightning's CSVLogger folder: metrics.csv with hparams.yaml beside it, read like a run's config.json."""
    rows = generate(spec_for("saturated", seed=0))
    folder = tmp_path / "lightning_logs" / "version_0"
    folder.mkdir(parents=True)
    lines = ["step,train_loss,lr-AdamW"] + [f"{r['step']},{r['loss']},{r['lr']}" for r in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "hparams.yaml").write_text("lr: 0.0015\nwarmup_steps: 500\nmax_steps: 20000\nff_hidden: 3072\n")
    log = read_log(str(tmp_path / "lightning_logs"))
    spec = read_spec(log)
    assert (spec.lr, spec.warmup, spec.steps) == (1.5e-3, 500, 20_000)
    assert "hparams.yaml" in spec.origin["lr"]


def test_deepspeed_scheduler_params(tmp_path):
    """A DeepSpeed config: scheduler.type WarmupDecayLR (linear to 0) and its params give the intended schedule."""
    rows = generate(spec_for("saturated", seed=0))
    log_path = tmp_path / "log.jsonl"
    log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "ds_config.json"
    cfg.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8, "scheduler": {"type": "WarmupDecayLR", "params": {
        "warmup_min_lr": 0, "warmup_max_lr": 1.5e-3, "warmup_num_steps": 500, "total_num_steps": 20000}}}))
    spec = read_spec(read_log(str(log_path)), config=str(cfg))
    assert (spec.lr, spec.warmup, spec.steps, spec.schedule) == (1.5e-3, 500, 20_000, "linear")


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_noise_is_not_a_finding(tmp_path):
    """One batch's loss up and back at the next step, one grad norm up and back, a loss near 1e-4 that doubles:
    no spike, no explosion, no advice to lower the LR."""
    spec = spec_for("saturated", seed=0)
    rows = generate(spec)
    rows[300]["loss"] += 1.5  # one hard batch
    rows[600]["grad_norm"] *= 40  # one step's gradient, clipped
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, probes = _judge(tmp_path, path)
    assert probes["loss_spikes"]["status"] == "PASS", probes["loss_spikes"]["message"]
    assert probes["grad_norm_log"]["status"] == "PASS", probes["grad_norm_log"]["message"]
    tiny = [(s, 1e-4 * (2.0 if s == 500 else 1.0) * (1 + 0.01 * math.sin(s))) for s in range(1, 1000)]
    tiny[501:505] = [(s, 2e-4) for s, _ in tiny[501:505]]  # several points: still below the absolute floor
    assert find_spikes(tiny) == []
    # a spike that lasts is still one
    rows[300:306] = [dict(r, loss=r["loss"] + 1.5) for r in rows[300:306]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, probes = _judge(tmp_path, path)
    assert probes["loss_spikes"]["status"] == "WARN"


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
@pytest.mark.parametrize("seed", range(3))
def test_loss_at_the_uniform_baseline_is_the_infrastructure(tmp_path, seed):
    """A log whose loss never leaves ln V (a ternary model stuck at a trivial loss): INFRASTRUCTURE BUG, never
    'model too small' or 'train longer'; the same curve shape 8 nats lower is judged on its capacity."""
    spec = spec_for("saturated", seed=seed)
    rows = generate(spec)
    stuck = [dict(r, loss=math.log(32000) + (r["loss"] - rows[-1]["loss"]) * 0.02) for r in rows]
    path = tmp_path / "stuck.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in stuck))
    report, probes = _judge(tmp_path, path, vocab=32000)
    v = report["verdict"]
    assert probes["loss_baseline"]["status"] == "FAIL"
    assert (v["category"], v["part"]) == ("INFRASTRUCTURE BUG", "infrastructure (a log cannot say which part)"), v
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report, probes = _judge(tmp_path, path, vocab=32000)
    assert probes["loss_baseline"]["status"] == "PASS" and report["verdict"]["category"] != "INFRASTRUCTURE BUG"


def _with_validation(rows, seed, turn=None, rise=0.3, every=10, noise=0.02):
    """Validation loss every `every`-th logged point: the training curve's local median + 0.05 + N(0, noise);
    from the fraction `turn` of the log on it climbs linearly by `rise` (a model memorising its data)."""
    rng = random.Random(seed + 1000)
    out, n = [], len(rows)
    for i, r in enumerate(rows):
        if i % every != every - 1:
            out.append(r)
            continue
        window = sorted(x["loss"] for x in rows[max(0, i - 2):i + 3])
        val = window[len(window) // 2] + 0.05 + rng.gauss(0, noise)
        if turn is not None and i > turn * n:
            val += rise * (i - turn * n) / (n - turn * n)
        out.append(dict(r, val_loss=val))
    return out


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
@pytest.mark.parametrize("seed", range(3))
def test_overfitting_is_a_verdict_of_its_own(tmp_path, seed):
    """Validation loss turning up by 0.3 from 40% of the run while the training loss falls: OVERFITTING with the
    step where it turned, not 'train longer' or 'too small'; the same run whose validation follows the training
    loss is not called overfitting."""
    rows = generate(spec_for("saturated", seed=seed))
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _with_validation(rows, seed, turn=0.4)))
    report, probes = _judge(tmp_path, path)
    v, over = report["verdict"], probes["overfitting"]
    assert (v["category"], v["part"], over["status"]) == ("OVERFITTING", "data", "FAIL"), (v, over["message"])
    assert 0.3 * rows[-1]["step"] <= over["details"]["best_step"] <= 0.5 * rows[-1]["step"]
    path.write_text("".join(json.dumps(r) + "\n" for r in _with_validation(rows, seed)))
    report, probes = _judge(tmp_path, path)
    assert probes["overfitting"]["status"] == "PASS" and report["verdict"]["category"] != "OVERFITTING"


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_report_folder_is_named_after_the_run(tmp_path):
    rows = generate(spec_for("saturated", seed=0))
    folder = tmp_path / "my-run-7"
    folder.mkdir()
    (folder / "main.log").write_text(_llmc(rows))
    report, _ = _judge(tmp_path, folder / "main.log")
    assert Path(report["run_dir"]).name.startswith("curve-my-run-7-main-")


def _cosine_to(end, seed=0):
    """A healthy flat cosine run (synthetic/curves.py's losses) whose logged LR decays to `end` x the peak."""
    spec = spec_for("saturated", seed=seed, schedule="cosine")

    def lr(s):
        if s <= spec.warmup:
            return spec.lr * s / spec.warmup
        p = min((s - 1 - spec.warmup) / (spec.steps - spec.warmup), 1.0)
        return spec.lr * (end + (1 - end) * 0.5 * (1 + math.cos(math.pi * p)))
    return spec, [{"step": r["step"], "loss": r["loss"], "learning_rate": lr(r["step"])} for r in generate(spec)]


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("end", [0.0, 0.1])
def test_cosine_to_zero_or_a_tenth_is_no_deviation(tmp_path, seed, end):
    """Hugging Face's cosine ends at 0, nanoGPT's at a tenth: a config that names the cosine but not its end is
    compared with the closer of the two (no WARN on a healthy run), and says so; --min-lr fixes the end, and a
    log that does not reach it deviates."""
    spec, rows = _cosine_to(end, seed)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"lr_scheduler_type": "cosine", "learning_rate": spec.lr, "warmup_steps": spec.warmup,
                               "max_steps": spec.steps}))
    report, probes = _judge(tmp_path, log, config=str(cfg))
    assert probes["logged_schedule"]["status"] == "PASS", probes["logged_schedule"]["message"]
    assert report["metrics"]["spec"]["final_lr_ratio"] == end
    assert "--min-lr" in report["metrics"]["spec"]["origin"]["final_lr_ratio"]
    assert (report["verdict"]["status"], report["verdict"]["category"]) == ("PASS", "CONVERGED")
    other = 0.1 if end == 0.0 else 0.0
    report, probes = _judge(tmp_path, log, config=str(cfg), min_lr=other * spec.lr)
    assert probes["logged_schedule"]["status"] in ("WARN", "FAIL")  # the end given, and the log misses it
    assert report["metrics"]["spec"]["origin"]["final_lr_ratio"] == "--min-lr / lr"


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_decay_never_applied_is_far_from_either_cosine_end(tmp_path):
    spec, rows = _cosine_to(0.0)
    rows = [dict(r, learning_rate=min(spec.lr, spec.lr * r["step"] / spec.warmup)) for r in rows]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"scheduler": "cosine", "lr": spec.lr, "warmup_steps": spec.warmup, "max_steps": spec.steps}))
    report, probes = _judge(tmp_path, log, config=str(cfg))
    assert probes["logged_schedule"]["status"] == "FAIL"
    assert (report["verdict"]["category"], report["verdict"]["part"]) == ("INFRASTRUCTURE BUG", "optimizer")


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_html_verdict_in_short_lines_and_only_what_was_logged(tmp_path):
    """The page shows the verdict a sentence per line, the loss plot draws the validation loss it fitted (labelled
    as such, not as training loss), and the schedule plot has no weight-decay line for a log without one."""
    from bitcheck.judge.report import loss_figure, probe_figures, sentences
    rows = generate(spec_for("saturated", seed=0))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "main.log").write_text(_llmc(rows, val_every=5))
    report, probes = _judge(tmp_path, folder / "main.log", lr=1.5e-3, warmup=500, steps=20_000, schedule="two_stage")
    assert probes["loss_extrapolation"]["details"]["fit"]["loss_key"] == "val_loss"
    page = (Path(report["run_dir"]) / "report.html").read_text()
    lines = sentences(report["verdict"]["diagnosis"])
    assert len(lines) >= 3 and all(f"<p>{line.split(' (')[0]}" in page.replace("&#x27;", "'") for line in lines)
    metrics = [json.loads(x) for x in (Path(report["run_dir"]) / "metrics" / "scalars.jsonl").read_text().splitlines()]
    assert len(metrics) == len(rows)  # training rows only: the validation loss is not written as a training loss
    fig = loss_figure(metrics, [json.loads(x) for x in (Path(report["run_dir"]) / "metrics" / "evals.jsonl")
                                .read_text().splitlines()])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train loss", "validation loss"]
    titles = [t for t, _ in probe_figures(report)]
    assert "Learning rate, applied vs intended" in titles  # main.log logs no weight decay: no line for it
    assert sentences("A (b. C) d. E f: G h.") == ["A (b. C) d.", "E f:", "G h."]


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_one_cycle_lr_as_torch_steps_it(tmp_path):
    """torch's OneCycleLR (stepped by torch itself, the LR of each update logged) named by a config's scheduler
    section is compared exactly: PASS; the same log judged against a cosine is not the intended schedule."""
    import torch
    spec = spec_for("saturated", seed=0)
    rows = generate(spec)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=spec.steps, pct_start=0.25)
    lrs = []
    for _ in range(spec.steps):
        lrs.append(sched.get_last_lr()[0])  # the LR of this update
        opt.step()
        sched.step()
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": r["step"], "loss": r["loss"], "lr": lrs[r["step"] - 1]}) + "\n"
                           for r in rows))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"scheduler:\n  name: OneCycleLR\n  max_lr: 1.0e-3\n  total_steps: {spec.steps}\n  pct_start: 0.25\n")
    report, probes = _judge(tmp_path, log, config=str(cfg))
    assert report["metrics"]["spec"]["schedule"] == "one_cycle" and report["metrics"]["spec"]["warmup"] == spec.steps // 4
    assert probes["logged_schedule"]["status"] == "PASS", probes["logged_schedule"]["message"]
    assert report["verdict"]["category"] != "INFRASTRUCTURE BUG"
    report, probes = _judge(tmp_path, log, config=str(cfg), schedule="cosine", warmup=spec.steps // 4)
    assert probes["logged_schedule"]["status"] in ("WARN", "FAIL")


LLMC_SCRIPT = """#!/bin/bash
# a GPT-2 (124M) run in llm.c's style
make train_gpt2cu USE_CUDNN=1
out_dir="log124M"
LR=0.0006
while true; do
    mpirun -np 8 ./train_gpt2cu \\
        -i "data/train_*.bin" -j "data/val_*.bin" -o $out_dir -v 250 -s 20000 -g 144 -h 1 \\
        -b 64 -t 1024 -d 524288 -r 0 -z 1 -c 0.1 -l $LR -q 0.0 -u 700 -n 5000 -y 1 -x 20000 -e "d12"
    sleep 1
done
"""


@pytest.mark.training  # runs `bitcheck curve` end to end (fit, judge, report with plots)
def test_llmc_flags_from_its_script_or_the_logged_command(tmp_path):
    """llm.c's settings live in its launch script's flags: given as --config, or printed at the top of a saved stdout
    (`set -x`), they give the schedule (cosine to -q 0.0 of -l after -u), the tokens per step (-d) and the model (-e
    d12: GPT-2 124M), so the logged schedule is compared and the capacity judged without any other option."""
    from bitcheck.user.cmdline import command_settings
    settings = command_settings(LLMC_SCRIPT)
    assert settings["learning_rate"] == 6e-4 and settings["final_lr_ratio"] == 0.0 and settings["warmup_steps"] == 700
    assert settings["total_batch_size"] == 524288 and (settings["n_layer"], settings["n_embd"]) == (12, 768)
    assert command_settings("we trained with lr 3e-4 for 5000 steps\n") == {}  # prose is no command
    assert command_settings("python train.py config/x.py --max_iters=5000 --lr_decay_iters 4000 --compile")[
        "lr_decay_iters"] == 4000
    spec = spec_for("saturated", seed=0, schedule="cosine", steps=20_000, warmup=700, lr=6e-4)
    rows = generate(spec)

    def lr(s):  # llm.c's cosine: to final fraction 0.0 of the peak
        if s <= 700:
            return 6e-4 * s / 700
        return 6e-4 * 0.5 * (1 + math.cos(math.pi * min((s - 1 - 700) / (20_000 - 700), 1.0)))
    rows = [dict(r, lr=lr(r["step"])) for r in rows]
    (tmp_path / "run124M.sh").write_text(LLMC_SCRIPT)
    (tmp_path / "main.log").write_text(_llmc(rows))
    report, probes = _judge(tmp_path, tmp_path / "main.log", config=str(tmp_path / "run124M.sh"))
    spec_out = report["metrics"]["spec"]
    assert (spec_out["lr"], spec_out["warmup"], spec_out["steps"], spec_out["tokens_per_step"]) == (6e-4, 700, 20_000, 524288)
    assert 120e6 < spec_out["params"] < 130e6 and spec_out["vocab"] == 50257
    assert probes["logged_schedule"]["status"] == "PASS", probes["logged_schedule"]["message"]
    assert probes["model_capacity"]["status"] != "SKIP"
    stdout = tmp_path / "stdout.txt"  # the same command printed at the top of the saved output
    stdout.write_text("+ mpirun -np 8 ./train_gpt2cu -b 64 -t 1024 -d 524288 -c 0.1 -l 0.0006 -q 0.0 -u 700 -x 20000 "
                      "-e d12\n" + _llmc(rows))
    report, probes = _judge(tmp_path, stdout)
    assert report["metrics"]["spec"]["origin"]["lr"].startswith("stdout.txt")
    assert probes["logged_schedule"]["status"] == "PASS", probes["logged_schedule"]["message"]
    (tmp_path / "empty.sh").write_text("echo hello\n")
    result = runner.invoke(app, ["curve", str(stdout), "--config", str(tmp_path / "empty.sh")])
    assert result.exit_code == 2 and "launches no training command" in result.output
