"""Renderers: a report dict (see the README's schema) to report.json, report.md, a loss-curve PNG,
and a rich terminal summary. Results know nothing of rendering; everything here only reads them.
"""
from __future__ import annotations

import json
import math

from bitcheck.rundir import RunDir, atomic_write_text


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
    scalars = run.read_jsonl(run.metrics)
    if scalars:
        plot_loss(scalars, run.read_jsonl(run.evals), run.loss_png)


def render_markdown(report: dict) -> str:
    v, m = report["verdict"], report["metrics"]
    lines = [f"# bitcheck {report['command']}: {v['status']}", "", v["diagnosis"], "", "## Next steps", ""]
    lines += [f"- {s}" for s in v["next_steps"]]
    lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
    for key, value in m.items():
        if key in ("failures",):
            continue
        lines.append(f"| {key} | {_fmt(value)} |")
    if m.get("failures"):
        lines += ["", "## Wrong answers (first few)", "", "| prompt | expected | got |", "| --- | --- | --- |"]
        lines += [f"| `{f['prompt']}` | `{f['expected']}` | `{f['got']}` |" for f in m["failures"]]
    if report.get("probes"):
        lines += ["", "## Probes", "", "| probe | status | value | message |", "| --- | --- | --- | --- |"]
        lines += [f"| {p['name']} | {p['status']} | {_fmt(p.get('value'))} | {p.get('message', '')} |"
                  for p in report["probes"]]
    lines += ["", f"Run directory: `{report['run_dir']}`", ""]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def plot_loss(scalars: list[dict], evals: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in scalars], [r["loss"] for r in scalars], label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_yscale("log")
    if evals and any("score" in e for e in evals):
        ax2 = ax.twinx()
        groups = sorted({g for e in evals for g in e.get("score", {}).get("per_group", {})})
        for g in groups:
            ax2.plot([e["step"] for e in evals], [e["score"]["per_group"].get(g, 0.0) for e in evals],
                     linestyle="--", marker=".", label=f"held-out acc {g}")
        ax2.set_ylabel("held-out accuracy")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_terminal(report: dict, console) -> None:
    """A verdict panel and a metrics table on the given rich console (stderr for humans)."""
    from rich.panel import Panel
    from rich.table import Table

    v, m = report["verdict"], report["metrics"]
    table = Table(title=f"bitcheck {report['command']}", show_header=True)
    table.add_column("metric")
    table.add_column("value")
    for key in ("preset", "params", "steps", "stopped", "elapsed_s", "tokens_per_s", "loss_at_init", "ln_vocab",
                "final_loss", "accuracy"):
        if key in m:
            table.add_row(key, _fmt(m[key]))
    console.print(table)
    style = "green" if v["status"] == "PASS" else "red"
    body = v["diagnosis"] + "\n\nNext steps:\n" + "\n".join(f"  - {s}" for s in v["next_steps"])
    body += f"\n\nRun directory: {report['run_dir']}"
    console.print(Panel(body, title=f"[bold {style}]{v['status']}", border_style=style))
