"""`bitcheck tinystories`: a BitNet on real stories, judged by its validation loss curve, bits per
byte, samples and the probes.

    report = run_stories(StoriesOptions(preset="1m", data="tinystories.txt", minutes=10))   # a Report

Data flows: --data (bitcheck/bitnet/textdata.py: hub, local file, save_to_disk folder, or generated
stories) -> a tokenizer (--tokenizer, or one of the preset's vocabulary trained on the data and
cached) -> uint16 token files -> memory-mapped random batches -> the Trainer (bitcheck/bitnet/train.py,
DDP under torchrun) -> every --eval-every steps validation loss and bits per byte, every
--sample-every steps samples for the seed's prompts -> at the end the probes (on the exact batches
fed, the validation stories as reference text), the tree, the report. Only rank 0 writes.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from bitcheck.bitnet import checkpoint as ckpts
from bitcheck.bitnet import tokenizer as toks
from bitcheck.bitnet.config import PRESETS, ConfigError, ModelConfig, TrainConfig, preset_config
from bitcheck.bitnet.model import BitNet
from bitcheck.bitnet.rundir import RunDir, RunDirError, append_jsonl, atomic_write_text
from bitcheck.bitnet.textdata import HUB_DEFAULT, SEPARATOR, TokenBatches, TokenCache, build_cache, open_source
from bitcheck.bitnet.train import Dist, Evaluation, Trainer, close_distributed, init_distributed, resolve_device
from bitcheck.judge.assess import Report, assess, run_curve
from bitcheck.judge.facts import RunFacts
from bitcheck.judge.report import write_report
from bitcheck.judge.subjects import STORY_PROMPTS as PROMPTS
from bitcheck.judge.subjects import make_watchers, stories_subject
from bitcheck.judge.verdict import MIN_POINTS, STORIES, Evidence
from bitcheck.user.adapter import ModelSpec, build_for_training, load_adapter
from bitcheck.user.subjects import own_history, own_watchers, stories_own_subject

SAMPLE_TOKENS = 160
SAMPLE_TEMPERATURE = 0.8
PROBE_TEXT_CHARS = 60_000  # validation text kept in checkpoints: the probes' reference in `diagnose`
DEFAULT_STEPS = 30000  # the seed design's run
DEFAULT_VOCAB = 2048  # presets that take the vocabulary from the tokenizer get this one when trained here
# The run passes when validation bits per byte reach the STORIES policy's bar (bitcheck/judge/verdict.py,
# tokenizer-independent, so the 1m character model and the 12m BPE model share it). Measured
# (docs/MEASUREMENTS.md, "Measured on the real sample"): the 1m preset, 10 minutes on the real 2 MiB
# sample, reached 1.56 bpb with the gibberish probe passing (known words 0.97 of the reference's rate)
# but samples still misspelling words; at 2.07 bpb (step 400) a third of the words were misspelt. The
# bar asks for clearly better.
PASS_BPB = STORIES.pass_bpb


@dataclass
class StoriesOptions:
    steps: int | None = None  # None: 30000 for a new run, the run's own horizon on --resume
    preset: str = "12m"
    data: str = HUB_DEFAULT
    data_dir: str | None = None  # None: "data", or on --resume the folder of the run's own cache
    tokenizer: str | None = None
    tokenizer_stories: int = 20000  # stories the tokenizer is trained on when none is given
    max_stories: int | None = None  # cap on training stories tokenised (None: all)
    batch: int = 32  # global batch, split over DDP ranks
    seq: int = 256
    lr: float = 1.5e-3
    warmup: int = 250
    eval_every: int = 500
    sample_every: int = 1000
    val_batches: int = 8
    minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str | None = None  # default fp32 on CPU, bf16 on CUDA
    compile: bool = False
    out: str = "runs"
    progress: bool = True
    model: str | None = None  # the user's adapter (bitcheck/user/adapter.py): their model, optimizer, hooks
    layers: str | None = None  # regex over module names of the user's quantized layers
    overrides: dict = field(default_factory=dict)  # TrainConfig fields, for tests and experiments

    def __post_init__(self) -> None:
        if self.layers and not self.model:
            raise ConfigError("--layers needs --model (your model's adapter)")
        for name in ("steps", "batch", "seq", "eval_every", "minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


def preset_vocab(preset: str) -> int:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]["vocab_size"] or DEFAULT_VOCAB


def prepare(opts: StoriesOptions, dist: Dist, tok=None) -> tuple[object, TokenCache, object]:
    """(tokenizer, token cache, source). Rank 0 builds what is missing; the others wait, then read it.
    `tok`: a tokenizer already decided (a resumed run's own)."""
    source = open_source(opts.data)
    if not dist.main:
        import torch.distributed as tdist
        tdist.barrier()
    if tok is None:
        tok = toks.load(opts.tokenizer) if opts.tokenizer else _data_tokenizer(opts, source)
    cache = build_cache(source, tok, opts.data_dir, opts.max_stories, progress=opts.progress and dist.main)
    if dist.main and dist.world > 1:
        import torch.distributed as tdist
        tdist.barrier()
    return tok, cache, source


def _data_tokenizer(opts: StoriesOptions, source):
    """A tokenizer of the preset's vocabulary trained on the data, cached by source, size and story count."""
    vocab = preset_vocab(opts.preset)
    key = hashlib.sha256(f"{source.identity}|{vocab}|{opts.tokenizer_stories}".encode()).hexdigest()[:16]
    path = Path(opts.data_dir) / "tokenizers" / f"{vocab}-{key}.json"
    if path.is_file():
        return toks.load(str(path))
    tok = toks.train(islice(source.stories("train"), opts.tokenizer_stories), vocab)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tok.to_str())
    return tok


