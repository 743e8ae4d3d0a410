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
    ratios = {r["step"]: r["update_ratio/0"] for r in rows if "update_ratio/0" in r}
    assert sorted(ratios) == [2, 42, 82] and all(0 < v < 0.5 for v in ratios.values()), ratios  # the looks' updates
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


def test_only_rank_0_watches(tmp_path, monkeypatch):
    """Under torchrun (RANK set per process) the other ranks write nothing and judge nothing."""
    monkeypatch.setenv("RANK", "1")
    model = BitNet(preset_config("tiny", vocab_size=32))
    w = watch(model, torch.optim.AdamW(model.parameters()), out=str(tmp_path), every=1)
    w.step(1, loss=float("nan"))
    assert w.close() is None and not w.findings and not list(tmp_path.iterdir())


@pytest.mark.training
def test_the_readme_plain_loop_example_runs(tmp_path, monkeypatch):
    """README.md's plain-loop example, as it stands, in a scratch folder: a report in runs/."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("**A plain loop**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the documented example itself
    assert scope["report"] is not None and list(tmp_path.glob("runs/watch*/report.json"))


class _HFStyle(torch.nn.Module):
    """bitcheck's tiny BitNet as a Trainer calls a model: input_ids and labels in, {"loss": ...} out."""

    def __init__(self, model):
        super().__init__()
        self.net = model

    def forward(self, input_ids, labels):
        _, loss = self.net(input_ids[:, :-1], labels[:, 1:])
        return {"loss": loss}


@pytest.mark.training
@pytest.mark.parametrize("planted, part", [(None, None), ("no_ste", "gradients/STE"), ("wd_stage2", "optimizer"),
                                           ("lr_per_micro_batch", "optimizer"), ("nan", "numerics")])
def test_a_real_transformers_trainer(tmp_path, planted, part):
    """transformers.Trainer with the callback (attach): healthy, no finding, a report the folder holds and the
    watcher's scalars in the Trainer's own TensorBoard logger; each planted bug found while training and named (the
    LR and weight decay set per the two-stage recipe by the user's own callback, from the optimizer step, or from
    the micro-batch count; a NaN written into a weight before optimizer step 30: stopped there, the Trainer's own
    checkpoint saved)."""
    transformers = pytest.importorskip("transformers", reason="pip install bitcheck[hf]")
    from bitcheck.watch import attach
    torch.manual_seed(0)
    net = BitNet(preset_config("tiny", vocab_size=32))
    if planted == "no_ste":
        net = patch_bitlinear(net, no_ste)
    accumulate = 2 if planted == "lr_per_micro_batch" else 1
    cfg = TrainConfig(steps=60, lr=3e-3, warmup_steps=10)

    class Schedule(transformers.TrainerCallback):  # the user's two-stage schedule
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            lr, wd = schedule(min(state.global_step * accumulate, 59), cfg)
            for grp in optimizer.param_groups:
                grp["lr"] = lr
            optimizer.param_groups[0]["weight_decay"] = 0.1 if planted == "wd_stage2" and wd == 0 else wd
            if planted == "nan" and state.global_step == 29:
                with torch.no_grad():
                    net.blocks[1].ffn.down_proj.weight[0, 0] = float("nan")

    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 32, (40,), generator=g)
    rows = [{"input_ids": (base[:33] + int(k)) % 32, "labels": (base[:33] + int(k)) % 32}
            for k in torch.randint(0, 32, (480 * accumulate,), generator=g)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=60, per_device_train_batch_size=8,
                                          gradient_accumulation_steps=accumulate, learning_rate=3e-3,
                                          lr_scheduler_type="constant", weight_decay=0.1, logging_steps=5,
                                          report_to=["tensorboard"] if planted is None else [], save_strategy="no",
                                          use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=_HFStyle(net), args=args, train_dataset=rows, callbacks=[Schedule()])
    callback = attach(trainer, every=20, out=str(tmp_path / "runs"), on_nonfinite="stop" if planted == "nan" else "warn",
                      intended={"lr": 3e-3, "warmup": 10, "steps": 60, "schedule": "two_stage", "weight_decay": 0.1})
    trainer.train()
    report = callback.report
    assert report is not None and (Path(report.run_dir) / "report.json").is_file()
    st = _status(report)
    if planted is None:
        assert not callback.watcher.findings and st["ste_live"] == "PASS" and st["logged_schedule"] == "PASS", st
        # the watcher's scalars went through the Trainer's own TensorBoard logger
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = sorted((tmp_path / "hf").rglob("events.out.tfevents.*"))
        assert events, list((tmp_path / "hf").rglob("*"))
        tags = set().union(*(EventAccumulator(str(e)).Reload().Tags()["scalars"] for e in events))
        assert {"train/bitcheck/zero_share", "train/bitcheck/update_ratio/0"} <= tags, tags
        return
    assert (report.verdict.category.value, report.verdict.part) == ("INFRASTRUCTURE BUG", part), (st, report.verdict)
    if planted == "no_ste":
        assert [f.step for f in callback.watcher.findings if f.probe == "ste_live"] == [1]
    if planted == "nan":
        bad = [f for f in callback.watcher.findings if f.probe == "nonfinite_live"]
        assert bad[0].step == 30 and bad[0].where == "net.blocks.1.ffn.down_proj", bad
        assert trainer.state.global_step <= 31 and list((tmp_path / "hf").glob("checkpoint-*")), \
            list((tmp_path / "hf").iterdir())


