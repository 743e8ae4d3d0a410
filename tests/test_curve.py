"""`bitcheck curve`: a user's training log judged undertrained, flat/too small, unstable or mis-scheduled.

Curves with a known answer are generated from the loss law with noise (synthetic/curves.py) over
several seeds; the real curve is bitcheck's own 1m TinyStories run on the real 2 MiB sample
(tests/data/tinystories-1m-run: its logged losses and config, no text).
"""
import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitcheck.commands.cli import app
from bitcheck.commands.curve import CurveOptions, check_curve
from bitcheck.user.runlog import LogError, canonical, read_log
from bitcheck.user.runspec import parse_count, read_spec
from probes import Subject, run_probes
from probes.curve import find_spikes
from synthetic.curves import config_of, generate, spec_for, write_run

REAL_RUN = Path(__file__).parent / "data" / "tinystories-1m-run"
SEEDS = range(5)


def judge(tmp_path, kind=None, seed=0, run=None, **opts):
    if run is None:
        run = write_run(spec_for(kind, seed=seed), tmp_path / f"{kind}-{seed}")
    result = check_curve(CurveOptions(run=str(run), out=str(tmp_path / "out"), **opts))
    report = result.to_dict()
    return report, result.exit_code, {p["name"]: p for p in report["probes"]}


@pytest.mark.parametrize("seed", SEEDS)
def test_still_falling_is_undertrained(tmp_path, seed):
    """A run stopped at 20% of its horizon while the loss law still pays: UNDERTRAINED, with the gain."""
    report, code, probes = judge(tmp_path, "falling", seed)
    v = report["verdict"]
    assert (code, v["category"], v["part"]) == (1, "UNDERTRAINED", "training length")
    fit = probes["loss_extrapolation"]["details"]["fit"]
    assert fit["loss_2x"] < fit["end_loss"] and fit["loss_10x"] < fit["loss_2x"]
    assert "2x the tokens would buy" in v["diagnosis"]
    assert probes["logged_schedule"]["status"] == "PASS"  # healthy schedule: no false alarm


@pytest.mark.parametrize("seed", SEEDS)
def test_saturated_is_not_undertrained(tmp_path, seed):
    """The power law spent (2x tokens buy < 0.3%): never 'train longer'. A healthy complete run (flat, nothing
    unstable, schedule as intended, size unknown) is told so plainly: PASS, CONVERGED, exit 0, the checks it passed
    named, and that a log alone cannot clear the infrastructure; never MODEL TOO SMALL without a capacity fact."""
    report, code, probes = judge(tmp_path, "saturated", seed)
    v = report["verdict"]
    assert (code, v["status"], v["category"], v["part"]) == (0, "PASS", "CONVERGED", None)
    assert "no loss spike" in v["diagnosis"] and "the LR applied as intended" in v["diagnosis"]
    assert "cannot prove the infrastructure healthy" in v["diagnosis"] and not v["evidence"]
    assert probes["loss_extrapolation"]["status"] == "PASS"
    assert all(probes[n]["status"] == "PASS" for n in ("loss_spikes", "grad_norm_log", "nonfinite_log",
                                                        "logged_schedule"))


@pytest.mark.parametrize("seed", SEEDS)
def test_whole_run_still_paying_is_undertrained(tmp_path, seed):
    """A complete two-stage run whose law still pays 4% per doubling: UNDERTRAINED, although the LR decay
    of stage 2 bends the end of the logged curve (the annealing term keeps the two apart)."""
    report, _, probes = judge(tmp_path, "paying", seed)
    assert report["verdict"]["category"] == "UNDERTRAINED"
    spec = spec_for("paying", seed=seed)
    true_gain = spec.B * (1 - 2 ** -spec.beta)  # the whole horizon is the law's reference area
    fit = probes["loss_extrapolation"]["details"]["fit"]
    assert abs(fit["gain_2x"] - true_gain) < max(2 * fit["gain_2x_sd"], 0.15 * true_gain), (fit["gain_2x"], true_gain)


