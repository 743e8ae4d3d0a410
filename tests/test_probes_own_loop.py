"""The probes of a user's optimizer, schedule and loop, proven both ways on exact small cases (the
training runs that plant the same bugs are tests/test_own_infrastructure.py)."""
import torch
import torch.nn as nn

from bitcheck.user.adapter import Recipe
from bitcheck.user.bisection import ReferenceBitLinear, swap_layers
from probes import Subject, run_probes
from probes.optimizer import _time_scale
from tests.user_train import UserBitNet, accumulate, accumulate_per_micro_batch

RECIPE = Recipe(lr=3e-3, weight_decay=0.1, warmup_steps=100, steps=3000)


def _schedule(applied_at, steps=range(10, 3001, 10)):
    applied = [{"step": s, **dict(zip(("lr", "weight_decay"), applied_at(s - 1)))} for s in steps]
    intended = [{"step": s, **dict(zip(("lr", "weight_decay"), RECIPE.intended(s - 1)))} for s in steps]
    return {"schedule": applied, "intended": intended, "warmup_steps": 100}


def _one(subject, name):
    return {r.name: r for r in run_probes(subject, names=[name])}[name]


def test_schedule_shape_both_ways():
    """Applied as intended: PASS. Stuck in warmup, at zero, twice as fast, weight decay on in stage 2: FAIL.
    A different but working shape (constant LR): WARN only."""
    ok = _one(Subject(model=nn.Linear(2, 2), history=_schedule(RECIPE.intended)), "schedule_shape")
    assert ok.status == "PASS" and ok.value["schedule_speed"] == 1.0
    cases = {"stuck": lambda s: (RECIPE.lr / 100, 0.1), "zero": lambda s: (0.0, 0.1),
             "fast": lambda s: RECIPE.intended(2 * s), "wd2": lambda s: (RECIPE.intended(s)[0], 0.1)}
    for name, at in cases.items():
        r = _one(Subject(model=nn.Linear(2, 2), history=_schedule(at)), "schedule_shape")
        assert r.status == "FAIL", (name, r.message)
    assert "2x fast" in _one(Subject(model=nn.Linear(2, 2), history=_schedule(cases["fast"])), "schedule_shape").message
    constant = _one(Subject(model=nn.Linear(2, 2), history=_schedule(lambda s: (RECIPE.lr, 0.1 if s < 1500 else 0))),
                    "schedule_shape")
    assert constant.status == "WARN", constant.message
    assert _time_scale([(s, RECIPE.intended(3 * s)[0]) for s in range(100, 900, 50)],
                       lambda x: RECIPE.intended(int(x))[0]) == 3.0


def test_decay_groups_both_ways():
    """Norm gains in a decaying group FAIL, an embedding alone WARNs, matrices only PASS."""
    model = UserBitNet(21, 32, 1, 4, 64, 16)
    emb = {id(model.tok.weight), id(model.pos.weight)}
    mats = [p for p in model.parameters() if p.dim() == 2 and id(p) not in emb]
    rest = [p for p in model.parameters() if p.dim() < 2]
    embs = [model.tok.weight, model.pos.weight]

    def status(groups):
        opt = torch.optim.AdamW(groups, lr=1e-3)
        return _one(Subject(model=model, history={"optimizer": opt}), "decay_groups").status
    assert status([{"params": mats, "weight_decay": 0.1}, {"params": rest + embs, "weight_decay": 0.0}]) == "PASS"
    assert status([{"params": mats + rest, "weight_decay": 0.1}, {"params": embs, "weight_decay": 0.0}]) == "FAIL"
    assert status([{"params": mats + embs, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]) == "WARN"


class Oracle(nn.Module):
    """Predicts the token k positions ahead of each input position, from the full sequence."""

    def __init__(self, full, k, V):
        super().__init__()
        self.full, self.k, self.V, self.w = full, k, V, nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        T = idx.shape[1]
        return torch.nn.functional.one_hot(self.full[:, self.k:self.k + T], self.V).float() * 8 + self.w


def test_label_offset_both_ways():
    """A model that predicts the next token PASSes; one that learned t+2 (labels shifted twice) or its own
    input (labels not shifted) FAILs naming the offset; a model with no preference PASSes."""
    V, T = 11, 12
    full = torch.randint(0, V, (4, T + 4), generator=torch.Generator().manual_seed(0))
    x, y = full[:, :T], full[:, 1:T + 1].clone()
    y[:, :4] = -1  # a prompt without loss
    for k, status in ((1, "PASS"), (2, "FAIL"), (0, "FAIL")):
        r = _one(Subject(model=Oracle(full, k, V), batches=[(x, y)]), "label_offset")
        assert r.status == status and r.value["best_offset"] == k, (k, r.message)
    assert "shifted 2 times" in _one(Subject(model=Oracle(full, 2, V), batches=[(x, y)]), "label_offset").message
    flat = _one(Subject(model=nn.Sequential(nn.Embedding(V, 4), nn.Linear(4, V)), batches=[(x, y)]), "label_offset")
    assert flat.status == "PASS"


def test_grad_accumulation_both_ways():
    """The user's accumulation over the whole batch's target count matches one large batch; averaging each
    micro-batch over its own targets does not."""
    torch.manual_seed(0)
    model = UserBitNet(21, 32, 1, 4, 64, 16)
    x = torch.randint(4, 21, (8, 16))
    y = torch.cat([x[:, 1:], x[:, :1]], 1)
    y[:, :5] = -1
    for fn, status in ((accumulate, "PASS"), (accumulate_per_micro_batch, "FAIL")):
        r = _one(Subject(model=model, batches=[(x, y)], history={"accumulate": fn}), "grad_accumulation")
        assert r.status == status, r.message


def test_swap_keeps_shapes_and_latents():
    """The bisection's swap puts bitcheck's BitLinear in every quantized layer with the same weights."""
    torch.manual_seed(0)
    model = UserBitNet(21, 32, 2, 4, 64, 16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert swap_layers(model, None) == 8
    layers = [m for m in model.modules() if isinstance(m, ReferenceBitLinear)]
    assert len(layers) == 8
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert model(torch.randint(0, 21, (2, 8))).shape == (2, 8, 21)
