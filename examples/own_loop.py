"""Your own training loop on bitcheck's arithmetic task (docs/OWN_CODE.md).

    python examples/own_loop.py my_adapter      # your module with build(spec) and optimizer(model, recipe)

Run from the folder that holds your module (it is imported from there, as `--model` does). Copy it
into your codebase and make the loop body yours. Without an argument it trains the independent test
codebase (tests/user_train.py, from the repository root); tests/test_own_infrastructure.py runs it.
"""
import importlib
import os
import sys

import torch
import torch.nn.functional as F

from bitcheck.user.session import Session

sys.path.insert(0, os.getcwd())                       # your modules, from the current folder
mine = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "tests.user_train")
s = Session("arith", out="runs")                      # seeded batches, held-out evaluation, PASS bar
torch.manual_seed(s.seed)
model = mine.build(s.spec)                            # vocab_size, block_size, n_embd, n_layer, ...
opt, sched = mine.optimizer(model, s.recipe)          # lr, weight_decay, warmup_steps, steps; sched.step()
s.watch(model, opt)                                   # code flips, each param group's weight decay
for step in range(s.max_steps):
    x, y = s.batch(step)                              # (B, T) token ids; y == -1: no loss there
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    lr, wd = opt.param_groups[0]["lr"], max(g["weight_decay"] for g in opt.param_groups)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sched.step()
    s.log(step + 1, loss, lr=lr, weight_decay=wd)     # what your loop computed and applied
    if s.due(step + 1) and s.evaluate(model, step + 1).stop:
        break                                         # PASS, stalled, or out of time
report = s.finish(model, optimizer=opt, fresh_model=lambda: mine.build(s.spec))
print(f"{report.verdict.status}: {report.verdict.category.value}. {report.verdict.diagnosis}")
print(f"report: {s.run.path}/report.md")
sys.exit(report.exit_code)
