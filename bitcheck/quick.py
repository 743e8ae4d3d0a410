"""The quick sanity runs: train a tiny BitNet on a synthetic task with a known right answer,
evaluate it on held-out examples while it trains, stop as soon as the task passes, and write
the run directory and report.

    report, code = run_quick(QuickOptions(task="arith"))   # or "json", "python"

The CLI (`bitcheck quick-arith`, `quick-json`, `quick-python`) is a thin layer over `run_quick`;
tests call either. After training the probes run on the model (bitcheck/diagnostics.py) and the
decision tree gives the verdict. Real text is bitcheck/tinystories.py, on the same Trainer and probes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from bitcheck.config import PRESETS, ConfigError, ModelConfig, TrainConfig, preset_config
from bitcheck.model import BitNet
from bitcheck.report import write_report
from bitcheck.rundir import RunDir, RunDirError, append_jsonl, atomic_write_text, load_checkpoint
from bitcheck.train import Trainer, resolve_device
from bitcheck.diagnostics import make_watchers, probe_results, task_subject
from bitcheck.verdict import decide
from synthetic.arithmetic import ArithmeticTask
from synthetic.json_records import JsonTask
from synthetic.python_subset import PythonTask
from synthetic.base import CharTokenizer, Example, Task


@dataclass
class QuickOptions:
    task: str = "arith"
    preset: str | None = None  # None: measured default for the device (see default_recipe)
    steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    ops: str = "+-"
    precision: str | None = None
    compile: bool | None = None
    eval_every: int | None = None
    progress: bool = True
    overrides: dict = field(default_factory=dict)  # TrainConfig fields, for tests and experiments
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields, for experiments


# Per-task CPU recipes, chosen by measurement (README, "Choosing the quick-run recipes"). Every quick
# run uses the tiny preset on CPU and 5m on CUDA, fp32 compiled on CPU and bf16 on CUDA, and decides
# its own length: cosine cycles of CYCLE steps with warm restarts, stopping at PASS, after STALL_EVALS
# evaluations without gain (one whole cycle), or when the time budget runs out. No step limit binds.
# The loss mask is the task's (answer-only for arithmetic, every token for JSON and Python).
CYCLE = 1500  # arithmetic seeds 3/4 passed at 1200/1300 steps of a 1500 cosine, 1900/1800 at constant LR
STALL_EVALS = 15  # one cycle: a restart first lowers the score, a cycle later it must have gained
NO_STEP_LIMIT = 1_000_000
RECIPES: dict[str, dict] = {
    # one problem per 16-token row, starting right after <bos> ("100 + 100 = 200\n" is 16 characters):
    # the operands' digits sit at nearly fixed positions, so every seed "clicks" by step ~500 where
    # 64-token rows of packed lines took 900 to 3000+; loss on the answers, 256 x 16 tokens, LR 3e-3
    "arith": dict(train=dict(batch_size=256, seq_len=16, lr=3e-3, warmup_steps=100), model={}),
    # whole records in context (a record is <= 49 characters)
    "json": dict(train=dict(batch_size=32, seq_len=128, lr=3e-3, warmup_steps=100), model={}),
    # a program is <= 240 characters: the context must hold the prompt and a whole sample
    "python": dict(train=dict(batch_size=16, seq_len=256, lr=3e-3, warmup_steps=100),
                   model=dict(block_size=320)),
}


def default_recipe(device: torch.device, task: str = "arith") -> dict:
    """The defaults that make a quick run pass fast on this device, chosen by measurement. A model
    trained on answers only never learns to write problems, so the sample-text probes SKIP with
    that reason; the sampler and KV-cache probes still check generation."""
    cpu = device.type == "cpu"
    recipe = RECIPES[task]
    return dict(
        preset="tiny" if cpu else "5m",
        train=dict(schedule="cosine", cycle_steps=CYCLE, stall_evals=STALL_EVALS, steps=NO_STEP_LIMIT,
                   precision="fp32" if cpu else "bf16", compile=cpu, eval_every=100, log_every=10,
                   **recipe["train"]),
        model=dict(recipe["model"]),
        minutes=15.0,
    )


TASKS: dict[str, type[Task]] = {"arith": ArithmeticTask, "json": JsonTask, "python": PythonTask}


def build_task(name: str, ops: str = "+-") -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if name != "arith":
        return TASKS[name]()
    try:
        return ArithmeticTask(ops=ops)
    except ValueError as e:
        raise ConfigError(str(e)) from None


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


@torch.no_grad()
def complete(model: BitNet, tokenizer: CharTokenizer, prompts: list[str], max_new_tokens: int,
             stop: str = "\n", temperature: float = 0.0, seed: int = 0) -> list[str]:
    """Completions up to the first `stop`, greedy (temperature 0) or sampled with a fixed seed,
    batched by prompt length (no padding, so no mask subtleties)."""
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


def score_task(model: BitNet, task: Task) -> tuple[list[tuple[Example, str]], dict, bool]:
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


# Rows of the fixed validation batch (indices no training step uses): 64 rows of the training shape
# put ~1,000 answer tokens behind each validation loss, enough to see a 1% change (stall_rel).
VAL_ROWS = 64


def validation_batch(task: Task, seed: int, seq_len: int, answer_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of fresh training-distribution sequences at negative indices, which training never draws."""
    rows = [task.training_sequence(seed, -1 - r, seq_len + 1, answer_only) for r in range(VAL_ROWS)]
    ids = torch.tensor([r[0] for r in rows], dtype=torch.long)  # (R, T+1)
    mask = torch.tensor([r[1] for r in rows], dtype=torch.bool)
    x, y = ids[:, :-1], ids[:, 1:].clone()  # (R, T) each
    y[~mask[:, 1:]] = -1
    return x, y