def val_unigram_entropy(cache: TokenCache, vocab: int) -> float:
    counts = np.bincount(np.memmap(cache.val, dtype=np.uint16, mode="r"), minlength=vocab).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def make_evaluator(tok, cache: TokenCache, opts: StoriesOptions, run: RunDir, console=None):
    val = TokenBatches(cache.val, opts.seq, min(opts.batch, 16), opts.seed, salt=1)
    bpt = 1.0 / cache.bytes_per_token("val")  # tokens per byte
    eos = tok.token_to_id(SEPARATOR)

    def evaluate(model: BitNet, step: int) -> Evaluation:
        device = next(model.parameters()).device
        with torch.no_grad():
            losses = [model(x.to(device), y.to(device))[1].item() for x, y in (val(i) for i in range(opts.val_batches))]
        loss = sum(losses) / len(losses)
        extra = {"val_bpb": loss / math.log(2) * bpt}
        if opts.sample_every and step % opts.sample_every == 0:
            extra["samples"] = write_samples(model, tok, eos, run, step, console)
        return Evaluation(val_loss=loss, extra=extra)
    return evaluate


def samples_for(model: BitNet, tok, eos: int, seed: int = 0) -> list[dict]:
    """One sample per prompt (temperature 0.8, fixed seed), cut at the end of the story."""
    device = next(model.parameters()).device
    out = []
    for i, prompt in enumerate(PROMPTS):
        ids = [eos] + tok.encode(prompt, add_special_tokens=False).ids
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        gen = model.generate(idx, SAMPLE_TOKENS, temperature=SAMPLE_TEMPERATURE, eos_id=eos, seed=seed + i)
        new = gen[0, len(ids):].tolist()
        if eos in new:
            new = new[:new.index(eos)]
        out.append({"prompt": prompt, "generated_text": prompt + tok.decode(new)})
    return out


def write_samples(model, tok, eos, run: RunDir, step: int, console=None) -> list[dict]:
    samples = samples_for(model, tok, eos)
    for s in samples:
        append_jsonl(run.samples, {"step": step, **s})
        if console is not None:
            console.print(f"[dim]step {step}[/] {s['generated_text'][:200]!r}", highlight=False)
    return samples


