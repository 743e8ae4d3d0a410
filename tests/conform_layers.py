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
