"""Tensor probes: what a checkpoint's tensors alone say, without the model code.

    Subject(model=None, tensors=state_dict)   # run_probes then runs only these

Used by `bitcheck diagnose` on a foreign state dict or safetensors file. Three checks:
- `tensor_nonfinite`: any NaN/Inf in any floating tensor, named.
- `latent_weights`: which 2-D float weights look like BitLinear latents (every `*.weight` matrix
  except embeddings, heads and norms, by name), their absmean-ternary distribution and scale, and
  dead rows (output units whose codes are all zero, so they never fire).
- `packed_layout`: the Hugging Face BitNet packed layout (a uint8 weight holding four 2-bit codes
  along the output dimension, plus `weight_scale`): every code must be 0, 1 or 2 (-1, 0, +1), and
  the scales must follow one convention. A scale below 1 reads as mean|W| (multiply), above 1 as
  1/mean|W| (divide): latent weights of BitNets have mean|W| well below 1 (our tiny models: 0.016-0.032
  after 30 and 400 steps; init std 0.02 gives 0.016), so the two readings are far apart. Mixing them across layers is
  a known cause of garbage output from packed inference.
"""
from __future__ import annotations

import re

import torch

from probes import reference as ref
from probes.core import SKIP, Measurement, Subject, Threshold, probe

# The module names of 2-D weights that stay full precision in b1.58 (embeddings, the head, norms), as
# nanoGPT, Llama/HF and Meta's checkpoints spell them; matched against the layer's own (last) name.
FULL_PRECISION = re.compile(r"embed\w*|embeddings|wte|wpe|tok_embeddings|lm_head|head|output|\w*norm\w*|ln_\w*",
                            re.IGNORECASE)

NONFINITE = Threshold("nonfinite_tensors", warn=None, fail=0, source="healthy checkpoints: always 0")
# Zero share of the absmean codes per layer: as ternary_distribution (healthy 0.32-0.385 after
# training; a collapsed layer 0.99998).
ZERO_SHARE = Threshold("max_zero_share", warn=0.75, fail=0.9, source="healthy 0.32-0.385; collapse 0.99998")
# Dead rows: output units whose codes are all zero. Healthy trained tiny models: 0 (a row of 128
# codes with 37% zeros is all-zero with probability 0.37^128); collapse: every row.
DEAD_ROWS = Threshold("max_dead_row_share", warn=0.0, fail=0.25, source="healthy 0; collapse 1.0")
BAD_CODES = Threshold("invalid_codes", warn=None, fail=0, source="2-bit code 3 is not a ternary value")
MIXED = Threshold("scale_conventions", warn=None, fail=1, source="more than one convention across layers")


def _float_tensors(s: Subject) -> dict[str, torch.Tensor]:
    return {k: v for k, v in (s.tensors or {}).items() if isinstance(v, torch.Tensor)}


@probe("tensor_nonfinite", branch="numerics", needs=("tensors",), kind="tensors",
       catches="NaN/Inf stored in the weights",
       fails_when="any tensor",
       measured="0 vs the planted tensor, named")
