"""bitcheck inside YOUR large run: cheap live probes every `every` optimizer steps, one stderr line per finding,
and at the end the verdict of `bitcheck curve` on what it logged, with its own findings in it.

    from bitcheck.watch import watch
    w = watch(model, optimizer, out="runs", every=100,
              intended={"lr": 1.5e-3, "warmup": 375, "steps": 30000, "schedule": "two_stage"})
    for step in range(1, steps + 1):
        loss = ...; loss.backward()
        w.step(step, loss=loss.item())            # once per optimizer step: after backward, before optimizer.step()
        optimizer.step(); scheduler.step(); optimizer.zero_grad(set_to_none=True)
    report = w.close()                            # report.{json,md,html} in the run folder; report.exit_code

What it measures (every `every` steps unless said; nothing copied: codes kept 2 bits each, 1/16 of fp32):
- per quantized layer (a class named like BitLinear, or `layers` regex): the ternary codes' zero share (a
  collapse to zero WARNs) and the share that flipped since the last look (recorded);
- per quantized layer: the gradient norm of its latent weight in the backward before the look (a hook armed
  for that one backward): a layer that gets no gradient, or exactly zero, at two looks in a row is a dead STE
  path (FAIL, gradients/STE);
- every step: a non-finite loss; at looks: non-finite weights or gradients. The module is named from the
  weights when one holds the NaN, else by forward hooks armed only then, on the step's own batch run again
  (FAIL, numerics); called before optimizer.step(), the weights are still those that produced it.
  `on_nonfinite="stop"` saves a checkpoint (before the bad update) and raises NonFiniteStop;
- every step: the loss, each param group's LR and weight decay, written to metrics/scalars.jsonl (bitcheck's
  run layout: `bitcheck curve RUN` and `bitcheck report RUN` read it), so close() compares the LR and weight
  decay as applied with `intended` (two_stage, cosine, linear, constant or one_cycle; lr, warmup, steps,
  weight_decay, min_lr) and finds loss spikes, as `bitcheck curve` does.
Under torchrun only rank 0 watches (RANK). An exception inside a probe is one stderr line and disables that
probe: the user's training never stops because of bitcheck (except NonFiniteStop, when asked for).
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field

import torch

from bitcheck.bitnet.model import pack_codes, ternary, unpack_codes
from bitcheck.bitnet.rundir import RunDir, append_jsonl, atomic_write_text

# The codes' flip rate between looks is recorded (metrics/watch.jsonl), not judged: bitcheck's tiny BitNet in a
# plain loop flips 46% of its codes over its first 50 steps and 5% over steps 250-300 (tests/test_watch.py), so
# no fixed churn or freeze bar is safe yet.
COLLAPSED_ZEROS = 0.98  # more codes than this at 0: the layer quantizes to nothing
DEAD_LOOKS = 1  # looks in a row with no, a zero or a scale-only weight gradient: a dead STE path
# |cos(grad W, sign W)| above this: the gradient is only that of the scale mean|W| (no STE through the rounding).
# Without the STE it is 1 by construction (d mean|W| / dW = sign(W) / N); measured on bitcheck's tiny BitNet in a
# plain loop (tests/test_watch.py): healthy layers at most ~0.1.
SCALE_ONLY_COS = 0.9
# The update/weight ratio ||W_after - W_before|| / ||W_before|| per param group is estimated on a strided sample of
# each parameter (at most this many elements, fp32): a few KiB a tensor instead of a copy of the model. Recorded
# (metrics/scalars.jsonl, `update_ratio/<group>`), not judged: no bar has been measured on ternary training yet
# (Karpathy's rule of thumb for float nets is ~1e-3).
UPDATE_SAMPLE = 4096


class NonFiniteStop(RuntimeError):
    """Raised by Watcher.step with on_nonfinite="stop": the loss, a weight or a gradient became NaN/Inf; a
    checkpoint was saved (`path`) and the first non-finite module named (`module`)."""

    def __init__(self, message: str, path: str | None, module: str | None):
        super().__init__(message)
        self.path, self.module = path, module


@dataclass
class Finding:
    step: int
    probe: str
    branch: str
    status: str  # WARN | FAIL
    message: str
    where: str = ""


def _quantized(model: torch.nn.Module, layers: str | None) -> dict[str, torch.nn.Module]:
    pattern = re.compile(layers) if layers else None
    out = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            continue
        if (pattern.search(name) if pattern else "bitlinear" in type(m).__name__.lower()):
            out[name] = m
    return out


@dataclass
class Watcher:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    out: str = "runs"
    every: int = 100
    intended: dict | None = None
    layers: str | None = None
    on_nonfinite: str = "warn"
    name: str = "watch"
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self):
        if self.every <= 0:
            raise ValueError(f"every must be positive, got {self.every}")
        if self.on_nonfinite not in ("warn", "stop"):
            raise ValueError(f"on_nonfinite must be 'warn' or 'stop', not {self.on_nonfinite!r}")
        self.active = int(os.environ.get("RANK", "0")) == 0
        self.quantized = _quantized(self.model, self.layers)
        self.run = RunDir.create(self.out, self.name) if self.active else None
        self._codes: dict[str, torch.Tensor] = {}  # packed 2 bits a code (bitnet.model.pack_codes)
        self._grads: dict[str, float] = {}
        self._aligned: dict[str, float] = {}  # |cos(grad, sign W)| per layer at the last look
        self._armed = True  # the first backward is looked at: a dead STE path shows at step 1
        self._dead: dict[str, int] = {}
        self._disabled: set[str] = set()
        self._first_bad: str | None = None
        self._fwd_hooks: list = []
        self._last = 0
        self._rows: list[dict] = []
        self._looks: list[dict] = []
        self._hooks = []
        self._last_input: tuple | None = None
        self._before: list[list[tuple[torch.Tensor, torch.Tensor]]] | None = None  # per group: (param, sample)
        self._bad_loss: torch.Tensor | None = None  # a non-finite micro-batch loss seen since the last step()
        self.values: dict[str, float] = {}  # the latest look's scalars, for a trainer's own logger
        self.save = None  # callable(path) saving the trainer's checkpoint on a stop; None: model + optimizer
        self._closed, self._final = False, None
        if self.active:
            # a reference to the batch of the latest forward (no copy): run again to find a NaN's first module
            self._hooks.append(self.model.register_forward_pre_hook(self._keep_input, with_kwargs=True))
            # a loss the model returns itself (Hugging Face outputs): seen before backward, so a trainer that hands
            # step() no loss still has a NaN found before the update it would poison
            self._hooks.append(self.model.register_forward_hook(self._output_loss))
            for name, m in self.quantized.items():
                if m.weight.requires_grad:
                    self._hooks.append(m.weight.register_post_accumulate_grad_hook(self._grad_hook(name)))
            self._write_config()
            self._looks_file = self.run.path / "metrics" / "watch.jsonl"

    # ---- hooks ----------------------------------------------------------------------------------------------
    def _grad_hook(self, name: str):
        def hook(p: torch.Tensor) -> None:
            if self._armed and p.grad is not None:
                g = p.grad.detach().float()
                norm = float(torch.linalg.vector_norm(g))
                # a quantizer without the STE passes only the gradient of its scale mean|W|, which is
                # c * sign(W): |cos(grad, sign W)| = 1; a real STE gradient (dL/dy)^T x is far from it
                sign = torch.sign(p.detach().float())
                cos = float((g * sign).sum().abs() / (norm * float(torch.linalg.vector_norm(sign)) + 1e-30))
                self._grads[name] = norm
                self._aligned[name] = cos
        return hook

    def observe(self, loss: torch.Tensor) -> None:
        """A micro-batch's loss before its backward (a trainer's hook): a non-finite one is the next step()'s
        finding even when step() is given no loss. No device sync here: one at step()."""
        if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not self._fwd_hooks:
            bad = ~torch.isfinite(loss.detach().float().reshape(()))
            self._bad_loss = bad if self._bad_loss is None else self._bad_loss | bad

    def _output_loss(self, _module, _args, out) -> None:
        loss = out.get("loss") if isinstance(out, dict) else getattr(out, "loss", None)
        if isinstance(loss, torch.Tensor):
            self.observe(loss)

    def _keep_input(self, _module, args, kwargs):
        if not self._fwd_hooks:
            self._last_input = (args, kwargs)

    def _first_nonfinite_module(self) -> str | None:
        """The batch of the latest forward run again with forward hooks on every leaf module: the first (in
        execution order) whose output is non-finite."""
        if self._last_input is None:
            return None
        self._first_bad = None
        self._arm_forward_hooks()
        try:
            with torch.no_grad():
                args, kwargs = self._last_input
                self.model(*args, **kwargs)
        finally:
            self._disarm_forward_hooks()
        return self._first_bad

    def _arm_forward_hooks(self) -> None:
        def make(mod_name):
            def hook(_m, _inp, out):
                t = out[0] if isinstance(out, (tuple, list)) else out
                if self._first_bad is None and isinstance(t, torch.Tensor) and t.is_floating_point() \
                        and not bool(torch.isfinite(t).all()):
                    self._first_bad = mod_name or type(_m).__name__
            return hook
        # registered in module order; the first to see a non-finite output is the first non-finite module
        self._fwd_hooks = [m.register_forward_hook(make(n)) for n, m in self.model.named_modules()
                           if not list(m.children())]

    def _disarm_forward_hooks(self) -> None:
        for h in self._fwd_hooks:
            h.remove()
        self._fwd_hooks = []

    # ---- the loop's call -----------------------------------------------------------------------------------
    def step(self, step: int, loss: float | torch.Tensor | None = None, **metrics) -> None:
        """Record optimizer step `step` (1-based) with its loss and any other scalars; every `every` steps, look
        at the model. Raises NonFiniteStop only with on_nonfinite="stop"."""
        if not self.active:
            return
        if isinstance(loss, torch.Tensor):
            loss = float(loss.detach())
        row = {"step": int(step)}
        if loss is not None:
            row["loss"] = float(loss)
        row.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        if self.optimizer is not None:
            g = self.optimizer.param_groups
            row["lr"] = float(g[0]["lr"])
            row["weight_decay"] = float(max(x.get("weight_decay", 0.0) for x in g))
        self._rows.append(row)
        if loss is None and self._bad_loss is not None and bool(self._bad_loss):
            loss = float("nan")  # a micro-batch's loss, seen by observe()
        self._bad_loss = None
        self._guard("nonfinite", self._nonfinite, step, loss)
        if self._before is not None:  # the look's step has been applied since: its update/weight ratio
            self._guard("update_ratio", self._update_ratio, row)
        if self._armed:  # the backward before this call was the look's
            self._guard("look", self._look, step)
            self._armed = False
        if step - self._last >= self.every:
            self._armed, self._last = True, step  # the next backward records the layers' gradient norms
            self._grads, self._aligned = {}, {}
        if len(self._rows) >= self.every:
            self._flush()

    def record(self, step: int, **metrics) -> None:
        """Scalars logged for `step` apart from step() (a trainer's averaged loss at its logging steps): written
        beside the step's row (readers merge rows of one step); a non-finite loss is checked as in step()."""
        if not self.active:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}
        self._rows.append(row)
        if "loss" in row:
            self._guard("nonfinite", self._nonfinite, step, row["loss"])

    def _guard(self, probe: str, fn, *args) -> None:
        if probe in self._disabled:
            return
        try:
            fn(*args)
        except NonFiniteStop:
            raise
        except Exception as e:  # noqa: BLE001 - bitcheck must never stop the user's training
            self._disabled.add(probe)
            print(f"bitcheck watch: the {probe} probe raised {type(e).__name__}: {e}; disabled", file=sys.stderr)

    @staticmethod
    def _sample(p: torch.Tensor) -> torch.Tensor:
        flat = p.detach().reshape(-1)
        return flat[:: max(1, flat.numel() // UPDATE_SAMPLE)][:UPDATE_SAMPLE].float().clone()

    def _snapshot(self) -> None:
        if self.optimizer is not None and "update_ratio" not in self._disabled:
            self._before = [[(p, self._sample(p)) for p in g["params"] if p.requires_grad]
                            for g in self.optimizer.param_groups]

    def _update_ratio(self, row: dict) -> None:
        """sqrt(sum ||dW||^2 / sum ||W||^2) over each group's sampled elements, for the update of the look's step."""
        before, self._before = self._before, None
        for i, pairs in enumerate(before):
            num = sum(float(torch.linalg.vector_norm(self._sample(p) - b)) ** 2 for p, b in pairs)
            den = sum(float(torch.linalg.vector_norm(b)) ** 2 for _, b in pairs)
            if den > 0:
                row[f"update_ratio/{i}"] = self.values[f"update_ratio/{i}"] = math.sqrt(num / den)

    def _report(self, f: Finding) -> None:
        self.findings.append(f)
        print(f"bitcheck watch: step {f.step}: {f.status} {f.probe}: {f.message}" + (f" ({f.where})" if f.where else ""),
              file=sys.stderr)

    def _nonfinite(self, step: int, loss: float | None) -> None:
        if loss is None or math.isfinite(loss) or any(f.probe == "nonfinite_live" for f in self.findings):
            return
        bad = next((n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p.detach()).all())), None)
        if bad is not None:
            where, why = bad.rsplit(".", 1)[0], f"non-finite values in its weights ({bad})"
        else:
            where = self._first_nonfinite_module()
            why = ("its output is the first non-finite one on this step's batch" if where else
                   "no weight holds one and the batch could not be run again")
        self._report(Finding(step, "nonfinite_live", "numerics", "FAIL", f"loss {loss}: {why}", where or ""))
        self._stop(step, where)

    def _stop(self, step: int, module: str | None) -> None:
        if self.on_nonfinite != "stop":
            return
        path = self.run.checkpoints / f"step_{step}" / "checkpoint.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.save is not None:  # the trainer's own checkpoint (Lightning's save_checkpoint)
            self.save(path)
        else:
            torch.save({"model": self.model.state_dict(), "step": step,
                        "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None}, path)
        self.close()
        raise NonFiniteStop(f"bitcheck watch: non-finite at step {step}, first in {module}; checkpoint {path}",
                            str(path), module)

    def _look(self, step: int) -> None:
        look = {"step": step, "layers": {}}
        for name, m in self.quantized.items():
            w = m.weight
            codes = ternary(w.float())[0].cpu()  # BitLinear's own rounding, int8 (out, in)
            zeros = float((codes == 0).float().mean())
            entry = {"zero_share": zeros, "grad_norm": self._grads.get(name), "grad_sign_cos": self._aligned.get(name)}
            if name in self._codes:
                before = unpack_codes(self._codes[name], codes.shape[0])
                entry["flip_rate"] = float((before != codes).float().mean())
            self._codes[name] = pack_codes(codes)
            look["layers"][name] = entry
            g = self._grads.get(name)
            if w.requires_grad and (g is None or g == 0.0 or self._aligned.get(name, 0.0) > SCALE_ONLY_COS):
                self._dead[name] = self._dead.get(name, 0) + 1
            else:
                self._dead[name] = 0
            if zeros > COLLAPSED_ZEROS and not any(f.where == name and f.probe == "codes_live" for f in self.findings):
                self._report(Finding(step, "codes_live", "quantization", "WARN",
                                     f"{zeros:.1%} of the codes are 0: the layer quantizes to (almost) nothing", name))
        dead = [n for n, k in self._dead.items() if k >= DEAD_LOOKS]
        if dead and not any(f.probe == "ste_live" for f in self.findings):
            self._report(Finding(step, "ste_live", "gradients", "FAIL",
                                 f"{len(dead)} of {len(self.quantized)} quantized layers got no gradient, a zero one or "
                                 f"only their scale's (along sign W), e.g. {', '.join(dead[:3])}: the STE path is dead "
                                 "(write both quantizers as x + (q(x) - x).detach())", dead[0]))
        bad = [n for n, p in self.model.named_parameters()
               if not bool(torch.isfinite(p.detach()).all()) or (p.grad is not None and not bool(torch.isfinite(p.grad).all()))]
        if bad and not any(f.probe == "nonfinite_live" for f in self.findings):
            self._report(Finding(step, "nonfinite_live", "numerics", "FAIL", f"non-finite weights or gradients in "
                                 f"{bad[0]}", bad[0].rsplit(".", 1)[0]))
        append_jsonl(self._looks_file, look)
        self._looks.append(look)
        layers = look["layers"].values()
        self.values.update({"zero_share": sum(v["zero_share"] for v in layers) / max(1, len(layers)),
                            "dead_layers": float(len(dead)), "findings": float(len(self.findings))})
        flips = [v["flip_rate"] for v in layers if "flip_rate" in v]
        if flips:
            self.values["flip_rate"] = sum(flips) / len(flips)
        self._snapshot()

    def _flush(self) -> None:
        if self._rows:  # one open for the rows since the last flush, not one per row
            with open(self.run.metrics, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in self._rows))
        self._rows = []

    def _write_config(self) -> None:
        cfg = {"command": "watch", "watch": {"every": self.every, "layers": self.layers,
                                             "quantized_layers": len(self.quantized), "on_nonfinite": self.on_nonfinite},
               "model": {"n_params": sum(p.numel() for p in self.model.parameters())}}
        emb = [m for m in self.model.modules() if isinstance(m, torch.nn.Embedding)]
        if emb:  # the vocabulary and width: the curve's ln V baseline and capacity read them
            big = max(emb, key=lambda m: m.num_embeddings)
            cfg["model"].update(vocab_size=big.num_embeddings, n_embd=big.embedding_dim)
        if self.intended:
            allowed = {"lr", "warmup", "steps", "schedule", "weight_decay", "min_lr", "final_lr_ratio",
                       "second_peak_ratio", "tokens_per_step", "vocab_size", "pct_start"}
            unknown = set(self.intended) - allowed
            if unknown:
                raise ValueError(f"intended: unknown keys {', '.join(sorted(unknown))}; give {', '.join(sorted(allowed))}")
            names = {"warmup": "warmup_steps", "steps": "max_steps"}
            cfg["train"] = {names.get(k, k): v for k, v in self.intended.items()}
        atomic_write_text(self.run.config, json.dumps(cfg, indent=2) + "\n")

    # ---- the end -------------------------------------------------------------------------------------------
    def results(self) -> list[dict]:
        """The watcher's findings as probe results (worst per probe), for the judge."""
        out = {}
        for f in self.findings:
            if f.probe not in out or f.status == "FAIL" and out[f.probe]["status"] != "FAIL":
                out[f.probe] = {"name": f.probe, "status": f.status, "value": f.step, "branch": f.branch,
                                "message": f"step {f.step}: {f.message}", "hint": "", "thresholds": [],
                                "details": {"where": f.where}}
        checked = {"ste_live": "gradients", "codes_live": "quantization", "nonfinite_live": "numerics"}
        for name, branch in checked.items():
            if name not in out and name not in self._disabled:
                out[name] = {"name": name, "status": "PASS" if self._looks else "SKIP", "value": None, "branch": branch,
                             "message": f"no finding in {len(self._looks)} looks" if self._looks else "no look yet",
                             "hint": "", "thresholds": [], "details": {}}
        return list(out.values())

    def close(self):
        """Flush, remove the hooks and judge: the Report of `bitcheck curve` on the logged run with the watcher's
        findings among its probes, written into the run folder (None on ranks other than 0)."""
        if not self.active:
            return None
        if self._closed:
            return self._final
        self._closed = True
        self._flush()
        for h in self._hooks + self._fwd_hooks:
            h.remove()
        self._hooks, self._fwd_hooks = [], []
        from bitcheck.commands.curve import judge_watched
        self._final = judge_watched(str(self.run.path), self.results())
        return self._final


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, out: str = "runs", every: int = 100,
          intended: dict | None = None, layers: str | None = None, on_nonfinite: str = "warn",
          name: str = "watch") -> Watcher:
    """A Watcher (module docstring) on `model` and `optimizer`; raises ValueError for a bad `every`, `on_nonfinite`
    or `intended` key. `layers`: regex over module names for quantized layers whose class is not named BitLinear."""
    return Watcher(model, optimizer, out, every, intended, layers, on_nonfinite, name)


