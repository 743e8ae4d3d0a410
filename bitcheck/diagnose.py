"""`bitcheck diagnose CHECKPOINT`: probe a saved BitNet, ours or a user's own.

    report, code = diagnose("runs/arithmetic-s0-.../checkpoints/step_1300/checkpoint.pt")

- Our checkpoints (configs, tokenizer and task inside): the model is rebuilt and every probe that
  applies runs, the task is scored, and the tree gives the verdict as after training (the loss
  curve is read from the run directory when the checkpoint still sits in one).
- Foreign PyTorch files (a raw state dict, or one nested under `model`, `model_state_dict` or
  `state_dict`; `_orig_mod.` and `module.` prefixes stripped) and `.safetensors`: without the model
  code only the tensor probes run (probes/tensors.py): NaN/Inf, latent weights and dead rows, the
  HF packed layout and its scale convention.

- A user's own model code (`--model module.path:factory`, bitcheck/user_model.py): the factory
  loads the checkpoint, and the dynamic probes run on the user's model with their tokenizer
  (`--tokenizer`) and sample text (`--text`). Whether the model has learned that text (its loss
  against the text's unigram entropy) decides whether poor samples mean broken generation or an
  undertrained model.

The input file is only read (tested by hashing). A file that is not a checkpoint is a
DiagnoseError: one line, exit 2.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from bitcheck.config import ConfigError, ModelConfig
from bitcheck.diagnostics import probe_results, task_subject
from bitcheck.model import BitNet
from bitcheck.quick import build_task, score_task, task_batches
from bitcheck.rundir import RunDir, first_line
from bitcheck.train import resolve_device
from bitcheck.user_model import LEARNED_MARGIN, UserModelError, call_factory, user_subject
from bitcheck.verdict import decide
from probes import Subject

NESTED_KEYS = ("model_state_dict", "state_dict", "model")  # where trainers nest the weights
PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DistributedDataParallel wrappers
OURS = ("model_state_dict", "model_config", "tokenizer")


class DiagnoseError(ValueError):
    """A user mistake about the input: one line, exit 2."""


def load_file(path: str | Path) -> tuple[object, str]:
    """(contents, format) of a .safetensors or PyTorch file; anything else is a DiagnoseError."""
    p = Path(path)
    if not p.is_file():
        raise DiagnoseError(f"{path}: no such file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(str(p)), "safetensors"
        except (SafetensorError, OSError, ValueError) as e:
            raise DiagnoseError(f"{path} is not a readable safetensors file ({first_line(e)})") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True), "pytorch"
    except Exception as e:  # torch raises many types for truncated, foreign or unsafe pickles
        raise DiagnoseError(f"{path} is not a readable PyTorch checkpoint ({first_line(e)})") from None


def find_state_dict(obj: object, path: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a raw or nested state dict, and the key they were nested under."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner, key
    what = f"a dict with keys {sorted(map(str, obj))[:6]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise DiagnoseError(f"{path} holds {what}, not a state dict (tensors at the top level or under "
                        f"{', '.join(NESTED_KEYS)})")


def strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes (`_orig_mod.`, `module.`, in any order and repetition) from every key."""
    out, seen = {}, set()
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
                    seen.add(prefix)
        out[key] = value
    return out, sorted(seen)


def diagnose(path: str | Path, device: str = "auto", factory=None, tokenizer: str | None = None,
             text: str | None = None, layers: str | None = None) -> tuple[dict, int]:
    """Probe a checkpoint file, with the user's model `factory` when given. Returns (report, exit code
    0 PASS / 1 FAIL)."""
    try:
        dev = str(resolve_device(device))
    except ConfigError as e:
        raise DiagnoseError(str(e)) from None
    if not Path(path).is_file():
        raise DiagnoseError(f"{path}: no such file")
    if factory is None and (tokenizer or text or layers):
        raise DiagnoseError("--tokenizer, --text and --layers need the model code: give --model module.path:factory")
    if factory is not None:
        try:
            report = _diagnose_user(factory, Path(path), dev, tokenizer, text, layers)
        except UserModelError as e:
            raise DiagnoseError(str(e)) from None
        return report, 0 if report["verdict"]["status"] == "PASS" else 1
    obj, fmt = load_file(path)
    if isinstance(obj, dict) and all(k in obj for k in OURS):
        report = _diagnose_ours(obj, Path(path), dev)
    else:
        report = _diagnose_tensors(obj, Path(path), fmt)
    return report, 0 if report["verdict"]["status"] == "PASS" else 1


