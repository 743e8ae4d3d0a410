"""The decision tree: probe results + the evidence of a run or a file -> one verdict.

    verdict = judge(probes, Evidence(task_passed=True, ...), QUICK)    # typed

Following the seed design's debugging tree, every exit in order (`_tree`):
   1. any probe of an infrastructure part FAILs (or crashes) -> INFRASTRUCTURE BUG, naming the part
      (root causes first: checkpoint loading, numerics, data/tokenizer or data/labels, loss/causality,
      optimizer, quantization, gradients/STE, then the deployment path: export/conversion, inference
      model/loader). A probe attributes its own failure where it can (a causal leak that vanishes with
      per-token reference quantizers is a quantization failure); every other failing probe is listed as
      evidence after the blamed part's, as what may follow from it;
   2. the loss became NaN/Inf during training although the final probes are finite -> BUG, numerics;
   3. a training log alone (`bitcheck curve`, the CURVE policy, `_curve_verdict`): a loss at ln V (BUG), validation
      turned up (OVERFITTING), or the power-law fit of its loss: still improving (UNDERTRAINED), flat and small for its
      vocabulary (MODEL TOO SMALL), flat otherwise (CONVERGED, PASS), undecidable (CANNOT TELL, WARN);
   4. an exact generation check FAILs (sampler, KV cache, samples the model itself finds unlikely)
      -> GENERATION BROKEN;
   5. the model's loss on its text is far above ln(vocab) or above its own predictive entropy
      (confident wrong prediction) -> INFRASTRUCTURE BUG, data/labels: never "train longer";
   6. only the sample-text probes (repetition, gibberish) FAIL on a model that learned: its samples are
      what it predicts, so a weak model, not broken decoding -> UNDERTRAINED;
   7. interrupted before the task passed -> INTERRUPTED;
   8. the task passed (or nothing says and nothing failed) -> INFRASTRUCTURE OK, naming only the parts
      whose probes ran (TENSORS OK without model code);
   9. a bisection retrain (bitcheck's component swapped in) learned where the user's did not
      -> INFRASTRUCTURE BUG in the swapped part;
  10. the run stopped itself because nothing improved any more ("stalled") -> MODEL TOO SMALL / TASK TOO HARD;
  11. the budget ran out while the evaluations still improved (`improving`) -> UNDERTRAINED;
  12. a user model that has not learned its --text (loss not below the unigram entropy) -> UNDERTRAINED;
  13. no training log at all (a checkpoint outside its run) -> UNDERTRAINED, saying that no log tells
      whether it was still improving (never "too short");
  14. the logged loss still falls steeply at the end, or is too short to tell -> UNDERTRAINED;
  15. otherwise (plateau, probes healthy) -> MODEL TOO SMALL / TASK TOO HARD.
Also the run-level facts: interrupted, non-finite loss. What a kind of run needs the tree to know
(a bits-per-byte bar, tensors without model code, a user model that has not learned its text) is
evidence or policy: no caller edits a verdict after the tree made it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from probes.curve import IMPROVING

# part names per probe branch, in the order the tree blames them (root causes first)
# "loading" first: a model that does not hold its checkpoint's weights makes every later symptom moot;
# the deployment path last: a training-side bug also shows in a comparison with the exported model.
PARTS = {"loading": "checkpoint loading", "numerics": "numerics", "data": "data/tokenizer",
         "loss": "loss/causality", "optimizer": "optimizer", "quantization": "quantization",
         "gradients": "gradients/STE", "export": "export/conversion", "inference": "inference model/loader"}
# a data failure made only of these probes is about the labels, not the tokenizer
LABEL_PROBES = {"label_offset"}
BAD = ("FAIL", "ERROR")
# the part an UNDERTRAINED verdict names: nothing is broken and the model's size is not in question
LENGTH = "training length"
# exact checks of the decoding path: their failure is a generation bug whatever the model learned.
# sample_likelihood compares the samples with what the model itself predicts, so it tells broken
# decoding from a weak model; repetition and gibberish alone cannot (a half-trained model writes
# poor text through a correct sampler: the #14 false alarm).
EXACT_GENERATION_PROBES = {"kv_cache_parity", "sampler", "sample_likelihood"}
# a teacher-forced loss this many nats above ln(vocab) is confident wrong prediction, which no
# training length explains. Measured (tests/test_root_cause.py): untrained models sit within 0.1 of
# ln V; labels shifted twice 1.1 above.
ABOVE_CHANCE = 1.0
# Confidently wrong below ln V too: the loss exceeds the entropy of the model's own predictions by
# this many nats. A model on its own kind of text is about as wrong as it is uncertain, trained or
# not. Measured (tests' user model, BPE 320; tests/test_root_cause.py): healthy -0.14..+0.12 (init,
# 300, 800 steps); labels shifted twice 5.1; another BPE of the same size 1.6 (trained on fewer of
# the same stories, most merges shared) to 3.3 (other stories; 2.2 on the 300-step model).
CONFIDENT_WRONG = 1.0
# "Still falling steeply": the mean loss of the last fifth of the logged curve is below that of the
# fifth before it by more than this fraction. A quick-arith run cut short at step 150 drops ~30% per
# fifth; a healthy run near PASS ~10%; a plateaued curve < 2%.
STEEP_DROP = 0.05
MIN_POINTS = 6  # fewer logged losses than this: too short to call a plateau
# "Has the model learned the text?": its teacher-forced loss on the text must beat the best
# input-independent predictor (the text's own unigram entropy) by this many nats. Measured on the
# tests' user model (tests/user_models.py, BPE 320, generated stories): untrained 5.776, i.e. 1.58
# nats *worse* than the unigram entropy 4.198 (an untrained model is near ln V = 5.768); trained 400
# steps 1.749, 2.45 nats better. Without it an untrained model's gibberish would be blamed on
# generation; the margin only keeps a model at the unigram level from counting as learned.
LEARNED_MARGIN = 0.2

NEXT_STEPS = {
    "numerics": ["Find the first non-finite module (the probes name it when they ran on the model; from a log "
                 "alone, `bitcheck diagnose` a checkpoint from just before the NaN); clamp quantizer scales with "
                 "eps 1e-5.",
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
    "checkpoint loading": ["Load with strict=True and read what it reports: strip the checkpoint's key prefix "
                           "('model.', 'module.', '_orig_mod.'), tie or load the LM head as trained.",
                           "Compare a few tensors of the loaded model with the file by hand."],
    "data/labels": ["Shift the labels exactly once: targets[t] = ids[t + 1], in the dataset or in the loss, not both.",
                    "Decode one (input, target) pair as the trainer feeds it and read them side by side."],
    "export/conversion": ["Check the converter, not the training layer: weight_scale is 1/mean|W| and inference "
                          "divides by it (or stores mean|W| and multiplies), never mixed.",
                          "Unpack one exported layer's codes and compare them with round(W / mean|W|) of the latents."],
    "inference model/loader": ["Every quantized layer matches its exported twin: compare the inference model's "
                               "architecture and loader with training (extra or missing norms, residuals, RoPE, "
                               "tied embeddings, config flags).",
                               "Load the training checkpoint into the inference class with strict=True and diff "
                               "the module lists."],
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
    OVERFITTING = "OVERFITTING"  # a training log: validation loss rising while the training loss falls
    # a training log whose loss has flattened with nothing unstable, mis-scheduled or small about the model: the
    # run is complete as far as a log can tell (a log alone cannot prove the infrastructure healthy)
    CONVERGED = "CONVERGED"
    CANNOT_TELL = "CANNOT TELL"  # a training log that lacks what the fit needs to decide (status WARN)


@dataclass
class Evidence:
    """What a run or a file shows besides the probes, as the tree reads it (built by RunFacts.evidence,
    bitcheck/judge/facts.py)."""
    task_passed: bool | None = None  # the task's PASS criteria held (None: nothing says)
    accuracy: dict | None = None  # the task's per-group score, quoted by an OK verdict
    curve: list[dict] = field(default_factory=list)  # loss curve rows {"loss": ...}, oldest first
    steps: int | None = None
    elapsed_s: float | None = None
    stopped: str | None = None  # a bitcheck.bitnet.train.Stop value
    improving: bool | None = None  # a run that stops when it stalls: had it still been improving?
    stall: str | None = None  # that run's description of its stall
    val_bpb: float | None = None  # validation bits per byte (stories)
    text_gap: dict | None = None  # a user model and its --text: text_loss, unigram_entropy, ln_vocab, learned
    reference: str | None = None  # what bitcheck's own BitNet measured on this task (a user's model or loop)
    bisection: list[dict] | None = None  # retrains with one component swapped for bitcheck's (bitcheck/user/bisection.py)
    run_dir: str = "RUN_DIR"  # where next steps point (--resume)


@dataclass(frozen=True)
class Policy:
    """How the tree reads the evidence of one kind of run."""
    steep_drop: float = STEEP_DROP  # "still falling steeply" per fifth of the curve
    pass_bpb: float | None = None  # a bits-per-byte bar quoted by an OK verdict (stories)
    tensors_only: bool = False  # no model code: a healthy result is TENSORS OK, not INFRASTRUCTURE OK
    curve: bool = False  # a training log alone (bitcheck curve): undertrained / flat from the fit, not a task
    kinds: tuple[str, ...] | None = None  # the probe kinds this kind of run runs (None: all that apply)
    ok_next_steps: tuple[str, ...] = (
        "Scale up: a harder task (quick-json, quick-python) or real data (tinystories).",)


# The policies of bitcheck's kinds of run. Stories: a validation curve falling 4.2% over its last
# fifth still improved its samples (docs/MEASUREMENTS.md, "TinyStories: measured"), so "steep" is 2%
# there; the 1.5 bits per byte bar is where the 1m model's samples stopped misspelling most words on
# the real sample.
QUICK = Policy()
STORIES = Policy(steep_drop=0.02, pass_bpb=1.5, ok_next_steps=(
    "Train longer or a larger preset for better stories; the infrastructure is not what limits this model.",
    "Compare its samples with the probes' reference text."))
# a user's own model diagnosed from a checkpoint: what else bitcheck can check of their infrastructure
USER = Policy(ok_next_steps=(
    "Give --text (your training text) and --tokenizer, if not given, to check the data path and the samples too.",
    "Check the training side as well: `bitcheck quick-arith --model your_adapter` trains your model with its "
    "optimizer and schedule on a task with a known answer (README, Validate your own training code)."))
# a user's training log: only the log probes run (probes/curve.py); no verdict there is "OK"
CURVE = Policy(curve=True, kinds=("curve",))
TENSORS = Policy(tensors_only=True, ok_next_steps=(
    "Load the weights into your model and run every probe from Python: "
    "`probes.run_probes(probes.Subject(model=your_model, tokenizer=...))` (docs/OWN_CODE.md).",
    "Run `bitcheck quick-arith` with your trainer's settings to compare a known-good run."))


@dataclass
class Verdict:
    status: str  # "PASS" | "FAIL" | "WARN" (a log that cannot decide: CANNOT TELL; exit code 0)
    category: Category
    part: str | None  # the broken part, or "capacity" / "training length" / "generation"
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
    model or loop states bitcheck's own measurement on the task next to its steps. Under a bits-per-byte
    policy (stories) the task passed when validation bits per byte reached the bar; with none measured
    (a checkpoint outside its run), nothing says."""
    if policy.pass_bpb is not None and ev.task_passed is None and ev.val_bpb is not None:
        ev = dataclasses.replace(ev, task_passed=ev.val_bpb <= policy.pass_bpb)
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
            return _bug(probes, branch, part)
    if ev.stopped == "nonfinite":
        return Verdict("FAIL", Category.BUG, "numerics",
                       f"The loss became NaN/Inf at step {ev.steps} although the final probes are finite.",
                       [], NEXT_STEPS["numerics"])
    if policy.curve:
        return _curve_verdict(probes)
    # the sampler and KV-cache probes are exact checks; poor sample text only means broken generation
    # once the model is known to have learned (an undertrained model writes gibberish too)
    gen_bad = {p["name"] for p in probes if p.get("branch") == "generation" and p["status"] in BAD}
    exact_bad = gen_bad & EXACT_GENERATION_PROBES
    if exact_bad:
        found = _evidence(probes, names=gen_bad if ev.task_passed is not False else exact_bad)
        return Verdict("FAIL", Category.GENERATION, "generation",
                       "Training looks healthy but free-running output or the sampler is wrong: "
                       + "; ".join(f"{e['probe']}: {e['message']}" for e in found), found, NEXT_STEPS["generation"])
    if ev.text_gap is not None and _confidently_wrong(ev.text_gap):  # learned or not, never undertraining
        return _confidently_wrong_verdict(ev.text_gap)
    if gen_bad and ev.task_passed is not False and ev.stopped != "interrupted":
        return _weak_samples(probes, gen_bad, ev)
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
                       [f"Compare your {what} with bitcheck's, line by line: bitcheck/bitnet/model.py (BitLinear) and "
                        "bitcheck/bitnet/train.py (build_optimizer, schedule).", *NEXT_STEPS.get(part, [])])
    if ev.stopped == "stalled":
        return Verdict("FAIL", Category.TOO_SMALL, "capacity",
                       "Probes are healthy but training stopped improving without solving the task: "
                       f"{ev.stall or 'no gain in the held-out score or validation loss'}.",
                       [{"probe": "held_out_curve", "status": "FAIL", "value": ev.steps, "message": "plateau"}],
                       list(TOO_SMALL_NEXT))
    if ev.improving is True:
        return Verdict("FAIL", Category.UNDERTRAINED, LENGTH,
                       f"Probes are healthy and the held-out evaluations were still improving when the "
                       f"{'time budget' if ev.stopped == 'time' else 'step limit'} ran out "
                       f"({ev.steps} steps, {ev.elapsed_s} s).",
                       [{"probe": "held_out_curve", "status": "FAIL", "value": ev.steps,
                         "message": "still improving"}],
                       [f"Continue with --resume {ev.run_dir} --minutes M, or give more --minutes; "
                        "a machine shared with other work trains slower."])
    if ev.text_gap is not None and not ev.text_gap["learned"]:
        gap = ev.text_gap
        return Verdict("FAIL", Category.UNDERTRAINED, LENGTH, (
            f"Probes are healthy, but the model has not learned the text: loss {gap['text_loss']:.3f} vs "
            f"{gap['unigram_entropy']:.3f} for the best input-independent guess (unigram) and "
            f"{gap['ln_vocab']:.3f} = ln(vocab). Its samples are not evidence of a generation bug."),
            [{"probe": "text_loss", "status": "FAIL", "value": gap["text_loss"],
              "message": f"not below the unigram entropy {gap['unigram_entropy']:.3f} by {LEARNED_MARGIN} nats"}],
            ["Train longer, or check that this checkpoint is the trained one (not the init).",
             "Check that --text is the model's training distribution and --tokenizer its tokenizer."])
    if ev.improving is None and not ev.curve:  # a checkpoint without its run: no log says how training went
        return Verdict("FAIL", Category.UNDERTRAINED, LENGTH, (
            f"Probes are healthy but the task is not solved, and there is no training log beside this checkpoint "
            f"(step {ev.steps}): whether its loss was still falling, or had flattened, is not known."),
            [{"probe": "loss_curve", "status": "SKIP", "value": None, "message": "no training log"}],
            ["Diagnose the checkpoint where its run wrote it (RUN/checkpoints/step_N/checkpoint.pt), so its log is "
             "read, or judge the run's log with `bitcheck curve RUN`.",
             "If it was still improving, continue training from it; if not, see MODEL TOO SMALL."])
    trend = loss_trend(ev.curve)
    if ev.improving is None and (trend is None or trend > policy.steep_drop):
        falling = ("the run is too short to see a plateau" if trend is None else
                   f"the loss still falls {trend:.0%} per fifth of the run at the end")
        return Verdict("FAIL", Category.UNDERTRAINED, LENGTH,
                       f"Probes are healthy and {falling}: train longer ({ev.steps} steps so far).",
                       [{"probe": "loss_curve", "status": "FAIL", "value": trend, "message": "still falling"}],
                       [f"Continue with --resume {ev.run_dir} --steps N, or give more --minutes."])
    how = f"last-fifth drop {trend:.1%}" if trend is not None else (ev.stall or "the evaluations had stopped improving")
    return Verdict("FAIL", Category.TOO_SMALL, "capacity",
                   f"Probes are healthy but the loss has plateaued without solving the task ({how}).",
                   [{"probe": "loss_curve", "status": "FAIL", "value": trend, "message": "plateau"}],
                   list(TOO_SMALL_NEXT))


