"""The decision tree: which verdict and part each combination of results leads to."""
from bitcheck.judge.assess import decide
from bitcheck.judge.verdict import loss_trend


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
    # every failing probe is evidence: the blamed part's first, the rest as what may follow from it
    assert [(e["probe"], e["role"]) for e in v["evidence"]] == [("data_decode", "cause"),
                                                                ("ternary_distribution", "also failing")]
    assert "Also failing" in v["diagnosis"] and "ternary_distribution" in v["diagnosis"]


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
    assert decide(probes + [P("sampler", "FAIL", "generation")], {}, FALLING, False)["category"] == "GENERATION BROKEN"


def test_poor_samples_are_generation_only_when_the_model_does_not_predict_them():
    """#14: a half-learned model writes poor text through a correct decoder. Poor samples alone, or
    samples as likely under the model as its text (sample_likelihood PASS), are UNDERTRAINED; samples
    the model itself finds unlikely are GENERATION BROKEN."""
    probes = HEALTHY + [P("gibberish", "FAIL", "generation")]
    v = decide(probes + [P("sample_likelihood", "PASS", "generation")], {}, FALLING, True)
    assert (v["category"], v["part"]) == ("UNDERTRAINED", "training length") and "sample_likelihood" in v["diagnosis"]
    assert decide(probes, {}, FALLING, True)["category"] == "UNDERTRAINED"  # nothing confirms the decoder is at fault
    v = decide(probes + [P("sample_likelihood", "FAIL", "generation")], {}, FALLING, True)
    assert v["category"] == "GENERATION BROKEN"
    assert {e["probe"] for e in v["evidence"]} == {"gibberish", "sample_likelihood"}


def test_parts_named_by_where_the_bug_sits():
    """#14: loading is blamed before everything; a label-offset failure is data/labels; the deployment
    path has its own parts (export/conversion, inference model/loader) after the training parts."""
    v = decide(HEALTHY + [P("weights_loaded", "FAIL", "loading"), P("gibberish", "FAIL", "generation"),
                          P("causal_leak", "FAIL", "loss")], {}, FLAT, False)
    assert v["part"] == "checkpoint loading" and [e["probe"] for e in v["evidence"]][0] == "weights_loaded"
    assert decide(HEALTHY + [P("label_offset", "FAIL", "data")], {}, FLAT, False)["part"] == "data/labels"
    both = decide(HEALTHY + [P("label_offset", "FAIL", "data"), P("data_decode", "FAIL", "data")], {}, FLAT, False)
    assert both["part"] == "data/tokenizer"
    assert decide(HEALTHY + [P("inference_parity", "FAIL", "export")], {}, FLAT, True)["part"] == "export/conversion"
    v = decide(HEALTHY + [P("inference_parity", "FAIL", "inference")], {}, FLAT, True)
    assert v["part"] == "inference model/loader" and not any("conform" in s for s in v["next_steps"])
    v = decide(HEALTHY + [P("inference_parity", "FAIL", "export"), P("quantization_applied", "FAIL", "quantization")],
               {}, FLAT, True)
    assert v["part"] == "quantization"  # the training layer is wrong: the export inherits it


def test_loss_above_chance_is_never_undertrained():
    """#14: a teacher-forced loss far above ln V is confident wrong prediction, not too little training."""
    gap = {"text_loss": 8.77, "unigram_entropy": 3.2, "ln_vocab": 3.50, "learned": False}
    v = decide(HEALTHY, gap, [], False)
    assert (v["category"], v["part"]) == ("INFRASTRUCTURE BUG", "data/labels") and "ln(vocab)" in v["diagnosis"]
    at_chance = dict(gap, text_loss=3.52)
    assert decide(HEALTHY, at_chance, [], False)["category"] == "UNDERTRAINED"
    # below ln V but far more wrong than uncertain (another tokenizer of the same size: 4.91 vs entropy 1.60)
    sure = {"text_loss": 4.91, "text_entropy": 1.60, "unigram_entropy": 4.20, "ln_vocab": 5.77, "learned": False}
    v = decide(HEALTHY, sure, [], False)
    assert v["part"] == "data/labels" and "entropy of its own predictions" in v["diagnosis"]
    assert decide(HEALTHY, dict(sure, text_entropy=4.85), [], False)["category"] == "UNDERTRAINED"


def test_ok_names_only_what_was_checked():
    """#14: an OK verdict does not claim the parts whose probes all SKIPped; it names them and why."""
    probes = [P("quantization_applied", "PASS", "quantization"), P("ste_gradient_flow", "PASS", "gradients"),
              {"name": "sampler", "status": "SKIP", "branch": "generation", "message": "no sampler given"},
              {"name": "gibberish", "status": "SKIP", "branch": "generation", "message": "no text"}]
    v = decide(probes, {}, FALLING, True)
    assert v["category"] == "INFRASTRUCTURE OK"
    assert "quantization and STE gradients check out" in v["diagnosis"]
    assert "Not checked: generation (sampler: no sampler given)" in v["diagnosis"]
    assert "data" not in v["diagnosis"].split("Not checked")[0]
    # a run that loaded no checkpoint (bitcheck built the model) does not list loading as a gap
    skipped_loading = {"name": "weights_loaded", "status": "SKIP", "branch": "loading", "message": "needs tensors"}
    assert "loading" not in decide(probes + [skipped_loading], {}, FALLING, True)["diagnosis"]


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
