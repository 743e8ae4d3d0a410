"""The probe framework: a subject (any model), probes that measure a value, named thresholds that
turn the value into PASS / WARN / FAIL, and a runner that never lets one probe kill the rest.

    subject = Subject(model=my_model, tokenizer=TokenizerAdapter(tok), batches=[(x, y)], texts=[...])
    results = run_probes(subject)            # every registered probe; ERROR / SKIP instead of raising
    [r.to_dict() for r in results]           # machine-readable; rendering lives elsewhere

A probe returns its measurement; the runner attaches its name and branch (from `@probe`) and judges
the value against the thresholds the measurement names (worst wins; the hint only when not PASS):

    GAP = Threshold("relative_gap", warn=1e-3, fail=1e-2, source="healthy 1e-6; the bug 0.5")

    @probe("my_check", branch="numerics", needs=("batches",), catches="...", fails_when="...", measured="...")
    def my_check(s: Subject) -> Measurement:
        # (its docstring says what it checks: docs/PROBES.md's probe tables quote it)
        gap = ...
        return Measurement(gap, [GAP], f"gap {gap:.1e}", "How to fix it.", details={"per_layer": ...})

A probe that does not apply returns `Measurement(message=why, status=SKIP)`; one that attributes its
failure to another part of the tree says so with `branch=` (causal_leak -> quantization). The
decorated function returns the ProbeResult, so calling a probe directly gives what the runner gives.
Probes read the Subject and never write it; what several probes of one run share (the generated
samples) lives in `run_cache(subject)`, which run_probes owns.

Adding a probe touches two files: its module (decorated with @probe, imported in probes/__init__.py's
one list) and its test. Modelled on deepchecks' check -> condition -> result split.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import re
import sys
import traceback
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

PASS, WARN, FAIL, SKIP, ERROR = "PASS", "WARN", "FAIL", "SKIP", "ERROR"

# The parts of the decision tree a probe can point at (bitcheck/judge/verdict.py maps them to verdicts).
# "loading": the weights in the model are not the checkpoint's; "export": the conversion of the
# quantized layers for deployment; "inference": the deployed model outside its quantized layers.
BRANCHES = ("quantization", "gradients", "numerics", "data", "loss", "optimizer", "generation", "capacity",
            "loading", "export", "inference")


@dataclass(frozen=True)
class Threshold:
    """A named bound on a probe's value. `higher_is_worse`: value above warn/fail is bad (else below).
    `source` says which measurement chose the numbers."""
    name: str
    warn: float | None
    fail: float | None
    higher_is_worse: bool = True
    source: str = ""

    def judge(self, value: float) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return FAIL
        bad = (lambda v, t: v > t) if self.higher_is_worse else (lambda v, t: v < t)
        if self.fail is not None and bad(value, self.fail):
            return FAIL
        if self.warn is not None and bad(value, self.warn):
            return WARN
        return PASS

    def to_dict(self) -> dict:
        return {"name": self.name, "warn": self.warn, "fail": self.fail,
                "higher_is_worse": self.higher_is_worse, "source": self.source}


@dataclass
class ProbeResult:
    name: str
    status: str
    value: Any = None
    message: str = ""
    hint: str = ""
    branch: str = ""
    thresholds: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # tables for plots and the curious (per-layer values ...)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "value": self.value, "message": self.message,
                "hint": self.hint, "branch": self.branch, "thresholds": self.thresholds, "details": self.details}


def worst(statuses) -> str:
    order = {PASS: 0, SKIP: 0, WARN: 1, FAIL: 2, ERROR: 2}
    return max(statuses, key=lambda s: order[s], default=PASS)


@dataclass
class Measurement:
    """What a probe returns: its value and how to judge it; the runner adds the probe's name and branch.

    The status is the worst over `thresholds`, each judging values[t.name] (default: `value`), unless
    `status` states it: SKIP (the probe does not apply; `message` says why) or a decision no threshold
    expresses. `branch` overrides the probe's own branch where the measurement points elsewhere in the
    tree (causal_leak -> quantization, inference_parity -> inference). The hint is dropped on PASS."""
    value: Any = None
    thresholds: Sequence[Threshold] = ()
    message: str = ""
    hint: str = ""
    details: dict | None = None  # tables for plots and the curious (per-layer values ...)
    values: dict | None = None  # threshold name -> the number it judges, where that is not `value`
    status: str | None = None  # None: judged by the thresholds
    branch: str | None = None  # None: the probe's branch

    def judged(self) -> str:
        """The status the thresholds alone give (for a probe that qualifies its own verdict)."""
        return worst(t.judge((self.values or {}).get(t.name, self.value)) for t in self.thresholds)

    def result(self, name: str, branch: str) -> ProbeResult:
        status = self.status or self.judged()
        return ProbeResult(name, status, self.value, self.message, self.hint if status != PASS else "",
                           self.branch or branch, [t.to_dict() for t in self.thresholds], self.details or {})


def as_result(out: Measurement | ProbeResult, name: str, branch: str) -> ProbeResult:
    """A probe's return value as its result. A ProbeResult passes through: the probe was already wrapped
    by @probe, which made it one."""
    if isinstance(out, Measurement):
        return out.result(name, branch)
    if isinstance(out, ProbeResult):
        return out
    raise TypeError(f"probe {name} returned {type(out).__name__}; expected a Measurement")


# ---- the subject ----------------------------------------------------------------------------------

class TokenizerAdapter:
    """encode(str) -> list[int], decode(list[int]) -> str over our CharTokenizer, a `tokenizers`
    Tokenizer, or a Hugging Face tokenizer (anything with encode/decode)."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str) -> list[int]:
        out = self.tok.encode(text)
        if hasattr(out, "ids"):  # tokenizers.Encoding
            return list(out.ids)
        return list(out)

    def decode(self, ids: list[int]) -> str:
        try:
            return self.tok.decode(list(ids), skip_special_tokens=True)
        except TypeError:
            return self.tok.decode(list(ids))

    @property
    def vocab_size(self) -> int | None:
        for attr in ("vocab_size", "get_vocab_size"):
            v = getattr(self.tok, attr, None)
            if v is not None:
                return v() if callable(v) else v
        return None


