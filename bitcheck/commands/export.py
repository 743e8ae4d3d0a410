"""`bitcheck export CHECKPOINT --out DIR`: the deployable files of a trained BitNet.

    manifest = export("runs/.../checkpoint.pt", "exported/")   # model.safetensors + manifest.json
    model = load_packed("exported/")                            # BitNet with PackedBitLinear layers

Every BitLinear's ternary codes are packed 2 bits each in the Hugging Face BitNet layout (uint8,
four codes per byte along the output dimension, code + 1 in bits 2i..2i+1 for output row
i * rows + r) with `weight_scale` = 1/mean|W| (the convention HF's packed BitLinear divides by, and
the one the manifest names). Embeddings and norms stay float32. The packed inference path itself
(`PackedBitLinear`: int8 activations times ternary codes accumulated exactly, then one division by
both scales) lives with the model in bitcheck/bitnet/model.py; the parity probe (probes/parity.py) holds
it to the fake-quantized training forward.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.model import BitLinear, BitNet, PackedBitLinear, pack_codes, ternary
from bitcheck.bitnet.rundir import RunDirError, atomic_write_text, empty_output_dir
from bitcheck.errors import UserError
from bitcheck.judge.subjects import parity_subject
from probes import run_probes

LAYOUT = "hf-bitnet-2bit"  # uint8 (ceil(out / 4), in); code + 1 of row i * rows + r in bits 2i..2i+1
SCALE_CONVENTION = "1/mean|W| (divide)"


class ExportError(UserError):
    """A user mistake about the input or output: one line, exit 2."""


def export(checkpoint: str | Path, out: str | Path) -> dict:
    """Write DIR/model.safetensors and DIR/manifest.json; returns the manifest."""
    return _export(checkpoint, out)[0]


def export_checked(checkpoint: str | Path, out: str | Path) -> dict:
    """Export, then run the parity probe of the written files against the checkpoint's model on a
    seeded batch of tokens: {"manifest", "parity"} (parity is a probe result dict)."""
    manifest, model = _export(checkpoint, out)
    packed = load_packed(out)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (8, min(64, model.config.block_size)), generator=g)
    parity = run_probes(parity_subject(model, packed, [(x, x)]), names=["inference_parity"])[0].to_dict()
    return {"manifest": manifest, "parity": parity}


def _export(checkpoint: str | Path, out: str | Path) -> tuple[dict, BitNet]:
    """(manifest, the checkpoint's model): the files are written, the checkpoint is read once."""
    from safetensors.torch import save_file

    try:
        ckpt = ckpts.load(checkpoint)
        model = ckpts.build_model(ckpt, str(checkpoint))
    except ckpts.CheckpointError as e:
        raise ExportError(f"{e}; export takes a checkpoint written by bitcheck") from None
    try:
        out = empty_output_dir(out)
    except RunDirError as e:
        raise ExportError(str(e)) from None
    tensors, layers = {}, {}
    quantized = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, BitLinear)}
    for key, value in model.state_dict().items():
        if key in quantized:
            codes, scale = ternary(value)
            tensors[key] = pack_codes(codes)
            tensors[key[:-len("weight")] + "weight_scale"] = (1.0 / scale).reshape(1).float()
            layers[key[:-len(".weight")]] = {"out_features": value.shape[0], "in_features": value.shape[1],
                                             "mean_abs": float(scale)}
        else:
            tensors[key] = value.detach().float().contiguous()
    save_file(tensors, str(out / "model.safetensors"))
    packed_bytes = (out / "model.safetensors").stat().st_size
    fp32_bytes = sum(v.numel() * 4 for v in model.state_dict().values())
    manifest = {
        "format": "bitcheck-packed-1", "layout": LAYOUT, "weight_scale_convention": SCALE_CONVENTION,
        "model_config": ckpt.model_config.to_dict(), "tokenizer": json.loads(ckpt.tokenizer or "null"),
        "task": ckpt.task or None, "step": ckpt.step, "layers": layers,
        "bytes": {"packed_file": packed_bytes, "fp32_weights": fp32_bytes,
                  "checkpoint_file": Path(checkpoint).stat().st_size,
                  "ratio_vs_fp32": round(packed_bytes / fp32_bytes, 4)},
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest, model.eval()


def load_packed(folder: str | Path) -> BitNet:
    """The exported model, rebuilt with PackedBitLinear layers (inference only)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        tensors = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{folder} is not a bitcheck export ({e})") from None
    model = BitNet(ModelConfig.from_dict(manifest["model_config"]))
    for name, spec in manifest["layers"].items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, PackedBitLinear(tensors.pop(f"{name}.weight"), tensors.pop(f"{name}.weight_scale"),
                                               spec["in_features"], spec["out_features"]))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith((".codes", ".weight_scale"))]
    if missing or unexpected:
        raise ExportError(f"{folder}: tensors do not fit the manifest (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    return model.eval()
