"""A user's own model for `bitcheck diagnose CHECKPOINT --model module.path:factory`.

    factory(checkpoint_path) -> model | (model, tokenizer) | {"model": ..., optional extras}

The model is any causal LM called as `model(idx (B, T)) -> logits (B, T, V)` (a tuple or an object
with `.logits` also works). The optional dict extras let the probes reach the user's own
generation code instead of ours: `tokenizer`, `sampler(logits (B, V), temperature, top_k,
generator) -> ids (B,)` (keywords `top_p`, `min_p`, `repetition_penalty` with `input_ids` (B, T), if
declared, are probed too), `generate(model, idx, n) -> ids`, `incremental_logits(model, idx) ->
logits` (their KV cache), `fresh_model() -> model` (loss at init), `inference_model` (their packed
deployment path, for the parity probe), `block_size` (the longest context the model takes).

Everything here turns user mistakes into a UserModelError (one line, exit 2): a factory that
raises or returns the wrong thing, an unreadable tokenizer or text file, a tokenizer larger than
the model's vocabulary, a model without recognisable quantized layers. The probes' Subject for such a
model is built by `bitcheck.user.subjects.user_subject`.
"""
from __future__ import annotations

import importlib
import math
import os
import re
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bitcheck.bitnet.tokenizer import EOS as SEPARATOR
from bitcheck.errors import UserError, first_line
from bitcheck.judge.verdict import LEARNED_MARGIN
from probes import TokenizerAdapter
from probes.core import logits_of

EXTRAS = ("tokenizer", "sampler", "generate", "incremental_logits", "fresh_model", "inference_model", "block_size")
SEQ = 64  # tokens per row of the probe batches: the length the probe thresholds were measured on
ROWS = 8
N_TEXTS = 3
TEXT_CHARS = 4000  # per reference text; the data probe reads at most this much of each


class UserModelError(UserError):
    """A user mistake about --model, --tokenizer, --text or --layers: one line, exit 2."""


@dataclass
class UserModel:
    model: torch.nn.Module
    extras: dict = field(default_factory=dict)


def call_factory(factory: Callable, checkpoint: str) -> UserModel:
    """Run the user's factory and check what it returned."""
    name = getattr(factory, "__name__", "factory")
    try:
        out = factory(checkpoint)
    except Exception as e:  # noqa: BLE001 - the user's code: report its error, not ours
        raise UserModelError(f"the model factory {name}({checkpoint!r}) raised {type(e).__name__}: "
                             f"{first_line(e)}") from None
    extras: dict[str, Any] = {}
    if isinstance(out, dict):
        unknown = sorted(set(out) - set(EXTRAS) - {"model"})
        if unknown:
            raise UserModelError(f"the model factory returned unknown keys {unknown}; known: model, "
                                 f"{', '.join(EXTRAS)}")
        extras = {k: v for k, v in out.items() if k != "model" and v is not None}
        out = out.get("model")
    elif isinstance(out, tuple) and len(out) == 2:
        out, extras["tokenizer"] = out
    if not isinstance(out, torch.nn.Module):
        raise UserModelError(f"the model factory {name} returned {type(out).__name__}, not a torch.nn.Module "
                             "(return model, (model, tokenizer) or {'model': model, ...})")
    return UserModel(out, extras)


def load_tokenizer(path: str) -> Any:
    """A `tokenizers` JSON file, a Hugging Face tokenizer directory (tokenizer.json inside), or a
    SentencePiece .model file (needs the optional `sentencepiece` package)."""
    p = Path(path)
    if p.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (p / name).is_file():
                return load_tokenizer(str(p / name))
        raise UserModelError(f"--tokenizer {path}: the folder holds neither tokenizer.json nor tokenizer.model")
    if not p.is_file():
        raise UserModelError(f"--tokenizer {path}: no such file or folder")
    if p.suffix == ".model":
        try:
            import sentencepiece
        except ImportError:
            raise UserModelError(f"--tokenizer {path} is a SentencePiece model: `pip install sentencepiece` "
                                 "to read it, or give the tokenizer.json of a `tokenizers` tokenizer") from None
        try:
            return sentencepiece.SentencePieceProcessor(model_file=str(p))
        except Exception as e:  # noqa: BLE001 - sentencepiece raises bare RuntimeError/OSError
            raise UserModelError(f"--tokenizer {path} is not a readable SentencePiece model ({first_line(e)})") from None
    from tokenizers import Tokenizer
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a plain Exception for bad JSON
        raise UserModelError(f"--tokenizer {path} is not a `tokenizers` JSON file ({first_line(e)})") from None


