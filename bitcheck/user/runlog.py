"""A user's training log and config, read into one shape: what `bitcheck curve` judges.

    log = read_log("runs/my-run")            # a run folder, scalars.jsonl, a CSV export, TensorBoard events
    log.rows[0]                              # {"step": 1, "loss": 10.4, "lr": 6e-6, "grad_norm": 3.1, ...}
    spec = read_spec(log, config="train.yaml", params="95M", vocab=32000)

Formats, each through the reader made for it (no hand-written parsers of binary formats):
- JSON lines (one object per line: step, loss, lr, grad_norm, ...), as bitcheck and many loops write
  `metrics/scalars.jsonl`; a bitcheck run folder adds its `metrics/evals.jsonl` (validation loss) and
  `config.json`; a Hugging Face Trainer's `trainer_state.json` (its `log_history`), or its output folder
  (the latest `checkpoint-N/trainer_state.json`, the model's `config.json`);
- CSV (`csv.DictReader`): an experiment tracker's export ("Step", "my-run - train/loss", with
  `__MIN`/`__MAX` companion columns), or a logger's `metrics.csv` (one row per step per split, blanks
  elsewhere);
- TensorBoard event files or a folder of them, through tensorboard's own `EventAccumulator` (the
  optional extra `bitcheck[tb]`).
Metric names are matched on the last path segment, case-insensitive, with the usual synonyms (ALIASES);
unknown columns are kept under their own names. Config: JSON, YAML or TOML, nested or flat; keys found
by the same synonyms at any depth (a bitcheck config.json, a Hugging Face config.json, a Lightning
hparams.yaml). Errors: `LogError` (a UserError: one line, exit 2) for a missing or unreadable file,
a log without a loss, a config without what is needed.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from bitcheck.errors import UserError


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
            [*p.rglob("metrics.csv"), *p.rglob("*.jsonl")])  # e.g. lightning_logs/version_0/metrics.csv
        if len(logs) == 1:
            return read_log(str(logs[0]))
        found = "; ".join(str(q) for q in logs[:4]) + ("; ..." if len(logs) > 4 else "")
        raise LogError(f"{path} holds no metrics/scalars.jsonl, TensorBoard events or trainer_state.json, and "
                       f"{len(logs)} .jsonl/.csv logs{': ' + found if logs else ''}: point at one log file")
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
        return _merge(read_csv(p), str(p))
    raise LogError(f"{path}: unknown log format; give a .jsonl, a .csv or TensorBoard events.out.tfevents* file")


# ---- the run's shape and intended schedule ---------------------------------------------------------

CONFIG_KEYS = {
    "params": ("n_params", "num_params", "params", "num_parameters", "model_params", "parameters"),
    "vocab": ("vocab_size", "n_vocab", "padded_vocab_size", "vocab"),
    "hidden": ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "n_embed", "model_dim", "emb_dim"),
    "n_layer": ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "depth"),
    "ffn": ("intermediate_size", "ffn_hidden", "ffn_dim", "d_ff", "hidden_dim", "ffn_hidden_size"),
    "n_head": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "n_kv_head": ("num_key_value_heads", "n_kv_head", "n_kv_heads", "num_kv_heads"),
    "tied": ("tie_word_embeddings", "tie_embeddings", "weight_tying", "tied_embeddings", "tie_weights"),
    "lr": ("lr", "learning_rate", "max_lr", "peak_lr", "base_lr"),
    "warmup": ("warmup_steps", "warmup", "warmup_iters", "num_warmup_steps", "lr_warmup_steps", "warmup_updates"),
    # the schedule's horizon: nanoGPT decays over lr_decay_iters (max_iters may run past it)
    "steps": ("lr_decay_iters", "num_training_steps", "total_steps", "max_steps", "train_steps", "max_iters",
              "total_iters", "max_updates", "steps"),
    "schedule": ("schedule", "lr_scheduler_type", "lr_schedule", "scheduler", "lr_scheduler", "decay_type"),
    "weight_decay": ("weight_decay", "wd"),
    "second_peak_ratio": ("second_peak_ratio",),
    "final_lr_ratio": ("final_lr_ratio", "min_lr_ratio"),
    "min_lr": ("min_lr", "final_lr", "lr_min", "end_lr"),
    "tokens_per_step": ("tokens_per_step", "total_batch_size", "batch_size_tokens", "global_batch_tokens"),
    "batch_size": ("global_batch_size", "batch_size", "train_batch_size", "per_device_train_batch_size"),
    "seq_len": ("seq_len", "block_size", "max_seq_len", "context_length", "sequence_length", "seq_length", "n_ctx"),
    "grad_accum": ("grad_accum", "gradient_accumulation_steps", "accumulate_grad_batches", "grad_accum_steps"),
}
# what a schedule is called -> the shape bitcheck computes (bitcheck/bitnet/train.py, `schedule`)
SCHEDULES = {"two_stage": "two_stage", "twostage": "two_stage", "bitnet": "two_stage",
             "cosine": "cosine", "cosine_with_min_lr": "cosine", "cos": "cosine", "constant": "constant",
             "constant_with_warmup": "constant", "linear": "linear", "linear_decay": "linear"}


def _walk(obj, prefix=""):
    """(key path, value) for every scalar of a nested config, depth first."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}{k}.")
    elif not isinstance(obj, list):
        yield prefix[:-1], obj


