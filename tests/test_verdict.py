"""The decision tree: which verdict and part each combination of results leads to."""
from bitcheck.verdict import decide, loss_trend


def P(name, status, branch):
    return {"name": name, "status": status, "branch": branch, "value": 1.0, "message": f"{name} says {status}"}


HEALTHY = [P("quantization_applied", "PASS", "quantization"), P("sampler", "PASS", "generation"),
           P("update_ratio", "SKIP", "optimizer"), P("repetition", "WARN", "generation")]
FALLING = [{"step": i, "loss": 3.0 * 0.9 ** i} for i in range(30)]
FLAT = [{"step": i, "loss": 1.0 + 0.001 * (i % 2)} for i in range(30)]


def test_healthy_and_passed_is_ok():
    """All probes PASS/WARN/SKIP and the task passed: INFRASTRUCTURE OK, status PASS."""
    v = decide(HEALTHY, {"accuracy": {"+": 0.95}}, FALLING, True)
    assert (v["status"], v["category"], v["part"]) == ("PASS", "INFRASTRUCTURE OK", None)


def test_root_cause_order():
    """With several parts failing, the tree blames the root cause first (data before quantization)."""
    v = decide(HEALTHY + [P("ternary_distribution", "FAIL", "quantization"), P("data_decode", "FAIL", "data")],
               {}, FLAT, False)
    assert v["category"] == "INFRASTRUCTURE BUG" and v["part"] == "data/tokenizer"
    assert [e["probe"] for e in v["evidence"]] == ["data_decode"]


def test_error_counts_as_failure():
    """A probe that crashed is not silently healthy."""
    v = decide(HEALTHY + [P("nonfinite", "ERROR", "numerics")], {}, FLAT, True)
    assert v["part"] == "numerics" and v["status"] == "FAIL"


def test_generation_broken():
    """Only generation probes fail: GENERATION BROKEN, even if the task passed."""
    v = decide(HEALTHY + [P("kv_cache_parity", "FAIL", "generation")], {}, FALLING, True)
    assert v["category"] == "GENERATION BROKEN" and v["evidence"][0]["probe"] == "kv_cache_parity"


def test_gibberish_of_an_unlearned_model_is_not_generation_broken():
    """Sample-text probes failing before the task is learned point to training, not generation."""
    probes = HEALTHY + [P("gibberish", "FAIL", "generation")]
    assert decide(probes, {"steps": 30}, FALLING, False)["category"] == "UNDERTRAINED"
    assert decide(probes, {}, FALLING, True)["category"] == "GENERATION BROKEN"
    assert decide(probes + [P("sampler", "FAIL", "generation")], {}, FALLING, False)["category"] == "GENERATION BROKEN"


def test_undertrained_vs_too_small():
    """Task not passed with healthy probes: still-falling loss is UNDERTRAINED, a plateau is TOO SMALL."""
    assert loss_trend(FALLING) > 0.05 and abs(loss_trend(FLAT)) < 0.01
    assert decide(HEALTHY, {"steps": 30}, FALLING, False)["category"] == "UNDERTRAINED"
    assert decide(HEALTHY, {"steps": 30}, FLAT, False)["category"] == "MODEL TOO SMALL / TASK TOO HARD"
    assert decide(HEALTHY, {"steps": 3}, FLAT[:3], False)["category"] == "UNDERTRAINED"  # too short to judge


def test_run_level_facts():
    """A NaN loss during training is a numerics bug; Ctrl-C says how to resume."""
    assert decide(HEALTHY, {"stopped": "nonfinite", "steps": 7}, FLAT, False)["part"] == "numerics"
    v = decide(HEALTHY, {"stopped": "interrupted", "steps": 7}, FLAT, False, run_dir="runs/x")
    assert v["category"] == "INTERRUPTED" and "--resume runs/x" in v["next_steps"][0]


def test_ok_verdict_names_the_warnings():
    probes = [{"name": "gibberish", "status": "WARN", "branch": "generation"},
              {"name": "sampler", "status": "PASS", "branch": "generation"}]
    v = decide(probes, {}, [], True)
    assert v["category"] == "INFRASTRUCTURE OK" and v["diagnosis"].startswith("No probe failed (WARN: gibberish)")
    assert decide(probes[1:], {}, [], True)["diagnosis"].startswith("Every probe passed")


def test_self_deciding_runs():
    """Runs that stop when they stall say themselves whether they still improved: a run that stopped improving
    ("stalled") is never told to train longer, whatever its loss curve; a budget that ran out while
    the evaluations still improved is UNDERTRAINED, whatever its loss curve."""
    stalled = {"stopped": "stalled", "steps": 900, "improving": False, "stall": "no gain in the last 3"}
    v = decide(HEALTHY, stalled, FALLING, False)
    assert v["category"] == "MODEL TOO SMALL / TASK TOO HARD" and "no gain in the last 3" in v["diagnosis"]
    v = decide(HEALTHY, {"stopped": "time", "steps": 900, "elapsed_s": 900, "improving": True}, FLAT, False, "runs/x")
    assert v["category"] == "UNDERTRAINED" and "time budget" in v["diagnosis"] and "--resume runs/x" in v["next_steps"][0]
    v = decide(HEALTHY, {"stopped": "time", "steps": 900, "improving": False}, FALLING, False)
    assert v["category"] == "MODEL TOO SMALL / TASK TOO HARD"
    # a bug is still named first, and a PASS is still a PASS
    assert decide(HEALTHY + [P("ste_gradient_flow", "FAIL", "gradients")], stalled, FLAT, False)["part"] == "gradients/STE"
    assert decide(HEALTHY, {**stalled, "stopped": "early"}, FLAT, True)["status"] == "PASS"
