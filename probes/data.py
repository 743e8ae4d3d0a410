"""Data probe: does exactly what enters the network read as the source text?

Karpathy's "visualize exactly what enters the net": the tokenizer must round-trip the sample text
(a `Whitespace` pre-tokenizer silently drops spaces), the batch tensors the trainer feeds must decode
to words of the source, targets must be the inputs shifted by one, and every id must be < vocab.
"""
from __future__ import annotations

import difflib
import re

from probes.core import Measurement, Subject, Threshold, probe

# Share of characters lost in decode(encode(text)). Measured: byte-level BPE and our char tokenizers 0;
# a BPE with the Whitespace pre-tokenizer on arithmetic text 0.076 (spaces and newlines). The 1m
# preset's character alphabet may lose rare characters: the bar is 0.1% (0.0000% measured on the real
# TinyStories sample, docs/COMMANDS.md "TinyStories: real text").
LOST_CHARS = Threshold("lost_char_share", warn=0.0, fail=0.001, source="exact tokenizers 0; Whitespace BPE 0.076")
# Share of target positions (with a loss) equal to the next input token. Measured: healthy 1.0;
# targets not shifted 0.031.
SHIFTED = Threshold("shifted_share", warn=None, fail=0.999, higher_is_worse=False, source="healthy 1.0; unshifted 0.031")
OUT_OF_RANGE = Threshold("out_of_range_ids", warn=None, fail=0, source="any id >= vocab is a bug")
# Share of words (lower-cased \w+ runs) in the decoded batches that occur in the reference text.
# Measured: healthy arithmetic 0.989 (numbers absent from the sample are the misses); real
# TinyStories (the 2 MiB sample, 1m preset, 60k characters of reference) 0.894, where whitespace
# words with punctuation attached gave 0.834 and a WARN on a healthy run. No planted bug drives it
# down yet; a decoder mapping ids to the wrong strings gives near 0.
KNOWN_WORDS = Threshold("batch_known_word_share", warn=0.8, fail=0.6, higher_is_worse=False,
                        source="healthy arithmetic 0.989, TinyStories 0.894")


def words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def lost_char_share(tokenizer, texts: list[str], max_chars: int = 4000) -> float:
    lost = total = 0
    for text in texts:
        text = text[:max_chars]
        back = tokenizer.decode(tokenizer.encode(text))
        if back == text:
            total += len(text)
            continue
        matched = sum(b.size for b in difflib.SequenceMatcher(None, text, back, autojunk=False).get_matching_blocks())
        lost += len(text) - matched
        total += len(text)
    return lost / max(total, 1)


@probe("data_decode", branch="data", needs=("tokenizer",),
       catches="lossy tokenizer, unshifted targets, ids out of range",
       fails_when="lost chars > 0.1%, shifted share < 0.999, any id >= vocab, known-word share < 0.6",
       measured="0 / 1.0 vs 0.076 (Whitespace BPE) / 0.031 (unshifted)")
def data_decode(s: Subject):
    """Tokenizer round trip is exact on the sample text; the trainer's batch tensors decode to the
    source's words; targets are the inputs shifted by one; every id is in [0, vocab)."""
    values, thresholds, notes = {}, [], []
    if s.texts:
        values["lost_char_share"] = lost_char_share(s.tokenizer, s.texts)
        thresholds.append(LOST_CHARS)
        if values["lost_char_share"] > 0:
            t = s.texts[0][:80]
            notes.append(f"round trip lost {values['lost_char_share']:.1%} of characters: "
                         f"{t!r} -> {s.tokenizer.decode(s.tokenizer.encode(t))!r}")
    if s.batches:
        vocab = s.vocab_size
        shifted = counted = oor = 0
        words_known = words = 0
        known = set(words_of(" ".join(s.texts or [])))
        for x, y in s.batches:
            if vocab is not None:
                oor += int(((x < 0) | (x >= vocab)).sum()) + int(((y < -1) | (y >= vocab)).sum())
            m = y[:, :-1] >= 0  # positions with a loss whose next input is in the batch
            shifted += int((y[:, :-1][m] == x[:, 1:][m]).sum())
            counted += int(m.sum())
            if known:
                for row in x.tolist():
                    ws = words_of(s.tokenizer.decode(row))[1:-1]  # the ends may be cut mid-word
                    words += len(ws)
                    words_known += sum(w in known for w in ws)
        values["shifted_share"] = shifted / max(counted, 1)
        values["out_of_range_ids"] = oor
        thresholds += [SHIFTED, OUT_OF_RANGE]
        if known and words:
            values["batch_known_word_share"] = words_known / words
            thresholds.append(KNOWN_WORDS)
        if values["shifted_share"] < 0.999:
            notes.append(f"only {values['shifted_share']:.1%} of targets are the next input token")
        if oor:
            notes.append(f"{oor} ids outside [0, {vocab})")
        notes.append("batch decodes as: " + repr(s.tokenizer.decode(s.batches[0][0][0].tolist())[:60]))
    if not thresholds:
        return Measurement(None, message="no sample text or batches to check")
    msg = "; ".join(notes)
    hint = ("Use a lossless tokenizer (byte-level BPE: ByteLevel pre-tokenizer and decoder), feed "
            "targets = inputs shifted by one, and check ids against the model's vocabulary.")
    return Measurement(values, thresholds, msg, hint, values=values)