# a bisection swap that makes the model learn names this part (bitcheck/user/bisection.py's swaps)
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
                 + ": " + _checked(probes))
    if policy.pass_bpb is not None and ev.val_bpb is not None:
        diagnosis += f" Validation {ev.val_bpb:.3f} bits per byte (bar {policy.pass_bpb})."
    return Verdict("PASS", Category.OK, None, diagnosis, [], list(policy.ok_next_steps))


# how an OK verdict names what its probes checked, per branch
CHECKED = {"quantization": "quantization", "gradients": "STE gradients", "numerics": "numerics", "data": "data",
           "loss": "loss", "optimizer": "optimizer", "generation": "generation", "loading": "checkpoint loading",
           "export": "export"}


def _checked(probes: list[dict]) -> str:
    """'X, Y and Z check out' for the branches with a probe that ran; the parts none checked, with why."""
    ran = [b for b in CHECKED if any(p.get("branch") == b and p["status"] in ("PASS", "WARN") for p in probes)]
    # checkpoint loading only applies where a file was loaded by someone else's code: not a gap elsewhere
    unchecked = [(b, next(p for p in probes if p.get("branch") == b)) for b in CHECKED
                 if b not in ran and b != "loading" and any(p.get("branch") == b for p in probes)]
    text = (_join([CHECKED[b] for b in ran]) + " check out." if ran else "no probe could run.")
    if unchecked:
        text += " Not checked: " + "; ".join(f"{CHECKED[b]} ({p['name']}: {p.get('message', '')})"
                                             for b, p in unchecked) + "."
    return text


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _bug(probes: list[dict], branch: str, part: str) -> Verdict:
    """INFRASTRUCTURE BUG in `part`: its failing probes are the cause; every other failing probe is
    listed after them, as what may follow from it."""
    found = _evidence(probes, branches={branch})
    if branch == "data" and {e["probe"] for e in found} <= LABEL_PROBES:
        part = "data/labels"
    others = [dict(e, role="also failing") for e in _evidence(probes) if e["probe"] not in {f["probe"] for f in found}]
    diagnosis = f"Infrastructure bug in {part}: " + "; ".join(f"{e['probe']}: {e['message']}" for e in found)
    if others:
        diagnosis += (". Also failing, possibly as a consequence (recheck after fixing the above): "
                      + ", ".join(e["probe"] for e in others))
    return Verdict("FAIL", Category.BUG, part, diagnosis, [dict(e, role="cause") for e in found] + others,
                   NEXT_STEPS[part])


