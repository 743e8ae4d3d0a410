"""The training engine: AdamW, the BitNet two-stage schedule (or cosine), mixed precision,
optional torch.compile, gradient accumulation, clipping, checkpoints, exact resume, Ctrl-C safety.

    trainer = Trainer(model, train_cfg, batches, run, meta)
    result = trainer.run(evaluate=lambda model, step: Evaluation(...))

`batches(step, micro)` returns the (x, y) tensors of one micro-batch; it must depend only on its
arguments (the synthetic tasks seed by step), which is what makes `k steps + resume + (N-k) steps`
equal `N steps` on CPU fp32.

Distributed data parallel: launched by `torchrun`, `init_distributed()` joins the process group
(NCCL on CUDA, gloo on CPU) and the Trainer wraps the model in DistributedDataParallel. Each rank's
`batches` returns its slice of one global batch, so N processes take the same steps as one process
with the whole batch; the logged loss is the mean over ranks; only rank 0 writes metrics,
checkpoints and evaluations, and every stop (time, early, non-finite) is agreed by all ranks.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import torch
import torch.nn as nn

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet.config import ConfigError, TrainConfig
from bitcheck.bitnet.rundir import RunDir, append_jsonl


class Stop(str, Enum):
    """Why training ended (the value is what report.json's metrics.stopped says)."""
    STEPS = "steps"  # the step limit
    TIME = "time"  # the wall-clock budget
    EARLY = "early"  # an evaluation asked to stop: the task passed
    STALLED = "stalled"  # no gain in `stall_evals` evaluations
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    NONFINITE = "nonfinite"  # a NaN/Inf loss or gradient norm


@dataclass
class Evaluation:
    """What an evaluator returns at a step. `passed`/`gate` come from a task's PASS criteria, `val_loss`
    from held-out text; the Trainer stops on `stop` and watches `val_loss` and `gate` for a stall."""
    passed: bool | None = None  # None: no task bar (stories are judged on bits per byte)
    stop: bool = False
    gate: float | None = None  # least score / bar over the PASS criteria (>= 1 passes)
    val_loss: float | None = None
    score: dict | None = None  # the task's score: per_group, failures, ...
    extra: dict = field(default_factory=dict)  # other figures for evals.jsonl (val_bpb, samples)
    step: int = 0  # filled in by the Trainer
    elapsed_s: float = 0.0

    def record(self) -> dict:
        """The evals.jsonl line: step, elapsed_s and every figure that is set."""
        out = {"step": self.step, "elapsed_s": self.elapsed_s}
        for key in ("score", "passed", "gate", "val_loss"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}


Batches = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
Evaluate = Callable[[nn.Module, int], Evaluation]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, str]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); returns (dist, device),
    with each rank on its own GPU under CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def close_distributed() -> None:
    """Wait for every rank, then leave the process group, if joined. A rank that exits while rank 0
    still reports can abort ("terminate called without an active exception", SIGABRT), and torchrun
    then kills rank 0 before it writes report.json: 2 of 15 two-process CPU runs without this wait,
    0 of 30 with it (tests/test_tinystories.py ddp command, torch 2.13)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # another rank already failed: torchrun reports that failure, not this one
            pass
        dist.destroy_process_group()


def schedule(step: int, cfg: TrainConfig) -> tuple[float, float]:
    """(learning rate, weight decay) for the update with 0-based index `step`.

    Linear warmup, then either the BitNet b1.58 two-stage schedule (stage 1: lr -> second peak
    with weight decay; stage 2 from 50% of training: second peak -> final lr, weight decay 0)
    or cosine to final lr with constant weight decay (restarting every `cycle_steps` when set: SGDR)."""
    peak, final = cfg.lr, cfg.lr * cfg.final_lr_ratio
    if step < cfg.warmup_steps:
        lr = peak * (step + 1) / cfg.warmup_steps
        return lr, cfg.weight_decay
    if cfg.schedule == "cosine":
        if cfg.cycle_steps:
            progress = ((step - cfg.warmup_steps) % cfg.cycle_steps) / cfg.cycle_steps
        else:
            progress = min((step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps), 1.0)
        return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * progress)), cfg.weight_decay
    mid = cfg.steps // 2
    second = peak * cfg.second_peak_ratio
    if step < mid:
        progress = (step - cfg.warmup_steps) / max(1, mid - cfg.warmup_steps)
        return peak + (second - peak) * progress, cfg.weight_decay
    progress = min((step - mid) / max(1, cfg.steps - mid), 1.0)
    return second + (final - second) * progress, 0.0


def build_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW; matrices decay, norms and embeddings do not (group 0 decays, group 1 never does)."""
    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and id(p) not in embed_ids else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)