def _lightning_run(tmp_path, planted=None, steps=60, accumulate=1):
    """bitcheck's tiny BitNet in a real lightning.Trainer with the callback; the LR and weight decay set per the
    two-stage recipe in on_train_batch_start, from the optimizer step (healthy) or from the batch index
    (planted "lr_per_micro_batch"); "wd_stage2" keeps weight decay in stage 2; "nan" writes a NaN into a weight
    at optimizer step 30; "no_ste" removes the STE."""
    lightning = pytest.importorskip("lightning", reason="pip install bitcheck[lightning]")
    from bitcheck.watch import lightning_callback
    cfg = TrainConfig(steps=steps, lr=3e-3, warmup_steps=10)

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = BitNet(preset_config("tiny", vocab_size=32))
            if planted == "no_ste":
                self.net = patch_bitlinear(self.net, no_ste)

        def training_step(self, batch, batch_idx):
            idx = batch[0]
            _, loss = self.net(idx[:, :-1], idx[:, 1:])
            self.log("train_loss", loss)
            return loss

        def on_train_batch_start(self, batch, batch_idx):
            k = batch_idx if planted == "lr_per_micro_batch" else self.trainer.global_step
            lr, wd = schedule(min(k, steps - 1), cfg)
            opt = self.optimizers().optimizer
            for grp in opt.param_groups:
                grp["lr"] = lr
            opt.param_groups[0]["weight_decay"] = 0.1 if planted == "wd_stage2" and wd == 0 else wd
            if planted == "nan" and self.trainer.global_step == 29:
                with torch.no_grad():
                    self.net.blocks[1].ffn.down_proj.weight[0, 0] = float("nan")

        def configure_optimizers(self):
            return build_optimizer(self.net, cfg)

    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 32, (40,), generator=g)
    data = (base[None, :33] + torch.randint(0, 32, (8 * steps * accumulate, 1), generator=g)) % 32
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=8)
    callback = lightning_callback(every=20, out=str(tmp_path / "runs"), on_nonfinite="stop" if planted == "nan" else "warn",
                                  intended={"lr": 3e-3, "warmup": 10, "steps": steps, "schedule": "two_stage",
                                            "weight_decay": 0.1})
    trainer = lightning.Trainer(max_steps=steps, accumulate_grad_batches=accumulate, accelerator="cpu", devices=1,
                                callbacks=[callback], default_root_dir=str(tmp_path / "pl"), enable_progress_bar=False,
                                enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=5)
    trainer.fit(Module(), loader)
    return callback, trainer


@pytest.mark.training
@pytest.mark.parametrize("planted, part", [(None, None), ("no_ste", "gradients/STE"), ("wd_stage2", "optimizer"),
                                           ("lr_per_micro_batch", "optimizer")])
def test_a_real_lightning_trainer(tmp_path, planted, part):
    """lightning.Trainer with the callback: healthy, no finding, a report, `bitcheck curve` reads the folder and the
    watcher's scalars in the Trainer's own logger; each planted bug found while training and named."""
    callback, trainer = _lightning_run(tmp_path, planted, accumulate=2 if planted == "lr_per_micro_batch" else 1)
    report = callback.report
    assert report is not None and (Path(report.run_dir) / "report.json").is_file()
    st = _status(report)
    if planted is None:
        assert not callback.watcher.findings and st["ste_live"] == "PASS" and st["logged_schedule"] == "PASS", st
        assert {"bitcheck/zero_share", "bitcheck/update_ratio/0"} <= set(trainer.logged_metrics), trainer.logged_metrics
        result = CliRunner().invoke(app, ["curve", report.run_dir, "--out", str(tmp_path / "c"), "--json"])
        assert result.exit_code in (0, 1) and json.loads(result.stdout)["command"] == "curve"
        return
    assert (report.verdict.category.value, report.verdict.part) == ("INFRASTRUCTURE BUG", part), (st, report.verdict)
    if planted == "no_ste":
        assert [f.step for f in callback.watcher.findings if f.probe == "ste_live"] == [1]


@pytest.mark.training
def test_lightning_nan_stops_with_the_trainers_checkpoint(tmp_path):
    callback, trainer = _lightning_run(tmp_path, "nan")
    bad = [f for f in callback.watcher.findings if f.probe == "nonfinite_live"]
    assert bad and bad[0].step == 30 and bad[0].where == "net.blocks.1.ffn.down_proj", bad
    assert trainer.global_step <= 31
    saved = list(Path(callback.report.run_dir, "checkpoints").rglob("checkpoint.pt"))
    assert saved and "state_dict" in torch.load(saved[0], weights_only=False)  # Lightning's own checkpoint format