def make_evaluator(task: Task, run: RunDir, val: tuple[torch.Tensor, torch.Tensor] | None = None):
    criteria = task.pass_criteria()

    def evaluate(model: BitNet, step: int) -> dict:
        pairs, score, passed = score_task(model, task)
        for ex, got in pairs[:3]:
            append_jsonl(run.samples, {"step": step, "prompt": ex.prompt, "generated_text": got,
                                       "expected": ex.answer.strip()})
        result = {"score": score, "passed": passed, "stop": passed, "gate": gate(score, criteria)}
        if val is not None:
            device = next(model.parameters()).device
            with torch.no_grad():
                result["val_loss"] = model(val[0].to(device), val[1].to(device))[1].item()
        return result
    return evaluate


def _setup(opts: QuickOptions, resume: str | None):
    """Configs, run directory and model for a new run, or those of the run being resumed."""
    if resume:
        run = RunDir.existing(resume)
        ckpt = load_checkpoint(run.latest_checkpoint())
        try:
            mcfg = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
            tcfg = TrainConfig.from_dict(json.loads(ckpt["train_config"]))
            task_meta = json.loads(ckpt.get("task", "{}"))
        except (ValueError, TypeError, KeyError) as e:
            raise RunDirError(f"{resume}: checkpoint metadata is unreadable ({e})") from None
        if task_meta.get("name") != opts.task:
            raise RunDirError(f"{resume} is a {task_meta.get('name', 'unknown')!r} run, not {opts.task!r}")
        if opts.steps is not None:
            tcfg.steps = opts.steps  # extend (or shorten) the schedule horizon
        if opts.minutes is not None:
            tcfg.max_minutes = opts.minutes
        task = build_task(opts.task, task_meta.get("ops") or "+-")
        answer_only = task_meta.get("answer_only", task.answer_only)
        return run, mcfg, tcfg, task, answer_only, ckpt
    device = resolve_device(opts.device)
    task = build_task(opts.task, opts.ops)
    recipe = default_recipe(device, opts.task)
    mcfg = preset_config(opts.preset or recipe["preset"], vocab_size=task.tokenizer.vocab_size,
                         **{**recipe["model"], **opts.model_overrides})
    tdict = dict(recipe["train"], seed=opts.seed, device=opts.device,
                 max_minutes=opts.minutes if opts.minutes is not None else recipe["minutes"])
    if opts.steps is not None:
        tdict["steps"] = opts.steps
    for key in ("precision", "compile", "eval_every"):
        if getattr(opts, key) is not None:
            tdict[key] = getattr(opts, key)
    tdict.update(opts.overrides)
    answer_only = tdict.pop("answer_only", task.answer_only)
    tcfg = TrainConfig(**tdict)
    if tcfg.seq_len > mcfg.block_size:
        raise ConfigError(f"seq_len {tcfg.seq_len} exceeds the preset's context of {mcfg.block_size}")
    run = RunDir.create(opts.out, f"{task.name}-s{opts.seed}")
    return run, mcfg, tcfg, task, answer_only, None


