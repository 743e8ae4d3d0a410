"""`bitcheck conform`: the b1.58 property tests run against any BitLinear. Ours and an independent
correct layer pass every property; each hidden-bug layer fails the property that names its bug."""
import json

import pytest
import torch
from typer.testing import CliRunner

from bitcheck.bitnet.model import BitLinear
from bitcheck.commands.cli import app
from probes.conform import PROPERTIES, Harness, Untestable, check_layer
from tests import conform_layers as L
from tests.layer_designs import DESIGNS

EXAMPLES = 40


@pytest.mark.parametrize("layer", [BitLinear, L.GoodBitLinear], ids=["ours", "independent"])
def test_correct_layers_pass_every_property(layer):
    results = check_layer(lambda i, o: layer(i, o), max_examples=EXAMPLES)
    assert [r.status for r in results] == ["PASS"] * 6, [(r.name, r.message) for r in results]


@pytest.mark.parametrize("layer, prop", [
    (L.NoSTE, "ste_gradients"),
    (L.InvertedScale, "scale_convention"),
    (L.NoActQuant, "int8_activations"),
    (L.PerTensorActQuant, "int8_activations"),
    (L.NoEps, "zero_rows_finite"),
    (L.FullPrecision, "ternary_weights"),
    (L.Noisy, "deterministic"),
])
def test_each_bug_fails_its_property(layer, prop):
    results = {r.name: r for r in check_layer(lambda i, o: layer(i, o), max_examples=EXAMPLES)}
    failed = results[prop]
    assert failed.status == "FAIL", (prop, failed)
    assert failed.hint and failed.counterexample and "weight_shape" in failed.counterexample


def test_counterexample_is_shrunk():
    """Hypothesis shrinks the inverted scale's failure to a tiny layer (it fails on any shape)."""
    r = {r.name: r for r in check_layer(lambda i, o: L.InvertedScale(i, o), max_examples=EXAMPLES)}["scale_convention"]
    assert r.counterexample["weight_shape"] == [1, 1], r.counterexample


def test_cli_exit_codes_and_json():
    runner = CliRunner()
    ok = runner.invoke(app, ["conform", "bitcheck.bitnet.model:BitLinear", "--examples", "20", "--json"])
    assert ok.exit_code == 0, ok.output
    assert {r["status"] for r in json.loads(ok.stdout)["properties"]} == {"PASS"}
    bad = runner.invoke(app, ["conform", "tests.conform_layers:InvertedScale", "--examples", "20"])
    assert bad.exit_code == 1 and "scale_convention" in bad.output and "FAIL" in bad.output
    fac = runner.invoke(app, ["conform", "tests.conform_layers:GoodBitLinear", "--factory",
                              "tests.conform_layers:make_good", "--examples", "10"])
    assert fac.exit_code == 0, fac.output
    for spec, needle in [("nodots", "module.path:Name"), ("no_such_module_xyz:Layer", "cannot import"),
                         ("bitcheck.bitnet.model:Nope", "has no attribute")]:
        r = runner.invoke(app, ["conform", spec])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output


# ---- #15: name the deviation, not a symptom --------------------------------------------------------

def _failed(layer, **kw) -> dict:
    return {r.name: r.message for r in check_layer(Harness(lambda i, o: layer(i, o), **kw), max_examples=EXAMPLES)
            if r.status != "PASS"}


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_a_norm_inside_the_layer_is_a_design(design):
    """BitLinear with its norm inside, as users write it (tests/layer_designs.py: training tips, a gained
    RMSNorm child with a custom STE Function and a bias of zeros, SubLN's LayerNorm with a parametrized
    weight): every property holds on the norm's output and the norm passes on its own. The same layer
    with one activation scale for the whole sequence fails int8_activations alone: the default (1, N, in)
    input has the token axis that bug needs."""
    results = check_layer(lambda i, o: DESIGNS[design](i, o), max_examples=EXAMPLES)
    assert {r.name: r.status for r in results} == {"input_norm": "PASS", **{n: "PASS" for n, *_ in PROPERTIES}}, \
        [(r.name, r.message) for r in results if r.status != "PASS"]
    bad = _failed(lambda i, o: DESIGNS[design](i, o, per_sequence=True))
    assert set(bad) == {"int8_activations"}, bad


def test_a_norm_that_drops_its_gain_fails_input_norm():
    """A gained RMSNorm child whose forward forgets the gain: input_norm FAILs naming it."""
    from tests.layer_designs import RMSNorm

    class NoGain(RMSNorm):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def make(i, o):
        layer = DESIGNS["gained"](i, o)
        layer.norm = NoGain(i)
        return layer
    failed = _failed(make)
    assert "input_norm" in failed and "gain is not applied" in failed["input_norm"], failed