def _fresh_values(w: Watcher | None, sent: dict) -> dict:
    """The watcher's look scalars not yet handed to a trainer's logger, keyed `bitcheck/<name>`."""
    if w is None:
        return {}
    out = {f"bitcheck/{k}": v for k, v in w.values.items() if sent.get(k) != v}
    sent.update(w.values)
    return out


def trainer_callback(**watch_kwargs):
    """A transformers.TrainerCallback around a Watcher (needs `pip install bitcheck[hf]`): built at on_train_begin
    on the Trainer's model and optimizer (rank 0 only; `out` defaults to the Trainer's output_dir), stepped at
    on_pre_optimizer_step (after backward, before the update), fed the logged loss and grad norm at on_log, closed
    at on_train_end (its Report in `.report`). At on_log it adds the latest look's scalars (`bitcheck/zero_share`,
    `bitcheck/flip_rate`, `bitcheck/update_ratio/<group>`, ...) to the Trainer's logs, so they reach its loggers
    (TensorBoard, ...) when the callback runs before them: use `attach(trainer, ...)`, which puts it first. A NaN
    with on_nonfinite="stop" sets the Trainer's should_save and should_training_stop, so the Trainer saves its own
    checkpoint and stops.

        trainer = Trainer(...); attach(trainer, every=100, intended={...}); trainer.train()"""
    from transformers import TrainerCallback

    class BitcheckCallback(TrainerCallback):
        def __init__(self):
            self.watcher: Watcher | None = None
            self.report = None
            self._sent: dict = {}

        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            if state.is_world_process_zero and model is not None:
                kw = dict(watch_kwargs)
                kw.setdefault("out", args.output_dir)
                self.watcher = watch(model, optimizer, **kw)

        def _stop(self, control, call) -> None:
            try:
                call()
            except NonFiniteStop as e:
                print(str(e), file=sys.stderr)
                control.should_save = control.should_training_stop = True

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if self.watcher is not None:
                self._stop(control, lambda: self.watcher.step(state.global_step + 1))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.watcher is not None and logs and "loss" in logs:
                extra = {k: logs[k] for k in ("grad_norm",) if isinstance(logs.get(k), (int, float))}
                self._stop(control, lambda: self.watcher.record(state.global_step, loss=logs["loss"], **extra))
            if logs is not None:
                logs.update(_fresh_values(self.watcher, self._sent))

        def on_train_end(self, args, state, control, **kwargs):
            if self.watcher is not None and self.report is None:
                self.report = self.watcher.close()

    return BitcheckCallback()