@pytest.mark.parametrize("seed", range(3))
def test_spike_that_recovers_warns(tmp_path, seed):
    """A spike the loss comes back from is a WARN with its steps; the verdict still reads the curve."""
    report, _, probes = judge(tmp_path, "spike", seed)
    spikes = probes["loss_spikes"]
    assert spikes["status"] == "WARN" and len(spikes["details"]["spikes"]) == 1
    sp = spikes["details"]["spikes"][0]
    assert 11_900 <= sp["step"] <= 12_100 and sp["recovered_step"] is not None
    assert probes["grad_norm_log"]["status"] == "WARN"
    assert report["verdict"]["category"] == "CONVERGED"  # a spike it came back from is a WARN, not an alarm
    assert "loss_spikes" in report["verdict"]["diagnosis"]
    assert probes["loss_extrapolation"]["status"] == "PASS"  # the spike is left out of the fit


def test_divergence_is_an_infrastructure_bug(tmp_path):
    """A jump the loss never recovers from: INFRASTRUCTURE BUG (optimizer), not a capacity verdict."""
    report, _, probes = judge(tmp_path, "diverged")
    assert probes["loss_spikes"]["status"] == "FAIL" and "never recovered" in probes["loss_spikes"]["message"]
    assert (report["verdict"]["category"], report["verdict"]["part"]) == ("INFRASTRUCTURE BUG", "optimizer")


def test_nan_is_numerics(tmp_path):
    report, _, probes = judge(tmp_path, "nonfinite")
    assert probes["nonfinite_log"]["status"] == "FAIL" and "step 14000" in probes["nonfinite_log"]["message"]
    assert (report["verdict"]["category"], report["verdict"]["part"]) == ("INFRASTRUCTURE BUG", "numerics")


@pytest.mark.parametrize("seed", range(3))
def test_schedule_stepped_per_micro_batch_is_named(tmp_path, seed):
    """The scheduler stepped once per micro-batch (k=4): the logged LR runs 4x the config's schedule;
    an infrastructure bug in the optimizer, named as such."""
    report, _, probes = judge(tmp_path, "micro_batch", seed)
    sched = probes["logged_schedule"]
    assert sched["status"] == "FAIL" and sched["value"]["schedule_speed"] == 4.0
    assert "4x fast" in sched["message"]
    assert (report["verdict"]["category"], report["verdict"]["part"]) == ("INFRASTRUCTURE BUG", "optimizer")


@pytest.mark.training
def test_schedule_compared_only_when_intended_known(tmp_path):
    """Without a config (or --lr/--warmup/--steps) the schedule is not judged: SKIP, saying what to give."""
    run = write_run(spec_for("micro_batch"), tmp_path / "r")
    (run / "config.json").unlink()
    _, _, probes = judge(tmp_path, run=run)
    assert probes["logged_schedule"]["status"] == "SKIP" and "--warmup" in probes["logged_schedule"]["message"]
    _, _, probes = judge(tmp_path, run=run, lr=1.5e-3, warmup=500, steps=20_000)
    assert probes["logged_schedule"]["status"] == "FAIL"


def test_typical_large_run(tmp_path):
    """docs/CURVE.md's typical case: 95M, 32K vocabulary, 400K steps of 8,192 tokens: flat, the vocabulary a quarter
    of the model, 47 tokens per non-embedding parameter, below the published BitNet sizes."""
    report, _, probes = judge(tmp_path, "typical")
    cap = probes["model_capacity"]
    assert cap["status"] == "WARN" and abs(cap["value"]["embedding_share"] - 0.259) < 0.002
    assert 45 < cap["value"]["tokens_per_non_embedding_param"] < 49
    assert "700M" in cap["message"]
    v = report["verdict"]
    assert v["category"] == "MODEL TOO SMALL / TASK TOO HARD" and "small for its vocabulary" in v["diagnosis"]
    assert probes["loss_spikes"]["status"] == "WARN"
    assert (Path(report["run_dir"]) / "curve_fit.png").stat().st_size > 10_000


