"""The synthetic tasks as bitcheck trains them: the registry (each task's class and its measured CPU
recipe), seeded batches, completions of held-out prompts, scoring and the Trainer's evaluator.

    task = build_task("arith", {"ops": "+-"})
    batches = task_batches(task, seed, 256, 16, answer_only=True)     # (step, micro) -> (x, y)
    pairs, score, passed = score_task(model, task)

Adding a task: its module in synthetic/ (the Task interface of synthetic/base.py), its test, and one
line in TASKS; `bitcheck quick-<name>` is generated from the line, and the task class's `help` and
`cli_options` say what the command does and which constructor options it takes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bitcheck.bitnet.config import ConfigError
from bitcheck.bitnet.train import Evaluation
from synthetic.arithmetic import ArithmeticTask
from synthetic.base import CharTokenizer, Example, Task
from synthetic.json_records import JsonTask
from synthetic.python_subset import PythonTask


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its class and the TrainConfig / ModelConfig fields of its CPU recipe (chosen by
    measurement: docs/MEASUREMENTS.md, "Choosing the quick-run recipes"). The loss mask is the task's own."""
    cls: type[Task]
    train: dict
    model: dict = field(default_factory=dict)
    # what bitcheck's own BitNet (tiny preset, this recipe, compiled on CPU) measured, for verdicts on a
    # user's model or loop: docs/MEASUREMENTS.md, "Choosing the quick-run recipes"
    reference: str = ""


TASKS: dict[str, TaskSpec] = {
    # one problem per 16-token row, right after <bos> ("100 + 100 = 200\n" is 16 characters): the digits
    # sit at nearly fixed positions, so every seed "clicks" by step ~500 (64-token rows of packed lines:
    # 900 to 3000+); loss on the answers
    "arith": TaskSpec(ArithmeticTask, dict(batch_size=256, seq_len=16, lr=3e-3, warmup_steps=100),
                      reference="bitcheck's own BitNet passes quick-arith in 900-1400 steps (median 1300, 20 of 20 "
                                "seeds)"),
    # whole records in context (a record is <= 49 characters)
    "json": TaskSpec(JsonTask, dict(batch_size=32, seq_len=128, lr=3e-3, warmup_steps=100),
                     reference="bitcheck's own BitNet passes quick-json in 400-800 steps (median 500, 10 of 10 seeds)"),
    # a program is <= 240 characters: the context holds the prompt and a whole sample
    "python": TaskSpec(PythonTask, dict(batch_size=16, seq_len=256, lr=3e-3, warmup_steps=100), dict(block_size=320),
                       reference="bitcheck's own BitNet passes quick-python in 700-1100 steps (median 850, 10 of 10 "
                                 "seeds)"),
}


def build_task(name: str, options: dict | None = None) -> Task:
    """The registered task `name` built with its command-line options ({"ops": "+-"} for arith); other
    keys (a checkpoint's task record: name, answer_only) and empty values are ignored."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    cls = TASKS[name].cls
    options = {k: v for k, v in (options or {}).items() if k in cls.cli_options and v}
    try:
        return cls(**options)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def task_options(task: Task) -> dict:
    """The task's command-line options as built, for the checkpoint (so a resume rebuilds the same task)."""
    return {k: task.option_value(k) for k in type(task).cli_options}


def task_batches(task: Task, seed: int, batch_size: int, seq_len: int, answer_only: bool):
    """(step, micro) -> (x, y) with y = -1 where no loss is taken; seeded by position only."""
    def batches(step: int, micro: int):
        rows, masks = [], []
        for r in range(batch_size):
            ids, mask = task.training_sequence(seed, (step * 1_000 + micro) * 100_000 + r, seq_len + 1, answer_only)
            rows.append(ids)
            masks.append(mask)
        ids = torch.tensor(rows, dtype=torch.long)  # (B, T+1)
        mask = torch.tensor(masks, dtype=torch.bool)
        x, y = ids[:, :-1], ids[:, 1:].clone()  # (B, T) each: y is x shifted by one
        y[~mask[:, 1:]] = -1
        return x, y
    return batches


