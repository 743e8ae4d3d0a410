"""The checkpoint format: what a bitcheck checkpoint holds, and the one place that writes, reads and
rebuilds it (as nanochat's checkpoint_manager).

    save(path, ckpt)                 # atomic: a temporary file renamed into place
    ckpt = load(path)                # -> Checkpoint; load(path, resumable=True) also needs optimizer state
    model = build_model(ckpt)        # the BitNet it was trained as, weights loaded strictly

On disk a checkpoint is one `torch.save`d dict of tensors plus readable JSON strings (the model
and training configs, the tokenizer, the task), so `torch.load(path, weights_only=True)` opens it
without running pickled code. Older checkpoints lack some keys (`schedule.stall`, `probe_text`):
reading fills them with defaults. Anything that is not one of ours is a CheckpointError naming
what is wrong (one line, exit 2).

Adding a field: one line in `Checkpoint` (and in `_JSON` when it is stored as JSON text).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bitcheck.bitnet.config import ConfigError, ModelConfig, TrainConfig
from bitcheck.bitnet.model import BitNet
from bitcheck.errors import UserError, first_line

# every checkpoint of ours has these; a resumable one (written by the Trainer) also RESUMABLE
REQUIRED = ("model_state_dict", "model_config", "tokenizer")
RESUMABLE = ("optimizer_state_dict", "train_config", "step")
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DistributedDataParallel


class CheckpointError(UserError):
    """A file that is not a usable bitcheck checkpoint."""


@dataclass
class Checkpoint:
    model_state_dict: dict[str, torch.Tensor]
    model_config: ModelConfig
    tokenizer: str = "null"  # the tokenizer as JSON text: a CharTokenizer's to_json or a `tokenizers` to_str
    task: dict = field(default_factory=dict)  # {"name": "arithmetic" | "json" | "python" | "tinystories", ...}
    train_config: TrainConfig | None = None
    step: int = 0
    optimizer_state_dict: dict | None = None
    scaler_state_dict: dict | None = None
    schedule: dict = field(default_factory=dict)  # {"step", "elapsed_s", "stall"}: the Trainer's clock
    rng: dict = field(default_factory=dict)  # {"torch": ByteTensor, "cuda": [...]}
    probe_text: str | None = None  # tinystories: validation text, the probes' reference in `diagnose`

    def payload(self) -> dict:
        """The dict `torch.save` writes: tensors, numbers and JSON strings only (weights-only safe)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model_config"] = json.dumps(self.model_config.to_dict())
        d["train_config"] = json.dumps(self.train_config.to_dict()) if self.train_config else None
        d["task"] = json.dumps(self.task)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_payload(cls, d: dict, where: str = "checkpoint") -> "Checkpoint":
        """Decode a stored dict (configs and task as JSON strings, or already decoded)."""
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise CheckpointError(f"{where} is not a bitcheck checkpoint (missing {', '.join(missing)})")
        try:
            mcfg = _decode(d["model_config"])
            tcfg = _decode(d.get("train_config"))
            return cls(
                model_state_dict=d["model_state_dict"],
                model_config=mcfg if isinstance(mcfg, ModelConfig) else ModelConfig.from_dict(mcfg),
                tokenizer=d["tokenizer"] if isinstance(d["tokenizer"], str) else json.dumps(d["tokenizer"]),
                task=_decode(d.get("task")) or {},
                train_config=tcfg if isinstance(tcfg, TrainConfig) or tcfg is None else TrainConfig.from_dict(tcfg),
                step=int(d.get("step", 0)),
                optimizer_state_dict=d.get("optimizer_state_dict"),
                scaler_state_dict=d.get("scaler_state_dict") or None,
                schedule=dict(d.get("schedule") or {}),
                rng=dict(d.get("rng") or {}),
                probe_text=d.get("probe_text"))
        except (ValueError, TypeError, KeyError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{where}: checkpoint metadata is unreadable ({first_line(e)})") from None


def _decode(value):
    return json.loads(value) if isinstance(value, str) else value


def is_checkpoint(obj: object) -> bool:
    """Is this `torch.load`ed object one of our checkpoints (rather than a foreign state dict)?"""
    return isinstance(obj, dict) and all(k in obj for k in REQUIRED)


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write atomically: an interrupted save never leaves a half-written file where resume looks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt.payload(), tmp)
    os.replace(tmp, path)


def read_payload(path: str | Path, resumable: bool = True) -> dict:
    """The stored dict, checked for our keys (RESUMABLE too when `resumable`)."""
    path = Path(path)
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as e:  # torch raises many types for truncated / foreign files
        raise CheckpointError(f"{path} is not a readable bitcheck checkpoint ({first_line(e)})") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{path} is not a bitcheck checkpoint (holds a {type(d).__name__}, not a dict)")
    missing = [k for k in REQUIRED + (RESUMABLE if resumable else ()) if k not in d]
    if missing:
        raise CheckpointError(f"{path} is not a bitcheck checkpoint (missing {', '.join(missing)})")
    return d


def load(path: str | Path, resumable: bool = False) -> Checkpoint:
    return Checkpoint.from_payload(read_payload(path, resumable), str(path))


def strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes (`_orig_mod.`, `module.`, in any order and repetition) from every key."""
    out, seen = {}, set()
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
                    seen.add(prefix)
        out[key] = value
    return out, sorted(seen)


def build_model(ckpt: Checkpoint, where: str = "checkpoint") -> BitNet:
    """The BitNet of the stored config with the stored weights (wrapper prefixes stripped, strict).
    A run of the user's own model (`--model`) stored their weights, which only their code can rebuild."""
    if ckpt.task.get("model"):
        raise CheckpointError(f"{where}: this run trained your own model ({ckpt.task['model']}), which bitcheck "
                              "cannot rebuild: diagnose it with --model module:factory, where factory(path) loads "
                              "it (weights under 'model_state_dict'; from a quick run their keys start with 'net.')")
    try:
        model = BitNet(ckpt.model_config)
    except ConfigError as e:
        raise CheckpointError(f"{where}: the stored model config is invalid ({e})") from None
    sd, _ = strip_prefixes(ckpt.model_state_dict)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: weights do not fit the stored model config ({first_line(e)})") from None
    return model