# Which token does the model predict at position t: x[t + k] for k = 0 (the input itself), 1 (the
# next token: right), 2 or 3 (labels shifted twice or more in the training loop)? The teacher-forced
# loss against each offset, on the batches' supervised positions. FAIL when another offset's loss is
# below the next token's by more than OFFSET_MARGIN nats. An untrained model has no preference (all
# ~ln V); a healthy trained one prefers k = 1 by nats.
OFFSET_MARGIN = 0.5
OFFSET_GAP = Threshold("offset_gain_nats", warn=None, fail=OFFSET_MARGIN,
                       source="untrained: no offset preferred (gaps < 0.1); labels shifted twice: k=2 wins by nats")
OFFSETS = (0, 1, 2, 3)


def offset_losses(model, x, y) -> dict[int, float]:
    """Mean cross-entropy of the logits at t against x[t + k], for each offset k, over the positions
    whose own target for that offset is supervised (y != -1 at t + k - 1)."""
    import torch
    import torch.nn.functional as F

    from probes.core import logits_of
    with torch.no_grad():
        logits = logits_of(model, x).float()  # (B, T, V)
    T, V = x.shape[1], logits.shape[-1]
    seq = torch.cat([x, y[:, -1:].clamp(min=0)], dim=1)  # (B, T + 1): the inputs and the last target
    sup = torch.cat([torch.zeros_like(y[:, :1], dtype=torch.bool), y >= 0], dim=1)  # sup[:, j]: token j is a target
    out = {}
    for k in OFFSETS:
        t = torch.arange(0, min(T, T + 1 - k), device=x.device)  # positions whose token t + k exists
        keep = sup[:, t + k] & (seq[:, t + k] < V)  # (B, len(t)): a model trained on offset k saw these
        if keep.sum() == 0:
            continue
        lg, tgt = logits[:, t][keep], seq[:, t + k][keep]
        out[k] = F.cross_entropy(lg, tgt).item()
    return out


@probe("label_offset", branch="data", needs=("batches",),
       catches="labels shifted twice (the model learned token t+2), or not shifted (it copies its input)",
       fails_when="another offset's loss beats the next token's by > 0.5 nats",
       measured="healthy trained: next token best by nats; untrained: gaps < 0.1; shifted twice: t+2 best")
def label_offset(s: Subject):
    """What the model learned to predict at position t: the teacher-forced loss against x[t + k] for
    k = 0..3 on the batches' supervised positions; anything but k = 1 winning clearly is a label bug."""
    x, y = s.batches[0]
    x, y = x.to(s.device), y.to(s.device)
    losses = offset_losses(s.model, x, y)
    if 1 not in losses:
        return Measurement(None, [OFFSET_GAP], "no supervised positions in the batch")
    best = min(losses, key=losses.get)
    gain = losses[1] - losses[best]
    values = {"offset_gain_nats": gain, "best_offset": best, **{f"loss_t+{k}": v for k, v in losses.items()}}
    message = (f"the model predicts token t+{best} (loss {losses[best]:.3f}) better than the next token "
               f"(loss {losses[1]:.3f}): labels shifted {'not at all' if best == 0 else f'{best} times'}"
               if best != 1 and gain > OFFSET_MARGIN else
               f"the next token is what the model predicts best or nothing is preferred "
               f"({', '.join(f't+{k} {v:.2f}' for k, v in losses.items())})")
    return Measurement(values, [OFFSET_GAP], message,
                       "Shift the labels exactly once: targets[t] = ids[t + 1], either in the data or in the loss, "
                       "not in both.", values=values)
