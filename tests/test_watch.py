"""bitcheck.watch inside a plain training loop (bitcheck's tiny BitNet, a learnable shifted-sequence task): healthy,
no finding and a report `bitcheck curve` reads; the STE removed, found at the first look; a NaN planted at a known
step, the module named, and with on_nonfinite="stop" a checkpoint saved; weight decay kept in stage 2 found from the
logged schedule; a probe that crashes disabled without stopping the loop."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bitcheck.bitnet.config import TrainConfig, preset_config
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.train import build_optimizer, schedule
from bitcheck.commands.cli import app
from bitcheck.judge.plants import no_ste, patch_bitlinear
from bitcheck.watch import NonFiniteStop, watch

STEPS = 120
INTENDED = {"lr": 3e-3, "warmup": 10, "steps": STEPS, "schedule": "two_stage", "weight_decay": 0.1}


def _train(tmp_path, model=None, steps=STEPS, every=40, nan_at=None, wd_stage2=None, **kw):
    torch.manual_seed(0)
    model = model or BitNet(preset_config("tiny", vocab_size=32))
    cfg = TrainConfig(steps=STEPS, lr=3e-3, warmup_steps=10)
    opt = build_optimizer(model, cfg)
    w = watch(model, opt, out=str(tmp_path / "runs"), every=every, intended=INTENDED, **kw)
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 32, (40,), generator=g)
    for step in range(1, steps + 1):
        lr, wd = schedule(step - 1, cfg)
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.param_groups[0]["weight_decay"] = wd if wd_stage2 is None or wd > 0 else wd_stage2
        if step == nan_at:
            with torch.no_grad():
                model.blocks[1].ffn.down_proj.weight[0, 0] = float("nan")
        idx = (base[None, :33] + torch.randint(0, 32, (8, 1), generator=g)) % 32
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        w.step(step, loss=loss.item())  # after backward, before the update (bitcheck.watch's docstring)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return w, w.close()


def _status(report):
    return {p["name"]: p["status"] for p in report.probes}


@pytest.mark.training
def test_healthy_loop_no_finding_and_a_run_curve_reads(tmp_path, capsys):
    w, report = _train(tmp_path)
    st = _status(report)
    assert not w.findings and st["ste_live"] == st["codes_live"] == st["nonfinite_live"] == "PASS", st
    assert st["logged_schedule"] == "PASS" and report.verdict.category.value != "INFRASTRUCTURE BUG"
    assert "bitcheck watch" not in capsys.readouterr().err
    run = Path(report.run_dir)
    rows = [json.loads(x) for x in (run / "metrics" / "scalars.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)) and all("lr" in r for r in rows)
    looks = [json.loads(x) for x in (run / "metrics" / "watch.jsonl").read_text().splitlines()]
    assert [x["step"] for x in looks] == [1, 41, 81]
    assert max(v["grad_sign_cos"] for x in looks for v in x["layers"].values()) < 0.3  # SCALE_ONLY_COS is 0.9
    assert (run / "report.json").is_file()
    result = CliRunner().invoke(app, ["curve", str(run), "--out", str(tmp_path / "c"), "--json"])
    assert result.exit_code in (0, 1) and json.loads(result.stdout)["command"] == "curve"


@pytest.mark.training
def test_ste_removed_is_found_at_the_first_look(tmp_path, capsys):
    model = patch_bitlinear(BitNet(preset_config("tiny", vocab_size=32)), no_ste)
    w, report = _train(tmp_path, model=model, steps=45)
    dead = [f for f in w.findings if f.probe == "ste_live"]
    assert dead and dead[0].step == 1 and dead[0].status == "FAIL"
    assert (report.verdict.category.value, report.verdict.part) == ("INFRASTRUCTURE BUG", "gradients/STE")
    assert "step 1: FAIL ste_live" in capsys.readouterr().err


@pytest.mark.training
def test_nan_at_a_known_step_is_named_and_stops_with_a_checkpoint(tmp_path):
    w, report = _train(tmp_path, steps=40, nan_at=30)
    bad = [f for f in w.findings if f.probe == "nonfinite_live"]
    assert bad and bad[0].step == 30 and bad[0].where == "blocks.1.ffn.down_proj", bad
    assert (report.verdict.category.value, report.verdict.part) == ("INFRASTRUCTURE BUG", "numerics")
    with pytest.raises(NonFiniteStop) as info:
        _train(tmp_path / "stop", steps=40, nan_at=30, on_nonfinite="stop")
    assert info.value.module == "blocks.1.ffn.down_proj" and Path(info.value.path).is_file()
    saved = torch.load(info.value.path, weights_only=False)
    assert saved["step"] == 30 and "optimizer" in saved


@pytest.mark.training
def test_weight_decay_kept_in_stage_2_is_found_from_the_log(tmp_path):
    _, report = _train(tmp_path, wd_stage2=0.1)
    assert _status(report)["logged_schedule"] == "FAIL"
    assert (report.verdict.category.value, report.verdict.part) == ("INFRASTRUCTURE BUG", "optimizer")


def test_a_crashing_probe_is_disabled_not_raised(tmp_path, capsys):
    model = BitNet(preset_config("tiny", vocab_size=32))
    w = watch(model, None, out=str(tmp_path), every=1)
    w._look = lambda step: 1 / 0  # a bug inside bitcheck
    for step in (1, 2, 3):
        w.step(step, loss=3.0)
    assert "look" in w._disabled and capsys.readouterr().err.count("ZeroDivisionError") == 1
    with pytest.raises(ValueError, match="on_nonfinite"):
        watch(model, None, out=str(tmp_path), on_nonfinite="explode")


class _HFStyle(torch.nn.Module):
    """bitcheck's tiny BitNet as a Trainer calls a model: input_ids and labels in, {"loss": ...} out."""

    def __init__(self, model):
        super().__init__()
        self.net = model

    def forward(self, input_ids, labels):
        _, loss = self.net(input_ids[:, :-1], labels[:, 1:])
        return {"loss": loss}


