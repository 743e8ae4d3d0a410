"""Your own training loop on a bitcheck task, judged like a quick run (issue: "your infrastructure").

    from bitcheck.user.session import Session

    s = Session("arith", out="runs")                       # the task, its batches, evaluation, PASS bar
    model = MyBitNet(**s.spec.to_dict())                   # vocab_size, block_size, n_embd, ...
    opt, sched = my_optimizer(model, s.recipe)             # lr, weight_decay, warmup_steps, steps (horizon)
    s.watch(model, opt)                                    # optional: flip rates, param-group weight decay
    for step in range(s.max_steps):                        # Session(steps=N) bounds it (default: the horizon)
        x, y = s.batch(step)                               # (B, T) token ids; y = -1: no loss there
        loss = my_train_step(model, opt, sched, x, y)
        s.log(step + 1, loss, lr=opt.param_groups[0]["lr"], weight_decay=opt.param_groups[0]["weight_decay"])
        if s.due(step + 1) and s.evaluate(model, step + 1).stop:
            break
    report = s.finish(model, optimizer=opt)                # probes, verdict, run directory, report.json
    raise SystemExit(report.exit_code)

The loop stays yours; bitcheck gives it the task's seeded batches (batch k is the same whatever ran
before), evaluates the model every `eval_every` steps with a generic decoder that needs only logits,
decides when to stop (PASS, no gain in `stall_evals` evaluations, or the time budget), and ends with
the probes and the verdict. Hand over more and more is checked: `finish(accumulate=...)` (your
gradient accumulation against one large batch), `finish(resume=...)` (your save/load against straight
training), the LR and weight decay you log (against the recipe's intended schedule), your sampler and
KV cache.
"""
from __future__ import annotations

import dataclasses
import json
import time

import torch

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet.config import ModelConfig, TrainConfig, preset_config
from bitcheck.bitnet.rundir import RunDir, append_jsonl, atomic_write_text
from bitcheck.bitnet.tasks import (
    REFERENCE_SCHEDULE,
    STALL_EVALS,
    TASKS,
    build_task,
    make_evaluator,
    task_batches,
    task_options,
    validation_batch,
)
from bitcheck.bitnet.train import Evaluation, Stall, Stop
from bitcheck.judge.assess import Report, assess
from bitcheck.judge.facts import RunFacts
from bitcheck.judge.report import write_report
from bitcheck.judge.subjects import training_history
from bitcheck.judge.verdict import QUICK
from bitcheck.user.adapter import ModelSpec, Recipe, UserNet
from bitcheck.user.bisection import retrain
from bitcheck.user.hooks import Hooks
from bitcheck.user.subjects import own_model_subject
from probes.optimizer import OptimizerWatch
from probes.quantization import FlipWatch

# The recipe a user's own optimizer and loop are asked to implement: the BitNet b1.58 two-stage schedule
# over USER_HORIZON steps (docs/OWN_CODE.md, "The verdict compares with a reference", says what
# bitcheck's own BitNet needs under it). The run still stops at PASS or after STALL_EVALS evaluations
# without gain.
USER_HORIZON = 3000
EVAL_EVERY = 100


