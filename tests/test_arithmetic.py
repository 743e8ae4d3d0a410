"""The arithmetic task: generator, tokenizer specials, held-out split, scorer, answer-only batches. The
contract every task keeps (seeding, tokenizer round trip, rows, criteria) is tests/test_tasks.py."""
import random

import pytest
import torch

from bitcheck.bitnet.tasks import task_batches
from synthetic.arithmetic import ArithmeticTask, parse_ops


def test_examples_are_correct_and_seeded():
    """Every generated line is true arithmetic; the same seed gives the same lines."""
    task = ArithmeticTask(ops="+-*/")
    lines = [task.example_text(random.Random(7)) for _ in range(3)]
    assert len(set(lines)) == 1
    rng = random.Random(0)
    for _ in range(2000):
        context, answer = task.example_text(rng)
        a, op, b, eq = context.split(" ")
        assert eq == "=" and answer.endswith("\n")
        a, b = int(a), int(b)
        assert 0 <= a <= 100 and 1 <= b <= 100
        assert int(answer) == {"+": a + b, "-": a - b, "*": a * b, "//": a // b}[op]


def test_held_out_never_in_training():
    """The held-out set has >= 500 problems, none of which training ever produces."""
    task = ArithmeticTask(ops="+-")
    held = {e.prompt for e in task.held_out()}
    assert len(held) >= 500
    rng = random.Random(1)
    for _ in range(20000):
        assert task.example_text(rng)[0] not in held
    assert ArithmeticTask(ops="+").held_out().__len__() >= 500


def test_tokenizer_round_trip():
    """decode(encode(s)) == s for any text over the alphabet; specials decode to nothing."""
    tok = ArithmeticTask().tokenizer
    s = "25 + 17 = 42\n3 - 50 = -47\n7 // 2 = 3\n"
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode([tok.bos_id, tok.eos_id] + tok.encode("1")) == "1"
    assert tok.encode("a") == [tok.special_id("<unk>")]


def test_scorer():
    """Perfect completions score 1.0 per operator; wrong ones lower that operator only."""
    task = ArithmeticTask(ops="+-")
    ex = task.held_out()
    right = [e.answer for e in ex]
    assert task.score(ex, right)["per_group"] == {"+": 1.0, "-": 1.0}
    wrong = [a if e.group == "+" else " 0" for e, a in zip(ex, right)]
    s = task.score(ex, wrong)
    assert s["per_group"]["+"] == 1.0 and s["per_group"]["-"] < 0.05


def test_parse_ops():
    """Users write + - * / (or x, //); anything else is a clear error."""
    assert parse_ops("+-*/") == ("+", "-", "*", "//")
    assert parse_ops("x//") == ("*", "//")
    with pytest.raises(ValueError, match="unknown operator"):
        parse_ops("+%")


def test_batches_shift_and_mask():
    """y is x shifted by one; with answer-only loss the targets are exactly the answer tokens."""
    task = ArithmeticTask()
    tok = task.tokenizer
    x, y = task_batches(task, seed=0, batch_size=4, seq_len=48, answer_only=True)(0, 0)
    x2, _ = task_batches(task, seed=0, batch_size=4, seq_len=48, answer_only=True)(0, 0)
    assert torch.equal(x, x2) and x.shape == (4, 48)
    assert torch.all(x[:, 0] == tok.bos_id)
    lines = tok.decode(x[0].tolist()).split("\n")
    for line in lines[:-1]:  # whole problems; only the last may be cut by the window
        a, op, b, _, r = line.split(" ")
        assert int(r) == {"+": int(a) + int(b), "-": int(a) - int(b)}[op]
    trained = y[0][y[0] >= 0]
    # every trained target is a digit, minus sign, space or newline: the answer " 42\n"
    assert set(tok.decode(trained.tolist())) <= set("0123456789- \n")
    _, y_all = task_batches(task, seed=0, batch_size=4, seq_len=48, answer_only=False)(0, 0)
    assert torch.equal(y_all[:, :-1], x[:, 1:])