def read_config(path: str) -> dict:
    """A config file (JSON, YAML, TOML) as a dict; a LogError names what went wrong."""
    p = Path(path)
    if not p.is_file():
        raise LogError(f"config {path} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml  # PyYAML: installed with datasets
            data = yaml.safe_load(text)
        elif p.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parser's error is the same user mistake
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LogError(f"config {path} is not valid {p.suffix.lstrip('.') or 'JSON'}: {first}") from None
    if not isinstance(data, dict):
        raise LogError(f"config {path} is not a mapping of settings")
    return data


# sections whose settings are not the training run's (an eval loop's steps, a logger's interval)
OTHER_SECTIONS = {"eval", "evaluation", "validation", "val", "test", "logging", "logger", "checkpoint",
                  "checkpointing", "save", "generation", "generate", "data_loader", "profiler"}


def config_values(data: dict) -> dict[str, tuple[object, str]]:
    """canonical setting -> (value, the key path it came from). The first name in CONFIG_KEYS wins, then the
    shallowest key; sections of other loops (OTHER_SECTIONS) and unset values (None, a step count <= 0) are
    skipped. A schedule named under a scheduler section (`scheduler: {name: cosine}`) and nanoGPT's
    `decay_lr` are read too."""
    found: dict[str, tuple[object, str, tuple[int, int]]] = {}
    for path, value in _walk(data):
        parts = [q.lower() for q in path.split(".")]
        if value is None or any(q in OTHER_SECTIONS for q in parts[:-1]):
            continue
        leaf = parts[-1]
        if leaf in ("name", "type") and len(parts) > 1 and parts[-2] in ("scheduler", "lr_scheduler", "lr_schedule"):
            leaf = "schedule"
        if leaf == "decay_lr" and isinstance(value, bool):  # nanoGPT: cosine when on, constant when off
            leaf, value = "schedule", "cosine" if value else "constant"
        for key, names in CONFIG_KEYS.items():
            if leaf in names or (key == "schedule" and leaf == "schedule"):
                if key == "steps" and isinstance(value, (int, float)) and value <= 0:
                    continue  # HF's max_steps = -1: "use epochs"
                rank = (names.index(leaf) if leaf in names else 0, path.count("."))
                if key not in found or rank < found[key][2]:
                    found[key] = (value, path, rank)
    return {k: (v, p) for k, (v, p, _) in found.items()}


def parse_count(text: str | float | int) -> float:
    """'95M', '1.3B', '350k', '95000000' -> a number; LogError otherwise."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9+-]+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if not m:
        raise LogError(f"{text!r} is not a count (give e.g. 95M, 1.3B, 32000)")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}[m.group(2).lower()]
    return float(m.group(1)) * scale


EMBEDDING_NAME = re.compile(r"(embed|wte|tok_emb|tok\.|tok_embeddings|word_embeddings)", re.IGNORECASE)


def checkpoint_shape(path: str, vocab: int | None) -> dict:
    """Parameter count, vocabulary, hidden size and tying read from a checkpoint's tensors (.pt state
    dict, raw or nested, or .safetensors): the embedding is the largest 2-D tensor with a vocabulary-sized
    dimension; a second one of the same shape is an untied head."""
    import torch
    p = Path(path)
    if not p.is_file():
        raise LogError(f"checkpoint {path} does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any loader error is an unreadable file
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise LogError(f"checkpoint {path} cannot be read as tensors ({type(e).__name__}: {first})") from None
    while isinstance(sd, dict) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
        nested = [v for v in sd.values() if isinstance(v, dict)]
        if not nested:
            break
        sd = max(nested, key=len)
    tensors = {k: v for k, v in (sd.items() if isinstance(sd, dict) else []) if isinstance(v, torch.Tensor)}
    if not tensors:
        raise LogError(f"checkpoint {path} holds no tensors")
    mats = {k: v for k, v in tensors.items() if v.dim() == 2}
    named = [v for k, v in mats.items() if EMBEDDING_NAME.search(k)]
    if vocab is None:  # the embedding's rows: a tensor named like one, else the largest matrix dimension
        vocab = named[0].shape[0] if named else max((max(v.shape) for v in mats.values()), default=None)
    emb = [v for v in mats.values() if vocab in v.shape]
    if named and vocab is not None:
        emb = [v for v in emb if v.shape == named[0].shape]  # embedding and head, not an MLP of that width
    storages = {}  # a tied head shares the embedding's storage: count it once
    for v in tensors.values():
        storages[(v.data_ptr(), tuple(v.shape))] = v.numel()
    emb_unique = {(v.data_ptr(), tuple(v.shape)): v.numel() for v in emb}
    hidden = (emb[0].shape[1] if emb[0].shape[0] == vocab else emb[0].shape[0]) if emb else None
    return {"params": float(sum(storages.values())), "vocab": vocab, "hidden": hidden,
            "embedding_params": float(sum(emb_unique.values())) if emb else None,
            "tied": len(emb_unique) == 1 if emb else None}


@dataclass
class RunSpec:
    """The shape of the model and the run's intended schedule, with where each value came from."""
    params: float | None = None  # every parameter, embeddings included
    embedding_params: float | None = None  # input embedding + output head (once if tied)
    vocab: int | None = None
    hidden: int | None = None
    tied: bool | None = None
    tokens_per_step: float | None = None
    lr: float | None = None  # intended peak LR
    warmup: int | None = None
    steps: int | None = None  # the schedule's horizon
    schedule: str | None = None  # two_stage | cosine | constant
    weight_decay: float | None = None
    second_peak_ratio: float = 0.5  # BitNet b1.58's two-stage defaults (bitcheck/bitnet/config.py)
    final_lr_ratio: float = 0.1
    origin: dict[str, str] = field(default_factory=dict)  # field -> "--params", "config train.lr", ...

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def estimate_params(v: dict) -> tuple[float, float] | None:
    """(total, embedding) parameters of a LLaMA-style decoder from its config: attention 2*d*d + 2*d*d_kv,
    a gated FFN 3*d*ffn (8*d*d when ffn is not given, as 8/3*d gated or 4*d plain both are), per layer;
    vocab*d for the embedding, twice when the head is untied. Norms are negligible."""
    d, layers, vocab = v.get("hidden"), v.get("n_layer"), v.get("vocab")
    if not (d and layers and vocab):
        return None
    heads, kv = v.get("n_head"), v.get("n_kv_head")
    d_kv = d * kv / heads if heads and kv else d
    ffn = 3 * d * v["ffn"] if v.get("ffn") else 8 * d * d
    emb = vocab * d * (1 if v.get("tied", True) else 2)
    return layers * (2 * d * d + 2 * d * d_kv + ffn) + emb, emb