def read_text(path: str) -> str:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserModelError(f"--text {path}: no such file") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise UserModelError(f"--text {path} is not a readable UTF-8 text file ({first_line(e)})") from None
    if len(text.split()) < 50:
        raise UserModelError(f"--text {path} holds {len(text.split())} words; give at least a few paragraphs "
                             "of the model's training text")
    return text


def model_vocab(model: torch.nn.Module, device: str) -> int:
    try:
        with torch.no_grad():
            return int(logits_of(model.eval(), torch.zeros(1, 2, dtype=torch.long, device=device)).shape[-1])
    except Exception as e:  # noqa: BLE001 - the user's forward: report, do not crash
        raise UserModelError(f"the model does not run as model(ids (1, 2)) -> logits: {type(e).__name__}: "
                             f"{first_line(e)}") from None


def text_batches(tok: TokenizerAdapter, text: str, seq: int, rows: int, n: int = 2):
    """(x, y) batches of consecutive windows of the text: exactly what a trainer would feed."""
    ids = tok.encode(text[: (n * rows + 1) * (seq + 1) * 8])  # enough for every window at >= 1/8 token per char
    windows = len(ids) // (seq + 1)
    if windows < n:
        raise UserModelError(f"--text encodes to {len(ids)} tokens; need at least {n * (seq + 1)}")
    rows = min(rows, windows // n)
    t = torch.tensor(ids[: n * rows * (seq + 1)], dtype=torch.long).view(n * rows, seq + 1)
    return [(c[:, :-1], c[:, 1:]) for c in t.split(rows)]


def random_batches(vocab: int, seq: int, rows: int, n: int = 2):
    """Without text: random ids exercise gradients, causality and numerics (not the data path)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        t = torch.randint(0, vocab, (rows, seq + 1), generator=g)
        out.append((t[:, :-1], t[:, 1:]))
    return out


def prompts_from(text: str, n: int = 6, words: int = 3) -> list[str]:
    """The first words of the text's first distinct paragraphs (or lines): how its documents start."""
    starts = []
    for block in re.split(r"\n\s*\n|" + re.escape(SEPARATOR), text):
        ws = block.split()
        if len(ws) >= words and " ".join(ws[:words]) not in starts:
            starts.append(" ".join(ws[:words]))
        if len(starts) == n:
            break
    if not starts:
        starts = [" ".join(text.split()[:words])]
    return starts


def full_forward_generate(block_size: int) -> Callable:
    """generate(model, idx, n) sampling at temperature 1 with full forward passes (no cache, context
    cropped to block_size): the plainest correct decoder, so poor samples are the model's, not ours.
    Seeded by the prompt."""
    def generate(model, idx: torch.Tensor, n: int) -> torch.Tensor:
        g = torch.Generator(device=idx.device).manual_seed(zlib.crc32(str(idx.tolist()).encode()))
        with torch.no_grad():
            for _ in range(n):
                logits = logits_of(model, idx[:, -block_size:])[:, -1].float()
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)
                idx = torch.cat([idx, nxt], dim=1)
        return idx
    return generate


def learned_gap(model: torch.nn.Module, batches, vocab: int) -> dict:
    """The model's teacher-forced loss on the text against the text's unigram entropy (the best
    input-independent predictor, Karpathy's baseline) and ln(vocab), and the mean entropy of its
    predictions (nats): a model that predicts its own text is about as uncertain as it is wrong."""
    counts = Counter()
    for x, y in batches:
        counts.update(y.flatten().tolist())
    total = sum(counts.values())
    unigram = -sum(c / total * math.log(c / total) for c in counts.values())
    losses, entropies = [], []
    with torch.no_grad():
        for x, y in batches:
            logp = logits_of(model.eval(), x).float().log_softmax(-1)  # (B, T, V)
            losses.append(torch.nn.functional.nll_loss(logp.flatten(0, 1), y.flatten()).item())
            entropies.append(float(-(logp.exp() * logp).sum(-1).mean()))
    loss = sum(losses) / len(losses)
    return {"text_loss": loss, "text_entropy": sum(entropies) / len(entropies), "unigram_entropy": unigram,
            "ln_vocab": math.log(vocab), "learned": loss < unigram - LEARNED_MARGIN}


def import_object(spec: str, what: str):
    """'package.module:Name' -> the object; a bad spec, module or name is a usage error."""
    if ":" not in spec or not all(spec.split(":", 1)):
        raise UserModelError(f"{what} {spec!r} must look like module.path:Name")
    module_name, attr = spec.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own code, run from their project
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure of user code is their error to read
        raise UserModelError(f"cannot import {module_name!r} for {what}: {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        raise UserModelError(f"module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)