@dataclass(frozen=True)
class History:
    """What a training run (or its log) recorded, for the training-time probes; None where nothing was.
    Built by the run before the probes start; frozen, because probes read it and never write it (a result
    must not depend on which probe ran first)."""
    flip_rates: list[dict] | None = None  # FlipWatch records: ternary code flips per look (probes/quantization.py)
    update_ratios: list[dict] | None = None  # UpdateWatch records: ||dW|| / ||W|| per look (probes/gradients.py)
    optimizer: Any = None  # the optimizer as training left it (param groups, state)
    schedule: list[dict] | None = None  # applied {step (1-based), lr, weight_decay}, oldest first
    schedule_stepped_from: int | None = None  # rows after this step: the schedule stepped on without training
    intended: list[dict] | None = None  # what the recipe or config intends at the same steps
    intended_missing: str | None = None  # why there is no intended schedule (a log without a config)
    warmup_steps: int = 0
    schedule_name: str | None = None  # a config's named shape (cosine, linear, constant ...): compared exactly
    group_decay: list[dict] | None = None  # OptimizerWatch records: every param group's weight decay
    logged_losses: list[tuple[int, float]] | None = None  # (step, loss) a user's loop logged (Session)
    batch_of: Callable | None = None  # step (1-based) -> the (x, y) that step trained on
    accumulate: Callable | None = None  # the user's gradient accumulation(model, micro_batches)
    resume_hooks: dict | None = None  # the user's make/train/save/load hooks, and batches to train on
    curve: dict | None = None  # a training log: rows, loss_key, tokens_per_step, warmup, lr_source, lr_resolution,
    #                             vocab (curve probes)
    capacity: dict | None = None  # params, embedding_params, tied, tokens (model_capacity)


