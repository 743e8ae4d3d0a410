"""The decision tree: probe results + the evidence of a run or a file -> one verdict.

    verdict = judge(probes, Evidence(task_passed=True, ...), QUICK)    # typed
    decide(probes, metrics, scalars, task_passed) -> dict               # the same on plain data

Following the seed design's debugging tree, in order:
  1. any probe of an infrastructure part FAILs (or crashes) -> INFRASTRUCTURE BUG, naming the part
     (root causes first: numerics, data/tokenizer, loss/causality, optimizer, quantization, gradients/STE);
  2. the sampler or KV-cache probe FAILs, or the sample-text probes (repetition, gibberish) FAIL on a
     model that learned its task -> GENERATION BROKEN (training fine, free-running output wrong);
  3. the task passed -> INFRASTRUCTURE OK;
  4. the run stopped itself because nothing improved any more ("stalled")
     -> MODEL TOO SMALL / TASK TOO HARD;
  5. the budget ran out while the evaluations still improved (`metrics["improving"]`), or, where
     a run does not say, the loss is still falling steeply at the end -> UNDERTRAINED;
  6. otherwise (plateau, probes healthy) -> MODEL TOO SMALL / TASK TOO HARD.
Also the run-level facts: interrupted, non-finite loss. What a kind of run needs the tree to know
(a bits-per-byte bar, tensors without model code, a user model that has not learned its text) is
evidence or policy: no caller edits a verdict after the tree made it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bitcheck.user_model import LEARNED_MARGIN

# part names per probe branch, in the order the tree blames them (root causes first)
PARTS = {"numerics": "numerics", "data": "data/tokenizer", "loss": "loss/causality", "optimizer": "optimizer",
         "quantization": "quantization", "gradients": "gradients/STE"}
BAD = ("FAIL", "ERROR")
EXACT_GENERATION_PROBES = {"kv_cache_parity", "sampler"}
# "Still falling steeply": the mean loss of the last fifth of the logged curve is below that of the
# fifth before it by more than this fraction. A quick-arith run cut short at step 150 drops ~30% per
# fifth; a healthy run near PASS ~10%; a plateaued curve < 2%.
STEEP_DROP = 0.05
MIN_POINTS = 6  # fewer logged losses than this: too short to call a plateau

NEXT_STEPS = {
    "numerics": ["Find the first non-finite module named above; clamp quantizer scales with eps 1e-5.",
                 "Lower the learning rate or train in fp32 to see whether the NaN is precision-driven."],
    "data/tokenizer": ["Decode a batch exactly as the trainer feeds it and read it.",
                       "Use a lossless (byte-level) tokenizer; targets must be inputs shifted by one."],
    "loss/causality": ["Check the causal mask and that targets never appear in the inputs.",
                       "Initialise so the step-0 loss is ln(vocab)."],
    "optimizer": ["Lower the learning rate; check warmup and that weight decay skips norms/embeddings."],
    "quantization": ["Run the property tests on your layer: `bitcheck conform your.module:BitLinear`.",
                     "Scale convention: ternary codes times mean|W| in training."],
    "gradients/STE": ["Write both quantizers as x + (q(x) - x).detach() so gradients reach the latents.",
                      "Overfit one batch: it must reach near-zero loss."],
    "generation": ["Compare cached and uncached decoding; sample with temperature/top-p instead of greedy.",
                   "Check that the sampler divides logits by the temperature before softmax."],
}


def loss_trend(scalars: list[dict]) -> float | None:
    """Relative drop of the mean loss from the second-to-last fifth to the last fifth of the curve."""
    losses = [r["loss"] for r in scalars if isinstance(r.get("loss"), (int, float))]
    if len(losses) < MIN_POINTS:
        return None
    k = len(losses) // 5
    prev, last = sum(losses[-2 * k:-k]) / k, sum(losses[-k:]) / k
    return (prev - last) / prev if prev > 0 else None


class Category(str, Enum):
    OK = "INFRASTRUCTURE OK"
    TENSORS_OK = "TENSORS OK"  # no model code: the tensors show no bug, the dynamic probes did not run
    BUG = "INFRASTRUCTURE BUG"
    GENERATION = "GENERATION BROKEN"
    INTERRUPTED = "INTERRUPTED"
    UNDERTRAINED = "UNDERTRAINED"
    TOO_SMALL = "MODEL TOO SMALL / TASK TOO HARD"


@dataclass
class Evidence:
    """What a run or a file shows besides the probes."""
    task_passed: bool | None = None  # the task's PASS criteria held (None: nothing says)
    accuracy: dict | None = None  # the task's per-group score, quoted by an OK verdict
    curve: list[dict] = field(default_factory=list)  # loss curve rows {"loss": ...}, oldest first
    steps: int | None = None
    elapsed_s: float | None = None
    stopped: str | None = None  # a bitcheck.train.Stop value
    improving: bool | None = None  # a run that stops when it stalls: had it still been improving?
    stall: str | None = None  # that run's description of its stall
    val_bpb: float | None = None  # validation bits per byte (stories)
    text_gap: dict | None = None  # a user model and its --text: text_loss, unigram_entropy, ln_vocab, learned
    reference: str | None = None  # what bitcheck's own BitNet measured on this task (a user's model or loop)
    bisection: list[dict] | None = None  # retrains with one component swapped for bitcheck's (bitcheck/bisect.py)
    run_dir: str = "RUN_DIR"  # where next steps point (--resume)

    @classmethod
    def from_metrics(cls, metrics: dict, curve: list[dict], task_passed: bool | None,
                     run_dir: str | None = None) -> "Evidence":
        """The evidence a report's metrics carry (the keys every command writes)."""
        gap = {k: metrics[k] for k in ("text_loss", "unigram_entropy", "ln_vocab", "learned") if k in metrics}
        return cls(task_passed=task_passed, accuracy=metrics.get("accuracy"), curve=list(curve),
                   steps=metrics.get("steps"), elapsed_s=metrics.get("elapsed_s"), stopped=metrics.get("stopped"),
                   improving=metrics.get("improving"), stall=metrics.get("stall"), val_bpb=metrics.get("val_bpb"),
                   text_gap=gap if "learned" in gap else None, reference=metrics.get("reference"),
                   bisection=metrics.get("bisection"),
                   run_dir=run_dir or "RUN_DIR")


