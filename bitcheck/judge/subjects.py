"""Subjects: what the independent probes are given to judge. One builder per kind of evidence:

    task_subject(model, cfg, task, batches, seed, ...)   a BitNet trained on a synthetic task
    stories_subject(model, cfg, tok, batches, text, ...)  a BitNet trained on stories
    user_subject(user_model, device, tokenizer, text, ...)  the user's own model code (--model)
    tensors_subject(state_dict)                            tensors only: no model code
    parity_subject(model, inference_model, batches)        a model and its packed deployment twin

The probes only ever see the model through `model(idx) -> logits` and the callables given here
(the KV-cache protocol, our sampler, our generate): the yardsticks themselves live in `probes/`.
"""
from __future__ import annotations

import random
import zlib

import torch

from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.model import BitNet, KVCache, packed_model, sample_next
from bitcheck.bitnet.tokenizer import EOS as SEPARATOR
from probes import History, Subject, TokenizerAdapter, run_probes
from probes.gradients import UpdateWatch
from probes.quantization import FlipWatch


class LogitsOnly(torch.nn.Module):
    """Presents BitNet as `model(idx) -> logits`, the interface probes expect of any model."""

    def __init__(self, model: BitNet):
        super().__init__()
        self.inner = model

    def forward(self, idx):
        return self.inner(idx)[0]


def incremental_logits(model: LogitsOnly, idx: torch.Tensor) -> torch.Tensor:
    """Logits of idx (B, T) decoded one token at a time through our KV cache."""
    inner = model.inner
    cache = KVCache(inner.config.n_layer)
    return torch.cat([inner(idx[:, t:t + 1], cache=cache)[0] for t in range(idx.shape[1])], dim=1)


def sample_generator(bos_id: int):
    """generate(model, idx, n): free-running samples at temperature 1, prefixed with the tokenizer's
    <bos> as in training; seeded by the prompt, so a prompt always gets the same sample and different
    prompts get independent ones."""
    def generate(model: LogitsOnly, idx: torch.Tensor, n: int) -> torch.Tensor:
        bos = torch.full((idx.shape[0], 1), bos_id, dtype=idx.dtype, device=idx.device)
        seed = zlib.crc32(str(idx.tolist()).encode())
        out = model.inner.generate(torch.cat([bos, idx], dim=1), n, temperature=1.0, seed=seed)
        return out[:, 1:]
    return generate


def sampler(logits: torch.Tensor, temperature: float, top_k: int | None, generator,
            top_p: float | None = None) -> torch.Tensor:
    """The probes' sampler protocol over our sample_next (top_p declared, so the probe checks it)."""
    return sample_next(logits, temperature, top_k, top_p, generator)


def make_watchers(every_flip: int = 100, every_update: int = 50, pattern: str | None = None) -> list:
    return [FlipWatch(every_flip, pattern), UpdateWatch(every_update, pattern)]


def training_history(watchers=(), optimizer=None) -> History:
    """Subject.history from the training watchers and the optimizer (for the training-time probes)."""
    return History(flip_rates=next((w.records for w in watchers if isinstance(w, FlipWatch)), None),
                   update_ratios=next((w.records for w in watchers if isinstance(w, UpdateWatch)), None),
                   optimizer=optimizer)


ANSWER_ONLY_SKIP = ("trained with loss on answers only: free-running text is not what the model learned "
                    "(the sampler and KV-cache probes still check generation)")


def task_subject(model: BitNet, cfg: ModelConfig, task, batches, seed: int, watchers=(), optimizer=None,
                 n_batches: int = 2, answer_only: bool = False) -> Subject:
    """A Subject for one of our models trained on a synthetic task: the exact batches the trainer feeds
    (steps 0..n-1), reference text from the task's generator, prompts, and the training history.
    A model trained on answers only never learned to write prompts, so the sample-text probes SKIP."""
    rng = random.Random(f"probe-reference:{seed}")
    texts = ["".join("".join(task.example_text(rng)) for _ in range(200)) for _ in range(3)]
    prompts = ["".join(task.example_text(rng)) for _ in range(6)]
    history = training_history(watchers, optimizer)
    device = next(model.parameters()).device
    return Subject(
        model=LogitsOnly(model), tokenizer=task.tokenizer, batches=[batches(i, 0) for i in range(n_batches)],
        texts=texts, prompts=prompts, vocab_size=cfg.vocab_size,
        fresh_model=lambda: LogitsOnly(BitNet(cfg)), sampler=sampler, generate=sample_generator(task.tokenizer.bos_id),
        incremental_logits=incremental_logits, context=cfg.block_size, history=history, device=str(device),
        inference_model=LogitsOnly(packed_model(model)),  # the deployment path, for the parity probe
        skip={"repetition": ANSWER_ONLY_SKIP, "gibberish": ANSWER_ONLY_SKIP} if answer_only else {})


STORY_PROMPTS = ("Once upon a time", "There was a little", "One day a boy")  # the seed design's


def stories_subject(model: BitNet, cfg: ModelConfig, tok, batches: list, text: str, watchers=(),
                    optimizer=None) -> Subject:
    """A Subject for a story model: the exact batches fed, validation stories as reference text."""
    plain = text.replace(SEPARATOR, "\n")
    n = max(1, len(plain) // 3)
    eos = tok.token_to_id(SEPARATOR)
    return Subject(
        model=LogitsOnly(model), tokenizer=TokenizerAdapter(tok), batches=batches,
        texts=[plain[i * n:(i + 1) * n] for i in range(3)], prompts=list(STORY_PROMPTS), vocab_size=cfg.vocab_size,
        fresh_model=lambda: LogitsOnly(BitNet(cfg)), sampler=sampler, generate=sample_generator(eos),
        incremental_logits=incremental_logits, context=cfg.block_size, history=training_history(watchers, optimizer),
        device=str(next(model.parameters()).device),
        inference_model=LogitsOnly(packed_model(model)))


def tensors_subject(state_dict: dict[str, torch.Tensor]) -> Subject:
    """Tensors without model code: only the probes of kind "tensors" can run."""
    return Subject(model=None, tensors=state_dict)


def parity_subject(model: BitNet, inference_model: BitNet, batches: list) -> Subject:
    """A model and its deployment twin, for the parity probe alone (bitcheck export)."""
    return Subject(model=LogitsOnly(model), inference_model=LogitsOnly(inference_model), batches=batches)


def probe_results(subject: Subject, kinds: tuple[str, ...] | None = None) -> list[dict]:
    return [r.to_dict() for r in run_probes(subject, kinds=kinds)]
