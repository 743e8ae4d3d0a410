"""JSON records: one `{"name": ..., "age": ..., "city": ...}` object per line, the structure task.

    task = JsonTask()
    task.example_text(random.Random(0))  # ("", '{"name": "Alice", "age": 25, "city": "Boston"}\\n')

Names and cities come from fixed lists of 50 each, ages from [18, 99]. The loss is on every
character (a record has no prompt/answer split), and the model is judged on free-running samples:
the share that `json.loads` accepts, the share with exactly the schema (the three keys in order,
name and city from the lists, age an int in range), diversity (the share of distinct records among
the valid ones: a model that prints one record forever scores about 1/n) and field diversity (per
field, distinct values seen over those the generator itself would show in as many draws, capped at
1; the least field counts: a model that always writes "Alice" fails it). Not covered: nesting,
escapes, floats.
"""
from __future__ import annotations

import json
import random

from synthetic.base import CharTokenizer, Example, Task

NAMES = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Ivy", "Jack",
    "Karen", "Leo", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara",
    "Uma", "Victor", "Wendy", "Xavier", "Yara", "Zane", "Amir", "Bella", "Chen", "Dana",
    "Elena", "Felix", "Gina", "Hugo", "Iris", "Jonas", "Kira", "Liam", "Maya", "Nina",
    "Omar", "Priya", "Ravi", "Sofia", "Tom", "Ursula", "Vera", "Will", "Yusuf", "Zoe",
)
CITIES = (
    "Boston", "Denver", "Austin", "Seattle", "Chicago", "Miami", "Dallas", "Phoenix", "Portland",
    "Atlanta", "Houston", "Detroit", "Memphis", "Tampa", "Omaha", "Tulsa", "Reno", "Fresno",
    "Madison", "Raleigh", "Orlando", "Toledo", "Buffalo", "Tucson", "Oakland", "Lincoln", "Dayton",
    "Salem", "Boise", "Eugene", "Albany", "Tacoma", "Berlin", "Paris", "Rome", "Madrid",
    "Vienna", "Prague", "Oslo", "Dublin", "Lisbon", "Athens", "Warsaw", "Zurich", "Geneva",
    "Tokyo", "Osaka", "Seoul", "Delhi", "Lima",
)
AGE_RANGE = (18, 99)
KEYS = ("name", "age", "city")
# every character a record can contain, so the vocabulary is known before any data is drawn
ALPHABET = "".join(sorted(set("".join(NAMES + CITIES + KEYS) + '{}":, 0123456789\n')))
PROMPT = '{"'  # free-running samples start at a record's first key
N_SAMPLES = 128


def record_line(rng: random.Random) -> str:
    record = {"name": rng.choice(NAMES), "age": rng.randint(*AGE_RANGE), "city": rng.choice(CITIES)}
    return json.dumps(record) + "\n"


def check_record(text: str) -> tuple[bool, dict | None]:
    """(parses, the record if it has exactly the schema else None)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return False, None
    ok = (isinstance(obj, dict) and tuple(obj) == KEYS and obj["name"] in NAMES and obj["city"] in CITIES
          and type(obj["age"]) is int and AGE_RANGE[0] <= obj["age"] <= AGE_RANGE[1])
    return True, obj if ok else None


def field_diversity(records: list[dict]) -> float:
    """min over fields of distinct values / the generator's expected distinct count in as many draws
    (m * (1 - (1 - 1/m)^n) for m equally likely values), capped at 1; 0 with no records. The
    generator's own records score 0.9-1.0 (a distinct count fluctuates by a few values)."""
    n = len(records)
    if not n:
        return 0.0
    sizes = {"name": len(NAMES), "age": AGE_RANGE[1] - AGE_RANGE[0] + 1, "city": len(CITIES)}
    ratios = []
    for key, m in sizes.items():
        expected = m * (1 - (1 - 1 / m) ** n)
        ratios.append(min(1.0, len({r[key] for r in records}) / expected))
    return min(ratios)


class JsonTask(Task):
    name = "json"
    help = ("Train a tiny BitNet on synthetic JSON records (`{\"name\": \"Alice\", \"age\": 25, \"city\": "
            "\"Boston\"}`).\n\nEvery 100 steps, 128 records sampled at temperature 1 are scored: the share that "
            "parse, the share with exactly the schema, and their diversity (records and per field). PASS (exit 0) "
            "when all four clear their bars (see the README).")
    eval_temperature = 1.0  # the generator's own distribution: diversity is part of the score
    max_new_tokens = 64  # the longest record is 58 characters
    answer_only = False

    # PASS bars: a valid record almost always, and no collapse onto a few records. Measured healthy
    # quick-json runs (docs/MEASUREMENTS.md, "quick-json and quick-python") reach parse and schema
    # >= 0.95 with diversity ~0.99; the bars leave room for sampling noise over 128 samples.
    PASS = {"parse": 0.90, "schema": 0.90, "diversity": 0.90, "field_diversity": 0.75}

    def __init__(self):
        self.tokenizer = CharTokenizer(ALPHABET)

    def example_text(self, rng: random.Random) -> tuple[str, str]:
        return "", record_line(rng)

    def held_out(self) -> list[Example]:
        # the same start for every sample: what is held out is the model's own choice of record
        return [Example(PROMPT, "", "record") for _ in range(N_SAMPLES)]

    def score(self, examples: list[Example], completions: list[str]) -> dict:
        if len(examples) != len(completions):
            raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
        parsed, valid, failures = 0, [], []
        for ex, got in zip(examples, completions):
            ok, rec = check_record(ex.prompt + got)
            parsed += ok
            if rec is not None:
                valid.append(json.dumps(rec))
            elif len(failures) < 5:
                failures.append({"prompt": ex.prompt, "expected": "a record with the schema", "got": got})
        n = len(completions)
        groups = {"parse": parsed / n if n else 0.0, "schema": len(valid) / n if n else 0.0,
                  "diversity": len(set(valid)) / len(valid) if valid else 0.0,
                  "field_diversity": field_diversity([json.loads(v) for v in valid])}
        return {"accuracy": groups["schema"], "per_group": groups, "n": {"samples": n}, "failures": failures}

    def pass_criteria(self) -> dict[str, float]:
        return dict(self.PASS)
