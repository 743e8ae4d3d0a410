"""Loss and causality probes, from Karpathy's recipe: the loss at init is ln(vocab), a position
cannot see its future, and the model can memorise one batch.
"""
from __future__ import annotations

import contextlib
import copy
import math
import types

import torch

from probes import reference as ref
from probes.core import (
    SKIP,
    Measurement,
    Subject,
    Threshold,
    first_batch,
    large_on_cpu,
    lm_loss,
    logits_of,
    probe,
    quant_layers,
)

# loss(fresh model) - ln(vocab). Measured: healthy tiny preset 0.063-0.069 (selftest, quick-arith);
# a tied N(0, 1) embedding 112.
INIT_EXCESS = Threshold("init_loss_minus_ln_vocab", warn=0.15, fail=0.5,
                        source="healthy 0.063-0.069; N(0,1) embedding 112")
INIT_DEFICIT = Threshold("ln_vocab_minus_init_loss", warn=0.15, fail=0.5,
                         source="a fresh model cannot beat uniform by much; far below = leak or wrong targets")
# max |logit change| at positions <= t when only tokens after t change, relative to the logits' scale.
# Measured: a causal model exactly 0 (same computation); attention without the mask 0.86.
LEAK = Threshold("relative_leak", warn=1e-6, fail=1e-4, source="causal 0; unmasked attention 0.86")
# loss after OVERFIT_STEPS steps on OVERFIT_ROWS rows of one batch / loss before. Measured on
# arithmetic batches of 64 tokens: healthy tiny preset 0.007-0.016 at init, 0.020-0.021 trained
# (selftest, 3 seeds), a 32-wide test model 0.146; STE missing 0.72-0.80 at init, 1.9 trained;
# inverted scale 0.71.
OVERFIT = Threshold("final_over_initial_loss", warn=0.2, fail=0.4,
                    source="healthy 0.007-0.146; no STE 0.72-1.9; inverted scale 0.71")
OVERFIT_ROWS = 4
OVERFIT_TOKENS = 64  # per row: the length the bounds were measured on, and the cost on long-context batches
OVERFIT_STEPS = 150
OVERFIT_LR = 3e-3
# Stop early once the ratio is this far below the WARN bar: a healthy model is proven, and the
# buggy ones (no STE 0.72-1.9, inverted scale 0.71) never get here. Makes a 12M model's probe
# cost what it takes to memorise, not always 150 steps.
OVERFIT_DONE = OVERFIT.warn / 4


@probe("loss_at_init", branch="loss", needs=("fresh_model", "batches", "vocab_size"),
       catches="oversized init; targets visible in inputs",
       fails_when="|loss - ln V| > 0.5",
       measured="0.063-0.069 vs 112 (N(0,1) embedding)")
def loss_at_init(s: Subject):
    """A freshly initialised model's loss on a real batch is ln(vocab) within a tolerance: higher means
    confident wrong guesses (oversized init), much lower means the targets leak into the inputs."""
    torch.manual_seed(0)
    model = s.fresh_model().to(s.device).eval()
    x, y = first_batch(s)
    with torch.no_grad():
        loss = lm_loss(model, x, y).item()
    ln_v = math.log(s.vocab_size)
    values = {"init_loss_minus_ln_vocab": loss - ln_v, "ln_vocab_minus_init_loss": ln_v - loss}
    return Measurement(loss - ln_v, [INIT_EXCESS, INIT_DEFICIT],
                       f"loss at init {loss:.3f} vs ln(vocab) {ln_v:.3f}",
                       "Initialise embeddings/head small (std ~0.02) so step-0 logits are near uniform; "
                       "a loss far below ln(vocab) at init means the answer is visible in the input.",
                       details={"init_loss": loss, "ln_vocab": ln_v}, values=values)


@probe("causal_leak", branch="loss",
       catches="attention without the causal mask (a leak that vanishes with per-token reference quantizers "
               "is blamed on quantization)",
       fails_when="relative logit change > 1e-4",
       measured="0 vs 0.86")
