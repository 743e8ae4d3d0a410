"""Loading probe: does the model hold the weights of the checkpoint it was built from?

A loader that calls `load_state_dict(sd, strict=False)` on keys with another prefix (`model.`,
`module.`), or that builds an untied LM head the checkpoint does not carry, leaves tensors at their
initial values without an error; the model then predicts at chance and looks "untrained". The probe
compares every tensor of the model's state dict with the checkpoint's tensors (Subject.tensors):
- by name, after aligning a leading prefix on either side (the alignment matching the most names);
- where names do not match (a loader that renames, fuses q/k/v or transposes is not wrong), by
  content: a tensor whose values occur among the checkpoint's values came from it.
A tensor that matches neither way, or whose same-named checkpoint tensor holds other values, was not
loaded. Tensors aliased to a loaded one (a tied head) count as loaded.

Where the model demonstrably predicts its text (loss below the unigram entropy of the batches by
LEARNED_NATS), such differences are reported as WARN: the model works, so they may be deliberate.
"""
from __future__ import annotations

import math
from collections import Counter

import torch

from probes.core import WARN, Measurement, Subject, Threshold, logits_of, probe

NOT_LOADED = Threshold("params_not_from_checkpoint", warn=None, fail=0,
                       source="a healthy loader: 0; strict=False on prefixed keys: every tensor; an untied "
                              "head left random: the head")
SAMPLE = 64  # values per tensor looked up by content
CONTENT_SHARE = 0.9  # of those found among the checkpoint's values: the tensor came from the checkpoint
CAST_RTOL = 1e-2  # same-named tensors within this relative max difference are equal (bf16 <-> fp32 casts)
# Same-named tensors above 3 * WINDOW values are compared on three windows of WINDOW values (start, middle,
# end): a loader copies whole tensors, so one not loaded (left at init, another file's, rescaled) differs in
# each window, while reading all of a memory-mapped 95M checkpoint added its 382 MB to the peak memory of
# `bitcheck diagnose` (benchmarks/diagnose_95m.py).
WINDOW = 65_536
LEARNED_NATS = 0.2  # the margin of bitcheck's own "has it learned the text" gate (bitcheck/user/factory.py)


def _strip(name: str, n: int) -> str:
    return name.split(".", n)[-1] if name.count(".") >= n else name


def align(model_names: list[str], ckpt_names: list[str]) -> tuple[int, int]:
    """How many leading dotted components to drop from the model's and the checkpoint's names so
    that the most names agree."""
    best, key = -1, (0, 0)
    for a in range(3):
        ms = {_strip(n, a) for n in model_names}
        for b in range(3):
            hits = len(ms & {_strip(n, b) for n in ckpt_names})
            if hits > best:
                best, key = hits, (a, b)
    return key


def _windows(t: torch.Tensor) -> torch.Tensor:
    """t's values, or for a tensor above 3 * WINDOW values its first, middle and last WINDOW values: slices
    of the flat tensor, so that a memory-mapped checkpoint's pages outside them are never read."""
    flat = t.detach().reshape(-1)
    n = flat.numel()
    if n <= 3 * WINDOW:
        return flat
    mid = (n - WINDOW) // 2
    return torch.cat([flat[:WINDOW], flat[mid:mid + WINDOW], flat[-WINDOW:]])


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to a cast, compared on _windows; a NaN or Inf the checkpoint itself holds, in the same place,
    counts as equal (a checkpoint of NaN weights was loaded faithfully: that is numerics' finding, not
    loading's)."""
    a, b = _windows(a).float().cpu(), _windows(b).float().cpu()
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    if not torch.equal(fa, fb) or not torch.equal(a[~fa].nan_to_num(), b[~fb].nan_to_num()):
        return False
    if not bool(fa.any()):
        return True
    a, b = a[fa], b[fb]
    return float((a - b).abs().max()) <= CAST_RTOL * float(b.abs().max().clamp(min=1e-12))


def _from_checkpoint(t: torch.Tensor, pool: list[torch.Tensor]) -> bool:
    """Whether a sample of t's values occurs among the checkpoint's values (in t's precision)."""
    flat = t.detach().flatten().cpu()
    flat = flat[torch.isfinite(flat)] if flat.is_floating_point() else flat  # NaN is numerics' finding
    if flat.numel() == 0:
        return True
    idx = torch.linspace(0, flat.numel() - 1, min(SAMPLE, flat.numel())).long()
    want = flat[idx].to(t.dtype).float().unique()
    if want.numel() < 2:
        # a constant (a norm's ones left at init) came from the checkpoint only if it holds a tensor of that
        # shape and value: a loader that adds modules the checkpoint never had leaves them constant
        return any(c.shape == t.shape and bool((c.detach().cpu().float() == want[0]).all()) for c in pool)
    found = torch.zeros(want.numel(), dtype=torch.bool)
    for c in pool:
        found |= torch.isin(want, c.detach().flatten().cpu().to(t.dtype).float())
        if found.all():
            break
    return float(found.float().mean()) >= CONTENT_SHARE


def learned(s: Subject) -> bool | None:
    """The model's loss on the subject's text batches beats their unigram entropy (None: no text)."""
    if not s.texts or not s.batches:
        return None
    counts = Counter()
    losses = []
    with torch.no_grad():
        for x, y in s.batches:
            x, y = x.to(s.device), y.to(s.device)
            counts.update(y[y >= 0].tolist())
            logits = logits_of(s.model.eval(), x).float()
            losses.append(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1).item())
    total = sum(counts.values())
    unigram = -sum(c / total * math.log(c / total) for c in counts.values())
    return sum(losses) / len(losses) < unigram - LEARNED_NATS