@pytest.mark.training
@pytest.mark.parametrize("planted", [None, "no_ste"])
def test_a_real_transformers_trainer(tmp_path, planted):
    """transformers.Trainer with the callback: healthy, no finding and a report the folder holds; the STE removed,
    found at the first look and named in the verdict."""
    transformers = pytest.importorskip("transformers", reason="pip install bitcheck[hf]")
    from bitcheck.watch import trainer_callback
    torch.manual_seed(0)
    net = BitNet(preset_config("tiny", vocab_size=32))
    if planted == "no_ste":
        net = patch_bitlinear(net, no_ste)
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 32, (40,), generator=g)
    rows = [{"input_ids": (base[:33] + int(k)) % 32, "labels": (base[:33] + int(k)) % 32}
            for k in torch.randint(0, 32, (480,), generator=g)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=60, per_device_train_batch_size=8,
                                          learning_rate=3e-3, warmup_steps=5, lr_scheduler_type="cosine",
                                          logging_steps=5, report_to=[], save_strategy="no", use_cpu=True,
                                          dataloader_num_workers=0, disable_tqdm=True)
    callback = trainer_callback(every=20, out=str(tmp_path / "runs"),
                                intended={"lr": 3e-3, "warmup": 5, "steps": 60, "schedule": "cosine", "min_lr": 0.0})
    transformers.Trainer(model=_HFStyle(net), args=args, train_dataset=rows, callbacks=[callback]).train()
    report = callback.report
    assert report is not None and (Path(report.run_dir) / "report.json").is_file()
    st = _status(report)
    if planted is None:
        assert not callback.watcher.findings and st["ste_live"] == "PASS" and st["logged_schedule"] == "PASS", st
    else:
        assert [f.step for f in callback.watcher.findings if f.probe == "ste_live"] == [1]
        assert (report.verdict.category.value, report.verdict.part) == ("INFRASTRUCTURE BUG", "gradients/STE")
