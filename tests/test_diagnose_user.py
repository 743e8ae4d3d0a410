"""`bitcheck diagnose CKPT --model module:factory`: a user's own model (tests/user_models.py), healthy
and with one planted bug each, diagnosed through the CLI with a real `tokenizers` BPE and generated
stories. Inputs are hashed before and after every call."""
import hashlib
import importlib.util
import json
import math

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from typer.testing import CliRunner

from bitcheck.bitnet.tokenizer import train_bpe
from bitcheck.commands.cli import app
from synthetic.stories import generate_stories
from tests.user_models import LAYER_REGEX

runner = CliRunner()
VOCAB = 320


@pytest.fixture(scope="module")
def files(user_files):
    return user_files  # tests/conftest.py: the tokenizer, text and checkpoints of the user's own trainer


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def diagnose(ckpt, factory, *args):
    inputs = [ckpt] + [a for a in args if not isinstance(a, str) and a.is_file()]
    before = [_sha(p) for p in inputs]
    result = runner.invoke(app, ["diagnose", str(ckpt), "--model", f"tests.user_models:{factory}", "--json",
                                 *map(str, args)])
    assert [_sha(p) for p in inputs] == before, "diagnose modified an input"
    assert "Traceback" not in result.output, result.output[-3000:]
    return result


def report(result):
    return json.loads(result.stdout)


def statuses(rep):
    return {p["name"]: p["status"] for p in rep["probes"]}


def test_healthy_user_model_passes_every_dynamic_probe(files):
    result = diagnose(files / "init.pt", "healthy")
    rep = report(result)
    assert result.exit_code == 0, rep["verdict"]
    assert rep["verdict"]["category"] == "INFRASTRUCTURE OK"
    st = statuses(rep)
    for name in ("ste_gradient_flow", "quantization_applied", "ternary_distribution", "causal_leak", "nonfinite",
                 "overfit_batch", "kv_cache_parity", "sampler", "loss_at_init"):
        assert st[name] == "PASS", (name, st)
    assert st["repetition"] == st["gibberish"] == "SKIP"  # no --text
    m = rep["metrics"]
    assert m["format"] == "user model" and m["model_vocab"] == VOCAB and m["quantized_layers"] == 8


def test_bare_module_skips_what_needs_the_users_code(files):
    rep = report(diagnose(files / "init.pt", "bare"))
    probes = {p["name"]: p for p in rep["probes"]}
    for name, key in (("sampler", "sampler"), ("kv_cache_parity", "incremental_logits"), ("loss_at_init", "fresh_model")):
        assert probes[name]["status"] == "SKIP" and key in probes[name]["message"]
    assert probes["ste_gradient_flow"]["status"] == "PASS"
    assert rep["verdict"]["category"] == "INFRASTRUCTURE OK"


@pytest.mark.parametrize("factory,layers,part,probe", [
    ("no_ste", True, "gradients/STE", "ste_gradient_flow"),
    ("inverted_scale", True, "quantization", "quantization_applied"),
    ("full_precision", True, "quantization", "ternary_distribution"),
    ("zero_row_nan", True, "numerics", "nonfinite"),
    ("no_causal_mask", False, "loss/causality", "causal_leak"),
    ("kv_offset", False, "generation", "kv_cache_parity"),
    ("temperature_ignored", False, "generation", "sampler"),
])
def test_each_planted_bug_is_named(files, factory, layers, part, probe):
    args = ["--layers", LAYER_REGEX] if layers else []
    result = diagnose(files / "init.pt", factory, *args)
    rep = report(result)
    assert result.exit_code == 1
    assert rep["verdict"]["part"] == part, rep["verdict"]
    assert statuses(rep)[probe] == "FAIL"
    expected = "GENERATION BROKEN" if part == "generation" else "INFRASTRUCTURE BUG"
    assert rep["verdict"]["category"] == expected


def test_text_probes_on_a_trained_model(files):
    result = diagnose(files / "trained.pt", "healthy", "--tokenizer", files / "tokenizer.json",
                      "--text", files / "text.txt")
    rep = report(result)
    assert result.exit_code == 0, rep["verdict"]
    m = rep["metrics"]
    assert m["learned"] and m["text_loss"] < m["unigram_entropy"] - 1.0
    st = statuses(rep)
    assert st["data_decode"] == st["repetition"] == "PASS"
    assert st["gibberish"] in ("PASS", "WARN")  # 800 steps: words mostly right, not all
    assert "FAIL" not in st.values()


