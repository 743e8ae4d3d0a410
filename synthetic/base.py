"""The common interface of the synthetic tasks, and the character tokenizer they share.

A task (modelled on nanochat's `Task`) knows its tokenizer, produces seeded, unlimited training
text packed into fixed-length token sequences with a loss mask, holds out evaluation examples
that training never shows, and scores the model's completions of them. Everything here is plain
Python (no torch): `synthetic` imports neither `bitcheck` nor `probes`, so any trainer can use it.
Adding a task touches its own file and its test.
"""
from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class CharTokenizer:
    """One id per character of a fixed alphabet, after the special tokens. Characters outside the
    alphabet encode to <unk>; decode drops special tokens, so decode(encode(s)) == s on the alphabet."""

    def __init__(self, alphabet: str, specials: tuple[str, ...] = SPECIALS):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet has repeated characters: {alphabet!r}")
        self.alphabet = alphabet
        self.specials = tuple(specials)
        self.itos = list(self.specials) + list(alphabet)
        self.stoi = {c: i for i, c in enumerate(alphabet, start=len(self.specials))}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def special_id(self, name: str) -> int:
        return self.specials.index(name)

    @property
    def pad_id(self) -> int:
        return self.special_id("<pad>")

    @property
    def bos_id(self) -> int:
        return self.special_id("<bos>")

    @property
    def eos_id(self) -> int:
        return self.special_id("<eos>")

    def encode(self, text: str) -> list[int]:
        unk = self.special_id("<unk>")
        return [self.stoi.get(c, unk) for c in text]

    def decode(self, ids) -> str:
        n = len(self.specials)
        return "".join(self.itos[i] for i in ids if n <= i < len(self.itos))

    def to_dict(self) -> dict:
        return {"type": "char", "alphabet": self.alphabet, "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("type") != "char":
            raise ValueError(f"not a character tokenizer: type {d.get('type')!r}")
        return cls(d["alphabet"], tuple(d["specials"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class Example:
    """One evaluation item: the model sees `prompt` and should continue with `answer`."""
    prompt: str
    answer: str
    group: str  # what the score is broken down by (the operator, the record field, ...)


class Task(ABC):
    name: str
    tokenizer: CharTokenizer
    stop_text: str = "\n"  # a completion ends at the first occurrence of this
    # How the held-out prompts are completed: 0 = greedy (a task with one right answer), > 0 = sampled
    # at that temperature (free-running text, scored for validity and diversity).
    eval_temperature: float = 0.0
    max_new_tokens: int = 8  # enough for the longest right completion
    answer_only: bool = True  # quick runs take the loss on the answers only, unless told otherwise
    # What a trainer's command for this task does and when it passes (bitcheck's `quick-<task> --help`).
    help: str = ""
    # Constructor options a command line may set: name -> (default as text, help). Each becomes an
    # option of the task's command; `option_value` gives the value a built task holds, as text.
    cli_options: dict[str, tuple[str, str]] = {}

    def option_value(self, name: str) -> str:
        return str(getattr(self, name))

    @abstractmethod
    def example_text(self, rng: random.Random) -> tuple[str, str]:
        """One training example as (context, answer): the loss may be restricted to the answer."""

    @abstractmethod
    def held_out(self) -> list[Example]:
        """The evaluation examples; example_text never returns one of them."""

    @abstractmethod
    def score(self, examples: list[Example], completions: list[str]) -> dict:
        """Scores of the completions (the text generated after each prompt, stop text removed)."""

    @abstractmethod
    def pass_criteria(self) -> dict[str, float]:
        """score['per_group'] key -> the least value a PASS needs (every key must hold)."""

    def training_sequence(self, seed: int, index: int, length: int, answer_only: bool) -> tuple[list[int], list[int]]:
        """Token ids and loss mask (1 = train on this token) of `length` tokens: <bos>, then whole
        examples back to back. Seeded by (seed, index), so step k's batch is the same whatever ran
        before it: a resumed run sees exactly the data a straight run would."""
        rng = random.Random(f"{self.name}:{seed}:{index}")
        ids, mask = [self.tokenizer.bos_id], [0]
        while len(ids) < length:
            context, answer = self.example_text(rng)
            c, a = self.tokenizer.encode(context), self.tokenizer.encode(answer)
            ids += c + a
            mask += [0 if answer_only else 1] * len(c) + [1] * len(a)
        return ids[:length], mask[:length]
