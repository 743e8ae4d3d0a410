"""report.json keeps its keys in every mode: the key sets below were read from the reports of the code
before the one-pipeline refactor (commit def6d50), mode by mode, and the refactored code must write
exactly these. One short run or diagnosis per mode (~1 minute in all)."""
import json

import pytest
import torch
from typer.testing import CliRunner

from bitcheck.bitnet.tokenizer import train_bpe
from bitcheck.commands.cli import app
from synthetic.stories import generate_stories, stories_text
from tests.user_models import UserLM

TOP = {"command", "verdict", "metrics", "probes", "run_dir"}
VERDICT = {"status", "category", "part", "diagnosis", "evidence", "next_steps"}
PROBE = {"name", "status", "value", "thresholds", "message", "hint", "branch", "details"}
METRICS = {
    "quick-arith": {"accuracy", "checkpoint", "device", "elapsed_s", "failures", "final_loss", "improving",
        "ln_vocab", "loss_at_init", "params", "pass_criteria", "precision", "preset", "stall", "steps",
        "steps_planned", "stopped", "task", "tokens_per_s", "vocab_size"},
    "quick-json": {"accuracy", "checkpoint", "device", "elapsed_s", "failures", "final_loss", "improving",
        "ln_vocab", "loss_at_init", "params", "pass_criteria", "precision", "preset", "stall", "steps",
        "steps_planned", "stopped", "task", "tokens_per_s", "vocab_size"},
    "tinystories": {"bytes_per_token", "checkpoint", "data", "device", "elapsed_s", "final_loss", "global_batch",
        "ln_vocab", "loss_at_init", "params", "pass_bpb", "precision", "preset", "samples", "steps",
        "steps_planned", "stopped", "task", "tokens_per_s", "train_tokens", "val_bpb", "val_loss",
        "val_unigram_entropy", "vocab_size", "world_size"},
    "diagnose-ours": {"accuracy", "failures", "file", "final_loss", "format", "ln_vocab", "params",
        "pass_criteria", "prefixes_stripped", "steps", "task", "vocab_size"},
    "diagnose-stories": {"file", "format", "ln_vocab", "params", "steps", "task", "val_bpb", "val_loss",
        "vocab_size"},
    "diagnose-tensors": {"file", "format", "nested_under", "params", "prefixes_stripped", "tensors"},
    "diagnose-user": {"factory", "file", "format", "learned", "ln_vocab", "model_vocab", "params",
        "quantized_layers", "text", "text_entropy", "text_loss", "tokenizer", "tokenizer_vocab", "unigram_entropy"},
    "diagnose-user-bare": {"factory", "file", "format", "model_vocab", "params", "quantized_layers", "text",
        "tokenizer"},
}
runner = CliRunner()


def _report(args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code in (0, 1), result.output[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema")
    fast = ["--no-compile", "--device", "cpu", "--steps", "3"]
    out = {"quick-arith": _report(["quick-arith", *fast, "--out", str(tmp / "q")]),
           "quick-json": _report(["quick-json", *fast, "--out", str(tmp / "j")]),
           "tinystories": _report(["tinystories", "--data", "synthetic:300", "--preset", "tiny", "--seq", "32",
                                   "--batch", "8", "--steps", "3", "--eval-every", "1", "--device", "cpu",
                                   "--data-dir", str(tmp / "d"), "--out", str(tmp / "s")])}
    ck = out["quick-arith"]["metrics"]["checkpoint"]
    out["diagnose-ours"] = _report(["diagnose", ck])
    out["diagnose-stories"] = _report(["diagnose", out["tinystories"]["metrics"]["checkpoint"]])
    torch.save(torch.load(ck, weights_only=True)["model_state_dict"], tmp / "sd.pt")
    out["diagnose-tensors"] = _report(["diagnose", str(tmp / "sd.pt")])
    train_bpe(generate_stories(300), 320).save(str(tmp / "tokenizer.json"))
    (tmp / "text.txt").write_text(stories_text(60, seed=1))
    torch.manual_seed(0)
    torch.save(UserLM(320).state_dict(), tmp / "init.pt")
    user = ["diagnose", str(tmp / "init.pt"), "--model", "tests.user_models:healthy"]
    out["diagnose-user"] = _report([*user, "--tokenizer", str(tmp / "tokenizer.json"), "--text", str(tmp / "text.txt")])
    out["diagnose-user-bare"] = _report(user)
    return out


@pytest.mark.parametrize("mode", list(METRICS))
def test_report_keys_are_unchanged(reports, mode):
    """Top level, verdict, every probe and the mode's metrics carry exactly the keys they always had."""
    r = reports[mode]
    assert set(r) == TOP and set(r["verdict"]) == VERDICT
    assert all(set(p) == PROBE for p in r["probes"]), [set(p) ^ PROBE for p in r["probes"]]
    assert set(r["metrics"]) == METRICS[mode], set(r["metrics"]) ^ METRICS[mode]
