"""Codebases written the way users write them, apart from bitcheck, run through `--model` as a user runs
them: nanoGPT's shape (tests/nanogpt_style.py: fused projections, LayerNorm with bias, a tied head,
`forward(idx, targets=None) -> (logits, loss)` with the last position only at inference), and a float
Llama-style model converted by the user's own replace function into a BitLinear with its RMSNorm inside,
returning `.logits` (tests/converted_style.py). Healthy, no probe FAILs; with its planted bug, the part
is named."""
import json

import pytest
import torch
from typer.testing import CliRunner

from bitcheck.commands.cli import app
from bitcheck.user.adapter import ModelSpec
from probes.core import logits_of
from tests import nanogpt_style

runner = CliRunner()
SPEC = ModelSpec(vocab_size=21, block_size=16, n_embd=32, n_layer=2, n_head=4, n_kv_head=4, ffn_hidden=128)


def test_last_position_only_models_are_read_whole():
    """nanoGPT returns the last position's logits when called without targets: bitcheck reads every
    position's by calling it with dummy targets, the same logits its training forward gives."""
    torch.manual_seed(0)
    model = nanogpt_style.build(SPEC).eval()
    idx = torch.randint(0, 21, (2, 16))
    assert model(idx)[0].shape == (2, 1, 21)
    with torch.no_grad():
        got, (want, _) = logits_of(model, idx), model(idx, idx)
    assert got.shape == (2, 16, 21) and torch.equal(got, want)


def _quick(tmp_path, spec, *args):
    result = runner.invoke(app, ["quick-arith", "--device", "cpu", "--model", spec, "--out", str(tmp_path / "runs"),
                                 "--json", *args])
    assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output[-3000:]
    report = json.loads(result.stdout)
    return report, {p["name"]: p["status"] for p in report["probes"]}


@pytest.mark.training
def test_nanogpt_style_healthy_then_without_its_mask(tmp_path):
    """50 steps of the healthy nanoGPT-style model: no probe FAILs (UNDERTRAINED at that length); the
    same codebase with `is_causal=False` is an INFRASTRUCTURE BUG in loss/causality (causal_leak)."""
    report, st = _quick(tmp_path, "tests.nanogpt_style:build", "--steps", "50", "--no-bisect")
    assert not [n for n, s in st.items() if s in ("FAIL", "ERROR")], st
    assert st["causal_leak"] == "PASS" and report["verdict"]["category"] == "UNDERTRAINED", report["verdict"]
    report, st = _quick(tmp_path, "tests.nanogpt_style:no_mask", "--steps", "30", "--no-bisect")
    v = report["verdict"]
    assert (v["category"], v["part"], st["causal_leak"]) == ("INFRASTRUCTURE BUG", "loss/causality", "FAIL"), v


def test_last_position_only_without_targets_is_one_line(tmp_path):
    """A model that returns the last position only and takes no targets: exit 2, saying what to change."""
    result = runner.invoke(app, ["quick-arith", "--device", "cpu", "--model", "tests.test_codebases:last_only",
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "returns the last position only" in result.output, result.output
    assert "Traceback" not in result.output


class _LastOnly(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.inner = nanogpt_style.build(spec)

    def forward(self, idx):
        return self.inner(idx)[0]


def last_only(spec):
    return _LastOnly(spec)


@pytest.mark.training
def test_converted_llama_healthy_then_inverted_scale(tmp_path):
    """50 steps of the converted Llama-style model (GQA, SwiGLU, a gained RMSNorm inside every BitLinear,
    `.logits` output): no probe FAILs, the norm is stated; its BitLinear with the scale inverted is an
    INFRASTRUCTURE BUG in quantization."""
    report, st = _quick(tmp_path, "tests.converted_style:build", "--steps", "50", "--no-bisect")
    assert not [n for n, s in st.items() if s in ("FAIL", "ERROR")], st
    applied = next(p for p in report["probes"] if p["name"] == "quantization_applied")
    assert "normalize their input inside" in applied["message"], applied["message"]
    report, st = _quick(tmp_path, "tests.converted_style:inverted_scale", "--steps", "30", "--no-bisect")
    v = report["verdict"]
    assert (v["category"], v["part"], st["quantization_applied"]) == ("INFRASTRUCTURE BUG", "quantization", "FAIL"), v
