"""Training logs as text: the lines a hand-written loop prints (saved stdout, a `tee`d file, a main.log),
read into the (step, name, value) records that bitcheck/user/runlog.py merges like any other log.

    records, summary = read_text_log(Path("train.log"))
    summary   # "text log: 4,000 of 4,120 lines read (step, loss, val_loss, lr, grad_norm)"

Line shapes recognised (one line: a step counter and metrics; anything else is skipped and counted):
- llm.c / llm.kittens main.log: `s:120 trl:3.4521 lr:0.000600 norm:0.91` (training), `s:250 tel:3.51`
  (validation);
- nanoGPT and nanochat stdout: `iter 120: loss 3.4521, time 105.23ms, mfu 12.34%`,
  `step 250: train loss 3.4012, val loss 3.5098`;
- the common `step 120 | train loss 3.45 | val loss 3.51 | lr 6.0e-04 | grad norm 0.91`, and in general
  `name value`, `name: value` or `name=value` pairs (a name of one or two words) separated by spaces,
  commas, pipes or semicolons, in any order, with a step, iter or s counter somewhere on the line.
Metric names go through runlog's synonyms after TEXT_ALIASES, the abbreviations only text logs use.
A line holding a counter but no metric (a progress line, a config print) adds nothing. Errors: none of
its own; a file with no such line gives no records (read_log then says the format is unknown).
"""
from __future__ import annotations

import re
from pathlib import Path

# a number as loops print it: 3.4521, 6.0e-04, .5, -1, nan, inf (units such as "ms" or "%" may follow)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b"
# a name of one or two words, then ':', '=' or spaces, then the number
PAIR = re.compile(r"(?<![\w.])(?P<name>[A-Za-z_][\w/.\-]*(?: [A-Za-z_][\w/.\-]*)?)\s*(?:[:=]\s*|\s+)"
                  rf"(?P<value>{_NUMBER})", re.IGNORECASE)
# names only text logs use (after lower-casing, spaces as '_'); the rest go through runlog.canonical
TEXT_ALIASES = {
    "s": "step", "it": "step", "iter": "step", "iteration": "step", "step": "step", "global_step": "step",
    "trl": "loss", "tl": "loss", "loss": "loss", "train_loss": "loss", "training_loss": "loss",
    "tel": "val_loss", "vl": "val_loss", "val_loss": "val_loss", "valid_loss": "val_loss",
    "validation_loss": "val_loss", "eval_loss": "val_loss", "test_loss": "val_loss",
    "lr": "lr", "learning_rate": "lr",
    "norm": "grad_norm", "grad_norm": "grad_norm", "gnorm": "grad_norm", "grad": "grad_norm",
    "gradient_norm": "grad_norm",
}
MIN_LINES = 3  # lines with a step and a metric below which a file is not taken for a training log


SPLITS = {"val": "val_loss", "valid": "val_loss", "validation": "val_loss", "eval": "val_loss", "test": "val_loss",
          "train": "loss", "training": "loss"}


def canonical_text(name: str) -> str | None:
    """The metric a printed name stands for: 'trl' -> 'loss', 'val loss' -> 'val_loss', 'train/loss' -> 'loss';
    None for anything else (time, mfu, a learning-rate multiplier: read as nothing rather than guessed)."""
    name = re.sub(r"[\s\-]+", "_", name.strip().lower())
    if name in TEXT_ALIASES:
        return TEXT_ALIASES[name]
    head, _, tail = name.rpartition("/")
    if tail == "loss" and head.split("/")[-1] in SPLITS:
        return SPLITS[head.split("/")[-1]]
    return TEXT_ALIASES.get(tail) if head else None


def parse_line(line: str, decimals: dict[str, int | None] | None = None) -> tuple[int | None, dict[str, float]]:
    """(step, {canonical metric: value}) of one printed line; step None when the line has no counter (the
    first counter on a line is its step: `step 5/100` is step 5). `decimals`, when given, keeps per metric
    the most decimals seen in fixed-point form (None once a value had an exponent)."""
    step, metrics = None, {}
    for m in PAIR.finditer(line):
        name = m.group("name")
        key = canonical_text(name)
        if key is None and " " in name:  # 'INFO step 30': a word before the name, when it is a counter or
            first, last = name.split(" ")  # the word is a log level; not 'weight norm', which is no grad norm
            key = canonical_text(last) if canonical_text(last) == "step" or first.isupper() else None
        if key is None:
            continue
        value = float(m.group("value"))
        if key == "step":
            if step is None and value.is_integer() and value >= 0:
                step = int(value)
        elif key not in metrics:
            metrics[key] = value
            if decimals is not None:
                text = m.group("value").lower()
                d = None if "e" in text or "n" in text else len(text.partition(".")[2])
                decimals[key] = None if d is None or decimals.get(key, 0) is None else max(d, decimals.get(key, 0))
    return step, metrics


def read_text_log(path: Path) -> tuple[list[tuple[int, str, float]], str, dict[str, float]]:
    """(step, canonical metric, value) records of every line with a step counter and a metric, a one-line
    summary of what was recognised, and per metric the step of the decimals it was printed with (`lr:0.000600`
    -> 1e-6; absent when any value was printed with an exponent, which keeps its precision). Undecodable
    bytes are replaced (a log is read, never judged by its bytes)."""
    records, used, seen = [], 0, 0
    keys: dict[str, None] = {}
    decimals: dict[str, int | None] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            seen += 1
            step, metrics = parse_line(line, decimals)
            if step is None or not metrics:
                continue
            used += 1
            for key, value in metrics.items():
                keys.setdefault(key, None)
                records.append((step, key, value))
    summary = (f"text log: {used:,} of {seen:,} lines read as step, {', '.join(keys)}" if used
               else f"text log: none of {seen:,} lines holds a step and a loss")
    resolution = {k: 10.0 ** -d for k, d in decimals.items() if d is not None and k in keys}
    return (records if used >= MIN_LINES else []), summary, resolution
