"""Property tests of the b1.58 quantizers and of BitLinear against the independent reference."""
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from bitcheck.bitnet.model import BitLinear, activation_quant, weight_quant
from probes import reference as ref
from tests.strategies import generic_matrices, matrices


def _scale(w):
    return w.abs().mean().clamp(min=1e-5)


@given(matrices())
def test_weights_are_ternary_times_one_scale(w):
    """Quantized weights are {-1, 0, 1} times a single scale equal to mean|W| (eps 1e-5)."""
    wq = weight_quant(w)
    s = _scale(w)
    codes = wq / s
    assert torch.all((codes == -1) | (codes == 0) | (codes == 1)), f"non-ternary codes {codes.unique()}"
    assert torch.isclose(s, torch.tensor(max(w.abs().mean().item(), 1e-5)), rtol=1e-6)


@given(matrices())
def test_ternary_codes_are_idempotent(w):
    """Re-quantizing quantized weights gives the same codes (the scale may change; the codes may not)."""
    wq = weight_quant(w)
    codes1 = (wq / _scale(w)).round()
    codes2 = (weight_quant(wq) / _scale(wq)).round()
    assert torch.equal(codes1, codes2), f"codes changed: {codes1} -> {codes2}"


@given(matrices())
def test_weight_quant_preserves_sign(w):
    """A weight's code is 0 or has the weight's sign."""
    wq = weight_quant(w)
    assert torch.all((wq == 0) | (torch.sign(wq) == torch.sign(w)))


@given(matrices(zero_rows=True))
def test_zero_rows_stay_finite(x):
    """An all-zero weight tensor or activation row quantizes to finite values (no 0/0)."""
    assert torch.isfinite(activation_quant(x)).all()
    assert torch.isfinite(weight_quant(torch.zeros_like(x))).all()
    assert torch.equal(activation_quant(torch.zeros_like(x)), torch.zeros_like(x))


@given(matrices())
def test_activation_error_within_half_step(x):
    """Per token, |x - q(x)| <= max(max|x|, eps) / 254 (half an int8 step), up to float32 rounding."""
    err = (x - activation_quant(x)).abs()
    half_step = x.abs().amax(-1, keepdim=True).clamp(min=1e-5) / 254
    assert torch.all(err <= half_step * (1 + 1e-5) + 1e-12), f"max excess {(err - half_step).max()}"


@given(matrices())
def test_activation_codes_are_int8(x):
    """Quantized activations times 127/max|x| are integers in [-128, 127]."""
    inv = 127.0 / x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
    codes = activation_quant(x) * inv
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.min() >= -128 - 1e-3 and codes.max() <= 127 + 1e-3


@given(matrices(max_rows=6, max_cols=12), st.integers(1, 6))
def test_bitlinear_is_linear_of_quantized(x, out_features):
    """BitLinear(x) == F.linear(act_quant(x), weight_quant(W)), up to the STE's float addition
    (x + (q - x) may differ from q in the last bit)."""
    layer = BitLinear(x.shape[1], out_features)
    y, want = layer(x), F.linear(activation_quant(x), weight_quant(layer.weight))
    assert torch.allclose(y, want, rtol=1e-5, atol=1e-5 * (want.abs().max().item() + 1e-12)), (y - want).abs().max()


@given(generic_matrices(), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_bitlinear_matches_reference(x, out_features, seed):
    """Our BitLinear's forward and both STE gradients agree with probes/reference.py."""
    layer = BitLinear(x.shape[1], out_features)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(seed)))
    x = x.clone().requires_grad_(True)
    y = layer(x)
    want = ref.bitlinear(x, layer.weight)
    tol = 1e-4 * (want.abs().max().item() + 1e-6)
    assert torch.allclose(y, want, atol=tol, rtol=1e-4), f"max diff {(y - want).abs().max()}"
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1))
    y.backward(g)
    gx, gw = ref.ste_grads(x, layer.weight, g)
    assert torch.allclose(x.grad, gx, atol=1e-4 * (gx.abs().max().item() + 1e-6), rtol=1e-4)
    assert torch.allclose(layer.weight.grad, gw, atol=1e-4 * (gw.abs().max().item() + 1e-6), rtol=1e-4)


@given(matrices())
def test_ste_gradient_is_identity(w):
    """Through the straight-through estimator, d(sum(g * q(w)))/dw == g for both quantizers."""
    for quant in (weight_quant, activation_quant):
        w_ = w.clone().requires_grad_(True)
        g = torch.arange(w.numel(), dtype=torch.float32).reshape(w.shape)
        (w_ + (quant(w_) - w_).detach()).mul(g).sum().backward()
        assert torch.equal(w_.grad, g)


@given(generic_matrices(), st.integers(1, 8))
def test_reference_integer_path_equals_fake_quant(x, out_features):
    """The reference's integer (packed-inference) path equals its fake-quantized path."""
    w = torch.randn(out_features, x.shape[1], generator=torch.Generator().manual_seed(out_features))
    a, b = ref.bitlinear(x, w), ref.bitlinear_integer(x, w)
    assert torch.allclose(a, b, atol=1e-5 * (a.abs().max().item() + 1e-6), rtol=1e-5)


def test_ties_round_half_to_even():
    """Exact .5 ties: w / mean|W| == 0.5 rounds to 0 (torch.round is half-to-even) in both paths."""
    w = torch.tensor([[1.0, 3.0]])  # mean 2: codes round(0.5)=0, round(1.5)=2 -> clamp 1
    assert torch.equal(weight_quant(w), torch.tensor([[0.0, 2.0]]))
    codes, gamma = ref.ternary_codes(w)
    assert codes.tolist() == [[0, 1]] and gamma.item() == 2.0