# ---- formats -------------------------------------------------------------------------------------

def _rows(kind="falling", seed=0):
    spec = spec_for(kind, seed=seed)
    return spec, generate(spec)


def test_csv_export_reads_like_the_jsonl(tmp_path):
    """A tracker's CSV export ('Step', '<run> - train/loss' with __MIN/__MAX companions, blanks) gives the
    same verdict and fit as the JSON lines."""
    spec, rows = _rows()
    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Step", "run7 - train/loss", "run7 - train/loss__MIN", "run7 - train/loss__MAX",
                    "run7 - train/learning_rate", "run7 - train/grad_norm"])
        for i, r in enumerate(rows):
            w.writerow([r["step"], r["loss"], r["loss"] - 1, r["loss"] + 1, r["lr"], "" if i % 7 else r["grad_norm"]])
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config_of(spec)))
    report, _, probes = judge(tmp_path, run=path, config=str(cfg))
    jsonl, _, ref = judge(tmp_path, "falling", 0)
    assert report["verdict"]["category"] == jsonl["verdict"]["category"] == "UNDERTRAINED"
    a, b = (p["loss_extrapolation"]["details"]["fit"]["gain_2x"] for p in (probes, ref))
    assert abs(a - b) < 1e-6
    assert report["metrics"]["columns"]["loss"] == "run7 - train/loss"
    assert probes["logged_schedule"]["status"] == "PASS"


def test_lightning_metrics_csv_with_validation(tmp_path):
    """A logger's metrics.csv (train and validation rows interleaved, blanks elsewhere): the validation
    loss is fitted when logged often enough, and the report says so."""
    _, rows = _rows("saturated")
    path = tmp_path / "metrics.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "step", "train_loss_step", "val_loss", "lr-AdamW"])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"epoch": 0, "step": r["step"], "train_loss_step": r["loss"], "lr-AdamW": r["lr"]})
            if i % 10 == 0:
                w.writerow({"epoch": 0, "step": r["step"], "val_loss": r["loss"] - 0.05})
    report, _, probes = judge(tmp_path, run=path)
    assert report["metrics"]["loss_used"].startswith("validation loss (val_loss")
    assert probes["loss_extrapolation"]["details"]["fit"]["loss_key"] == "val_loss"
    assert report["verdict"]["category"] == "CONVERGED"


def test_tensorboard_events(tmp_path):
    """Event files written by torch's SummaryWriter, read back through tensorboard's EventAccumulator."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter
    spec, rows = _rows("micro_batch")
    with SummaryWriter(str(tmp_path / "tb")) as w:
        for r in rows:
            w.add_scalar("train/loss", r["loss"], r["step"])
            w.add_scalar("train/lr", r["lr"], r["step"])
            w.add_scalar("train/grad_norm", r["grad_norm"], r["step"])
    log = read_log(str(tmp_path / "tb"))
    assert len(log.series("loss")) == len(rows) and log.columns["lr"] == "train/lr"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("optim:\n  learning_rate: 0.0015\n  warmup_steps: 500\n  max_steps: 20000\n")
    report, _, probes = judge(tmp_path, run=tmp_path / "tb", config=str(cfg))
    assert probes["logged_schedule"]["status"] == "FAIL" and report["verdict"]["part"] == "optimizer"


def test_metric_names_and_counts():
    assert canonical("run7 - eval/loss") == "val_loss" and canonical("train/loss") == "loss"
    assert canonical("trainer/global_step") == "step" and canonical("loss/val") == "val_loss"
    assert canonical("perplexity") == "perplexity"
    assert parse_count("95M") == 95e6 and parse_count("1.3B") == 1.3e9 and parse_count(8192) == 8192
    with pytest.raises(LogError):
        parse_count("lots")


def test_spec_from_a_hugging_face_config(tmp_path):
    """Shape from an HF config.json (vocab, hidden, layers, tying): embedding share and a parameter estimate."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"vocab_size": 32000, "hidden_size": 768, "num_hidden_layers": 12,
                               "intermediate_size": 1536, "num_attention_heads": 12, "num_key_value_heads": 12,
                               "tie_word_embeddings": False}))
    spec, rows = _rows()
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = read_spec(read_log(str(tmp_path / "log.jsonl")), config=str(cfg))
    assert s.embedding_params == 2 * 32000 * 768 and s.tied is False
    assert abs(s.params - (12 * (4 * 768 ** 2 + 3 * 768 * 1536) + 2 * 32000 * 768)) < 1
    assert s.tokens_per_step == spec.tokens_per_step  # from the log's token count
    assert "estimated" in s.origin["params"]


