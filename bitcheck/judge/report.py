"""Renderers: a report dict to report.json, report.md, a self-contained report.html with embedded
plots, a loss-curve PNG, and a rich terminal summary. Results know nothing of rendering; everything
here only reads them.

Schema (extends the Core issue's, never breaks it):
  {"command", "verdict": {"status", "category", "part", "diagnosis", "evidence", "next_steps"},
   "metrics": {...}, "probes": [{"name", "status", "value", "thresholds", "message", "hint", "branch",
   "details"}], "run_dir"}
"""
from __future__ import annotations

import base64
import html
import io
import json
import math

from bitcheck.bitnet.rundir import RunDir, atomic_write_text
from bitcheck.errors import UserError

STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "ERROR": "red", "SKIP": "dim"}
SUMMARY_METRICS = ("preset", "params", "steps", "stopped", "elapsed_s", "tokens_per_s", "loss_at_init",
                   "ln_vocab", "final_loss", "accuracy", "val_loss", "val_bpb", "learned", "text_loss",
                   "unigram_entropy", "log", "loss_used", "tokens")
NOT_IN_TABLES = ("failures", "samples", "curve", "reference_run", "bisection")  # own sections, plots, evidence


def clean(obj):
    """JSON-safe copy: non-finite floats become the strings "inf", "-inf", "nan" (strict JSON has none)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def write_report(run: RunDir, report: dict) -> None:
    atomic_write_text(run.report_json, json.dumps(clean(report), indent=2) + "\n")
    atomic_write_text(run.report_md, render_markdown(report))
    scalars, evals = run.read_jsonl(run.metrics), run.read_jsonl(run.evals)
    # the loss and fit plots are drawn once, for their PNG files and the HTML alike (drawing is most of a
    # report's cost: ~0.3 s a figure)
    pngs = {}
    if scalars or any("val_loss" in e for e in evals):  # a log of validation loss alone is plotted too
        pngs[LOSS_TITLE] = _png(loss_figure(scalars, evals))
        run.loss_png.write_bytes(pngs[LOSS_TITLE])
    fit = _probe(report, "loss_extrapolation").get("details", {}).get("fit")
    if fit:  # bitcheck curve: the fit and its extrapolation beside the plain loss plot
        pngs[FIT_TITLE] = _png(curve_figure(fit, _probe(report, "loss_spikes")))
        (run.path / "curve_fit.png").write_bytes(pngs[FIT_TITLE])
    atomic_write_text(run.report_html, render_html(report, scalars, evals, pngs))


def read_report(run: RunDir) -> dict:
    """A run directory's report.json; a missing or foreign one is a UserError naming the problem."""
    try:
        data = json.loads(run.report_json.read_text())
        if not isinstance(data.get("verdict"), dict) or "status" not in data["verdict"] or "metrics" not in data:
            raise KeyError("verdict.status / metrics missing")
    except FileNotFoundError:
        raise UserError(f"{run.path} has no report.json (is it a bitcheck run directory?)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{run.report_json} is not a readable bitcheck report ({e})") from None
    return data


def key_value(value) -> str:
    """A probe value in a table cell: numbers compactly, dicts as k=v pairs."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={key_value(v)}" for k, v in value.items() if not k.endswith("_low"))
    return "" if value is None else str(value)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _headline(v: dict) -> str:
    cat = v.get("category", v["status"])
    return f"{v['status']}: {cat}" + (f" ({v['part']})" if v.get("part") else "")


def _role(e: dict) -> str:
    return " (also failing)" if e.get("role") == "also failing" else ""


def render_markdown(report: dict) -> str:
    v, m = report["verdict"], report["metrics"]
    lines = [f"# bitcheck {report['command']}: {_headline(v)}", "", v["diagnosis"], ""]
    if v.get("evidence"):
        lines += ["## Evidence", ""] + [f"- **{e['probe']}** {e['status']}{_role(e)}: {e['message']}"
                                       for e in v["evidence"]]
        lines.append("")
    lines += ["## Next steps", ""] + [f"- {s}" for s in v["next_steps"]]
    if report.get("probes"):
        lines += ["", "## Probes", "", "| probe | status | value | message | hint |", "| --- | --- | --- | --- | --- |"]
        for p in report["probes"]:
            cells = (p["name"], p["status"], key_value(p.get("value")), p.get("message", ""), p.get("hint", ""))
            lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(val)} |" for k, val in m.items() if k not in NOT_IN_TABLES]
    if m.get("samples"):
        lines += ["", "## Samples", ""] + [f"- `{s['generated_text']!r}`" for s in m["samples"]]
    if m.get("failures"):
        lines += ["", "## Wrong answers (first few)", "", "| prompt | expected | got |", "| --- | --- | --- |"]
        lines += [f"| `{f['prompt']}` | `{f['expected']}` | `{f['got']!r}` |" for f in m["failures"]]
    if report.get("run_dir"):
        lines += ["", f"Run directory: `{report['run_dir']}`", ""]
    return "\n".join(lines)


# ---- plots ---------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    return plt


def _close(fig) -> None:
    _plt().close(fig)


def loss_figure(scalars: list[dict], evals: list[dict]):
    """The training loss (scalars' "loss"), the validation loss where evals log one ("val_loss") and the
    held-out accuracy per group where they log a score, against the step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [r for r in scalars if isinstance(r.get("loss"), (int, float))]
    val = [r for r in evals if isinstance(r.get("val_loss"), (int, float))]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], ".-", ms=3, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_yscale("log")
    groups = sorted({g for e in evals for g in (e.get("score") or {}).get("per_group", {})})
    if groups:
        ax2 = ax.twinx()
        for g in groups:
            ax2.plot([e["step"] for e in evals if "score" in e],
                     [e["score"]["per_group"].get(g, 0.0) for e in evals if "score" in e],
                     linestyle="--", marker=".", label=f"held-out acc {g}")
        ax2.set_ylabel("held-out accuracy")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("training and validation loss" if train and val else "validation loss" if val else "training loss")
    fig.tight_layout()
    return fig


