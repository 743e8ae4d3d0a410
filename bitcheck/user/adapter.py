"""Your infrastructure on bitcheck's tasks: the adapter a user writes once for their own codebase.

    # my_adapter.py (any module on the path; every hook but `build` is optional)
    def build(spec):                        # spec: ModelSpec -> your nn.Module, model(ids) -> logits
        return MyBitNet(vocab=spec.vocab_size, d=spec.n_embd, layers=spec.n_layer, ctx=spec.block_size)
    def optimizer(model, recipe):           # recipe: Recipe -> torch optimizer, or (optimizer, schedule)
        opt = MyAdamW(model, lr=recipe.lr, weight_decay=recipe.weight_decay)
        return opt, MyTwoStageSchedule(opt, warmup=recipe.warmup_steps, total=recipe.steps)
    def sampler(logits, temperature, top_k, generator, top_p=None): ...  # your sampler (probed, with
                                            # any of top_p, min_p, repetition_penalty + input_ids declared)
    def incremental_logits(model, ids): ...                      # your KV-cached decoding (probed)
    def inference_model(model): ...                              # your packed deployment twin (probed)

    bitcheck quick-arith --model my_adapter             # or --model my_adapter:build (build alone)

A schedule is either an object with `.step()` (a torch LR scheduler: called once after every
optimizer step, as torch expects) or a callable `schedule(step)` that sets the learning rate and
weight decay of the optimizer's param groups for the 0-based optimizer step `step` (called before
it). bitcheck logs the LR and weight decay your schedule actually applied at every step, and the
`schedule_shape` probe holds them to the recipe's intended shape (Recipe.intended).

The model is wrapped (`UserNet`) so that bitcheck's Trainer, evaluator and probes can use it: the
loss is cross-entropy over the targets that are not -1, and generation is a generic decoder that
needs only logits (full forward passes, greedy or sampled), so a poor score is the model's.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from bitcheck.bitnet.config import ModelConfig, TrainConfig
from bitcheck.bitnet.train import schedule as reference_schedule
from bitcheck.errors import first_line
from bitcheck.user.factory import UserModelError, import_object
from bitcheck.user.hooks import Hooks
from probes.core import logits_and_targets_arg, logits_of, output_logits, quant_layers

HOOKS = ("build", "optimizer", "sampler", "generate", "incremental_logits", "inference_model")


@dataclass(frozen=True)
class ModelSpec:
    """What `build(spec)` receives: the task's vocabulary and context, and the preset's suggested shape
    (use what your model has; a model larger or smaller than this is still judged on the task)."""
    vocab_size: int
    block_size: int
    n_embd: int
    n_layer: int
    n_head: int
    n_kv_head: int
    ffn_hidden: int

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "ModelSpec":
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recipe:
    """What `optimizer(model, recipe)` receives: the training recipe your optimizer and schedule should
    implement. The intended schedule is the BitNet b1.58 two-stage one (Ma et al. 2024, training tips):
    linear warmup to `lr`, linear decay to `second_peak_ratio * lr` at 50% of `steps` with weight decay
    `weight_decay`, then to `final_lr_ratio * lr` with weight decay 0."""
    lr: float
    weight_decay: float
    warmup_steps: int
    steps: int  # the schedule's horizon
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    second_peak_ratio: float = 0.5
    final_lr_ratio: float = 0.1
    schedule: str = "two_stage"

    def intended(self, step: int) -> tuple[float, float]:
        """(learning rate, weight decay) the recipe intends for the 0-based optimizer step `step`."""
        cfg = TrainConfig(steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps, schedule=self.schedule,
                          second_peak_ratio=self.second_peak_ratio, final_lr_ratio=self.final_lr_ratio,
                          weight_decay=self.weight_decay)
        return reference_schedule(step, cfg)

    def intended_for(self, applied: list[dict]) -> list[dict]:
        """[{"step", "lr", "weight_decay"}] the recipe intends at each 1-based step of `applied` (the LR and
        weight decay a user's schedule applied), for the schedule_shape probe and the report's plot."""
        return [{"step": r["step"], **dict(zip(("lr", "weight_decay"), self.intended(r["step"] - 1)))}
                for r in applied]

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "Recipe":
        return cls(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                   betas=(cfg.beta1, cfg.beta2), grad_clip=cfg.grad_clip, second_peak_ratio=cfg.second_peak_ratio,
                   final_lr_ratio=cfg.final_lr_ratio, schedule=cfg.schedule)


@dataclass
class Adapter:
    """The user's hooks (any may be None), and where they came from (for the report and resume)."""
    source: str
    build: Callable | None = None
    optimizer: Callable | None = None
    sampler: Callable | None = None
    generate: Callable | None = None
    incremental_logits: Callable | None = None
    inference_model: Callable | None = None

    def hooks(self, fresh_model: Callable | None = None) -> Hooks:
        """The hooks the probes call on the trained model (None where the adapter has none); `fresh_model`:
        an untrained model like the trained one (its build(spec) for the run's spec)."""
        return Hooks("the adapter", sampler=self.sampler, generate=self.generate,
                     incremental_logits=self.incremental_logits, inference_model=self.inference_model,
                     fresh_model=fresh_model)


def load_adapter(spec: str) -> Adapter:
    """`module` (an adapter module: hooks by name), `module:build` (a build function alone) or
    `module:name` (any object whose attributes are the hooks, e.g. a class or a SimpleNamespace)."""
    if ":" in spec:
        obj = import_object(spec, "--model")
        if inspect.isfunction(obj):
            return Adapter(spec, build=obj)
    else:
        obj = _import_module(spec)
    found = {h: getattr(obj, h) for h in HOOKS if callable(getattr(obj, h, None))}
    if "build" not in found:
        raise UserModelError(f"--model {spec}: defines no build(spec) function "
                             f"(an adapter defines build and any of {', '.join(HOOKS[1:])})")
    return Adapter(spec, **found)


def _import_module(name: str):
    import importlib
    import os
    import sys
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own code, run from their project
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any import failure of user code is their error to read
        raise UserModelError(f"cannot import {name!r} for --model: {type(e).__name__}: {first_line(e)}") from None


class UserNet(nn.Module):
    """The user's model as bitcheck's Trainer and evaluator use it: forward(idx, targets) -> (logits,
    loss) and generate(...) by full forward passes. The probes get the user's module itself."""

    def __init__(self, model: nn.Module, config: ModelConfig, targets_arg: str | None = None):
        super().__init__()
        self.net = model
        self.config = config
        # a model that returns the last position alone without targets (nanoGPT): always called with
        # dummy targets, so a training step runs one forward, not two (logits_of's retry)
        self.targets_arg = targets_arg

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None):
        if self.targets_arg is not None:
            logits = output_logits(self.net(idx, **{self.targets_arg: torch.zeros_like(idx)}))  # (B, T, V)
        else:
            logits = logits_of(self.net, idx)  # (B, T, V)
        loss = None
        if targets is not None:
            B, T = idx.shape
            loss = F.cross_entropy(logits.float().reshape(B * T, -1), targets.reshape(B * T), ignore_index=-1)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
                 eos_id: int | None = None, seed: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """The generic decoder: full forward passes over the last block_size tokens; greedy at
        temperature 0, else sampled with a seeded generator. Needs nothing but logits."""
        gen = torch.Generator(device=idx.device).manual_seed(seed) if seed is not None else None
        for _ in range(max_new_tokens):
            logits = logits_of(self.net, idx[:, -self.config.block_size:])[:, -1].float()  # (B, V)
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen).squeeze(-1)
            idx = torch.cat([idx, nxt[:, None]], dim=1)
        return idx


