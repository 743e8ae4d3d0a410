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


def _summed(model, micro_batches):
    """Wrong for any token counts: each micro-batch's mean loss added, never divided by their number."""
    for x, y in micro_batches:
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1).backward()


def test_grad_accumulation_both_ways():
    """The user's accumulation over the whole batch's target count matches one large batch. Averaging each
    micro-batch over its own targets FAILs where the run's rows hold unequal target counts and is a WARN
    naming the condition where they are equal (packed rows: the nanoGPT loop is exact there); a loop that
    never divides FAILs on either."""
    torch.manual_seed(0)
    model = UserBitNet(21, 32, 1, 4, 64, 16)
    x = torch.randint(4, 21, (8, 16))
    y = torch.cat([x[:, 1:], x[:, :1]], 1)
    ragged = y.clone()
    ragged[:, :5] = -1
    ragged[:3, :9] = -1  # 7 targets in three rows, 11 in the others
    def scaled(model, micro_batches):  # a GradScaler loop that hands over its scaled gradients
        accumulate(model, micro_batches)
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(65536.0)

    cases = ((accumulate, y, "PASS", ""), (accumulate, ragged, "PASS", ""),
             (scaled, ragged, "WARN", "GradScaler's loss scale"),
             (accumulate_per_micro_batch, ragged, "FAIL", "rows hold 7 to 11 target tokens"),
             (accumulate_per_micro_batch, y, "WARN", "exact only when every micro-batch holds the same number"),
             (_summed, y, "FAIL", "on equal target counts"), (_summed, ragged, "FAIL", "on equal target counts"))
    for fn, labels, status, words in cases:
        r = _one(Subject(model=model, batches=[(x, labels)], history={"accumulate": fn}), "grad_accumulation")
        assert r.status == status and words in r.message, (fn.__name__, r.status, r.message)


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


def _resume_hooks(state_shape: str, keep_optimizer_state: bool = True) -> dict:
    """A user's save/load of (model, optimizer, scheduler) as a tuple of three or as a dict."""
    def make():
        torch.manual_seed(0)
        model = UserBitNet(21, 16, 1, 2, 32, 16)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
        return (model, opt, sched) if state_shape == "tuple" else {"model": model, "opt": opt, "sched": sched}

    def parts(*state):
        return state if len(state) == 3 else (state[0]["model"], state[0]["opt"], state[0]["sched"])

    def train(*args):
        model, opt, sched = parts(*args[:-1])
        for x, y in args[-1]:
            torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
            opt.step()
            opt.zero_grad()
            sched.step()

    def save(*args):
        model, opt, sched = parts(*args[:-1])
        torch.save({"m": model.state_dict(), "s": sched.state_dict(),
                    **({"o": opt.state_dict()} if keep_optimizer_state else {})}, args[-1])

    def load(path):
        saved, state = torch.load(path, weights_only=True), make()
        model, opt, sched = parts(*(state if isinstance(state, tuple) else (state,)))
        model.load_state_dict(saved["m"])
        sched.load_state_dict(saved["s"])
        if "o" in saved:
            opt.load_state_dict(saved["o"])
        return state
    torch.manual_seed(1)
    x = torch.randint(0, 21, (6, 4, 16))
    return {"make": make, "train": train, "save": save, "load": load, "batches": [(b, b) for b in x]}


def test_resume_state_takes_the_whole_training_state():
    """#22: the resume hooks carry the user's whole state as their save/load keeps it (a tuple with the
    scheduler, or a dict): exact when every part is restored, FAIL when the optimizer's state is lost."""
    for shape in ("tuple", "dict"):
        for keep, status in ((True, "PASS"), (False, "FAIL")):
            hooks = _resume_hooks(shape, keep)
            r = _one(Subject(model=torch.nn.Linear(1, 1), history={"resume_hooks": hooks}), "resume_state")
            assert r.status == status, (shape, keep, r.status, r.message)
