"""Generation probes: KV-cache parity, sampler, repetition, gibberish; both ways."""
import dataclasses
import random

import torch

from bitcheck.bitnet.model import sample_next
from bitcheck.judge.plants import offset_incremental
from probes import run_probes
from probes.generation import ends_in_loop, seq_rep_n
from synthetic.arithmetic import ArithmeticTask
from tests.probe_helpers import part, result, subject


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


class _Windowed(torch.nn.Module):
    """One attention head over a sliding window of WINDOW positions (learned positions, no quantization)."""
    WINDOW = 40

    def __init__(self, vocab=16, d=16, block=64):
        super().__init__()
        torch.manual_seed(0)
        self.tok, self.pos = torch.nn.Embedding(vocab, d), torch.nn.Embedding(block, d)
        self.qkv, self.head = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, vocab)

    def attend(self, q, k, v, keep):  # q (B, Tq, d), k v (B, Tk, d), keep (Tq, Tk)
        a = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).masked_fill(~keep, float("-inf"))
        return a.softmax(-1) @ v

    def forward(self, idx):
        T = idx.shape[1]
        q, k, v = self.qkv(self.tok(idx) + self.pos(torch.arange(T))).chunk(3, -1)
        i = torch.arange(T)
        keep = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < self.WINDOW)
        return self.head(self.attend(q, k, v, keep))

    def incremental(self, idx, window=True):
        out, ks, vs = [], [], []
        for t in range(idx.shape[1]):
            q, k, v = self.qkv(self.tok(idx[:, t:t + 1]) + self.pos(torch.tensor([t]))).chunk(3, -1)
            ks.append(k)
            vs.append(v)
            first = max(0, t - self.WINDOW + 1) if window else 0  # the bug: the cache keeps every key
            keep = torch.ones(1, t + 1 - first, dtype=torch.bool)
            out.append(self.head(self.attend(q, torch.cat(ks[first:], 1), torch.cat(vs[first:], 1), keep)))
        return torch.cat(out, 1)


def test_kv_cache_parity_decodes_across_the_window():
    """#22: a cached path that ignores a 40-token sliding window agrees with the full forward on 32 tokens
    and FAILs once the probe decodes the model's whole context (64); the windowed cache PASSes there."""
    from probes import Subject
    model = _Windowed().eval()
    x = torch.randint(0, 16, (4, 16), generator=torch.Generator().manual_seed(1))
    for context, window, status in ((None, False, "PASS"), (64, False, "FAIL"), (64, True, "PASS")):
        s = Subject(model=model, batches=[(x, x)], vocab_size=16, context=context,
                    incremental_logits=lambda m, idx, w=window: m.incremental(idx, w))
        r = result(s, "kv_cache_parity")
        assert r.status == status, (context, window, r.message)


def test_kv_cache_parity_both_ways():
    """Our cache matches a full forward; a cache whose position stalls after token 0 does not."""
    s = subject()
    assert result(s, "kv_cache_parity").status == "PASS"
    s.incremental_logits = offset_incremental
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
    assert part(s, "repetition") == "training length"  # alone, poor samples may be a weak model's (#14)


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
    assert part(s, "gibberish") == "training length"  # alone, poor samples may be a weak model's (#14)


def test_text_statistics():
    """seq-rep-4 and the loop detector on known strings."""
    assert seq_rep_n(list("abcdabcdabcd")) == 1 - 4 / 9
    assert seq_rep_n(list("abcdefgh")) == 0.0
    assert ends_in_loop("hello the end the end the end ")
    assert not ends_in_loop("12 + 7 = 19\n3 - 1 = 2\n")


def _options_sampler(bug=None):
    """A sampler with top_p, min_p and a repetition penalty (the Hugging Face warpers), or one planted bug:
    'top_p' keeps only cumsum <= p, 'min_p' compares with min_p instead of min_p * max prob, 'divide'
    divides every penalised logit (wrong for negative ones)."""
    def sampler(logits, temperature, top_k, generator, top_p=None, min_p=None, repetition_penalty=None,
                input_ids=None):
        logits = logits.float()
        if repetition_penalty is not None:
            prev = logits.gather(-1, input_ids)  # (B, T)
            fixed = torch.where(prev > 0, prev / repetition_penalty, prev * repetition_penalty)
            logits = logits.scatter(-1, input_ids, prev / repetition_penalty if bug == "divide" else fixed)
        if min_p is not None:
            probs = logits.softmax(-1)
            bar = min_p if bug == "min_p" else min_p * probs.amax(-1, keepdim=True)
            logits = logits.masked_fill(probs < bar, float("-inf"))
        if top_p is not None:
            ordered, order = torch.sort(logits, descending=True)  # (B, V)
            probs = ordered.softmax(-1)
            drop = probs.cumsum(-1) > top_p if bug == "top_p" else probs.cumsum(-1) - probs >= top_p
            drop[:, 0] = False  # the top token always stays
            logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        return sample_next(logits, temperature, top_k, None, generator)
    return sampler


def test_sampler_options_both_ways():
    """Declared top-p, min-p and repetition penalty following the reference pass; each planted bug fails by name."""
    s = subject(sampler=_options_sampler())
    r = result(s, "sampler")
    assert r.status == "PASS" and r.value["option_violations"] == 0, r.message
    assert "options exercised: top_p, min_p, repetition_penalty" in r.message
    for bug, name in (("top_p", "top-p 0.6 kept tokens {0} but the reference keeps {0, 1}"),
                      ("min_p", "min-p 0.5 kept tokens {0}"), ("divide", "repetition penalty 2")):
        s.sampler = _options_sampler(bug)
        r = result(s, "sampler")
        assert r.status == "FAIL" and name in r.message, r.message
    assert "crossing p" in result(subject(sampler=_options_sampler("top_p")), "sampler").hint


def test_sampler_options_not_declared():
    """(logits, temperature, top_k, generator) alone, or with a bare **kwargs, passes and says what went unchecked."""
    for fn in (lambda logits, t, k, g: sample_next(logits, t, k, None, g),
               lambda logits, t, k, g, **kw: sample_next(logits, t, k, None, g)):
        r = result(subject(sampler=fn), "sampler")
        assert r.status == "PASS" and "option_min_p_value" not in r.value, r.message
        assert "not declared: top_p, min_p, repetition_penalty" in r.message


def test_own_sampler_top_p():
    """bitcheck's own sampler declares top_p, and its top-p keeps the token crossing p."""
    r = result(subject(), "sampler")
    assert r.status == "PASS" and "options exercised: top_p;" in r.message, r.message
    assert [c["option"] for c in r.details["options"]] == ["top_p"] * 3


def test_samples_generated_once_per_run_and_never_stored_in_the_subject():
    """The text probes of one run share one sample per prompt; the Subject is left as it was, so the next
    run samples afresh and no result depends on an earlier run."""
    calls = []
    text_generator = _text_generator(_task_text)

    def generate(model, idx, n):
        calls.append(int(idx.sum()))
        return text_generator(model, idx, n)
    s = subject(generate=generate)
    history = dataclasses.asdict(s.history)  # the task subject's records (no optimizer: nothing heavy to copy)
    results = run_probes(s, names=["repetition", "gibberish", "sample_likelihood"])
    assert all(r.status not in ("SKIP", "ERROR") for r in results), [r.message for r in results]
    assert len(calls) == len(s.prompts)  # once per prompt, not once per probe
    assert dataclasses.asdict(s.history) == history  # the probes wrote nothing into their evidence
    run_probes(s, names=["gibberish"])
    assert len(calls) == 2 * len(s.prompts)  # a new run, new samples