def _confidently_wrong(gap: dict) -> str | None:
    """Why a model's loss on its text is not undertraining: above ln(vocab), or far above the entropy
    of its own predictions (None when neither)."""
    if gap["text_loss"] > gap["ln_vocab"] + ABOVE_CHANCE:
        return f"{gap['text_loss'] - gap['ln_vocab']:.2f} nats above ln(vocab) = {gap['ln_vocab']:.3f}"
    entropy = gap.get("text_entropy")
    if entropy is not None and gap["text_loss"] - entropy > CONFIDENT_WRONG:
        return (f"{gap['text_loss'] - entropy:.2f} nats above the entropy of its own predictions ({entropy:.3f}): "
                "it is sure of tokens the text does not continue with")
    return None


def _confidently_wrong_verdict(gap: dict) -> Verdict:
    why = _confidently_wrong(gap)
    return Verdict("FAIL", Category.BUG, "data/labels", (
        f"The model's loss on the text, {gap['text_loss']:.3f}, is {why}. That is confident wrong prediction, "
        "which no amount of training explains: the model learned other targets than this text's next token "
        "(labels shifted, another tokenizer, other text), or the weights in it are not the trained ones. "
        "(A model that memorised its training set scores like this on text it never saw: give --text from "
        "its training data to rule that out.)"),
        [{"probe": "text_loss", "status": "FAIL", "value": gap["text_loss"], "message": why}],
        ["Check that --tokenizer is the one the model was trained with and --text its training distribution.",
         *NEXT_STEPS["data/labels"], *NEXT_STEPS["checkpoint loading"]])


