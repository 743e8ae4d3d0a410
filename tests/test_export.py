"""`bitcheck export` and the parity probe: exact packing, the integer path equals training, and a
flipped scale convention between export and inference is caught."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.model import BitLinear, BitNet, pack_codes, packed_model, ternary, unpack_codes
from bitcheck.commands.cli import app
from bitcheck.commands.export import export, load_packed
from bitcheck.judge.subjects import LogitsOnly
from probes import Subject, run_probes
from tests.test_probes_tensors import pack_hf

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["quick-arith", "--no-compile", "--device", "cpu", "--steps", "20", "--out", str(out)])
    assert result.exit_code == 1, result.output[-2000:]
    return next(out.glob("*/checkpoints/step_20/checkpoint.pt"))


def _model(ckpt):
    c = torch.load(ckpt, weights_only=True)
    m = BitNet(ModelConfig.from_dict(json.loads(c["model_config"])))
    m.load_state_dict(c["model_state_dict"])
    return m.eval()


def _parity(model, inference):
    x = torch.randint(0, model.config.vocab_size, (8, 64), generator=torch.Generator().manual_seed(1))
    return run_probes(Subject(model=LogitsOnly(model), inference_model=LogitsOnly(inference), batches=[(x, x)]),
                      names=["inference_parity"])[0]


@pytest.mark.parametrize("rows", [1, 4, 7, 128])
def test_pack_round_trip_and_hf_layout(rows):
    codes = torch.randint(-1, 2, (rows, 12), generator=torch.Generator().manual_seed(rows)).to(torch.int8)
    packed = pack_codes(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (-(-rows // 4), 12)
    assert torch.equal(unpack_codes(packed, rows), codes)
    if rows % 4 == 0:  # the test-side packer, written from the HF layout's description
        assert torch.equal(packed, pack_hf(codes.to(torch.int32)))


def test_export_files_and_exact_codes(ckpt, tmp_path):
    manifest = export(ckpt, tmp_path / "exp")
    model = _model(ckpt)
    tensors = load_file(str(tmp_path / "exp" / "model.safetensors"))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, BitLinear)}
    assert set(manifest["layers"]) == set(layers) and len(layers) == 14
    for name, layer in layers.items():
        codes, scale = ternary(layer.weight)
        assert torch.equal(unpack_codes(tensors[f"{name}.weight"], layer.out_features), codes)
        assert torch.isclose(tensors[f"{name}.weight_scale"][0], 1 / scale)
    assert manifest["weight_scale_convention"] == "1/mean|W| (divide)"
    assert manifest["bytes"]["ratio_vs_fp32"] < 0.1  # 2-bit latents; the fp32 embedding is most of the rest
    assert torch.equal(tensors["embed.weight"], model.embed.weight.detach())


def test_integer_path_matches_training(ckpt, tmp_path):
    """Healthy: layer gap ~3e-7, greedy tokens identical; the in-memory twin agrees with the file."""
    export(ckpt, tmp_path / "exp")
    model = _model(ckpt)
    for inference in (load_packed(tmp_path / "exp"), packed_model(model)):
        r = _parity(model, inference)
        assert r.status == "PASS", r.message
        assert r.value["max_layer_gap"] < 1e-5 and r.value["greedy_disagreement"] == 0.0


def test_flipped_scale_convention_fails_parity(ckpt, tmp_path):
    """weight_scale saved as mean|W| while the inference path divides by it: garbage, caught."""
    export(ckpt, tmp_path / "exp")
    path = tmp_path / "exp" / "model.safetensors"
    tensors = load_file(str(path))
    for k in [k for k in tensors if k.endswith("weight_scale")]:
        tensors[k] = 1 / tensors[k]
    save_file(tensors, str(path))
    r = _parity(_model(ckpt), load_packed(tmp_path / "exp"))
    assert r.status == "FAIL" and r.value["max_layer_gap"] > 1.0
    assert r.branch == "export"  # the converter, not the training layer (#14)


def test_cli(ckpt, tmp_path):
    ok = runner.invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "e"), "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["parity"]["status"] == "PASS" and data["manifest"]["layout"] == "hf-bitnet-2bit"
    again = runner.invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "e")])
    assert again.exit_code == 2 and "not an empty folder" in again.output
    foreign = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    bad = runner.invoke(app, ["export", str(foreign), "--out", str(tmp_path / "f")])
    assert bad.exit_code == 2 and "export takes a checkpoint written by bitcheck" in bad.output
    diag = runner.invoke(app, ["diagnose", str(tmp_path / "e" / "model.safetensors"), "--json"])
    assert diag.exit_code == 0
    packed = next(p for p in json.loads(diag.stdout)["probes"] if p["name"] == "packed_layout")
    assert packed["status"] == "PASS" and "1/mean|W| (divide): 14 layers" in packed["message"]