@dataclass(frozen=True)
class Policy:
    """How the tree reads the evidence of one kind of run."""
    steep_drop: float = STEEP_DROP  # "still falling steeply" per fifth of the curve
    pass_bpb: float | None = None  # a bits-per-byte bar quoted by an OK verdict (stories)
    tensors_only: bool = False  # no model code: a healthy result is TENSORS OK, not INFRASTRUCTURE OK
    ok_next_steps: tuple[str, ...] = (
        "Scale up: a harder task (quick-json, quick-python) or real data (tinystories).",)


# The policies of bitcheck's kinds of run. Stories: a validation curve falling 4.2% over its last
# fifth still improved its samples (README, "TinyStories"), so "steep" is 2% there; the 1.5 bits per
# byte bar is where the 1m model's samples stopped misspelling most words on the real sample.
QUICK = Policy()
STORIES = Policy(steep_drop=0.02, pass_bpb=1.5, ok_next_steps=(
    "Train longer or a larger preset for better stories; the infrastructure is not what limits this model.",
    "Compare its samples with the probes' reference text."))
TENSORS = Policy(tensors_only=True, ok_next_steps=(
    "Load the weights into your model and run every probe from Python: "
    "`probes.run_probes(probes.Subject(model=your_model, tokenizer=...))` (README, Diagnose).",
    "Run `bitcheck quick-arith` with your trainer's settings to compare a known-good run."))


@dataclass
class Verdict:
    status: str  # "PASS" | "FAIL"
    category: Category
    part: str | None  # the broken part, or "capacity" / "generation"
    diagnosis: str
    evidence: list[dict]
    next_steps: list[str]

    def to_dict(self) -> dict:
        return {"status": self.status, "category": self.category.value, "part": self.part,
                "diagnosis": self.diagnosis, "evidence": self.evidence, "next_steps": list(self.next_steps)}


def _evidence(probes: list[dict], names: set[str] | None = None, branches: set[str] | None = None) -> list[dict]:
    return [{"probe": p["name"], "status": p["status"], "value": p.get("value"), "message": p.get("message", "")}
            for p in probes if p["status"] in BAD and (names is None or p["name"] in names)
            and (branches is None or p.get("branch") in branches)]