def _weak_samples(probes: list[dict], gen_bad: set[str], ev: Evidence) -> Verdict:
    """The sample-text probes failed but the samples are as likely under the model as its own text
    predictions: the decoder works, the model is weak."""
    likely = next((p for p in probes if p["name"] == "sample_likelihood" and p["status"] in ("PASS", "WARN")), None)
    found = _evidence(probes, names=gen_bad)
    why = (f"; sample_likelihood: {likely['message']}" if likely else
           "; nothing checked that the decoder samples what the model predicts (sample_likelihood did not run)")
    return Verdict("FAIL", Category.UNDERTRAINED, LENGTH, (
        "The samples are poor (" + "; ".join(f"{e['probe']}: {e['message']}" for e in found) + ")" + why
        + ". A correct decoder on a half-trained model writes such text: train longer, or use a larger model."),
        found, ["Train longer and rerun; if the samples stay poor while the loss falls, compare your generate "
                "with a plain full-forward sampler.", *TOO_SMALL_NEXT[:1]])


def _all_passed(probes: list[dict]) -> str:
    warned = [p["name"] for p in probes if p["status"] == "WARN"]
    return f"No probe failed (WARN: {', '.join(warned)})" if warned else "Every probe passed"


def _fmt_acc(acc) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in acc.items()) if isinstance(acc, dict) else str(acc)


