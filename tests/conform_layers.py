"""BitLinear variants with one hidden bug each, for `bitcheck conform` tests (importable by path:
`tests.conform_layers:InvertedScale`). Each is what a user's layer looks like when it has that bug."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _wq(w, eps=1e-5):
    s = w.abs().mean().clamp(min=eps)
    return (w / s).round().clamp(-1, 1) * s


def _aq(x, eps=1e-5):
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=eps)
    return (x * s).round().clamp(-128, 127) / s


class GoodBitLinear(nn.Linear):
    """A correct b1.58 layer written independently of bitcheck's."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        return F.linear(x + (_aq(x) - x).detach(), self.weight + (_wq(self.weight) - self.weight).detach())


class NoSTE(GoodBitLinear):
    """Quantizes the weight's data outside autograd: the latent weight never gets a gradient."""

    def forward(self, x):
        return F.linear(x + (_aq(x) - x).detach(), _wq(self.weight.detach()))


class InvertedScale(GoodBitLinear):
    """Stores/uses weight_scale = 1/mean|W|: codes times the inverse scale."""

    def forward(self, x):
        s = self.weight.abs().mean().clamp(min=1e-5)
        wq = (self.weight / s).round().clamp(-1, 1) / s
        return F.linear(x + (_aq(x) - x).detach(), self.weight + (wq - self.weight).detach())


class NoActQuant(GoodBitLinear):
    """Ternary weights but full-precision activations."""

    def forward(self, x):
        return F.linear(x, self.weight + (_wq(self.weight) - self.weight).detach())


class PerTensorActQuant(GoodBitLinear):
    """One activation scale for the whole batch instead of one per token."""

    def forward(self, x):
        s = 127.0 / x.abs().max().clamp(min=1e-5)
        xq = (x * s).round().clamp(-128, 127) / s
        return F.linear(x + (xq - x).detach(), self.weight + (_wq(self.weight) - self.weight).detach())


class NoEps(GoodBitLinear):
    """absmax without the eps floor: an all-zero row divides 0 by 0."""

    def forward(self, x):
        s = 127.0 / x.abs().amax(dim=-1, keepdim=True)
        xq = (x * s).round().clamp(-128, 127) / s
        return F.linear(x + (xq - x).detach(), self.weight + (_wq(self.weight) - self.weight).detach())


class FullPrecision(GoodBitLinear):
    """Quantization forgotten: a plain linear layer."""

    def forward(self, x):
        return F.linear(x, self.weight)


class Noisy(GoodBitLinear):
    """Adds noise in forward (a dropout-like leftover): not deterministic."""

    def forward(self, x):
        return super().forward(x) + 1e-3 * torch.randn(x.shape[0], self.out_features)


def make_good(in_features, out_features):
    """A factory, as `--factory tests.conform_layers:make_good` takes it."""
    return GoodBitLinear(in_features, out_features)


# ---- #15: layers that deviate as real community and library layers do (each written independently) -----

class WithBias(GoodBitLinear):
    """A correct b1.58 layer that also adds a bias (HF AutoBitLinear's default bias=True)."""

    def __init__(self, in_features, out_features):
        nn.Linear.__init__(self, in_features, out_features, bias=True)
        with torch.no_grad():
            self.bias.uniform_(0.5, 1.0)

    def forward(self, x):
        return super().forward(x) + self.bias


class BinaryCentred(GoodBitLinear):
    """b1 (BitNet 2023): weights sign(W - mean W) times mean|W|, no zero codes."""

    def forward(self, x):
        w = self.weight
        wb = torch.where(w - w.mean() >= 0, 1.0, -1.0) * w.abs().mean()
        return F.linear(x + (_aq(x) - x).detach(), w + (wb - w).detach())


