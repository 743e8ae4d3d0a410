"""Probes of a user's own training loop, through the small hooks it hands over (bitcheck/user/session.py):
is the loss it logs the cross-entropy over the target tokens, does gradient accumulation weight every
token alike, and does resuming from its own checkpoint continue exactly?

Each probe recomputes the reference itself from the model and the exact batches: the loop under test
never supplies its own yardstick.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile

import torch
import torch.nn.functional as F

from probes.core import PASS, SKIP, WARN, Measurement, Subject, Threshold, lm_loss, logits_of, probe

# The loop's logged loss over the reference loss (cross-entropy over the supervised targets of the
# same batches, computed on the final model), averaged over the last logged steps. The logged loss is
# taken before each update and the reference after, so a healthy loop sits at or a little above 1.
LOGGED_RATIO = Threshold("logged_over_reference", warn=1.5, fail=2.0,
                         source="healthy loop ~1.0-1.3; a loss that is not the model's several times off")
LOGGED_RATIO_LOW = Threshold("logged_over_reference_low", warn=0.67, fail=0.5, higher_is_worse=False,
                             source="a logged loss far below what the model achieves is not its loss")
# Counting the ignored positions (the prompt digits of an answer-only task): the logged loss then
# matches the cross-entropy over every position, not over the targets. 1 when it is closer (in log
# ratio, by at least half) to the every-position loss, where the two references differ by > 20%.
IGNORED = Threshold("matches_every_position", warn=None, fail=0.5,
                    source="healthy 0 (closer to the targets' loss); loss over ignored positions 1")
# Relative difference between the gradient the loop's accumulation leaves and the gradient of the
# same tokens as one batch. Float32 summation order: healthy ~1e-7; averaging each micro-batch over
# its own tokens, with micro-batches of unequal token counts: ~1e-1.
ACCUM_ERROR = Threshold("accumulation_error", warn=1e-4, fail=1e-3,
                        source="healthy ~1e-7 (float32 order); per-micro-batch mean with unequal counts ~0.1")
# Largest relative difference of the parameters after k steps + save + load + (n - k) steps against
# n straight steps of the loop's own trainer. Healthy: 0 (the same arithmetic); optimizer state not
# restored: ~1e-2 and more.
RESUME_ERROR = Threshold("resume_param_error", warn=1e-6, fail=1e-4,
                         source="healthy 0; AdamW moments lost on resume ~1e-2")
LOGGED_WINDOW = 20  # last logged steps compared


@probe("logged_loss", branch="loss", needs=("batches",), kind="training",
       catches="a loop whose loss is not cross-entropy over the target tokens (e.g. over ignored positions too)",
       fails_when="logged / reference loss > 2 or < 0.5 over the last 20 logged steps, or the logged loss matches "
                  "the loss over every position rather than over the targets",
       measured="healthy loop ~1.0-1.3 and closer to the targets' loss; loss over ignored positions matches "
                "every position's")
def logged_loss(s: Subject):
    """The loss the user's loop logged for its last steps against the cross-entropy of the final model on
    exactly those steps' batches: over the targets that carry a loss (y != -1), and over every position."""
    logged, batch_of = s.history.logged_losses, s.history.batch_of
    if not logged or batch_of is None:
        return Measurement(message="the loop logged no losses through the session", status=SKIP)
    steps = sorted(logged)[-LOGGED_WINDOW:]
    model = s.model.eval()
    masked, every = [], []
    with torch.no_grad():
        for step in steps:
            x, y = (t.to(s.device) for t in batch_of(step))
            logits = logits_of(model, x).float().flatten(0, 1)  # one forward for both losses
            masked.append(F.cross_entropy(logits, y.reshape(-1), ignore_index=-1).item())
            every.append(F.cross_entropy(logits, torch.cat([x[:, 1:], y[:, -1:].clamp(min=0)], dim=1).reshape(-1)).item())
    mine = sum(logged[step] for step in steps) / len(steps)
    ref, ref_all = sum(masked) / len(masked), sum(every) / len(every)
    ratio = mine / max(ref, 1e-9)

    def gap(a: float, b: float) -> float:  # distance in log ratio
        return abs(math.log(max(a, 1e-9) / max(b, 1e-9)))
    matches_all = float(gap(ref_all, ref) > math.log(1.2) and gap(mine, ref_all) < 0.5 * gap(mine, ref))
    values = {"logged_over_reference": ratio, "logged_over_reference_low": ratio,
              "matches_every_position": matches_all, "logged_mean": mine, "reference_mean": ref,
              "every_position_mean": ref_all}
    what = (f"logged loss {mine:.4f} matches the loss over every position ({ref_all:.4f}), not over the targets "
            f"({ref:.4f}): ignored positions are counted" if matches_all else
            f"logged loss {mine:.4f} vs {ref:.4f} by the reference (cross-entropy over the targets) on the same "
            f"{len(steps)} batches: ratio {ratio:.2f}")
    return Measurement(ratio, [LOGGED_RATIO, LOGGED_RATIO_LOW, IGNORED], what,
                       "Take the loss over the targets that are not -1 only (ignore_index=-1), averaged over those "
                       "tokens.", values=values)


