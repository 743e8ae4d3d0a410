"""The `bitcheck` command line. Thin: it parses options, calls the library, renders the result.

Output: data on stdout (valid JSON with --json), progress and diagnostics on stderr.
Exit codes: 0 PASS, 1 FAIL, 2 usage error (one line on stderr, no traceback), 130 interrupted.
"""
from __future__ import annotations

import json
import signal
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from bitcheck.config import PRESET_NOTES, PRESETS, ConfigError, preset_config
from bitcheck.model import BitNet
from bitcheck.report import clean, render_html, render_markdown, render_terminal
from bitcheck.rundir import RunDir, RunDirError, empty_output_dir

app = typer.Typer(
    help="bitcheck: is my BitNet b1.58 infrastructure broken, is the model too small or undertrained, "
         "or is generation broken? Trains tiny ternary models on tasks with known answers and checks them.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _interrupt_on_sigterm() -> None:
    """Treat SIGTERM (a scheduler's or `timeout`'s stop) like Ctrl-C: save, report, exit 130."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def _show(report: dict, json_out: bool, code: int) -> None:
    """The report on stdout (JSON with --json, the summary on stderr then), and the exit code."""
    if json_out:
        typer.echo(json.dumps(clean(report), indent=2))
        render_terminal(report, Console(stderr=True))
    else:
        render_terminal(report, Console())
    raise typer.Exit(code)


def _fail_usage(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def presets(json_out: JsonOpt = False) -> None:
    """List the model presets with their exact parameter counts."""
    rows = []
    for name in PRESETS:
        # presets that take the vocabulary from a tokenizer are counted with the arithmetic vocab
        cfg = preset_config(name, vocab_size=None if PRESETS[name]["vocab_size"] else 21)
        rows.append({"name": name, "params": BitNet(cfg).num_params(), "note": PRESET_NOTES[name],
                     "vocab_from_tokenizer": PRESETS[name]["vocab_size"] is None, **cfg.to_dict()})
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table
    table = Table(title="bitcheck presets")
    for col in ("name", "params", "vocab", "d_model", "layers", "heads", "kv", "ffn", "ctx"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", str(r["vocab_size"]) + ("*" if r["vocab_from_tokenizer"] else ""),
                      str(r["n_embd"]), str(r["n_layer"]), str(r["n_head"]), str(r["n_kv_head"]),
                      str(r["ffn_hidden"]), str(r["block_size"]))
    console = Console()
    console.print(table)
    console.print("* vocabulary taken from the task's tokenizer; counted here with the arithmetic one (21).")
    for r in rows:
        console.print(f"  {r['name']}: {r['note']}", highlight=False)


PresetOpt = Annotated[Optional[str], typer.Option(help="Model preset (see `bitcheck presets`). "
                                                   "Default: tiny on CPU, 5m on CUDA.")]
MinutesOpt = Annotated[Optional[float], typer.Option(help="Wall-clock budget in minutes (default 15).")]
StepsOpt = Annotated[Optional[int], typer.Option(help="Most training steps (default: no limit; the run stops at "
                                                 "PASS, after 1500 steps without gain, or at the time budget).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for initialisation and training data.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
PrecisionOpt = Annotated[Optional[str], typer.Option(help="fp32, bf16 or fp16 (CUDA). "
                                                     "Default: fp32 on CPU, bf16 on CUDA.")]
CompileOpt = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the training "
                                                    "forward. Default: on for CPU (1.7x faster after ~35 s).")]
OutOpt = Annotated[str, typer.Option(help="Folder that receives the run directory.")]
ResumeOpt = Annotated[Optional[str], typer.Option(help="Continue the run in this run directory.")]


def _quick(task: str, command: str, preset, minutes, steps, seed, device, precision, compile, out, resume,
           json_out, ops: str = "+-") -> None:
    from bitcheck.quick import QuickOptions, run_quick

    if steps is not None and steps <= 0:
        _fail_usage(f"--steps must be positive, got {steps}")
    if minutes is not None and minutes <= 0:
        _fail_usage(f"--minutes must be positive, got {minutes}")
    _interrupt_on_sigterm()
    opts = QuickOptions(task=task, preset=preset, steps=steps, minutes=minutes, seed=seed, device=device,
                        out=out, ops=ops, precision=precision, compile=compile,
                        progress=sys.stderr.isatty())
    try:
        report, code = run_quick(opts, resume=resume, command=command)
    except (ConfigError, RunDirError) as e:
        _fail_usage(str(e))
        return
    _show(report, json_out, code)


@app.command("quick-arith")
def quick_arith(
    preset: PresetOpt = None, minutes: MinutesOpt = None, steps: StepsOpt = None,
    ops: Annotated[str, typer.Option(help="Operators to train on, from + - * / (/ is floor division).")] = "+-",
    seed: SeedOpt = 0, device: DeviceOpt = "auto", precision: PrecisionOpt = None, compile: CompileOpt = None,
    out: OutOpt = "runs", resume: ResumeOpt = None, json_out: JsonOpt = False,
) -> None:
    """Train a tiny BitNet to do `25 + 17 = 42`, evaluate on held-out problems, give a verdict.

    Stops as soon as + and - reach 90% exact-match on 500 held-out problems (PASS, exit 0). It
    trains on while the held-out score or validation loss still improves: a run that stops improving
    for 1500 steps, or whose time budget runs out first, is a FAIL (exit 1) whose verdict says which
    (MODEL TOO SMALL, UNDERTRAINED) or names the broken part. Writes OUT/<run_id>/ with metrics,
    samples, checkpoints and report.{json,md,html}. Ctrl-C or SIGTERM saves a checkpoint and the
    report (exit 130).
    """
    _quick("arith", "quick-arith", preset, minutes, steps, seed, device, precision, compile, out, resume,
           json_out, ops=ops)


@app.command("quick-json")
def quick_json(
    preset: PresetOpt = None, minutes: MinutesOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, compile: CompileOpt = None,
    out: OutOpt = "runs", resume: ResumeOpt = None, json_out: JsonOpt = False,
) -> None:
    """Train a tiny BitNet on synthetic JSON records (`{"name": "Alice", "age": 25, "city": "Boston"}`).

    Every 100 steps, 128 records sampled at temperature 1 are scored: the share that parse, the
    share with exactly the schema, and their diversity (records and per field). PASS (exit 0) when
    all four clear their bars (see the README); a run that stops improving or runs out of time first
    is a FAIL (exit 1). Run directory, report and Ctrl-C behave as in quick-arith.
    """
    _quick("json", "quick-json", preset, minutes, steps, seed, device, precision, compile, out, resume, json_out)


@app.command("quick-python")
def quick_python(
    preset: PresetOpt = None, minutes: MinutesOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, compile: CompileOpt = None,
    out: OutOpt = "runs", resume: ResumeOpt = None, json_out: JsonOpt = False,
) -> None:
    """Train a tiny BitNet on small Python programs (def, if/else, for/while, return, print).

    Every 100 steps, 64 programs sampled at temperature 1 after `def ` are scored: the share that
    `ast.parse` accepts, the share consistently indented, and the share whose functions run (a
    whitelisted syntax only, limited builtins, step and time limits). PASS (exit 0) when all three
    clear their bars (see the README); otherwise as in quick-arith.
    """
    _quick("python", "quick-python", preset, minutes, steps, seed, device, precision, compile, out, resume,
           json_out)


tokenizer_app = typer.Typer(help="Train or check the tokenizers used for real text.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
DataOpt = Annotated[str, typer.Option(
    help="Stories: a hub dataset name (needs the network once, then the datasets cache), a TinyStories .txt "
         "(stories separated by a line <|endoftext|>), a .jsonl with a 'text' field, a .parquet, a folder from "
         "datasets' save_to_disk, or synthetic[:N] (generated stories, offline).")]


@tokenizer_app.command("train")
def tokenizer_train(
    out: Annotated[str, typer.Option(help="Where to write tokenizer.json.")],
    data: DataOpt = "roneneldan/TinyStories",
    vocab: Annotated[int, typer.Option(help="Vocabulary size, specials included.")] = 2048,
    stories: Annotated[int, typer.Option(help="Train on this many stories.")] = 20000,
    kind: Annotated[str, typer.Option(help="bpe (byte-level, exact round trip), chars (an alphabet of the most "
                                      "frequent characters plus <|unk|>), or auto (chars below 260 tokens).")] = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Train a tokenizer on stories and check its round trip on held-out ones.

    Specials: <|pad|> 0, <|bos|> 1, <|endoftext|> 2 (ends every story). Byte-level BPE decodes
    every text exactly; below 260 tokens (the 1m preset's 192) a character alphabet with <|unk|> is
    used and the share of characters it loses is reported.
    """
    from itertools import islice
    from pathlib import Path

    from bitcheck import tokenizer as toks
    from bitcheck.textdata import TextDataError, open_source

    if vocab < 8 or vocab > 65535:
        _fail_usage(f"--vocab must be between 8 and 65535, got {vocab}")
    try:
        source = open_source(data)
        seen = [0]

        def counted():
            for text in islice(source.stories("train"), stories):
                seen[0] += 1
                yield text
        tok = toks.train(counted(), vocab, kind)
        lost, checked = toks.lost_share(tok, islice(source.stories("val"), 200))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        tok.save(out)
    except (toks.TokenizerError, TextDataError) as e:
        _fail_usage(str(e))
        return
    result = {"out": out, "data": source.name, "vocab_size": tok.get_vocab_size(), "stories": seen[0],
              "kind": kind, "lost_char_share": lost, "chars_checked": checked}
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        Console().print(f"wrote {out}: {tok.get_vocab_size()} tokens from {seen[0]:,} stories of {source.name}; "
                        f"round trip on {checked:,} "
                        f"held-out characters lost {lost:.4%}", highlight=False)


@app.command()
def tinystories(
    steps: Annotated[Optional[int], typer.Option(
        help="Training steps, the schedule's horizon (default 30000; on --resume the run's own).")] = None,
    preset: Annotated[str, typer.Option(help="Model preset: 12m (2048 BPE), 5m, 1m (192 characters).")] = "12m",
    data: DataOpt = "roneneldan/TinyStories",
    tokenizer: Annotated[Optional[str], typer.Option(
        help="A tokenizer.json whose vocabulary matches the preset. Default: train one on the data and cache it.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(
        help="Cache of tokenizers and uint16 token files (default `data`; on --resume the run's own).")] = None,
    tokenizer_stories: Annotated[int, typer.Option(help="Stories to train the tokenizer on (without --tokenizer).")] = 20000,
    max_stories: Annotated[Optional[int], typer.Option(help="Tokenise at most this many training stories.")] = None,
    batch: Annotated[int, typer.Option(help="Global batch (split over torchrun processes).")] = 32,
    seq: Annotated[int, typer.Option(help="Tokens per sequence.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (two-stage schedule).")] = 1.5e-3,
    warmup: Annotated[int, typer.Option(help="Warmup steps.")] = 250,
    eval_every: Annotated[int, typer.Option(help="Validation loss and bits per byte every N steps.")] = 500,
    sample_every: Annotated[int, typer.Option(help="Samples for the seed's prompts every N steps (0: only at the end).")] = 1000,
    minutes: MinutesOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the model.")] = False,
    out: OutOpt = "runs", resume: ResumeOpt = None, json_out: JsonOpt = False,
) -> None:
    """Train a BitNet on TinyStories (or your stories) and judge it by its validation loss curve,
    bits per byte, samples and the probes.

    Defaults are the seed design's: 12m preset, LR 1.5e-3 two-stage with 250 warmup steps, weight
    decay 0.1 then 0, betas 0.9/0.95, clip 1.0. PASS (exit 0) when validation bits per byte reach
    the bar and every probe is healthy; UNDERTRAINED while the validation loss still falls; MODEL TOO
    SMALL when it plateaus above the bar. Multi-GPU/multi-node: `torchrun --nproc_per_node N -m
    bitcheck tinystories ...` (DDP; gloo on CPU). Ctrl-C or SIGTERM saves and reports (exit 130).
    """
    from bitcheck.textdata import TextDataError
    from bitcheck.tinystories import StoriesOptions, run_stories
    from bitcheck.tokenizer import TokenizerError

    for name, v in (("--steps", steps), ("--batch", batch), ("--seq", seq), ("--eval-every", eval_every)):
        if v is not None and v <= 0:
            _fail_usage(f"{name} must be positive, got {v}")
    if minutes is not None and minutes <= 0:
        _fail_usage(f"--minutes must be positive, got {minutes}")
    _interrupt_on_sigterm()
    opts = StoriesOptions(steps=steps, preset=preset, data=data, data_dir=data_dir, tokenizer=tokenizer,
                          tokenizer_stories=tokenizer_stories,
                          max_stories=max_stories, batch=batch, seq=seq, lr=lr, warmup=warmup, eval_every=eval_every,
                          sample_every=max(sample_every, 0), minutes=minutes, seed=seed, device=device,
                          precision=precision, compile=compile, out=out, progress=sys.stderr.isatty())
    try:
        report, code = run_stories(opts, resume=resume)
    except (ConfigError, RunDirError, TextDataError, TokenizerError) as e:
        _fail_usage(str(e))
        return
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        raise typer.Exit(code)
    _show(report, json_out, code)


@app.command()
def diagnose(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint: ours (checkpoint.pt), a PyTorch state dict "
                                              "(raw or nested under model / model_state_dict / state_dict), or "
                                              ".safetensors.")],
    out: Annotated[Optional[str], typer.Option(help="Also write report.{json,md,html} into this new folder.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Your model code, as module.path:factory; factory(CHECKPOINT) returns the loaded model, "
                        "(model, tokenizer), or a dict with 'model' and optional 'tokenizer', 'sampler', "
                        "'generate', 'incremental_logits', 'fresh_model', 'inference_model', 'block_size'. "
                        "Imported from the current folder.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(
        help="The model's tokenizer: a `tokenizers` JSON file, a Hugging Face tokenizer folder, or a "
             "SentencePiece .model (with sentencepiece installed). Needs --model.")] = None,
    text: Annotated[Optional[str], typer.Option(
        help="A UTF-8 file of the model's training text: batches, prompts and the reference for its samples. "
             "Needs --model and a tokenizer.")] = None,
    layers: Annotated[Optional[str], typer.Option(
        help="Regex over module names for your quantized layers, when their class name lacks 'BitLinear'.")] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Probe a saved BitNet and give a verdict, without training.

    Our checkpoints: every probe that applies, the task score, and the decision tree. Your own model
    (--model): the dynamic probes on your code (STE gradients, quantization applied, causality,
    numerics, overfitting one batch; with --tokenizer and --text also the data round trip and your
    model's samples). Foreign files without model code: the tensor probes (NaN/Inf, latent weights
    and dead rows, the Hugging Face packed layout and its scale convention). The input file is never
    modified. Exit 0 PASS, 1 FAIL, 2 for a bad file, factory, tokenizer or text.
    """
    from bitcheck.diagnose import DiagnoseError
    from bitcheck.diagnose import diagnose as run_diagnose
    from bitcheck.report import write_report

    factory = _import_object(model, "--model") if model else None
    try:
        report, code = run_diagnose(checkpoint, device=device, factory=factory, tokenizer=tokenizer, text=text,
                                    layers=layers)
        if out:
            target = empty_output_dir(out)
            report["run_dir"] = str(target)
            write_report(RunDir(target), report)
    except (DiagnoseError, RunDirError) as e:
        _fail_usage(str(e))
        return
    _show(report, json_out, code)


@app.command()
def export(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint written by bitcheck (checkpoint.pt).")],
    out: Annotated[str, typer.Option(help="New folder for model.safetensors and manifest.json.")],
    json_out: JsonOpt = False,
) -> None:
    """Pack the ternary weights 2 bits each (Hugging Face BitNet layout, weight_scale = 1/mean|W|)
    with the other tensors and a JSON manifest, then check the packed integer inference path
    against the training forward (the parity probe). Exit 0 when parity holds, 1 when it does not,
    2 for a bad CHECKPOINT or --out.
    """
    from bitcheck.export import ExportError, export_checked

    try:
        checked = export_checked(checkpoint, out)
    except ExportError as e:
        _fail_usage(str(e))
        return
    manifest, parity = checked["manifest"], checked["parity"]
    result = {"command": "export", "out": out, **checked}
    b = manifest["bytes"]
    if json_out:
        typer.echo(json.dumps(clean(result), indent=2))
    else:
        console = Console()
        console.print(f"exported {len(manifest['layers'])} packed layers to {out}: {b['packed_file']:,} bytes vs "
                      f"{b['fp32_weights']:,} fp32 ({b['ratio_vs_fp32']:.1%}); checkpoint file "
                      f"{b['checkpoint_file']:,} bytes", highlight=False)
        color = "green" if parity["status"] == "PASS" else "red"
        console.print(f"[{color}]{parity['status']}[/] inference_parity: {parity['message']}", highlight=False)
    raise typer.Exit(0 if parity["status"] == "PASS" else 1)


def _import_object(spec: str, what: str):
    """'package.module:Name' -> the object; a bad spec, module or name is a usage error."""
    import importlib
    import os

    if ":" not in spec or not all(spec.split(":", 1)):
        _fail_usage(f"{what} {spec!r} must look like module.path:Name")
    module_name, attr = spec.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own code, run from their project
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure of user code is their error to read
        _fail_usage(f"cannot import {module_name!r} for {what}: {type(e).__name__}: {e}")
    if not hasattr(module, attr):
        _fail_usage(f"module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


@app.command()
def conform(
    layer: Annotated[str, typer.Argument(help="Your quantized linear layer, as module.path:LayerClass, built "
                                         "as LayerClass(in_features, out_features).")],
    factory: Annotated[Optional[str], typer.Option(help="module.path:function(in_features, out_features) -> "
                                                   "layer, when the class needs more arguments.")] = None,
    examples: Annotated[int, typer.Option(help="Hypothesis examples per property.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Run the BitNet b1.58 property tests against YOUR BitLinear (hypothesis, shrunk counterexamples).

    Properties: ternary weights times one scale; the mean|W| scale convention with ties rounded to
    even; per-token int8 activations; STE gradients equal the reference; finite on all-zero rows;
    deterministic. Each failure prints hypothesis' minimal example and the fix. Exit 0 when all
    hold, 1 when any fails, 2 for a bad LAYER or --factory.
    """
    from probes.conform import check_layer

    if examples <= 0:
        _fail_usage(f"--examples must be positive, got {examples}")
    cls = _import_object(layer, "LAYER")
    make = _import_object(factory, "--factory") if factory else cls
    results = [r.to_dict() for r in check_layer(lambda i, o: make(i, o), max_examples=examples)]
    failed = [r for r in results if r["status"] != "PASS"]
    if json_out:
        typer.echo(json.dumps({"command": "conform", "layer": layer, "properties": results}, indent=2))
    else:
        from rich.table import Table
        console = Console()
        table = Table(title=f"bitcheck conform {layer}")
        for col in ("property", "status", "message"):
            table.add_column(col)
        for r in results:
            table.add_row(r["name"], f"[{'green' if r['status'] == 'PASS' else 'red'}]{r['status']}", r["message"])
        console.print(table)
        for r in failed:
            console.print(f"[bold red]{r['name']}[/]: minimal counterexample {json.dumps(r['counterexample'])}",
                          highlight=False, soft_wrap=True)
            console.print(f"  fix: {r['hint']}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if failed else 0)


@app.command()
def report(
    run_dir: Annotated[str, typer.Argument(help="A run directory (holds report.json).")],
    format: Annotated[Optional[str], typer.Option("--format", help="md, html or json on stdout; "
                                                  "default: the terminal summary.")] = None,
) -> None:
    """Re-render the report of any run: terminal summary, Markdown, HTML or JSON on stdout.

    Exit 0 if the run's verdict is PASS, 1 if FAIL, 2 if RUN_DIR holds no readable report.
    """
    from pathlib import Path


    if format not in (None, "md", "html", "json"):
        _fail_usage(f"unknown format {format!r}; choose md, html or json")
    run = RunDir(Path(run_dir))
    try:
        data = json.loads(run.report_json.read_text())
        if not isinstance(data.get("verdict"), dict) or "status" not in data["verdict"] or "metrics" not in data:
            raise KeyError("verdict.status / metrics missing")
    except FileNotFoundError:
        _fail_usage(f"{run_dir} has no report.json (is it a bitcheck run directory?)")
    except (ValueError, KeyError, TypeError) as e:
        _fail_usage(f"{run.report_json} is not a readable bitcheck report ({e})")
    if format == "json":
        typer.echo(json.dumps(clean(data), indent=2))
    elif format == "md":
        typer.echo(render_markdown(data))
    elif format == "html":
        typer.echo(render_html(data, run.read_jsonl(run.metrics), run.read_jsonl(run.evals)))
    else:
        render_terminal(data, Console())
    raise typer.Exit(0 if data["verdict"]["status"] == "PASS" else 1)


@app.command()
def selftest(
    seeds: Annotated[int, typer.Option(help="Healthy seeds to check for false alarms.")] = 3,
    bugs: Annotated[Optional[str], typer.Option(help="Comma-separated bugs to plant (default: all).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="One seed and the quick subset of bugs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Prove the probes: plant each known bug into a small healthy BitNet and check that the
    decision tree names the right part; count false alarms on healthy seeds.

    Exit 0 if every bug is caught and attributed and no healthy seed raises an alarm, else 1.
    """
    from bitcheck.selftest import BUGS, FAST_BUGS, run_selftest

    err = Console(stderr=True)
    if seeds <= 0:
        _fail_usage(f"--seeds must be positive, got {seeds}")
    names = list(FAST_BUGS) if fast and bugs is None else ([b.strip() for b in bugs.split(",")] if bugs else None)
    unknown = [b for b in names or [] if b not in BUGS]
    if unknown:
        _fail_usage(f"unknown bug(s) {', '.join(unknown)}; choose from {', '.join(BUGS)}")
    result = run_selftest(seeds=tuple(range(1 if fast else seeds)), bugs=names,
                          progress=lambda msg: err.print(f"[dim]selftest: {msg}[/]"))
    if json_out:
        typer.echo(json.dumps(clean(result), indent=2))
    else:
        from rich.table import Table
        table = Table(title="bitcheck selftest")
        for col in ("case", "probes that fired", "verdict", "part named", "right"):
            table.add_column(col, overflow="fold")
        for row in result["bugs"] + result["healthy"]:
            table.add_row(row["case"], ", ".join(row["fired"]) or "-", row["verdict"], str(row["part"] or "-"),
                          "[green]yes[/]" if row["right"] else "[red]NO[/]")
        console = Console()
        console.print(table)
        console.print(f"missed: {', '.join(result['missed']) or 'none'}; "
                      f"false alarms: {', '.join(result['false_alarms']) or 'none'}")
    raise typer.Exit(0 if result["ok"] else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