@dataclass
class Subject:
    """Everything a probe may look at. A probe that needs a missing piece is SKIP with the reason.
    Without a model (`model=None`, only `tensors`: a checkpoint without its code) only the tensor
    probes run; with a model they do not (the model probes check the same and more)."""
    model: nn.Module | None
    tokenizer: Any = None  # encode/decode (wrap foreign ones in TokenizerAdapter)
    batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # the exact (x, y) the trainer feeds; y=-1 ignored
    texts: list[str] | None = None  # reference text (training distribution) for decode/gibberish/repetition
    prompts: list[str] | None = None  # for free-running generation
    vocab_size: int | None = None
    fresh_model: Callable[[], nn.Module] | None = None  # a newly initialised model (loss at init)
    # sampler(logits (B, V), temperature, top_k, generator[, top_p, min_p, repetition_penalty, input_ids]) -> ids (B,)
    sampler: Callable | None = None
    generate: Callable | None = None  # generate(model, idx (1, T), max_new_tokens) -> ids (1, T + n)
    incremental_logits: Callable | None = None  # KV-cached logits of idx (B, T), one token at a time
    context: int | None = None  # the model's context length (block_size): cache and position checks decode to it
    history: History = field(default_factory=History)  # training-time records (a dict of its fields is taken)
    layer_pattern: str | None = None  # regex over module names, for quantized layers we cannot recognise
    skip: dict[str, str] = field(default_factory=dict)  # probe name -> why it does not apply (SKIP)
    tensors: dict[str, torch.Tensor] | None = None  # a checkpoint's tensors, for the tensor probes
    inference_model: nn.Module | None = None  # the packed/integer deployment path of `model` (parity)
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.history, dict):  # Subject(history={"flip_rates": ...}) from a user's script
            self.history = History(**self.history)
        if self.vocab_size is None and self.tokenizer is not None:
            self.vocab_size = getattr(self.tokenizer, "vocab_size", None)


def logits_of(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Call any causal LM on (B, T) ids and return (B, T, V) logits: a tensor, a tuple whose
    first item is the logits, or an object with .logits are all accepted. A model that returns the last
    position's logits alone when no targets are given (nanoGPT's `forward(idx, targets=None)`) is called
    again with dummy targets, which gives every position's (the loss it computes is discarded)."""
    return logits_and_targets_arg(model, idx)[0]