@probe("weights_loaded", branch="loading", needs=("tensors",), kind="static",
       catches="weights silently not loaded: strict=False on prefixed keys, an untied head left at its init, "
               "tensors overwritten after loading",
       fails_when="any model tensor holds values that are not the checkpoint's (WARN only if the model "
                  "predicts its text and every such tensor has a counterpart in the checkpoint)",
       measured="healthy loaders 0 tensors; prefixed keys with strict=False: all; untied head: 1")
def weights_loaded(s: Subject):
    """Every tensor of the model's state dict holds the checkpoint's values: by name (prefixes
    aligned) or, for renamed or rearranged tensors, by content."""
    sd = {k: v for k, v in s.model.state_dict().items() if v.is_floating_point() and v.numel() > 0}
    ck = {k: v for k, v in s.tensors.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    a, b = align(list(sd), list(ck))
    by_name = {_strip(k, b): k for k in ck}
    used, loaded, bad = set(), {}, {}
    for name, t in sd.items():
        key = by_name.get(_strip(name, a))
        if key is not None and ck[key].shape == t.shape:
            used.add(key)
            ok = _close(t, ck[key])
            loaded[name] = ok
            if not ok:
                bad[name] = f"differs from the checkpoint's {key}"
    pool = list(ck.values())
    loaded_ptrs = {sd[n].data_ptr() for n, ok in loaded.items() if ok}
    for name, t in sd.items():
        if name in loaded or t.data_ptr() in loaded_ptrs:  # a tied head shares the embedding's storage
            continue
        if not _from_checkpoint(t, pool):
            bad[name] = "has no counterpart in the checkpoint (left as initialised)"
    unused = sorted(k for k in ck if k not in used)
    n_params = sum(sd[n].numel() for n in bad)
    values = {"params_not_from_checkpoint": n_params, "tensors_not_from_checkpoint": len(bad),
              "checkpoint_keys_unused": len(unused)}
    if not bad:
        return Measurement(0, [NOT_LOADED], f"all {len(sd)} model tensors hold the checkpoint's values"
                           + (f" ({len(unused)} checkpoint tensors unused, e.g. {unused[0]})" if unused else ""),
                           values=values)
    names = sorted(bad, key=lambda n: -sd[n].numel())
    msg = (f"{len(bad)} of {len(sd)} model tensors ({n_params:,} values) are not the checkpoint's: "
           + "; ".join(f"{n} {bad[n]}" for n in names[:3])
           + (f"; checkpoint keys that no parameter took: {', '.join(unused[:3])}" if unused else ""))
    measured = Measurement(n_params, [NOT_LOADED], msg,
                           "Load with strict=True: strip the checkpoint's key prefix (e.g. 'model.', 'module.', "
                           "'_orig_mod.') and tie or load the LM head as it was trained; "
                           "load_state_dict(strict=False) hides keys that load nowhere.",
                           details={"not_loaded": bad, "unused": unused[:50]}, values=values)
    absent = [n for n in bad if bad[n].startswith("has no counterpart")]
    if not absent and learned(s):
        # the model works: tensors that differ from the checkpoint's may be deliberate, so not a FAIL; tensors
        # the checkpoint never had (strict=False hides them: modules added since, a head left random) stay one
        measured.status = WARN
        measured.message += " (the model predicts its text, so the differences may be deliberate)"
    return measured
