"""Subjects of the user's own model: what the probes are given of their code, hooks and runs.

    own_model_subject(model, task, batches, seed, hooks, ...)   their model trained on one of our tasks
    stories_own_subject(model, cfg, tok, batches, text, hooks)  their model trained on stories
    user_subject(user_model, device, tokenizer, text, ...)      their model loaded by their factory (--model)

A probe whose hook is missing SKIPs saying which to add. bitcheck's own models: bitcheck/judge/subjects.py.
"""
from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

import torch

from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.tokenizer import EOS as SEPARATOR
from bitcheck.judge.subjects import ANSWER_ONLY_SKIP, STORY_PROMPTS, make_watchers, training_history
from bitcheck.user.adapter import Recipe, schedule_over_horizon
from bitcheck.user.factory import (
    N_TEXTS,
    ROWS,
    SEQ,
    TEXT_CHARS,
    UserModel,
    UserModelError,
    full_forward_generate,
    learned_gap,
    load_tokenizer,
    model_vocab,
    prompts_from,
    random_batches,
    read_text,
    text_batches,
)
from bitcheck.user.hooks import Hooks
from probes import History, Subject, TokenizerAdapter
from probes.core import quant_layers
from probes.optimizer import OptimizerWatch


def own_watchers(layers: str | None, optimizer=None) -> list:
    """The watchers of a run of the user's model: flips and updates of their quantized layers, and their
    param groups' weight decay when their optimizer runs."""
    return make_watchers(pattern=layers) + ([OptimizerWatch(optimizer)] if optimizer is not None else [])


def own_history(watchers, trainer, tcfg, scalars: list[dict], adapter=None) -> History:
    """Subject.history of a run of the user's model in bitcheck's Trainer: the watchers', and when their
    optimizer and schedule ran, the LR and weight decay they applied next to what the recipe intends,
    continued to the recipe's horizon by a copy of their optimizer stepped without training (`adapter`:
    bitcheck/user/adapter.py's schedule_over_horizon)."""
    history = training_history(watchers, trainer.optimizer)
    if not trainer.own_optimizer:
        recipe = Recipe.from_config(tcfg)
        applied = [{"step": r["step"], "lr": r["lr"], "weight_decay": r["weight_decay"]} for r in scalars if "lr" in r]
        last = applied[-1]["step"] if applied else 0
        net = getattr(trainer.model, "net", trainer.model)  # the user's module inside bitcheck's UserNet
        more = schedule_over_horizon(adapter, net, recipe, last) if adapter is not None else []
        applied += more
        history = dataclasses.replace(
            history, schedule=applied, warmup_steps=recipe.warmup_steps, intended=recipe.intended_for(applied),
            schedule_stepped_from=last if more else None,
            group_decay=next((w.records for w in watchers if isinstance(w, OptimizerWatch)), None))
    return history


def own_model_subject(model: torch.nn.Module, task, batches, seed: int, hooks: Hooks, history: History | None = None,
                      layers: str | None = None, answer_only: bool = False, block_size: int = 128) -> Subject:
    """A Subject for the user's own model trained on one of our tasks (bitcheck quick-<task> --model, or
    their own loop through bitcheck.session): the task's batches, texts and prompts as task_subject,
    and the user's hooks where given."""
    rng = random.Random(f"probe-reference:{seed}")
    texts = ["".join("".join(task.example_text(rng)) for _ in range(200)) for _ in range(3)]
    prompts = ["".join(task.example_text(rng)) for _ in range(6)]
    skip = {"repetition": ANSWER_ONLY_SKIP, "gibberish": ANSWER_ONLY_SKIP} if answer_only else {}
    return _user_subject(model, hooks, tokenizer=task.tokenizer, batches=[batches(i, 0) for i in range(2)],
                         texts=texts, prompts=prompts, vocab_size=task.tokenizer.vocab_size,
                         bos_id=task.tokenizer.bos_id, history=history, layers=layers, skip=skip,
                         block_size=block_size)


def stories_own_subject(model: torch.nn.Module, cfg: ModelConfig, tok, batches: list, text: str, hooks: Hooks,
                        history: History | None = None, layers: str | None = None) -> Subject:
    """A Subject for the user's own model trained on stories (bitcheck tinystories --model): the exact
    batches fed, validation stories as reference text, the story prompts after <|endoftext|>, and the
    user's hooks where given."""
    plain = text.replace(SEPARATOR, "\n")
    n = max(1, len(plain) // 3)
    return _user_subject(model, hooks, tokenizer=TokenizerAdapter(tok), batches=batches,
                         texts=[plain[i * n:(i + 1) * n] for i in range(3)], prompts=list(STORY_PROMPTS),
                         vocab_size=cfg.vocab_size, bos_id=tok.token_to_id(SEPARATOR), history=history,
                         layers=layers, skip={}, block_size=cfg.block_size)


def _user_subject(model: torch.nn.Module, hooks: Hooks, *, tokenizer, batches: list, texts: list[str] | None,
                  prompts: list[str] | None, vocab_size: int, bos_id: int | None, history: History | None,
                  layers: str | None, skip: dict, block_size: int, device: str | None = None) -> Subject:
    """The one Subject builder for the user's model, whichever door it came through: their hooks where
    given (a missing one SKIPs its probe, Hooks.skips), else a generic full-forward decoder (prefixed
    with `bos_id` when the training rows start with it)."""
    generate = hooks.generate
    if generate is None:
        generate = full_forward_generate(block_size)
        if bos_id is not None:
            generate = _bos_generate(generate, bos_id)
    return Subject(
        model=model, tokenizer=tokenizer, batches=batches, texts=texts, prompts=prompts, vocab_size=vocab_size,
        fresh_model=hooks.fresh_model, sampler=hooks.sampler, generate=generate,
        incremental_logits=hooks.incremental_logits, context=block_size, history=history or History(),
        layer_pattern=layers,
        skip={**hooks.skips(), **skip}, device=device or str(next(model.parameters()).device),
        inference_model=hooks.inference_model(model) if hooks.inference_model is not None else None)


def _bos_generate(generate, bos_id: int):
    """generate(model, idx, n) with <bos> in front, as the task's training rows start."""
    def gen(model, idx, n):
        bos = torch.full((idx.shape[0], 1), bos_id, dtype=idx.dtype, device=idx.device)
        return generate(model, torch.cat([bos, idx], dim=1), n)[:, 1:]
    return gen


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
        raise UserModelError("no quantized layers found: none is named *BitLinear* and none applies a ternary "
                             "weight to one-hot inputs, so the model may simply not be quantized (full precision); "
                             "if it is, name its layers with --layers REGEX (over module names, e.g. 'proj|fc')")
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
    if text is None:
        for name in ("repetition", "gibberish", "sample_likelihood"):
            skip[name] = "no sample text: give --text FILE (the model's training text) to judge its samples"
        skip["label_offset"] = "no text: on random ids no offset can be learned; give --text FILE to check the labels"
    if text is not None:
        facts.update(learned_gap(model, batches, vocab))
    subject = _user_subject(model, Hooks.from_factory(um.extras), tokenizer=tok, batches=batches, texts=texts,
                            prompts=prompts_from(plain) if plain is not None else None, vocab_size=vocab,
                            bos_id=None, history=None, layers=layers, skip=skip, block_size=block, device=device)
    return subject, facts
