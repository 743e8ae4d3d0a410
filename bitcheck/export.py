"""`bitcheck export CHECKPOINT --out DIR`: the deployable form of a trained BitNet, and its
integer inference path.

    manifest = export("runs/.../checkpoint.pt", "exported/")   # model.safetensors + manifest.json
    model = load_packed("exported/")                            # BitNet with PackedBitLinear layers

Every BitLinear's ternary codes are packed 2 bits each in the Hugging Face BitNet layout (uint8,
four codes per byte along the output dimension, code + 1 in bits 2i..2i+1 for output row
i * rows + r) with `weight_scale` = 1/mean|W| (the convention HF's packed BitLinear divides by, and
the one the manifest names). Embeddings and norms stay float32. `PackedBitLinear` is the packed
inference path: int8 activations times ternary codes accumulated exactly (float64 holds every
partial sum of 127 * in_features exactly), then one division by both scales. The parity probe
(probes/parity.py) holds it to the fake-quantized training forward.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn as nn

from bitcheck.config import ModelConfig
from bitcheck.model import QUANT_EPS, BitLinear, BitNet, ternary_codes
from bitcheck.rundir import RunDirError, atomic_write_text, empty_output_dir, load_checkpoint

LAYOUT = "hf-bitnet-2bit"  # uint8 (ceil(out / 4), in); code + 1 of row i * rows + r in bits 2i..2i+1
SCALE_CONVENTION = "1/mean|W| (divide)"


class ExportError(ValueError):
    """A user mistake about the input or output: one line, exit 2."""


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """Ternary codes (out, in) in {-1, 0, 1} -> uint8 (ceil(out / 4), in) in the HF layout; rows
    past `out` are padded with code 0."""
    out_rows = codes.shape[0]
    rows = -(-out_rows // 4)
    padded = torch.zeros(rows * 4, codes.shape[1], dtype=torch.int32, device=codes.device)
    padded[:out_rows] = codes.to(torch.int32) + 1
    packed = torch.zeros(rows, codes.shape[1], dtype=torch.int32, device=codes.device)
    for i in range(4):
        packed |= padded[i * rows:(i + 1) * rows] << (2 * i)
    return packed.to(torch.uint8)


def unpack_codes(packed: torch.Tensor, out_rows: int) -> torch.Tensor:
    p = packed.to(torch.int32)
    codes = torch.cat([(p >> (2 * i)) & 3 for i in range(4)], dim=0)[:out_rows] - 1
    return codes.to(torch.int8)


def ternary(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int8, mean|W| clamped): BitLinear's own rounding (model.ternary_codes)."""
    codes, scale = ternary_codes(weight.detach())
    return codes.to(torch.int8), scale


class PackedBitLinear(nn.Module):
    """Inference-only BitLinear from packed codes: per-token int8 activations, exact integer
    accumulation, then y = acc / (activation factor * weight_scale)."""

    def __init__(self, packed: torch.Tensor, weight_scale: torch.Tensor, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("codes", unpack_codes(packed, out_features))  # (out, in) int8
        self.register_buffer("weight_scale", weight_scale.reshape(()).float())  # 1 / mean|W|

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=QUANT_EPS)  # (..., 1)
        q = (x * factor).round().clamp(-128, 127)  # int8 values, kept in float
        acc = q.double() @ self.codes.double().T  # exact: |acc| <= 128 * in_features
        return (acc / (factor.double() * self.weight_scale.double())).to(x.dtype)


def packed_model(model: BitNet) -> BitNet:
    """A copy of `model` whose BitLinear layers are PackedBitLinear built from its own weights:
    the in-memory equivalent of export + load_packed, for the parity probe."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BitLinear):
                codes, scale = ternary(child.weight)
                setattr(module, child_name, PackedBitLinear(pack_codes(codes), 1.0 / scale,
                                                            child.in_features, child.out_features))
    return twin.eval()


def export(checkpoint: str | Path, out: str | Path) -> dict:
    """Write DIR/model.safetensors and DIR/manifest.json; returns the manifest."""
    return _export(checkpoint, out)[0]


def export_checked(checkpoint: str | Path, out: str | Path) -> dict:
    """Export, then run the parity probe of the written files against the checkpoint's model on a
    seeded batch of tokens: {"manifest", "parity"} (parity is a probe result dict)."""
    from bitcheck.diagnostics import LogitsOnly
    from probes import Subject, run_probes

    manifest, model = _export(checkpoint, out)
    packed = load_packed(out)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (8, min(64, model.config.block_size)), generator=g)
    parity = run_probes(Subject(model=LogitsOnly(model), inference_model=LogitsOnly(packed), batches=[(x, x)]),
                        names=["inference_parity"])[0].to_dict()
    return {"manifest": manifest, "parity": parity}


def _export(checkpoint: str | Path, out: str | Path) -> tuple[dict, BitNet]:
    """(manifest, the checkpoint's model): the files are written, the checkpoint is read once."""
    from safetensors.torch import save_file

    try:
        ckpt = load_checkpoint(checkpoint)
    except RunDirError as e:
        raise ExportError(f"{e}; export takes a checkpoint written by bitcheck") from None
    try:
        out = empty_output_dir(out)
    except RunDirError as e:
        raise ExportError(str(e)) from None
    cfg = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
    model = BitNet(cfg)
    model.load_state_dict(ckpt["model_state_dict"])
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
        "model_config": json.loads(ckpt["model_config"]), "tokenizer": json.loads(ckpt.get("tokenizer") or "null"),
        "task": json.loads(ckpt.get("task") or "null"), "step": int(ckpt["step"]), "layers": layers,
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
