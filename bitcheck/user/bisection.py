"""Bisection of a user's infrastructure: when their model did not learn the task and no probe named a
part, swap one component at a time for bitcheck's reference and retrain, and see which swap makes it
learn (the usual debugging checklist, done by the tool).

    results = bisect(adapter, mcfg, tcfg, task, answer_only, layers, run)
    # [{"swap": "bitlinear", "passed": True, "steps": 1200, ...}, {"swap": "optimizer", "passed": False, ...}]

Swaps: "bitlinear" (every quantized layer of the user's model replaced by bitcheck's BitLinear with the
same shape and the same initial latent weights; the rest of their model, optimizer and schedule kept)
and, when their optimizer ran, "optimizer" (their model trained with bitcheck's AdamW groups and the
quick runs' cosine cycles). Each retrain is a quick run of its own under run/bisect/<swap>/, with the
same task, seed, batches and stop rules (PASS, no gain in STALL_EVALS evaluations) and the same step
limit and time budget as the user's run: a swap only counts when it learns within what theirs had.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from bitcheck.bitnet.config import ModelConfig, TrainConfig
from bitcheck.bitnet.model import BitLinear, BitNet
from bitcheck.bitnet.rundir import RunDir
from bitcheck.bitnet.tasks import make_evaluator, task_batches, validation_batch
from bitcheck.bitnet.train import Trainer, resolve_device
from bitcheck.user.adapter import Adapter, Recipe, build_user_model, user_optimizer
from probes.core import quant_layers


class ReferenceBitLinear(BitLinear):
    """bitcheck's BitLinear in place of a user's layer: the same weight (and bias, which b1.58 does not
    have, added after the quantized product so the rest of their model sees what it expects)."""

    def __init__(self, layer: nn.Module):
        super().__init__(layer.weight.shape[1], layer.weight.shape[0])
        with torch.no_grad():
            self.weight.copy_(layer.weight)
        bias = getattr(layer, "bias", None)
        self.extra_bias = nn.Parameter(bias.detach().clone()) if isinstance(bias, torch.Tensor) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y + self.extra_bias if self.extra_bias is not None else y


def swap_layers(model: nn.Module, layers: str | None) -> int:
    """Replace every quantized layer (found as the probes find them) by a ReferenceBitLinear, in place."""
    found = quant_layers(model, layers)
    for name, layer in found:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, ReferenceBitLinear(layer))
    return len(found)


def bisect(adapter: Adapter, mcfg: ModelConfig, tcfg: TrainConfig, task, answer_only: bool, layers: str | None,
           run: RunDir, quick_schedule: dict, progress: bool = False) -> list[dict]:
    """Retrain with one component swapped at a time; `quick_schedule`: the TrainConfig fields of bitcheck's
    own schedule (used by the "optimizer" swap)."""
    swaps = ["bitlinear"] + (["optimizer"] if adapter.optimizer is not None else [])
    device = str(resolve_device(tcfg.device))
    results = []
    for swap in swaps:
        torch.manual_seed(tcfg.seed)
        net = build_user_model(adapter, mcfg, tcfg.seq_len, device)
        cfg, optimizer, schedule = tcfg, None, None
        if swap == "bitlinear":
            swap_layers(net.net, layers)
            if adapter.optimizer is not None:
                optimizer, schedule = user_optimizer(adapter, net.net, Recipe.from_config(tcfg))
        else:
            cfg = dataclasses.replace(tcfg, **quick_schedule)
        results.append({"swap": swap, **retrain(run, f"bisect/{swap}", net, mcfg, cfg, task, answer_only, optimizer,
                                                schedule, progress)})
    return results


def reference_run(mcfg: ModelConfig, tcfg: TrainConfig, task, answer_only: bool, run: RunDir,
                  progress: bool = False) -> dict:
    """bitcheck's own BitNet of the same shape, trained in this run under the same recipe (`--reference`):
    what the user's model is compared with, step for step."""
    torch.manual_seed(tcfg.seed)
    return retrain(run, "reference", BitNet(mcfg), mcfg, tcfg, task, answer_only, None, None, progress)


def retrain(run: RunDir, name: str, model: nn.Module, mcfg: ModelConfig, cfg: TrainConfig, task, answer_only: bool,
            optimizer, schedule, progress: bool) -> dict:
    """One more quick run on the same task, seed and batches, in run/<name>/: passed, steps, the curve."""
    batches = task_batches(task, cfg.seed, cfg.batch_size, cfg.seq_len, answer_only)
    val = validation_batch(task, cfg.seed, cfg.seq_len, answer_only)
    folder, _, prefix = name.rpartition("/")
    sub = RunDir.create(run.path / folder if folder else run.path, prefix)
    trainer = Trainer(model, cfg, batches, sub, {"model_config": mcfg, "tokenizer": task.tokenizer.to_json(),
                                                  "task": {"name": name}},
                      progress=progress, optimizer=optimizer, user_schedule=schedule)
    result = trainer.run(evaluate=make_evaluator(task, None, val))
    score = (result.last_eval.score if result.last_eval else None) or {}
    curve = [{"step": e["step"], **e["score"]["per_group"]} for e in sub.read_jsonl(sub.evals) if "score" in e]
    return {"passed": bool(result.last_eval and result.last_eval.passed), "steps": result.step,
            "stopped": result.stopped.value, "accuracy": score.get("per_group", {}), "curve": curve,
            "run_dir": str(sub.path)}
