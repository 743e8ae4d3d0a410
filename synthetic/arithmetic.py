"""Arithmetic: `a op b = r` lines, the seed design's fastest sanity task.

    task = ArithmeticTask(ops="+-")
    task.example_text(random.Random(0))  # ("25 + 17 =", " 42\n")

a is drawn from [0, 100], b from [1, 100] (b >= 1 keeps // defined), ops from + - * //. Results
are exact integers (// floors, - may be negative). A fixed held-out set (at least 500 problems,
split evenly over the ops) is excluded from training. The score is exact-match accuracy of the
completions, per operator. Not covered: multi-step expressions, carries analysed by digit.
"""
from __future__ import annotations

import operator
import random

from synthetic.base import CharTokenizer, Example, Task

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv}
# a user writes --ops "+-*/"; "/" and "x" are accepted as spellings of // and *
OP_ALIASES = {"+": "+", "-": "-", "*": "*", "x": "*", "/": "//"}
ALPHABET = "0123456789+-*/= \n"
A_RANGE = (0, 100)
B_RANGE = (1, 100)
PASS_ACCURACY = 0.90
HELD_OUT_SEED = "arithmetic-held-out"  # fixed, so every run of the same ops is scored on the same set


def parse_ops(spec: str) -> tuple[str, ...]:
    """'+-*/' -> ('+', '-', '*', '//'); raises ValueError naming the bad character."""
    spec = spec.replace("//", "/").replace(" ", "").replace(",", "")
    ops: list[str] = []
    for ch in spec:
        if ch not in OP_ALIASES:
            raise ValueError(f"unknown operator {ch!r} in ops {spec!r}; use some of + - * /")
        if OP_ALIASES[ch] not in ops:
            ops.append(OP_ALIASES[ch])
    if not ops:
        raise ValueError("ops is empty; use some of + - * /")
    return tuple(ops)


def format_problem(a: int, op: str, b: int) -> tuple[str, str]:
    return f"{a} {op} {b} =", f" {OPS[op](a, b)}\n"


class ArithmeticTask(Task):
    name = "arithmetic"
    help = ("Train a tiny BitNet to do `25 + 17 = 42`, evaluate on held-out problems, give a verdict.\n\n"
            "Stops as soon as + and - reach 90% exact-match on 500 held-out problems (PASS, exit 0).")
    cli_options = {"ops": ("+-", "Operators to train on, from + - * / (/ is floor division).")}

    def __init__(self, ops: str | tuple[str, ...] = ("+", "-"), n_held_out: int = 500):
        self.ops = parse_ops(ops) if isinstance(ops, str) else tuple(ops)
        self.tokenizer = CharTokenizer(ALPHABET)
        per_op = -(-n_held_out // len(self.ops))  # ceil: at least n_held_out in all
        rng = random.Random(HELD_OUT_SEED)
        self._held: list[tuple[int, str, int]] = []
        seen: set[tuple[int, str, int]] = set()
        for op in self.ops:
            chosen = 0
            while chosen < per_op:
                item = (rng.randint(*A_RANGE), op, rng.randint(*B_RANGE))
                if item not in seen:
                    seen.add(item)
                    self._held.append(item)
                    chosen += 1
        self._held_set = seen

    def option_value(self, name: str) -> str:
        if name == "ops":  # as a user writes it: "+-*/"
            return "".join("/" if o == "//" else o for o in self.ops)
        return super().option_value(name)

    def example_text(self, rng: random.Random) -> tuple[str, str]:
        while True:
            item = (rng.randint(*A_RANGE), rng.choice(self.ops), rng.randint(*B_RANGE))
            if item not in self._held_set:
                return format_problem(*item)

    def held_out(self) -> list[Example]:
        out = []
        for a, op, b in self._held:
            prompt, answer = format_problem(a, op, b)
            out.append(Example(prompt, answer.rstrip("\n"), op))
        return out

    def score(self, examples: list[Example], completions: list[str]) -> dict:
        """{'accuracy': overall, 'per_group': {op: accuracy}, 'n': {op: count}, 'failures': a few}."""
        if len(examples) != len(completions):
            raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
        right: dict[str, int] = {}
        count: dict[str, int] = {}
        failures = []
        for ex, got in zip(examples, completions):
            count[ex.group] = count.get(ex.group, 0) + 1
            ok = got.strip() == ex.answer.strip()
            right[ex.group] = right.get(ex.group, 0) + int(ok)
            if not ok and len(failures) < 5:
                failures.append({"prompt": ex.prompt, "expected": ex.answer.strip(), "got": got})
        total = sum(count.values())
        return {
            "accuracy": sum(right.values()) / total if total else 0.0,
            "per_group": {g: right[g] / count[g] for g in count},
            "n": count,
            "failures": failures,
        }

    def pass_groups(self) -> tuple[str, ...]:
        """The operators the PASS criterion is judged on: + and - where trained, else all trained."""
        gate = tuple(op for op in self.ops if op in ("+", "-"))
        return gate or self.ops

    def pass_criteria(self) -> dict[str, float]:
        # the Core issue's bar: exact-match accuracy >= 90% on + and - (x and // reported, not gated)
        return {g: PASS_ACCURACY for g in self.pass_groups()}