def test_checkpoint_counts_parameters(tmp_path):
    """--checkpoint: parameters counted from the tensors, the embedding found by the vocabulary dimension."""
    import torch
    sd = {"tok.weight": torch.zeros(500, 32), "blocks.0.w": torch.zeros(32, 32), "norm.weight": torch.zeros(32)}
    torch.save(sd, tmp_path / "m.pt")
    _, rows = _rows()
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = read_spec(read_log(str(tmp_path / "log.jsonl")), checkpoint=str(tmp_path / "m.pt"))
    assert (s.params, s.embedding_params, s.vocab, s.hidden, s.tied) == (500 * 32 + 32 * 32 + 32, 500 * 32, 500, 32, True)


def test_spike_finder_ignores_noise():
    """Batch noise alone (sd 2% of the loss, 5 seeds of 1000 points) is never a spike."""
    import random
    for seed in range(5):
        rng = random.Random(seed)
        series = [(i, 2.0 + 0.5 * math.exp(-i / 300) + rng.gauss(0, 0.04)) for i in range(1000)]
        assert find_spikes(series) == []


def test_curve_probes_run_only_for_a_log():
    """A model's probe run never lists the log probes; they need no model."""
    names = {r.name for r in run_probes(Subject(model=None))}
    assert "loss_extrapolation" not in names
    curve = {r.name for r in run_probes(Subject(model=None), kinds=("curve",))}
    assert {"loss_extrapolation", "loss_spikes", "logged_schedule", "model_capacity"} <= curve


# ---- the real curve ------------------------------------------------------------------------------

def _real():
    if not (REAL_RUN / "metrics" / "scalars.jsonl").exists():
        pytest.skip("tests/data/tinystories-1m-run is missing")
    return REAL_RUN


def test_real_tinystories_run_cut_at_20_percent_is_undertrained(tmp_path):
    """bitcheck's own 1m TinyStories run (real 2 MiB sample, 4000 steps), judged as it was at step 800."""
    run = _real()
    report, _, probes = judge(tmp_path, run=run, upto=800)
    assert report["verdict"]["category"] == "UNDERTRAINED", report["verdict"]["diagnosis"]
    assert probes["logged_schedule"]["status"] == "PASS"


def test_real_tinystories_run_whole_is_not_undertrained(tmp_path):
    run = _real()
    report, _, probes = judge(tmp_path, run=run)
    assert report["verdict"]["category"] != "UNDERTRAINED", report["verdict"]["diagnosis"]
    assert probes["loss_extrapolation"]["status"] in ("PASS", "WARN")
    assert all(probes[n]["status"] in ("PASS", "SKIP") for n in ("loss_spikes", "nonfinite_log", "logged_schedule"))


# ---- the command line ----------------------------------------------------------------------------