def build_user_model(adapter: Adapter, cfg: ModelConfig, seq_len: int, device: str = "cpu") -> UserNet:
    """Call the user's build(spec) and check the result runs as model(ids (B, T)) -> logits (B, T, V) with
    V >= the task's vocabulary at the task's context; any failure is one line (UserModelError)."""
    spec = ModelSpec.from_config(cfg)
    try:
        model = adapter.build(spec)
    except Exception as e:  # noqa: BLE001 - the user's code: report its error, not ours
        raise UserModelError(f"{adapter.source}: build(spec) raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UserModelError(f"{adapter.source}: build(spec) returned {type(model).__name__}, not a torch.nn.Module")
    model = model.to(device)
    ids = torch.zeros(2, seq_len, dtype=torch.long, device=device)
    try:
        with torch.no_grad():
            logits, targets_arg = logits_and_targets_arg(model.eval(), ids)
    except Exception as e:  # noqa: BLE001
        raise UserModelError(f"{adapter.source}: the model does not run on ids of shape (2, {seq_len}) (the task's "
                             f"context): {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != (2, seq_len):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        last_only = isinstance(logits, torch.Tensor) and logits.dim() == 3 and logits.shape[1] == 1
        raise UserModelError(f"{adapter.source}: the model returned {shape} for ids (2, {seq_len}); expected logits "
                             "(B, T, V)" + ("; it returns the last position only: return every position's logits, "
                                            "or take targets=None as nanoGPT does (called with targets, it returns "
                                            "them all)" if last_only else ""))
    if logits.shape[-1] < cfg.vocab_size:
        raise UserModelError(f"{adapter.source}: the model outputs {logits.shape[-1]} logits but the task's vocabulary "
                             f"has {cfg.vocab_size} tokens: build the model with spec.vocab_size")
    return UserNet(model.train(), cfg, targets_arg)


def user_optimizer(adapter: Adapter, model: nn.Module, recipe: Recipe) -> tuple[torch.optim.Optimizer, Any]:
    """(optimizer, schedule or None) from the user's optimizer(model, recipe) hook, checked."""
    try:
        out = adapter.optimizer(model, recipe)
    except Exception as e:  # noqa: BLE001
        raise UserModelError(f"{adapter.source}: optimizer(model, recipe) raised {type(e).__name__}: "
                             f"{first_line(e)}") from None
    opt, sched = out if isinstance(out, tuple) else (out, None)
    if not isinstance(opt, torch.optim.Optimizer):
        raise UserModelError(f"{adapter.source}: optimizer(model, recipe) returned {type(opt).__name__}, not a "
                             "torch.optim.Optimizer (return optimizer or (optimizer, schedule))")
    if sched is not None and not (hasattr(sched, "step") or callable(sched)):
        raise UserModelError(f"{adapter.source}: the schedule has no step() and is not callable")
    return opt, sched


def schedule_over_horizon(adapter: Adapter, model: nn.Module, recipe: Recipe, after: int,
                          every: int = 10) -> list[dict]:
    """[{"step" (1-based), "lr", "weight_decay"}] every `every` steps after step `after` to the recipe's
    horizon (recipe.steps): the user's optimizer and schedule built afresh on a copy of `model` and stepped
    without gradients (the optimizer step skips parameters without one), as bitcheck's Trainer steps
    them (bitcheck/bitnet/train.py: the schedule, the LR and weight decay read, the step). A quick run
    PASSes around step 1300 of 3000: without this, a stage-2 bug (weight decay kept, a wrong second
    peak) never shows. [] when their optimizer or schedule cannot step without gradients."""
    from bitcheck.bitnet.train import applied, step_user_schedule
    rows = []
    try:
        opt, sched = user_optimizer(adapter, copy.deepcopy(model), recipe)
        for step in range(recipe.steps):
            step_user_schedule(sched, step, after=False)
            if step + 1 > after and (step + 1) % every == 0:
                lr, wd = applied(opt)
                rows.append({"step": step + 1, "lr": lr, "weight_decay": wd})
            opt.step()
            step_user_schedule(sched, step, after=True)
    except Exception:  # noqa: BLE001 - the user's optimizer needs gradients: stage 2 stays unseen
        return []
    return rows


def build_for_training(adapter: Adapter, cfg: ModelConfig, tcfg: TrainConfig, layers: str | None,
                       device: str) -> tuple[UserNet, torch.optim.Optimizer | None, Any]:
    """The user's model, checked (build_user_model) and with quantized layers found (by class name or the
    regex `layers`), and their (optimizer, schedule) under the run's recipe when the adapter has one.
    Raises UserModelError (exit 2) for any of their mistakes."""
    model = build_user_model(adapter, cfg, tcfg.seq_len, device)
    if not quant_layers(model.net, layers):
        raise UserModelError("no quantized layers found in your model: none is named *BitLinear* and none applies "
                             "a ternary weight to one-hot inputs, so it may not be quantized at all; if it is, name "
                             "its layers with --layers REGEX (over module names)")
    if adapter.optimizer is None:
        return model, None, None
    return (model, *user_optimizer(adapter, model.net, Recipe.from_config(tcfg)))