def test_cli_out_writes_the_report(tmp_path):
    r = CliRunner().invoke(app, ["conform", "tests.layer_designs:TipsBitLinear", "--examples", "10", "--json",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    assert printed["found"]["input_norm"] == "functional RMSNorm"
    folder = next(tmp_path.glob("conform-*"))
    assert json.loads((folder / "report.json").read_text()) == printed
    assert "properties tested on its output" in (folder / "report.md").read_text()


@pytest.mark.parametrize("layer, named", [
    (L.WithBias, {"no_bias": "adds a bias"}),
    (L.BinaryCentred, {"ternary_weights": "binary (b1), not ternary (b1.58)", "scale_convention": "binary (b1)"}),
    (L.PerTensorActQuant, {"int8_activations": "shared across tokens (one per tensor)"}),
    (L.PerTensorAct128, {"scale_convention": "128 levels", "int8_activations": "one activation scale for the whole "
                         "tensor, with 128 levels", "ste_gradients": "consequence of the activation quantizer"}),
    (L.GradScaledByMeanW, {"ste_gradients": "the STE is not the identity"}),
    (L.HalfUpRounding, {"scale_convention": "round half up"}),
    (L.SmallRowsUnclamped, {"int8_activations": "only rows with max|x| < 0.00127 differ"}),
    (L.FullPrecision, {"ternary_weights": "applies its weight as stored", "scale_convention": "applies its weight as stored",
                       "int8_activations": "activation quantizer is missing"}),
    (L.NoActQuant, {"int8_activations": "activation quantizer is missing"}),
    (L.InvertedScale, {"scale_convention": "1/mean|W|^2: the scale is divided"}),
    (L.PerRowScale, {"ternary_weights": "one scale per output row", "scale_convention": "one scale per output row"}),
    (L.WholeProductSTE, {"ste_gradients": "the input gradient uses the latent weight"}),
    (L.Noisy, {"deterministic": "two calls differ", **{p: "not deterministic" for p in (
        "ternary_weights", "scale_convention", "int8_activations", "ste_gradients")}}),
])
def test_each_deviation_is_named_for_what_it_is(layer, named):
    """Exactly the properties named fail, each naming the cause (the pieces are measured apart first), and
    the weight-path bugs do not fail int8_activations or ste_gradients."""
    failed = _failed(layer)
    assert set(failed) == set(named), failed
    for prop, words in named.items():
        assert words in failed[prop], (prop, failed[prop])


@pytest.mark.parametrize("layer, kw, words", [
    (L.PackedOnly, {}, "inference-only layer"),
    (L.Only3D, {"input_rank": 2}, "rerun with --input-rank 3"),
    (L.NeedsConfig, {}, "could not build the layer"),
])
def test_untestable_layers_are_one_clear_error(layer, kw, words):
    with pytest.raises(Untestable, match=words.replace("-", "\\-")):
        check_layer(Harness(lambda i, o: layer(i, o), **kw), max_examples=EXAMPLES)


def test_the_testable_forms_pass():
    """3-D only (found by itself, or with --input-rank 3), a config constructor through a factory, dropout
    (tested in eval mode), a layer kept in bfloat16 (tested in float32: the quantization logic, not bf16
    rounding)."""
    assert not _failed(L.Only3D) and not _failed(L.Only3D, input_rank=3)
    assert not _failed(L.InLayerNorm)  # a unit RMSNorm inside, before the quantizer: a design
    assert not _failed(L.WithDropout)
    assert not _failed(L.make_bf16)
    assert not {r.name for r in check_layer(L.make_needs_config, max_examples=EXAMPLES) if r.status != "PASS"}


def test_counterexample_reproduces():
    """The shrunk example carries the seed, the layer's output and the expected value."""
    r = {r.name: r for r in check_layer(lambda i, o: L.InvertedScale(i, o), max_examples=EXAMPLES)}["scale_convention"]
    assert {"seed", "output", "expected"} <= set(r.counterexample) and r.counterexample["output"] != r.counterexample["expected"]


def test_cli_untestable_factory_alone_and_input_rank():
    runner = CliRunner()
    r = runner.invoke(app, ["conform", "tests.conform_layers:PackedOnly"])
    assert r.exit_code == 2 and "inference-only" in r.output and "Traceback" not in r.output, r.output
    r = runner.invoke(app, ["conform", "tests.conform_layers:Only3D", "--input-rank", "2", "--examples", "10"])
    assert r.exit_code == 2 and "--input-rank 3" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["conform", "tests.conform_layers:Only3D", "--examples", "10", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["found"]["input"] == "(1, N, in)", r.output
    r = runner.invoke(app, ["conform", "tests.conform_layers:Only3D", "--input-rank", "3", "--examples", "10"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["conform", "--factory", "tests.conform_layers:make_needs_config", "--examples", "10"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["conform"])
    assert r.exit_code == 2 and "--factory" in r.output


transformers = pytest.importorskip("transformers", reason="the Hugging Face layers need `pip install bitcheck[hf]`")


@pytest.mark.parametrize("kw, named", [
    ({"bias": False, "online_quant": True}, {}),
    ({"bias": True, "online_quant": True}, {"no_bias": "adds a bias"}),
    ({"bias": False, "online_quant": True, "use_rms_norm": True}, {}),
    ({"bias": False, "online_quant": False}, {"ternary_weights": "offline mode", "scale_convention": "as stored"}),
], ids=["online", "bias", "use_rms_norm", "offline"])
def test_transformers_autobitlinear(kw, named):
    """The real layer people install: online QAT without bias passes every property, with its SubLN
    (use_rms_norm: the properties hold on the norm's output) too; each option that departs from b1.58
    fails naming itself."""
    from transformers.integrations.bitnet import AutoBitLinear
    failed = _failed(lambda i, o: AutoBitLinear(i, o, **kw))
    assert set(failed) == set(named), failed
    for prop, words in named.items():
        assert words in failed[prop], (prop, failed[prop])


def test_transformers_packed_bitlinear_is_inference_only():
    from transformers.integrations.bitnet import BitLinear as HFBitLinear
    with pytest.raises(Untestable, match="inference-only"):
        check_layer(lambda i, o: HFBitLinear(i, o, bias=False), max_examples=EXAMPLES)
