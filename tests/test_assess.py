"""The one judge (bitcheck/judge/assess.py) and the typed tree: exit codes, the interrupt rule, and the
policies that replaced the verdict edits commands used to make after the tree."""
import torch

from bitcheck.bitnet.config import ModelConfig
from bitcheck.bitnet.model import BitNet
from bitcheck.judge.assess import Report, assess
from bitcheck.judge.facts import ABSENT, RunFacts
from bitcheck.judge.subjects import LogitsOnly
from bitcheck.judge.verdict import QUICK, STORIES, TENSORS, Category, Evidence, Verdict, judge
from probes import Subject

HEALTHY = [{"name": "quantization_applied", "status": "PASS", "branch": "quantization", "value": 1e-7}]


def _verdict(status, category=Category.OK):
    return Verdict(status, category, None, "d", [], [])


def test_exit_codes():
    """0 for PASS, 1 for FAIL, 130 for a run interrupted before it passed."""
    assert Report("x", _verdict("PASS"), RunFacts(), [], None).exit_code == 0
    assert Report("x", _verdict("FAIL", Category.BUG), RunFacts(), [], None).exit_code == 1
    assert Report("x", _verdict("FAIL", Category.INTERRUPTED), RunFacts(), [], None, stopped="interrupted").exit_code == 130
    d = Report("quick-arith", _verdict("PASS"), RunFacts(steps=1), HEALTHY, "runs/x").to_dict()
    assert list(d) == ["command", "verdict", "metrics", "probes", "run_dir"] and d["verdict"]["category"] == "INFRASTRUCTURE OK"


def test_interrupt_runs_only_static_probes():
    """After Ctrl-C only the weight-level probes run (the report is written promptly); otherwise all."""
    cfg = ModelConfig(vocab_size=21, n_embd=32, n_layer=1, n_head=4, n_kv_head=2, ffn_hidden=64, block_size=32)
    torch.manual_seed(0)
    x = torch.randint(0, 21, (2, 16))
    subject = Subject(model=LogitsOnly(BitNet(cfg)), batches=[(x, x)])
    after_ctrl_c = assess("quick-arith", subject, Evidence(stopped="interrupted", steps=5), RunFacts())
    ran = {p["name"] for p in after_ctrl_c.probes if p["status"] != "SKIP"}
    assert ran and ran <= {"ternary_distribution", "quantization_applied", "inference_parity", "per_token_scale"}
    assert after_ctrl_c.verdict.category == Category.INTERRUPTED and after_ctrl_c.exit_code == 130
    full = assess("quick-arith", subject, Evidence(steps=5), RunFacts())
    assert {"causal_leak", "nonfinite"} <= {p["name"] for p in full.probes if p["status"] != "SKIP"}


def test_policies_say_what_a_kind_of_run_needs():
    """Tensors without code end TENSORS OK; a stories run's OK quotes its bits per byte and the bar;
    a user model that has not learned its text is UNDERTRAINED for that reason."""
    v = judge(HEALTHY, Evidence(), TENSORS)
    assert v.category == Category.TENSORS_OK and "quantization_applied" in v.diagnosis
    v = judge(HEALTHY, Evidence(task_passed=True, val_bpb=1.234), STORIES)
    assert v.category == Category.OK and "1.234 bits per byte (bar 1.5)" in v.diagnosis
    assert v.next_steps[0].startswith("Train longer or a larger preset")
    gap = {"text_loss": 5.7, "unigram_entropy": 4.2, "ln_vocab": 5.77, "learned": False}
    v = judge(HEALTHY, Evidence(task_passed=False, text_gap=gap), QUICK)
    assert v.category == Category.UNDERTRAINED and "has not learned the text: loss 5.700 vs 4.200" in v.diagnosis


def test_bisection_and_reference_in_the_tree():
    """A swap that made the user's model learn names its part (only when no probe did); swaps that did not
    help are said; a user's run quotes the reference measurement next to its own steps."""
    swaps = [{"swap": "bitlinear", "passed": False, "steps": 900, "run_dir": "r/b"},
             {"swap": "optimizer", "passed": True, "steps": 1300, "run_dir": "r/o"}]
    ev = Evidence(task_passed=False, stopped="stalled", steps=900, bisection=swaps, reference="ours: 1300 steps")
    v = judge(HEALTHY, ev)
    assert (v.category, v.part) == (Category.BUG, "optimizer") and "your optimizer and schedule is the cause" in v.diagnosis
    assert [e["message"] for e in v.evidence] == ["swap optimizer: PASS (r/o)", "swap bitlinear: did not learn"]
    swaps[1]["passed"] = False
    v = judge(HEALTHY, ev)
    assert v.category == Category.TOO_SMALL and "did not learn either" in v.diagnosis and "ours: 1300 steps" in v.diagnosis
    bug = HEALTHY + [{"name": "ste_gradient_flow", "status": "FAIL", "branch": "gradients", "value": 1.0}]
    swaps[1]["passed"] = True
    assert judge(bug, ev).part == "gradients/STE"  # a probe's finding comes first


def test_facts_are_the_metrics_and_the_evidence():
    """report.json's metrics are the facts a command set (None included, ABSENT left out), and the tree's
    Evidence reads the same record: a text gap only where `learned` was measured."""
    facts = RunFacts(task="arith", steps=12, final_loss=None, accuracy={"+": 1.0}, stopped="passed")
    assert facts.metrics() == {"task": "arith", "final_loss": None, "steps": 12, "stopped": "passed",
                               "accuracy": {"+": 1.0}}
    e = facts.evidence([{"step": 1, "loss": 2.0}], True, "runs/x")
    assert (e.steps, e.stopped, e.accuracy, e.task_passed, e.run_dir, e.text_gap) == (
        12, "passed", {"+": 1.0}, True, "runs/x", None)
    assert facts.val_bpb is ABSENT and e.val_bpb is None
    gap = RunFacts(text_loss=3.0, unigram_entropy=4.0, ln_vocab=5.5, learned=True).evidence()
    assert gap.text_gap == {"text_loss": 3.0, "unigram_entropy": 4.0, "ln_vocab": 5.5, "learned": True}
    bisected = assess("quick-arith", Subject(model=None), Evidence(steps=5), facts, TENSORS)
    assert bisected.to_dict()["metrics"] == facts.metrics()
