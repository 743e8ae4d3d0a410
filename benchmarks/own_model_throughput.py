"""A user's model in bitcheck's training loop against the same model in a bare loop: the overhead of
`bitcheck quick-arith --model ...` (wrapping, logging, watchers, the user's schedule) per step.

    .venv/bin/python benchmarks/own_model_throughput.py --steps 150 --adapter tests.user_train:healthy

Both train the same model (the adapter's build on the tiny preset's spec) on the same quick-arith
batches, eager, fp32; the bare loop is forward, masked cross-entropy, backward, clip, optimizer step,
schedule step. Prints the median step time of each after warm-up, tokens/s and their ratio, measured
one after the other in one run (repeated --rounds times, alternating).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from bitcheck.bitnet.config import TrainConfig, preset_config
from bitcheck.bitnet.rundir import RunDir
from bitcheck.bitnet.tasks import TASKS, build_task, task_batches
from bitcheck.bitnet.train import Trainer
from bitcheck.judge.subjects import make_watchers
from bitcheck.user.adapter import Recipe, build_user_model, load_adapter, user_optimizer


def setup(adapter_spec: str):
    task = build_task("arith")
    spec = TASKS["arith"]
    cfg = preset_config("tiny", vocab_size=task.tokenizer.vocab_size)
    tcfg = TrainConfig(steps=3000, schedule="two_stage", device="cpu", log_every=10, **spec.train)
    adapter = load_adapter(adapter_spec)
    torch.manual_seed(0)
    net = build_user_model(adapter, cfg, tcfg.seq_len)
    opt, sched = user_optimizer(adapter, net.net, Recipe.from_config(tcfg)) if adapter.optimizer else (None, None)
    return task, cfg, tcfg, net, opt, sched


def bitcheck_loop(adapter_spec: str, steps: int, warmup: int) -> list[float]:
    task, cfg, tcfg, net, opt, sched = setup(adapter_spec)
    tcfg.steps = warmup + steps
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(net, tcfg, task_batches(task, 0, tcfg.batch_size, tcfg.seq_len, True),
                          RunDir.create(tmp, "bench"), {"model_config": cfg, "tokenizer": "null", "task": {}},
                          progress=False, watchers=make_watchers(), optimizer=opt, user_schedule=sched)
        for i in range(tcfg.steps):
            t0 = time.perf_counter()
            trainer.train_step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def bare_loop(adapter_spec: str, steps: int, warmup: int) -> list[float]:
    task, cfg, tcfg, net, opt, sched = setup(adapter_spec)
    model = net.net
    opt = opt or torch.optim.AdamW(model.parameters(), lr=tcfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    batches = task_batches(task, 0, tcfg.batch_size, tcfg.seq_len, True)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = batches(i, 0)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if sched is not None:
            sched.step()
        loss.item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", default="tests.user_train:healthy")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tokens = TASKS["arith"].train["batch_size"] * TASKS["arith"].train["seq_len"]
    ours, bare = [], []
    for _ in range(args.rounds):
        bare += bare_loop(args.adapter, args.steps, args.warmup)
        ours += bitcheck_loop(args.adapter, args.steps, args.warmup)
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps, {tokens} tokens/step")
    print(f"bare loop      {mb * 1e3:7.1f} ms/step  {tokens / mb:9,.0f} tokens/s")
    print(f"bitcheck loop  {mo * 1e3:7.1f} ms/step  {tokens / mo:9,.0f} tokens/s  ({mo / mb - 1:+.1%} per step)")


if __name__ == "__main__":
    main()
