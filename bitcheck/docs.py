"""The documentation's generated blocks, so they cannot drift from the code: the commands (read from the
CLI), the probes (read from the `@probe` registry: catches, fails_when, measured) and the level-3 script
(examples/own_loop.py).

    .venv/bin/python -m bitcheck.docs           # rewrite the generated blocks of README.md and docs/*.md
    .venv/bin/python -m bitcheck.docs --check   # exit 1 when any is stale (tests/test_docs.py)

A block is every line between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; it is kept
current wherever it sits, in README.md or any docs/*.md page (today: the commands in README.md, the
probe tables in docs/PROBES.md, the level-3 script in docs/OWN_CODE.md). It does not check that every
generator has a block somewhere: tests/test_docs.py does.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def command_rows() -> list[tuple[str, str]]:
    """(usage, first paragraph of its help) for every command, in the order `bitcheck --help` lists them."""
    import typer

    from bitcheck.commands.cli import app
    rows = []

    def walk(group, prefix: str) -> None:  # typer's own click: groups have .commands, arguments a type name
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
                continue
            args = " ".join(p.name.upper() for p in cmd.params if p.param_type_name == "argument")
            usage = f"bitcheck {prefix}{name}" + (f" {args}" if args else "")
            rows.append((usage, (cmd.help or "").strip().split("\n\n")[0]))
    walk(typer.main.get_command(app), "")
    return rows


def commands_table() -> str:
    lines = ["| command | what it does |", "| --- | --- |"]
    lines += [f"| `{usage}` | {_cell(help_text)} |" for usage, help_text in command_rows()]
    return "\n".join(lines) + "\n"


def probe_table(tensors: bool) -> str:
    """The probes of kind "tensors" (no model code), or all the others, in the tree's blame order."""
    from bitcheck.judge.verdict import PARTS
    from probes import REGISTRY
    order = list(PARTS) + ["generation"]
    specs = sorted((s for s in REGISTRY.values() if (s.kind == "tensors") == tensors),
                   key=lambda s: order.index(s.branch) if s.branch in order else len(order))
    lines = ["| probe | branch | catches | FAIL when | measured healthy vs bug |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | {s.branch} | {_cell(s.catches)} | {_cell(s.fails_when)} | {_cell(s.measured)} |"
              for s in specs]
    return "\n".join(lines) + "\n"


def own_loop_script() -> str:
    """examples/own_loop.py without its docstring, as a python block: docs/OWN_CODE.md shows the script
    the level-3 test runs."""
    code = (ROOT / "examples" / "own_loop.py").read_text()
    body = code.split('"""', 2)[2].lstrip("\n")
    return "```python\n" + body + "```\n"


GENERATORS = {"commands": commands_table, "probes": lambda: probe_table(False),
              "tensor_probes": lambda: probe_table(True), "own_loop": own_loop_script}


def pages() -> list[Path]:
    """The files whose generated blocks are kept current: README.md, then every docs/*.md page by name."""
    return [README, *sorted(DOCS.glob("*.md"))]


def render(text: str) -> str:
    """A page's text with every generated block rewritten from the code (KeyError: an unknown block name)."""
    def block(m: re.Match) -> str:
        return m.group(1) + GENERATORS[m.group(2)]() + m.group(4)
    return BLOCK.sub(block, text)


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for page in pages():
        text = page.read_text()
        unknown = {m.group(2) for m in BLOCK.finditer(text)} - set(GENERATORS)
        if unknown:  # a typo in a marker would otherwise be a KeyError traceback
            print(f"{page.relative_to(ROOT)}: unknown generated block(s) {', '.join(sorted(unknown))}; "
                  f"known: {', '.join(GENERATORS)}", file=sys.stderr)
            return 1
        fresh = render(text)
        if fresh != text:
            stale.append(str(page.relative_to(ROOT)))
            if not check:
                page.write_text(fresh)
    if stale:
        print(("stale: " if check else "rewrote: ") + ", ".join(stale), file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
