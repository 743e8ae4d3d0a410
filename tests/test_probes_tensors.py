"""Tensor probes (no model code): PASS on healthy weights, FAIL with each bug planted, right part named."""
import torch

from bitcheck.bitnet.config import preset_config
from bitcheck.bitnet.model import BitNet
from bitcheck.judge.assess import decide
from probes import SKIP, Subject, run_probes
from probes.tensors import latent_candidates, unpack_hf


def healthy_sd(seed=0):
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in BitNet(preset_config("tiny", vocab_size=21)).state_dict().items()}


def pack_hf(codes: torch.Tensor) -> torch.Tensor:
    """Test-side packer of the HF layout (written from its description, not from the unpacker):
    byte row r holds the code + 1 of output row i * R + r in bits 2i..2i+1, R = rows / 4."""
    out_rows = codes.shape[0]
    assert out_rows % 4 == 0
    rows = out_rows // 4
    u = (codes + 1).to(torch.int32)
    packed = torch.zeros(rows, codes.shape[1], dtype=torch.int32)
    for i in range(4):
        packed |= u[i * rows:(i + 1) * rows] << (2 * i)
    return packed.to(torch.uint8)


def hf_packed_sd(sd, conventions):
    """Replace every latent with packed codes + weight_scale; conventions[i] in ('divide', 'multiply')."""
    out = dict(sd)
    for i, (k, w) in enumerate(latent_candidates(sd).items()):
        scale = w.abs().mean().clamp(min=1e-5)
        codes = (w / scale).round().clamp(-1, 1).to(torch.int8)
        out[k] = pack_hf(codes)
        div = conventions[i % len(conventions)] == "divide"
        out[k[:-len("weight")] + "weight_scale"] = (1 / scale if div else scale).reshape(1)
    return out


def run(sd):
    results = [r.to_dict() for r in run_probes(Subject(model=None, tensors=sd))]
    return {r["name"]: r for r in results}, decide(results, {}, [], None)


def test_healthy_weights_pass_and_model_probes_skip():
    res, verdict = run(healthy_sd())
    assert res["tensor_nonfinite"]["status"] == res["latent_weights"]["status"] == "PASS"
    assert res["packed_layout"]["status"] == SKIP and "no packed" in res["packed_layout"]["message"]
    assert "14 latent weights" in res["latent_weights"]["message"]  # 7 BitLinears per block, 2 blocks
    assert res["latent_weights"]["value"]["max_dead_row_share"] == 0.0
    skipped = [r for n, r in res.items() if r["status"] == SKIP and n != "packed_layout"]
    assert len(skipped) >= 13 and all("no model code" in r["message"] for r in skipped)
    assert verdict["status"] == "PASS"


def test_nan_tensor_fails_numerics():
    sd = healthy_sd()
    sd["blocks.1.ffn.up_proj.weight"][3, 5] = float("nan")
    res, verdict = run(sd)
    assert res["tensor_nonfinite"]["status"] == "FAIL" and "up_proj" in res["tensor_nonfinite"]["message"]
    assert verdict["part"] == "numerics"


def test_collapsed_latents_fail_quantization():
    """One outlier per layer inflates mean|W| so every other code rounds to 0 (the selftest's collapse)."""
    sd = healthy_sd()
    for k in latent_candidates(sd):
        sd[k] = sd[k] * 1e-3
        sd[k][0, 0] = 10.0
    res, verdict = run(sd)
    lw = res["latent_weights"]
    assert lw["status"] == "FAIL" and lw["value"]["max_zero_share"] > 0.99 and lw["value"]["max_dead_row_share"] > 0.9
    assert verdict["part"] == "quantization"


def test_unpack_inverts_the_packed_layout():
    codes = torch.randint(-1, 2, (64, 24), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    packed = pack_hf(codes)
    assert packed.shape == (16, 24) and packed.dtype == torch.uint8
    assert torch.equal(unpack_hf(packed) - 1, codes)


def test_packed_layout_one_convention_passes_and_is_named():
    for conv, label in (("divide", "1/mean|W| (divide): 14 layers"), ("multiply", "mean|W| (multiply): 14 layers")):
        res, verdict = run(hf_packed_sd(healthy_sd(), [conv]))
        assert res["packed_layout"]["status"] == "PASS", res["packed_layout"]
        assert label in res["packed_layout"]["message"]
        assert res["latent_weights"]["status"] == SKIP
        assert verdict["status"] == "PASS"


def test_packed_layout_mixed_conventions_fail():
    res, verdict = run(hf_packed_sd(healthy_sd(), ["divide", "multiply"]))
    assert res["packed_layout"]["status"] == "FAIL" and res["packed_layout"]["value"]["scale_conventions"] == 2
    assert verdict["part"] == "quantization"


def test_packed_layout_invalid_code_fails():
    sd = hf_packed_sd(healthy_sd(), ["divide"])
    sd["blocks.0.attn.q_proj.weight"][0, 0] = 0xFF  # four codes of 3
    res, verdict = run(sd)
    assert res["packed_layout"]["status"] == "FAIL" and res["packed_layout"]["value"]["invalid_codes"] == 4
    assert verdict["part"] == "quantization"


def test_latent_candidates_follow_common_names():
    t = torch.zeros(4, 4)
    names = ["embed.weight", "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "lm_head.weight",
             "output.weight", "model.norm.weight", "layers.0.ffn_norm.weight", "tok_embeddings.weight",
             "blocks.0.attn.q_proj.weight", "layers.0.attention.wq.weight", "model.layers.0.self_attn.o_proj.weight"]
    assert sorted(latent_candidates({n: t for n in names})) == [
        "blocks.0.attn.q_proj.weight", "layers.0.attention.wq.weight", "model.layers.0.self_attn.o_proj.weight"]


def test_no_bitnet_weights_fails():
    """A state dict with no latent and no packed weights is not a BitNet: latent_weights says so."""
    res, _ = run({"embed.weight": torch.randn(10, 4), "norm.weight": torch.ones(4)})
    assert res["latent_weights"]["status"] == "FAIL" and "no 2-D latent weights" in res["latent_weights"]["message"]