def _probe(report: dict, name: str) -> dict:
    return next((p for p in report.get("probes", []) if p["name"] == name), {})


LOSS_TITLE, FIT_TITLE = "Loss curve", "Loss curve, fit and extrapolation"


def probe_figures(report: dict, pngs: dict | None = None) -> list[tuple[str, object]]:
    """(title, figure) for the per-layer plots the probes' details allow; `pngs`: figures already drawn
    (title -> PNG bytes), used in their place."""
    pngs = pngs or {}
    plt = _plt()
    figs = []
    layers = _probe(report, "ternary_distribution").get("details", {}).get("layers", {})
    if layers:
        names = list(layers)
        fig, ax = plt.subplots(figsize=(7, 0.25 * len(names) + 1.2))
        left = [0.0] * len(names)
        for key, color in (("minus", "#c44"), ("zero", "#bbb"), ("plus", "#48c")):
            vals = [layers[n][key] for n in names]
            ax.barh(names, vals, left=left, color=color, label={"minus": "-1", "zero": "0", "plus": "+1"}[key])
            left = [a + b for a, b in zip(left, vals)]
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=6)
        ax.legend(fontsize=7, ncol=3, loc="lower right")
        ax.set_title("ternary codes per layer")
        fig.tight_layout()
        figs.append(("Ternary distribution per layer", fig))
    norms = _probe(report, "ste_gradient_flow").get("details", {}).get("grad_norm", {})
    if norms:
        fig, ax = plt.subplots(figsize=(7, 0.25 * len(norms) + 1.2))
        ax.barh(list(norms), [max(v, 1e-30) for v in norms.values()], color="#48c")
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title("gradient norm per quantized layer (one backward)")
        fig.tight_layout()
        figs.append(("Gradient norm per layer", fig))
    flips = _probe(report, "ternary_distribution").get("details", {}).get("flip_rates", [])
    if flips:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot([f["step"] for f in flips], [f["rate"] for f in flips], marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("share of codes flipped")
        ax.set_title("ternary flip rate between snapshots")
        fig.tight_layout()
        figs.append(("Flip rate over training", fig))
    fit = _probe(report, "loss_extrapolation").get("details", {}).get("fit")
    if fit:
        figs.append((FIT_TITLE, pngs.get(FIT_TITLE) or curve_figure(fit, _probe(report, "loss_spikes"))))
    schedule = (_probe(report, "schedule_shape") or _probe(report, "logged_schedule")).get("details", {})
    if schedule.get("applied"):
        fig, ax = plt.subplots(figsize=(7, 3))
        # a log without weight decay is compared on its LR only (its rows carry the intended value, marked
        # "weight_decay_logged": False): no weight-decay line it never logged
        wd = any(r.get("weight_decay_logged", True) and r.get("weight_decay") is not None for r in schedule["applied"])
        ax2 = ax.twinx() if wd else None
        for rows, style, who in ((schedule["intended"], "--", "intended"), (schedule["applied"], "-", "applied")):
            ax.plot([r["step"] for r in rows], [r["lr"] for r in rows], style, color="#48c", label=f"LR {who}")
            if ax2 is not None:
                ax2.plot([r["step"] for r in rows], [r["weight_decay"] for r in rows], style, color="#c84",
                         label=f"weight decay {who}")
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.legend(loc="upper right", fontsize=7)
        if ax2 is not None:
            ax2.set_ylabel("weight decay")
            ax2.legend(loc="lower left", fontsize=7)
        ax.set_title("your schedule: applied vs intended")
        fig.tight_layout()
        figs.append(("Learning rate" + (" and weight decay" if wd else "") + ", applied vs intended", fig))
    ref = report.get("metrics", {}).get("reference_run")
    if ref and ref.get("curve"):
        fig, ax = plt.subplots(figsize=(7, 3))
        mine = report.get("metrics", {}).get("curve") or []
        for rows, style, who in ((ref["curve"], "--", "bitcheck's BitNet"), (mine, "-", "yours")):
            groups = sorted({k for r in rows for k in r if k != "step"})
            for g in groups:
                ax.plot([r["step"] for r in rows], [r.get(g, 0.0) for r in rows], style, marker=".",
                        label=f"{who}: {g}")
        ax.set_xlabel("step")
        ax.set_ylabel("held-out score")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.set_title("your model vs bitcheck's BitNet of the same shape, same recipe")
        fig.tight_layout()
        figs.append(("Held-out score: yours vs the reference", fig))
    return figs


def curve_figure(fit: dict, spikes: dict):
    """The logged loss, the fitted law over its window, the predictions at 2x and 10x (+- 2 sd) and the
    spikes (probes/curve.py's details), against steps on a log axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    raw = fit.get("raw", [])
    ax.plot([r["step"] for r in raw], [r["loss"] for r in raw], color="#bbb", lw=0.8, label=f"{fit['loss_key']} (logged)")
    pts = fit["binned"]
    ax.plot([p["step"] for p in pts], [p["loss"] for p in pts], ".", color="#48c", ms=4, label="fitted window (binned)")
    ax.plot([p["step"] for p in pts], [p["fit"] for p in pts], "-", color="#c84", label="fit")
    end = pts[-1]["step"]
    for k, key in ((2, "2x"), (10, "10x")):
        ax.errorbar([end * k], [fit[f"loss_{key}"]], yerr=[2 * fit[f"gain_{key}_sd"]], fmt="o", color="#c84",
                    capsize=3)
        ax.annotate(f"{key}: {fit[f'loss_{key}']:.3f}", (end * k, fit[f"loss_{key}"]), textcoords="offset points",
                    xytext=(4, 6), fontsize=7)
    ax.axhline(fit["floor"], ls=":", color="#888", label=f"fitted floor {fit['floor']:.3f}")
    for i, sp in enumerate((spikes.get("details") or {}).get("spikes", [])):
        ax.axvline(sp["step"], color="#c44", lw=0.8, alpha=0.6, label="spike" if i == 0 else None)
    ax.set_xscale("log")
    losses = [p["loss"] for p in pts] + [fit["loss_10x"]]
    lo, hi = min(losses), max(losses)
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.6 * (hi - lo + 1e-3))
    ax.set_xlabel(f"step (log scale; {fit['x_unit']} = step x tokens per step)" if fit["x_unit"] == "tokens" else "step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    which = "validation loss" if fit["loss_key"] == "val_loss" else "training loss"
    ax.set_title(f"{which} (the one fitted): saturating power-law fit and extrapolation")
    fig.tight_layout()
    return fig


def _png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _close(fig)
    return buf.getvalue()


def _png_b64(fig_or_png) -> str:
    return base64.b64encode(fig_or_png if isinstance(fig_or_png, bytes) else _png(fig_or_png, dpi=90)).decode()


def sentences(text: str) -> list[str]:
    """A verdict's diagnosis as its sentences (split after '.', ':' or ';' then a space and a capital letter, never
    inside parentheses or quotes), so a page shows it in short lines rather than one block."""
    out, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch in "'`" and (i == 0 or not text[i - 1].isalnum()) or ch in "'`" and quote:
            quote = not quote
        elif (ch in ".:;" and depth == 0 and not quote and text[i + 1:i + 2] == " " and text[i + 2:i + 3].isupper()):
            out.append(text[start:i + 1].strip())
            start = i + 1
    out.append(text[start:].strip())
    return [s for s in out if s]


def render_html(report: dict, scalars: list[dict], evals: list[dict], pngs: dict | None = None) -> str:
    """One self-contained page: verdict, probes table, metrics, and the plots as inline PNGs (`pngs`: plots
    already drawn, title -> PNG bytes)."""
    v, m = report["verdict"], report["metrics"]
    e = html.escape
    color = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "ERROR": "#cf222e", "SKIP": "#6e7781"}
    rows = "".join(
        f"<tr><td>{e(p['name'])}</td><td style='color:{color.get(p['status'], '#000')};font-weight:bold'>"
        f"{p['status']}</td><td>{e(key_value(p.get('value')))}</td><td>{e(p.get('message', ''))}</td>"
        f"<td>{e(p.get('hint', ''))}</td></tr>" for p in report.get("probes", []))
    metrics = "".join(f"<tr><td>{e(k)}</td><td>{e(_fmt(val))}</td></tr>" for k, val in m.items()
                      if k not in NOT_IN_TABLES)
    metrics += "".join(f"<tr><td>sample</td><td>{e(s['generated_text'])}</td></tr>" for s in m.get("samples", []))
    pngs = pngs or {}
    figs = ([(LOSS_TITLE, pngs.get(LOSS_TITLE) or loss_figure(scalars, evals))]
            if scalars or any("val_loss" in r for r in evals) else []) \
        + probe_figures(report, pngs)
    plots = "".join(f"<h3>{e(t)}</h3><img alt='{e(t)}' src='data:image/png;base64,{_png_b64(f)}'>" for t, f in figs)
    steps = "".join(f"<li>{e(s)}</li>" for s in v["next_steps"])
    run_line = f"<p>Run directory: <code>{e(report['run_dir'])}</code></p>" if report.get("run_dir") else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bitcheck {e(report['command'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}
.verdict{{border:3px solid {color.get(v['status'], '#000')};padding:0.5em 1em;border-radius:6px}}</style></head>
<body><h1>bitcheck {e(report['command'])}</h1>
<div class="verdict"><h2 style="color:{color.get(v['status'], '#000')}">{e(_headline(v))}</h2>
{"".join(f"<p>{e(line)}</p>" for line in sentences(v['diagnosis']))}<ul>{steps}</ul></div>
<h2>Probes</h2><table><tr><th>probe</th><th>status</th><th>value</th><th>message</th><th>hint</th></tr>{rows}</table>
<h2>Metrics</h2><table>{metrics}</table><h2>Plots</h2>{plots}
{run_line}</body></html>
"""