def logits_and_targets_arg(model: nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """logits_of's (B, T, V) logits, and the name of the targets argument the model had to be given for them
    (None: it returns every position's from the ids alone)."""
    logits = output_logits(model(idx))
    if logits.dim() == 3 and logits.shape[1] == 1 and idx.shape[1] > 1:
        name = targets_parameter(model)
        if name is not None:
            return output_logits(model(idx, **{name: torch.zeros_like(idx)})), name
    return logits, None


def output_logits(out: Any) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, a tuple's first item, or `.logits`."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "logits"):
        return out.logits
    raise TypeError(f"model returned {type(out).__name__}; expected logits, a tuple, or an object with .logits")


def targets_parameter(model: nn.Module) -> str | None:
    """The name of forward's targets argument (targets, target, labels, y), or None."""
    import inspect
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((n for n in ("targets", "target", "labels", "y") if n in params), None)


def latent_weight(layer: nn.Module) -> torch.Tensor:
    """The layer's latent (trained) weight (out, in): `.weight`, or the original tensor behind a
    `torch.nn.utils.parametrize` parametrization (there `.weight` is the computed, quantized one)."""
    plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
    return plist.original if plist is not None and hasattr(plist, "original") else layer.weight


def quant_layers(model: nn.Module, pattern: str | None = None) -> list[tuple[str, nn.Module]]:
    """Quantized linear layers: any module with a 2-D weight whose class name contains 'BitLinear' or
    whose name matches the user's regex; when neither finds one, the modules that behave as quantized
    (`behaves_quantized`: e.g. a `BitNetLinear`, or a plain nn.Linear with a quantizing weight subclass)."""
    candidates = [(name, m) for name, m in model.named_modules()
                  if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 2]
    found = [(name, m) for name, m in candidates
             if "bitlinear" in type(m).__name__.lower() or (pattern and re.search(pattern, name))]
    if found or pattern:
        return found
    return [(name, m) for name, m in candidates if behaves_quantized(m)]


BEHAVIOUR_COLUMNS = 8  # one-hot inputs per layer: enough columns to see zeros and one magnitude


@torch.no_grad()
def behaves_quantized(m: nn.Module) -> bool:
    """The module applies a ternary weight: its weight is a tensor subclass (torchao's quantized training
    weights), or its response to a few one-hot inputs (exact under per-token int8 activations) is one
    magnitude with zeros, unlike its stored weight."""
    w = m.weight
    if type(w) not in (torch.Tensor, nn.Parameter) and type(getattr(w, "data", w)) is not torch.Tensor:
        return True
    if not w.is_floating_point() or w.shape[1] < 2:
        return False
    n_in = w.shape[1]
    cols = torch.linspace(0, n_in - 1, min(BEHAVIOUR_COLUMNS, n_in)).long()
    eye = torch.zeros(len(cols), n_in, dtype=w.dtype, device=w.device)
    eye[torch.arange(len(cols)), cols] = 1.0
    try:
        out = m(eye)
        out = out[0] if isinstance(out, (tuple, list)) else out
        zero = m(torch.zeros_like(eye[:1]))
        zero = zero[0] if isinstance(zero, (tuple, list)) else zero
    except Exception:  # noqa: BLE001 - not a (N, in) -> (N, out) layer (embeddings, convolutions ...)
        return False
    if not isinstance(out, torch.Tensor) or out.shape != (len(cols), w.shape[0]):
        return False
    applied = (out - zero).double()  # (k, out): columns of the applied weight
    mags = applied.abs()[applied != 0]
    if mags.numel() == 0 or not bool((applied == 0).any()):
        return False
    one_level = float(mags.max() / mags.min() - 1) < 1e-3
    stored = w[:, cols].T.double()
    return one_level and not torch.allclose(applied, stored, rtol=1e-3, atol=0.0)


# ---- registry and runner --------------------------------------------------------------------------

@dataclass
class ProbeSpec:
    name: str
    fn: Callable[[Subject], ProbeResult | Measurement]  # @probe's wrapper returns the ProbeResult
    branch: str
    needs: tuple[str, ...]
    doc: str
    kind: str  # "static" (weights only), "dynamic" (runs the model), "training" (needs training history),
    #            "tensors" (a checkpoint's tensors, no model code), "curve" (a training log, no model)
    # for people (docs/PROBES.md's probe tables are generated from these): what it catches, when it FAILs,
    # and what was measured on healthy models vs the bug
    catches: str = ""
    fails_when: str = ""
    measured: str = ""


REGISTRY: dict[str, ProbeSpec] = {}


def probe(name: str, branch: str, needs: tuple[str, ...] = (), kind: str = "dynamic", catches: str = "",
          fails_when: str = "", measured: str = ""):
    """Register a probe: a function Subject -> Measurement. `needs` names Subject fields that must be set,
    else the probe is SKIP; `catches`, `fails_when` and `measured` document it (docs/PROBES.md's probe tables).
    The registered and the returned function give the ProbeResult, named and branched here, so a test that
    calls the probe directly sees what the runner reports."""
    assert branch in BRANCHES, branch

    def deco(fn):
        @functools.wraps(fn)
        def measured_probe(subject: Subject) -> ProbeResult:
            return as_result(fn(subject), name, branch)
        REGISTRY[name] = ProbeSpec(name, measured_probe, branch, tuple(needs), (fn.__doc__ or "").strip(), kind,
                                   catches, fails_when, measured)
        return measured_probe
    return deco


# kinds that need no model: a checkpoint's tensors, a training log (probes/curve.py)
MODEL_FREE = ("tensors", "curve")
NO_MODEL = "no model code: only the checkpoint's tensors were probed (give the model to run this probe)"


def run_probe(spec: ProbeSpec, subject: Subject) -> ProbeResult:
    if spec.name in subject.skip:
        return ProbeResult(spec.name, SKIP, None, subject.skip[spec.name], branch=spec.branch)
    if subject.model is None and spec.kind not in MODEL_FREE:
        return ProbeResult(spec.name, SKIP, None, NO_MODEL, branch=spec.branch)
    missing = [n for n in spec.needs if not getattr(subject, n, None)]
    if missing:
        return ProbeResult(spec.name, SKIP, None, f"needs {', '.join(missing)}, which this subject lacks",
                           branch=spec.branch)
    was_training = subject.model.training if subject.model is not None else False
    try:
        return as_result(spec.fn(subject), spec.name, spec.branch)  # a hand-built spec may return a Measurement
    except Exception as e:  # a crashing probe is a result, not the end of the report
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return ProbeResult(spec.name, ERROR, None, f"probe raised {tb}", branch=spec.branch,
                           details={"traceback": traceback.format_exc(limit=6)})  # 5 frames below @probe's wrapper
    finally:
        if subject.model is not None:
            subject.model.train(was_training)


# What the probes of one run_probes call share, per subject (id -> dict): set by run_probes, read through
# run_cache. It lives outside the Subject because probes only read their evidence (STYLE rule 18): a cache
# written into it would carry one run's samples into the next, or into a subject copied from it.
_RUN_CACHE: ContextVar[dict[int, dict] | None] = ContextVar("probe_run_cache", default=None)


def run_cache(subject: Subject) -> dict:
    """A scratch dict for `subject` that lives as long as the current run_probes call (e.g. the samples the
    text probes share, generated once per run). Outside run_probes (a probe called directly) a fresh dict
    each time: nothing is shared, nothing is kept."""
    run = _RUN_CACHE.get()
    return {} if run is None else run.setdefault(id(subject), {})


def run_probes(subject: Subject, names: list[str] | None = None, kinds: tuple[str, ...] | None = None
               ) -> list[ProbeResult]:
    specs = [REGISTRY[n] for n in names] if names else list(REGISTRY.values())
    if subject.model is not None and not names:
        specs = [s for s in specs if s.kind != "tensors"]
    if not names and "curve" not in (kinds or ()):  # log probes run only for a log (bitcheck curve)
        specs = [s for s in specs if s.kind != "curve"]
    if kinds:
        specs = [s for s in specs if s.kind in kinds]
    token = _RUN_CACHE.set({})
    try:
        results = []
        for spec in specs:
            results.append(run_probe(spec, subject))
            release_freed_memory()
        return results
    finally:
        _RUN_CACHE.reset(token)


def _glibc(name: str):
    """glibc's function `name` (malloc_trim), or None off Linux or on another C library (musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


_TRIM = _glibc("malloc_trim")


def release_freed_memory() -> None:
    """Give the memory freed since the last call back to the system (glibc's malloc_trim; a no-op elsewhere).
    glibc keeps freed weight-sized blocks (below its mmap threshold, which grows to 32 MiB) in its heap, so each
    probe's temporaries would otherwise stack on the last one's in the peak resident memory: a 95M checkpoint's
    diagnosis peaked at 4.0x the file without it (benchmarks/diagnose_95m.py, docs/COMMANDS.md). A few ms."""
    if _TRIM is not None:
        _TRIM(0)


def layer_release(s: Subject) -> Callable[[], None]:
    """release_freed_memory for a probe to call after each layer on a large model on a CPU (large_on_cpu), where
    the layers' freed temporaries would otherwise stack in its peak; a no-op otherwise (re-touching returned pages
    costs time, up to 2x on the 95M design's gradient pass)."""
    return release_freed_memory if large_on_cpu(s) else (lambda: None)


# Above this many parameters on a CPU, probes that train or back-propagate do less (overfit_batch SKIPs,
# ste_gradient_flow takes one row): the seed design's 95M took minutes and several times its memory
# (benchmarks/diagnose_95m.py); the 12m preset stays below.
LARGE_CPU_PARAMS = 30_000_000


def large_on_cpu(s: Subject) -> bool:
    """The subject's model has more than LARGE_CPU_PARAMS parameters and runs on a CPU."""
    return torch.device(s.device).type == "cpu" and sum(p.numel() for p in s.model.parameters()) > LARGE_CPU_PARAMS


def first_batch(subject: Subject) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = subject.batches[0]
    return x.to(subject.device), y.to(subject.device)


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = logits_of(model, x)
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                             ignore_index=-1)