CURVE_NEXT = ("Rule out the infrastructure on a task with a known answer: `bitcheck quick-arith --model your_adapter` "
              "trains your model, optimizer and schedule small (README, Validate your own training code).",
              "If the loss is good but the samples are gibberish, the decoding is the suspect: "
              "`bitcheck diagnose checkpoint.pt --model module:factory --tokenizer ... --text ...`.")


def _curve_verdict(probes: list[dict]) -> Verdict:
    """A training log without an infrastructure failure: at the uniform baseline -> BUG; validation turned
    up -> OVERFITTING; still improving (the fit's 2x gain) -> UNDERTRAINED; flat and small for its vocabulary
    -> MODEL TOO SMALL; flat otherwise -> CONVERGED (PASS); no fit, or a fall that may be the LR's -> CANNOT TELL."""
    by = {p["name"]: p for p in probes}
    base = by.get("loss_baseline", {})
    if base.get("status") == "FAIL":  # nothing learned: no capacity or length verdict explains that
        return Verdict("FAIL", Category.BUG, "infrastructure (a log cannot say which part)", (
            f"The loss sits at the uniform baseline: {base['message']}. A model of any size learns more than "
            "this from its data, so the run is not too small or too short: its pipeline is broken (data, labels, "
            "the STE, the optimizer, the loss)."), [_row(base)], list(CURVE_NEXT[:1]))
    ext = by.get("loss_extrapolation", {})
    gap = ((base.get("details") or {}).get("baselines") or {}).get("bigram")
    if base.get("status") == "WARN" and gap is not None and ext.get("status") in ("PASS", "WARN"):
        # flat at the level of a model that sees only the previous token: the layers between embedding and head
        # add nothing (a ternary model whose BitLinear layers never trained); no size or length explains it
        return Verdict("FAIL", Category.BUG, "infrastructure (a log cannot say which part)", (
            f"The loss has flattened at its data's bigram level: {base['message']}. Everything between the "
            "embedding and the head adds nothing, which a model of any size does not do when its pipeline works "
            "(a ternary model whose BitLinear layers never train ends here: a dead STE, an optimizer that skips "
            "them, a quantizer that blocks the gradient)."), [_row(base), _row(ext)],
            ["Run `bitcheck conform your.module:BitLinear` and check that the optimizer holds the BitLinear weights.",
             *CURVE_NEXT[:1]])
    over = by.get("overfitting", {})
    if over.get("status") == "FAIL":  # what more tokens of the same data would buy is moot once it memorises
        return Verdict("FAIL", Category.OVERFITTING, "data", (
            f"The model overfits its training data: {over['message']}. The training loss says nothing about "
            "the model's quality past that step."), [_row(over)],
            ["Keep the checkpoint of the step where validation loss was lowest.",
             "More (deduplicated) data, fewer epochs over it, or a smaller model; check that the validation "
             "split shares no documents with training.", *CURVE_NEXT[:1]])
    cap = by.get("model_capacity", {})
    fit = (ext.get("details") or {}).get("fit") or {}
    capacity = cap.get("message", "") if cap.get("status") in ("PASS", "WARN", "FAIL") else ""
    per = (cap.get("details") or {}).get("tokens_per_non_embedding_param")
    warned = [p for p in probes if p["status"] == "WARN" and p["name"] not in ("loss_extrapolation", "model_capacity")]
    also = "".join(f" Also: {p['name']}: {p['message']}." for p in warned)
    cap_text = f" Capacity: {capacity}." if capacity else ""
    if ext.get("status") == "FAIL":
        past = (f" At {per:.0f} tokens per non-embedding parameter the run is past Chinchilla's compute-optimal ~20: "
                "a larger model would buy as much for the same compute." if per and per >= 20 else "")
        return Verdict("FAIL", Category.UNDERTRAINED, LENGTH, (
            f"The loss is still falling: {ext['message']} (2x the {fit.get('x_unit', 'tokens')} would buy "
            f"{fit.get('gain_2x', 0):.3f}, {fit.get('gain_2x', 0) / max(fit.get('end_loss', 1), 1e-9):.1%} of the loss)."
            + past + cap_text + also),
            [_row(ext)], ["Train longer: the same schedule stretched to the longer horizon (the prediction assumes "
                          "that shape; continuing at the final LR buys less).", *CURVE_NEXT[:1]])
    if ext.get("status") not in ("PASS", "WARN"):
        return Verdict("WARN", Category.CANNOT_TELL, None,
                       f"The loss curve could not be fitted ({ext.get('message', 'no fit')}): nothing says whether "
                       "more tokens would help." + cap_text + also, [_row(ext)] if ext else [],
                       ["Log the loss more often (every 10-100 steps) and rerun.", *CURVE_NEXT])
    small = cap.get("status") in ("WARN", "FAIL")
    if fit.get("lr_known") is False and fit.get("gain_2x_low", 0.0) > IMPROVING.fail:
        return Verdict("WARN", Category.CANNOT_TELL, None, (
            f"Cannot tell undertrained from converged: {ext['message']}. The fall may be the LR's decay rather than "
            "what more tokens buy, so bitcheck does not say 'train longer' on it." + cap_text + also),
            [_row(ext)], ["Log the learning rate, or give the schedule (--config, or --lr, --warmup, --steps and "
                          "--schedule; --schedule constant if it never decayed), and rerun.", *CURVE_NEXT])
    slow = " (still improving slowly)" if ext["status"] == "WARN" else ""
    if small:
        return Verdict("FAIL", Category.TOO_SMALL, "capacity", (
            f"The loss has flattened{slow}: {ext['message']}: more tokens buy little. The model is small for its "
            f"vocabulary: {capacity}. A flat curve is what a model at its capacity shows, and also what a bug in "
            "quantization or the STE shows at a worse loss: the curve alone cannot tell them apart." + also),
            [_row(ext), _row(cap)],
            ["A smaller vocabulary or a larger model (more non-embedding parameters): ternary layers hold less "
             "per parameter than float ones.", *CURVE_NEXT])
    return _converged(by, ext, "still improving slowly: " if slow else "", capacity, per, warned)