def test_cli_verdict_and_json(tmp_path):
    run = write_run(spec_for("falling"), tmp_path / "r")
    res = CliRunner().invoke(app, ["curve", str(run), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["command"] == "curve" and data["verdict"]["category"] == "UNDERTRAINED"


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "log.jsonl").write_text('{"step": 1, "acc": 0.5}\n') and p / "log.jsonl", "logs no loss"),
    (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "unknown log format"),
    (lambda p: (p / "bad.jsonl").write_text("step,loss\n1,2\n3,4\n") and p / "bad.jsonl", "not JSON"),
])
def test_cli_user_mistakes_exit_2(tmp_path, make, message):
    res = CliRunner().invoke(app, ["curve", str(make(tmp_path)), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_cli_bad_config_and_too_short(tmp_path):
    run = write_run(spec_for("falling"), tmp_path / "r")
    (tmp_path / "c.yaml").write_text("lr: [unclosed\n")
    res = CliRunner().invoke(app, ["curve", str(run), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not valid yaml" in res.output
    res = CliRunner().invoke(app, ["curve", str(run), "--upto", "60", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "too few" in res.output


def test_hugging_face_trainer_output_folder(tmp_path):
    """A Trainer output folder: the latest checkpoint's trainer_state.json (log_history with loss,
    learning_rate, grad_norm and eval_loss rows) and the model's config.json for the shape."""
    spec, rows = _rows("falling")
    history = []
    for i, r in enumerate(rows):
        history.append({"epoch": 0.1, "grad_norm": r["grad_norm"], "learning_rate": r["lr"], "loss": r["loss"],
                        "step": r["step"]})
        if i % 25 == 0:
            history.append({"epoch": 0.1, "eval_loss": r["loss"] - 0.05, "eval_runtime": 3.2, "step": r["step"]})
    for n, cut in ((500, 50), (rows[-1]["step"], len(history))):
        ck = tmp_path / "out" / f"checkpoint-{n}"
        ck.mkdir(parents=True)
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": n, "max_steps": spec.steps,
                                                           "log_history": history[:cut]}))
    (tmp_path / "out" / "config.json").write_text(json.dumps({"vocab_size": 32000, "hidden_size": 256,
                                                              "num_hidden_layers": 4, "tie_word_embeddings": True}))
    log = read_log(str(tmp_path / "out"))
    assert log.source.endswith(f"checkpoint-{rows[-1]['step']}/trainer_state.json")
    assert len(log.series("loss")) == len(rows) and log.columns["lr"] == "learning_rate"
    report, _, probes = judge(tmp_path, run=tmp_path / "out", warmup=spec.warmup, lr=spec.lr)
    assert report["verdict"]["category"] == "UNDERTRAINED"
    assert probes["model_capacity"]["value"]["embedding_share"] > 0.5  # 32K x 256 in a 4-layer model
    assert probes["logged_schedule"]["status"] == "PASS"


# ---- kinds a new user's try found (each case's right value is the test) ---------------------------

def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cosine(kind="saturated", seed=0, **kw):
    spec = spec_for(kind, seed=seed, schedule="cosine", **kw)
    return spec, generate(spec)


def test_trainer_summary_row_is_not_a_divergence(tmp_path):
    """The Trainer's last log_history row (train_loss = the run's mean, train_runtime) is not the loss at the
    last step: a healthy flat run is not called diverged."""
    spec, rows = _rows("saturated")
    history = [{"step": r["step"], "loss": r["loss"], "learning_rate": r["lr"]} for r in rows]
    history.append({"step": rows[-1]["step"], "train_loss": 2.6, "train_runtime": 5000.0, "total_flos": 1e18})
    (tmp_path / "trainer_state.json").write_text(json.dumps({"max_steps": spec.steps, "log_history": history}))
    report, _, probes = judge(tmp_path, run=tmp_path / "trainer_state.json")
    assert probes["loss_spikes"]["status"] == "PASS" and report["verdict"]["category"] != "INFRASTRUCTURE BUG"


@pytest.mark.parametrize("config", [
    {"scheduler": {"name": "cosine", "warmup_steps": 500}, "optim": {"lr": 1.5e-3}, "max_steps": 20000},
    {"learning_rate": 1.5e-3, "warmup_iters": 500, "max_iters": 20000, "lr_decay_iters": 20000, "decay_lr": True},
    {"lr": 1.5e-3, "warmup_steps": 500, "max_steps": 20000},  # schedule not named: inferred from the log
])
def test_healthy_cosine_is_not_a_schedule_bug(tmp_path, config):
    """A cosine run whose config names its schedule its own way (a scheduler section, nanoGPT's decay_lr), or
    not at all, is compared with a cosine: no INFRASTRUCTURE BUG."""
    _, rows = _cosine()
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    report, _, probes = judge(tmp_path, run=_write_jsonl(tmp_path / "log.jsonl", rows), config=str(tmp_path / "cfg.json"))
    assert probes["logged_schedule"]["status"] == "PASS", probes["logged_schedule"]["message"]
    assert report["verdict"]["category"] == "CONVERGED"
    assert report["metrics"]["spec"]["schedule"] == "cosine"


def test_lr_not_logged_taken_from_the_config(tmp_path):
    """No LR in the log: the configured schedule stands in for the fit, so a flat cosine run's LR-decay fall
    is not read as 'more tokens would help'; with nothing known the fit never says UNDERTRAINED."""
    spec, rows = _cosine(C=0.4)
    bare = [{"step": r["step"], "loss": r["loss"]} for r in rows]
    run = _write_jsonl(tmp_path / "log.jsonl", bare)
    (tmp_path / "cfg.json").write_text(json.dumps(config_of(spec)))
    report, _, probes = judge(tmp_path, run=run, config=str(tmp_path / "cfg.json"))
    assert report["verdict"]["category"] == "CONVERGED"
    assert report["metrics"]["lr_used"].startswith("configured (cosine")
    report, _, probes = judge(tmp_path, run=run)
    assert report["verdict"]["category"] != "UNDERTRAINED"
    assert probes["loss_extrapolation"]["status"] in ("PASS", "WARN")
    # a curve that does fall, without any LR: undecided, and the verdict says what to give
    spec, rows = _rows("falling")
    run = _write_jsonl(tmp_path / "bare.jsonl", [{"step": r["step"], "loss": r["loss"]} for r in rows])
    report, code, probes = judge(tmp_path, run=run)
    assert probes["loss_extrapolation"]["status"] == "WARN" and "no LR logged" in probes["loss_extrapolation"]["message"]
    v = report["verdict"]  # the headline says what the body says: neither MODEL TOO SMALL nor an alarm
    assert (code, v["status"], v["category"]) == (0, "WARN", "CANNOT TELL")
    assert v["diagnosis"].startswith("Cannot tell undertrained from converged")
    assert "--schedule" in report["verdict"]["next_steps"][0]


@pytest.mark.parametrize("bug, lr_of", [
    ("decay never applied", lambda r, spec: min(spec.lr, spec.lr * r["step"] / spec.warmup)),
    ("warmup 30x long", lambda r, spec: spec.lr * min(1.0, r["step"] / (30 * spec.warmup))),
])
def test_cosine_not_applied_as_configured_is_a_bug(tmp_path, bug, lr_of):
    spec, rows = _cosine()
    rows = [dict(r, lr=lr_of(r, spec)) for r in rows]
    (tmp_path / "cfg.json").write_text(json.dumps(config_of(spec)))
    report, _, probes = judge(tmp_path, run=_write_jsonl(tmp_path / "log.jsonl", rows), config=str(tmp_path / "cfg.json"))
    assert probes["logged_schedule"]["status"] == "FAIL", bug
    assert (report["verdict"]["category"], report["verdict"]["part"]) == ("INFRASTRUCTURE BUG", "optimizer")
    assert "applied as intended" not in probes["logged_schedule"]["message"]


def test_two_stage_with_a_step_drop_is_not_a_bug(tmp_path):
    """Another two-stage shape (peak held, halved at 50%, weight decay to 0): the warmup, the drop and the
    weight decay are as configured; the exact curve differs from bitcheck's linear stages: WARN, not a bug."""
    spec, rows = _rows("saturated")
    rows = [dict(r, lr=r["lr"] if r["step"] <= spec.warmup else spec.lr * (1 if r["step"] <= spec.steps // 2 else 0.5))
            for r in rows]
    report, _, probes = judge(tmp_path, run=_write_jsonl(tmp_path / "log.jsonl", rows),
                              config=str(write_run(spec_for("saturated"), tmp_path / "r") / "config.json"))
    assert probes["logged_schedule"]["status"] == "WARN" and report["verdict"]["category"] != "INFRASTRUCTURE BUG"


def test_checkpoint_of_a_small_vocabulary(tmp_path):
    """A 65-token character model whose MLP is 1536 wide: the embedding is the tensor named like one, and a tied
    head sharing its storage is counted once."""
    import torch
    emb = torch.zeros(65, 384)
    sd = {"transformer.wte.weight": emb, "lm_head.weight": emb, "h.0.mlp.c_fc.weight": torch.zeros(1536, 384),
          "h.0.mlp.c_proj.weight": torch.zeros(384, 1536)}
    torch.save(sd, tmp_path / "ckpt.pt")
    _, rows = _rows()
    s = read_spec(read_log(str(_write_jsonl(tmp_path / "log.jsonl", rows))), checkpoint=str(tmp_path / "ckpt.pt"))
    assert (s.vocab, s.hidden, s.tied) == (65, 384, True)
    assert s.params == 65 * 384 + 2 * 1536 * 384 and s.embedding_params == 65 * 384


def test_several_runs_in_one_input_exit_2(tmp_path):
    _, rows = _rows()
    path = tmp_path / "two.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Step", "runA - train/loss", "runB - train/loss"])
        for r in rows:
            w.writerow([r["step"], r["loss"], r["loss"] + 0.3])
    res = CliRunner().invoke(app, ["curve", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "several runs (runA, runB)" in res.output


def test_config_keys_of_other_sections_and_decay_horizon(tmp_path):
    """An eval section's `steps` is not the run's horizon; nanoGPT's lr_decay_iters is (max_iters may run past
    it); a config's batch product does not override the token count the log itself kept."""
    _, rows = _rows()
    log = read_log(str(_write_jsonl(tmp_path / "log.jsonl", rows)))
    (tmp_path / "a.yaml").write_text("eval:\n  steps: 500\ntrain:\n  max_steps: 20000\n  batch_size: 64\n"
                                     "  seq_len: 2048\n  gradient_accumulation_steps: 4\n")
    s = read_spec(log, config=str(tmp_path / "a.yaml"))
    assert s.steps == 20000 and s.tokens_per_step == 8192  # the log counts 8192 tokens per step
    (tmp_path / "b.json").write_text(json.dumps({"max_iters": 25000, "lr_decay_iters": 20000}))
    assert read_spec(log, config=str(tmp_path / "b.json")).steps == 20000


def test_step_numbering(tmp_path):
    """No step column: steps from the token count and the batch; a counter that restarts from 0 is refused;
    rows merely out of order are sorted."""
    spec, rows = _rows("saturated")
    (tmp_path / "cfg.json").write_text(json.dumps(config_of(spec)))
    nostep = _write_jsonl(tmp_path / "nostep.jsonl", [{"tokens_seen": r["tokens"], "loss": r["loss"]} for r in rows])
    report, _, _ = judge(tmp_path, run=nostep, config=str(tmp_path / "cfg.json"))
    assert report["metrics"]["steps"] == rows[-1]["step"]
    restart = rows[:600] + [dict(r, step=r["step"] - rows[300]["step"]) for r in rows[300:]]
    res = CliRunner().invoke(app, ["curve", str(_write_jsonl(tmp_path / "re.jsonl", restart)), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "step counter restarts" in res.output
    import random
    shuffled = list(rows)
    random.Random(0).shuffle(shuffled)
    a, _, _ = judge(tmp_path, run=_write_jsonl(tmp_path / "shuf.jsonl", shuffled))
    b, _, _ = judge(tmp_path, run=_write_jsonl(tmp_path / "ord.jsonl", rows))
    assert a["verdict"]["category"] == b["verdict"]["category"]


@pytest.mark.parametrize("args, message", [
    (["--upto", "999999"], "past the log's last step"),
    (["--tokens-per-step", "0"], "must be positive"),
    (["--warmup", "-5"], "must be >= 0"),
    (["--schedule", "wsd"], "--schedule must be one of"),
])
def test_bad_values_exit_2(tmp_path, args, message):
    run = write_run(spec_for("saturated"), tmp_path / "r")
    res = CliRunner().invoke(app, ["curve", str(run), *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.output, res.output


def test_lightning_folder_finds_its_metrics_csv(tmp_path):
    _, rows = _rows("saturated")
    folder = tmp_path / "lightning_logs" / "version_0"
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["step", "train_loss", "lr-AdamW"])
        w.writeheader()
        for r in rows:
            w.writerow({"step": r["step"], "train_loss": r["loss"], "lr-AdamW": r["lr"]})
    assert read_log(str(tmp_path)).source.endswith("version_0/metrics.csv")


def test_fp16_skipped_steps_warn_not_fail(tmp_path):
    """Two infinite grad norms with a finite loss (fp16 loss scaling skipping steps) are a WARN, not numerics."""
    _, rows = _rows("saturated")
    rows = [dict(r, grad_norm=float("inf")) if i in (3, 4) else r for i, r in enumerate(rows)]
    report, _, probes = judge(tmp_path, run=_write_jsonl(tmp_path / "log.jsonl", rows))
    assert probes["nonfinite_log"]["status"] == "WARN" and report["verdict"]["part"] != "numerics"


def test_real_prediction_at_2x_holds(tmp_path):
    """bitcheck's 1m run on the whole real sample stopped at 4000 steps (validation loss still falling):
    UNDERTRAINED, and its predicted validation loss at 2x the tokens (the schedule stretched) matches the
    8000-step run actually trained with the same command: 0.9666 at its end (docs/CURVE.md, Measured)."""
    run = Path(__file__).parent / "data" / "tinystories-1m-4000"
    if not (run / "metrics" / "evals.jsonl").exists():
        pytest.skip("tests/data/tinystories-1m-4000 is missing")
    report, _, probes = judge(tmp_path, run=run)
    assert report["verdict"]["category"] == "UNDERTRAINED"
    fit = probes["loss_extrapolation"]["details"]["fit"]
    measured_at_2x = 0.9666
    assert abs(fit["loss_2x"] - measured_at_2x) < 2 * fit["gain_2x_sd"] + 0.005, (fit["loss_2x"], fit["gain_2x_sd"])


def test_spike_at_the_end_of_the_log_is_not_divergence(tmp_path):
    """A jump in the last few logged points (a log cut mid-spike) is a WARN, not 'the loss diverged'."""
    _, rows = _rows("saturated")
    rows = [dict(r, loss=r["loss"] + 1.5) if i >= len(rows) - 3 else r for i, r in enumerate(rows)]
    report, _, probes = judge(tmp_path, run=_write_jsonl(tmp_path / "log.jsonl", rows))
    assert probes["loss_spikes"]["status"] == "WARN" and "still up where the log ends" in probes["loss_spikes"]["message"]
    assert report["verdict"]["category"] != "INFRASTRUCTURE BUG"
