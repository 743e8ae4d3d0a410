"""`bitcheck curve RUN`: judge a user's (large) training run from its own log and config.

    report = check_curve(CurveOptions(run="runs/my-run", params="95M", vocab=32000, hidden=768))   # a Report

Data flows: RUN (bitcheck/user/runlog.py: a run folder, scalars.jsonl, a CSV export, TensorBoard events)
-> RunLog rows; --config / the folder's config.json / --checkpoint / options -> RunSpec (shape, tokens
per step, intended schedule) -> curve_subject: the rows, the schedule bitcheck/bitnet/train.py computes for
the config next to the one logged, the parameter budget -> assess with the CURVE policy: the probes of
kind "curve" (probes/curve.py: the power-law fit and its extrapolation, spikes, grad norms, NaN, the
logged schedule, the capacity) and the tree -> report (with the fitted curve's plot). The log is never
modified; the report goes to a new folder under --out.
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bitcheck.bitnet.config import ConfigError, TrainConfig
from bitcheck.bitnet.rundir import RunDir, append_jsonl
from bitcheck.bitnet.train import schedule
from bitcheck.judge.assess import Report, assess
from bitcheck.judge.facts import RunFacts
from bitcheck.judge.report import write_report
from bitcheck.judge.subjects import probe_results
from bitcheck.judge.verdict import CURVE
from bitcheck.user.baselines import data_baselines
from bitcheck.user.runlog import LogError, RunLog, read_log
from bitcheck.user.runspec import RunSpec, read_spec
from probes import History, Subject
from probes.curve import FIT_START, MIN_FIT_POINTS, fit_start

MAX_SCHEDULE_ROWS = 1000  # the schedule comparison samples this many logged steps (it is O(rows^2))


@dataclass
class CurveOptions:
    run: str
    config: str | None = None
    checkpoint: str | None = None
    params: str | None = None  # "95M"
    vocab: int | None = None
    hidden: int | None = None
    tied: bool | None = None
    tokens_per_step: str | None = None
    lr: float | None = None
    warmup: int | None = None
    steps: int | None = None  # the schedule's intended horizon
    min_lr: float | None = None  # the LR the decay ends at (None: the config's, else inferred for a cosine)
    schedule: str | None = None  # two_stage | cosine | constant | linear | one_cycle (None: the config's, else inferred)
    upto: int | None = None  # judge the log only up to this step (what the run looked like then)
    loss: str = "auto"  # auto (validation when logged), train, val
    data: str | None = None  # the run's data (token .bin/.npy, or text with `tokenizer`): its trivial baselines
    tokenizer: str | None = None
    out: str = "runs"


# the schedules bitcheck computes: its own (bitcheck/bitnet/train.py), constant, linear decay to 0 (Hugging Face's
# default) and torch's OneCycleLR; the first four are the candidates for a schedule the config does not name
SHAPES = ("two_stage", "cosine", "constant", "linear", "one_cycle")
INFERRED = SHAPES[:4]


def _cos(start: float, end: float, pct: float) -> float:
    """torch's OneCycleLR cosine annealing from `start` to `end` over pct in [0, 1]."""
    return end + (start - end) / 2 * (math.cos(math.pi * min(max(pct, 0.0), 1.0)) + 1)


def one_cycle_lr(spec: RunSpec, index: int) -> float:
    """OneCycleLR's LR (torch.optim.lr_scheduler, anneal_strategy='cos', two phases) after `index` steps: from
    lr / div_factor up to lr over the warmup (pct_start x steps), then down to lr / div_factor / final_div_factor."""
    initial = spec.lr / spec.div_factor
    end1, end2 = float(spec.warmup) - 1, float(spec.steps) - 1
    if index <= end1:
        return _cos(initial, spec.lr, index / max(end1, 1e-9))
    return _cos(spec.lr, initial / spec.final_div_factor, (index - end1) / max(end2 - end1, 1e-9))


