"""Optimizer probes for a user's own optimizer and schedule: was the learning-rate and weight-decay
schedule applied as the recipe intends, and does weight decay stay off norms and embeddings?

The trainer logs what the optimizer actually held at every step (`history.schedule`: step, lr,
weight_decay) next to what the recipe intends (`history.intended`, e.g. the BitNet b1.58 two-stage
schedule: warmup, a linear decay to half the peak at 50% of training with weight decay 0.1, then to
10% with weight decay 0), and samples every param group's weight decay (`history.group_decay`,
OptimizerWatch). These probes only compare the two; they never compute a schedule themselves.
"""
from __future__ import annotations

import bisect
import math

import torch.nn as nn

from probes.core import SKIP, Measurement, Subject, Threshold, probe

# Median, over the logged steps after warmup, of applied LR / intended LR. A schedule that never
# leaves warmup sits at the warmup's first values (~1/warmup of the peak); one that decays to zero at
# once at ~0. Healthy: 1.0 (the same formula). FAIL below 0.2; WARN below 0.5 (a deliberately lower LR).
LR_LEVEL = Threshold("lr_ratio_median", warn=0.5, fail=0.2, higher_is_worse=False,
                     source="healthy 1.0; never leaves warmup 0.01-0.03; decays to zero at once ~0")
# How much faster than intended the schedule runs (time-scale fit, see _time_scale). A schedule
# stepped once per micro-batch with k micro-batches runs k times fast. Healthy: 1.0.
SPEED = Threshold("schedule_speed", warn=1.2, fail=1.5, source="healthy 1.0; stepped per micro-batch (k=2) 2.0")
# Share of the logged steps where weight decay is on (> 0.001) though the recipe intends 0 (stage 2).
WD_STAGE2 = Threshold("wd_on_where_off_share", warn=0.0, fail=0.1,
                      source="healthy 0; weight decay kept in stage 2: 1.0")
# Largest relative LR deviation from the intended shape at any logged step: a different but working
# schedule (cosine for two-stage) is worth a WARN, not a FAIL.
SHAPE = Threshold("max_lr_deviation", warn=0.1, fail=None, source="healthy < 1e-6 (the same formula)")
# Parameters with weight decay > 0 that are norms or biases (1-D) or embeddings, by count.
DECAYED_NORMS = Threshold("decayed_1d_params", warn=None, fail=0, source="any: decay pulls RMSNorm gains to 0")
DECAYED_EMBEDDINGS = Threshold("decayed_embeddings", warn=0, fail=None,
                               source="common practice exempts them; a WARN, not a bug")


def _time_scale(applied: list[tuple[int, float]], intended_at) -> float:
    """The factor f (from a grid 0.25..8) for which applied(step) best matches intended(f * step)."""
    best, best_err = 1.0, float("inf")
    for f in [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]:
        errs = [abs(lr - intended_at(f * s)) / max(abs(intended_at(f * s)), 1e-12) for s, lr in applied]
        err = sum(errs) / len(errs)
        if err < best_err - 1e-9:
            best, best_err = f, err
    return best if best_err < 0.1 else 1.0


@probe("schedule_shape", branch="optimizer", kind="training",
       catches="a user's LR schedule that never leaves warmup, decays to zero at once or is stepped per "
               "micro-batch; weight decay left on in stage 2",
       fails_when="applied/intended LR median < 0.2, schedule runs >= 1.5x fast, weight decay on in > 10% of "
                  "the steps where the recipe has none",
       measured="1.0 / 1.0x / 0 healthy vs 0.01-0.03 (stuck in warmup), 2.0x (per micro-batch, k=2), 1.0 (wd kept)")
def schedule_shape(s: Subject):
    """The learning rate and weight decay the optimizer held at every logged step, against the recipe's
    intended schedule: its level after warmup, its speed, and weight decay where the recipe has none. Past
    the run's last step the rows come from a copy of the optimizer and schedule stepped to the recipe's
    horizon without training (History.schedule_stepped_from), so stage 2 is judged in a run that PASSed
    in stage 1."""
    log, want = s.history.schedule, s.history.intended
    if not log or not want:
        return Measurement(message="the run used bitcheck's own schedule (nothing to compare)", status=SKIP)
    m = compare_schedule(log, want, s.history.warmup_steps or 0)
    after = s.history.schedule_stepped_from
    if after is not None and log[-1]["step"] > after:
        m.message += (f" (steps {after + 1}-{log[-1]['step']}: a copy of your optimizer and schedule stepped to the "
                      "recipe's horizon without training)")
    return m