def _diagnose_ours(ckpt: dict, path: Path, device: str) -> dict:
    try:
        mcfg = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
        task_meta = json.loads(ckpt.get("task") or "{}")
        train = json.loads(ckpt.get("train_config") or "{}")
    except (ValueError, TypeError) as e:
        raise DiagnoseError(f"{path}: checkpoint metadata is unreadable ({first_line(e)})") from None
    sd, prefixes = strip_prefixes(ckpt["model_state_dict"])
    model = BitNet(mcfg)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise DiagnoseError(f"{path}: weights do not fit the stored model config ({first_line(e)})") from None
    model.to(device).eval()
    name = task_meta.get("name")
    if name == "tinystories":
        return _diagnose_stories(ckpt, model, mcfg, train, path)
    try:
        task = build_task(name, task_meta.get("ops") or "+-")
    except ValueError:
        raise DiagnoseError(f"{path}: unknown task {name!r} in the checkpoint") from None
    if task.tokenizer.to_json() != ckpt["tokenizer"]:
        raise DiagnoseError(f"{path}: the stored tokenizer does not match the {name!r} task's")
    if task.tokenizer.vocab_size != mcfg.vocab_size:
        raise DiagnoseError(f"{path}: the tokenizer has {task.tokenizer.vocab_size} tokens but the model "
                            f"{mcfg.vocab_size}")
    seed = int(train.get("seed", 0))
    answer_only = task_meta.get("answer_only", task.answer_only)
    batches = task_batches(task, seed, min(int(train.get("batch_size", 16)), 16), int(train.get("seq_len", 64)),
                           answer_only)
    subject = task_subject(model, mcfg, task, batches, seed, answer_only=answer_only)
    probes = probe_results(subject)
    _, score, passed = score_task(model, task)
    criteria = task.pass_criteria()
    run = _run_dir_of(path)
    step = int(ckpt.get("step", 0))
    scalars = [r for r in run.read_jsonl(run.metrics) if r.get("step", 0) <= step] if run else []
    metrics = {"file": str(path), "format": "bitcheck checkpoint", "task": name, "steps": step,
               "params": model.num_params(), "vocab_size": mcfg.vocab_size, "ln_vocab": math.log(mcfg.vocab_size),
               "prefixes_stripped": prefixes, "accuracy": score["per_group"], "pass_criteria": criteria,
               "failures": score["failures"], "final_loss": scalars[-1]["loss"] if scalars else None}
    verdict = decide(probes, metrics, scalars, passed, str(run.path) if run else str(path))
    return {"command": "diagnose", "verdict": verdict, "metrics": metrics, "probes": probes,
            "run_dir": str(run.path) if run else None}


def _run_dir_of(path: Path) -> RunDir | None:
    """The run directory holding runs/<id>/checkpoints/step_N/checkpoint.pt, if it is one."""
    parents = path.resolve().parents
    if len(parents) > 2 and parents[1].name == "checkpoints":
        run = RunDir(parents[2])
        if run.metrics.is_file():
            return run
    return None


def _diagnose_tensors(obj: object, path: Path, fmt: str) -> dict:
    sd, nested = find_state_dict(obj, str(path))
    sd, prefixes = strip_prefixes(sd)
    probes = probe_results(Subject(model=None, tensors=sd))
    metrics = {"file": str(path), "format": fmt if fmt == "safetensors" else "state dict",
               "nested_under": nested, "prefixes_stripped": prefixes, "tensors": len(sd),
               "params": sum(v.numel() for v in sd.values())}
    verdict = decide(probes, metrics, [], None, str(path))
    if verdict["status"] == "PASS":
        ran = [p["name"] for p in probes if p["status"] == "PASS"]
        verdict.update(category="TENSORS OK", diagnosis=(
            f"The tensors show no bug ({', '.join(ran)}). Without the model code the dynamic probes (STE "
            "gradients, quantization applied, causality, KV cache, sampler, generation) did not run."),
            next_steps=["Load the weights into your model and run every probe from Python: "
                        "`probes.run_probes(probes.Subject(model=your_model, tokenizer=...))` (README, Diagnose).",
                        "Run `bitcheck quick-arith` with your trainer's settings to compare a known-good run."])
    return {"command": "diagnose", "verdict": verdict, "metrics": metrics, "probes": probes, "run_dir": None}


