"""Probes of a training run read from its log alone (kind "curve", no model): is the run undertrained
or flat, is the model too small for its vocabulary, was training unstable, was the schedule applied?

    subject = Subject(model=None, history=History(curve={"rows": rows, "loss_key": "loss", ...},
                                                  capacity={...}, schedule=applied, intended=want))
    run_probes(subject, kinds=("curve",))

`history.curve`: rows {step, loss/val_loss, lr, grad_norm, weight_decay} oldest first, `loss_key`
(which loss to fit), `tokens_per_step` (None: steps stand in for tokens), `warmup`. `history.capacity`:
params, embedding_params, vocab, hidden, tokens. These probes only measure; bitcheck/commands/curve.py reads
the log and says what the run intended.

The fit (`fit_curve`) is the saturating power law of the data term of Hoffmann et al. 2022 (Chinchilla,
eq. 2 with N fixed: L(D) = E + B / D^beta; Kaplan et al. 2020 for the power law in data) written in the
learning-rate area S1 = sum of lr / peak lr over the steps (x tokens per step), with the annealing term
of Tissue et al. 2024 ("Scaling law with learning rate annealing", momentum-free form):

    L(t) = E + B * (S1(t) / S1_end)^(-beta) - C * (1 - lr(t) / lr_peak)

so a loss that falls because the LR decays (stage 2 of the two-stage schedule, the end of a cosine) is
not read as "more tokens would keep it falling". The prediction for k times the tokens keeps the
schedule's shape (stretched): E + B * k^(-beta) - C * (1 - lr_end / lr_peak), i.e. a gain of
B * (1 - k^(-beta)) over the end of this run. Uncertainty: a residual bootstrap of the binned fit.
"""
from __future__ import annotations

import bisect
import math
import random

from probes.core import FAIL, SKIP, WARN, Measurement, Subject, Threshold, probe
from probes.optimizer import compare_schedule

FIT_BINS = 60  # the fitted window is averaged into this many bins: less batch noise, less autocorrelation
MIN_FIT_POINTS = 8  # logged losses in the window below this: no fit (SKIP)
FIT_START = 0.1  # the fit skips the first 10% of the run (and twice the warmup): the early transient
BOOTSTRAP = 100  # residual-bootstrap refits for the uncertainty
# The annealing term is fitted only when lr/peak spans at least this much over the fitted window.
# Measured: bitcheck's TinyStories run cut at 20% (lr/peak 0.98 -> 0.90 in the window) gave C = 4 and
# read a still-falling curve as flat (2x gain -0.024 +- 0.095); a whole two-stage run spans 1.0 -> 0.1.
MIN_ANNEAL_RANGE = 0.3
# Still improving: the bootstrap's lower bound (mean - 2 sd) of the loss 2x the tokens would buy, as a
# fraction of the end loss. Measured (tests/test_curve.py; bitcheck's 1m preset on the real 2 MiB sample,
# CPU): a data-limited run (600 stories, 5000 steps) judged at 20% of its steps 0.136, whole 0.014; a run on
# the whole sample stopped at 4000 steps (8 tokens per parameter, validation loss still falling) 0.040,
# its predicted loss at 2x 0.967 +- 0.017 where the 8000-step run trained to check ended at 0.9666.
# Generated (10 seeds): cut at 20% 0.115-0.122; a whole run still paying 4% per doubling 0.022-0.031;
# saturated -0.004..-0.002. Chinchilla's law at 34 tokens per parameter buys ~5% per doubling, so "still
# improving" asks for a clear gain: WARN from 1%, FAIL from 2%.
IMPROVING = Threshold("gain_2x_low", warn=0.01, fail=0.02,
                      source="real 1m runs: cut at 20% 0.136, data-limited whole 0.014, stopped early 0.040; "
                             "generated: falling 0.115-0.122, still paying 0.022-0.031, saturated < 0")
# A spike: a logged loss this far above the median of the window before it, in robust sigmas of the
# step-to-step noise and at least SPIKE_REL of the loss. Healthy generated and real curves: none.
SPIKE_SIGMA = 8.0
SPIKE_REL = 0.05
SPIKE_ABS = 0.02  # nats: the floor under the relative rule (a loss of 1e-4 doubling is no spike)
SPIKE_WINDOW = 20  # logged points in the baseline window before a candidate spike
RECOVERED = 0.02  # back within 2% of the pre-spike baseline counts as recovered
UNRECOVERED = Threshold("unrecovered_spikes", warn=None, fail=0,
                        source="a loss that jumps and never returns is divergence (LR too high, no clipping)")
