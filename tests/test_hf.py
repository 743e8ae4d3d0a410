"""#15: `bitcheck diagnose ./model-dir` on a Hugging Face BitNet folder written by `save_pretrained`,
loaded by transformers itself (its AutoBitLinear, KV cache, generate and logits warpers). Offline: the
config is built here. Skips where the `hf` extra (transformers, accelerate) is not installed."""
import json

import pytest
from typer.testing import CliRunner

from bitcheck.commands.cli import app

transformers = pytest.importorskip("transformers", reason="needs `pip install bitcheck[hf]`")
pytest.importorskip("accelerate", reason="transformers needs accelerate to load BitNet quantization configs")
runner = CliRunner()
SHAPE = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=0, eos_token_id=1)


def _folder(tmp_path, user_files, quantized: bool):
    from transformers import BitNetConfig, BitNetForCausalLM, BitNetQuantConfig
    quant = BitNetQuantConfig(linear_class="autobitlinear", quantization_mode="online").to_dict() if quantized else None
    d = tmp_path / ("bitnet" if quantized else "plain")
    BitNetForCausalLM(BitNetConfig(**SHAPE, quantization_config=quant)).save_pretrained(d)
    (d / "tokenizer.json").write_bytes((user_files / "tokenizer.json").read_bytes())
    return d


def test_bitnet_folder_runs_every_probe(tmp_path, user_files):
    d = _folder(tmp_path, user_files, quantized=True)
    result = runner.invoke(app, ["diagnose", str(d), "--text", str(user_files / "text.txt"), "--json"])
    assert "Traceback" not in result.output, result.output[-3000:]
    rep = json.loads(result.stdout)
    st = {p["name"]: p["status"] for p in rep["probes"]}
    m = rep["metrics"]
    assert m["format"] == "hugging face folder" and m["model_type"] == "bitnet" and m["quantized_layers"] == 14
    for name in ("quantization_applied", "ternary_distribution", "per_token_scale", "ste_gradient_flow", "causal_leak",
                 "kv_cache_parity", "sampler", "weights_loaded", "data_decode", "label_offset", "sample_likelihood"):
        assert st[name] == "PASS", (name, st)
    assert "ERROR" not in st.values()
    assert rep["verdict"]["category"] == "UNDERTRAINED"  # a fresh model: at ln V, not a bug


def test_bitnet_config_without_quantization_is_full_precision(tmp_path, user_files):
    d = _folder(tmp_path, user_files, quantized=False)
    result = runner.invoke(app, ["diagnose", str(d)])
    assert result.exit_code == 2 and "full precision" in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
