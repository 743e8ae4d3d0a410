"""`bitcheck diagnose CHECKPOINT`: probe a saved BitNet, ours or a user's own.

    report = diagnose("runs/arithmetic-s0-.../checkpoints/step_1300/checkpoint.pt")   # a Report

- Our checkpoints (configs, tokenizer and task inside): the model is rebuilt and every probe that
  applies runs, the task is scored, and the tree gives the verdict as after training (the loss
  curve is read from the run directory when the checkpoint still sits in one).
- Foreign PyTorch files (a raw state dict, or one nested under `model`, `model_state_dict` or
  `state_dict`; `_orig_mod.` and `module.` prefixes stripped) and `.safetensors`: without the model
  code only the tensor probes run (probes/tensors.py): NaN/Inf, latent weights and dead rows, the
  HF packed layout and its scale convention.

- A user's own model code (`--model module.path:factory`, bitcheck/user/factory.py): the factory
  loads the checkpoint, and the dynamic probes run on the user's model with their tokenizer
  (`--tokenizer`) and sample text (`--text`). Whether the model has learned that text (its loss
  against the text's unigram entropy) decides whether poor samples mean broken generation or an
  undertrained model.

The input file is only read (tested by hashing). A file that is not a checkpoint is a
DiagnoseError: one line, exit 2.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet import tokenizer as toks
from bitcheck.bitnet.config import ConfigError
from bitcheck.bitnet.rundir import RunDir, RunDirError, empty_output_dir
from bitcheck.bitnet.tasks import build_task, score_task, task_batches
from bitcheck.bitnet.train import resolve_device
from bitcheck.errors import UserError, first_line
from bitcheck.judge.assess import Report, assess, run_curve
from bitcheck.judge.facts import RunFacts
from bitcheck.judge.report import write_report
from bitcheck.judge.subjects import stories_subject, task_subject, tensors_subject
from bitcheck.judge.verdict import MIN_POINTS, QUICK, STORIES, TENSORS, USER
from bitcheck.user import hf
from bitcheck.user.factory import UserModelError, call_factory, text_batches
from bitcheck.user.subjects import user_subject
from probes import TokenizerAdapter
from probes.core import release_freed_memory

NESTED_KEYS = ("model_state_dict", "state_dict", "model")  # where trainers nest the weights


class DiagnoseError(UserError):
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
        try:  # memory-mapped: the tensors are read from the file as the probes touch them, not copied up front
            return torch.load(p, map_location="cpu", weights_only=True, mmap=True), "pytorch"
        except RuntimeError as e:
            if "mmap" not in str(e):  # a file of the legacy (pre-zip) format cannot be mapped: read it whole
                raise
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


def diagnose(path: str | Path, device: str = "auto", factory=None, tokenizer: str | None = None,
             text: str | None = None, layers: str | None = None, out: str | None = None) -> Report:
    """Probe a checkpoint file, with the user's model `factory` when given. Returns the judge's Report
    (`.exit_code` 0 PASS / 1 FAIL). `out`: a new folder that also receives report.{json,md,html} (its
    path is the report's run_dir). Raises DiagnoseError (a UserError) for a file, factory or option
    that cannot be used."""
    try:
        dev = str(resolve_device(device))
    except ConfigError as e:
        raise DiagnoseError(str(e)) from None
    folder = hf.is_folder(path)
    if not Path(path).is_file() and not folder:
        raise DiagnoseError(f"{path} is a folder without config.json: not a Hugging Face model folder (give a "
                            "checkpoint file, or the folder save_pretrained wrote)" if Path(path).is_dir()
                            else f"{path}: no such file")
    if folder and factory is None:
        factory = hf.folder_factory(path)  # transformers loads it; the probes run as on a user's model
    if factory is None and (tokenizer or text or layers):
        raise DiagnoseError("--tokenizer, --text and --layers need the model code: give --model module.path:factory")
    target = None
    if out:
        try:
            target = empty_output_dir(out)
        except RunDirError as e:
            raise DiagnoseError(str(e)) from None
    try:
        report = _probe_file(Path(path), dev, factory, tokenizer, text, layers, str(target) if target else None)
    except BaseException:
        if target is not None and not any(target.iterdir()):
            target.rmdir()  # checked before the probes ran (a bad --out fails fast), left as it was
        raise
    if target is not None:
        write_report(RunDir(target), report.to_dict())
    return report


def _probe_file(path: Path, dev: str, factory, tokenizer: str | None, text: str | None, layers: str | None,
                out: str | None) -> Report:
    """The Report of one file: through the user's factory, as our checkpoint, or its tensors alone."""
    if factory is not None:
        try:
            return _diagnose_user(factory, path, dev, tokenizer, text, layers, out)
        except UserModelError as e:
            raise DiagnoseError(str(e)) from None
    obj, fmt = load_file(path)
    if ckpts.is_checkpoint(obj):
        try:
            return _diagnose_ours(ckpts.Checkpoint.from_payload(obj, str(path)), path, dev, out)
        except (ckpts.CheckpointError, toks.TokenizerError) as e:
            raise DiagnoseError(str(e)) from None
    return _diagnose_tensors(obj, path, fmt, out)


def _diagnose_ours(ckpt: ckpts.Checkpoint, path: Path, device: str, out: str | None) -> Report:
    model = ckpts.build_model(ckpt, str(path)).to(device).eval()
    mcfg, train = ckpt.model_config, ckpt.train_config
    _, prefixes = ckpts.strip_prefixes(ckpt.model_state_dict)
    run = _run_dir_of(path)
    where = out or (str(run.path) if run else None)
    facts = RunFacts(file=str(path), format="bitcheck checkpoint", task=ckpt.task.get("name"), steps=ckpt.step,
                     params=model.num_params(), vocab_size=mcfg.vocab_size, ln_vocab=math.log(mcfg.vocab_size))
    name = ckpt.task.get("name")
    if name == "tinystories":
        # its tokenizer and the validation text it carries drive the probes
        tok = toks.from_json(ckpt.tokenizer, f"{path}: the stored tokenizer")
        if tok.get_vocab_size() != mcfg.vocab_size:
            raise DiagnoseError(f"{path}: the tokenizer has {tok.get_vocab_size()} tokens but the model "
                                f"{mcfg.vocab_size}")
        text = ckpt.probe_text or ""
        try:
            batches = text_batches(TokenizerAdapter(tok), text, min(train.seq_len if train else 64, 64), 8)
        except UserModelError:
            raise DiagnoseError(f"{path}: the checkpoint carries too little text for the probes") from None
        evals = [r for r in run.read_jsonl(run.evals) if r.get("step", 0) <= ckpt.step] if run else []
        last = evals[-1] if evals else {}
        facts = facts.with_(val_loss=last.get("val_loss"), val_bpb=last.get("val_bpb"))
        # the STORIES policy decides PASS from the bits per byte (none outside the run: nothing says)
        curve = run_curve(run, ckpt.step, validation=True, min_points=MIN_POINTS) if run else []
        evidence = facts.evidence(curve, None, where or str(path))
        return assess("diagnose", stories_subject(model, mcfg, tok, batches, text), evidence, facts, STORIES,
                      run_dir=where)
    try:
        task = build_task(name, ckpt.task)
    except ConfigError:
        raise DiagnoseError(f"{path}: unknown task {name!r} in the checkpoint") from None
    if task.tokenizer.to_json() != ckpt.tokenizer:
        raise DiagnoseError(f"{path}: the stored tokenizer does not match the {name!r} task's")
    if task.tokenizer.vocab_size != mcfg.vocab_size:
        raise DiagnoseError(f"{path}: the tokenizer has {task.tokenizer.vocab_size} tokens but the model "
                            f"{mcfg.vocab_size}")
    seed = train.seed if train else 0
    answer_only = ckpt.task.get("answer_only", task.answer_only)
    batches = task_batches(task, seed, min(train.batch_size if train else 16, 16), train.seq_len if train else 64,
                           answer_only)
    subject = task_subject(model, mcfg, task, batches, seed, answer_only=answer_only)
    _, score, passed = score_task(model, task)
    scalars = [r for r in run.read_jsonl(run.metrics) if r.get("step", 0) <= ckpt.step] if run else []
    facts = facts.with_(prefixes_stripped=prefixes, accuracy=score["per_group"], pass_criteria=task.pass_criteria(),
                        failures=score["failures"], final_loss=scalars[-1]["loss"] if scalars else None)
    return assess("diagnose", subject, facts.evidence(scalars, passed, where or str(path)), facts, QUICK,
                  run_dir=where)


def _run_dir_of(path: Path) -> RunDir | None:
    """The run directory holding runs/<id>/checkpoints/step_N/checkpoint.pt, if it is one."""
    parents = path.resolve().parents
    if len(parents) > 2 and parents[1].name == "checkpoints":
        run = RunDir(parents[2])
        if run.metrics.is_file():
            return run
    return None


def _diagnose_tensors(obj: object, path: Path, fmt: str, out: str | None) -> Report:
    sd, nested = find_state_dict(obj, str(path))
    sd, prefixes = ckpts.strip_prefixes(sd)
    facts = RunFacts(file=str(path), format=fmt if fmt == "safetensors" else "state dict", nested_under=nested,
                     prefixes_stripped=prefixes, tensors=len(sd), params=count_params(sd))
    return assess("diagnose", tensors_subject(sd), facts.evidence(run_dir=str(path)), facts, TENSORS, run_dir=out)


def count_params(sd: dict[str, torch.Tensor]) -> int:
    """Weights, not stored elements: a packed uint8 weight with a `weight_scale` beside it (the HF BitNet
    layout) holds four 2-bit codes per byte, and the scale itself is no weight."""
    def n(k, v):
        if k.endswith("weight_scale") and k[:-len("_scale")] in sd:
            return 0
        packed = v.dtype == torch.uint8 and k.endswith("weight") and f"{k}_scale" in sd
        return v.numel() * (4 if packed else 1)
    return sum(n(k, v) for k, v in sd.items())


def _diagnose_user(factory, path: Path, device: str, tokenizer: str | None, text: str | None,
                   layers: str | None, out: str | None) -> Report:
    subject, found = user_subject(call_factory(factory, str(path)), device, tokenizer, text, layers)
    release_freed_memory()  # the factory's own torch.load copy, freed into glibc's heap: back to the system
    try:  # the checkpoint's own tensors, to check that the factory loaded them (probes/loading.py)
        subject.tensors = (hf.folder_tensors(path) if hf.is_folder(path)
                           else find_state_dict(load_file(path)[0], str(path))[0])
    except DiagnoseError as e:
        subject.skip["weights_loaded"] = f"the checkpoint file is not a state dict bitcheck can read ({e})"
    if hf.is_folder(path):
        config = hf.read_config(path)
        found.update(model_type=config.get("model_type"), quantization_config=config.get("quantization_config"))
    facts = RunFacts(file=str(path), format="hugging face folder" if hf.is_folder(path) else "user model",
                     factory=getattr(factory, "__name__", str(factory)), text=text, tokenizer=tokenizer, **found)
    learned = facts.known("learned")  # None without --text: nothing says whether the model learned
    return assess("diagnose", subject, facts.evidence([], learned, str(path)), facts, USER,
                  run_dir=out)
