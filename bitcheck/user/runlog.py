"""A user's training log and config, read into one shape: what `bitcheck curve` judges.

    log = read_log("runs/my-run")            # a run folder, scalars.jsonl, a CSV export, TensorBoard events
    log.rows[0]                              # {"step": 1, "loss": 10.4, "lr": 6e-6, "grad_norm": 3.1, ...}

Formats, each through the reader made for it (no hand-written parsers of binary formats):
- JSON lines (one object per line: step, loss, lr, grad_norm, ...), as bitcheck and many loops write
  `metrics/scalars.jsonl`; a bitcheck run folder adds its `metrics/evals.jsonl` (validation loss) and
  `config.json`; a Hugging Face Trainer's `trainer_state.json` (its `log_history`), or its output folder
  (the latest `checkpoint-N/trainer_state.json`, the model's `config.json`);
- CSV (`csv.DictReader`): an experiment tracker's export ("Step", "my-run - train/loss", with
  `__MIN`/`__MAX` companion columns), or a logger's `metrics.csv` (one row per step per split, blanks
  elsewhere);
- TensorBoard event files or a folder of them, through tensorboard's own `EventAccumulator` (the
  optional extra `bitcheck[tb]`);
- text: what a loop prints (llm.c's main.log, nanoGPT's and nanochat's stdout, `step N | loss X | ...`),
  through bitcheck/user/textlog.py; `RunLog.read_as` says what was recognised.
Metric names are matched on the last path segment, case-insensitive, with the usual synonyms (ALIASES);
unknown columns are kept under their own names. A config found beside the log (a run folder's
config.json, Lightning's hparams.yaml beside metrics.csv) is passed on to bitcheck/user/runspec.py.
Errors: `LogError` (a UserError: one line, exit 2) for a missing or unreadable file, a Git LFS pointer
in place of the log, a log without a loss.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from bitcheck.errors import UserError
from bitcheck.user.cmdline import command_settings
from bitcheck.user.textlog import read_text_log

COMMAND_LINES = 200  # a text log's launch command, when it printed one, is among its first lines


class LogError(UserError):
    """A training log or config that cannot be read or lacks what the analysis needs."""


# canonical metric -> names it is logged under (lower case; matched on the last '/'-segment too)
ALIASES = {
    "step": ("step", "_step", "global_step", "iter", "iteration", "trainer/global_step", "steps", "num_steps",
             "optimizer_step"),
    "tokens": ("tokens", "tokens_seen", "num_tokens", "total_tokens", "consumed_tokens", "train_tokens",
               "tokens_processed", "ntokens"),
    "loss": ("loss", "train_loss", "training_loss", "train/loss", "loss/train", "lm_loss", "train_lm_loss",
             "train_loss_step", "loss_step", "ce_loss"),
    "val_loss": ("val_loss", "valid_loss", "validation_loss", "eval_loss", "val/loss", "eval/loss", "valid/loss",
                 "validation/loss", "loss/val", "loss/valid", "loss/validation", "loss/eval", "test_loss",
                 "val_lm_loss", "val_loss_epoch"),
    "lr": ("lr", "learning_rate", "train/lr", "train/learning_rate", "optimizer/lr", "lr-adamw", "lr-adam",
           "lr_0", "lr-group0", "learning-rate", "epoch_learning_rate", "lr-sgd"),
    "weight_decay": ("weight_decay", "wd", "train/weight_decay", "optimizer/weight_decay"),
    "grad_norm": ("grad_norm", "gradient_norm", "train/grad_norm", "grad-norm", "gnorm", "grad_norm_total",
                  "total_grad_norm", "grad/norm", "global_grad_norm"),
}
_LOOKUP = {alias: key for key, names in ALIASES.items() for alias in names}
# companion columns of a tracker's export: aggregates of the same metric, not metrics of their own
_COMPANION = re.compile(r"__(min|max|step)$", re.IGNORECASE)
MAX_ROWS_READ = 5_000_000  # a guard against pointing at the wrong (huge) file


def canonical(name: str) -> str:
    """The canonical metric a column or tag name stands for ('my-run - train/loss' -> 'loss'), else the name."""
    low = name.strip().lower()
    if " - " in low:  # "<run name> - <metric>" (a tracker's CSV export)
        low = low.split(" - ", 1)[1]
    for candidate in (low, low.split("/")[-1] if "/" in low else None):
        if candidate and candidate in _LOOKUP:
            return _LOOKUP[candidate]
    if "/" in low:  # "train/loss" style names not listed: split/metric or metric/split
        head, tail = low.rsplit("/", 1)
        if tail == "loss" and head.split("/")[-1] in ("val", "valid", "validation", "eval", "test"):
            return "val_loss"
        if tail == "loss" and head.split("/")[-1] in ("train", "training"):
            return "loss"
    return name


@dataclass
class RunLog:
    """One training run's logged scalars, oldest first, merged per step."""
    rows: list[dict]  # {"step": int, canonical metrics ...}; a metric missing at a step is absent
    source: str  # what was read, for the report
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> the name it was logged under
    config_path: str | None = None  # a config found beside the log (a run folder's config.json)
    settings: dict = field(default_factory=dict)  # settings the log file itself states (trainer_state's max_steps)
    counted: bool = False  # no step column: rows were numbered 1, 2, ... in file order
    read_as: str | None = None  # what a text log's reader recognised ("text log: 4,000 of 4,120 lines ...")
    resolution: dict[str, float] = field(default_factory=dict)  # metric -> step of its printed decimals (text)

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) for every row holding `key` (non-finite values kept: they are evidence)."""
        return [(r["step"], r[key]) for r in self.rows if key in r]


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        v = value.strip()
        if not v:
            return None
        try:
            return float(v)  # "nan", "inf" parse as such: a non-finite loss is evidence, not noise
        except ValueError:
            return None
    return None


def _run_of(name: str) -> str | None:
    """The run a column belongs to: '<run> - <metric>' (a tracker's export, TensorBoard writers here)."""
    return name.split(" - ", 1)[0].strip() if " - " in name else None


def _rank(key: str, name: str) -> int:
    """Which of several names for one metric to keep: the first in ALIASES (unknown names last)."""
    low = name.strip().lower().split(" - ", 1)[-1]
    names = ALIASES.get(key, ())
    for candidate in (low, low.split("/")[-1]):
        if candidate in names:
            return names.index(candidate)
    return len(names)


def _restarts(records: list[tuple[int, str, float]]) -> list[tuple[int, int]]:
    """(from, to) where the step counter falls back below half of the largest step seen so far and then
    counts up again: a resumed run numbered from 0 again (many falls: rows merely out of order)."""
    falls, top, prev = [], None, None
    for step, _, _ in records:
        if prev is not None and step < prev and top is not None and step < top / 2:
            falls.append((prev, step))
        top = step if top is None else max(top, step)
        prev = step
    return falls if 0 < len(falls) <= 3 else []


def _in_order(records: list[tuple[int, str, float]], source: str) -> list[tuple[int, str, float]]:
    """The records of one file, refused when its step counter restarts (see _restarts)."""
    falls = _restarts(records)
    if falls:
        raise LogError(f"{source}: the step counter restarts (step {falls[0][0]} is followed by {falls[0][1]}): a "
                       "resumed run counting from 0 again? Give its steps as one sequence, or one segment at a time")
    return records


def _merge(records: list[tuple[int, str, float]], source: str, config: str | None = None) -> RunLog:
    """(step, logged name, value) triples -> RunLog rows keyed by canonical names (last value wins).
    Raises LogError for several runs in one input and for a step counter that restarts."""
    names: dict[str, set[str]] = {}
    for _, name, _ in records:
        names.setdefault(canonical(name), set()).add(name)
    runs = sorted({r for key, ns in names.items() if key in ALIASES for n in ns if (r := _run_of(n))})
    if len(runs) > 1:
        raise LogError(f"{source} holds several runs ({', '.join(runs[:5])}{', ...' if len(runs) > 5 else ''}): "
                       "export or point at one run")
    keep = {key: min(ns, key=lambda n: _rank(key, n)) for key, ns in names.items()}  # one name per metric
    by_step: dict[int, dict] = {}
    columns: dict[str, str] = {}
    for step, name, value in records:
        key = canonical(name)
        if key in ("step", ROW_NUMBER) or name != keep[key]:
            continue
        columns.setdefault(key, name)
        by_step.setdefault(step, {"step": step})[key] = value
    rows = [by_step[s] for s in sorted(by_step)]
    counted = ROW_NUMBER in names
    if not any("loss" in r or "val_loss" in r for r in rows):
        found = ", ".join(sorted(columns)) or "no numeric columns"
        raise LogError(f"{source} logs no loss (found: {found}); name the column 'loss' or 'val_loss', "
                       "or one of their usual names (train/loss, eval/loss, ...)")
    return RunLog(rows, source, columns, config, counted=counted)


ROW_NUMBER = "__row_number__"  # marks records whose step is the row's number (the log has no step column)


def _step_of(row: dict, index: int) -> int | None:
    for name, value in row.items():
        if canonical(name) == "step":
            v = _number(value)
            if v is not None and math.isfinite(v):
                return int(v)
    return None


def _records(rows, source: str) -> list[tuple[int, str, float]]:
    out = []
    for i, row in enumerate(rows):
        if i >= MAX_ROWS_READ:
            raise LogError(f"{source} has more than {MAX_ROWS_READ} rows: is it a training log?")
        step = _step_of(row, i)
        if step is None:  # no step column: one row per logged step, in order
            step = i + 1
            out.append((step, ROW_NUMBER, 1.0))
        for name, value in row.items():
            v = _number(value)
            if name is None or v is None or _COMPANION.search(name):
                continue
            out.append((step, name, v))
    return out


def read_json_history(path: Path) -> list[tuple[int, str, float]] | None:
    """A whole-file JSON log: Hugging Face Trainer's trainer_state.json (`log_history`: training rows with
    loss / learning_rate / grad_norm and evaluation rows with eval_loss), or a list of row objects.
    None when the file is not one JSON document (then it is read as JSON lines)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    rows = data.get("log_history") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        return None
    # the Trainer's last row summarises the run (train_loss = the mean over all steps, train_runtime, ...):
    # read as the loss at the last step it would look like a jump the run never recovered from
    return _in_order(_records([r for r in rows if isinstance(r, dict) and "train_runtime" not in r], str(path)),
                     str(path))


def read_jsonl(path: Path) -> list[tuple[int, str, float]]:
    if path.suffix == ".json":
        whole = read_json_history(path)
        if whole is not None:
            return whole
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith(("#", "//")):  # blank or a comment someone added
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if n > 1 and not f.read(1):  # a last line cut short by a crash mid-write: skip it
                    break
                raise LogError(f"{path} line {n} is not JSON ({e.msg}): not a JSON-lines log") from None
            if isinstance(row, dict):
                rows.append(row)
    return _in_order(_records(rows, str(path)), str(path))


def read_csv(path: Path) -> list[tuple[int, str, float]]:
    with open(path, encoding="utf-8", newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(f, dialect=dialect)
        if not reader.fieldnames:
            raise LogError(f"{path} has no header row: not a CSV export")
        return _in_order(_records(reader, str(path)), str(path))


def read_tensorboard(path: Path) -> list[tuple[int, str, float]]:
    """Scalars of TensorBoard event files (a file or a folder, subfolders included: one per writer) via
    tensorboard's EventAccumulator: simple-value scalars (torch's SummaryWriter) and TF2 scalar tensors."""
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError:
        raise LogError(f"{path} holds TensorBoard events; reading them needs tensorboard: "
                       "pip install 'bitcheck[tb]' (or tensorboard)") from None
    files = [path] if path.is_file() else sorted(path.rglob("events.out.tfevents*"))
    out = []
    for file in files:
        acc = ea.EventAccumulator(str(file), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        tags = acc.Tags()
        prefix = file.parent.name if path.is_dir() and file.parent != path else ""
        for tag in tags.get("scalars", []):
            out += [(e.step, _tb_name(prefix, tag), float(e.value)) for e in acc.Scalars(tag)]
        for tag in tags.get("tensors", []):
            for e in acc.Tensors(tag):
                value = tensor_util.make_ndarray(e.tensor_proto)
                if value.size == 1 and value.dtype.kind == "f":
                    out.append((e.step, _tb_name(prefix, tag), float(value.reshape(()))))
    return out


def _tb_name(writer: str, tag: str) -> str:
    """Keras and Lightning write one folder per split ('train/', 'validation/') with the same tag 'epoch_loss'."""
    low = tag.lower().split("/")[-1]
    if writer.lower() in ("validation", "val", "eval", "valid") and low.endswith("loss"):
        return "val_loss"
    if writer.lower() in ("train", "training") and low in ("loss", "epoch_loss", "batch_loss"):
        return "loss"
    if writer.lower() in ("train", "training", "validation", "val", "eval", "valid", ""):
        return tag
    return f"{writer} - {tag}"  # one writer per run (lightning_logs/version_N): several runs are an error


def read_log(path: str) -> RunLog:
    """Read a training log (module docstring). Raises LogError for a missing path, an unknown or
    unreadable format, or a log without a loss."""
    p = Path(path)
    if not p.exists():
        raise LogError(f"{path} does not exist (give a run folder, a scalars.jsonl, a CSV or TensorBoard events)")
    if p.is_dir():
        scalars, evals = p / "metrics" / "scalars.jsonl", p / "metrics" / "evals.jsonl"
        config = p / "config.json"
        if scalars.exists():  # a bitcheck run folder, or one laid out like it
            records = read_jsonl(scalars) + (read_jsonl(evals) if evals.exists() else [])
            return _merge(records, str(scalars), str(config) if config.exists() else None)
        states = sorted(p.glob("trainer_state.json")) or sorted(
            p.glob("checkpoint-*/trainer_state.json"), key=lambda q: int(q.parent.name.split("-")[-1])
            if q.parent.name.split("-")[-1].isdigit() else -1)
        if states:  # a Hugging Face Trainer output folder: the latest checkpoint's state holds the whole history
            model_config = p / "config.json" if (p / "config.json").exists() else states[-1].parent / "config.json"
            log = read_log(str(states[-1]))
            log.config_path = str(model_config) if model_config.exists() else None
            return log
        if any(p.rglob("events.out.tfevents*")):
            return _merge(read_tensorboard(p), f"TensorBoard events under {p}")
        logs = sorted([*p.glob("*.jsonl"), *p.glob("*.csv")]) or sorted(
            [*p.rglob("metrics.csv"), *p.rglob("*.jsonl")]) or sorted(  # e.g. lightning_logs/version_0/metrics.csv
            q for q in [*p.glob("*.log"), *p.glob("*.txt"), *p.glob("*.out")] if q.is_file())  # saved stdout
        if len(logs) == 1:
            return read_log(str(logs[0]))
        found = "; ".join(str(q) for q in logs[:4]) + ("; ..." if len(logs) > 4 else "")
        raise LogError(f"{path} holds no metrics/scalars.jsonl, TensorBoard events or trainer_state.json, and "
                       f"{len(logs)} .jsonl/.csv/text logs{': ' + found if logs else ''}: point at one log file")
    if _lfs_pointer(p):
        raise LogError(f"{path} is a Git LFS pointer, not the log itself: run `git lfs pull` in its repository")
    name = p.name.lower()
    if name.startswith("events.out.tfevents"):
        return _merge(read_tensorboard(p), str(p))
    if name.endswith((".jsonl", ".json", ".ndjson")):
        log = _merge(read_jsonl(p), str(p))
        if name == "trainer_state.json":  # its own top-level settings: max_steps, train_batch_size ...
            state = json.loads(p.read_text(encoding="utf-8"))
            log.settings = {k: v for k, v in state.items() if not isinstance(v, (list, dict))}
        return log
    if name.endswith((".csv", ".tsv")):
        hparams = p.parent / "hparams.yaml"  # Lightning's CSVLogger writes its hyperparameters beside metrics.csv
        return _merge(read_csv(p), str(p), str(hparams) if hparams.is_file() else None)
    if _first_line(p).startswith("{"):  # JSON lines under another name (train.log, metrics.txt)
        return _merge(read_jsonl(p), str(p))
    records, summary, resolution = read_text_log(p)
    if records:
        log = _merge(records, str(p))
        log.read_as, log.resolution = summary, resolution
        with open(p, encoding="utf-8", errors="replace") as f:  # a command line the log printed: its flags
            log.settings = command_settings("".join(line for _, line in zip(range(COMMAND_LINES), f)))
        return log
    raise LogError(f"{path}: unknown log format ({summary}); give a .jsonl, a .csv, TensorBoard "
                   "events.out.tfevents* or a text log with lines like `step 100 | loss 3.21 | lr 6e-4`")


def _first_line(p: Path) -> str:
    """The file's first non-blank line, stripped ('' for an empty or binary file)."""
    with open(p, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip()
    return ""


def _lfs_pointer(p: Path) -> bool:
    """A small file that starts like a Git LFS pointer (the spec line): the log was never fetched."""
    if p.stat().st_size > 1024:
        return False
    with open(p, "rb") as f:
        return f.read(64).startswith(b"version https://git-lfs")
