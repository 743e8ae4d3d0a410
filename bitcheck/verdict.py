"""The decision tree: probe results + task score + loss curve -> one verdict with evidence.

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
Also the run-level facts: interrupted, non-finite loss. The verdict is plain data.
"""
from __future__ import annotations

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


def _evidence(probes: list[dict], names: set[str] | None = None, branches: set[str] | None = None) -> list[dict]:
    return [{"probe": p["name"], "status": p["status"], "value": p.get("value"), "message": p.get("message", "")}
            for p in probes if p["status"] in BAD and (names is None or p["name"] in names)
            and (branches is None or p.get("branch") in branches)]


def decide(probes: list[dict], metrics: dict, scalars: list[dict], task_passed: bool | None,
           run_dir: str = "RUN_DIR", steep_drop: float = STEEP_DROP) -> dict:
    """One verdict: {status, category, part, diagnosis, evidence, next_steps}."""
    stopped = metrics.get("stopped")
    failing = {p.get("branch") for p in probes if p["status"] in BAD}
    for branch, part in PARTS.items():
        if branch in failing:
            ev = _evidence(probes, branches={branch})
            return _v("FAIL", "INFRASTRUCTURE BUG", part,
                      f"Infrastructure bug in {part}: " + "; ".join(f"{e['probe']}: {e['message']}" for e in ev),
                      ev, NEXT_STEPS[part])
    if stopped == "nonfinite":
        return _v("FAIL", "INFRASTRUCTURE BUG", "numerics",
                  f"The loss became NaN/Inf at step {metrics.get('steps')} although the final probes are finite.",
                  [], NEXT_STEPS["numerics"])
    # the sampler and KV-cache probes are exact checks; poor sample text only means broken generation
    # once the model is known to have learned (an undertrained model writes gibberish too)
    gen_bad = {p["name"] for p in probes if p.get("branch") == "generation" and p["status"] in BAD}
    if gen_bad & EXACT_GENERATION_PROBES or (gen_bad and task_passed is not False):
        ev = _evidence(probes, names=gen_bad if task_passed is not False else gen_bad & EXACT_GENERATION_PROBES)
        return _v("FAIL", "GENERATION BROKEN", "generation",
                  "Training looks healthy but free-running output or the sampler is wrong: "
                  + "; ".join(f"{e['probe']}: {e['message']}" for e in ev), ev, NEXT_STEPS["generation"])
    if stopped == "interrupted" and not task_passed:
        return _v("FAIL", "INTERRUPTED", None,
                  f"Interrupted at step {metrics.get('steps')}; the probes found no bug so far.", [],
                  [f"Continue with --resume {run_dir}."])
    if task_passed or task_passed is None and not failing:
        what = metrics.get("accuracy")
        return _v("PASS", "INFRASTRUCTURE OK", None,
                  _all_passed(probes) + (f" and the task was learned ({_fmt_acc(what)})" if what else "")
                  + ": quantization, STE gradients, numerics, data, loss and generation check out.",
                  [], ["Scale up: a harder task (quick-json, quick-python) or real data (tinystories)."])
    if stopped == "stalled":
        return _v("FAIL", "MODEL TOO SMALL / TASK TOO HARD", "capacity",
                  "Probes are healthy but training stopped improving without solving the task: "
                  f"{metrics.get('stall', 'no gain in the held-out score or validation loss')}.",
                  [{"probe": "held_out_curve", "status": "FAIL", "value": metrics.get("steps"), "message": "plateau"}],
                  ["Use a larger preset or an easier task; confirm with the default quick-arith first.",
                   "If a larger model plateaus at the same loss, suspect the data instead."])
    improving = metrics.get("improving")
    if improving is True:
        return _v("FAIL", "UNDERTRAINED", "capacity",
                  f"Probes are healthy and the held-out evaluations were still improving when the "
                  f"{'time budget' if stopped == 'time' else 'step limit'} ran out "
                  f"({metrics.get('steps')} steps, {metrics.get('elapsed_s')} s).",
                  [{"probe": "held_out_curve", "status": "FAIL", "value": metrics.get("steps"),
                    "message": "still improving"}],
                  [f"Continue with --resume {run_dir} --minutes M, or give more --minutes; "
                   "a machine shared with other work trains slower."])
    trend = loss_trend(scalars)
    if improving is None and (trend is None or trend > steep_drop):
        falling = ("the run is too short to see a plateau" if trend is None else
                   f"the loss still falls {trend:.0%} per fifth of the run at the end")
        return _v("FAIL", "UNDERTRAINED", "capacity",
                  f"Probes are healthy and {falling}: train longer ({metrics.get('steps')} steps so far).",
                  [{"probe": "loss_curve", "status": "FAIL", "value": trend, "message": "still falling"}],
                  [f"Continue with --resume {run_dir} --steps N, or give more --minutes."])
    how = (f"last-fifth drop {trend:.1%}" if trend is not None
           else metrics.get("stall", "the evaluations had stopped improving"))
    return _v("FAIL", "MODEL TOO SMALL / TASK TOO HARD", "capacity",
              f"Probes are healthy but the loss has plateaued without solving the task ({how}).",
              [{"probe": "loss_curve", "status": "FAIL", "value": trend, "message": "plateau"}],
              ["Use a larger preset or an easier task; confirm with the default quick-arith first.",
               "If a larger model plateaus at the same loss, suspect the data instead."])


def _all_passed(probes: list[dict]) -> str:
    warned = [p["name"] for p in probes if p["status"] == "WARN"]
    return f"No probe failed (WARN: {', '.join(warned)})" if warned else "Every probe passed"


def _fmt_acc(acc) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in acc.items()) if isinstance(acc, dict) else str(acc)


def _v(status, category, part, diagnosis, evidence, next_steps) -> dict:
    return {"status": status, "category": category, "part": part, "diagnosis": diagnosis,
            "evidence": evidence, "next_steps": next_steps}