class InLayerNorm(GoodBitLinear):
    """RMSNorm (unit gain) on the input inside the layer, before activation quantization."""

    def forward(self, x):
        return super().forward(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class PerTensorAct128(GoodBitLinear):
    """One activation scale for the whole tensor, with 128 levels instead of 127."""

    def forward(self, x):
        s = 128.0 / x.abs().max().clamp(min=1e-5)
        xq = (x * s).round().clamp(-128, 127) / s
        return F.linear(x + (xq - x).detach(), self.weight + (_wq(self.weight) - self.weight).detach())


class GradScaledByMeanW(GoodBitLinear):
    """The STE written on the codes, then times a detached scale: the weight gradient is mean|W| x the STE's."""

    def forward(self, x):
        s = self.weight.abs().mean().clamp(min=1e-5).detach()
        codes = (self.weight / s).round().clamp(-1, 1)
        return F.linear(x + (_aq(x) - x).detach(), (self.weight + (codes - self.weight).detach()) * s)


class HalfUpRounding(GoodBitLinear):
    """Rounds |W| / mean|W| half away from zero (0.5 -> 1) instead of to even (0.5 -> 0)."""

    def forward(self, x):
        s = self.weight.abs().mean().clamp(min=1e-5)
        v = self.weight / s
        wq = (torch.sign(v) * torch.floor(v.abs() + 0.5)).clamp(-1, 1) * s
        return F.linear(x + (_aq(x) - x).detach(), self.weight + (wq - self.weight).detach())


class SmallRowsUnclamped(GoodBitLinear):
    """Dequantizes with a scale floored at 1.27e-3 = 127 x eps where quantization floors at eps: rows with
    max|x| below 1.27e-3 come out too small."""

    def forward(self, x):
        m = x.abs().amax(dim=-1, keepdim=True)
        q = (x * 127.0 / m.clamp(min=1e-5)).round().clamp(-128, 127)
        xq = q * m.clamp(min=1e-5) / 127.0 * (m / m.clamp(min=1.27e-3))  # below 1.27e-3: shrunk by m / 1.27e-3
        return F.linear(x + (xq - x).detach(), self.weight + (_wq(self.weight) - self.weight).detach())


class PackedOnly(nn.Module):
    """An inference-only layer: 2-bit codes packed in uint8 and a scale, no latent weight."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.register_buffer("packed", torch.zeros((out_features + 3) // 4, in_features, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(1))

    def forward(self, x):
        return x.new_zeros(*x.shape[:-1], self.packed.shape[0] * 4)


class Only3D(GoodBitLinear):
    """A correct layer whose forward insists on (B, T, in)."""

    def forward(self, x):
        if x.dim() != 3:
            raise ValueError(f"expected (B, T, C) input, got {tuple(x.shape)}")
        return super().forward(x)


class NeedsConfig(GoodBitLinear):
    """Built from a config object, not (in_features, out_features)."""

    def __init__(self, config):
        super().__init__(config["in"], config["out"])


def make_needs_config(in_features, out_features):
    return NeedsConfig({"in": in_features, "out": out_features})


class PerRowScale(GoodBitLinear):
    """One weight scale per output row (per-channel mean|W|) instead of one per tensor."""

    def forward(self, x):
        s = self.weight.abs().mean(dim=1, keepdim=True).clamp(min=1e-5)
        wq = (self.weight / s).round().clamp(-1, 1) * s
        return F.linear(x + (_aq(x) - x).detach(), self.weight + (wq - self.weight).detach())


class WithDropout(GoodBitLinear):
    """A correct layer with dropout on its input: random in training mode, exact in eval."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return super().forward(self.drop(x))


def make_bf16(in_features, out_features):
    """A correct layer kept in bfloat16."""
    return GoodBitLinear(in_features, out_features).to(torch.bfloat16)


class WholeProductSTE(GoodBitLinear):
    """The straight-through trick wrapped around the whole product: the input gradient uses the latent W."""

    def forward(self, x):
        y = F.linear(x, self.weight)
        return y + (F.linear(_aq(x), _wq(self.weight)) - y).detach()
