"""The Python-subset task: generator, indentation check, safe runner, scorer. The contract every task
keeps (seeding, tokenizer round trip, rows, criteria) is tests/test_tasks.py."""
import ast
import random

import pytest

from synthetic.python_subset import MAX_CHARS, PythonTask, generate_program, indentation_ok, run_program


def _samples(task: PythonTask, seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    prompt = task.held_out()[0].prompt
    out = []
    for _ in range(n):
        text = task.example_text(rng)[1]
        assert text.startswith(prompt) and text.endswith(task.stop_text)
        out.append(text[len(prompt):].split(task.stop_text)[0])
    return out


def test_generator_is_seeded_and_always_valid():
    assert generate_program(random.Random(5)) == generate_program(random.Random(5))
    rng = random.Random(0)
    for _ in range(1000):
        src = generate_program(rng)
        assert len(src) <= MAX_CHARS and "\n\n" not in src
        ast.parse(src)
        assert indentation_ok(src)
        ok, why = run_program(src)
        assert ok, (why, src)


def test_scorer_is_one_on_generator_output():
    task = PythonTask()
    g = task.score(task.held_out(), _samples(task, 0, len(task.held_out())))["per_group"]
    assert g["parse"] == g["indent"] == g["runs"] == 1.0
    assert g["distinct"] > 0.9


def test_scorer_is_low_on_broken_text():
    task = PythonTask()
    ex = task.held_out()
    good = _samples(task, 1, len(ex))
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(s, len(s))) for s in good]
    truncated = [s[: len(s) // 3] for s in good]
    tabs = [s.replace("    ", "\t") for s in good]
    # a program cut at a line end can still parse; tab-indented code parses and runs
    for name, broken, low in [("shuffled", shuffled, ("parse", "indent", "runs")), ("truncated", truncated, ("runs",)),
                              ("tabs", tabs, ("indent",))]:
        g = task.score(ex, broken)["per_group"]
        assert all(g[k] < 0.3 for k in low), (name, g)
        assert not all(g[k] >= v for k, v in task.pass_criteria().items()), name


@pytest.mark.parametrize("src, why", [
    ("def f(x):\n    while 1:\n        x = x + 1\n    return x\n", "limit"),
    ("def f(x):\n    x = 3\n    while 1:\n        x = x * x\n    return x\n", "integer"),
    ("def f(x):\n    return f(x)\nprint(f(1))\n", "recursion"),
    ("import os\ndef f(x):\n    return x\n", "outside the subset"),
    ("def f(x):\n    return x.__class__\n", "outside the subset"),
    ("def f(x):\n    return open('p')\n", "outside the subset"),
    ("def f(x):\n    return __import__(1)\n", "outside the subset"),
    ("def f(x):\n    return 9 ** 9 ** 9\n", "outside the subset"),
    ("def f(x):\n    return x // 0\n", "ZeroDivisionError"),
    ("def f(x):\n    return y\n", "NameError"),
    ("x = 1\n", "no function"),
])
def test_runner_refuses_or_stops_what_it_must(src, why):
    ok, reason = run_program(src)
    assert not ok and why in reason, reason


def test_runner_calls_functions_the_program_does_not():
    assert run_program("def f(x, y):\n    return x + y\n") == (True, "")
    assert not run_program("def f(x):\n    return x // (x - 1)\n")[0]  # called with 1: divides by zero


@pytest.mark.parametrize("src, ok", [
    ("def f(x):\n    return x\n", True),
    ("def f(x):\n  return x\n", False),
    ("def f(x):\n        return x\n", False),
    ("def f(x):\nreturn x\n", False),
    ("x = 1\n    y = 2\n", False),
    ("if x:\n    y = 1\nelse:\n    y = 2\n", True),
    ("def f(x):\n", False),
    ("", False),
])
def test_indentation(src, ok):
    assert indentation_ok(src) is ok