def stories_evidence(facts: RunFacts, run: RunDir, upto: int | None = None) -> Evidence:
    """The evidence of a stories run: its validation curve (cut at step `upto` for an older checkpoint)
    and its validation bits per byte, which the STORIES policy holds to its bar."""
    curve = run_curve(run, upto, validation=True, min_points=MIN_POINTS)
    return facts.evidence(curve, None, str(run.path))


def _configs(opts: StoriesOptions, tok, dist: Dist) -> tuple[ModelConfig, TrainConfig]:
    mcfg = preset_config(opts.preset, vocab_size=tok.get_vocab_size())
    device = resolve_device(opts.device)
    precision = opts.precision or ("bf16" if device.type == "cuda" else "fp32")
    tcfg = TrainConfig(steps=opts.steps or DEFAULT_STEPS, max_minutes=opts.minutes, batch_size=opts.batch,
                       seq_len=opts.seq,
                       lr=opts.lr, warmup_steps=opts.warmup, schedule="two_stage", weight_decay=0.1,
                       beta1=0.9, beta2=0.95, grad_clip=1.0, device=opts.device, precision=precision,
                       compile=opts.compile, seed=opts.seed, log_every=10,
                       eval_every=math.gcd(opts.eval_every, opts.sample_every or opts.eval_every),
                       extra={"data": opts.data, "eval_every": opts.eval_every, "sample_every": opts.sample_every},
                       **opts.overrides)
    if tcfg.seq_len > mcfg.block_size:
        raise ConfigError(f"--seq {tcfg.seq_len} exceeds the {opts.preset} preset's context of {mcfg.block_size}")
    if tcfg.batch_size % dist.world:
        raise ConfigError(f"--batch {tcfg.batch_size} does not split evenly over {dist.world} processes")
    return mcfg, tcfg


def run_stories(opts: StoriesOptions, resume: str | None = None) -> Report | None:
    """Train, evaluate, sample, probe. Returns the judge's Report on rank 0, None on the other ranks."""
    dist, device = init_distributed(opts.device)
    try:
        return _run_stories(opts, resume, dist, device)
    finally:
        close_distributed()


