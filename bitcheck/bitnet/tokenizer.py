"""Tokenizers for real text: a byte-level BPE (exact round trip) and, below 256 tokens, a character
alphabet with an unknown token.

    tok = train_bpe(stories, vocab_size=2048)          # tokenizers.Tokenizer
    tok = train_chars(stories, vocab_size=192)         # the 1m preset: top characters + <unk>
    assert tok.decode(tok.encode(text).ids) == text    # BPE: always; chars: unless a rare char is lost

Byte-level BPE (GPT-2's scheme) maps every byte to a symbol before merging, so decode(encode(x)) == x
for any string. The seed recipe's `Whitespace` pre-tokenizer splits on spaces and throws them away:
decode then glues words together (probes/data.py measures the lost characters and fails it).
A byte-level BPE needs the 256 byte symbols plus merges, so below 256 tokens we use a `tokenizers`
WordLevel model over single characters: the most frequent characters of the training text and
`<unk>` for the rest (the public 1M TinyStories BitNet used a 192-piece SentencePiece unigram).
Both are saved as one tokenizer.json that `tokenizers.Tokenizer.from_file` reads.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from bitcheck.errors import UserError, first_line
from probes import TokenizerAdapter
from probes.data import lost_char_share

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|endoftext|>", "<|unk|>"
SPECIALS = [PAD, BOS, EOS]  # ids 0, 1, 2 in every tokenizer made here
MIN_BPE_VOCAB = 256 + len(SPECIALS) + 1  # the byte alphabet, the specials and at least one merge


class TokenizerError(UserError):
    """A bad tokenizer request or file: one line, exit 2."""


def train_bpe(texts: Iterable[str], vocab_size: int, length: int | None = None) -> Tokenizer:
    if vocab_size < MIN_BPE_VOCAB:
        raise TokenizerError(f"a byte-level BPE needs at least {MIN_BPE_VOCAB} tokens (256 bytes + specials); "
                             f"for {vocab_size} use the character tokenizer (--kind chars)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer, length=length)
    return tok


def train_chars(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """The vocab_size - 4 most frequent characters, the three specials and <unk>. A newline is always
    in the alphabet: texts are joined with it (reference text, documents) even when no story has one."""
    counts: Counter = Counter()
    for t in texts:
        counts.update(t)
    counts["\n"] += 1 + (max(counts.values()) if counts else 0)  # first, so never cut
    keep = [c for c, _ in counts.most_common(vocab_size - len(SPECIALS) - 1)]
    vocab = {s: i for i, s in enumerate(SPECIALS + [UNK] + keep)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # every character is its own "word"; the specials are matched whole before this split
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS + [UNK])
    return tok


def train(texts: Iterable[str], vocab_size: int, kind: str = "auto", length: int | None = None) -> Tokenizer:
    """kind: 'bpe', 'chars', or 'auto' (chars below MIN_BPE_VOCAB tokens, else bpe). The result has
    exactly vocab_size tokens: when the text has fewer characters (chars) or merges (bpe) than that,
    the rest are unused specials, never produced by encode, so a preset's vocabulary always fits."""
    if kind == "auto":
        kind = "chars" if vocab_size < MIN_BPE_VOCAB else "bpe"
    if kind == "bpe":
        tok = train_bpe(texts, vocab_size, length)
    elif kind == "chars":
        tok = train_chars(texts, vocab_size)
    else:
        raise TokenizerError(f"unknown tokenizer kind {kind!r} (bpe, chars or auto)")
    short = vocab_size - tok.get_vocab_size()
    if short > 0:
        tok.add_special_tokens([f"<|unused{i}|>" for i in range(short)])
    return tok


def load(path: str) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception for missing or bad files
        raise TokenizerError(f"{path} is not a readable tokenizer.json ({first_line(e)})") from None


def from_json(text: str, what: str = "the stored tokenizer") -> Tokenizer:
    """A tokenizer from its JSON text (as checkpoints store it); unreadable text is a TokenizerError."""
    try:
        return Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise TokenizerError(f"{what} is unreadable ({first_line(e)})") from None


def special_id(tok: Tokenizer, token: str) -> int:
    i = tok.token_to_id(token)
    if i is None:
        raise TokenizerError(f"the tokenizer has no {token} token; train one with `bitcheck tokenizer train`")
    return i


def lost_share(tok: Tokenizer, texts: Iterable[str]) -> tuple[float, int]:
    """Share of characters decode(encode(text)) loses (the data_decode probe's own measure), and the
    number of characters checked."""
    texts = list(texts)
    longest = max(map(len, texts), default=0)
    return lost_char_share(TokenizerAdapter(tok), texts, max_chars=longest), sum(map(len, texts))
