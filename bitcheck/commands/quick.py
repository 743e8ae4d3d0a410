"""The quick sanity runs: train a tiny BitNet on a synthetic task with a known right answer,
evaluate it on held-out examples while it trains, stop as soon as the task passes, and write
the run directory and report.

    report = run_quick(QuickOptions(task="arith"))   # or "json", "python" (bitcheck/bitnet/tasks.py); a Report

The CLI (`bitcheck quick-<task>`) is a thin layer over `run_quick`; tests call either. A run decides
its own length: cosine cycles of CYCLE steps with warm restarts, stopping at PASS, after STALL_EVALS
evaluations without gain, or when the time budget runs out. Then the Subject (bitcheck/judge/subjects.py)
and the evidence go to the one judge (bitcheck/judge/assess.py). Real text is bitcheck/commands/tinystories.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet.config import PRESETS, ConfigError, ModelConfig, TrainConfig, preset_config
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.rundir import RunDir, RunDirError, append_jsonl, atomic_write_text
from bitcheck.bitnet.tasks import (
    CYCLE,
    NO_STEP_LIMIT,
    REFERENCE_SCHEDULE,
    STALL_EVALS,
    TASKS,
    build_task,
    make_evaluator,
    task_batches,
    task_options,
    validation_batch,
)
from bitcheck.bitnet.train import Stop, Trainer, resolve_device
from bitcheck.judge.assess import Report, assess
from bitcheck.judge.facts import RunFacts
from bitcheck.judge.report import write_report
from bitcheck.judge.subjects import make_watchers, task_subject
from bitcheck.judge.verdict import QUICK
from bitcheck.user.adapter import Adapter, ModelSpec, build_for_training, load_adapter
from bitcheck.user.bisection import bisect, reference_run
from bitcheck.user.session import USER_HORIZON
from bitcheck.user.subjects import own_history, own_model_subject, own_watchers


@dataclass
class QuickOptions:
    task: str = "arith"
    preset: str | None = None  # None: measured default for the device (see default_recipe)
    steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    ops: str | None = None  # arith's operators; any task option may also go in `options`
    precision: str | None = None
    compile: bool | None = None
    eval_every: int | None = None
    progress: bool = True
    options: dict = field(default_factory=dict)  # the task's command-line options (Task.cli_options)
    model: str | None = None  # the user's adapter (bitcheck/user/adapter.py): "module" or "module:build"
    layers: str | None = None  # regex over module names of the user's quantized layers
    bisect: bool = True  # a user's model that did not learn, with no probe naming a part: swap and retrain
    reference: bool = False  # also train bitcheck's BitNet of the same shape in this run (side by side)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields, for tests and experiments
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields, for experiments

    def __post_init__(self) -> None:
        for name in ("steps", "minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name} must be positive, got {value}")
        for name in ("layers", "reference"):  # options about the user's model mean nothing without one
            if getattr(self, name) and not self.model:
                raise ConfigError(f"--{name} needs --model (your model's adapter)")


# Every quick run uses the tiny preset on CPU and 5m on CUDA, fp32 compiled on CPU and bf16 on CUDA,
# and decides its own length (docs/MEASUREMENTS.md): cosine cycles of CYCLE steps
# with warm restarts, stopping at PASS, after STALL_EVALS evaluations without gain, or at the budget
# (the constants live in bitcheck/bitnet/tasks.py, shared with sessions and bisection).
MINUTES = 15.0


def default_recipe(device: torch.device, task: str = "arith") -> dict:
    """The defaults that make a quick run pass fast on this device, chosen by measurement. A model
    trained on answers only never learns to write problems, so the sample-text probes SKIP with
    that reason; the sampler and KV-cache probes still check generation."""
    cpu = device.type == "cpu"
    spec = TASKS[task]
    return dict(
        preset="tiny" if cpu else "5m",
        train=dict(schedule="cosine", cycle_steps=CYCLE, stall_evals=STALL_EVALS, steps=NO_STEP_LIMIT,
                   precision="fp32" if cpu else "bf16", compile=cpu, eval_every=100, log_every=10, **spec.train),
        model=dict(spec.model),
        minutes=MINUTES,
    )


def _setup(opts: QuickOptions, resume: str | None):
    """Configs, task and checkpoint (None) for a new run, or those and the run directory of the run resumed."""
    if resume:
        run = RunDir.existing(resume)
        ckpt = ckpts.load(run.latest_checkpoint(), resumable=True)
        if ckpt.task.get("name") != opts.task:
            raise RunDirError(f"{resume} is a {ckpt.task.get('name', 'unknown')!r} run, not {opts.task!r}")
        tcfg = ckpt.train_config
        if opts.steps is not None and tcfg.max_steps is not None:
            tcfg.max_steps = opts.steps  # a new step limit below the horizon
        elif opts.steps is not None:
            tcfg.steps = opts.steps  # a new step limit (or horizon, for a one-cycle schedule)
        if opts.minutes is not None:
            tcfg.max_minutes = opts.minutes
        task = build_task(opts.task, ckpt.task)
        return run, ckpt.model_config, tcfg, task, ckpt.task.get("answer_only", task.answer_only), ckpt
    device = resolve_device(opts.device)
    task = build_task(opts.task, {"ops": opts.ops, **opts.options})
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
    if opts.model:  # a user's model: eager unless asked (compile may not take their code)
        tdict["compile"] = bool(opts.compile)
    tdict.update(opts.overrides)
    answer_only = tdict.pop("answer_only", task.answer_only)
    tcfg = TrainConfig(**tdict)
    if tcfg.seq_len > mcfg.block_size:
        raise ConfigError(f"seq_len {tcfg.seq_len} exceeds the preset's context of {mcfg.block_size}")
    return None, mcfg, tcfg, task, answer_only, None  # the run directory is made once the model is built


def run_quick(opts: QuickOptions, resume: str | None = None, command: str | None = None) -> Report:
    """Train, evaluate, write the run directory and report. Returns the judge's Report (`.exit_code`).
    bitcheck's own BitNet (`_run_ours`) or, with --model (or a resumed run of one), the user's (`_run_theirs`)."""
    command = command or f"quick-{opts.task}"
    run, mcfg, tcfg, task, answer_only, ckpt = _setup(opts, resume)
    setup = _Setup(opts, command, run, mcfg, tcfg, task, answer_only, ckpt)
    spec = ckpt.task.get("model") if ckpt is not None else opts.model
    return _run_theirs(setup, load_adapter(spec)) if spec else _run_ours(setup)


@dataclass
class _Setup:
    """What both kinds of quick run start from: options, configs, task, and the run resumed (or None)."""
    opts: QuickOptions
    command: str
    run: RunDir | None
    mcfg: ModelConfig
    tcfg: TrainConfig
    task: object
    answer_only: bool
    ckpt: ckpts.Checkpoint | None


def _run_ours(s: _Setup) -> Report:
    """bitcheck's BitNet under the task's recipe: train, the reference's Subject, judge."""
    torch.manual_seed(s.tcfg.seed)
    model = BitNet(s.mcfg)
    watchers = make_watchers()
    run, trainer, result, batches, facts, scalars = _train(s, model, watchers, {})
    subject = task_subject(model, s.mcfg, s.task, batches, s.tcfg.seed, watchers, trainer.optimizer,
                           answer_only=s.answer_only)
    return _judge(s, run, subject, result, facts, scalars, retrain=None)