def judge(probes: list[dict], ev: Evidence, policy: Policy = QUICK) -> Verdict:
    """The tree (module docstring) on probe result dicts and typed evidence. A run of the user's own
    model or loop states bitcheck's own measurement on the task next to its steps."""
    verdict = _tree(probes, ev, policy)
    if ev.reference and verdict.category in (Category.OK, Category.UNDERTRAINED, Category.TOO_SMALL):
        verdict.diagnosis += f" For comparison, {ev.reference}; this run: {ev.steps} steps."
    if ev.bisection and verdict.category in (Category.UNDERTRAINED, Category.TOO_SMALL):
        swapped = ", ".join(SWAP_WHAT[b["swap"]] for b in ev.bisection)
        verdict.diagnosis += f" With bitcheck's {swapped} swapped in, one at a time, it did not learn either."
    return verdict


def _tree(probes: list[dict], ev: Evidence, policy: Policy) -> Verdict:
    failing = {p.get("branch") for p in probes if p["status"] in BAD}
    for branch, part in PARTS.items():
        if branch in failing:
            found = _evidence(probes, branches={branch})
            return Verdict("FAIL", Category.BUG, part, f"Infrastructure bug in {part}: "
                           + "; ".join(f"{e['probe']}: {e['message']}" for e in found), found, NEXT_STEPS[part])
    if ev.stopped == "nonfinite":
        return Verdict("FAIL", Category.BUG, "numerics",
                       f"The loss became NaN/Inf at step {ev.steps} although the final probes are finite.",
                       [], NEXT_STEPS["numerics"])
    # the sampler and KV-cache probes are exact checks; poor sample text only means broken generation
    # once the model is known to have learned (an undertrained model writes gibberish too)
    gen_bad = {p["name"] for p in probes if p.get("branch") == "generation" and p["status"] in BAD}
    if gen_bad & EXACT_GENERATION_PROBES or (gen_bad and ev.task_passed is not False):
        found = _evidence(probes, names=gen_bad if ev.task_passed is not False else gen_bad & EXACT_GENERATION_PROBES)
        return Verdict("FAIL", Category.GENERATION, "generation",
                       "Training looks healthy but free-running output or the sampler is wrong: "
                       + "; ".join(f"{e['probe']}: {e['message']}" for e in found), found, NEXT_STEPS["generation"])
    if ev.stopped == "interrupted" and not ev.task_passed:
        return Verdict("FAIL", Category.INTERRUPTED, None,
                       f"Interrupted at step {ev.steps}; the probes found no bug so far.", [],
                       [f"Continue with --resume {ev.run_dir}."])
    if ev.task_passed or ev.task_passed is None and not failing:
        return _ok(probes, ev, policy)
    fixed = [b for b in ev.bisection or [] if b.get("passed")]
    if fixed:  # no probe named a part, but one swap for bitcheck's component made the model learn
        b = fixed[0]
        part, what = SWAP_PARTS[b["swap"]], SWAP_WHAT[b["swap"]]
        return Verdict("FAIL", Category.BUG, part,
                       f"No probe named a part, but with bitcheck's {what} in place of yours the model learns the task "
                       f"({b['steps']} steps): your {what} is the cause.",
                       [{"probe": "bisection", "status": "FAIL", "value": b["steps"],
                         "message": f"swap {b['swap']}: PASS ({b['run_dir']})"}]
                       + [{"probe": "bisection", "status": "PASS", "value": o["steps"],
                           "message": f"swap {o['swap']}: did not learn"} for o in ev.bisection if not o.get("passed")],
                       [f"Compare your {what} with bitcheck's, line by line: bitcheck/model.py (BitLinear) and "
                        "bitcheck/train.py (build_optimizer, schedule).", *NEXT_STEPS.get(part, [])])
    if ev.stopped == "stalled":
        return Verdict("FAIL", Category.TOO_SMALL, "capacity",
                       "Probes are healthy but training stopped improving without solving the task: "
                       f"{ev.stall or 'no gain in the held-out score or validation loss'}.",
                       [{"probe": "held_out_curve", "status": "FAIL", "value": ev.steps, "message": "plateau"}],
                       list(TOO_SMALL_NEXT))
    if ev.improving is True:
        return Verdict("FAIL", Category.UNDERTRAINED, "capacity",
                       f"Probes are healthy and the held-out evaluations were still improving when the "
                       f"{'time budget' if ev.stopped == 'time' else 'step limit'} ran out "
                       f"({ev.steps} steps, {ev.elapsed_s} s).",
                       [{"probe": "held_out_curve", "status": "FAIL", "value": ev.steps,
                         "message": "still improving"}],
                       [f"Continue with --resume {ev.run_dir} --minutes M, or give more --minutes; "
                        "a machine shared with other work trains slower."])
    if ev.text_gap is not None and not ev.text_gap["learned"]:
        gap = ev.text_gap
        return Verdict("FAIL", Category.UNDERTRAINED, "capacity", (
            f"Probes are healthy, but the model has not learned the text: loss {gap['text_loss']:.3f} vs "
            f"{gap['unigram_entropy']:.3f} for the best input-independent guess (unigram) and "
            f"{gap['ln_vocab']:.3f} = ln(vocab). Its samples are not evidence of a generation bug."),
            [{"probe": "text_loss", "status": "FAIL", "value": gap["text_loss"],
              "message": f"not below the unigram entropy {gap['unigram_entropy']:.3f} by {LEARNED_MARGIN} nats"}],
            ["Train longer, or check that this checkpoint is the trained one (not the init).",
             "Check that --text is the model's training distribution and --tokenizer its tokenizer."])
    trend = loss_trend(ev.curve)
    if ev.improving is None and (trend is None or trend > policy.steep_drop):
        falling = ("the run is too short to see a plateau" if trend is None else
                   f"the loss still falls {trend:.0%} per fifth of the run at the end")
        return Verdict("FAIL", Category.UNDERTRAINED, "capacity",
                       f"Probes are healthy and {falling}: train longer ({ev.steps} steps so far).",
                       [{"probe": "loss_curve", "status": "FAIL", "value": trend, "message": "still falling"}],
                       [f"Continue with --resume {ev.run_dir} --steps N, or give more --minutes."])
    how = f"last-fifth drop {trend:.1%}" if trend is not None else (ev.stall or "the evaluations had stopped improving")
    return Verdict("FAIL", Category.TOO_SMALL, "capacity",
                   f"Probes are healthy but the loss has plateaued without solving the task ({how}).",
                   [{"probe": "loss_curve", "status": "FAIL", "value": trend, "message": "plateau"}],
                   list(TOO_SMALL_NEXT))


