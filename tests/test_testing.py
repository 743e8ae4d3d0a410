"""`bitcheck.testing.check_bitlinear` as a user's test suite calls it: passes on bitcheck's BitLinear and on a
correct third-party layer (transformers' AutoBitLinear where installed), fails with the property named and
`bitcheck conform`'s message on a planted bug, and runs under the user's hypothesis profile."""
import pytest
from hypothesis import settings

from bitcheck.bitnet.model import BitLinear
from bitcheck.testing import PROPERTY_NAMES, UntestableLayer, check_bitlinear, run_properties
from tests import conform_layers as cl


def test_bitchecks_own_bitlinear_passes():
    results = check_bitlinear(lambda i, o: BitLinear(i, o), max_examples=25)
    assert {r.name for r in results} >= set(PROPERTY_NAMES) - {"input_norm"}


def test_third_party_layer_passes():
    transformers = pytest.importorskip("transformers", reason="pip install bitcheck[hf]")
    from transformers.integrations.bitnet import AutoBitLinear
    assert transformers and check_bitlinear(lambda i, o: AutoBitLinear(i, o, bias=False, online_quant=True),
                                            max_examples=25)


@pytest.mark.parametrize("layer, prop", [(cl.InvertedScale, "scale_convention"), (cl.NoSTE, "ste_gradients"),
                                         (cl.PerTensorActQuant, "int8_activations"), (cl.NoEps, "zero_rows_finite")])
def test_planted_bug_fails_naming_its_property(layer, prop):
    with pytest.raises(AssertionError) as info:
        check_bitlinear(layer, max_examples=25)
    text = str(info.value)
    assert f"FAIL {prop}: " in text and "minimal counterexample" in text and "fix: " in text, text
    conform = {r.name: r for r in run_properties(layer, max_examples=25)}  # the same result conform reports
    assert conform[prop].message in text


def test_the_users_profile_decides_the_examples():
    settings.register_profile("bitcheck-test-few", max_examples=7)
    previous = settings.get_current_profile_name()
    settings.load_profile("bitcheck-test-few")
    try:
        results = check_bitlinear(lambda i, o: BitLinear(i, o), properties=["ternary_weights"])
        assert results[0].message == "held on 7 examples"
        assert check_bitlinear(lambda i, o: BitLinear(i, o), properties=["ternary_weights"],
                               max_examples=3)[0].message == "held on 3 examples"
    finally:
        settings.load_profile(previous)


def test_user_mistakes_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown properties nope"):
        check_bitlinear(lambda i, o: BitLinear(i, o), properties=["nope"])
    with pytest.raises(UntestableLayer, match="could not build the layer"):
        check_bitlinear(lambda i: BitLinear(i, i))
