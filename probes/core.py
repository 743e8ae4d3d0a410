"""The probe framework: a subject (any model), probes that compute a value, named thresholds
that turn the value into PASS / WARN / FAIL, and a runner that never lets one probe kill the rest.

    subject = Subject(model=my_model, tokenizer=TokenizerAdapter(tok), batches=[(x, y)], texts=[...])
    results = run_probes(subject)            # every registered probe; ERROR / SKIP instead of raising
    [r.to_dict() for r in results]           # machine-readable; rendering lives elsewhere

Adding a probe touches two files: its module (decorated with @probe, imported in probes/__init__.py's
one list) and its test. Modelled on deepchecks' check -> condition -> result split.
"""
from __future__ import annotations

import math
import re
import traceback
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


def judge(name: str, value: float, thresholds: list[Threshold], message: str, hint: str, branch: str,
          details: dict | None = None, values: dict | None = None) -> ProbeResult:
    """The status is the worst over the thresholds; each judges values[t.name] (default: value)."""
    statuses = [t.judge((values or {}).get(t.name, value)) for t in thresholds]
    status = worst(statuses)
    return ProbeResult(name, status, value, message, hint if status != PASS else "", branch,
                       [t.to_dict() for t in thresholds], details or {})


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
    history: dict = field(default_factory=dict)  # training-time records: flip_rates, update_ratios, losses
    layer_pattern: str | None = None  # regex over module names, for quantized layers we cannot recognise
    skip: dict[str, str] = field(default_factory=dict)  # probe name -> why it does not apply (SKIP)
    tensors: dict[str, torch.Tensor] | None = None  # a checkpoint's tensors, for the tensor probes
    inference_model: nn.Module | None = None  # the packed/integer deployment path of `model` (parity)
    device: str = "cpu"

    def __post_init__(self):
        if self.vocab_size is None and self.tokenizer is not None:
            self.vocab_size = getattr(self.tokenizer, "vocab_size", None)


def logits_of(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Call any causal LM on (B, T) ids and return (B, T, V) logits: a tensor, a tuple whose
    first item is the logits, or an object with .logits are all accepted."""
    out = model(idx)
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "logits"):
        return out.logits
    raise TypeError(f"model returned {type(out).__name__}; expected logits, a tuple, or an object with .logits")


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
    fn: Callable[[Subject], ProbeResult]
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
    """Register a probe. `needs` names Subject fields that must be set, else the probe is SKIP;
    `catches`, `fails_when` and `measured` document it (docs/PROBES.md's probe tables)."""
    assert branch in BRANCHES, branch

    def deco(fn):
        REGISTRY[name] = ProbeSpec(name, fn, branch, tuple(needs), (fn.__doc__ or "").strip(), kind,
                                   catches, fails_when, measured)
        return fn
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
        result = spec.fn(subject)
        result.branch = result.branch or spec.branch
        return result
    except Exception as e:  # a crashing probe is a result, not the end of the report
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return ProbeResult(spec.name, ERROR, None, f"probe raised {tb}", branch=spec.branch,
                           details={"traceback": traceback.format_exc(limit=5)})
    finally:
        if subject.model is not None:
            subject.model.train(was_training)


def run_probes(subject: Subject, names: list[str] | None = None, kinds: tuple[str, ...] | None = None
               ) -> list[ProbeResult]:
    specs = [REGISTRY[n] for n in names] if names else list(REGISTRY.values())
    if subject.model is not None and not names:
        specs = [s for s in specs if s.kind != "tensors"]
    if not names and "curve" not in (kinds or ()):  # log probes run only for a log (bitcheck curve)
        specs = [s for s in specs if s.kind != "curve"]
    if kinds:
        specs = [s for s in specs if s.kind in kinds]
    return [run_probe(s, subject) for s in specs]


def first_batch(subject: Subject) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = subject.batches[0]
    return x.to(subject.device), y.to(subject.device)


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = logits_of(model, x)
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                             ignore_index=-1)