def _collapse_skips(probes: list[dict]) -> list[dict]:
    """SKIPs that share a reason become one row naming them all (a tensors-only diagnosis skips fourteen
    probes for the same missing model code), in the place of the first."""
    by_reason: dict[str, list[str]] = {}
    for p in probes:
        if p["status"] == "SKIP":
            by_reason.setdefault(p.get("message", ""), []).append(p["name"])
    rows, done = [], set()
    for p in probes:
        reason = p.get("message", "")
        if p["status"] != "SKIP" or len(by_reason[reason]) == 1:
            rows.append(p)
        elif reason not in done:
            done.add(reason)
            rows.append({"name": ", ".join(by_reason[reason]), "status": "SKIP", "value": None, "message": reason})
    return rows


def render_terminal(report: dict, console) -> None:
    """A metrics table, a probes table and a verdict panel on the given rich console."""
    from rich.panel import Panel
    from rich.table import Table

    v, m = report["verdict"], report["metrics"]
    table = Table(title=f"bitcheck {report['command']}", show_header=True)
    table.add_column("metric")
    table.add_column("value")
    for key in SUMMARY_METRICS:
        if key in m:
            table.add_row(key, _fmt(m[key]))
    console.print(table)
    for sample in m.get("samples", []):
        console.print(f"[bold]sample[/] {sample['generated_text'][:300]!r}", highlight=False)
    if report.get("probes"):
        pt = Table(title="probes", show_header=True)
        for col in ("probe", "status", "key value", "message"):
            pt.add_column(col, overflow="fold")
        for p in _collapse_skips(report["probes"]):
            style = STATUS_STYLE.get(p["status"], "")
            value = p.get("value")
            if isinstance(value, dict):  # the first entry is the probe's headline figure
                value = dict(list(value.items())[:1])
            pt.add_row(p["name"], f"[{style}]{p['status']}[/]", key_value(value), p.get("message", ""))
        console.print(pt)
    style = STATUS_STYLE.get(v["status"], "red")
    body = v["diagnosis"] + "\n\nNext steps:\n" + "\n".join(f"  - {s}" for s in v["next_steps"])
    if report.get("run_dir"):
        body += f"\n\nRun directory: {report['run_dir']}"
    console.print(Panel(body, title=f"[bold {style}]{_headline(v)}", border_style=style))