def _diagnose_user(factory, path: Path, device: str, tokenizer: str | None, text: str | None,
                   layers: str | None) -> dict:
    subject, facts = user_subject(call_factory(factory, str(path)), device, tokenizer, text, layers)
    probes = probe_results(subject)
    learned = facts.get("learned")  # None without --text: nothing says whether the model learned
    metrics = {"file": str(path), "format": "user model", "factory": getattr(factory, "__name__", str(factory)),
               "text": text, "tokenizer": tokenizer, **facts}
    verdict = decide(probes, metrics, [], learned, str(path))
    if learned is False and verdict["category"] == "UNDERTRAINED":
        verdict.update(diagnosis=(
            f"Probes are healthy, but the model has not learned the text: loss {facts['text_loss']:.3f} vs "
            f"{facts['unigram_entropy']:.3f} for the best input-independent guess (unigram) and "
            f"{facts['ln_vocab']:.3f} = ln(vocab). Its samples are not evidence of a generation bug."),
            evidence=[{"probe": "text_loss", "status": "FAIL", "value": facts["text_loss"],
                       "message": f"not below the unigram entropy {facts['unigram_entropy']:.3f} by "
                                  f"{LEARNED_MARGIN} nats"}],
            next_steps=["Train longer, or check that this checkpoint is the trained one (not the init).",
                        "Check that --text is the model's training distribution and --tokenizer its tokenizer."])
    return {"command": "diagnose", "verdict": verdict, "metrics": metrics, "probes": probes, "run_dir": None}


def _diagnose_stories(ckpt: dict, model: BitNet, mcfg: ModelConfig, train: dict, path: Path) -> dict:
    """A tinystories checkpoint: its tokenizer and the validation text it carries drive the probes."""
    from tokenizers import Tokenizer

    from bitcheck.tinystories import stories_subject, verdict_for
    from bitcheck.user_model import text_batches
    from probes import TokenizerAdapter
    try:
        tok = Tokenizer.from_str(ckpt["tokenizer"])
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise DiagnoseError(f"{path}: the stored tokenizer is unreadable ({first_line(e)})") from None
    if tok.get_vocab_size() != mcfg.vocab_size:
        raise DiagnoseError(f"{path}: the tokenizer has {tok.get_vocab_size()} tokens but the model {mcfg.vocab_size}")
    text = ckpt.get("probe_text") or ""
    try:
        batches = text_batches(TokenizerAdapter(tok), text, min(int(train.get("seq_len", 64)), 64), 8)
    except UserModelError:
        raise DiagnoseError(f"{path}: the checkpoint carries too little text for the probes") from None
    probes = probe_results(stories_subject(model, mcfg, tok, batches, text))
    run = _run_dir_of(path)
    step = int(ckpt.get("step", 0))
    evals = [r for r in run.read_jsonl(run.evals) if r.get("step", 0) <= step] if run else []
    last = evals[-1] if evals else {}
    metrics = {"file": str(path), "format": "bitcheck checkpoint", "task": "tinystories", "steps": step,
               "params": model.num_params(), "vocab_size": mcfg.vocab_size, "ln_vocab": math.log(mcfg.vocab_size),
               "val_loss": last.get("val_loss"), "val_bpb": last.get("val_bpb")}
    verdict = verdict_for(probes, metrics, run, upto=step) if run else decide(probes, metrics, [], None, str(path))
    return {"command": "diagnose", "verdict": verdict, "metrics": metrics, "probes": probes,
            "run_dir": str(run.path) if run else None}
