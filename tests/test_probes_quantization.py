"""Quantization probes: PASS on a healthy model, FAIL with each quantization bug planted."""
import copy
import dataclasses

import torch

from bitcheck.bitnet.model import BitLinear, ternary_codes
from bitcheck.judge.plants import inverted_scale, no_quant, patch_bitlinear
from bitcheck.judge.subjects import LogitsOnly
from probes import reference as ref
from probes.quantization import REF_ERROR, FlipWatch, effective_weight, ternary_stats
from tests.probe_helpers import part, result, subject


def _model(s):
    return s.model.inner


def test_healthy_passes():
    """A healthy BitNet: ternary, not collapsed, equal to the reference."""
    s = subject()
    for name in ("ternary_distribution", "quantization_applied"):
        r = result(s, name)
        assert r.status == "PASS", (name, r.message)


def _plant_rounding_tie(layer: BitLinear) -> None:
    """Set one weight so close to 0.5 * mean|W| that float32 (the layer) and float64 (the
    reference) round it to different codes, as happened in a CI run's healthy quick-json model."""
    w = layer.weight.detach().clone()
    rest = w.double().abs().sum() - w[0, 0].double().abs()
    at_boundary = torch.tensor(float(0.5 * rest / (w.numel() - 0.5)))  # |a| = 0.5 * mean|W| incl. a
    eps = torch.finfo(torch.float32).eps
    for k in range(-40, 41):
        w[0, 0] = at_boundary * (1 + k * eps / 2)
        if int(ref.ternary_codes(w)[0][0, 0]) != int(ternary_codes(w)[0][0, 0]):  # float64 vs the layer's float32
            with torch.no_grad():
                layer.weight.copy_(w)
            return
    raise AssertionError("no weight near the boundary rounds differently in float32 and float64")


def test_rounding_tie_is_not_a_bug():
    """A healthy layer whose weight sits within float rounding of the 0.5 code boundary passes: the
    reference alone disagrees there by one code (7e-3 relative in the CI run, above the FAIL bar)."""
    s = subject()
    model = copy.deepcopy(_model(s))
    layer = model.blocks[0].attn.o_proj
    _plant_rounding_tie(layer)
    assert ref.near_ties(layer.weight).sum() == 1
    x = torch.randn(16, layer.weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        naive = ((layer(x) - ref.bitlinear(x, layer.weight)).norm() / ref.bitlinear(x, layer.weight).norm()).item()
    assert naive > REF_ERROR.fail  # the premise: without the tie rule this healthy model FAILs
    s.model = LogitsOnly(model)
    r = result(s, "quantization_applied")
    assert r.status == "PASS" and r.value < REF_ERROR.warn, r.message


def test_clear_of_ties_moves_only_boundary_elements():
    """The probe input keeps act-quant rounding unambiguous: only elements at a .5 boundary move."""
    x = torch.tensor([[127.0, 3.5, -2.5, 1.2, 0.0]])  # absmax 127: scaled values are the values
    y = ref.clear_of_ties(x)
    assert y[0, 0] == 127.0 and y[0, 3] == x[0, 3] and y[0, 4] == 0.0
    assert abs(y[0, 1] - 3.51) < 1e-5 and abs(y[0, 2] + 2.49) < 1e-5


def test_effective_weight_reads_ternary_codes():
    """effective_weight recovers codes * mean|W| of a BitLinear from its outputs alone."""
    layer = BitLinear(6, 4)
    w = effective_weight(layer)
    st = ternary_stats(w)
    assert st["levels"] == 1 and abs(st["scale"] - layer.weight.abs().mean().item()) < 1e-6


def test_full_precision_is_caught():
    """Quantization skipped: layers are not ternary and differ from the reference -> quantization."""
    s = subject()
    s.model = LogitsOnly(patch_bitlinear(_model(s), no_quant))
    assert result(s, "ternary_distribution").status == "FAIL"
    assert result(s, "quantization_applied").status == "FAIL"
    assert part(s, "quantization_applied") == "quantization"


def test_inverted_scale_is_caught():
    """Codes / mean|W| instead of * mean|W|: still ternary, but the output is off by orders of magnitude."""
    s = subject()
    s.model = LogitsOnly(patch_bitlinear(_model(s), inverted_scale))
    r = result(s, "quantization_applied")
    assert r.status == "FAIL" and r.value > 1.0 and "inverted" in r.message
    assert result(s, "ternary_distribution").status == "PASS"


def test_missing_activation_quant_is_caught():
    """Weights quantized but activations left in float: a small but clear gap to the reference."""
    import torch.nn.functional as F

    from bitcheck.bitnet.model import weight_quant

    def no_act(self, x):
        return F.linear(x, self.weight + (weight_quant(self.weight) - self.weight).detach())
    s = subject()
    s.model = LogitsOnly(patch_bitlinear(_model(s), no_act))
    r = result(s, "quantization_applied")
    assert r.status == "FAIL" and 1e-3 < r.value < 0.1, r.value


def test_collapse_is_caught():
    """One outlier per layer inflates mean|W| until nearly every code is 0."""
    s = subject()
    model = copy.deepcopy(_model(s))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BitLinear):
                m.weight[0, 0] = 100 * m.weight.abs().sum()
    s.model = LogitsOnly(model)
    r = result(s, "ternary_distribution")
    assert r.status == "FAIL" and r.value["max_zero_share"] > 0.9
    assert part(s, "ternary_distribution") == "quantization"


