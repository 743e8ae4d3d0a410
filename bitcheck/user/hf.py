"""A Hugging Face model folder (`config.json` + safetensors) as `bitcheck diagnose ./model-dir` reads it.

    factory = folder_factory("./model-dir")      # factory(path) -> {"model", "tokenizer", "sampler", ...}
    tensors = folder_tensors("./model-dir")      # the folder's stored tensors, for weights_loaded

The model is loaded by transformers itself (`AutoModelForCausalLM.from_pretrained`, which applies a
BitNet `quantization_config`), so the probes judge what a user of the folder runs: transformers' own
KV cache (`past_key_values`) and `generate`, and a sampler built from its logits warpers (temperature,
top-k, top-p, min-p, repetition penalty). Needs the optional extra: `pip install bitcheck[hf]`
(transformers, and accelerate, which transformers requires to load BitNet quantization configs).
A BitNet config without a quantization config loads as a full-precision model: that is said in one
line (exit 2), since there is no quantized layer to probe.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch

from bitcheck.errors import UserError, first_line

BITNET_TYPES = ("bitnet",)  # model_type values of BitNet architectures in transformers


class HFError(UserError):
    """A folder transformers cannot load as bitcheck needs it: one line, exit 2."""


def is_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def read_config(path: str | Path) -> dict:
    try:
        return json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise HFError(f"{path}/config.json is not readable JSON ({first_line(e)})") from None


def folder_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's *.safetensors files (shards merged)."""
    from safetensors.torch import load_file
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def folder_factory(path: str | Path):
    """factory(path) -> the dict `bitcheck diagnose --model` takes, built from the folder by transformers."""
    config = read_config(path)
    if config.get("model_type") in BITNET_TYPES and not config.get("quantization_config"):
        raise HFError(f"{path}: a BitNet config without quantization_config: transformers builds it in full precision "
                      "(plain nn.Linear), so there is no quantized layer to probe; add the quantization_config the "
                      "model was trained with (e.g. BitNetQuantConfig(linear_class='autobitlinear', "
                      "quantization_mode='online'))")
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise HFError(f"{path} is a Hugging Face model folder: reading it needs `pip install bitcheck[hf]` "
                      "(transformers and accelerate)") from None

    def factory(folder: str) -> dict:
        from transformers import AutoModelForCausalLM
        # transformers wraps its BitNet quantizers in torch.compile, which recompiles for every new shape;
        # the probes call many shapes once each, so eager is what finishes (a one-shot command)
        torch.compiler.set_stance("force_eager")
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        extras = {"model": model, "sampler": hf_sampler, "generate": hf_generate(model),
                  "incremental_logits": cached_logits,
                  "block_size": int(getattr(model.config, "max_position_embeddings", 0) or 2048)}
        if (Path(folder) / "tokenizer.json").is_file():
            from tokenizers import Tokenizer
            extras["tokenizer"] = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        return extras
    factory.__name__ = "transformers.AutoModelForCausalLM"
    return factory


def cached_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """Logits of idx (B, T) decoded one token at a time through transformers' KV cache."""
    past, out = None, []
    with torch.no_grad():
        for t in range(idx.shape[1]):
            res = model(idx[:, t:t + 1], past_key_values=past, use_cache=True)
            past = res.past_key_values
            out.append(res.logits)
    return torch.cat(out, dim=1)


def hf_sampler(logits: torch.Tensor, temperature: float, top_k: int | None, generator, top_p=None, min_p=None,
               repetition_penalty=None, input_ids=None) -> torch.Tensor:
    """bitcheck's sampler protocol over transformers' own logits processors, in generate's order."""
    from transformers import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )
    scores = logits.float()
    ids = input_ids if input_ids is not None else torch.zeros(scores.shape[0], 0, dtype=torch.long)
    procs = ([RepetitionPenaltyLogitsProcessor(repetition_penalty)] if repetition_penalty is not None else []) + \
        [TemperatureLogitsWarper(temperature)] + ([TopKLogitsWarper(top_k)] if top_k else []) + \
        ([TopPLogitsWarper(top_p)] if top_p is not None else []) + ([MinPLogitsWarper(min_p)] if min_p is not None else [])
    for proc in procs:
        scores = proc(ids, scores)
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)


def hf_generate(model):
    """generate(model, idx, n): transformers' generate, sampling at temperature 1 with no top-k, seeded by
    the prompt (its own KV cache and sampling loop are what is judged)."""
    def generate(m, idx: torch.Tensor, n: int) -> torch.Tensor:
        torch.manual_seed(zlib.crc32(str(idx.tolist()).encode()))
        with torch.no_grad():
            return m.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                              do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                              pad_token_id=0)
    return generate