# Rows of the fixed validation batch (indices no training step uses): 64 rows of the training shape
# put ~200 (arithmetic) to ~8,000 (json) loss tokens behind each validation loss, enough to see the
# stall rule's 1% change on a curve that is still moving.
# How a quick run decides its own length (docs/MEASUREMENTS.md, "Choosing the quick-run recipes"):
# cosine cycles of CYCLE steps with warm restarts, stopping at PASS, after STALL_EVALS evaluations
# without gain, or at the time budget (NO_STEP_LIMIT: the budget binds first).
CYCLE = 1500  # arithmetic seeds 3/4 passed at 1200/1300 steps of a 1500 cosine, 1900/1800 at constant LR
STALL_EVALS = 15  # one cycle: a restart first lowers the score, a cycle later it must have gained
NO_STEP_LIMIT = 1_000_000
REFERENCE_SCHEDULE = dict(schedule="cosine", cycle_steps=CYCLE)  # bitcheck's schedule, for bisection swaps

VAL_ROWS = 64


def validation_batch(task: Task, seed: int, seq_len: int, answer_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of fresh training-distribution sequences at negative indices, which training never draws."""
    rows = [task.training_sequence(seed, -1 - r, seq_len + 1, answer_only) for r in range(VAL_ROWS)]
    ids = torch.tensor([r[0] for r in rows], dtype=torch.long)  # (R, T+1)
    mask = torch.tensor([r[1] for r in rows], dtype=torch.bool)
    x, y = ids[:, :-1], ids[:, 1:].clone()  # (R, T) each
    y[~mask[:, 1:]] = -1
    return x, y


@torch.no_grad()
def complete(model, tokenizer: CharTokenizer, prompts: list[str], max_new_tokens: int,
             stop: str = "\n", temperature: float = 0.0, seed: int = 0) -> list[str]:
    """Completions up to the first `stop`, greedy (temperature 0) or sampled with a fixed seed,
    batched by prompt length (no padding, so no mask subtleties). `model` is a BitNet (its generate)."""
    device = next(model.parameters()).device
    out: list[str | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    for length, members in by_len.items():
        idx = torch.tensor([encoded[i] for i in members], dtype=torch.long, device=device)  # (b, length)
        gen = model.generate(idx, max_new_tokens, temperature=temperature, seed=seed)[:, length:].tolist()
        for i, ids in zip(members, gen):
            text = tokenizer.decode(ids)
            out[i] = text.split(stop)[0] if stop in text else text
    return out  # type: ignore[return-value]


EVAL_SEED = 1234


def score_task(model, task: Task) -> tuple[list[tuple[Example, str]], dict, bool]:
    """Complete the task's held-out prompts and score them: (examples with completions, score, PASS).
    Sampled tasks draw the same random numbers every time, so a curve of scores shows the model."""
    examples: list[Example] = task.held_out()
    completions = complete(model, task.tokenizer, [e.prompt for e in examples], task.max_new_tokens,
                           task.stop_text, task.eval_temperature, seed=EVAL_SEED)
    score = task.score(examples, completions)
    passed = all(score["per_group"].get(k, 0.0) >= v for k, v in task.pass_criteria().items())
    return list(zip(examples, completions)), score, passed


def gate(score: dict, criteria: dict[str, float]) -> float:
    """How close a score is to PASS: the least of score / bar over the PASS criteria (>= 1 passes)."""
    return min(score["per_group"].get(k, 0.0) / bar for k, bar in criteria.items())


def make_evaluator(task: Task, on_samples=None, val: tuple[torch.Tensor, torch.Tensor] | None = None):
    """evaluate(model, step) -> Evaluation: the held-out score (stop once it passes), its gate, and the
    loss on `val`. `on_samples(step, pairs)` receives the (example, completion) pairs, e.g. to log them."""
    criteria = task.pass_criteria()

    def evaluate(model, step: int) -> Evaluation:
        pairs, score, passed = score_task(model, task)
        if on_samples is not None:
            on_samples(step, pairs)
        val_loss = None
        if val is not None:
            device = next(model.parameters()).device
            with torch.no_grad():
                val_loss = model(val[0].to(device), val[1].to(device))[1].item()
        return Evaluation(passed=passed, stop=passed, gate=gate(score, criteria), val_loss=val_loss, score=score)
    return evaluate