def test_flip_rate_watch_and_churn_warning():
    """FlipWatch measures code flips between snapshots; churning above the band is a WARN."""
    s = subject()
    model = _model(s)
    watch = FlipWatch(every=1)
    watch.after_step(model, 0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BitLinear):
                m.weight.mul_(-1)  # every nonzero code flips
    watch.after_step(model, 1)
    assert watch.records[0]["rate"] > 0.5
    s.history = dataclasses.replace(s.history, flip_rates=watch.records)
    r = result(s, "ternary_distribution")
    assert r.status == "WARN" and "flip rate" in r.message


def test_binary_layers_are_not_called_ternary():
    """#15: sign codes (b1) have one magnitude like ternary codes, but no zeros: ternary_distribution names them,
    as a WARN (#22: b1 trains; a deviation from b1.58, never a FAIL on its own), and quantization_applied
    finds the layer computes b1 exactly."""
    import torch.nn.functional as F

    from bitcheck.bitnet.model import activation_quant

    def binary(self, x):
        w = self.weight
        wb = torch.where(w - w.mean() >= 0, 1.0, -1.0) * w.abs().mean()
        return F.linear(x + (activation_quant(x) - x).detach(), w + (wb - w).detach())
    s = subject()
    assert result(s, "ternary_distribution").value["binary_layers"] == 0
    s.model = LogitsOnly(patch_bitlinear(_model(s), binary))
    r = result(s, "ternary_distribution")
    assert r.status == "WARN" and "binary (b1)" in r.message and r.value["binary_layers"] > 0, r.message
    r = result(s, "quantization_applied")
    assert r.status == "WARN" and "binary (b1) weights" in r.message, r.message


def _per_channel(self, x):
    """One mean|W| per output row (per-channel scales), per-token int8 activations."""
    import torch.nn.functional as F

    from bitcheck.bitnet.model import activation_quant
    w = self.weight
    s = w.abs().mean(dim=1, keepdim=True).clamp(min=1e-5)
    return F.linear(x + (activation_quant(x) - x).detach(), w + ((w / s).round().clamp(-1, 1) * s - w).detach())


def _four_bit(self, x):
    """b1.58 weights with 4-bit per-token activations (7 / max|x|, codes in [-8, 7])."""
    import torch.nn.functional as F

    from bitcheck.bitnet.model import weight_quant
    s = 7.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s).round().clamp(-8, 7) / s
    return F.linear(x + (xq - x).detach(), self.weight + (weight_quant(self.weight) - self.weight).detach())


def test_deviations_that_train_are_named_as_warnings():
    """#22: per-output-channel weight scales and 4-bit activations are b1.58 variants that train: each is a
    WARN naming the variant (quantization_applied matches it exactly), never a FAIL. A real bug next to
    them still FAILs: the inverted scale in one variant is not explained by any."""
    for forward, words in ((_per_channel, "per-channel weight scales"), (_four_bit, "4-bit activations")):
        s = subject()
        s.model = LogitsOnly(patch_bitlinear(_model(s), forward))
        r = result(s, "quantization_applied")
        assert r.status == "WARN" and words in r.message, (words, r.status, r.message)
    s = subject()
    s.model = LogitsOnly(patch_bitlinear(_model(s), _per_channel))
    r = result(s, "ternary_distribution")
    assert r.status == "WARN" and "one scale per output row" in r.message and r.value["per_channel_layers"] > 0
    s = subject()
    s.model = LogitsOnly(patch_bitlinear(_model(s), inverted_scale))
    assert result(s, "quantization_applied").status == "FAIL"


def test_quantized_layers_found_by_behaviour():
    """#15: with no *BitLinear* class name and no regex, a layer applying ternary weights is found by its
    one-hot response; a plain full-precision nn.Linear is not."""
    from probes.core import quant_layers
    from tests.conform_layers import GoodBitLinear

    class BitNetLinear(GoodBitLinear):  # a correct layer under a name without "BitLinear"
        pass
    model = torch.nn.Sequential(BitNetLinear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16, bias=False))
    assert [n for n, _ in quant_layers(model)] == ["0"]
    assert quant_layers(torch.nn.Sequential(torch.nn.Linear(32, 16))) == []


def test_torchao_bitnet_training_weights_are_found():
    """torchao's bitnet_training() leaves plain nn.Linear modules with a quantizing weight subclass."""
    import pytest
    pytest.importorskip("torchao", reason="torchao is optional")
    from torchao.prototype.quantized_training import bitnet_training
    from torchao.quantization import quantize_

    from probes.core import quant_layers
    model = torch.nn.Sequential(torch.nn.Linear(32, 64, bias=False), torch.nn.Linear(64, 16, bias=False))
    quantize_(model, bitnet_training())
    assert [n for n, _ in quant_layers(model)] == ["0", "1"]
