"""Loss probes: init loss, causality; both ways."""
import torch

from bitcheck.bitnet.model import Attention, BitNet
from bitcheck.judge.plants import leaky_attention
from bitcheck.judge.subjects import LogitsOnly
from tests.probe_helpers import CFG, part, result, subject


def test_healthy_loss_probes_pass():
    """Fresh model at ln(vocab); no position sees its future."""
    s = subject()
    r = result(s, "loss_at_init")
    assert r.status == "PASS" and abs(r.value) < 0.15, r.message
    assert result(s, "causal_leak").status == "PASS" and result(s, "causal_leak").value == 0.0


def test_oversized_init_is_caught():
    """A tied N(0, 1) embedding: the init loss is far above ln(vocab)."""
    def fresh():
        m = BitNet(CFG)
        torch.nn.init.normal_(m.embed.weight, std=1.0)
        return LogitsOnly(m)
    s = subject(fresh_model=fresh)
    r = result(s, "loss_at_init")
    assert r.status == "FAIL" and r.value > 1.0, r.message
    assert part(s, "loss_at_init") == "loss/causality"


def test_causal_leak_is_caught():
    """Attention without the causal mask: earlier logits change when later tokens do."""
    import types
    s = subject()
    for m in s.model.modules():
        if isinstance(m, Attention):
            m.forward = types.MethodType(leaky_attention, m)
    r = result(s, "causal_leak")
    assert r.status == "FAIL" and r.value > 1e-3 and "first at position" in r.message
    assert part(s, "causal_leak") == "loss/causality"