class Session:
    """One task for a user's own loop. `options`: the task's command-line options ({"ops": "+-*/"})."""

    def __init__(self, task: str = "arith", out: str = "runs", seed: int = 0, minutes: float = 15.0,
                 preset: str = "tiny", options: dict | None = None, eval_every: int = EVAL_EVERY,
                 steps: int | None = None):
        if steps is not None and steps <= 0:
            raise ValueError(f"steps must be positive, got {steps}")
        self.name, self.seed, self.eval_every = task, seed, eval_every
        # the loop's step limit (None: the recipe's horizon); it bounds the bisection's retrain too
        self.max_steps = min(steps, USER_HORIZON) if steps is not None else USER_HORIZON
        self.task = build_task(task, options)
        spec = TASKS[task]
        self.config: ModelConfig = preset_config(preset, vocab_size=self.task.tokenizer.vocab_size, **spec.model)
        self.spec = ModelSpec.from_config(self.config)
        self.batch_size, self.seq_len = spec.train["batch_size"], spec.train["seq_len"]
        self.recipe = Recipe(lr=spec.train["lr"], weight_decay=0.1, warmup_steps=spec.train["warmup_steps"],
                             steps=USER_HORIZON)
        self.train_config = TrainConfig(steps=USER_HORIZON, batch_size=self.batch_size, seq_len=self.seq_len,
                                        lr=self.recipe.lr, warmup_steps=self.recipe.warmup_steps, seed=seed,
                                        max_minutes=minutes, eval_every=eval_every, stall_evals=STALL_EVALS)
        self.answer_only = self.task.answer_only
        self.run = RunDir.create(out, f"{self.task.name}-loop-s{seed}")
        self._batches = task_batches(self.task, seed, self.batch_size, self.seq_len, self.answer_only)
        self._val = validation_batch(self.task, seed, self.seq_len, self.answer_only)
        self.stall = Stall()
        self.start = time.perf_counter()
        self.logged: dict[int, float] = {}
        self.schedule_log: list[dict] = []
        self.last_eval: Evaluation | None = None
        self.stopped: Stop | None = None
        self.steps = 0
        self._model = self._optimizer = None
        self._watchers: list = []
        self.meta = {"name": task, **task_options(self.task), "answer_only": self.answer_only, "loop": "user",
                     "model": "the model of your own loop, bitcheck.user.session"}
        atomic_write_text(self.run.config, json.dumps({"command": f"session {task}", "spec": self.spec.to_dict(),
                                                       "recipe": {**self.recipe.__dict__},
                                                       "task": self.meta}, indent=2, default=list))

    # ---- what the loop asks ---------------------------------------------------------------------------
    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) of optimizer step `step` (0-based) and micro-batch `micro`: (B, T) ids, y = -1 where
        no loss is taken. Seeded by position only."""
        return self._batches(step, micro)

    def watch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
              layers: str | None = None) -> None:
        """Record code flips of the quantized layers (found by class name, or the regex `layers` over module
        names, as in `finish`) and each param group's weight decay as `log` is called."""
        self._model, self._optimizer = model, optimizer
        self._watchers = [FlipWatch(100, layers)] + ([OptimizerWatch(optimizer)] if optimizer is not None else [])

    def log(self, step: int, loss: float, lr: float | None = None, weight_decay: float | None = None) -> None:
        """After optimizer step `step` (1-based): the loss your loop computed for it, and the LR and weight
        decay the optimizer applied (compared with the recipe's intended schedule)."""
        loss = float(loss.item() if hasattr(loss, "item") else loss)
        self.steps = step
        self.logged[step] = loss
        rec = {"step": step, "loss": loss, "elapsed_s": time.perf_counter() - self.start}
        if lr is not None:
            rec["lr"] = float(lr)
            rec["weight_decay"] = float(weight_decay or 0.0)
            self.schedule_log.append({"step": step, "lr": float(lr), "weight_decay": float(weight_decay or 0.0)})
        append_jsonl(self.run.metrics, rec)
        for w in self._watchers:
            w.after_step(self._model, step - 1)

    def due(self, step: int) -> bool:
        """Is step `step` (1-based) one to evaluate at?"""
        return step % self.eval_every == 0

    def evaluate(self, model: torch.nn.Module, step: int) -> Evaluation:
        """Score the held-out set now; `.stop` says the loop should end (passed, stalled, out of time)."""
        was_training = model.training
        net = UserNet(model, self.config).eval()
        evaluation = make_evaluator(self.task, None, self._val)(net, step)
        model.train(was_training)
        evaluation.step, evaluation.elapsed_s = step, time.perf_counter() - self.start
        append_jsonl(self.run.evals, evaluation.record())
        self.last_eval = evaluation
        stalled = self.stall.update(self.train_config, evaluation.val_loss, evaluation.gate)
        over = evaluation.elapsed_s >= (self.train_config.max_minutes or float("inf")) * 60
        self.stopped = (Stop.EARLY if evaluation.passed else Stop.STALLED if stalled else Stop.TIME if over else
                        Stop.STEPS if step >= self.max_steps else None)
        evaluation.stop = self.stopped is not None
        return evaluation

    # ---- the verdict --------------------------------------------------------------------------------
    def finish(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *, sampler=None,
               incremental_logits=None, inference_model=None, generate=None, fresh_model=None, accumulate=None,
               resume: dict | None = None, layers: str | None = None, command: str | None = None,
               bisect: bool = True) -> Report:
        """Probe the trained model with what the loop handed over, decide, write the run directory.

        accumulate(model, micro_batches): your gradient accumulation (forward + backward over the list of
        (x, y), leaving the unscaled .grad: with a GradScaler, call scaler.unscale_(optimizer) or hand over
        the accumulation without it). resume: {"make": () -> state, "train": (state, batches) -> None,
        "save": (state, path) -> None, "load": path -> state}, where state is your whole training state as
        your save/load keeps it: a tuple such as (model, optimizer, scheduler, scaler) (spread as
        arguments), a dict or a trainer object; its model is found inside (probes/loop.py resume_state).
        fresh_model: () -> an untrained model like yours; with it, a run that did not learn and that no
        probe explains is bisected: the same model retrained in bitcheck's loop (its optimizer and
        schedule) on the same batches, time budget and stop rules; if that learns, your loop is the cause."""
        if self.last_eval is None or self.last_eval.step != self.steps:
            self.evaluate(model, self.steps)
        stopped = self.stopped or Stop.STEPS
        path = self.run.checkpoints / f"step_{self.steps}" / "checkpoint.pt"
        ckpts.save(path, ckpts.Checkpoint(model.state_dict(), self.config, self.task.tokenizer.to_json(), self.meta,
                                          step=self.steps))
        scalars = self.run.read_jsonl(self.run.metrics)
        score = self.last_eval.score or {}
        facts = RunFacts(task=self.name, loop="user", params=sum(p.numel() for p in model.parameters()),
                         steps=self.steps, stopped=stopped.value, elapsed_s=round(time.perf_counter() - self.start, 2),
                         loss_at_init=scalars[0]["loss"] if scalars else None,
                         final_loss=scalars[-1]["loss"] if scalars else None,
                         accuracy=score.get("per_group", {}), pass_criteria=self.task.pass_criteria(),
                         failures=score.get("failures", []), checkpoint=str(path),
                         improving=stopped != Stop.STALLED, stall=self.stall.describe(self.train_config),
                         reference=TASKS[self.name].reference)
        history = dataclasses.replace(
            training_history([w for w in self._watchers if isinstance(w, FlipWatch)], optimizer),
            logged_losses=self.logged, batch_of=lambda step: self._batches(step - 1, 0),
            warmup_steps=self.recipe.warmup_steps, accumulate=accumulate,
            schedule=self.schedule_log or None,
            intended=self.recipe.intended_for(self.schedule_log) if self.schedule_log else None,
            group_decay=next((w.records for w in self._watchers if isinstance(w, OptimizerWatch)), None),
            resume_hooks={**resume, "batches": [self._batches(i, 0) for i in range(6)]} if resume is not None else None)
        hooks = Hooks("finish()", sampler=sampler, generate=generate, incremental_logits=incremental_logits,
                      inference_model=inference_model, fresh_model=fresh_model)
        subject = own_model_subject(model, self.task, self._batches, self.seed, hooks, history, layers,
                                    self.answer_only, self.config.block_size)
        evidence = facts.evidence(scalars, bool(self.last_eval.passed), str(self.run.path))
        command = command or f"session {self.name}"
        retrain = (lambda: [self._loop_swap(fresh_model)]) if bisect and fresh_model is not None else None
        report = assess(command, subject, evidence, facts, QUICK, run_dir=str(self.run.path), retrain=retrain)
        write_report(self.run, report.to_dict())
        return report

    def _loop_swap(self, fresh_model) -> dict:
        """A fresh model like yours trained by bitcheck's Trainer (AdamW groups, cosine cycles) instead of
        your loop, under this session's step limit and time budget (eager: a user model may not compile)."""
        torch.manual_seed(self.seed)
        cfg = dataclasses.replace(self.train_config, compile=False, max_steps=self.max_steps, **REFERENCE_SCHEDULE)
        net = UserNet(fresh_model(), self.config)
        return {"swap": "loop", **retrain(self.run, "bisect/loop", net, self.config, cfg, self.task, self.answer_only,
                                          None, None, progress=False)}
