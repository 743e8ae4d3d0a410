"""`bitcheck conform`: the b1.58 property tests run against any BitLinear. Ours and an independent
correct layer pass every property; each hidden-bug layer fails the property that names its bug."""
import json

import pytest
from typer.testing import CliRunner

from bitcheck.cli import app
from bitcheck.model import BitLinear
from probes.conform import check_layer
from tests import conform_layers as L

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
    ok = runner.invoke(app, ["conform", "bitcheck.model:BitLinear", "--examples", "20", "--json"])
    assert ok.exit_code == 0, ok.output
    assert {r["status"] for r in json.loads(ok.stdout)["properties"]} == {"PASS"}
    bad = runner.invoke(app, ["conform", "tests.conform_layers:InvertedScale", "--examples", "20"])
    assert bad.exit_code == 1 and "scale_convention" in bad.output and "FAIL" in bad.output
    fac = runner.invoke(app, ["conform", "tests.conform_layers:GoodBitLinear", "--factory",
                              "tests.conform_layers:make_good", "--examples", "10"])
    assert fac.exit_code == 0, fac.output
    for spec, needle in [("nodots", "module.path:Name"), ("no_such_module_xyz:Layer", "cannot import"),
                         ("bitcheck.model:Nope", "has no attribute")]:
        r = runner.invoke(app, ["conform", spec])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
