"""The run's shape and intended schedule, read from its config, its checkpoint and the options given:
what `bitcheck curve` needs beside the log (bitcheck/user/runlog.py) to fit capacity and compare schedules.

    spec = read_spec(log, config="train.yaml", params="95M", vocab=32000)
    spec.lr, spec.warmup, spec.steps, spec.schedule, spec.params, spec.origin["lr"]   # "config train.yaml: optim.lr"

Config: JSON, YAML or TOML, nested or flat; settings found by their usual names (CONFIG_KEYS) at any
depth (a bitcheck config.json, a Hugging Face config.json, a Lightning hparams.yaml, a DeepSpeed config's
scheduler.params); or the shell script that launched the run (its llm.c or --name=value flags:
bitcheck/user/cmdline.py), as is a command line a text log printed. Errors: LogError (one line, exit 2) for a config that cannot be read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bitcheck.user.cmdline import command_settings
from bitcheck.user.runlog import LogError, RunLog

SCRIPTS = (".sh", ".bash", ".zsh", ".slurm", ".sbatch", ".cmd")  # --config given as the launch script

CONFIG_KEYS = {
    "params": ("n_params", "num_params", "params", "num_parameters", "model_params", "parameters"),
    "vocab": ("vocab_size", "n_vocab", "padded_vocab_size", "vocab"),
    "hidden": ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "n_embed", "model_dim", "emb_dim"),
    "n_layer": ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "depth"),
    "ffn": ("intermediate_size", "ffn_hidden", "ffn_dim", "d_ff", "hidden_dim", "ffn_hidden_size", "ff_hidden",
            "ff_dim", "d_ffn", "mlp_dim", "ffn_size"),
    "n_head": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "n_kv_head": ("num_key_value_heads", "n_kv_head", "n_kv_heads", "num_kv_heads"),
    "tied": ("tie_word_embeddings", "tie_embeddings", "weight_tying", "tied_embeddings", "tie_weights"),
    "lr": ("lr", "learning_rate", "max_lr", "peak_lr", "base_lr", "warmup_max_lr"),  # DeepSpeed: scheduler.params
    "warmup": ("warmup_steps", "warmup", "warmup_iters", "num_warmup_steps", "lr_warmup_steps", "warmup_updates",
               "warmup_num_steps"),
    # the schedule's horizon: nanoGPT decays over lr_decay_iters (max_iters may run past it)
    "steps": ("lr_decay_iters", "num_training_steps", "total_steps", "max_steps", "train_steps", "max_iters",
              "total_iters", "max_updates", "total_num_steps", "steps"),
    "schedule": ("schedule", "lr_scheduler_type", "lr_schedule", "scheduler", "lr_scheduler", "decay_type"),
    "weight_decay": ("weight_decay", "wd"),
    "second_peak_ratio": ("second_peak_ratio",),
    "final_lr_ratio": ("final_lr_ratio", "min_lr_ratio"),
    "pct_start": ("pct_start",),  # torch's OneCycleLR
    "div_factor": ("div_factor",),
    "final_div_factor": ("final_div_factor",),
    "min_lr": ("min_lr", "final_lr", "lr_min", "end_lr"),
    "tokens_per_step": ("tokens_per_step", "total_batch_size", "batch_size_tokens", "global_batch_tokens"),
    "batch_size": ("global_batch_size", "batch_size", "train_batch_size", "per_device_train_batch_size"),
    "seq_len": ("seq_len", "block_size", "max_seq_len", "context_length", "sequence_length", "seq_length", "n_ctx"),
    "grad_accum": ("grad_accum", "gradient_accumulation_steps", "accumulate_grad_batches", "grad_accum_steps"),
}
# what a schedule is called -> the shape bitcheck computes (bitcheck/bitnet/train.py, `schedule`)
SCHEDULES = {"two_stage": "two_stage", "twostage": "two_stage", "bitnet": "two_stage",
             "cosine": "cosine", "cosine_with_min_lr": "cosine", "cos": "cosine", "constant": "constant",
             # DeepSpeed's scheduler types
             "warmupdecaylr": "linear", "warmuplr": "constant", "warmupcosinelr": "cosine",
             "constant_with_warmup": "constant", "linear": "linear", "linear_decay": "linear",
             # torch's OneCycleLR (and DeepSpeed's OneCycle, whose cycle is the same rise and fall)
             "onecyclelr": "one_cycle", "onecycle": "one_cycle", "one_cycle": "one_cycle", "1cycle": "one_cycle"}


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
    text = p.read_text(encoding="utf-8", errors="replace")
    if p.suffix in SCRIPTS:  # the command that launched the run: its flags are the settings
        settings = command_settings(text)
        if not settings:
            raise LogError(f"config {path} launches no training command bitcheck reads (llm.c's train_gpt2cu flags, "
                           "or --name=value flags of python, torchrun, accelerate, deepspeed ...)")
        return settings
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
    div_factor: float = 25.0  # OneCycleLR: starts at lr / div_factor, ends at that / final_div_factor (torch defaults)
    final_div_factor: float = 1e4
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
                  "final_lr_ratio", "embedding_params", "pct_start", "div_factor", "final_div_factor"):
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
              "second_peak_ratio", "final_lr_ratio", "embedding_params", "div_factor", "final_div_factor"):
        if k in vals:
            setattr(spec, k, vals[k])
            origin[k] = raw[k][1]
    if "schedule" in vals:
        name = str(vals["schedule"]).lower().replace(" ", "_").replace("-", "_")
        spec.schedule = SCHEDULES.get(name, name)
        origin["schedule"] = raw["schedule"][1]
    if spec.schedule == "one_cycle" and spec.warmup is None and spec.steps:  # its rise is pct_start of the steps
        spec.warmup = round(vals.get("pct_start", 0.3) * spec.steps)
        origin["warmup"] = f"OneCycleLR's pct_start {vals.get('pct_start', 0.3):g} x steps"
    if spec.lr and "min_lr" in vals and ("final_lr_ratio" not in vals or raw["min_lr"][1].startswith("--")):
        spec.final_lr_ratio = vals["min_lr"] / spec.lr  # an option beats a config's ratio
        origin["final_lr_ratio"] = f"{raw['min_lr'][1]} / lr"
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