def step_user_schedule(sched, step: int, after: bool) -> None:
    """Advance a user's schedule (bitcheck/user/adapter.py) for optimizer step `step`: a callable
    schedule(step) before the step, a torch-style scheduler's step() after it, as torch expects."""
    if sched is None:
        return
    torch_style = hasattr(sched, "step") and (isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
                                              or not callable(sched))
    if torch_style and after:
        sched.step()
    elif not torch_style and not after:
        sched(step)


def applied(opt: torch.optim.Optimizer) -> tuple[float, float]:
    """The (learning rate, weight decay) an optimizer holds now: the first group's LR, and the largest
    weight decay over the groups (a group that decays shows even when the first does not)."""
    return float(opt.param_groups[0]["lr"]), max(float(g.get("weight_decay", 0.0)) for g in opt.param_groups)


@dataclass
class Stall:
    """Has training stopped improving? Watches two signals of each evaluation at once, the validation
    loss and the task's gate score, so that a long flat stretch of the score before a task "clicks" is
    not taken for a stall while the loss still falls (and a noisy loss is not, while the score rises).
    Kept in the checkpoint, so a resumed run goes on counting where it stopped."""
    best_loss: float = math.inf
    best_gate: float = -math.inf
    evals: int = 0
    last_gain: int = 0  # the evaluation (count) at which a signal last improved

    def update(self, cfg: TrainConfig, val_loss: float | None, gate: float | None) -> bool:
        """Record one evaluation's signals; True once `stall_evals` evaluations in a row brought no gain."""
        self.evals += 1
        if val_loss is not None and val_loss < self.best_loss * (1 - cfg.stall_rel):
            self.best_loss, self.last_gain = val_loss, self.evals
        if gate is not None and gate > self.best_gate + cfg.stall_gate:
            self.best_gate, self.last_gain = gate, self.evals
        return bool(cfg.stall_evals) and self.evals - self.last_gain >= cfg.stall_evals

    def describe(self, cfg: TrainConfig) -> str:
        n = self.evals - self.last_gain
        return (f"no gain in the held-out score or validation loss in the last {n} evaluations "
                f"({n * cfg.eval_every} steps)")


@dataclass
class TrainResult:
    step: int  # optimizer steps completed
    stopped: Stop
    elapsed_s: float
    last_eval: Evaluation | None = None
    checkpoint: str | None = None