def shape_rows(spec: RunSpec, kind: str, steps: list[int]) -> list[dict]:
    """Rows {step, lr, weight_decay} of schedule `kind` with the spec's peak, warmup and horizon. A logged
    step s reports the update with 0-based index s - 1 (as bitcheck logs)."""
    wd = spec.weight_decay if spec.weight_decay is not None else 0.1
    if kind == "one_cycle":
        return [{"step": s, "lr": one_cycle_lr(spec, s - 1), "weight_decay": wd} for s in steps]
    if kind in ("constant", "linear"):
        def lr(s: int) -> float:
            if s <= spec.warmup:
                return spec.lr * s / max(1, spec.warmup)
            if kind == "constant":
                return spec.lr
            return spec.lr * max(0.0, (spec.steps - s) / max(1, spec.steps - spec.warmup))
        return [{"step": s, "lr": lr(s), "weight_decay": wd} for s in steps]
    cfg = TrainConfig(steps=spec.steps, lr=spec.lr, warmup_steps=max(1, spec.warmup), schedule=kind,
                      second_peak_ratio=spec.second_peak_ratio, final_lr_ratio=spec.final_lr_ratio, weight_decay=wd)
    return [dict(zip(("lr", "weight_decay"), schedule(max(0, s - 1), cfg)), step=s) for s in steps]


# where a cosine's end is not given, the two ends codebases use: 0 (Hugging Face's get_cosine_schedule_with_warmup,
# torch's CosineAnnealingLR with eta_min=0) and a tenth of the peak (nanoGPT's min_lr, bitcheck's recipe)
COSINE_ENDS = (0.1, 0.0)


def intended_schedule(spec: RunSpec, applied: list[dict]) -> tuple[list[dict], str | None]:
    """The LR and weight decay the run intended at each logged step, or ([], why not). A schedule the
    config does not name is the shape among SHAPES closest to the logged LR, and the spec says it was
    inferred (a wrong shape assumed would read a healthy cosine run as a bug). A cosine whose final LR
    neither the config nor --min-lr gives ends at the closer of COSINE_ENDS to the logged LR (a healthy decay
    to 0 is no deviation; a decay never applied is far from both)."""
    if spec.lr is None or spec.warmup is None or spec.steps is None:
        missing = [f"--{k}" for k in ("lr", "warmup", "steps") if getattr(spec, k) is None]
        return [], f"the intended schedule is unknown (no {', '.join(missing)} in options or config)"
    if spec.schedule is not None and spec.schedule not in SHAPES:
        return [], (f"schedule {spec.schedule!r} is not one bitcheck computes ({', '.join(SHAPES)}): the logged "
                    "schedule was not compared (give --schedule with the nearest)")
    steps = [r["step"] for r in applied]
    if spec.schedule is None and not applied:
        return [], "no schedule named in options or config (give --schedule)"
    end_known = "final_lr_ratio" in spec.origin

    def error(candidate: tuple[str, float]) -> float:
        kind, end = candidate
        want = shape_rows(dataclasses.replace(spec, final_lr_ratio=end), kind, steps)
        return sum(abs(a["lr"] - w["lr"]) / max(w["lr"], 1e-12) for a, w in zip(applied, want)) / len(want)
    kinds = [spec.schedule] if spec.schedule is not None else list(INFERRED)
    candidates = [(k, e) for k in kinds for e in
                  (COSINE_ENDS if k == "cosine" and not end_known and applied else (spec.final_lr_ratio,))]
    kind, end = min(candidates, key=error) if len(candidates) > 1 else candidates[0]
    if spec.schedule is None:
        spec.schedule = kind
        spec.origin["schedule"] = f"not named: inferred from the logged LR (closest of {', '.join(INFERRED)})"
    if kind == "cosine" and not end_known and applied:
        spec.final_lr_ratio = end
        spec.origin["final_lr_ratio"] = (f"not given: the closer to the logged LR of {' and '.join(map(str, COSINE_ENDS))} "
                                         "of the peak (give --min-lr)")
    return shape_rows(spec, spec.schedule, steps), None


def _thin(rows: list[dict], most: int) -> list[dict]:
    if len(rows) <= most:
        return rows
    every = len(rows) / most
    return [rows[int(i * every)] for i in range(most)]