# A logged schedule against the one its config states (probes/curve.py): the median relative LR deviation
# after warmup. A recipe's schedule in a quick run may differ on purpose (schedule_shape: WARN only); a run's
# own config may not. Healthy: < 1e-6 (the same formula); a decay never applied 0.4-9; warmup 30x long ~0.9.
MEDIAN_DEVIATION = Threshold("median_lr_deviation", warn=0.1, fail=0.25,
                             source="healthy < 1e-6; decay never applied 0.4-9; warmup 30x long ~0.9")


# The warmup the log shows (first logged step at >= 95% of the largest logged LR) over the configured one,
# as |log2|: a scheduler stepped per micro-batch (k=4) ends warmup 4x early (2.0), a warmup never ended is
# far longer. Healthy: ~0 (the logging interval's rounding).
WARMUP_OFF = Threshold("warmup_log2_ratio", warn=0.5, fail=1.0,
                       source="healthy ~0; per micro-batch k=4: 2.0; warmup 30x: 4.9")


def warmup_seen(log: list[dict]) -> int | None:
    """The first logged step whose LR reaches 95% of the largest logged LR."""
    top = max((r["lr"] for r in log), default=0.0)
    return next((r["step"] for r in log if r["lr"] >= 0.95 * top), None) if top > 0 else None