# ---- terminal renderers of the other commands (each reads its command's result dict) ---------------

def render_presets(rows: list[dict], console) -> None:
    """`bitcheck presets`: one row per preset with its exact parameter count."""
    from rich.table import Table
    table = Table(title="bitcheck presets")
    for col in ("name", "params", "vocab", "d_model", "layers", "heads", "kv", "ffn", "ctx"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", str(r["vocab_size"]) + ("*" if r["vocab_from_tokenizer"] else ""),
                      str(r["n_embd"]), str(r["n_layer"]), str(r["n_head"]), str(r["n_kv_head"]),
                      str(r["ffn_hidden"]), str(r["block_size"]))
    console.print(table)
    console.print("* vocabulary taken from the task's tokenizer; counted here with the arithmetic one (21).")
    for r in rows:
        console.print(f"  {r['name']}: {r['note']}", highlight=False)


def render_tokenizer(result: dict, console) -> None:
    """`bitcheck tokenizer train`: what was written and what its round trip loses."""
    console.print(f"wrote {result['out']}: {result['vocab_size']} tokens from {result['stories']:,} stories of "
                  f"{result['data']}; round trip on {result['chars_checked']:,} held-out characters lost "
                  f"{result['lost_char_share']:.4%}", highlight=False)


def render_export(result: dict, console) -> None:
    """`bitcheck export`: the files' size and the parity check."""
    manifest, parity = result["manifest"], result["parity"]
    b = manifest["bytes"]
    console.print(f"exported {len(manifest['layers'])} packed layers to {result['out']}: {b['packed_file']:,} bytes "
                  f"vs {b['fp32_weights']:,} fp32 ({b['ratio_vs_fp32']:.1%}); checkpoint file "
                  f"{b['checkpoint_file']:,} bytes", highlight=False)
    color = "green" if parity["status"] == "PASS" else "red"
    console.print(f"[{color}]{parity['status']}[/] inference_parity: {parity['message']}", highlight=False)