def loss_key(log: RunLog, choice: str) -> tuple[str, str]:
    """Which loss to fit, and why: validation when logged often enough to fit (auto), else training."""
    vals, trains = log.series("val_loss"), log.series("loss")
    if choice == "val" or (choice == "auto" and len(vals) >= 2 * MIN_FIT_POINTS):
        if not vals:
            raise LogError(f"{log.source} logs no validation loss (give --loss train)")
        return "val_loss", f"validation loss ({log.columns.get('val_loss')}, {len(vals)} points)"
    if not trains:
        if vals:
            return "val_loss", f"validation loss ({log.columns.get('val_loss')}, {len(vals)} points; no training loss)"
        raise LogError(f"{log.source} logs no training loss")
    why = ("" if choice == "train" else f"; validation loss has only {len(vals)} points" if vals
           else "; no validation loss logged")
    return "loss", f"training loss ({log.columns.get('loss')}, {len(trains)} points{why})"


def curve_subject(log: RunLog, spec: RunSpec, key: str) -> tuple[Subject, RunFacts]:
    """The Subject of a training log (probes/curve.py reads `history`) and the facts for the report."""
    rows = log.rows
    last = rows[-1]["step"]
    applied = _thin([{"step": r["step"], "lr": r["lr"], "weight_decay": r.get("weight_decay")}
                     for r in rows if isinstance(r.get("lr"), float) and math.isfinite(r["lr"])], MAX_SCHEDULE_ROWS)
    intended, why = intended_schedule(spec, applied)
    lr_source = "logged" if applied else None
    if not applied and spec.lr and spec.warmup is not None and spec.steps and spec.schedule in SHAPES:
        # no LR logged: the fit takes it from the configured schedule (else a decaying LR's fall reads as
        # more tokens' gain); nothing is compared
        rows = [dict(r, lr=w["lr"]) for r, w in zip(rows, shape_rows(spec, spec.schedule, [r["step"] for r in rows]))]
        lr_source = f"configured ({spec.schedule}; not logged)"
    # where the log holds no weight decay, only the LR is compared: the intended value stands in
    applied = [dict(a, weight_decay=w["weight_decay"], weight_decay_logged=False) if a["weight_decay"] is None else a
               for a, w in zip(applied, intended)] if intended else applied
    tokens = last * spec.tokens_per_step if spec.tokens_per_step else None
    history = History(curve={"rows": rows, "loss_key": key, "tokens_per_step": spec.tokens_per_step,
                             "warmup": spec.warmup or 0, "lr_source": lr_source,
                             "lr_resolution": log.resolution.get("lr", 0.0), "vocab": spec.vocab},
                      schedule=applied, intended=intended, warmup_steps=spec.warmup or 0, intended_missing=why or None,
                      schedule_name=None if spec.origin.get("schedule", "").startswith("not named") else spec.schedule,
                      capacity={"params": spec.params, "embedding_params": spec.embedding_params, "tied": spec.tied,
                                "tokens": tokens})
    facts = RunFacts(log=f"{log.source} ({log.read_as})" if log.read_as else log.source, steps=last, tokens=tokens, lr_used=lr_source or "none (assumed constant)",
                     columns=log.columns, spec=spec.to_dict())
    return Subject(model=None, history=history), facts


def run_name(path: str) -> str:
    """The judged run's name for the report folder: its folder's name, or the log file's parent folder and stem
    where the file has a generic name (metrics.csv, main.log, scalars.jsonl)."""
    p = Path(path).resolve()
    generic = {"metrics", "scalars", "main", "log", "train", "trainer_state", "events", "stdout", "output"}
    if p.is_file():
        stem = p.name.split(".")[0]
        parts = [q.name for q in p.parents[:2] if q.name not in ("metrics", "logs", "")][:1] if stem.lower() in \
            generic or stem.startswith("events") else []
        name = "-".join([*parts, stem]) if parts else stem
    else:
        name = p.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "run"


