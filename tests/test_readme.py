"""The README's command and probe tables are generated from the code (bitcheck/docs.py) and current."""
from bitcheck import docs
from bitcheck.cli import app  # noqa: F401 - registers every command
from probes import REGISTRY


def test_readme_tables_are_current():
    """Stale tables fail here: run `.venv/bin/python -m bitcheck.docs` to regenerate them."""
    text = docs.README.read_text()
    assert {m.group(2) for m in docs.BLOCK.finditer(text)} == set(docs.GENERATORS)
    assert docs.render(text) == text, "README tables are stale: run `.venv/bin/python -m bitcheck.docs`"


def test_tables_cover_the_code():
    """Every registered probe has a row with its documentation, every command a row."""
    probes = docs.probe_table(False) + docs.probe_table(True)
    for name, spec in REGISTRY.items():
        assert f"`{name}`" in probes and spec.catches and spec.fails_when and spec.measured, name
    usages = [u for u, _ in docs.command_rows()]
    assert {"bitcheck quick-arith", "bitcheck quick-json", "bitcheck quick-python", "bitcheck diagnose CHECKPOINT",
            "bitcheck tokenizer train"} <= set(usages)
