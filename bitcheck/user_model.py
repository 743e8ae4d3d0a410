"""A user's own model for `bitcheck diagnose CHECKPOINT --model module.path:factory`.

    factory(checkpoint_path) -> model | (model, tokenizer) | {"model": ..., optional extras}

The model is any causal LM called as `model(idx (B, T)) -> logits (B, T, V)` (a tuple or an object
with `.logits` also works). The optional dict extras let the probes reach the user's own
generation code instead of ours: `tokenizer`, `sampler(logits (B, V), temperature, top_k,
generator) -> ids (B,)`, `generate(model, idx, n) -> ids`, `incremental_logits(model, idx) ->
logits` (their KV cache), `fresh_model() -> model` (loss at init), `inference_model` (their packed
deployment path, for the parity probe), `block_size` (the longest context the model takes).

Everything here turns user mistakes into a UserModelError (one line, exit 2): a factory that
raises or returns the wrong thing, an unreadable tokenizer or text file, a tokenizer larger than
the model's vocabulary, a model without recognisable quantized layers.
"""
from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bitcheck.rundir import first_line
from bitcheck.tokenizer import EOS as SEPARATOR
from probes import Subject, TokenizerAdapter
from probes.core import logits_of, quant_layers

EXTRAS = ("tokenizer", "sampler", "generate", "incremental_logits", "fresh_model", "inference_model", "block_size")
SEQ = 64  # tokens per row of the probe batches: the length the probe thresholds were measured on
ROWS = 8
N_TEXTS = 3
TEXT_CHARS = 4000  # per reference text; the data probe reads at most this much of each
# "Has the model learned the text?": its teacher-forced loss on the text must beat the best
# input-independent predictor (the text's own unigram entropy) by this many nats. Measured on the
# tests' user model (tests/user_models.py, BPE 320, generated stories): untrained 5.776, i.e. 1.58
# nats *worse* than the unigram entropy 4.198 (an untrained model is near ln V = 5.768); trained 400
# steps 1.749, 2.45 nats better. Without it an untrained model's gibberish would be blamed on
# generation; the margin only keeps a model at the unigram level from counting as learned.
LEARNED_MARGIN = 0.2


class UserModelError(ValueError):
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
    input-independent predictor, Karpathy's baseline) and ln(vocab)."""
    counts = Counter()
    for x, y in batches:
        counts.update(y.flatten().tolist())
    total = sum(counts.values())
    unigram = -sum(c / total * math.log(c / total) for c in counts.values())
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(logits_of(model.eval(), x).flatten(0, 1).float(), y.flatten()).item()
                  for x, y in batches]
    loss = sum(losses) / len(losses)
    return {"text_loss": loss, "unigram_entropy": unigram, "ln_vocab": math.log(vocab),
            "learned": loss < unigram - LEARNED_MARGIN}


def user_subject(um: UserModel, device: str, tokenizer_path: str | None, text_path: str | None,
                 layers: str | None) -> tuple[Subject, dict]:
    """A Subject for the user's model, and the facts for the report (vocab sizes, learned or not)."""
    model = um.model.to(device)
    tok = load_tokenizer(tokenizer_path) if tokenizer_path else um.extras.get("tokenizer")
    tok = TokenizerAdapter(tok) if tok is not None else None
    vocab = model_vocab(model, device)
    facts: dict[str, Any] = {"model_vocab": vocab, "params": sum(p.numel() for p in model.parameters())}
    if layers is not None:
        try:
            re.compile(layers)
        except re.error as e:
            raise UserModelError(f"--layers {layers!r} is not a regular expression ({e})") from None
    found = quant_layers(model, layers)
    if not found:
        raise UserModelError("no quantized layers found: bitcheck looks for modules whose class name contains "
                             "'BitLinear'; name yours with --layers REGEX (over module names, e.g. 'proj|fc')")
    facts["quantized_layers"] = len(found)
    if tok is not None:
        tv = tok.vocab_size
        facts["tokenizer_vocab"] = tv
        if tv is None:
            raise UserModelError("the tokenizer does not say its vocabulary size (no vocab_size / get_vocab_size)")
        if tv > vocab:
            raise UserModelError(f"the tokenizer has {tv} tokens but the model outputs {vocab} logits: "
                                 "this is not the model's tokenizer")
    text = read_text(text_path) if text_path else None
    if text is not None and tok is None:
        raise UserModelError("--text needs a tokenizer: give --tokenizer PATH or return (model, tokenizer) "
                             "from the factory")
    block = int(um.extras.get("block_size", SEQ))
    seq = min(SEQ, block)
    batches = ([(x.to(device), y.to(device)) for x, y in text_batches(tok, text, seq, ROWS)] if text is not None
               else [(x.to(device), y.to(device)) for x, y in random_batches(vocab, seq, ROWS)])
    # reference text without document separators: a tokenizer may drop its special tokens on decode
    plain = re.sub(r"\s*" + re.escape(SEPARATOR) + r"\s*", "\n\n", text).strip() if text is not None else None
    texts = [plain[i * TEXT_CHARS:(i + 1) * TEXT_CHARS] for i in range(N_TEXTS)] if plain else None
    texts = [t for t in texts if t] if texts else None
    skip = {}
    for name, extra in (("sampler", "sampler"), ("kv_cache_parity", "incremental_logits"),
                        ("loss_at_init", "fresh_model"), ("inference_parity", "inference_model")):
        if extra not in um.extras:
            skip[name] = f"the factory gave no {extra!r}: return {{'model': ..., '{extra}': ...}} to check yours"
    if text is None:
        for name in ("repetition", "gibberish"):
            skip[name] = "no sample text: give --text FILE (the model's training text) to judge its samples"
    if text is not None:
        facts.update(learned_gap(model, batches, vocab))
    subject = Subject(
        model=model, tokenizer=tok, batches=batches, texts=texts,
        prompts=prompts_from(plain) if plain is not None else None, vocab_size=vocab,
        fresh_model=um.extras.get("fresh_model"), sampler=um.extras.get("sampler"),
        generate=um.extras.get("generate") or full_forward_generate(block),
        incremental_logits=um.extras.get("incremental_logits"), layer_pattern=layers, skip=skip,
        inference_model=um.extras.get("inference_model"), device=device)
    return subject, facts
