"""The training engine: schedules, optimizer groups, exact resume, Ctrl-C safety, NaN stop."""
import json
import math

import pytest
import torch

from bitcheck.bitnet.checkpoint import read_payload as load_checkpoint
from bitcheck.bitnet.config import TrainConfig
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.rundir import RunDir
from bitcheck.bitnet.tasks import task_batches
from bitcheck.bitnet.train import Stall, Trainer, build_optimizer, schedule
from synthetic.arithmetic import ArithmeticTask


def test_two_stage_schedule():
    """Warmup to the peak, linear to the second peak at 50%, then to the final LR; WD 0.1 then 0."""
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, second_peak_ratio=0.5, final_lr_ratio=0.1)
    assert schedule(0, cfg)[0] == pytest.approx(1e-5)
    assert schedule(99, cfg) == (pytest.approx(1e-3), 0.1)
    assert schedule(100, cfg) == (pytest.approx(1e-3), 0.1)
    assert schedule(300, cfg)[0] == pytest.approx(1e-3 - 0.5e-3 * 200 / 400)
    assert schedule(499, cfg)[1] == 0.1
    assert schedule(500, cfg) == (pytest.approx(0.5e-3), 0.0)
    assert schedule(999, cfg)[0] == pytest.approx(0.5e-3 + (1e-4 - 0.5e-3) * 499 / 500)
    lrs = [schedule(s, cfg)[0] for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cosine_schedule():
    """Cosine decays from the peak to the final LR with constant weight decay."""
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=0, schedule="cosine", final_lr_ratio=0.1)
    assert schedule(0, cfg) == (pytest.approx(1e-3), 0.1)
    assert schedule(500, cfg)[0] == pytest.approx(0.55e-3)
    assert schedule(1000, cfg) == (pytest.approx(1e-4), 0.1)


def test_no_weight_decay_on_norms_and_embeddings(tiny_cfg):
    """Only matrices decay: norms and the (tied) embedding are in the no-decay group."""
    model = BitNet(tiny_cfg)
    opt = build_optimizer(model, TrainConfig())
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 2 and "embed" not in names[id(p)] for p in decay["params"])
    assert any("embed" in names[id(p)] for p in no_decay["params"])
    assert all("norm" in names[id(p)] or "embed" in names[id(p)] for p in no_decay["params"])
    assert (opt.defaults["betas"]) == (0.9, 0.95)


def test_cosine_with_warm_restarts():
    """cycle_steps: after warmup, the cosine restarts at the peak every cycle (SGDR); `steps` is then
    only a limit, not the horizon."""
    cfg = TrainConfig(steps=10**6, lr=1e-3, warmup_steps=10, schedule="cosine", cycle_steps=100)
    assert schedule(10, cfg)[0] == pytest.approx(1e-3) and schedule(60, cfg)[0] == pytest.approx(0.55e-3)
    assert schedule(109, cfg)[0] == pytest.approx(1e-4, rel=0.01) and schedule(110, cfg)[0] == pytest.approx(1e-3)
    assert schedule(260, cfg) == schedule(60, cfg)


def test_stall_needs_both_signals_flat():
    """A run stalls only after `stall_evals` evaluations in which neither the validation loss (by 1%)
    nor the gate score (by 0.01) improved: a flat score while the loss falls (a task before it
    "clicks") is progress, and so is a rising score while the loss is noisy."""
    cfg = TrainConfig(stall_evals=3, eval_every=100)
    st = Stall()
    assert not any(st.update(cfg, loss, 0.05) for loss in (2.0, 1.9, 1.8, 1.7, 1.6))  # score flat, loss falls
    assert not any(st.update(cfg, 1.7, g) for g in (0.2, 0.4, 0.6, 0.8))  # loss flat, score rises
    assert [st.update(cfg, 1.59, 0.805) for _ in range(3)] == [False, False, True]  # changes below the bars
    assert "last 3 evaluations (300 steps)" in st.describe(cfg)
    assert not Stall().update(TrainConfig(stall_evals=0), None, None)  # 0: never


def test_stall_state_survives_resume(tmp_path, tiny_cfg):
    """A resumed run goes on counting evaluations without gain where it stopped (state in the checkpoint)."""
    trainer, run = _trainer(tmp_path, tiny_cfg, 4, stall_evals=5)
    trainer.stall = Stall(best_loss=1.5, best_gate=0.3, evals=9, last_gain=7)
    trainer.run()
    again, _ = _trainer(tmp_path, tiny_cfg, 6, run=run)
    again.load_state(load_checkpoint(run.latest_checkpoint()))
    assert again.stall == trainer.stall


def _trainer(tmp_path, tiny_cfg, steps, interrupt_at=None, run=None, **train):
    task = ArithmeticTask()
    tcfg = TrainConfig(steps=steps, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=3, log_every=1,
                       device="cpu", grad_accum=2, **train)
    inner = task_batches(task, 0, tcfg.batch_size, tcfg.seq_len, True)

    def batches(step, micro):
        if interrupt_at is not None and step == interrupt_at and micro == 1:
            raise KeyboardInterrupt  # Ctrl-C in the middle of an accumulated step
        return inner(step, micro)
    torch.manual_seed(0)
    run = run or RunDir.create(tmp_path, "t")
    meta = {"model_config": json.dumps(tiny_cfg.to_dict()), "tokenizer": task.tokenizer.to_json(), "task": "{}"}
    return Trainer(BitNet(tiny_cfg), tcfg, batches, run, meta, progress=False), run


def test_resume_is_exact(tmp_path, tiny_cfg):
    """k steps, Ctrl-C, resume, N-k more steps == N straight steps, loss for loss (CPU fp32)."""
    straight, run_a = _trainer(tmp_path / "a", tiny_cfg, 12)
    assert straight.run().stopped == "steps"
    losses_a = [r["loss"] for r in run_a.read_jsonl(run_a.metrics)]

    first, run_b = _trainer(tmp_path / "b", tiny_cfg, 12, interrupt_at=5)
    res = first.run()
    assert res.stopped == "interrupted" and res.step == 5
    ckpt = load_checkpoint(run_b.latest_checkpoint())
    assert ckpt["step"] == 5 and json.loads(ckpt["model_config"]) == tiny_cfg.to_dict()

    second, _ = _trainer(tmp_path / "b", tiny_cfg, 12, run=run_b)
    second.load_state(ckpt)
    assert second.run().step == 12
    losses_b = [r["loss"] for r in run_b.read_jsonl(run_b.metrics)]
    assert [r["step"] for r in run_b.read_jsonl(run_b.metrics)] == list(range(1, 13))
    assert losses_b == losses_a
    assert torch.equal(straight.model.embed.weight, second.model.embed.weight)


def test_nonfinite_loss_stops(tmp_path, tiny_cfg):
    """A NaN loss stops training at once and is recorded, not trained through."""
    trainer, run = _trainer(tmp_path, tiny_cfg, 10)
    with torch.no_grad():
        trainer.model.embed.weight[0, 0] = float("nan")
    res = trainer.run()
    assert res.stopped == "nonfinite" and res.step == 1
    assert math.isnan(run.read_jsonl(run.metrics)[-1]["loss"])
