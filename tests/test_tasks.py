"""The task contract (synthetic/base.py's Task), held once for every task in the registry (bitcheck/bitnet/tasks.py
TASKS): seeded examples, an exact tokenizer round trip, seeded training rows with targets shifted once and a loss
mask, held-out prompts that training never writes, and a scorer whose criteria a perfect model meets and an empty
one does not. A task's own file tests what only it has (arithmetic's operators, JSON's schema, Python's runner)."""
import random

import pytest
import torch

from bitcheck.bitnet.tasks import TASKS, build_task, task_batches, task_options

NAMES = sorted(TASKS)


@pytest.mark.parametrize("name", NAMES)
def test_examples_are_seeded_text_the_tokenizer_round_trips(name):
    """The same seed gives the same (context, answer); decode(encode(text)) == text on 200 examples."""
    task = build_task(name)
    first = task.example_text(random.Random(5))
    assert first == task.example_text(random.Random(5))
    assert all(isinstance(part, str) for part in first) and first[1]
    rng = random.Random(0)
    text = "".join("".join(task.example_text(rng)) for _ in range(200))
    assert task.tokenizer.decode(task.tokenizer.encode(text)) == text
    assert task.tokenizer.vocab_size <= 256  # a character alphabet: every preset's embedding fits it


@pytest.mark.parametrize("name", NAMES)
def test_training_rows_are_seeded_shifted_once_and_masked(name):
    """Row k of a step is the same whatever ran before; y is x shifted by one; the mask trains on some tokens
    (answer-only) and on every real token otherwise; every row starts with <bos>."""
    task = build_task(name)
    make = task_batches(task, seed=3, batch_size=4, seq_len=32, answer_only=True)
    x, y = make(2, 0)
    x2, y2 = task_batches(task, seed=3, batch_size=4, seq_len=32, answer_only=True)(2, 0)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == y.shape == (4, 32)
    assert torch.all(x[:, 0] == task.tokenizer.bos_id)
    assert not torch.equal(make(3, 0)[0], x)  # another step, other data
    _, every = task_batches(task, seed=3, batch_size=4, seq_len=32, answer_only=False)(2, 0)
    assert torch.equal(every[:, :-1], x[:, 1:])  # targets are the inputs shifted by exactly one
    trained = y >= 0
    assert 0 < int(trained.sum()) <= int((every >= 0).sum())
    assert torch.equal(y[trained], every[trained])  # the answer-only mask selects targets, never moves them


@pytest.mark.parametrize("name", NAMES)
def test_options_rebuild_the_same_task(name):
    """A checkpoint's task record (task_options) rebuilds a task with the same options and held-out set."""
    task = build_task(name)
    again = build_task(name, task_options(task))
    assert task_options(again) == task_options(task)
    assert [e.prompt for e in again.held_out()] == [e.prompt for e in task.held_out()]


@pytest.mark.parametrize("name", NAMES)
def test_criteria_are_scored_and_an_empty_model_fails_them(name):
    """Every PASS criterion is a key of the score; completions that are all empty never pass."""
    task = build_task(name)
    held = task.held_out()
    assert len(held) >= 64 and all(e.prompt is not None and e.group for e in held)  # python samples 64
    criteria = task.pass_criteria()
    score = task.score(held, [""] * len(held))["per_group"]
    assert set(criteria) <= set(score), (criteria, score)
    assert not all(score[k] >= v for k, v in criteria.items()), score