def check_curve(opts: CurveOptions) -> Report:
    """Read, probe, judge, write. Returns the judge's Report (`.exit_code`). Raises LogError (exit 2) for a log or
    config that cannot be read or lacks a loss, ConfigError for bad options."""
    if opts.loss not in ("auto", "train", "val"):
        raise ConfigError(f"--loss must be auto, train or val, not {opts.loss!r}")
    log = read_log(opts.run)
    if opts.upto is not None:
        if opts.upto > log.rows[-1]["step"]:
            raise LogError(f"--upto {opts.upto} is past the log's last step {log.rows[-1]['step']}")
        log.rows = [r for r in log.rows if r["step"] <= opts.upto]
        if not log.rows:
            raise LogError(f"{log.source} has no logged step up to --upto {opts.upto}")
    if opts.schedule is not None and opts.schedule.replace("-", "_") not in SHAPES:
        raise ConfigError(f"--schedule must be one of {', '.join(SHAPES)}, not {opts.schedule!r}")
    spec = read_spec(log, config=opts.config, checkpoint=opts.checkpoint, params=opts.params, vocab=opts.vocab,
                     hidden=opts.hidden, tied=opts.tied, tokens_per_step=opts.tokens_per_step, lr=opts.lr,
                     warmup=opts.warmup, steps=opts.steps, schedule=opts.schedule, min_lr=opts.min_lr)
    if log.counted and "tokens" in log.columns and spec.tokens_per_step:  # no step column: steps = tokens / batch
        log.rows = [dict(r, step=round(r["tokens"] / spec.tokens_per_step)) for r in log.rows if "tokens" in r]
    key, which = loss_key(log, opts.loss)
    finite = [st for st, v in log.series(key) if math.isfinite(v)]
    start = fit_start(finite[-1], spec.warmup or 0) if finite else 0
    if len([st for st in finite if st >= start]) < MIN_FIT_POINTS:
        raise LogError(f"{log.source} has {len(finite)} finite {key} values, too few from step {start:g} (after "
                       f"{FIT_START:.0%} of the run and twice the warmup) to fit a curve (needs {MIN_FIT_POINTS}): "
                       "log the loss more often")
    subject, facts = curve_subject(log, spec, key)
    if opts.data:  # the data's unigram and bigram losses, for loss_baseline (bitcheck/user/baselines.py)
        subject.history.curve["baselines"] = data_baselines(opts.data, opts.tokenizer, spec.vocab)
    elif opts.tokenizer:
        raise ConfigError("--tokenizer needs --data (the text it tokenizes)")
    run = RunDir.create(opts.out, f"curve-{run_name(opts.run)}")
    for r in log.rows:  # the log as read, in bitcheck's layout: `bitcheck report` and the loss plot read it
        if "loss" in r:  # training loss only: validation goes to evals (the report's plot tells them apart)
            append_jsonl(run.metrics, {"step": r["step"], "loss": r["loss"],
                                       **{k: r[k] for k in ("lr", "weight_decay", "grad_norm", "tokens") if k in r}})
        if "val_loss" in r:
            append_jsonl(run.evals, {"step": r["step"], "val_loss": r["val_loss"]})
    facts = facts.with_(loss_used=which, upto=opts.upto)
    report = assess("curve", subject, facts.evidence(run_dir=str(run.path)), facts, CURVE, run_dir=str(run.path))
    write_report(run, report.to_dict())
    for empty in (run.checkpoints, run.samples.parent):  # a log has no checkpoints or samples of its own
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    return report


def judge_watched(run_dir: str, findings: list[dict]) -> Report | None:
    """The verdict on a run bitcheck.watch logged: the curve probes on its metrics/scalars.jsonl and config.json
    (the intended schedule) with the watcher's live findings (`findings`, probe results) among them, the report
    written into that run folder. None, with one stderr line, when the run logged no loss."""
    try:
        log = read_log(run_dir)
    except LogError as e:
        print(f"bitcheck watch: no verdict: {e}", file=sys.stderr)
        return None
    spec = read_spec(log)
    key, which = loss_key(log, "auto")
    subject, facts = curve_subject(log, spec, key)
    facts = facts.with_(loss_used=which)
    probes = probe_results(subject, kinds=CURVE.kinds) + list(findings)
    report = assess("watch", subject, facts.evidence(run_dir=run_dir), facts, CURVE, run_dir=run_dir, probes=probes)
    write_report(RunDir(run_dir), report.to_dict())
    return report
