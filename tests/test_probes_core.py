"""The probe framework: any model shape, ERROR instead of a crash, SKIP with a reason, thresholds."""
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from probes import (
    REGISTRY,
    Measurement,
    ProbeResult,
    Subject,
    Threshold,
    TokenizerAdapter,
    logits_of,
    quant_layers,
    run_probes,
)
from probes.core import ProbeSpec, run_probe
from tests.probe_helpers import subject


class TupleModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, idx):
        return (self.inner(idx), None)


class Out:
    def __init__(self, logits):
        self.logits = logits


def test_logits_adapters():
    """Tensor, tuple and .logits outputs all give the same (B, T, V) logits."""
    s = subject()
    idx = torch.randint(0, 21, (2, 8))
    a = logits_of(s.model, idx)
    assert torch.equal(logits_of(TupleModel(s.model), idx), a)
    wrapped = torch.nn.Module()
    wrapped.forward = lambda i: Out(s.model(i))
    assert torch.equal(logits_of(wrapped, idx), a)


def test_quant_layers_by_class_name_and_regex():
    """BitLinear-named classes are found automatically; other layers by a user regex."""
    class MyBitLinearV2(torch.nn.Linear):
        pass
    net = torch.nn.Sequential(MyBitLinearV2(4, 4), torch.nn.Linear(4, 4))
    assert [n for n, _ in quant_layers(net)] == ["0"]
    assert [n for n, _ in quant_layers(net, pattern=r"^1$")] == ["0", "1"]


def test_crashing_probe_is_error_and_missing_need_is_skip():
    """A probe that raises becomes ERROR with the exception; a missing input is SKIP with the reason."""
    def boom(s):
        raise RuntimeError("kaboom")
    r = run_probe(ProbeSpec("boom", boom, "numerics", (), "", "static"), subject())
    assert r.status == "ERROR" and "kaboom" in r.message
    bare = Subject(model=subject().model)
    results = {r.name: r for r in run_probes(bare)}
    assert results["repetition"].status == "SKIP" and "generate" in results["repetition"].message
    assert results["quantization_applied"].status == "PASS"  # static probes need only the model


def test_threshold_directions():
    """Higher-is-worse and lower-is-worse thresholds, with a WARN band; NaN is FAIL."""
    hi = Threshold("x", warn=1, fail=2)
    assert [hi.judge(v) for v in (0.5, 1.5, 3)] == ["PASS", "WARN", "FAIL"]
    lo = Threshold("y", warn=0.5, fail=0.1, higher_is_worse=False)
    assert [lo.judge(v) for v in (0.9, 0.3, 0.0)] == ["PASS", "WARN", "FAIL"]
    assert hi.judge(float("nan")) == "FAIL"


def test_tokenizer_adapter_over_tokenizers():
    """TokenizerAdapter exposes a `tokenizers.Tokenizer` as encode -> list[int] / decode."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["hello world"] * 10, trainers.BpeTrainer(vocab_size=280,
                                                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    a = TokenizerAdapter(tok)
    ids = a.encode("hello world")
    assert isinstance(ids, list) and a.decode(ids) == "hello world" and a.vocab_size == tok.get_vocab_size()


def test_every_probe_documents_itself():
    """Every registered probe has a docstring and a known branch (docs/PROBES.md's tables are built from them)."""
    assert len(REGISTRY) >= 13
    for spec in REGISTRY.values():
        assert spec.doc and spec.branch


def test_probes_import_nothing_from_bitcheck():
    """probes/ never imports bitcheck; synthetic/ imports neither (the dependency direction)."""
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[1]
    for pkg, banned in (("probes", ("bitcheck",)), ("synthetic", ("bitcheck", "probes"))):
        for f in (root / pkg).glob("*.py"):
            for b in banned:
                assert not re.search(rf"^\s*(from|import)\s+{b}\b", f.read_text(), re.M), (f, b)


def test_explicit_skip_carries_its_reason():
    """A subject can declare a probe inapplicable; the result is SKIP with that reason."""
    from dataclasses import replace
    s = replace(subject(), skip={"causal_leak": "bidirectional encoder by design"})
    r = run_probes(s, names=["causal_leak"])[0]
    assert r.status == "SKIP" and r.message == "bidirectional encoder by design"


def test_runner_names_and_judges_a_measurement():
    """A probe returns a Measurement; the runner adds the spec's name and branch, takes the worst threshold
    (each on values[name], else value) and drops the hint on PASS; status= and branch= override."""
    hi, lo = Threshold("gap", warn=1, fail=2), Threshold("ratio", warn=0.5, fail=0.1, higher_is_worse=False)

    def run(m):
        return run_probe(ProbeSpec("demo", lambda s: m, "numerics", (), "", "static"), subject()).to_dict()
    ok = run(Measurement(0.5, [hi], "fine", "fix it", details={"t": 1}))
    assert ok == {"name": "demo", "status": "PASS", "value": 0.5, "message": "fine", "hint": "",
                  "branch": "numerics", "thresholds": [hi.to_dict()], "details": {"t": 1}}
    values = {"gap": 0.5, "ratio": 0.05}
    bad = run(Measurement(values, [hi, lo], "low ratio", "fix it", values=values))
    assert (bad["status"], bad["hint"], bad["details"]) == ("FAIL", "fix it", {})
    assert run(Measurement(1.5, [hi], "", "fix it", branch="quantization"))["branch"] == "quantization"
    skip = run(Measurement(message="nothing to read", status="SKIP"))
    assert (skip["status"], skip["value"], skip["thresholds"], skip["branch"]) == ("SKIP", None, [], "numerics")
    assert run(Measurement(5.0, [hi], "", "still shown", status="WARN"))["hint"] == "still shown"


def test_a_probe_called_directly_gives_its_result():
    """The function @probe returns gives the same ProbeResult the runner reports."""
    from probes.quantization import ternary_distribution
    s = subject()
    direct = ternary_distribution(s)
    assert isinstance(direct, ProbeResult)
    assert direct.to_dict() == run_probes(s, names=["ternary_distribution"])[0].to_dict()
    assert (direct.name, direct.branch) == ("ternary_distribution", "quantization")


def test_a_probe_returning_something_else_is_an_error():
    """A probe that returns neither a Measurement nor a result is ERROR naming what it returned."""
    r = run_probe(ProbeSpec("odd", lambda s: 0.5, "numerics", (), "", "static"), subject())
    assert r.status == "ERROR" and "returned float" in r.message