class Trainer:
    def __init__(self, model: nn.Module, cfg: TrainConfig, batches: Batches, run: RunDir | None,
                 meta: dict, progress: bool = True, watchers: list | None = None, dist: Dist | None = None,
                 optimizer: torch.optim.Optimizer | None = None, user_schedule=None):
        """meta: the checkpoint fields the run fixes (model_config, tokenizer, task, probe_text; see
        bitcheck/bitnet/checkpoint.py), saved in every checkpoint. optimizer, user_schedule: the user's own
        (bitcheck/user/adapter.py), used in place of build_optimizer and `schedule`; the LR and weight decay
        they apply are logged at every step.
        watchers: objects with before_step(model, step) / after_step(model, step) (probes' flip-rate
        and update-ratio watches), called around every optimizer step. dist: this rank under
        torchrun (`run` may be None on ranks other than 0: they write nothing)."""
        self.dist = dist or Dist()
        self.watchers = watchers or []
        self.cfg, self.batches, self.run_dir, self.meta = cfg, batches, run, meta
        self.device = resolve_device(cfg.device)
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("fp16 needs CUDA (its grad scaler is CUDA-only here); use bf16 or fp32 on CPU")
        self.model = model.to(self.device)
        self.own_optimizer = optimizer is None
        self.optimizer = optimizer or build_optimizer(self.model, cfg, fused=self.device.type == "cuda")
        self.user_schedule = user_schedule
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.step = 0
        self.elapsed_prev = 0.0  # seconds spent before a resume
        self.stall = Stall()
        self.progress = progress and self.dist.main
        forward = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            forward = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._forward = torch.compile(forward) if cfg.compile else forward

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> ckpts.Checkpoint:
        """The whole training state, with the run's fixed fields (`meta`: model_config, tokenizer,
        task, probe_text; objects or their JSON text)."""
        return ckpts.Checkpoint.from_payload({
            **self.meta,
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scaler_state_dict": self.scaler.state_dict(),
            "step": self.step,
            "schedule": {"step": self.step, "elapsed_s": self.elapsed_prev, "stall": dataclasses.asdict(self.stall),
                         **({"user": self.user_schedule.state_dict()} if hasattr(self.user_schedule, "state_dict")
                            else {})},
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "train_config": self.cfg,
        })

    def save(self) -> str | None:
        if not self.dist.main:
            return None
        path = self.run_dir.checkpoints / f"step_{self.step}" / "checkpoint.pt"
        ckpts.save(path, self.checkpoint())
        return str(path)

    def load_state(self, ckpt: ckpts.Checkpoint | dict) -> None:
        """Continue from a checkpoint (a Checkpoint, or the dict `checkpoint.read_payload` returns)."""
        if isinstance(ckpt, dict):
            ckpt = ckpts.Checkpoint.from_payload(ckpt)
        self.model.load_state_dict(ckpt.model_state_dict)
        self.optimizer.load_state_dict(ckpt.optimizer_state_dict)
        if ckpt.scaler_state_dict:
            self.scaler.load_state_dict(ckpt.scaler_state_dict)
        self.step = ckpt.step
        self.elapsed_prev = float(ckpt.schedule.get("elapsed_s", 0.0))
        self.stall = Stall(**ckpt.schedule.get("stall", {}))
        if "user" in ckpt.schedule and hasattr(self.user_schedule, "load_state_dict"):
            self.user_schedule.load_state_dict(ckpt.schedule["user"])
        if "torch" in ckpt.rng:
            torch.set_rng_state(ckpt.rng["torch"])
        if ckpt.rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt.rng["cuda"])
        if self.dist.main:
            for path in (self.run_dir.metrics, self.run_dir.evals, self.run_dir.samples):
                self.run_dir.truncate_after(path, self.step)

    # ---- the loop ----------------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def train_step(self) -> dict:
        cfg = self.cfg
        if self.user_schedule is None and self.own_optimizer:
            lr, wd = schedule(self.step, cfg)
            self.optimizer.param_groups[0]["lr"] = lr
            self.optimizer.param_groups[0]["weight_decay"] = wd
            self.optimizer.param_groups[1]["lr"] = lr
        else:  # the user's optimizer and schedule: log what they apply
            step_user_schedule(self.user_schedule, self.step, after=False)
            lr, wd = applied(self.optimizer)
        self.model.train()
        for w in self.watchers:
            w.before_step(self.model, self.step)
        total, tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            x, y = self.batches(self.step, micro)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with self._autocast():
                _, loss = self._forward(x, y)
            self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
            tokens += x.numel()
        if self.dist.world > 1:  # the logged loss and token count are the global batch's
            import torch.distributed as dist
            t = torch.tensor([total], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            total, tokens = t.item() / self.dist.world, tokens * self.dist.world
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip).item()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        step_user_schedule(self.user_schedule, self.step, after=True)
        self.optimizer.zero_grad(set_to_none=True)
        for w in self.watchers:
            w.after_step(self.model, self.step)
        self.step += 1
        return {"loss": total, "lr": lr, "weight_decay": wd, "grad_norm": grad_norm, "tokens": tokens}

    def run(self, evaluate: Evaluate | None = None) -> TrainResult:
        cfg = self.cfg
        start = time.perf_counter()
        budget = cfg.max_minutes * 60 if cfg.max_minutes else None
        last_eval: Evaluation | None = None
        stopped = Stop.STEPS
        window_t, window_tokens = time.perf_counter(), 0
        progress = _Progress(cfg.steps, self.step, enabled=self.progress,
                             budget_s=budget if cfg.stall_evals else None)
        try:
            with progress:
                limit = min(cfg.steps, cfg.max_steps or cfg.steps)
                while self.step < limit:
                    rec = self.train_step()
                    window_tokens += rec.pop("tokens")
                    elapsed = self.elapsed_prev + time.perf_counter() - start
                    if not (math.isfinite(rec["loss"]) and math.isfinite(rec["grad_norm"])):
                        if self.dist.main:  # every rank sees the same all-reduced loss and gradients
                            append_jsonl(self.run_dir.metrics, {"step": self.step, **rec, "elapsed_s": elapsed})
                        stopped = Stop.NONFINITE
                        break
                    main = self.dist.main
                    if main and (self.step == 1 or self.step % cfg.log_every == 0 or self.step == cfg.steps):
                        now = time.perf_counter()
                        tps = window_tokens / max(now - window_t, 1e-9)
                        window_t, window_tokens = now, 0
                        append_jsonl(self.run_dir.metrics, {"step": self.step, **rec, "tokens_per_s": tps,
                                                            "elapsed_s": elapsed})
                        progress.update(self.step, rec["loss"], tps, elapsed)
                    if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                        self.save()
                    stop = None
                    if main and evaluate and cfg.eval_every and self.step % cfg.eval_every == 0:
                        last_eval = self._evaluate(evaluate, elapsed)
                        progress.score(last_eval)
                        stalled = self.stall.update(cfg, last_eval.val_loss, last_eval.gate)
                        stop = Stop.EARLY if last_eval.stop else (Stop.STALLED if stalled else None)
                    if stop is None and budget is not None and elapsed >= budget:
                        stop = Stop.TIME
                    stop = self._agree(stop)
                    if stop:
                        stopped = stop
                        break
        except KeyboardInterrupt:
            stopped = Stop.INTERRUPTED
        self.elapsed_prev += time.perf_counter() - start
        ckpt = self.save()
        if self.dist.main and evaluate and stopped != Stop.EARLY and (last_eval is None or last_eval.step != self.step):
            # the final state is always evaluated, also after Ctrl-C: the report says what ran
            try:
                last_eval = self._evaluate(evaluate, self.elapsed_prev)
            except KeyboardInterrupt:
                stopped = Stop.INTERRUPTED
        return TrainResult(self.step, stopped, self.elapsed_prev, last_eval, ckpt)

    def summary(self, result: TrainResult, scalars: list[dict]) -> dict:
        """What every run reports about its training, from the logged scalars (metrics/scalars.jsonl)."""
        vocab = self.model.config.vocab_size
        speeds = sorted(r["tokens_per_s"] for r in scalars if "tokens_per_s" in r)
        return {"params": self.model.num_params(), "vocab_size": vocab,
                "ln_vocab": math.log(vocab), "loss_at_init": scalars[0]["loss"] if scalars else None,
                "final_loss": scalars[-1]["loss"] if scalars else None, "steps": result.step,
                "steps_planned": self.cfg.steps, "stopped": result.stopped.value, "elapsed_s": round(result.elapsed_s, 2),
                "device": str(self.device), "precision": self.cfg.precision,
                "tokens_per_s": speeds[len(speeds) // 2] if speeds else None}

    STOPS = (None, Stop.TIME, Stop.STALLED, Stop.EARLY)

    def _agree(self, stop: Stop | None) -> Stop | None:
        """Under DDP every rank must leave the loop at the same step: the strongest reason wins."""
        if self.dist.world == 1:
            return stop
        import torch.distributed as dist
        t = torch.tensor([self.STOPS.index(stop)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return self.STOPS[int(t.item())]

    def _evaluate(self, evaluate: Evaluate, elapsed: float) -> Evaluation:
        self.model.eval()
        result = evaluate(self.model, self.step)
        self.model.train()
        result.step, result.elapsed_s = self.step, elapsed
        append_jsonl(self.run_dir.evals, result.record())
        return result


class _Progress:
    """A rich live line on stderr: step, loss, tokens/s and either the steps done with an ETA, or, for
    a run whose length is decided while it trains (one that stops when it stalls), the time used of its budget
    and the latest held-out score. Silent when disabled."""

    def __init__(self, total: int, done: int, enabled: bool, budget_s: float | None = None):
        self.enabled, self.by_time = enabled, budget_s is not None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        common = (TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"))
        if self.by_time:
            columns = (TextColumn("[bold]train"), BarColumn(), TimeElapsedColumn(),
                       TextColumn(f"of {budget_s / 60:.0f} min  step {{task.fields[step]}}"), *common,
                       TextColumn("score {task.fields[score]}"))
        else:
            columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), *common, TextColumn("ETA"),
                       TimeRemainingColumn())
        self.bar = Progress(*columns, console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("train", total=budget_s if self.by_time else total,
                                      completed=0 if self.by_time else done, loss="-", tps="-", step=done, score="-")

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False

    def update(self, step: int, loss: float, tps: float, elapsed: float) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=elapsed if self.by_time else step, step=step,
                            loss=f"{loss:.4f}", tps=f"{tps:,.0f}")

    def score(self, evaluation: Evaluation) -> None:
        """The latest evaluation's scores per group (a task's), or its validation loss."""
        groups = (evaluation.score or {}).get("per_group")
        if self.enabled and groups:
            self.bar.update(self.task, score=" ".join(f"{k} {v:.0%}" for k, v in groups.items()))
        elif self.enabled and evaluation.val_loss is not None:
            self.bar.update(self.task, score=f"val loss {evaluation.val_loss:.3f}")