def _unequal_split(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two micro-batches of the same rows whose numbers of supervised targets differ (a quarter of the
    rows with their targets, the rest with only the first half of theirs kept), so that averaging each
    micro-batch over its own tokens weights tokens unequally."""
    n = max(1, x.shape[0] // 4)
    y2 = y.clone()
    y2[:, y.shape[1] // 2:] = -1
    return [(x[:n], y[:n]), (x[n:], y2[n:])]


@probe("grad_accumulation", branch="loss", needs=("batches",), kind="training",
       catches="gradient accumulation normalised per micro-batch when micro-batches hold different numbers of "
               "target tokens, or not normalised at all",
       fails_when="relative difference to the one-batch gradient > 1e-3 on micro-batches of equal token counts, "
                  "or on unequal ones when the run's own rows hold unequal target counts (else WARN)",
       measured="healthy ~1e-7 vs ~1e-1 (each micro-batch averaged over its own tokens)")
def grad_accumulation(s: Subject):
    """The gradient the user's accumulation leaves after two micro-batches equals the gradient of the same
    tokens as one batch (mean over all their target tokens): first with unequal target counts, then, where
    that differs, with equal ones. A loop that averages each micro-batch and divides by their number (the
    nanoGPT loop) is exact only for equal counts: a WARN naming the condition where the run's own rows all
    hold the same number of targets (packed fixed-length rows), a FAIL where they do not."""
    accumulate = s.history.accumulate
    if accumulate is None:
        return Measurement(message="the loop handed over no accumulate(model, micro_batches)", status=SKIP)
    x, y = (t.to(s.device) for t in s.batches[0])
    err, scale, err_scaled = _accumulation_error(s.model, accumulate, _unequal_split(x, y))
    fix = ("Divide every micro-batch's summed token loss by the total number of target tokens of the whole "
           "accumulated batch, not by its own count.")
    what = f"accumulated gradient differs from the one-batch gradient by {err:.2e} (relative)"
    m = Measurement(err, [ACCUM_ERROR], what + " on micro-batches of unequal target counts", fix)
    if m.judged() == PASS:
        return m
    if scale >= 2 and abs(math.log2(scale) - round(math.log2(scale))) < 1e-3 and ACCUM_ERROR.judge(err_scaled) == PASS:
        # a GradScaler loop: right up to the loss scale (a power of two), which accumulate left on .grad
        return Measurement(err_scaled, [ACCUM_ERROR], f"the accumulated gradient is {scale:g} x the one-batch gradient "
                           f"(exact up to that factor, {err_scaled:.1e}): a GradScaler's loss scale left on .grad",
                           "Call scaler.unscale_(optimizer) at the end of accumulate, or hand over the accumulation "
                           "without the scaler.", status=WARN, values={"accumulation_error": err_scaled,
                                                                       "loss_scale": scale})
    err_eq = _accumulation_error(s.model, accumulate, _equal_split(x, y))[0]
    m.values = {"accumulation_error": err, "equal_counts_error": err_eq}
    if ACCUM_ERROR.judge(err_eq) != PASS:
        m.value, m.message = err_eq, f"{what} on unequal and by {err_eq:.2e} on equal target counts"
        m.values["accumulation_error"] = err_eq
        return m
    counts = (y >= 0).sum(dim=1)  # (B,) target tokens per row of the run's own batch
    if int(counts.min()) != int(counts.max()):
        m.message = (f"{what} on micro-batches of unequal target counts (exact on equal ones, {err_eq:.1e}); this "
                     f"run's rows hold {int(counts.min())} to {int(counts.max())} target tokens, so its "
                     "accumulated gradient is wrong")
        return m
    m.status = WARN
    m.message = (f"exact only when every micro-batch holds the same number of target tokens ({err_eq:.1e} on "
                 f"equal counts, {err:.1e} on unequal): true of this run's rows ({int(counts[0])} targets each, "
                 "packed fixed-length rows), not with padding, ignored labels or variable-length rows")
    return m


def _accumulation_error(model: torch.nn.Module, accumulate, micro: list) -> tuple[float, float, float]:
    """(relative L2 distance between the gradient accumulate(model, micro) leaves and the one-batch gradient,
    the least-squares factor c between them, the relative distance to c times the one-batch gradient)."""
    joined = (torch.cat([m[0] for m in micro]), torch.cat([m[1] for m in micro]))
    model = copy.deepcopy(model).train()
    model.zero_grad(set_to_none=True)
    lm_loss(model, *joined).backward()
    ref = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    accumulate(model, micro)
    got = {n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}
    zero = {n: torch.zeros_like(g) for n, g in ref.items()}
    num = sum(float((got.get(n, zero[n]) - g).norm() ** 2) for n, g in ref.items()) ** 0.5
    den = sum(float(g.norm() ** 2) for g in ref.values()) ** 0.5
    c = sum(float((got.get(n, zero[n]) * g).sum()) for n, g in ref.items()) / max(den ** 2, 1e-24)
    scaled = sum(float((got.get(n, zero[n]) - c * g).norm() ** 2) for n, g in ref.items()) ** 0.5
    return num / max(den, 1e-12), c, scaled / max(abs(c) * den, 1e-12)


def _equal_split(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two micro-batches of equal rows in which every position is a target (packed fixed-length rows)."""
    full = torch.cat([x[:, 1:], y[:, -1:].clamp(min=0)], dim=1)  # (B, T) next token everywhere
    n = max(1, x.shape[0] // 2)
    return [(x[:n], full[:n]), (x[n:2 * n], full[n:2 * n])]


@probe("resume_state", branch="optimizer", kind="training",
       catches="a loop that loses optimizer state (AdamW moments, step count, schedule) on resume",
       fails_when="k steps + save + load + n-k steps differ from n straight steps by > 1e-4 (relative)",
       measured="healthy 0 vs ~1e-2 (AdamW moments not restored)")
def resume_state(s: Subject):
    """n straight steps of the user's own trainer against k steps, its save, its load and n - k more, on the
    same batches: the parameters must agree. The hooks carry the user's whole training state, in any
    shape their save/load uses: `make()` returns it (a tuple such as (model, optimizer, scheduler,
    scaler), a dict, or a trainer object), and `train`, `save` take it back (a tuple spread as
    arguments, anything else as one) and `load(path)` returns it; the model is the state's first
    nn.Module (a dict's "model", an object's `.model`)."""
    hooks = s.history.resume_hooks
    if not hooks:
        return Measurement(message="the loop handed over no save/load hooks", status=SKIP)
    make, train, save, load = hooks["make"], hooks["train"], hooks["save"], hooks["load"]
    batches, k, n = hooks["batches"], hooks.get("k", 3), hooks.get("n", 6)
    a = make()
    _call(train, a, batches[:n])
    b = make()
    _call(train, b, batches[:k])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resume.pt")
        _call(save, b, path)
        c = load(path)
    _call(train, c, batches[k:n])
    model_a, model_c = _model_in(a), _model_in(c)
    if model_a is None or model_c is None:
        return Measurement(message="make() and load() return no torch.nn.Module (give (model, optimizer, ...), a "
                                   "dict with 'model', or an object with .model)", status=SKIP)
    pa = {k: v.detach() for k, v in model_a.named_parameters()}
    pc = {k: v.detach() for k, v in model_c.named_parameters()}
    err = max(float((pa[n_] - pc[n_]).abs().max() / pa[n_].abs().max().clamp(min=1e-12)) for n_ in pa)
    return Measurement(err, [RESUME_ERROR],
                       f"{n} straight steps vs {k} + save + load + {n - k}: parameters differ by {err:.2e} (relative)",
                       "Save and restore the optimizer's state_dict (AdamW moments, step), the scheduler's and the "
                       "GradScaler's with the weights.")


def _call(fn, state, arg):
    """fn(*state, arg) for a tuple state (model, optimizer, ...), fn(state, arg) for any other."""
    return fn(*state, arg) if isinstance(state, tuple) else fn(state, arg)


def _model_in(state) -> torch.nn.Module | None:
    """The model inside a training state: itself, a tuple's first module, a dict's "model" (or first
    module), an object's `.model`."""
    if isinstance(state, torch.nn.Module):
        return state
    if isinstance(state, (tuple, list)):
        return next((x for x in state if isinstance(x, torch.nn.Module)), None)
    if isinstance(state, dict):
        first = state.get("model")
        return first if isinstance(first, torch.nn.Module) else \
            next((x for x in state.values() if isinstance(x, torch.nn.Module)), None)
    model = getattr(state, "model", None)
    return model if isinstance(model, torch.nn.Module) else None
