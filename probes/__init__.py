"""Independent checks of a BitNet and its training setup.

Imports nothing from `bitcheck`: the code under test must not supply its own yardstick. Every module
in this package is imported here, so a probe registers itself with `@probe` and adding one touches
two files: its module and its test.

    from probes import Subject, run_probes
    results = run_probes(Subject(model=m, tokenizer=tok, batches=[(x, y)]))
"""
import importlib
import pkgutil

from probes.core import (  # noqa: F401
    BRANCHES,
    ERROR,
    FAIL,
    PASS,
    REGISTRY,
    SKIP,
    WARN,
    History,
    Measurement,
    ProbeResult,
    Subject,
    Threshold,
    TokenizerAdapter,
    logits_of,
    quant_layers,
    run_probes,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("core", "reference", "watch", "conform"):  # conform registers no probe
        importlib.import_module(f"probes.{_info.name}")
