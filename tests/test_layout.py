"""The package layout holds: a folder per layer, each importing only the layers below it; no import cycle
among bitcheck, probes and synthetic modules (imports inside functions count too); command modules never
import one another (nanochat: a library plus thin entry points). Read from the source with `ast`, so a
lazy import cannot hide a cycle or a layer crossing."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bitcheck", "probes", "synthetic")
# bitcheck's layers, bottom first: a module may import its own layer and the ones before it (and
# bitcheck.errors, which every layer raises). docs/ARCHITECTURE.md draws them.
LAYERS = ("bitnet", "judge", "user", "commands")
SHARED = {"bitcheck", "bitcheck.errors"}
COMMAND_EXEMPT = {"bitcheck.commands", "bitcheck.commands.cli"}  # the CLI imports each command where it runs it


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
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


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "bitcheck" and len(parts) > 1 and parts[1] in LAYERS else None


def crossings(g: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(module, dependency) pairs where a layer imports a layer above it."""
    bad = set()
    for name, deps in g.items():
        mine = layer_of(name)
        if mine is None:
            continue
        for dep in deps:
            theirs = layer_of(dep)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                bad.add((name, dep))
            elif theirs is None and dep.startswith("bitcheck.") and dep not in SHARED:
                bad.add((name, dep))  # a layer reaching a top-level module (docs, the session shim)
    return bad


def test_the_checkers_find_cycles_and_crossings():
    """The checkers themselves: a planted a -> b -> a is a cycle, a tree is not; judge -> user crosses."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert crossings({"bitcheck.judge.verdict": {"bitcheck.user.factory"}}) == {
        ("bitcheck.judge.verdict", "bitcheck.user.factory")}
    assert not crossings({"bitcheck.user.factory": {"bitcheck.judge.verdict", "bitcheck.errors"}})


def test_folders_are_the_layers():
    """Every bitcheck module lives in a layer's folder, except the shared errors, the package's entry
    (`python -m bitcheck`), the docs generator, `bitcheck.session` (where users import Session from) and
    `bitcheck.testing` (where their test suites import check_bitlinear from; it imports only probes) and
    `bitcheck.watch` (what their training loops import; an entry point like the CLI)."""
    top = {name for name in modules() if name.startswith("bitcheck") and layer_of(name) is None
           and name not in {f"bitcheck.{layer}" for layer in LAYERS}}
    assert top == {"bitcheck", "bitcheck.__main__", "bitcheck.errors", "bitcheck.docs", "bitcheck.session",
                   "bitcheck.testing", "bitcheck.watch"}, top
    assert graph()["bitcheck.testing"] <= {"probes", "probes.conform"}, graph()["bitcheck.testing"]


def test_layers_import_only_downwards():
    """bitnet (the reference) never imports the judge, the judge never the user's-code layer or commands,
    the user layer never commands."""
    assert not crossings(graph()), sorted(crossings(graph()))


def test_probes_and_synthetic_are_independent():
    """probes/ import nothing from bitcheck (they judge any model); synthetic/ imports neither."""
    g = graph()
    for name, deps in g.items():
        pkg = name.split(".")[0]
        if pkg == "probes":
            assert not {d for d in deps if d.split(".")[0] == "bitcheck"}, (name, deps)
        if pkg == "synthetic":
            assert not {d for d in deps if d.split(".")[0] in ("bitcheck", "probes")}, (name, deps)


def test_no_import_cycle():
    """No module reaches itself through its imports (the package __init__s are imports too)."""
    g = graph()
    # a package __init__ importing its own submodules is how probes registers them, not a cycle
    for pkg in list(g):
        if (ROOT / pkg.replace(".", "/") / "__init__.py").is_file():
            g[pkg] = {m for m in g[pkg] if not m.startswith(pkg + ".")}
    assert len(g) > 30, sorted(g)
    assert find_cycle(g) is None, find_cycle(g)


def test_commands_never_import_commands():
    """An entry point imports the library only (the CLI imports each command where it runs it)."""
    g = graph()
    commands = {name for name in g if layer_of(name) == "commands"}
    assert {"bitcheck.commands.quick", "bitcheck.commands.diagnose", "bitcheck.commands.curve"} <= commands
    bad = {(name, dep) for name in commands - COMMAND_EXEMPT for dep in g[name] & commands if dep != "bitcheck.commands"}
    assert not bad, sorted(bad)
    assert g["bitcheck.__main__"] <= {"bitcheck.commands.cli", "bitcheck.commands"}
