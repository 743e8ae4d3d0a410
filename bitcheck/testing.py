"""bitcheck's BitNet b1.58 property tests as plain functions for YOUR test suite (what `bitcheck conform` runs).

    # tests/test_my_bitlinear.py
    from bitcheck.testing import check_bitlinear
    from mymodel.layers import BitLinear

    def test_bitlinear_is_b158():
        check_bitlinear(lambda i, o: BitLinear(i, o, bias=False))   # raises AssertionError naming what fails

    def test_scale_only():
        check_bitlinear(BitLinear, properties=["scale_convention"], max_examples=500)

Hypothesis runs under your loaded profile (`settings.load_profile("ci")` in your conftest.py: its
max_examples, database and derandomize apply; `max_examples=` overrides it here); deadlines and health checks
are off because a layer's first call may compile. A failure raises AssertionError whose text is what
`bitcheck conform` prints: each failing property with its message, hypothesis' minimal counterexample and the
fix. A layer that cannot be tested as given (it cannot be built as factory(in_features, out_features), takes no
input of that rank) raises UntestableLayer, a TypeError. Properties and what each checks: docs/OWN_CODE.md
(conform) and `PROPERTY_NAMES`.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

from probes.conform import PROPERTIES, Harness, PropertyResult, Untestable, check_layer

# the properties by name, in the order they run; "input_norm" and "no_bias" are added where the layer has them
PROPERTY_NAMES = tuple(name for name, *_ in PROPERTIES) + ("input_norm",)


class UntestableLayer(TypeError):
    """The layer cannot be tested as given; the message says how to give it (a factory, a device, an input rank)."""


def describe_failures(results: Sequence[PropertyResult]) -> str:
    """The failing properties as `bitcheck conform` prints them: name, message, minimal counterexample, fix."""
    lines = []
    for r in results:
        if r.status != "PASS":
            lines.append(f"{r.status} {r.name}: {r.message}")
            if r.counterexample:
                lines.append(f"  minimal counterexample {json.dumps(r.counterexample)}")
            if r.hint:
                lines.append(f"  fix: {r.hint}")
    return "\n".join(lines)


def run_properties(factory: Callable, *, device: str = "cpu", input_rank: int | None = None,
                   max_examples: int | None = None, properties: Sequence[str] | None = None) -> list[PropertyResult]:
    """Every (or each named) property's result on layers built as factory(in_features, out_features); raises
    ValueError for an unknown property name and UntestableLayer (module docstring)."""
    unknown = sorted(set(properties or ()) - set(PROPERTY_NAMES))
    if unknown:
        raise ValueError(f"unknown properties {', '.join(unknown)}; choose from {', '.join(PROPERTY_NAMES)}")
    if input_rank not in (None, 2, 3):
        raise ValueError(f"input_rank must be 2 or 3, got {input_rank}")
    name = name_of(factory)
    try:
        return check_layer(Harness(lambda i, o: factory(i, o), device, input_rank, name), max_examples,
                           list(properties) if properties else None, profile=True)
    except Untestable as e:
        raise UntestableLayer(f"cannot test {name}: {e}") from None


def check_bitlinear(factory: Callable, *, device: str = "cpu", input_rank: int | None = None,
                    max_examples: int | None = None, properties: Sequence[str] | None = None) -> list[PropertyResult]:
    """Assert that the layers `factory(in_features, out_features)` builds are BitNet b1.58 BitLinears: ternary
    weights times one mean|W| scale, per-token int8 activations, identity STE gradients, finite on all-zero rows,
    deterministic, no bias (a norm inside the layer is tested too). Returns the results when every property holds;
    raises AssertionError listing each failure (describe_failures), UntestableLayer, or ValueError for bad arguments.
    `input_rank`: 2 calls the layer on (N, in), 3 on (1, N, in) (default: 3 where it takes it: a scale shared
    across the sequence shows only there)."""
    results = run_properties(factory, device=device, input_rank=input_rank, max_examples=max_examples,
                             properties=properties)
    failed = [r for r in results if r.status != "PASS"]
    if failed:
        raise AssertionError(f"{name_of(factory)} is not a BitNet b1.58 BitLinear ({len(failed)} of {len(results)} "
                             f"properties fail):\n" + describe_failures(results))
    return results


def name_of(factory: Callable) -> str:
    return getattr(factory, "__qualname__", getattr(factory, "__name__", "factory"))
