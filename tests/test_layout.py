"""The package layout holds: no import cycle among bitcheck, probes and synthetic modules (imports inside
functions count too), and command modules never import one another (nanochat: a library plus thin
entry points). Read from the source with `ast`, so a lazy import cannot hide a cycle."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bitcheck", "probes", "synthetic")
# the entry points: each builds its evidence and calls the library; none imports another
COMMANDS = {"bitcheck.cli", "bitcheck.quick", "bitcheck.tinystories", "bitcheck.diagnose", "bitcheck.export",
            "bitcheck.curve", "bitcheck.selftest", "bitcheck.__main__"}


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).glob("*.py"):
            name = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it (`from pkg import mod` counts as pkg.mod)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = 2
        return None
    for node in sorted(g):
        if state.get(node) is None:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_checker_finds_cycles():
    """The cycle finder itself: a planted a -> b -> a is found, a tree is not."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    """No module reaches itself through its imports (the package __init__s are imports too)."""
    g = graph()
    # a package __init__ importing its own submodules is how probes registers them, not a cycle
    for pkg in PACKAGES:
        g[pkg] = {m for m in g[pkg] if not m.startswith(pkg + ".")}
    assert len(g) > 30, sorted(g)
    assert find_cycle(g) is None, find_cycle(g)


def test_commands_never_import_commands():
    """An entry point imports the library only (the CLI imports each command where it runs it)."""
    g = graph()
    bad = {(name, dep) for name in COMMANDS - {"bitcheck.cli", "bitcheck.__main__"} for dep in g[name] & COMMANDS}
    assert not bad, sorted(bad)
    assert g["bitcheck.__main__"] <= {"bitcheck.cli"}