def render_conform(result: dict, console) -> None:
    """`bitcheck conform`: one row per property, then each failure's counterexample and fix."""
    from rich.table import Table
    table = Table(title=f"bitcheck conform {result['layer']}")
    for col in ("property", "status", "message"):
        table.add_column(col)
    for r in result["properties"]:
        table.add_row(r["name"], f"[{'green' if r['status'] == 'PASS' else 'red'}]{r['status']}", r["message"])
    console.print(table)
    console.print(_conform_found(result), highlight=False, soft_wrap=True)
    for r in result["properties"]:
        if r["status"] != "PASS":
            console.print(f"[bold red]{r['name']}[/]: minimal counterexample {json.dumps(r['counterexample'])}",
                          highlight=False, soft_wrap=True)
            console.print(f"  fix: {r['hint']}", highlight=False, soft_wrap=True)


def _conform_found(result: dict) -> str:
    found = result.get("found") or {}
    line = f"called on {found.get('input', '(N, in)')} inputs"
    if found.get("input_norm"):
        line += f"; a norm inside the layer ({found['input_norm']}): properties tested on its output"
    if found.get("cast_from"):
        line += f"; weights kept in {found['cast_from']}, tested in float32"
    return line


def conform_markdown(result: dict) -> str:
    """report.md of `bitcheck conform --out`: the property table, what was found, each failure's example."""
    lines = [f"# bitcheck conform {result['layer']}", "", _conform_found(result), "",
             "| property | status | message |", "|---|---|---|"]
    lines += [f"| {r['name']} | {r['status']} | {r['message'].replace('|', '/')} |" for r in result["properties"]]
    for r in result["properties"]:
        if r["status"] != "PASS":
            lines += ["", f"## {r['name']}", "", f"minimal counterexample: `{json.dumps(r['counterexample'])}`", "",
                      f"fix: {r['hint']}"]
    return "\n".join(lines) + "\n"


def render_selftest(result: dict, console) -> None:
    """`bitcheck selftest`: the matrix of planted bugs and healthy seeds."""
    from rich.table import Table
    table = Table(title="bitcheck selftest")
    for col in ("case", "probes that fired", "verdict", "part named", "right"):
        table.add_column(col, overflow="fold")
    for row in result["bugs"] + result["healthy"]:
        table.add_row(row["case"], ", ".join(row["fired"]) or "-", row["verdict"], str(row["part"] or "-"),
                      "[green]yes[/]" if row["right"] else "[red]NO[/]")
    console.print(table)
    console.print(f"missed: {', '.join(result['missed']) or 'none'}; "
                  f"false alarms: {', '.join(result['false_alarms']) or 'none'}")