SPIKES = Threshold("spikes", warn=0, fail=None, source="recovered spikes cost steps, not the run: a WARN")
GRAD_EXPLOSION = 10.0  # a grad norm this many times the running median is an explosion
GRAD_EXPLOSIONS = Threshold("grad_explosions", warn=0, fail=None,
                            source="clipping absorbs isolated explosions; they precede spikes (Wortsman et al. 2023)")
NONFINITE = Threshold("nonfinite_losses", warn=None, fail=0, source="any NaN/Inf in the logged loss")
# A non-finite grad norm with a finite loss is what fp16 loss scaling does when it skips a step (the
# scaler halves its scale and retries): a WARN; a run that skips one step in ten is in trouble.
NONFINITE_GRADS = Threshold("nonfinite_grad_share", warn=0.0, fail=0.1,
                            source="fp16 GradScaler skips a few steps early in healthy runs")
# Capacity. Embedding + head share of all parameters: the 32K x 768 tied embedding in 95M is 26%.
EMBED_SHARE = Threshold("embedding_share", warn=0.25, fail=0.5,
                        source="32K x 768 tied in 95M: 0.26 (WARN); Pythia-70M untied 50K x 512: 0.73")
CHINCHILLA_TOKENS = 20.0  # compute-optimal tokens per parameter (Hoffmann et al. 2022)
# Published BitNet b1.58 (Ma et al. 2024, "The era of 1-bit LLMs", Table 1, 100B tokens): perplexity vs
# FP16 LLaMA of the same size: 700M 12.87 vs 12.33, 1.3B 11.29 vs 11.25, 3B 9.91 vs 10.04. The
# smallest published size trails FP16 by 4%; from 3B it matches.
BITNET_PUBLISHED = ((700e6, 12.87, 12.33), (1.3e9, 11.29, 11.25), (3e9, 9.91, 10.04))
SMALLEST_PUBLISHED = 700e6


# ---- the fit -------------------------------------------------------------------------------------

def _bins(points: list[tuple[float, float, float]], n: int) -> list[tuple[float, float, float]]:
    """Average (area, lr ratio, loss) points into at most n bins of consecutive points."""
    if len(points) <= n:
        return points
    size = len(points) / n
    out = []
    for i in range(n):
        chunk = points[int(i * size):int((i + 1) * size)]
        out.append(tuple(sum(p[j] for p in chunk) / len(chunk) for j in range(3)))
    return out


def _least_squares(x, r, y, with_c: bool, start=None, tol: float = 1e-8):
    """E, B, beta (, C) of L = E + B * x^-beta - C * (1 - r) by bounded least squares (scipy)."""
    import numpy as np
    from scipy.optimize import least_squares
    x, r, y = map(np.asarray, (x, r, y))

    def model(p):
        return p[0] + p[1] * x ** (-p[2]) - (p[3] * (1 - r) if with_c else 0.0)
    span = float(y.max() - y.min()) or 1e-3
    p0 = start if start is not None else [float(y.min()) - span, span, 0.5] + ([0.0] if with_c else [])
    lo = [0.0, 0.0, 0.01] + ([0.0] if with_c else [])
    hi = [float(y.max()) * 2 + 1, np.inf, 3.0] + ([np.inf] if with_c else [])
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.where(np.isinf(hi), 1e12, np.array(hi) - 1e-9))
    log_x = np.log(x)

    def jac(p):  # the law's own derivatives: the fit and its 100 bootstrap refits need no finite differences
        power = x ** (-p[2])
        cols = [np.ones_like(x), power, -p[1] * power * log_x] + ([-(1 - r)] if with_c else [])
        return np.stack(cols, axis=1)
    fit = least_squares(lambda p: model(p) - y, p0, jac=jac, bounds=(lo, hi), method="trf", ftol=tol, xtol=tol, gtol=tol)
    return fit.x, model(fit.x)


def fit_start(last_step: int, warmup: int) -> float:
    """The first step the fit uses: after FIT_START of the run and twice the warmup."""
    return max(FIT_START * last_step, 2 * warmup)


