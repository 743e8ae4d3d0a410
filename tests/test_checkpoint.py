"""The checkpoint format (bitcheck/bitnet/checkpoint.py): one writer and reader, weights-only safe, and every
checkpoint written before it (tests/data/checkpoint_7e760e0.pt: a 3-step run saved by bitcheck as it
landed at commit 7e760e0, before this module existed) still loads, diagnoses and resumes."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet.config import ModelConfig, TrainConfig
from bitcheck.bitnet.model import BitNet
from bitcheck.commands.cli import app

OLD = Path(__file__).parent / "data" / "checkpoint_7e760e0.pt"


def test_old_checkpoint_loads_and_rebuilds():
    """An older checkpoint (no stall state in its schedule) reads into a Checkpoint and rebuilds its model."""
    ck = ckpts.load(OLD, resumable=True)
    assert ck.step == 3 and ck.task == {"name": "arith", "ops": "+-", "answer_only": True}
    assert ck.model_config.n_embd == 32 and ck.train_config.batch_size == 4
    assert "stall" not in ck.schedule
    model = ckpts.build_model(ck)
    assert isinstance(model, BitNet)
    assert torch.equal(model.embed.weight, ck.model_state_dict["embed.weight"])


def test_round_trip_is_weights_only(tmp_path):
    """save -> torch.load(weights_only=True) -> load gives the same fields back."""
    cfg = ModelConfig(vocab_size=21, n_embd=32, n_layer=1, n_head=4, n_kv_head=2, ffn_hidden=64, block_size=32)
    model = BitNet(cfg)
    ck = ckpts.Checkpoint(model.state_dict(), cfg, tokenizer='{"type": "char"}', task={"name": "json"},
                          train_config=TrainConfig(steps=7), step=5, schedule={"stall": {"evals": 2}},
                          probe_text="once upon a time")
    path = tmp_path / "c" / "checkpoint.pt"
    ckpts.save(path, ck)
    raw = torch.load(path, weights_only=True)
    assert json.loads(raw["model_config"]) == cfg.to_dict() and isinstance(raw["task"], str)
    back = ckpts.load(path)
    assert (back.model_config, back.train_config, back.task, back.step, back.probe_text, back.schedule) == \
        (cfg, TrainConfig(steps=7), {"name": "json"}, 5, "once upon a time", {"stall": {"evals": 2}})
    assert not list(path.parent.glob("*.tmp"))


def test_foreign_files_are_one_line_errors(tmp_path):
    """A state dict, a non-dict and garbage are CheckpointErrors that say what is wrong."""
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for name, needle in (("sd.pt", "missing model_state_dict"), ("list.pt", "holds a list"),
                         ("junk.pt", "not a readable bitcheck checkpoint"), ("none.pt", "no such file")):
        with pytest.raises(ckpts.CheckpointError, match=needle):
            ckpts.load(tmp_path / name)
    assert not ckpts.is_checkpoint({"w": torch.zeros(2)}) and ckpts.is_checkpoint(torch.load(OLD, weights_only=True))


@pytest.mark.training
def test_old_checkpoint_diagnoses_and_resumes(tmp_path):
    """`diagnose` reads the old file as ours (every probe, the task score); a run directory holding it
    resumes from its step."""
    runner = CliRunner()
    result = runner.invoke(app, ["diagnose", str(OLD), "--device", "cpu", "--json"])
    assert result.exit_code in (0, 1), result.output[-2000:]
    report = json.loads(result.stdout)
    assert report["metrics"]["format"] == "bitcheck checkpoint" and report["metrics"]["steps"] == 3
    assert set(report["metrics"]["accuracy"]) == {"+", "-"}
    run = tmp_path / "run"
    (run / "checkpoints" / "step_3").mkdir(parents=True)
    shutil.copy(OLD, run / "checkpoints" / "step_3" / "checkpoint.pt")
    result = runner.invoke(app, ["quick-arith", "--resume", str(run), "--steps", "5", "--json"])
    assert result.exit_code == 1, result.output[-2000:]
    assert json.loads(result.stdout)["metrics"]["steps"] == 5
