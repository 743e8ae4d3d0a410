"""Shared helpers for the probe tests: a small subject of our model on arithmetic, and the tree's part."""
import torch

from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.tasks import task_batches
from bitcheck.judge.assess import decide
from bitcheck.judge.subjects import task_subject
from probes import run_probes
from synthetic.arithmetic import ArithmeticTask

CFG = ModelConfig(vocab_size=21, n_embd=32, n_layer=2, n_head=4, n_kv_head=2, ffn_hidden=64, block_size=128)


def subject(seed: int = 0, **changes):
    from dataclasses import replace
    torch.manual_seed(seed)
    task = ArithmeticTask()
    model = BitNet(CFG)
    s = task_subject(model, CFG, task, task_batches(task, seed, 16, 64, False), seed)
    return replace(s, **changes) if changes else s


def result(s, name):
    return run_probes(s, names=[name])[0]


def part(s, name):
    """The part the decision tree names from this probe's result alone."""
    return decide([result(s, name).to_dict()], {}, [], None)["part"]


def task_subject_of(cfg, change=None, seed: int = 0):
    """subject()'s arithmetic subject on a model of config `cfg`, `change(model)` applied first when given."""
    torch.manual_seed(seed)
    task = ArithmeticTask()
    model = BitNet(cfg)
    model = change(model) if change else model
    return task_subject(model, cfg, task, task_batches(task, seed, 16, 64, False), seed)
