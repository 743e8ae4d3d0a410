"""The README's generated tables, so they cannot drift from the code: the commands (read from the CLI),
the probes (read from the `@probe` registry: catches, fails_when, measured) and the level-3 script
(examples/own_loop.py).

    .venv/bin/python -m bitcheck.docs           # rewrite the generated blocks of README.md
    .venv/bin/python -m bitcheck.docs --check   # exit 1 when they are stale (tests/test_readme.py)

A block is every line between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def command_rows() -> list[tuple[str, str]]:
    """(usage, first paragraph of its help) for every command, in the order `bitcheck --help` lists them."""
    import typer

    from bitcheck.cli import app
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
    from bitcheck.verdict import PARTS
    from probes import REGISTRY
    order = list(PARTS) + ["generation"]
    specs = sorted((s for s in REGISTRY.values() if (s.kind == "tensors") == tensors),
                   key=lambda s: order.index(s.branch) if s.branch in order else len(order))
    lines = ["| probe | branch | catches | FAIL when | measured healthy vs bug |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | {s.branch} | {_cell(s.catches)} | {_cell(s.fails_when)} | {_cell(s.measured)} |"
              for s in specs]
    return "\n".join(lines) + "\n"


def own_loop_script() -> str:
    """examples/own_loop.py without its docstring, as a python block: the README shows the script the
    level-3 test runs."""
    code = (README.parent / "examples" / "own_loop.py").read_text()
    body = code.split('"""', 2)[2].lstrip("\n")
    return "```python\n" + body + "```\n"


GENERATORS = {"commands": commands_table, "probes": lambda: probe_table(False),
              "tensor_probes": lambda: probe_table(True), "own_loop": own_loop_script}


def render(text: str) -> str:
    """README text with every generated block rewritten from the code."""
    def block(m: re.Match) -> str:
        return m.group(1) + GENERATORS[m.group(2)]() + m.group(4)
    return BLOCK.sub(block, text)


def main() -> int:
    text = README.read_text()
    fresh = render(text)
    if "--check" in sys.argv:
        return 0 if fresh == text else 1
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