# what a healthy log shows, per probe, in a CONVERGED verdict's words
HEALTHY_LOG = {"loss_spikes": "no loss spike", "grad_norm_log": "no grad-norm jump",
               "nonfinite_log": "every logged value finite", "logged_schedule": "the LR applied as intended",
               "overfitting": "no overfitting", "loss_baseline": "well below the uniform baseline ln V"}


def _converged(by: dict, ext: dict, slow: str, capacity: str, per: float | None, warned: list[dict]) -> Verdict:
    """A flat curve with nothing else found: the run is complete, said plainly (PASS), with what the log
    showed healthy, what it did not check, and that a log alone cannot clear the infrastructure."""
    seen = [words for name, words in HEALTHY_LOG.items() if by.get(name, {}).get("status") == "PASS"]
    unchecked = [name for name in HEALTHY_LOG if by.get(name, {}).get("status") == "SKIP"]
    past = (f" At {per:.0f} tokens per non-embedding parameter it is past Chinchilla's compute-optimal ~20."
            if per and per >= 20 else "")
    diagnosis = (f"The run is complete as far as its log shows: the loss has flattened ({slow}{ext['message']}), so "
                 f"more tokens buy little.{past}"
                 + (f" The log shows {_join(seen)}." if seen else "")
                 + (f" Capacity: {capacity}." if capacity else "")
                 + "".join(f" WARN {p['name']}: {p['message']}." for p in warned)
                 + (f" Not checked from this log: {', '.join(unchecked)} (see the probes)." if unchecked else "")
                 + " A log alone cannot prove the infrastructure healthy: a bug in quantization or the STE also "
                   "flattens, at a worse loss.")
    return Verdict("PASS", Category.CONVERGED, None, diagnosis, [],
                   ["For a lower loss: a larger model or more (deduplicated) data, not more steps.", *CURVE_NEXT])


def _row(p: dict) -> dict:
    return {"probe": p.get("name"), "status": p.get("status"), "value": p.get("value"), "message": p.get("message", "")}