def _run_stories(opts: StoriesOptions, resume: str | None, dist: Dist, device: str) -> Report | None:
    opts.device = device
    ckpt, run, given_tok = None, None, None
    if resume:
        run = RunDir.existing(resume)
        ckpt = ckpts.load(run.latest_checkpoint(), resumable=True)
        prev, saved = ckpt.task, ckpt.train_config.to_dict()
        if prev.get("name") != "tinystories":
            raise RunDirError(f"{resume} is not a tinystories run")
        if opts.tokenizer:
            raise ConfigError("--tokenizer cannot change on --resume: the run keeps the tokenizer it was trained with")
        given_tok = toks.from_json(ckpt.tokenizer, f"{resume}: the stored tokenizer")
        opts.data, opts.preset = prev.get("data_path", prev["data"]), prev["preset"]
        opts.max_stories = prev.get("max_stories")  # the same cache, so the same training data
        if opts.data_dir is None and "cache" in prev:
            opts.data_dir = str(Path(prev["cache"]).parent)
        opts.seed, opts.batch, opts.seq = saved["seed"], saved["batch_size"], saved["seq_len"]
        opts.model, opts.layers = prev.get("model"), prev.get("layers")
    opts.data_dir = opts.data_dir or "data"
    adapter = load_adapter(opts.model) if opts.model else None  # an import error before any data work
    tok, cache, source = prepare(opts, dist, given_tok)
    mcfg, tcfg = _configs(opts, tok, dist)
    if ckpt is not None:
        tcfg = TrainConfig.from_dict({**saved, "steps": opts.steps or saved["steps"], "device": opts.device,
                                      "max_minutes": opts.minutes if opts.minutes is not None else saved["max_minutes"]})
    torch.manual_seed(tcfg.seed)
    if adapter is None:
        model, optimizer, user_schedule = BitNet(mcfg), None, None
    else:  # the user's model (and optimizer and schedule, when the adapter has them) under the same recipe
        model, optimizer, user_schedule = build_for_training(adapter, mcfg, tcfg, opts.layers,
                                                             str(resolve_device(opts.device)))
    if not dist.main:
        run = None  # only rank 0 writes
    elif run is None:
        run = RunDir.create(opts.out, f"tinystories-{opts.preset}-s{opts.seed}")
    # the probes' reference text: validation stories, topped up with training ones when the split is small
    probe_text = "\n".join(islice(source.stories("val"), 300))
    if len(probe_text) < PROBE_TEXT_CHARS:
        probe_text += "\n" + "\n".join(islice(source.stories("train"), 300))
    probe_text = probe_text[:PROBE_TEXT_CHARS]
    # cache and data_path absolute, so that --resume works from any working directory
    task_meta = {"name": "tinystories", "data": source.name, "preset": opts.preset,
                 "cache": str(Path(cache.dir).resolve()), "max_stories": opts.max_stories, "data_path": source.reopen,
                 **({"model": adapter.source, "layers": opts.layers} if adapter else {})}
    meta = {"model_config": mcfg, "tokenizer": tok.to_str(), "task": task_meta, "probe_text": probe_text}
    batches = TokenBatches(cache.train, tcfg.seq_len, tcfg.batch_size, tcfg.seed, dist.rank, dist.world)
    watchers = make_watchers() if adapter is None else own_watchers(opts.layers, optimizer)
    trainer = Trainer(model, tcfg, batches, run, meta, progress=opts.progress, watchers=watchers, dist=dist,
                      optimizer=optimizer, user_schedule=user_schedule)
    if ckpt is not None:
        trainer.load_state(ckpt)
    evaluate = None
    if dist.main:
        from rich.console import Console
        atomic_write_text(run.config, json.dumps({"command": "tinystories", "model": mcfg.to_dict(),
                                                  "train": tcfg.to_dict(), "task": task_meta,
                                                  "data": cache.meta, "world_size": dist.world}, indent=2))
        evaluate = make_evaluator(tok, cache, opts, run, Console(stderr=True) if opts.progress else None)
    result = trainer.run(evaluate=evaluate)
    if not dist.main:
        return None
    last = result.last_eval.record() if result.last_eval else {}
    samples = write_samples(model, tok, tok.token_to_id(SEPARATOR), run, result.step) \
        if "samples" not in last else last["samples"]
    scalars = run.read_jsonl(run.metrics)
    facts = RunFacts(
        task="tinystories", data=source.name, preset=opts.preset, **trainer.summary(result, scalars),
        val_loss=last.get("val_loss"), val_bpb=last.get("val_bpb"), pass_bpb=PASS_BPB,
        val_unigram_entropy=val_unigram_entropy(cache, mcfg.vocab_size),
        bytes_per_token=cache.bytes_per_token("val"), train_tokens=cache.meta["train"]["tokens"],
        world_size=dist.world, global_batch=tcfg.batch_size, samples=samples, checkpoint=result.checkpoint)
    fed = [batches(i, 0) for i in range(2)]
    if adapter is None:
        subject = stories_subject(model, mcfg, tok, fed, probe_text, watchers, trainer.optimizer)
    else:
        subject = stories_own_subject(model.net, mcfg, tok, fed, probe_text,
                                      adapter.hooks(lambda: adapter.build(ModelSpec.from_config(mcfg))),
                                      own_history(watchers, trainer, tcfg, scalars, adapter), opts.layers)
    report = assess("tinystories", subject, stories_evidence(facts, run), facts, STORIES, run_dir=str(run.path))
    write_report(run, report.to_dict())
    return report
