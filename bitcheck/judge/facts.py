"""A run's or a file's facts besides the probes: one typed record from which both report.json's `metrics`
and the decision tree's `Evidence` derive.

    facts = RunFacts(task="arith", **trainer.summary(result, scalars), accuracy=score["per_group"], ...)
    report = assess(cmd, subject, facts.evidence(scalars, passed, run_dir), facts, QUICK, run_dir=run_dir)
    report.to_dict()["metrics"] == facts.metrics()

Each command sets the fields it knows; a field left ABSENT is not a key of report.json's `metrics`
(None is a key whose value is unknown: `final_loss` of a run that logged nothing). The key sets each
command writes are those it always wrote (tests/test_report_schema.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bitcheck.judge.verdict import Evidence


class _Absent:
    """The value of a field a command does not report."""
    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class RunFacts:
    """Declared in the order report.json lists them: what was judged, its size, how it trained, how it did."""
    # what was judged
    task: str | None = ABSENT
    loop: str = ABSENT  # "user": the user's own loop (bitcheck.Session)
    preset: str = ABSENT
    data: str = ABSENT  # the text a stories run trained on
    file: str = ABSENT  # a diagnosed file or folder
    format: str = ABSENT  # how it was read: "bitcheck checkpoint", "state dict", "hugging face folder", ...
    factory: str = ABSENT  # the user's model factory (diagnose --model)
    model_type: str | None = ABSENT  # a Hugging Face folder's config.json
    quantization_config: dict | None = ABSENT
    nested_under: str | None = ABSENT  # the key the state dict sat under in the file
    prefixes_stripped: list[str] = ABSENT  # "module.", "_orig_mod.": wrappers' prefixes removed from the keys
    tensors: int = ABSENT
    log: str = ABSENT  # the training log `bitcheck curve` read
    columns: list[str] = ABSENT  # the log's columns as bitcheck names them
    spec: dict = ABSENT  # the run's facts read from its config and flags (bitcheck/user/runspec.py RunSpec)
    loss_used: str = ABSENT  # which logged loss was fitted: train or validation
    lr_used: str = ABSENT  # the LR the fit used: logged, configured or none
    upto: int | None = ABSENT  # --upto: the log cut at this step
    text: str | None = ABSENT  # --text and --tokenizer given to diagnose a user's model
    tokenizer: str | None = ABSENT
    # its size
    params: int = ABSENT
    vocab_size: int = ABSENT
    ln_vocab: float = ABSENT  # the loss of a uniform guess (nats): Karpathy's loss at init
    model_vocab: int = ABSENT  # a user's model's and tokenizer's vocabularies
    tokenizer_vocab: int = ABSENT
    quantized_layers: int = ABSENT
    # how it trained (bitcheck.bitnet.train.Trainer.summary)
    loss_at_init: float | None = ABSENT
    final_loss: float | None = ABSENT
    steps: int | None = ABSENT
    steps_planned: int = ABSENT
    stopped: str = ABSENT  # a bitcheck.bitnet.train.Stop value
    elapsed_s: float = ABSENT
    device: str = ABSENT
    precision: str = ABSENT
    tokens_per_s: float | None = ABSENT  # median of the logged rates
    tokens: float | None = ABSENT  # tokens seen (a log: steps x tokens per step)
    world_size: int = ABSENT
    global_batch: int = ABSENT
    train_tokens: int = ABSENT
    improving: bool = ABSENT  # a run that stops when it stalls: had it still been improving?
    stall: str = ABSENT  # that run's description of its stall rule
    # how it did
    accuracy: dict = ABSENT  # the task's per-group score
    pass_criteria: dict = ABSENT
    failures: list = ABSENT  # a few wrong answers, for the reader
    val_loss: float | None = ABSENT
    val_bpb: float | None = ABSENT  # validation bits per byte (stories)
    pass_bpb: float = ABSENT
    val_unigram_entropy: float = ABSENT
    bytes_per_token: float = ABSENT
    text_loss: float = ABSENT  # a user's model on --text: its loss, its predictions' entropy, the unigram baseline
    text_entropy: float = ABSENT
    unigram_entropy: float = ABSENT
    learned: bool = ABSENT  # text_loss below the unigram baseline (bitcheck/user/factory.py learned_gap)
    reference: str = ABSENT  # what bitcheck's own BitNet measured on this task
    reference_run: dict = ABSENT  # --reference: that BitNet trained in this run
    curve: list[dict] = ABSENT  # --reference: the user's model's per-group score per evaluation
    bisection: list[dict] = ABSENT  # retrains with one component swapped (bitcheck/user/bisection.py)
    samples: list[dict] = ABSENT
    checkpoint: str | None = ABSENT

    def metrics(self) -> dict:
        """report.json's `metrics`: every field this command reported."""
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not ABSENT}

    def known(self, name: str):
        """A field's value, None when absent."""
        v = getattr(self, name)
        return None if v is ABSENT else v

    def evidence(self, curve: list[dict] | None = None, task_passed: bool | None = None,
                 run_dir: str | None = None) -> Evidence:
        """What the decision tree reads besides the probes: these facts, the loss curve it judges (rows
        {"step", "loss"}, oldest first), whether the task's PASS criteria held (None: nothing says) and
        where next steps point."""
        k = self.known
        gap = None
        if k("learned") is not None:
            gap = {n: k(n) for n in ("text_loss", "text_entropy", "unigram_entropy", "ln_vocab", "learned")
                   if k(n) is not None}
        return Evidence(task_passed=task_passed, accuracy=k("accuracy"), curve=list(curve or []), steps=k("steps"),
                        elapsed_s=k("elapsed_s"), stopped=k("stopped"), improving=k("improving"), stall=k("stall"),
                        val_bpb=k("val_bpb"), text_gap=gap, reference=k("reference"), bisection=k("bisection"),
                        run_dir=run_dir or "RUN_DIR")

    def with_(self, **changes) -> "RunFacts":
        """A copy with these fields set (the record is frozen: what was measured is not edited later)."""
        return dataclasses.replace(self, **changes)