def _run_theirs(s: _Setup, adapter: Adapter) -> Report:
    """The user's model (and their optimizer and schedule, when the adapter has them) under the same task:
    train, their Subject (hooks, schedule as applied), bitcheck's reference figure, judge (with bisection)."""
    opts, tcfg = s.opts, s.tcfg
    layers = s.ckpt.task.get("layers") if s.ckpt is not None else opts.layers
    if adapter.optimizer is not None and s.ckpt is None:
        # the user's schedule needs a horizon: the recipe's two-stage schedule over USER_HORIZON steps;
        # --steps stays a limit below it
        limit = min(opts.steps, USER_HORIZON) if opts.steps is not None else None
        tcfg.schedule, tcfg.cycle_steps, tcfg.steps, tcfg.max_steps = "two_stage", 0, USER_HORIZON, limit
    torch.manual_seed(tcfg.seed)
    model, optimizer, user_schedule = build_for_training(adapter, s.mcfg, tcfg, layers,
                                                         str(resolve_device(tcfg.device)))
    watchers = own_watchers(layers, optimizer)
    run, trainer, result, batches, facts, scalars = _train(
        s, model, watchers, {"model": adapter.source, "layers": layers}, optimizer, user_schedule)
    facts = facts.with_(reference=TASKS[opts.task].reference)
    if opts.reference:
        ref = reference_run(s.mcfg, tcfg, s.task, s.answer_only, run, opts.progress)
        facts = facts.with_(
            curve=[{"step": e["step"], **e["score"]["per_group"]} for e in run.read_jsonl(run.evals) if "score" in e],
            reference_run=ref,
            reference=(f"bitcheck's BitNet of the same shape, trained in this run under the same recipe, "
                       f"{'passed at' if ref['passed'] else 'did not pass in'} {ref['steps']} steps"))
    spec = ModelSpec.from_config(s.mcfg)
    subject = own_model_subject(model.net, s.task, batches, tcfg.seed, adapter.hooks(lambda: adapter.build(spec)),
                                own_history(watchers, trainer, tcfg, scalars, adapter), layers, s.answer_only,
                                s.mcfg.block_size)

    def retrain():  # asked by the judge only when the user's model did not learn and no probe said why
        return bisect(adapter, s.mcfg, tcfg, s.task, s.answer_only, layers, run, REFERENCE_SCHEDULE, opts.progress)
    return _judge(s, run, subject, result, facts, scalars, retrain=retrain if opts.bisect else None)