def tensor_nonfinite(s: Subject):
    """Any NaN/Inf in the checkpoint's floating tensors (named)."""
    bad = [k for k, v in _float_tensors(s).items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    msg = f"non-finite values in {len(bad)} tensors: {', '.join(bad[:5])}" if bad else "all tensors finite"
    return Measurement(len(bad), [NONFINITE], msg,
                       "Find the step where they appeared (the loss curve) and the layer that produced them.",
                       details={"tensors": bad})


def latent_candidates(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """2-D floating `*.weight` matrices that are not embeddings, heads or norms."""
    def layer_name(key: str) -> str:
        parts = key.split(".")
        return parts[-2] if len(parts) > 1 else ""
    return {k: v for k, v in tensors.items()
            if v.dim() == 2 and v.is_floating_point() and k.endswith(".weight")
            and not FULL_PRECISION.fullmatch(layer_name(k))}


@probe("latent_weights", branch="quantization", needs=("tensors",), kind="tensors",
       catches="collapsed layers, dead output units; notes weights stored already ternary",
       fails_when="zero share > 0.9 or dead-row share > 0.25 (WARN > 0)",
       measured="zero share 0.31, dead rows 0 vs 0.999 / 1.0 (outlier collapse)")
def latent_weights(s: Subject):
    """Which 2-D weights look like BitLinear latents; per layer the absmean ternary shares, the
    scale mean|W|, and dead rows. FAIL on collapse (nearly all zero codes, or many dead rows)."""
    layers = latent_candidates(_float_tensors(s))
    if not layers and _packed(s.tensors or {}):
        return Measurement(message="no float latent weights: the layers are stored packed (see packed_layout)",
                           status=SKIP)
    if not layers:
        return Measurement(None, [ZERO_SHARE], "no 2-D latent weights found: not a BitNet, or "
                           "its layers are named as embeddings/norms")
    table = {}
    for name, w in layers.items():
        codes, scale = ref.ternary_codes(w.detach().double())
        n = codes.numel()
        table[name] = {"scale": float(scale), "minus": (codes < 0).sum().item() / n, "zero": (codes == 0).sum().item() / n,
                       "plus": (codes > 0).sum().item() / n,
                       "dead_rows": (codes == 0).all(dim=1).double().mean().item(),
                       "stored_ternary": int(torch.unique(w.abs()[w != 0]).numel()) <= 1}
    zero = max(t["zero"] for t in table.values())
    dead = max(t["dead_rows"] for t in table.values())
    worst = max(table, key=lambda k: (table[k]["dead_rows"], table[k]["zero"]))
    stored = sum(t["stored_ternary"] for t in table.values())
    return Measurement({"max_zero_share": zero, "max_dead_row_share": dead},
                       [ZERO_SHARE, DEAD_ROWS],
                       f"{len(table)} latent weights; largest zero share {zero:.2f}, dead rows {dead:.0%} ({worst})"
                       + (f"; {stored} already stored ternary" if stored else ""),
                       "Collapsed layers: the latent weights shrank below half their mean|W|; check weight decay on "
                       "the latents and the quantizer's scale.", details={"layers": table},
                       values={"max_zero_share": zero, "max_dead_row_share": dead})


def _packed(tensors: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.dtype == torch.uint8
            and v.dim() == 2 and k.endswith("weight")}


def unpack_hf(packed: torch.Tensor) -> torch.Tensor:
    """HF BitNet packed layout -> 2-bit codes 0..3, (rows*4, ...): byte row r holds, in bits 2i..2i+1,
    the code of output row i * rows + r. Codes 0, 1, 2 mean -1, 0, +1; 3 is invalid."""
    rows = packed.shape[0]
    p = packed.to(torch.int32)
    return torch.cat([(p >> (2 * i)) & 3 for i in range(4)], dim=0)[: rows * 4]


@probe("packed_layout", branch="quantization", needs=("tensors",), kind="tensors",
       catches="invalid 2-bit codes; `weight_scale` conventions mixed across layers",
       fails_when="any code 3; two conventions",
       measured="one convention (either) vs a half-and-half mix")
def packed_layout(s: Subject):
    """HF packed weights (uint8, four 2-bit codes per byte, plus weight_scale): every code a valid
    ternary value, and one scale convention (mean|W| below 1, 1/mean|W| above 1) across layers."""
    tensors = s.tensors or {}
    packed = _packed(tensors)
    if not packed:
        return Measurement(message="no packed uint8 weights in this checkpoint", status=SKIP)
    table, invalid, conventions = {}, 0, set()
    for name, p in packed.items():
        codes = unpack_hf(p)
        bad = int((codes == 3).sum())
        invalid += bad
        scale_t = tensors.get(name[: -len("weight")] + "weight_scale")
        scale = float(scale_t.float().flatten()[0]) if isinstance(scale_t, torch.Tensor) else None
        conv = None if scale is None else ("mean|W| (multiply)" if scale < 1 else "1/mean|W| (divide)")
        if conv:
            conventions.add(conv)
        n = codes.numel()
        table[name] = {"invalid_codes": bad, "weight_scale": scale, "convention": conv,
                       "minus": (codes == 0).sum().item() / n, "zero": (codes == 1).sum().item() / n,
                       "plus": (codes == 2).sum().item() / n}
    n_conv = len(conventions)
    by_conv = {c: sum(t["convention"] == c for t in table.values()) for c in conventions}
    missing = [k for k, t in table.items() if t["weight_scale"] is None]
    msg = (f"{len(table)} packed layers; invalid codes {invalid}; scale convention "
           + (", ".join(f"{c}: {k} layers" for c, k in by_conv.items()) or "unknown (no weight_scale)")
           + (f"; {len(missing)} layers lack weight_scale" if missing else ""))
    return Measurement({"invalid_codes": invalid, "scale_conventions": n_conv}, [BAD_CODES, MIXED], msg,
                       "Repack: codes must be ternary + 1 in {0, 1, 2}; store every weight_scale in the convention "
                       "your inference BitLinear expects (HF's packed BitLinear divides by it: 1/mean|W|).",
                       details={"layers": table, "conventions": by_conv},
                       values={"invalid_codes": invalid, "scale_conventions": n_conv})
