"""Quantization probes: PASS on a healthy model, FAIL with each quantization bug planted."""
import copy

import torch

from bitcheck.diagnostics import LogitsOnly
from bitcheck.model import BitLinear
from bitcheck.selftest import _inverted_scale, _no_quant, _patch_bitlinear
from probe_helpers import part, result, subject
from probes.quantization import FlipWatch, effective_weight, ternary_stats


def _model(s):
    return s.model.inner


def test_healthy_passes():
    """A healthy BitNet: ternary, not collapsed, equal to the reference."""
    s = subject()
    for name in ("ternary_distribution", "quantization_applied"):
        r = result(s, name)
        assert r.status == "PASS", (name, r.message)


def test_effective_weight_reads_ternary_codes():
    """effective_weight recovers codes * mean|W| of a BitLinear from its outputs alone."""
    layer = BitLinear(6, 4)
    w = effective_weight(layer)
    st = ternary_stats(w)
    assert st["levels"] == 1 and abs(st["scale"] - layer.weight.abs().mean().item()) < 1e-6


def test_full_precision_is_caught():
    """Quantization skipped: layers are not ternary and differ from the reference -> quantization."""
    s = subject()
    s.model = LogitsOnly(_patch_bitlinear(_model(s), _no_quant))
    assert result(s, "ternary_distribution").status == "FAIL"
    assert result(s, "quantization_applied").status == "FAIL"
    assert part(s, "quantization_applied") == "quantization"


def test_inverted_scale_is_caught():
    """Codes / mean|W| instead of * mean|W|: still ternary, but the output is off by orders of magnitude."""
    s = subject()
    s.model = LogitsOnly(_patch_bitlinear(_model(s), _inverted_scale))
    r = result(s, "quantization_applied")
    assert r.status == "FAIL" and r.value > 1.0 and "inverted" in r.message
    assert result(s, "ternary_distribution").status == "PASS"


def test_missing_activation_quant_is_caught():
    """Weights quantized but activations left in float: a small but clear gap to the reference."""
    import torch.nn.functional as F
    from bitcheck.model import weight_quant

    def no_act(self, x):
        return F.linear(x, self.weight + (weight_quant(self.weight) - self.weight).detach())
    s = subject()
    s.model = LogitsOnly(_patch_bitlinear(_model(s), no_act))
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
    s.history["flip_rates"] = watch.records
    r = result(s, "ternary_distribution")
    assert r.status == "WARN" and "flip rate" in r.message
