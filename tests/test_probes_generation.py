"""Generation probes: KV-cache parity, sampler, repetition, gibberish; both ways."""
import random

import torch

from bitcheck.model import sample_next
from bitcheck.selftest import _offset_incremental
from probe_helpers import part, result, subject
from probes.generation import ends_in_loop, seq_rep_n
from synthetic.arithmetic import ArithmeticTask


def _text_generator(make_text):
    """A `generate` that continues any prompt with make_text(seed) (encoded by the char tokenizer)."""
    tok = ArithmeticTask().tokenizer

    def generate(model, idx, n):
        text = make_text(int(idx.sum()))
        return torch.cat([idx, torch.tensor([tok.encode(text)[:n]])], dim=1)
    return generate


def _task_text(seed):
    rng = random.Random(seed)
    task = ArithmeticTask()
    return "".join("".join(task.example_text(rng)) for _ in range(10))


def test_kv_cache_parity_both_ways():
    """Our cache matches a full forward; a cache whose position stalls after token 0 does not."""
    s = subject()
    assert result(s, "kv_cache_parity").status == "PASS"
    s.incremental_logits = _offset_incremental
    r = result(s, "kv_cache_parity")
    assert r.status == "FAIL" and "first at position 1" in r.message
    assert part(s, "kv_cache_parity") == "generation"


def test_sampler_both_ways():
    """softmax(logits / T) sampling passes; ignoring T or leaking past top-k fails."""
    s = subject()
    r = result(s, "sampler")
    assert r.status == "PASS" and r.value["min_p_value"] > 0.01, r.message
    s.sampler = lambda logits, t, k, g: sample_next(logits, 1.0, k, None, g)
    assert result(s, "sampler").status == "FAIL"
    s.sampler = lambda logits, t, k, g: sample_next(logits, t, None if k else None, None, g)
    r = result(s, "sampler")
    assert r.status == "FAIL" and r.value["top_k_violations"] > 0


def test_repetition_both_ways():
    """Text like the training data passes; a generator stuck in a loop fails."""
    s = subject(generate=_text_generator(_task_text))
    r = result(s, "repetition")
    assert r.status == "PASS", r.message
    s = subject(generate=_text_generator(lambda seed: "12 + 7 = 19\n" * 10))
    r = result(s, "repetition")
    assert r.status == "FAIL" and r.value["loop_ending_share"] == 1.0
    assert part(s, "repetition") == "generation"


def test_gibberish_both_ways():
    """Training-like text passes; 'xkjq mlp zzz'-style noise over the same alphabet fails."""
    s = subject(generate=_text_generator(_task_text))
    assert result(s, "gibberish").status == "PASS", result(s, "gibberish").message

    def noise(seed):
        rng = random.Random(seed)
        return "".join(rng.choice("0123456789+-*/= \n") for _ in range(96))
    s = subject(generate=_text_generator(noise))
    r = result(s, "gibberish")
    assert r.status == "FAIL", r.message
    assert part(s, "gibberish") == "generation"


def test_text_statistics():
    """seq-rep-4 and the loop detector on known strings."""
    assert seq_rep_n(list("abcdabcdabcd")) == 1 - 4 / 9
    assert seq_rep_n(list("abcdefgh")) == 0.0
    assert ends_in_loop("hello the end the end the end ")
    assert not ends_in_loop("12 + 7 = 19\n3 - 1 = 2\n")