def causal_leak(s: Subject):
    """Changing tokens after position t changes no logits at positions <= t. A leak that vanishes
    when every quantized layer computes the reference b1.58 forward (per-token activation scale) comes
    from the quantizers, not from attention: the result then points at quantization."""
    model = s.model.eval()
    vocab = s.vocab_size or 2
    if s.batches:
        x = first_batch(s)[0][:4]
    else:
        x = torch.randint(0, vocab, (4, 32), generator=torch.Generator().manual_seed(0)).to(s.device)
    T = x.shape[1]
    t = T // 2
    x2 = x.clone()
    x2[:, t + 1:] = (x2[:, t + 1:] + 1 + torch.arange(T - t - 1, device=x.device)) % vocab
    leak, first = _leak(model, x, x2, t)
    branch, cause = None, ""  # None: the probe's own branch (loss)
    if leak > LEAK.fail:
        layers = quant_layers(model, s.layer_pattern)
        with reference_layers(layers):
            without, _ = _leak(model, x, x2, t)
        if layers and without <= LEAK.warn:
            branch = "quantization"
            cause = (f"; with the reference per-token quantizer in the {len(layers)} quantized layers it is "
                     f"{without:.1e}: the quantized layers mix positions (activation scale not per token)")
    return Measurement(leak, [LEAK],
                       f"relative logit change at positions <= {t} from later tokens: {leak:.2e}"
                       + (f" (first at position {first})" if first is not None else "") + cause,
                       "The leak comes from the activation quantizer: take absmax per token, not over the sequence "
                       "or the tensor." if cause else
                       "Future tokens influence the past: use a causal mask (is_causal=True) in attention and "
                       "check that targets are not fed as inputs.", branch=branch)


def _leak(model, x, x2, t: int) -> tuple[float, int | None]:
    """Relative max logit change at positions <= t between inputs x and x2 (which differ after t),
    and the first position that changed."""
    with torch.no_grad():
        a, b = logits_of(model, x), logits_of(model, x2)
    scale = a[:, :t + 1].abs().max().item() or 1.0
    leak = (a[:, :t + 1] - b[:, :t + 1]).abs().max().item() / scale
    per_pos = (a - b).abs().amax(dim=(0, 2))[:t + 1]
    first = int((per_pos > 1e-6 * scale).nonzero()[0]) if leak > 1e-6 else None
    return leak, first


@contextlib.contextmanager
def reference_layers(layers: list):
    """Within the block, each (name, layer) computes the reference b1.58 forward of its own latent
    weight (probes/reference.py: per-token int8 activations, absmean ternary weights), plus its bias."""
    def forward(self, x):
        y = ref.bitlinear(x, self.weight)
        bias = getattr(self, "bias", None)
        return y + bias if isinstance(bias, torch.Tensor) else y
    saved = [(m, m.__dict__.get("forward")) for _, m in layers]
    for _, m in layers:
        m.forward = types.MethodType(forward, m)
    try:
        yield
    finally:
        for m, own in saved:
            if own is None:
                del m.forward
            else:
                m.forward = own


@probe("overfit_batch", branch="gradients", needs=("batches",),
       catches="a model that cannot memorise 4 sequences of <= 64 tokens in 150 steps (stops early below 0.05)",
       fails_when="final/initial loss > 0.4",
       measured="0.007-0.146 vs 0.72-1.9 (no STE), 0.71 (inverted scale)")
def overfit_batch(s: Subject):
    """A copy of the model, trained with AdamW on one batch for a fixed number of steps, drives that
    batch's loss near zero. A model that cannot memorise 4 sequences cannot learn anything."""
    if large_on_cpu(s):  # the seed design's 95M: 228 s and ~4x the model's memory (copy, gradients, AdamW)
        n_params = sum(p.numel() for p in s.model.parameters())
        return Measurement(message=f"not run on a {n_params / 1e6:.0f}M-parameter model on the CPU: memorising a "
                           "batch would take minutes and ~4x the model's memory (ste_gradient_flow checks the "
                           "gradients; `bitcheck quick-arith --model` checks that your code learns)", status=SKIP)
    model = copy.deepcopy(s.model).train()
    x, y = first_batch(s)
    x, y = x[:OVERFIT_ROWS, :OVERFIT_TOKENS], y[:OVERFIT_ROWS, :OVERFIT_TOKENS]
    opt = torch.optim.AdamW(model.parameters(), lr=OVERFIT_LR, betas=(0.9, 0.95), weight_decay=0.0)
    losses = []
    for _ in range(OVERFIT_STEPS):
        loss = lm_loss(model, x, y)
        losses.append(loss.item())
        if losses[-1] < OVERFIT_DONE * losses[0]:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        final = lm_loss(model.eval(), x, y).item()
    ratio = final / max(losses[0], 1e-12)
    return Measurement(ratio, [OVERFIT],
                       f"one batch: loss {losses[0]:.3f} -> {final:.3f} in {len(losses)} steps (ratio {ratio:.3f})",
                       "The model cannot memorise one batch: gradients do not reach the weights (STE), the "
                       "optimizer does not step, or the loss is computed on the wrong targets.",
                       details={"losses": losses[::10] + [final]})
