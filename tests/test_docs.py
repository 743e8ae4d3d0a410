"""The documentation's generated blocks (README.md and docs/*.md: the command table, the probe tables, the
level-3 script) come from the code (bitcheck/docs.py) and are current; the README stays short."""
from bitcheck import docs
from bitcheck.commands.cli import app  # noqa: F401 - registers every command
from probes import REGISTRY

README_MAX_LINES = 350  # a newcomer's page: the rest lives in docs/


def test_generated_blocks_are_current():
    """Stale blocks fail here, on any page: run `.venv/bin/python -m bitcheck.docs` to regenerate them."""
    found = set()
    for page in docs.pages():
        text = page.read_text()
        names = {m.group(2) for m in docs.BLOCK.finditer(text)}
        assert names <= set(docs.GENERATORS), f"{page.name}: unknown generated blocks {names - set(docs.GENERATORS)}"
        assert docs.render(text) == text, f"{page.name} is stale: run `.venv/bin/python -m bitcheck.docs`"
        found |= names
    assert found == set(docs.GENERATORS), f"generated blocks on no page: {set(docs.GENERATORS) - found}"


def test_pages_cover_readme_and_docs():
    """The generator walks README.md and every docs/*.md page, so a block moved between them stays checked."""
    names = [p.relative_to(docs.ROOT).as_posix() for p in docs.pages()]
    assert names[0] == "README.md"
    assert {"docs/PROBES.md", "docs/OWN_CODE.md"} <= set(names), names


def test_tables_cover_the_code():
    """Every registered probe has a row with its documentation, every command a row."""
    probes = docs.probe_table(False) + docs.probe_table(True)
    for name, spec in REGISTRY.items():
        assert f"`{name}`" in probes and spec.catches and spec.fails_when and spec.measured, name
    usages = [u for u, _ in docs.command_rows()]
    assert {"bitcheck quick-arith", "bitcheck quick-json", "bitcheck quick-python", "bitcheck diagnose CHECKPOINT",
            "bitcheck tokenizer train"} <= set(usages)


def test_readme_is_short():
    """README.md stays a newcomer's page of at most 350 lines; details go to docs/ pages."""
    lines = docs.README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
