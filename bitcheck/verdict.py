"""From a run's metrics to one verdict: PASS or FAIL, a diagnosis, and next steps.

The Core issue's verdict judges the synthetic task only; the Probes issue grows this into the
seed design's full decision tree. The verdict is plain data: renderers live in report.py.
"""
from __future__ import annotations

# How far above ln(vocab) the first loss may sit before the init itself is the suspect. The model
# tests measure 0.02-0.08 nats for our presets; a tied N(0, 1) embedding gives tens of nats.
INIT_LOSS_TOLERANCE = 0.5


def task_verdict(metrics: dict, passed: bool, run_dir: str = "RUN_DIR") -> dict:
    acc = metrics.get("accuracy", {})
    gate = metrics.get("pass_groups", [])
    bar = metrics.get("pass_accuracy", 0.9)
    shown = ", ".join(f"{g} {acc.get(g, 0.0):.1%}" for g in gate)
    if passed:
        return {"status": "PASS",
                "diagnosis": f"The model learned the task: {shown} (bar {bar:.0%}) after {metrics['steps']} steps. "
                             "Training infrastructure works end to end on this task.",
                "next_steps": ["Move to a harder task (quick-json, quick-python) or to real data."]}
    stopped = metrics.get("stopped")
    init, ln_v = metrics.get("loss_at_init"), metrics.get("ln_vocab")
    if stopped == "interrupted":
        return {"status": "FAIL",
                "diagnosis": f"Interrupted at step {metrics['steps']} before the task passed ({shown}).",
                "next_steps": [f"Continue with --resume {run_dir}."]}
    if stopped == "nonfinite":
        return {"status": "FAIL",
                "diagnosis": f"The loss became NaN/Inf at step {metrics['steps']}: a numerics bug.",
                "next_steps": ["Check quantizer scales for division by zero (absmax of an all-zero row).",
                               "Lower the learning rate; try --precision fp32."]}
    if init is not None and ln_v is not None and init > ln_v + INIT_LOSS_TOLERANCE:
        return {"status": "FAIL",
                "diagnosis": f"Loss at init {init:.2f} is far above ln(vocab) = {ln_v:.2f}: the initialisation "
                             "makes confident wrong predictions before any training.",
                "next_steps": ["Initialise embeddings and output weights small (std ~0.02).",
                               "Check that the logits are not scaled up (tied head on unnormalised states)."]}
    return {"status": "FAIL",
            "diagnosis": f"The task did not reach {bar:.0%} on {', '.join(gate)} within the budget "
                         f"({shown} after {metrics['steps']} steps, stopped by {stopped}).",
            "next_steps": ["Give it more steps or minutes; if the loss has plateaued, suspect the infrastructure.",
                           "Run the probes on the checkpoint to localise a bug (quantization, STE, data)."]}