def compare_schedule(log: list[dict], want: list[dict], warmup: int, strict: bool = False,
                     exact: bool = False, resolution: float = 0.0) -> Measurement:
    """The applied schedule `log` against the intended `want` (rows {step, lr, weight_decay}, matched by
    step), as schedule_shape judges it. `strict` (a run's own config, probes/curve.py) also judges the
    warmup length the log shows; `exact` (a schedule whose shape the config fixes: cosine, linear,
    constant) also FAILs a median LR deviation after warmup above MEDIAN_DEVIATION. `resolution`: the step
    of the decimals the log printed the LR with (a text log's `lr:0.000600`: 1e-6; 0 for full precision)."""
    intended = {r["step"]: r for r in want}
    rows = [(r, intended[r["step"]]) for r in log if r["step"] in intended]
    after = [(r, w) for r, w in rows if r["step"] > warmup and w["lr"] > 0]
    ratios = sorted(r["lr"] / w["lr"] for r, w in after) or [1.0]
    median = ratios[len(ratios) // 2]
    by_step = sorted(intended)

    def intended_at(step: float) -> float:  # intended LR at a fractional step (nearest logged step)
        # binary search, not min() over every step: the time-scale fit asks 11 x (logged rows) times, which
        # was quadratic in the log's length (10 s for a 1,000-row log)
        i = bisect.bisect_left(by_step, step)
        if i == len(by_step):
            return intended[by_step[-1]]["lr"]
        if i > 0 and step - by_step[i - 1] <= by_step[i] - step:  # a tie goes to the earlier step, as min() did
            i -= 1
        return intended[by_step[i]]["lr"]
    speed = _time_scale([(r["step"], r["lr"]) for r, _ in after], intended_at) if after else 1.0
    off = [(r, w) for r, w in rows if w["weight_decay"] == 0]
    wd_on = sum(r["weight_decay"] > 1e-3 for r, _ in off) / len(off) if off else 0.0
    half = resolution / 2  # a logged LR is known to within half its printed step: 0.000000 near 0 is 0

    def off(r: dict, w: dict) -> float:
        # a schedule one update behind the intended one is a convention, not a bug: torch's LambdaLR warmups
        # (Hugging Face's) give update 0 the LR 0, bitcheck's gives it peak / warmup
        prev = intended.get(r["step"] - 1) or ({"lr": 0.0} if r["step"] == 1 and warmup > 0 else None)
        return min(abs(r["lr"] - w["lr"]), abs(r["lr"] - prev["lr"]) if prev else math.inf)
    devs = [(max(0.0, off(r, w) - half) / max(w["lr"], 1e-12), r, w) for r, w in rows]
    deviation, worst_r, worst_w = max(devs, key=lambda d: d[0], default=(0.0, None, None))
    after_devs = sorted(d for d, r, w in devs if r["step"] > warmup) or [0.0]
    median_dev = after_devs[len(after_devs) // 2]
    values = {"lr_ratio_median": median, "schedule_speed": speed, "wd_on_where_off_share": wd_on,
              "max_lr_deviation": deviation, "median_lr_deviation": median_dev}
    seen = warmup_seen(log) if strict else None
    interval = (log[-1]["step"] - log[0]["step"]) / max(1, len(log) - 1) if len(log) > 1 else 0
    checks = [LR_LEVEL, SPEED, WD_STAGE2, SHAPE]
    if seen is not None and warmup >= 2 * interval:  # measurable: the log resolves the warmup
        values["warmup_log2_ratio"] = abs(math.log2(max(seen, 1) / warmup))
        checks.append(WARMUP_OFF)
    if exact:
        checks.append(MEDIAN_DEVIATION)
    what = []
    if LR_LEVEL.judge(median) != "PASS":
        what.append(f"the LR after warmup is {median:.0%} of the intended (never leaves warmup, or decays to zero?)")
    if SPEED.judge(speed) != "PASS":
        what.append(f"the schedule runs {speed:g}x fast (stepped once per micro-batch?)")
    if WD_STAGE2.judge(wd_on) != "PASS":
        what.append(f"weight decay stays on in {wd_on:.0%} of the steps where the intended schedule has none (stage 2)")
    if "warmup_log2_ratio" in values and WARMUP_OFF.judge(values["warmup_log2_ratio"]) != "PASS":
        what.append(f"warmup ends at step {seen}, the config says {warmup}"
                    + (" (stepped once per micro-batch?)" if seen < warmup else " (warmup never ended?)"))
    if exact and MEDIAN_DEVIATION.judge(median_dev) != "PASS" and not what:
        what.append(f"the LR differs from the configured schedule by a median {median_dev:.0%} after warmup")
    if what or deviation > SHAPE.warn:
        where = (f"largest LR deviation {deviation:.0%} at step {worst_r['step']}: {worst_r['lr']:.3g} vs "
                 f"{worst_w['lr']:.3g} intended" if worst_r else "")
        message = "; ".join(what + [where] if where else what)
    else:
        message = f"applied as intended (largest LR deviation {deviation:.1%})"
    return Measurement(values, checks, message,
                       "Log the LR and weight decay your scheduler sets at every optimizer step and compare with "
                       "the intended schedule: step the scheduler once per optimizer step, not per micro-batch; set weight decay "
                       "to 0 in stage 2.", details={"applied": log, "intended": want}, values=values)


@probe("decay_groups", branch="optimizer", kind="training",
       catches="weight decay on RMSNorm gains, biases or embeddings",
       fails_when="any 1-D parameter (norm gain, bias) in a param group whose weight decay was ever > 0 "
                  "(WARN: an embedding)",
       measured="0 / 0 (bitcheck's AdamW groups) vs 10 norm gains and 2 embeddings (all in one decaying group)")
def decay_groups(s: Subject):
    """Which parameters the optimizer decays: every param group's weight decay over training (or now,
    when it was not recorded) against what the group holds: 1-D parameters and embeddings."""
    opt, model = s.history.optimizer, s.model
    if opt is None or model is None:
        return Measurement(message="no optimizer to read", status=SKIP)
    names = {id(p): n for n, p in model.named_parameters()}
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    records = s.history.group_decay or [{"step": None, "wd": [g.get("weight_decay", 0.0)
                                                                      for g in opt.param_groups]}]
    norms, embeddings = [], []
    for i, group in enumerate(opt.param_groups):
        if max(r["wd"][i] for r in records if i < len(r["wd"])) <= 0:
            continue
        for p in group["params"]:
            if id(p) in embeds:
                embeddings.append(names.get(id(p), "?"))
            elif p.dim() < 2:
                norms.append(names.get(id(p), "?"))
    values = {"decayed_1d_params": len(norms), "decayed_embeddings": len(embeddings)}
    message = (f"weight decay reaches {len(norms)} norm/bias parameters ({', '.join(norms[:3])}"
               f"{'...' if len(norms) > 3 else ''}) and {len(embeddings)} embeddings"
               if norms or embeddings else "weight decay only on matrices")
    return Measurement(values, [DECAYED_NORMS, DECAYED_EMBEDDINGS], message,
                       "Put 1-D parameters (RMSNorm gains, biases) and embeddings in a param group with "
                       "weight_decay=0.", details={"norms": norms, "embeddings": embeddings}, values=values)


class OptimizerWatch:
    """Training-time watcher: every `every` steps, the weight decay of each param group (for decay_groups)."""

    def __init__(self, optimizer, every: int = 50):
        self.optimizer, self.every = optimizer, every
        self.records: list[dict] = []

    def before_step(self, model, step: int) -> None:
        pass

    def after_step(self, model, step: int) -> None:
        if step % self.every == 0:
            self.records.append({"step": step, "wd": [float(g.get("weight_decay", 0.0))
                                                      for g in self.optimizer.param_groups]})