def test_untrained_model_is_not_blamed_on_generation(files):
    """An untrained model writes gibberish: without the learned check the tree would say GENERATION BROKEN."""
    rep = report(diagnose(files / "init.pt", "healthy", "--tokenizer", files / "tokenizer.json",
                          "--text", files / "text.txt"))
    m = rep["metrics"]
    assert m["learned"] is False and abs(m["text_loss"] - math.log(VOCAB)) < 0.2
    assert statuses(rep)["gibberish"] == "FAIL"
    assert rep["verdict"]["category"] == "UNDERTRAINED", rep["verdict"]
    assert "not learned the text" in rep["verdict"]["diagnosis"]


def test_scrambled_generation_on_a_trained_model(files):
    rep = report(diagnose(files / "trained.pt", "shifted_ids", "--tokenizer", files / "tokenizer.json",
                          "--text", files / "text.txt"))
    assert rep["metrics"]["learned"]
    assert statuses(rep)["gibberish"] == "FAIL"
    assert rep["verdict"]["category"] == "GENERATION BROKEN", rep["verdict"]


def test_whitespace_tokenizer_is_a_data_bug(files, tmp_path):
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(generate_stories(500), trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["[UNK]"],
                                                                       show_progress=False))
    tok.save(str(tmp_path / "ws.json"))
    rep = report(diagnose(files / "init.pt", "healthy", "--tokenizer", tmp_path / "ws.json", "--text", files / "text.txt"))
    assert statuses(rep)["data_decode"] == "FAIL"
    assert rep["verdict"]["part"] == "data/tokenizer"


def test_tokenizer_folder_and_factory_tokenizer(files, tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_bytes((files / "tokenizer.json").read_bytes())
    rep = report(diagnose(files / "trained.pt", "healthy", "--tokenizer", tmp_path / "tok", "--text", files / "text.txt"))
    assert rep["metrics"]["tokenizer_vocab"] == VOCAB and rep["metrics"]["learned"]
    rep = report(diagnose(files / "trained.pt", "with_tokenizer", "--text", files / "text.txt"))
    assert rep["metrics"]["tokenizer_vocab"] == VOCAB and statuses(rep)["data_decode"] == "PASS"


@pytest.mark.parametrize("factory,args,message", [
    ("full_precision", [], "may simply not be quantized"),
    ("raises", [], "raised RuntimeError: cannot open"),
    ("not_a_module", [], "unknown keys ['weights']"),
    ("healthy", ["--tokenizer", "big.json"], "the tokenizer has 512 tokens but the model outputs 320"),
    ("healthy", ["--tokenizer", "missing.json"], "no such file"),
    ("healthy", ["--tokenizer", "text.txt"], "not a `tokenizers` JSON file"),
    ("healthy", ["--text", "text.txt"], "--text needs a tokenizer"),
    ("healthy", ["--tokenizer", "tokenizer.json", "--text", "nothing.txt"], "nothing.txt: no such file"),
    ("healthy", ["--tokenizer", "tokenizer.json", "--text", "short.txt"], "holds 3 words"),
    ("healthy", ["--tokenizer", "sp.model"], "pip install sentencepiece"),
    ("no_ste", ["--layers", "("], "not a regular expression"),
])
def test_user_mistakes_are_one_line_exit_2(files, factory, args, message):
    if "big.json" in args:
        train_bpe(generate_stories(300), 512).save(str(files / "big.json"))
    (files / "short.txt").write_text("only three words")
    (files / "sp.model").write_bytes(b"\x00not really a sentencepiece model")
    if "sp.model" in args and importlib.util.find_spec("sentencepiece"):
        pytest.skip("sentencepiece is installed: the missing-package message does not apply")
    args = [str(files / a) if a.endswith((".json", ".txt", ".model")) else a for a in args]
    result = runner.invoke(app, ["diagnose", str(files / "init.pt"), "--model", f"tests.user_models:{factory}", *args])
    assert result.exit_code == 2, result.output[-2000:]
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_user_options_need_the_model(files):
    result = runner.invoke(app, ["diagnose", str(files / "init.pt"), "--text", str(files / "text.txt")])
    assert result.exit_code == 2 and "need the model code" in result.output
    result = runner.invoke(app, ["diagnose", str(files / "init.pt"), "--model", "tests.user_models:nope"])
    assert result.exit_code == 2 and "has no attribute 'nope'" in result.output


def test_quantized_layers_found_by_behaviour(files):
    """#15: layers not named *BitLinear* are found by what they do (a ternary weight on one-hot inputs),
    so a bug in them is still named without --layers; a full-precision model is not called quantized."""
    rep = report(diagnose(files / "init.pt", "renamed_layers"))
    assert rep["verdict"]["category"] == "INFRASTRUCTURE OK" and rep["metrics"]["quantized_layers"] == 8
    rep = report(diagnose(files / "init.pt", "no_ste_unnamed"))
    assert rep["verdict"]["part"] == "gradients/STE" and rep["metrics"]["quantized_layers"] == 8
