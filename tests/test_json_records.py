"""The JSON-records task: generator, scorer (1.0 on the generator, low on broken text). The contract
every task keeps (seeding, tokenizer round trip, rows, criteria) is tests/test_tasks.py."""
import json
import random

from synthetic.json_records import AGE_RANGE, CITIES, NAMES, JsonTask, check_record, field_diversity


def _samples(task: JsonTask, seed: int, n: int) -> list[str]:
    """Completions as a perfect model would write them after the prompt: generator records."""
    rng = random.Random(seed)
    prompt = task.held_out()[0].prompt
    out = []
    for _ in range(n):
        line = task.example_text(rng)[1]
        assert line.startswith(prompt)
        out.append(line[len(prompt):].rstrip("\n"))
    return out


def test_generator_is_seeded_and_always_valid():
    task = JsonTask()
    assert [task.example_text(random.Random(3)) for _ in range(2)][0] == task.example_text(random.Random(3))
    rng = random.Random(0)
    for _ in range(5000):
        context, line = task.example_text(rng)
        assert context == "" and line.endswith("\n") and "\n" not in line[:-1]
        rec = json.loads(line)
        assert list(rec) == ["name", "age", "city"]
        assert rec["name"] in NAMES and rec["city"] in CITIES and AGE_RANGE[0] <= rec["age"] <= AGE_RANGE[1]
        assert check_record(line) == (True, rec)


def test_scorer_is_one_on_generator_output():
    task = JsonTask()
    for seed in range(5):
        g = task.score(task.held_out(), _samples(task, seed, len(task.held_out())))["per_group"]
        assert g["parse"] == g["schema"] == 1.0
        assert g["diversity"] >= 0.98  # 128 draws from 205k records: a repeat is rare, not impossible
        assert g["field_diversity"] >= 0.9  # distinct counts fluctuate a few values around the expectation
        assert all(g[k] >= v for k, v in task.pass_criteria().items())


def test_scorer_is_low_on_broken_text():
    """Shuffled characters, truncated records, one record repeated, a constant field: each fails."""
    task = JsonTask()
    ex = task.held_out()
    good = _samples(task, 0, len(ex))
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(s, len(s))) for s in good]
    truncated = [s[: len(s) // 2] for s in good]
    repeated = [good[0]] * len(ex)
    alice = [json.dumps({**json.loads('{"' + s), "name": "Alice"})[2:] for s in good]
    wrong_schema = [s.replace('"age": ', '"age": "').replace(', "city"', '", "city"') for s in good]
    for name, broken, key in [("shuffled", shuffled, "parse"), ("truncated", truncated, "parse"),
                              ("repeated", repeated, "diversity"), ("alice", alice, "field_diversity"),
                              ("age as string", wrong_schema, "schema")]:
        g = task.score(ex, broken)["per_group"]
        assert g[key] < 0.2, (name, g)
        assert not all(g[k] >= v for k, v in task.pass_criteria().items()), name


def test_field_diversity_edges():
    assert field_diversity([]) == 0.0
    recs = [{"name": n, "age": 20 + i % 80, "city": CITIES[i % 50]} for i, n in enumerate(NAMES * 2)]
    assert field_diversity(recs) == 1.0