# a bisection swap that makes the model learn names this part (bitcheck/bisect.py's swaps)
SWAP_PARTS = {"bitlinear": "quantization", "optimizer": "optimizer", "loop": "training loop"}
SWAP_WHAT = {"bitlinear": "BitLinear", "optimizer": "optimizer and schedule",
             "loop": "training loop (with its optimizer and schedule)"}
TOO_SMALL_NEXT = ("Use a larger preset or an easier task; confirm with the default quick-arith first.",
                  "If a larger model plateaus at the same loss, suspect the data instead.")


def _ok(probes: list[dict], ev: Evidence, policy: Policy) -> Verdict:
    if policy.tensors_only:
        ran = [p["name"] for p in probes if p["status"] == "PASS"]
        return Verdict("PASS", Category.TENSORS_OK, None, (
            f"The tensors show no bug ({', '.join(ran)}). Without the model code the dynamic probes (STE "
            "gradients, quantization applied, causality, KV cache, sampler, generation) did not run."),
            [], list(policy.ok_next_steps))
    diagnosis = (_all_passed(probes) + (f" and the task was learned ({_fmt_acc(ev.accuracy)})" if ev.accuracy else "")
                 + ": quantization, STE gradients, numerics, data, loss and generation check out.")
    if policy.pass_bpb is not None and ev.val_bpb is not None:
        diagnosis += f" Validation {ev.val_bpb:.3f} bits per byte (bar {policy.pass_bpb})."
    return Verdict("PASS", Category.OK, None, diagnosis, [], list(policy.ok_next_steps))


def decide(probes: list[dict], metrics: dict, scalars: list[dict], task_passed: bool | None,
           run_dir: str = "RUN_DIR", steep_drop: float = STEEP_DROP) -> dict:
    """The tree on plain data: a report's metrics dict and loss-curve rows -> the verdict dict
    {status, category, part, diagnosis, evidence, next_steps}."""
    return judge(probes, Evidence.from_metrics(metrics, scalars, task_passed, run_dir),
                 Policy(steep_drop=steep_drop)).to_dict()


def _all_passed(probes: list[dict]) -> str:
    warned = [p["name"] for p in probes if p["status"] == "WARN"]
    return f"No probe failed (WARN: {', '.join(warned)})" if warned else "Every probe passed"


def _fmt_acc(acc) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in acc.items()) if isinstance(acc, dict) else str(acc)