def _train(s: _Setup, model, watchers: list, task_extra: dict, optimizer=None, user_schedule=None):
    """The run directory, config.json and the training itself (resumed from the checkpoint, if any).
    Returns (run, trainer, result, batches, facts, scalars)."""
    opts, tcfg, task = s.opts, s.tcfg, s.task
    run = s.run or RunDir.create(opts.out, f"{task.name}-s{opts.seed}")
    task_meta = {"name": opts.task, **task_options(task), "answer_only": s.answer_only, **task_extra}
    meta = {"model_config": s.mcfg, "tokenizer": task.tokenizer.to_json(), "task": task_meta}
    batches = task_batches(task, tcfg.seed, tcfg.batch_size, tcfg.seq_len, s.answer_only)
    trainer = Trainer(model, tcfg, batches, run, meta, progress=opts.progress, watchers=watchers,
                      optimizer=optimizer, user_schedule=user_schedule)
    if s.ckpt is not None:
        trainer.load_state(s.ckpt)
    atomic_write_text(run.config, json.dumps({"command": s.command, "model": s.mcfg.to_dict(),
                                              "train": tcfg.to_dict(), "task": task_meta,
                                              "tokenizer": task.tokenizer.to_dict()}, indent=2))

    def log_samples(step, pairs):
        for ex, got in pairs[:3]:
            append_jsonl(run.samples, {"step": step, "prompt": ex.prompt, "generated_text": got,
                                       "expected": ex.answer.strip()})
    val = validation_batch(task, tcfg.seed, tcfg.seq_len, s.answer_only)
    result = trainer.run(evaluate=make_evaluator(task, log_samples, val))
    scalars = run.read_jsonl(run.metrics)
    score = (result.last_eval.score if result.last_eval else None) or {}
    facts = RunFacts(task=opts.task, preset=opts.preset or _preset_name(s.mcfg), **trainer.summary(result, scalars),
                     accuracy=score.get("per_group", {}), pass_criteria=task.pass_criteria(),
                     failures=score.get("failures", []), checkpoint=result.checkpoint)
    if tcfg.stall_evals:  # a run that stops when it stalls knows whether it was still improving
        facts = facts.with_(improving=result.stopped != Stop.STALLED, stall=trainer.stall.describe(tcfg))
    return run, trainer, result, batches, facts, scalars


def _judge(s: _Setup, run: RunDir, subject, result, facts: RunFacts, scalars: list[dict], retrain) -> Report:
    passed = bool(result.last_eval and result.last_eval.passed)
    report = assess(s.command, subject, facts.evidence(scalars, passed, str(run.path)), facts, QUICK,
                    run_dir=str(run.path), retrain=retrain)
    write_report(run, report.to_dict())
    return report


def _preset_name(cfg: ModelConfig) -> str:
    for name, p in PRESETS.items():
        # a task may widen the context (TASKS): the preset is still the same model
        if all(getattr(cfg, k) == v for k, v in p.items() if v is not None and k != "block_size"):
            return name
    return "custom"