def read_spec(log: RunLog, config: str | None = None, checkpoint: str | None = None, **given) -> RunSpec:
    """The RunSpec from, in order of precedence: `given` options (params, vocab, hidden, tokens_per_step,
    lr, warmup, steps, schedule, tied; None = not given), the config file (or the run folder's own), the
    checkpoint's tensors, and the log itself (tokens per step from a logged token count)."""
    spec, origin = RunSpec(), {}
    raw = {k: (v, f"--{k.replace('_', '-')}") for k, v in given.items() if v is not None}
    config = config or log.config_path
    if config:
        for k, (v, where) in config_values(read_config(config)).items():
            raw.setdefault(k, (v, f"config {Path(config).name}: {where}"))
    for k, (v, where) in config_values(log.settings).items():
        raw.setdefault(k, (v, f"{Path(log.source).name}: {where}"))
    if checkpoint:
        vocab = raw.get("vocab", (None,))[0]
        for k, v in checkpoint_shape(checkpoint, int(vocab) if vocab else None).items():
            if v is not None:
                raw.setdefault(k, (v, f"checkpoint {Path(checkpoint).name}"))
    vals = {k: v for k, (v, _) in raw.items()}
    ints = ("vocab", "hidden", "n_layer", "ffn", "n_head", "n_kv_head", "warmup", "steps", "batch_size",
            "seq_len", "grad_accum")
    try:
        for k in ints:
            if k in vals:
                vals[k] = int(parse_count(vals[k]))
        for k in ("params", "tokens_per_step", "lr", "weight_decay", "min_lr", "second_peak_ratio",
                  "final_lr_ratio", "embedding_params"):
            if k in vals:
                vals[k] = parse_count(vals[k]) if k in ("params", "tokens_per_step") else float(vals[k])
    except (TypeError, ValueError) as e:
        raise LogError(f"a setting is not a number ({e})") from None
    for k in ("params", "vocab", "hidden", "tokens_per_step", "lr", "steps", "batch_size", "seq_len", "grad_accum"):
        if k in vals and not vals[k] > 0:
            raise LogError(f"{k.replace('_', '-')} must be positive, got {vals[k]:g} ({raw[k][1]})")
    for k in ("warmup", "weight_decay"):
        if k in vals and vals[k] < 0:
            raise LogError(f"{k.replace('_', '-')} must be >= 0, got {vals[k]:g} ({raw[k][1]})")
    if "tied" in vals:
        vals["tied"] = vals["tied"] if isinstance(vals["tied"], bool) else str(vals["tied"]).lower() in ("1", "true", "yes")
    for k in ("params", "vocab", "hidden", "tied", "tokens_per_step", "lr", "warmup", "steps", "weight_decay",
              "second_peak_ratio", "final_lr_ratio", "embedding_params"):
        if k in vals:
            setattr(spec, k, vals[k])
            origin[k] = raw[k][1]
    if "schedule" in vals:
        name = str(vals["schedule"]).lower().replace(" ", "_").replace("-", "_")
        spec.schedule = SCHEDULES.get(name, name)
        origin["schedule"] = raw["schedule"][1]
    if spec.lr and "min_lr" in vals and "final_lr_ratio" not in vals:
        spec.final_lr_ratio = vals["min_lr"] / spec.lr
    tokens = log.series("tokens")  # what the run counted beats what a config's batch settings imply
    if spec.tokens_per_step is None and len(tokens) >= 2 and tokens[-1][0] > tokens[0][0] and not log.counted:
        spec.tokens_per_step = (tokens[-1][1] - tokens[0][1]) / (tokens[-1][0] - tokens[0][0])
        origin["tokens_per_step"] = f"the log's {log.columns.get('tokens', 'tokens')} column"
    if spec.tokens_per_step is None and "batch_size" in vals and "seq_len" in vals:
        spec.tokens_per_step = float(vals["batch_size"] * vals["seq_len"] * vals.get("grad_accum", 1))
        origin["tokens_per_step"] = "batch_size x seq_len x grad_accum (" + ", ".join(
            raw[k][1] for k in ("batch_size", "seq_len", "grad_accum") if k in raw) + "; check it: some " \
            "configs' batch size already includes accumulation or counts one device)"
    if spec.embedding_params is None and spec.vocab and spec.hidden:
        spec.embedding_params = float(spec.vocab * spec.hidden * (1 if spec.tied in (True, None) else 2))
        origin["embedding_params"] = ("vocab x hidden" + (" (tied assumed)" if spec.tied is None else
                                                           " x 2 (untied head)" if spec.tied is False else ""))
    if spec.params is None:
        est = estimate_params(vals)
        if est:
            spec.params = est[0]
            origin["params"] = "estimated from the config's shape (LLaMA-style decoder)"
    spec.origin = origin
    return spec