def attach(trainer, **watch_kwargs):
    """trainer_callback(**watch_kwargs) put first among a transformers.Trainer's callbacks (so its scalars are in
    the logs its reporting callbacks write); returns the callback (`.watcher`, `.report`)."""
    cb = trainer_callback(**watch_kwargs)
    trainer.callback_handler.callbacks.insert(0, cb)
    return cb


def lightning_callback(**watch_kwargs):
    """A lightning.pytorch.Callback around a Watcher (needs `pip install bitcheck[lightning]`): built at
    on_train_start on the LightningModule and its first optimizer (global rank 0 only; `out` defaults to the
    Trainer's default_root_dir), stepped at on_before_optimizer_step (after backward and accumulation, before the
    update), fed the mean loss of the step's micro-batches (training_step's returned loss) and closed at
    on_train_end (its Report in `.report`). The latest look's scalars go through the LightningModule's own
    `log_dict` (`bitcheck/zero_share`, ...), so the Trainer's logger records them. A NaN with on_nonfinite="stop":
    the Trainer saves its own checkpoint (trainer.save_checkpoint) and stops (should_stop).

        trainer = lightning.Trainer(..., callbacks=[lightning_callback(every=100, intended={...})])"""
    from lightning.pytorch import Callback

    class BitcheckLightningCallback(Callback):
        def __init__(self):
            self.watcher: Watcher | None = None
            self.report = None
            self._sent: dict = {}
            self._losses: list[float] = []
            self._done = 0  # the optimizer steps already recorded

        def on_train_start(self, trainer, pl_module):
            if trainer.global_rank == 0:
                kw = dict(watch_kwargs)
                kw.setdefault("out", trainer.default_root_dir)
                opt = trainer.optimizers[0] if trainer.optimizers else None
                self.watcher = watch(pl_module, opt, **kw)
                self.watcher.save = lambda path: trainer.save_checkpoint(str(path))
                self._done = trainer.global_step

        def on_before_backward(self, trainer, pl_module, loss):
            if self.watcher is not None:
                self.watcher.observe(loss)  # a NaN is found at the step, before the update it would poison

        def _stop(self, trainer, call) -> None:
            try:
                call()
            except NonFiniteStop as e:
                print(str(e), file=sys.stderr)
                trainer.should_stop = True

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if self.watcher is not None:
                self._stop(trainer, lambda: self.watcher.step(trainer.global_step + 1))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.watcher is None:
                return
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor):
                self._losses.append(float(loss.detach()))
            if trainer.global_step > self._done:  # this batch ended an optimizer step
                self._done = trainer.global_step
                if self._losses:
                    mean = sum(self._losses) / len(self._losses)
                    self._stop(trainer, lambda: self.watcher.record(self._done, loss=mean))
                self._losses = []
                fresh = _fresh_values(self.watcher, self._sent)
                if fresh:
                    pl_module.log_dict(fresh, on_step=True, on_epoch=False)

        def on_train_end(self, trainer, pl_module):
            if self.watcher is not None and self.report is None:
                self.report = self.watcher.close()

    return BitcheckLightningCallback()
