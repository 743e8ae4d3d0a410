"""`bitcheck diagnose`: our checkpoint, the same weights in foreign layouts, planted bugs, bad files.
The input file is never modified (hashed before and after every call)."""
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bitcheck.commands.cli import app
from tests.test_probes_tensors import hf_packed_sd

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A real checkpoint from a 30-step quick-arith run (undertrained, healthy)."""
    out = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["quick-arith", "--no-compile", "--device", "cpu", "--steps", "30", "--out", str(out)])
    assert result.exit_code == 1, result.output[-2000:]
    return next(out.glob("*/checkpoints/step_30/checkpoint.pt"))


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _diagnose(path, *args):
    before = _sha(path)
    result = runner.invoke(app, ["diagnose", str(path), "--json", *args])
    assert _sha(path) == before, "diagnose modified its input"
    return result


def _report(result):
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def _state_dict(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=True)["model_state_dict"]


def test_our_checkpoint_runs_every_probe(ckpt):
    result = _diagnose(ckpt)
    report = _report(result)
    statuses = {p["name"]: p["status"] for p in report["probes"]}
    assert result.exit_code == 1  # 30 steps: the task is not learned
    assert report["verdict"]["category"] == "UNDERTRAINED", report["verdict"]
    for name in ("quantization_applied", "ste_gradient_flow", "causal_leak", "kv_cache_parity", "sampler",
                 "overfit_batch", "data_decode", "nonfinite", "ternary_distribution"):
        assert statuses[name] == "PASS", (name, statuses)
    assert "tensor_nonfinite" not in statuses  # the model probes cover the tensors
    m = report["metrics"]
    assert m["format"] == "bitcheck checkpoint" and m["task"] == "arith" and m["steps"] == 30
    assert set(m["accuracy"]) == {"+", "-"} and report["run_dir"] == str(ckpt.parents[2])


@pytest.mark.parametrize("layout", ["nested_compiled", "ddp", "safetensors"])
def test_same_weights_in_foreign_layouts(ckpt, tmp_path, layout):
    """A raw or nested state dict with wrapper prefixes, or safetensors: the tensor probes pass."""
    sd = _state_dict(ckpt)
    if layout == "nested_compiled":
        path = tmp_path / "model.pt"
        torch.save({"model": {"_orig_mod." + k: v for k, v in sd.items()}, "step": 30}, path)
    elif layout == "ddp":
        path = tmp_path / "model.pt"
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    else:
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    result = _diagnose(path)
    report = _report(result)
    assert result.exit_code == 0, report["verdict"]
    assert report["verdict"]["category"] == "TENSORS OK"
    m = report["metrics"]
    assert m["tensors"] == len(sd)
    if layout == "nested_compiled":
        assert m["nested_under"] == "model" and m["prefixes_stripped"] == ["_orig_mod."]
    if layout == "ddp":
        assert m["nested_under"] == "state_dict" and m["prefixes_stripped"] == ["module."]
    if layout == "safetensors":
        assert m["format"] == "safetensors"
    statuses = {p["name"]: p["status"] for p in report["probes"]}
    assert statuses["latent_weights"] == statuses["tensor_nonfinite"] == "PASS"


@pytest.mark.parametrize("conventions, code, part", [
    (["divide"], 0, None), (["multiply"], 0, None), (["divide", "multiply"], 1, "quantization")])
def test_hf_packed_checkpoints(ckpt, tmp_path, conventions, code, part):
    """HF-packed uint8 weights: one scale convention passes (and is named), a mix fails."""
    path = tmp_path / "packed.safetensors"
    save_file({k: v.contiguous() for k, v in hf_packed_sd(_state_dict(ckpt), conventions).items()}, str(path))
    result = _diagnose(path)
    report = _report(result)
    assert result.exit_code == code, report["verdict"]
    assert report["verdict"]["part"] == part
    packed = next(p for p in report["probes"] if p["name"] == "packed_layout")
    assert ("(divide)" in packed["message"]) == ("divide" in conventions)
    # "params" counts weights, not stored bytes: the same as the unpacked model's
    assert report["metrics"]["params"] == sum(v.numel() for v in _state_dict(ckpt).values())


def test_terminal_collapses_skips_with_one_reason(ckpt, tmp_path):
    """#15: a tensors-only diagnosis SKIPs every model probe for the same reason: one line, not fourteen."""
    path = tmp_path / "raw.pt"
    torch.save(_state_dict(ckpt), path)
    out = runner.invoke(app, ["diagnose", str(path)], env={"COLUMNS": "400"}).output
    assert out.count("no model code: only the checkpoint") == 1, out
    assert "ste_gradient_flow" in out and "causal_leak" in out  # the skipped probes are still named


def test_nan_in_foreign_state_dict_names_numerics(ckpt, tmp_path):
    sd = _state_dict(ckpt)
    sd["blocks.0.ffn.down_proj.weight"][0, 0] = float("inf")
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    report = _report(_diagnose(path))
    assert report["verdict"]["part"] == "numerics" and "down_proj" in report["verdict"]["diagnosis"]


def test_out_writes_the_report(ckpt, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_state_dict(ckpt), path)
    result = _diagnose(path, "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0
    for name in ("report.json", "report.md", "report.html"):
        assert (tmp_path / "rep" / name).is_file()
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["verdict"]["category"] == "TENSORS OK"
    again = _diagnose(path, "--out", str(tmp_path / "rep"))
    assert again.exit_code == 2 and "not an empty folder" in again.output


def _one_line_error(result, needle):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and needle in result.output, result.output


def test_bad_inputs_are_one_line_errors(ckpt, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    _one_line_error(_diagnose(text), "not a readable PyTorch checkpoint")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    _one_line_error(_diagnose(truncated), "not a readable PyTorch checkpoint")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    _one_line_error(_diagnose(bad_st), "not a readable safetensors file")
    no_tensors = tmp_path / "config.pt"
    torch.save({"lr": 3e-3, "note": "no weights here"}, no_tensors)
    _one_line_error(_diagnose(no_tensors), "not a state dict")
    _one_line_error(runner.invoke(app, ["diagnose", str(tmp_path / "missing.pt")]), "no such file")
