"""A norm inside BitLinear is a design, not a bug (issue #22): the quantization and STE probes read each
layer on its quantizer's own input (probes/bitlinear.py). Every design of tests/layer_designs.py, and
transformers' AutoBitLinear(use_rms_norm=True), passes healthy; its per-sequence activation scale (the
bug seen in public code) fails in the quantization part. Models at init with the norms' gains moved
off 1, so a gain that is ignored shows; ~1 s each."""
import functools

import pytest
import torch

from bitcheck.bitnet.model import BitLinear
from bitcheck.judge.assess import decide
from probes import Subject, run_probes
from probes import bitlinear as bl
from tests.layer_designs import DESIGNS
from tests.user_train import UserBitNet

LAYER_PROBES = ["ternary_distribution", "quantization_applied", "ste_gradient_flow", "per_token_scale"]


def _model(linear) -> UserBitNet:
    torch.manual_seed(0)
    model = UserBitNet(21, 32, 2, 4, 64, 64, linear)
    with torch.no_grad():  # trained gains are not 1: the reference must apply them
        for m in model.modules():
            if m is not model and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 1:
                m.weight.add_(torch.randn_like(m.weight) * 0.3)
            if hasattr(m, "gain"):
                m.gain.add_(torch.randn_like(m.gain) * 0.3)
    return model


def _probe(linear) -> tuple[dict, dict]:
    x = torch.randint(0, 21, (4, 24))
    results = [r.to_dict() for r in run_probes(Subject(model=_model(linear), batches=[(x, x)]), LAYER_PROBES)]
    return {r["name"]: r for r in results}, decide(results, {}, [], None)


def _hf_layer(i: int, o: int):
    bitnet = pytest.importorskip("transformers.integrations.bitnet")
    return bitnet.AutoBitLinear(i, o, bias=False, online_quant=True, use_rms_norm=True)


HEALTHY = {**DESIGNS, "transformers AutoBitLinear(use_rms_norm=True)": _hf_layer}


@pytest.mark.parametrize("design", list(HEALTHY))
def test_norm_inside_bitlinear_passes(design):
    """Healthy: every layer probe PASSes, and the report says the norm was found and how it was read."""
    found, verdict = _probe(HEALTHY[design])
    assert {n: r["status"] for n, r in found.items()} == dict.fromkeys(LAYER_PROBES, "PASS"), found
    assert "normalize their input inside" in found["quantization_applied"]["message"]
    assert found["quantization_applied"]["details"]["input_norm"]
    assert verdict["category"] == "INFRASTRUCTURE OK", verdict


@pytest.mark.parametrize("design", list(DESIGNS))
def test_per_sequence_scale_behind_a_norm_fails(design):
    """One activation scale over the whole (B, T, in) input, behind the norm: quantization FAILs."""
    found, verdict = _probe(functools.partial(DESIGNS[design], per_sequence=True))
    assert found["quantization_applied"]["status"] == found["per_token_scale"]["status"] == "FAIL", found
    assert (verdict["category"], verdict["part"]) == ("INFRASTRUCTURE BUG", "quantization"), verdict


def test_the_norm_is_found_by_behaviour():
    """A plain layer has no input norm; each design's norm is named as written (a child of any class, or
    the functional RMSNorm of the training-tips code); the weight its forward applies is read as ternary."""
    torch.manual_seed(0)
    assert bl.quantizer_input(BitLinear(16, 8))[0] == "none"
    assert bl.quantizer_input(DESIGNS["tips"](16, 8))[0] == "functional RMSNorm"
    assert bl.quantizer_input(DESIGNS["gained"](16, 8))[0] == "module norm (RMSNorm)"
    assert bl.quantizer_input(DESIGNS["subln"](16, 8))[0] == "module ln (LayerNorm)"
    w = bl.applied_weight(DESIGNS["subln"](16, 8))  # x @ W.T under a parametrization
    assert w is not None and torch.unique(w.abs()[w != 0]).numel() == 1