def fit_curve(rows: list[dict], loss_key: str, tokens_per_step: float | None = None, warmup: int = 0,
              seed: int = 0, exclude: list[tuple[int, int]] = ()) -> dict | None:
    """Fit the module docstring's law to the logged `loss_key` after FIT_START of the run (and 2 x warmup),
    leaving out the steps in `exclude` (spikes: (first, last) step). Returns None when fewer than
    MIN_FIT_POINTS losses remain. Units: losses in the log's own (nats per token for cross-entropy), x in
    tokens (steps when `tokens_per_step` is None)."""
    losses = [(r["step"], r[loss_key]) for r in rows if loss_key in r and math.isfinite(r[loss_key])]
    lrs = {r["step"]: r["lr"] for r in rows if isinstance(r.get("lr"), (int, float)) and math.isfinite(r["lr"])}
    if len(losses) < MIN_FIT_POINTS:
        return None
    last = losses[-1][0]
    # LR area: sum of lr/peak over the steps, integrated over the logged LR (piecewise constant)
    peak = max(lrs.values(), default=0.0)
    with_c = peak > 0 and len(lrs) >= 2
    lr_steps = sorted(lrs)
    area, acc, prev_step, prev_lr = {}, 0.0, 0, (lrs[lr_steps[0]] / peak if with_c else 1.0)
    j = 0
    for step, _ in losses:  # loss steps in order; the LR held between logged points is the last logged one
        while with_c and j < len(lr_steps) and lr_steps[j] <= step:
            acc += prev_lr * (lr_steps[j] - prev_step)
            prev_step, prev_lr = lr_steps[j], lrs[lr_steps[j]] / peak
            j += 1
        area[step] = acc + prev_lr * (step - prev_step) if with_c else float(step)
    ratio = {s: ((lrs[s] if s in lrs else _nearest(lrs, lr_steps, s)) / peak if with_c else 1.0)
             for s, _ in losses}
    start = fit_start(last, warmup)
    window = [(area[s], ratio[s], v) for s, v in losses
              if s >= start and area[s] > 0 and not any(a <= s <= b for a, b in exclude)]
    if len(window) < MIN_FIT_POINTS:
        return None
    # the annealing term only where the LR moves enough in the window to tell it from the power law:
    # over a short stretch of slowly decaying LR (stage 1) the two are collinear and C soaks up the fall
    with_c = with_c and max(w[1] for w in window) - min(w[1] for w in window) >= MIN_ANNEAL_RANGE
    binned = _bins(window, FIT_BINS)
    end_area = binned[-1][0]
    x = [b[0] / end_area for b in binned]
    r = [b[1] for b in binned]
    y = [b[2] for b in binned]
    params, fitted = _least_squares(x, r, y, with_c)
    resid = [yi - fi for yi, fi in zip(y, fitted)]
    rng = random.Random(seed)
    gains2, gains10 = [], []
    for _ in range(BOOTSTRAP):
        yb = [fi + rng.choice(resid) for fi in fitted]
        # a refit for the spread of the gains, from the fit's own optimum: 1e-6 (scipy's default 1e-8) moves the
        # gains by far less than their spread
        pb, _ = _least_squares(x, r, yb, with_c, start=params, tol=1e-6)
        gains2.append(pb[1] * (1 - 2 ** -pb[2]))
        gains10.append(pb[1] * (1 - 10 ** -pb[2]))
    e, b, beta = map(float, params[:3])
    c = float(params[3]) if with_c else 0.0
    end_loss = float(fitted[-1])
    floor = e - c * (1 - r[-1])  # what infinitely many tokens reach with this schedule's final LR
    gain2, gain10 = b * (1 - 2 ** -beta), b * (1 - 10 ** -beta)
    sd2, sd10 = _sd(gains2), _sd(gains10)
    per = tokens_per_step or 1.0
    step_of_area = {round(area[s] / end_area, 9): s for s, _ in losses}
    area_keys = sorted(step_of_area)
    return {
        "loss_key": loss_key, "x_unit": "tokens" if tokens_per_step else "steps", "E": e, "B": b, "beta": beta,
        "lr_known": bool(lrs),
        "floor": floor, "window_drop": float(fitted[0] - fitted[-1]), "annealing_drop": c * (r[0] - r[-1]),
        "C": c, "end_loss": end_loss, "end_x": last * per, "gain_2x": gain2, "gain_2x_sd": sd2,
        "gain_10x": gain10, "gain_10x_sd": sd10, "loss_2x": end_loss - gain2, "loss_10x": end_loss - gain10,
        "gain_2x_low": (gain2 - 2 * sd2) / end_loss if end_loss > 0 else 0.0,
        "residual_sd": _sd(resid), "fit_start_step": start, "points": len(window),
        "raw": [{"step": s, "loss": v} for s, v in losses[::max(1, len(losses) // 400)]],
        # for the plot: the binned points and the fitted curve at their steps
        "binned": [{"step": _step_at(area_keys, step_of_area, xi), "loss": yi, "fit": float(fi)}
                   for xi, yi, fi in zip(x, y, fitted)],
    }


def _nearest(lrs: dict, steps: list[int], step: int) -> float:
    """The logged LR at the logged step nearest `step` (`steps`: the sorted keys of `lrs`)."""
    i = bisect.bisect_left(steps, step)
    near = min(steps[max(0, i - 1):i + 1], key=lambda k: abs(k - step))
    return lrs[near]


def _step_at(keys: list[float], step_of_area: dict, x: float) -> float:
    i = bisect.bisect_left(keys, x)
    near = min(keys[max(0, i - 1):i + 1], key=lambda k: abs(k - x))
    return step_of_area[near]


def _pm(sd: float) -> str:
    """'+- 2 sd' at a precision that never prints +- 0.000."""
    return f"+- {2 * sd:.3f}" if 2 * sd >= 0.001 else "+- <0.001"


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _curve(s: Subject) -> dict | None:
    return s.history.curve


def _count(x: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


@probe("loss_extrapolation", branch="capacity", kind="curve",
       catches="a run stopped while its loss still fell (undertrained) vs one that has flattened",
       fails_when="2x the tokens would buy more than 2% of the loss (bootstrap lower bound); WARN from 1%",
       measured="real 1m TinyStories runs: cut at 20% 13.6%, data-limited whole 1.4%; generated still paying "
                "2.2-3.1%, saturated < 0")
def loss_extrapolation(s: Subject):
    """The loss curve's saturating power-law fit (module docstring): the irreducible loss E, the loss
    at 2x and 10x the tokens with the same schedule shape, and whether 2x would still buy much."""
    curve = _curve(s)
    if not curve:
        return Measurement(message="no training log", status=SKIP)
    train = [(r["step"], r["loss"]) for r in curve["rows"]
             if isinstance(r.get("loss"), float) and math.isfinite(r["loss"])]
    spikes = ([(p["step"], p["recovered_step"] or p["step"]) for p in find_spikes(train)]
              if len(train) > SPIKE_WINDOW else [])  # left out of the fit
    fit = fit_curve(curve["rows"], curve["loss_key"], curve.get("tokens_per_step"), curve.get("warmup") or 0,
                    exclude=spikes)
    if fit is None:
        return Measurement(message=f"fewer than {MIN_FIT_POINTS} logged losses after {FIT_START:.0%} of the run: "
                                   "too few to fit", status=SKIP)
    u = fit["x_unit"]
    # the fit's floor only where it has one; "not started to bend" would contradict a flat verdict's words
    floor = (f"fitted floor {fit['floor']:.3f}" if fit["E"] > 0.02 * fit["end_loss"] and fit["floor"] > 0 else
             "the fit puts no floor above 0")
    key = fit["loss_key"]
    logged = sorted([r[key] for r in curve["rows"] if isinstance(r.get(key), float) and math.isfinite(r[key])][-5:])
    end = logged[len(logged) // 2] if logged else fit["end_loss"]  # the logged loss (last 5), not the fit's
    message = (f"{fit['loss_key']} {end:.3f} at {_count(fit['end_x'])} {u}; {floor}; "
               f"2x {u}: {max(0.0, fit['loss_2x']):.3f} {_pm(fit['gain_2x_sd'])} (-{fit['gain_2x']:.3f}), "
               f"10x: {max(0.0, fit['loss_10x']):.3f} {_pm(fit['gain_10x_sd'])}")
    if fit["annealing_drop"] > 0.25 * max(fit["window_drop"], 1e-9):  # the fall a reader sees is mostly the LR's
        message += (f" (the LR decay accounts for {fit['annealing_drop']:.3f} of the {fit['window_drop']:.3f} fall "
                    "over the fitted window; more tokens would not repeat it)")
    measured = Measurement(fit["gain_2x_low"], [IMPROVING], message,
                           "Still improving: train longer with the same schedule stretched (the prediction assumes "
                           "that).", details={"fit": fit})
    if not fit["lr_known"] and measured.judged() == FAIL:  # the fall may be a decaying LR: never "train longer" on it
        measured.status = WARN
        measured.message += ("; no LR logged or configured: assumed constant, so a decaying LR's fall cannot be "
                             "told from more tokens' gain (log the LR, or give --config or "
                             "--lr/--warmup/--steps/--schedule)")
    return measured


# ---- instability ---------------------------------------------------------------------------------

def find_spikes(series: list[tuple[int, float]]) -> list[dict]:
    """Loss spikes: a point far above the median of the SPIKE_WINDOW points before it (module thresholds),
    with the step it came back within RECOVERED of that baseline (None: never). A single logged value that
    is back at the next one is a hard batch, not a spike (no finding, no advice to lower the LR)."""
    values = [v for _, v in series]
    diffs = sorted(abs(values[i] - values[i - 1]) for i in range(1, len(values)))
    noise = 1.4826 * diffs[len(diffs) // 2] / math.sqrt(2) if diffs else 0.0  # robust per-point sd
    spikes, i = [], SPIKE_WINDOW
    while i < len(series):
        before = sorted(values[i - SPIKE_WINDOW:i])
        base = before[len(before) // 2]
        if values[i] - base > max(SPIKE_SIGMA * noise, SPIKE_REL * abs(base), SPIKE_ABS):
            peak_i, j = i, i
            while j < len(series) and values[j] > base * (1 + RECOVERED) + noise:
                if values[j] > values[peak_i]:
                    peak_i = j
                j += 1
            if j == i + 1 and j < len(series):  # one logged value, back at the next: one batch's loss, not a spike
                i += 1
                continue
            spikes.append({"step": series[i][0], "peak_step": series[peak_i][0], "baseline": base,
                           "peak": values[peak_i], "recovered_step": series[j][0] if j < len(series) else None,
                           # the log ends within SPIKE_WINDOW points of the jump: too soon to call it divergence
                           "in_progress": j >= len(series) and len(series) - i < SPIKE_WINDOW})
            i = j + SPIKE_WINDOW  # the next baseline starts after the recovery
        else:
            i += 1
    return spikes


@probe("loss_spikes", branch="optimizer", kind="curve",
       catches="loss spikes (recovered: WARN) and divergence (a spike the loss never recovers from)",
       fails_when="a logged loss jumps > 8 robust sigmas and 5% above the preceding median and never returns "
                  "within 2% of it; WARN when it returns",
       measured="healthy generated curves and bitcheck's TinyStories run: 0 spikes; a generated spike "
                "recovers and WARNs, a divergence FAILs")
def loss_spikes(s: Subject):
    """Spikes of the training loss and whether the run recovered from each."""
    curve = _curve(s)
    series = [(r["step"], r["loss"]) for r in (curve or {}).get("rows", [])
              if isinstance(r.get("loss"), float) and math.isfinite(r["loss"])]
    if len(series) < 2 * SPIKE_WINDOW:
        return Measurement(message=f"fewer than {2 * SPIKE_WINDOW} logged training losses", status=SKIP)
    spikes = find_spikes(series)
    unrecovered = [p for p in spikes if p["recovered_step"] is None and not p["in_progress"]]
    values = {"spikes": len(spikes) - len(unrecovered), "unrecovered_spikes": len(unrecovered)}
    parts = [f"step {p['step']}: {p['baseline']:.3f} -> {p['peak']:.3f}, "
             + (f"recovered by step {p['recovered_step']}" if p["recovered_step"] is not None else
                "still up where the log ends" if p["in_progress"] else "never recovered")
             for p in spikes[:4]]
    message = "; ".join(parts) + ("; ..." if len(spikes) > 4 else "") if spikes else "no loss spikes"
    if unrecovered:
        message = f"the loss diverged ({message})"
    return Measurement(len(spikes), [SPIKES, UNRECOVERED], message,
                       "Lower the peak LR or lengthen warmup, clip gradients (1.0), check for bad batches at the "
                       "spike steps.", details={"spikes": spikes}, values=values)


@probe("grad_norm_log", branch="optimizer", kind="curve",
       catches="gradient-norm explosions in the logged grad norm",
       fails_when="never FAILs; WARN when two logged grad norms in a row exceed 10x their running median",
       measured="healthy runs (bitcheck's, generated): 0")
def grad_norm_log(s: Subject):
    """Logged gradient norms against their running median (explosions precede loss spikes)."""
    series = [(r["step"], r["grad_norm"]) for r in (_curve(s) or {}).get("rows", [])
              if isinstance(r.get("grad_norm"), float) and math.isfinite(r["grad_norm"])]
    if len(series) < 2 * SPIKE_WINDOW:
        return Measurement(message="no grad norm logged (or too few values)", status=SKIP)
    explosions = []
    for i in range(SPIKE_WINDOW, len(series)):
        window = sorted(v for _, v in series[i - SPIKE_WINDOW:i])
        median = window[len(window) // 2]
        high = median > 0 and series[i][1] > GRAD_EXPLOSION * median
        # one logged norm up and the next back down: one batch, which clipping absorbs; not a finding
        lasting = i + 1 < len(series) and series[i + 1][1] > GRAD_EXPLOSION * median
        if high and (lasting or (i > 0 and explosions and explosions[-1]["step"] == series[i - 1][0])):
            explosions.append({"step": series[i][0], "grad_norm": series[i][1], "median": median})
    message = (f"{len(explosions)} grad-norm explosions (> {GRAD_EXPLOSION:g}x the running median), first at step "
               f"{explosions[0]['step']}: {explosions[0]['grad_norm']:.3g} vs {explosions[0]['median']:.3g}"
               if explosions else f"grad norm within {GRAD_EXPLOSION:g}x its running median")
    return Measurement(len(explosions), [GRAD_EXPLOSIONS], message,
                       "Clip gradients; look at the batches of those steps.", details={"explosions": explosions[:50]})


@probe("nonfinite_log", branch="numerics", kind="curve",
       catches="NaN/Inf in the logged loss; non-finite gradient norms (fp16 skipped steps: WARN)",
       fails_when="any non-finite logged loss, or non-finite grad norms at > 10% of the logged steps",
       measured="healthy: 0; fp16 loss scaling's skipped steps: a few grad norms only")
def nonfinite_log(s: Subject):
    """The first non-finite logged loss, and the share of non-finite grad norms."""
    curve = _curve(s)
    if not curve:
        return Measurement(message="no training log", status=SKIP)
    rows = curve["rows"]
    bad = [(r["step"], k, r[k]) for r in rows for k in ("loss", "val_loss")
           if isinstance(r.get(k), float) and not math.isfinite(r[k])]
    grads = [r for r in rows if isinstance(r.get("grad_norm"), float)]
    bad_grads = [r for r in grads if not math.isfinite(r["grad_norm"])]
    share = len(bad_grads) / len(grads) if grads else 0.0
    values = {"nonfinite_losses": len(bad), "nonfinite_grad_share": share}
    if bad:
        message = f"{len(bad)} non-finite losses, first at step {bad[0][0]}: {bad[0][1]} = {bad[0][2]}"
    elif bad_grads:
        message = (f"{len(bad_grads)} non-finite grad norms ({share:.1%} of the logged steps, first at step "
                   f"{bad_grads[0]['step']}) with a finite loss: steps fp16 loss scaling skipped?")
    else:
        message = "every logged loss and grad norm is finite"
    return Measurement(len(bad), [NONFINITE, NONFINITE_GRADS], message,
                       "Find the first non-finite module at that step (bitcheck quick-arith --model reproduces it "
                       "small); clamp quantizer scales with eps 1e-5.", details={"first": bad[:10]}, values=values)


@probe("logged_schedule", branch="optimizer", kind="curve",
       catches="a learning-rate or weight-decay schedule not applied as configured (warmup k times fast: "
               "stepped per micro-batch; never leaving warmup; weight decay kept in stage 2)",
       fails_when="as schedule_shape, on the logged LR against the config's schedule",
       measured="generated per-micro-batch schedule (k=4): 4x fast; healthy: 1.0x, deviation < 1e-6")
def logged_schedule(s: Subject):
    """The LR and weight decay the log says the optimizer used, against the schedule the config intends."""
    log, want = s.history.schedule, s.history.intended
    if not log:
        return Measurement(message="the log has no learning rate", status=SKIP)
    if not want:
        return Measurement(message=s.history.intended_missing
                           or "no intended schedule (give --config, or --warmup and --steps)", status=SKIP)
    return compare_schedule(log, want, s.history.warmup_steps or 0, strict=True,
                            exact=s.history.schedule_name in ("cosine", "linear", "constant", "one_cycle"),
                            resolution=(_curve(s) or {}).get("lr_resolution", 0.0))


# ---- capacity ------------------------------------------------------------------------------------

# Overfitting: the validation loss rises from its lowest point while the training loss goes on falling. The
# lowest point is that of the validation loss smoothed by a running median of 5 points (the raw minimum of
# noisy points sits ~2.5 sd below the curve); the end is the median of the last 5 points; the rise counts
# beyond 3 robust sd of the point-to-point noise. Measured (tests/test_curve_text.py's validation: the
# generated curves of synthetic/curves.py + 0.05 + N(0, 0.02) every 10th point, 6 kinds x 5 seeds): the
# raw rise reached 0.055 nats on healthy curves (a false alarm at 0.05), the rise beyond noise 0.000;
# bitcheck's real 1m TinyStories run 0.000; validation turning up by 0.3 from 40% of the run: 0.11-0.17 (5 seeds).
OVERFIT_RISE = Threshold("val_rise_beyond_noise_nats", warn=None, fail=0.05,
                         source="healthy generated 0.000 (30 curves), real 1m run 0.000; turning up 0.3: 0.11-0.17")
MIN_VAL_POINTS = 4


def _running_median(values: list[float], width: int = 5) -> list[float]:
    """Each value replaced by the median of the `width` around it (none for fewer than 2 * width values)."""
    half = width // 2 if len(values) >= 2 * width else 0
    out = []
    for i in range(len(values)):
        window = sorted(values[max(0, i - half):i + half + 1])
        out.append(window[len(window) // 2])
    return out


@probe("overfitting", branch="capacity", kind="curve",
       catches="overfitting: validation loss rising from its minimum while the training loss falls",
       fails_when="validation loss ends > 0.05 nats (beyond 3 sd of its noise) above its smoothed minimum while "
                  "the training loss fell since",
       measured="healthy generated curves and bitcheck's real 1m run 0.000; validation turning up 0.3: 0.11-0.17")
def overfitting(s: Subject):
    """Validation loss after its lowest point against the training loss over the same steps."""
    rows = (_curve(s) or {}).get("rows", [])
    val = [(r["step"], r["val_loss"]) for r in rows if isinstance(r.get("val_loss"), float)
           and math.isfinite(r["val_loss"])]
    train = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), float) and math.isfinite(r["loss"])]
    if len(val) < MIN_VAL_POINTS or len(train) < MIN_VAL_POINTS:
        return Measurement(message=f"validation loss logged at {len(val)} steps (needs {MIN_VAL_POINTS}) or no "
                                   "training loss: overfitting not checked", status=SKIP)
    smooth = _running_median([v for _, v in val])
    best_i = min(range(len(val)), key=lambda i: smooth[i])
    best_step, best = val[best_i][0], smooth[best_i]
    tail = sorted(v for _, v in val[-5:])
    end = tail[len(tail) // 2]
    diffs = sorted(abs(val[i][1] - val[i - 1][1]) for i in range(1, len(val)))
    noise = 1.4826 * diffs[len(diffs) // 2] / math.sqrt(2)
    near = [v for st, v in train if st <= best_step][-5:]
    late = [v for st, v in train if st > best_step][-5:]
    train_fell = bool(near and late) and sorted(late)[len(late) // 2] < sorted(near)[len(near) // 2]
    rise = end - best
    value = max(0.0, rise - 3 * noise) if train_fell and best_i < len(val) - 1 else 0.0
    message = (f"validation loss lowest at step {best_step} ({best:.3f}), {end:.3f} where the log ends "
               f"({rise:+.3f}; noise sd {noise:.3f}) "
               + ("while the training loss kept falling" if train_fell else "with the training loss not falling"))
    return Measurement(value, [OVERFIT_RISE], message,
                       "Keep the checkpoint with the lowest validation loss; more data, fewer epochs or a smaller "
                       "model.", details={"best_step": best_step, "best": best, "end": end, "noise": noise,
                                          "train_fell": train_fell})


# A loss that ends within this many nats of ln(vocab), the loss of a uniform guess, learned nothing the data
# offers: a 32K BPE's unigram entropy on English is ~7.5 nats against ln 32000 = 10.4, so even a model that
# only counts tokens ends ~3 nats below. No model size explains it; a broken pipeline does (a ternary model
# stuck at a trivial loss is the case users report). Measured: the generated curves of synthetic/curves.py
# (every kind, 5 seeds, vocabulary 32,000) end 4.7-8.5 nats below; bitcheck's real 1m TinyStories run
# (tests/data/tinystories-1m-run, vocabulary 192) 4.4; a run that never learns, 0.
BASELINE_GAP = Threshold("baseline_gap_nats", warn=None, fail=0.5, higher_is_worse=False,
                         source="uniform guess ln V: 0; generated curves 4.7-8.5; real 1m run 4.4")
# With the user's data (`curve --data --tokenizer`, bitcheck/user/baselines.py): the end loss against the held-out
# loss of a bigram model of that data, what a model that uses only the previous token reaches (an embedding and a
# head whose BitLinear layers never trained). A healthy run passes through that level early, so the probe only
# WARNs; the tree calls it a bug when the curve has also flattened there (verdict.py, _curve_verdict). Measured on
# the real 2 MiB TinyStories sample, BPE 2048 (bigram 3.821, unigram 5.977 held out), the tests' user model, tiny
# preset, `tinystories --seq 128 --batch 16`, training loss over the last 10% of the log: healthy, 1000 steps,
# 0.14 below the bigram loss (validation still falling 0.035 per 100 steps); the same codebase with its STE removed,
# 905 steps (the time budget), 0.03 above it. A small sample's bigram loss is above the true one (unseen pairs),
# which only moves the bar away from healthy runs; the bar is "not below it at all".
BIGRAM_GAP = Threshold("bigram_gap_nats", warn=0.0, fail=None, higher_is_worse=False,
                       source="real TinyStories sample, BPE 2048: healthy 1000-step run +0.14 (still falling); "
                              "STE removed -0.03")
BASELINE_TAIL = 0.1  # the end loss: the median of the last 10% of the logged values (at least 5)


@probe("loss_baseline", branch="capacity", kind="curve",
       catches="a loss that ends at a trivial baseline: ln V (a uniform guess) or, with --data, the data's bigram "
               "loss: nothing learned past the previous token, whatever the model's size",
       fails_when="the end loss is within 0.5 nats of ln(vocab); WARN: not below the data's held-out bigram loss (a "
                  "bug once the curve is flat there)",
       measured="generated curves 4.7-8.5 nats below ln V, bitcheck's real 1m run 4.4; a log at ln V: 0; real "
                "TinyStories, BPE 2048: healthy +0.14 below the bigram loss, STE removed -0.03")
def loss_baseline(s: Subject):
    """The end of the logged loss against ln(vocab), the loss of a model that learned nothing, and against the
    unigram and bigram models of the run's data when given (history.curve["baselines"])."""
    curve = _curve(s) or {}
    vocab, base = curve.get("vocab"), curve.get("baselines")
    if (not vocab or vocab < 2) and not base:
        return Measurement(message="vocabulary size unknown (give --vocab, a --config with it, or --checkpoint; "
                                   "or --data with --tokenizer)", status=SKIP)
    key = curve.get("loss_key", "loss")
    values = [r[key] for r in curve.get("rows", []) if isinstance(r.get(key), float) and math.isfinite(r[key])]
    if not values:
        return Measurement(message=f"no finite {key} logged", status=SKIP)
    tail = sorted(values[-max(5, int(len(values) * BASELINE_TAIL)):])
    end = tail[len(tail) // 2]
    value, checks, parts, details = {}, [], [], {"end_loss": end}
    if vocab and vocab >= 2:
        value["baseline_gap_nats"] = math.log(vocab) - end
        checks.append(BASELINE_GAP)
        parts.append(f"{value['baseline_gap_nats']:.2f} nats below ln V = {math.log(vocab):.3f} (a uniform guess)")
        details["ln_vocab"] = math.log(vocab)
    if base:
        value["bigram_gap_nats"] = base["bigram"] - end
        checks.append(BIGRAM_GAP)
        parts.append(f"{value['bigram_gap_nats']:.2f} below the bigram model of {base['source']} ({base['bigram']:.3f}; "
                     f"unigram {base['unigram']:.3f}, held out over {base['held_out']:,} tokens)")
        details["baselines"] = base
    return Measurement(next(iter(value.values())), checks, f"the loss ends at {end:.3f}, " + "; ".join(parts),
                       "Nothing was learned past a trivial predictor: no model size explains that. Check the "
                       "pipeline on a task with a known answer: `bitcheck quick-arith --model your_adapter`.",
                       details=details, values=value)


@probe("model_capacity", branch="capacity", kind="curve",
       catches="a vocabulary that eats the model (embedding and head share), tokens per non-embedding "
               "parameter against Chinchilla's 20, a size below the published BitNet b1.58 results",
       fails_when="embedding + head > 50% of the parameters (WARN from 25%)",
       measured="32K x 768 tied in 95M: 26% (WARN); bitcheck's 12m preset 2K x 384: 7%")
def model_capacity(s: Subject):
    """Parameter budget: embedding share, tokens per (non-embedding) parameter, and the published
    BitNet b1.58 results at that size."""
    cap = s.history.capacity or {}
    params, emb = cap.get("params"), cap.get("embedding_params")
    if not params or emb is None:
        return Measurement(message="parameter count and embedding size unknown (give --params, --vocab and "
                                   "--hidden, a --config with them, or --checkpoint)", status=SKIP)
    share = emb / params
    non_emb = params - emb
    tokens = cap.get("tokens")
    per = tokens / non_emb if tokens and non_emb > 0 else None
    per_all = tokens / params if tokens else None
    notes = [f"embedding{' + head' if cap.get('tied') is False else ''} {_count(emb)} of {_count(params)} "
             f"parameters ({share:.0%})"]
    if per is not None:
        notes.append(f"{per:.0f} tokens per non-embedding parameter ({per_all:.0f} per parameter; "
                     f"Chinchilla's compute-optimal is ~{CHINCHILLA_TOKENS:.0f})")
    if params < SMALLEST_PUBLISHED:
        size, ours, fp16 = BITNET_PUBLISHED[0]
        notes.append(f"below the smallest published BitNet b1.58 ({_count(size)}, perplexity {ours} vs FP16 {fp16}, "
                     "Ma et al. 2024): ternary trails float more the smaller the model")
    values = {"embedding_share": share, "tokens_per_non_embedding_param": per, "non_embedding_params": non_emb}
    # the value is the whole budget; EMBED_SHARE judges values["embedding_share"]
    return Measurement(values, [EMBED_SHARE], "; ".join(notes),
                       "The vocabulary eats the model: a smaller vocabulary or a wider/deeper model; ternary "
                       "layers hold less per parameter than float ones.", details=values, values=values)