def run_quick(opts: QuickOptions, resume: str | None = None, command: str = "quick-arith") -> tuple[dict, int]:
    """Train, evaluate, write the run directory and report. Returns (report, exit code)."""
    run, mcfg, tcfg, task, answer_only, ckpt = _setup(opts, resume)
    torch.manual_seed(tcfg.seed)
    model = BitNet(mcfg)
    task_meta = {"name": opts.task, "ops": "".join("/" if o == "//" else o for o in getattr(task, "ops", ())),
                 "answer_only": answer_only}
    meta = {"model_config": json.dumps(mcfg.to_dict()), "tokenizer": task.tokenizer.to_json(),
            "task": json.dumps(task_meta)}
    batches = task_batches(task, tcfg.seed, tcfg.batch_size, tcfg.seq_len, answer_only)
    watchers = make_watchers()
    trainer = Trainer(model, tcfg, batches, run, meta, progress=opts.progress, watchers=watchers)
    if ckpt is not None:
        trainer.load_state(ckpt)
    atomic_write_text(run.config, json.dumps({"command": command, "model": mcfg.to_dict(),
                                              "train": tcfg.to_dict(), "task": task_meta,
                                              "tokenizer": task.tokenizer.to_dict()}, indent=2))
    criteria = task.pass_criteria()
    val = validation_batch(task, tcfg.seed, tcfg.seq_len, answer_only)
    result = trainer.run(evaluate=make_evaluator(task, run, val))
    scalars = run.read_jsonl(run.metrics)
    metrics = {
        "task": opts.task, "preset": opts.preset or _preset_name(mcfg), **trainer.summary(result, scalars),
        "accuracy": result.last_eval.get("score", {}).get("per_group", {}),
        "pass_criteria": criteria,
        "failures": result.last_eval.get("score", {}).get("failures", []),
        "checkpoint": result.checkpoint,
    }
    if tcfg.stall_evals:  # a run that stops when it stalls knows whether it was still improving
        metrics["improving"] = result.stopped != "stalled"
        metrics["stall"] = trainer.stall.describe(tcfg)
    subject = task_subject(model, mcfg, task, batches, tcfg.seed, watchers, trainer.optimizer,
                           answer_only=answer_only)
    # after Ctrl-C only the quick weight-level probes run, so the report is written promptly
    probes = probe_results(subject, kinds=("static",) if result.stopped == "interrupted" else None)
    verdict = decide(probes, metrics, scalars, result.last_eval.get("passed", False), str(run.path))
    report = {"command": command, "verdict": verdict, "metrics": metrics, "probes": probes, "run_dir": str(run.path)}
    write_report(run, report)
    code = 0 if verdict["status"] == "PASS" else (130 if result.stopped == "interrupted" else 1)
    return report, code


def _preset_name(cfg: ModelConfig) -> str:
    for name, p in PRESETS.items():
        # a task may widen the context (RECIPES): the preset is still the same model
        if all(getattr(cfg, k) == v for k, v in p.items() if v is not None and k != "block_size"):
            return name
    return "custom"
