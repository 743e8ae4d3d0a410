"""Generation probes: is free-running output broken even though teacher-forced training is fine?

KV-cache parity and the sampler are checked against exact references (a full forward pass;
softmax(logits / T)). Repetition and gibberish compare the model's samples with the reference
text's own figures rather than with fixed constants: seq-rep-4 (Welleck et al. 2019, "Neural Text
Generation with Unlikelihood Training"), a repeated-phrase ending (Holtzman et al. 2019, "The
Curious Case of Neural Text Degeneration"), word coverage and character-bigram likelihood.
"""
from __future__ import annotations

import inspect
import math
from collections import Counter

import torch

from probes.core import PASS, Measurement, Subject, Threshold, logits_of, probe, run_cache

# max |incremental - full| logits, relative to the logits' scale. Measured (selftest, tiny preset):
# healthy 5e-7 at init and 1.6e-4..2.0e-3 trained, 3 seeds (float differences flip an int8
# rounding now and then); a KV-cache position offset: 0.55.
KV_GAP = Threshold("relative_gap", warn=1e-2, fail=5e-2, source="healthy 5e-7..2e-3; position offset 0.55")
# Chi-square test of sampled frequencies against softmax(logits / T) at a fixed seed (20k draws
# per temperature). Measured: healthy p 0.38; temperature ignored p 0.0 (underflows).
SAMPLER_P = Threshold("min_p_value", warn=None, fail=1e-6, higher_is_worse=False,
                      source="fixed seed: healthy p 0.38; temperature ignored p 0.0")
TOPK_BAD = Threshold("top_k_violations", warn=None, fail=0, source="any token outside the top k is a bug")
# The options a sampler declares by name (top_p, min_p, repetition_penalty with input_ids), each on
# exact 3-4 token cases against the Hugging Face warpers' definitions; 20k draws per case, same seed.
# Measured (tests' reference sampler): healthy p 0.23..1.0 per case, 0 violations; planted bugs (top-p
# keeping only cumsum <= p, min-p bar min_p instead of min_p * max prob, a penalty dividing negative
# logits): p 0.0 (underflows), 0 violations (they keep too few); top_p ignored: 4 violations.
OPTION_P = Threshold("option_min_p_value", warn=None, fail=SAMPLER_P.fail, higher_is_worse=False,
                     source="fixed seed: healthy min p 0.23; top-p cumsum <= p, unscaled min-p, "
                            "penalty dividing negatives p 0.0")
OPTION_BAD = Threshold("option_violations", warn=None, fail=0,
                       source="any token outside the reference's kept set is a bug; healthy 0, top_p ignored 4")
# seq-rep-4 of samples minus that of the reference text (same length windows). Measured (selftest):
# healthy samples at temperature 1: 0.017 with no looping endings; after an LR blow-up 0.74 and
# 0.67 of samples end in a loop; a generator repeating one line: 1.0.
REP_EXCESS = Threshold("rep4_excess", warn=0.15, fail=0.3, source="healthy 0.017; LR blow-up 0.74")
LOOP_ENDINGS = Threshold("loop_ending_share", warn=0.5, fail=0.75, source="healthy 0.0; LR blow-up 0.67; one line 1.0")
# Share of sample words found in the reference word list, relative to the reference's own held-out
# share; and the char-bigram log-likelihood per character, sample minus reference. Measured
# (selftest): healthy 0.977 and -0.03 nats; an untrained model 0.12 and -2.25; quantization
# skipped on a trained model 0.71 and -0.77 (a WARN; quantization_applied FAILs it).
WORD_RATIO = Threshold("known_word_ratio", warn=0.8, fail=0.5, higher_is_worse=False,
                       source="healthy 0.977; untrained 0.12")
BIGRAM_GAP = Threshold("bigram_gap_nats", warn=-0.5, fail=-1.0, higher_is_worse=False,
                       source="healthy -0.03; untrained -2.25")
N_NEW = 96  # tokens sampled per prompt


KV_TOKENS = 32  # decoded when the subject does not state its context


@probe("kv_cache_parity", branch="generation", needs=("incremental_logits",),
       catches="KV-cache position bugs, a cached path that ignores the attention window",
       fails_when="relative gap > 5e-2",
       measured="5e-7..2e-3 vs 0.55 (position stalls)")
def kv_cache_parity(s: Subject):
    """Incremental (KV-cached) decoding gives the same logits as one full forward pass, over the model's
    whole context (Subject.context: the rows of the first batch laid end to end), so that a bug at a
    sliding window's edge or near the context's end shows; KV_TOKENS when the context is not known."""
    model = s.model.eval()
    vocab = s.vocab_size or 2
    n = s.context or KV_TOKENS
    if s.batches:
        flat = s.batches[0][0].reshape(-1)
        flat = flat.repeat(-(-2 * n // flat.numel()))  # enough tokens for two rows of the context
        idx = flat[:2 * n].view(2, n).to(s.device)
    else:
        idx = torch.randint(0, vocab, (2, n), generator=torch.Generator().manual_seed(0)).to(s.device)
    with torch.no_grad():
        full = logits_of(model, idx)
        inc = s.incremental_logits(model, idx)
    gap = (inc - full).abs().max().item() / (full.abs().max().item() or 1.0)
    per_pos = (inc - full).abs().amax(dim=(0, 2))
    first = int((per_pos > 1e-2 * full.abs().max()).nonzero()[0]) if gap > 1e-2 else None
    return Measurement(gap, [KV_GAP],
                       f"relative gap cached vs full {gap:.2e} over {n} positions"
                       + (f", first at position {first}" if first is not None else ""),
                       "The KV cache disagrees with a full forward: check the position offset passed to RoPE "
                       "and the mask for chunks after a cached prefix.")


def _chi2_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum()
    keep = probs * n >= 5  # pool rare bins, as the test requires expected counts >= 5
    obs = torch.cat([counts[keep], counts[~keep].sum().view(1)]) if (~keep).any() else counts[keep]
    exp = torch.cat([probs[keep] * n, (probs[~keep] * n).sum().view(1)]) if (~keep).any() else probs[keep] * n
    stat = ((obs - exp) ** 2 / exp.clamp(min=1e-12)).sum()
    df = obs.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat.double() / 2))


def _logs(*probs):
    return tuple(math.log(p) for p in probs)


# (option, value, logits, input_ids): cumulative sums and min-p bars stay far from float rounding;
# the repetition case has logits of both signs and a token repeated in input_ids.
OPTION_CASES = (("top_p", 0.6, _logs(0.5, 0.3, 0.2), None), ("top_p", 0.4, _logs(0.5, 0.3, 0.2), None),
                ("top_p", 0.75, _logs(0.2, 0.5, 0.3), None), ("min_p", 0.5, _logs(0.5, 0.3, 0.2), None),
                ("min_p", 0.3, _logs(0.1, 0.6, 0.25, 0.05), None),
                ("repetition_penalty", 2.0, (1.0, -1.0, 0.5, 0.0), (0, 1, 0)))
# each option's name in messages and the rule a failing case broke
OPTION_RULES = {"top_p": ("top-p", "the token crossing p must be kept, none after it"),
                "min_p": ("min-p", "the bar is min_p * the top probability"),
                "repetition_penalty": ("repetition penalty", "logits > 0 are divided by it, logits <= 0 multiplied")}
OPTION_HINTS = {
    "top_p": "top-p keeps the smallest set of most probable tokens whose cumulative probability reaches p: the "
             "token crossing p is kept, the top token always (drop a token only when the mass before it >= p).",
    "min_p": "min-p keeps the tokens with probability >= min_p * the top token's probability, not >= min_p.",
    "repetition_penalty": "for each distinct token in input_ids divide a logit > 0 by the penalty and multiply "
                          "a logit <= 0 by it (CTRL, Keskar et al. 2019), once per token, not per occurrence."}


def _declared_options(fn) -> list[str]:
    """The option names fn declares explicitly (a bare **kwargs declares none)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    named = {n for n, q in params.items() if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)}
    opts = [o for o in ("top_p", "min_p") if o in named]
    return opts + (["repetition_penalty"] if {"repetition_penalty", "input_ids"} <= named else [])


def _option_reference(logits: torch.Tensor, option: str, value: float, input_ids) -> torch.Tensor:
    """The Hugging Face warpers' distribution (TopP, MinP, RepetitionPenalty) at temperature 1, float64."""
    logits = logits.double().clone()
    if option == "repetition_penalty":
        for t in set(input_ids):
            logits[t] = logits[t] / value if logits[t] > 0 else logits[t] * value
        return logits.softmax(-1)
    p = logits.softmax(-1)
    if option == "top_p":
        order = p.argsort(descending=True)
        keep = torch.zeros_like(p, dtype=torch.bool)
        keep[order] = (p[order].cumsum(-1) - p[order]) < value  # the mass before a kept token is < p
    else:
        keep = p >= value * p.max()
    return torch.where(keep, p, 0.0) / p[keep].sum()


@probe("sampler", branch="generation", needs=("sampler",),
       catches="temperature ignored, top-k leak; a declared top-p that drops the token crossing p, a min-p "
               "bar not scaled by the top probability, a repetition penalty that divides negative logits",
       fails_when="chi-square p < 1e-6 (20k draws, fixed seed), any top-k violation; per declared option "
                  "(top_p, min_p, repetition_penalty): chi-square p < 1e-6 or any token outside the "
                  "reference's kept set",
       measured="p 0.38 vs 0.0; options: min p 0.23, 0 violations vs p 0.0 (each planted option bug)")
def sampler(s: Subject):
    """At temperature 1 (and 0.5) the sampler's token frequencies match softmax(logits / T) by a
    chi-square test at a fixed seed; with top-k it never emits a token outside the k largest.
    Options the sampler declares by name (`top_p`, `min_p`, `repetition_penalty` with `input_ids`, the
    previous ids (B, T)) are each passed alone as keywords, the others None, on exact small
    vocabularies, and held to the Hugging Face warpers: no token outside the reference's kept set and
    chi-square against its renormalised distribution. Options not declared are not checked."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 1.5, 0.2, -2.0, 0.8])
    n = 20000
    g = torch.Generator().manual_seed(1234)
    pvals = {}
    for temp in (1.0, 0.5):
        draws = s.sampler(logits.repeat(n, 1), temp, None, g)
        counts = torch.bincount(draws.flatten().cpu(), minlength=logits.numel()).double()
        pvals[temp] = _chi2_p(counts, (logits.double() / temp).softmax(-1))
    k = 3
    draws = s.sampler(logits.repeat(n, 1), 1.0, k, g).flatten().cpu()
    allowed = set(torch.topk(logits, k).indices.tolist())
    violations = int(sum(int(t) not in allowed for t in draws.unique()))
    values = {"min_p_value": min(pvals.values()), "top_k_violations": violations}
    thresholds = [SAMPLER_P, TOPK_BAD]
    declared = _declared_options(s.sampler)
    cases, bad, failed = [], [], []
    for option, value, case, ids in (c for c in OPTION_CASES if c[0] in declared):
        case_logits = torch.tensor(case)
        ref = _option_reference(case_logits, option, value, ids)
        kwargs = {o: None for o in declared} | {option: value}
        if "repetition_penalty" in declared:
            kwargs["input_ids"] = None if ids is None else torch.tensor([ids]).repeat(n, 1)  # (n, T)
        draws = s.sampler(case_logits.repeat(n, 1), 1.0, None, g, **kwargs).flatten().cpu()
        counts = torch.bincount(draws, minlength=len(case)).double()
        kept, seen = set((ref > 0).nonzero().flatten().tolist()), set(draws.unique().tolist())
        p = _chi2_p(counts[ref > 0], ref[ref > 0]) if len(kept) > 1 else 1.0
        name, rule = OPTION_RULES[option]
        cases.append({"option": option, "value": value, "p_value": p, "violations": len(seen - kept),
                      "kept": sorted(seen), "reference_kept": sorted(kept)})
        if seen != kept or p < OPTION_P.fail:
            failed.append(option)
            bad.append(f"{name} {value:g} " + (f"kept tokens {seen} but the reference keeps {kept}" if seen != kept
                       else f"frequencies differ from the reference (chi-square p {p:.3g})") + f": {rule}")
    if cases:
        values |= {"option_min_p_value": min(c["p_value"] for c in cases),
                   "option_violations": sum(c["violations"] for c in cases)}
        thresholds += [OPTION_P, OPTION_BAD]
    missing = [o for o in OPTION_HINTS if o not in declared]
    options = (f"; options exercised: {', '.join(declared) or 'none'}"
               + (f"; not declared: {', '.join(missing)}" if missing else "") + "".join(f"; {b}" for b in bad))
    core_ok = all(t.judge(values[t.name]) == PASS for t in (SAMPLER_P, TOPK_BAD))
    hints = [] if core_ok else [("The sampler does not draw from softmax(logits / temperature): check that the "
                                 "temperature divides the logits before softmax and that top-k masks the rest to -inf.")]
    return Measurement(values, thresholds,
                       f"chi-square p at T=1: {pvals[1.0]:.3g}, T=0.5: {pvals[0.5]:.3g}; top-{k} violations "
                       f"{violations}" + options, " ".join(hints + [OPTION_HINTS[o] for o in dict.fromkeys(failed)]),
                       details={"options": cases}, values=values)


def generations(s: Subject) -> list[str]:
    """Samples for the subject's prompts, computed once per run and shared by the text probes."""
    return [s.tokenizer.decode(out[n:].tolist()) for n, out in generation_ids(s)]


def generation_ids(s: Subject) -> list[tuple[int, torch.Tensor]]:
    """(prompt length, ids (T,) of prompt + sample) per prompt, generated once per run_probes call: the
    repetition, gibberish and likelihood probes judge the same samples. Kept in the run's cache, not in the
    Subject, so that no probe writes its evidence and no later run (or copy of the subject) sees them."""
    cache = run_cache(s)
    if "generation_ids" not in cache:
        ids = []
        for prompt in s.prompts:
            idx = torch.tensor([s.tokenizer.encode(prompt)], device=s.device)
            out = s.generate(s.model, idx, N_NEW)
            ids.append((idx.shape[1], out[0].detach()))
        cache["generation_ids"] = ids
    return cache["generation_ids"]


def seq_rep_n(tokens: list, n: int = 4) -> float:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def ends_in_loop(text: str, min_repeats: int = 3, max_period: int = 40) -> bool:
    """True when the text ends with the same phrase repeated >= min_repeats times back to back."""
    for p in range(1, max_period + 1):
        if len(text) < p * min_repeats:
            break
        unit = text[-p:]
        if text.endswith(unit * min_repeats) and unit.strip():
            return True
    return False


@probe("repetition", branch="generation", needs=("generate", "prompts", "tokenizer", "texts"),
       catches="looping generation",
       fails_when="seq-rep-4 excess over the reference > 0.3 or > 75% of samples end in a loop",
       measured="0.017 / 0.0 vs 0.74 / 0.67 (LR blow-up)")
def repetition(s: Subject):
    """seq-rep-4 of samples against the reference text's own rate, and the share of samples that end
    in a repeated phrase: a looping generator fails, a naturally repetitive domain does not."""
    gens = generations(s)
    rep_gen = sum(seq_rep_n(s.tokenizer.encode(g)) for g in gens) / len(gens)
    ref_ids = s.tokenizer.encode("".join(s.texts))
    L = max(8, sum(len(s.tokenizer.encode(g)) for g in gens) // len(gens))
    windows = [ref_ids[i:i + L] for i in range(0, max(1, len(ref_ids) - L), max(1, len(ref_ids) // 20))][:20]
    rep_ref = sum(seq_rep_n(w) for w in windows) / len(windows)
    loops = sum(ends_in_loop(g) for g in gens) / len(gens)
    values = {"rep4_excess": rep_gen - rep_ref, "loop_ending_share": loops}
    return Measurement(values, [REP_EXCESS, LOOP_ENDINGS],
                       f"seq-rep-4 samples {rep_gen:.2f} vs reference {rep_ref:.2f}; {loops:.0%} end in a loop; "
                       f"sample: {gens[0][:50]!r}",
                       "Samples loop: greedy decoding loops on small models, so sample with temperature/top-p; "
                       "if sampling loops too, check the sampler and the KV cache.",
                       details={"samples": gens[:5], "rep4_samples": rep_gen, "rep4_reference": rep_ref}, values=values)


def _bigram_model(text: str):
    pairs = Counter(zip(text, text[1:]))
    firsts = Counter(text[:-1])
    chars = set(text) | {"\0"}

    def logp(a: str, b: str) -> float:  # add-one smoothing over the reference alphabet plus unseen
        return math.log((pairs.get((a, b), 0) + 1) / (firsts.get(a, 0) + len(chars)))
    return logp


def _mean_logp(logp, text: str) -> float:
    return sum(logp(a, b) for a, b in zip(text, text[1:])) / max(1, len(text) - 1)


@probe("gibberish", branch="generation", needs=("generate", "prompts", "tokenizer", "texts"),
       catches='"xkjq mlp zzz" output',
       fails_when="known-word ratio < 0.5 or bigram gap < -1 nat/char",
       measured="0.977 / -0.03 vs untrained 0.12 / -2.25")
def gibberish(s: Subject):
    """Share of sample words that occur in the reference text's word list, and the samples' char-bigram
    likelihood under the reference, each against the reference's own held-out figures."""
    gens = generations(s)
    text = "".join(s.texts)
    cut = int(len(text) * 0.8)  # the reference scores itself on a held-out fifth
    train, held = text[:cut], text[cut:]
    vocab = set(train.split())
    logp = _bigram_model(train)

    def known(t: str) -> float:
        ws = t.split()
        return sum(w in vocab for w in ws) / len(ws) if ws else 0.0
    sample_text = "\n".join(gens)
    ref_known = known(held) or 1.0
    ratio = known(sample_text) / ref_known
    gap = _mean_logp(logp, sample_text) - _mean_logp(logp, held)
    values = {"known_word_ratio": ratio, "bigram_gap_nats": gap}
    return Measurement(values, [WORD_RATIO, BIGRAM_GAP],
                       f"known words {ratio:.2f} of the reference's rate; bigram log-lik gap {gap:+.2f} nats/char",
                       "Samples are not made of the training text's words: the model never learned (check the "
                       "loss), or decoding/sampling scrambles ids (check the tokenizer and sampler probes).",
                       details={"samples": gens[:3]}, values=values)


# The samples' mean NLL per token under the model's own teacher-forced forward, minus the model's NLL
# on the reference text. Sampling at temperature 1 from the model's own distribution gives tokens whose
# expected NLL is the model's entropy, which is at most its cross-entropy on real text plus what its
# own contexts add; a decoder that scrambles ids, a KV cache that feeds wrong positions or a sampler
# drawing from the wrong distribution produces tokens the model itself finds unlikely. A half-trained
# model writes poor text (gibberish FAILs) whose likelihood matches its text loss: not a generation bug.
# Measured: the tests' user model (tests/test_root_cause.py) -0.02, +0.25, +0.04 nats at init, 300 and
# 800 steps; bitcheck's tiny preset (selftest, seeds 0-2) -0.19, -0.37, -0.24; ids shifted by one in
# the user's generate +7.5.
SELF_NLL = Threshold("sample_nll_excess", warn=1.0, fail=1.5,
                     source="healthy -0.37..+0.25 (user model 0/300/800 steps, selftest seeds 0-2); ids shifted +7.5")
SELF_TOKENS = 64  # tokens of prompt + sample scored in one forward (the probes' context length)


def _nll(model, ids: torch.Tensor, start: int) -> tuple[float, int]:
    """Summed NLL of ids[start:] given the preceding ids (one forward over ids (T,)), and the count."""
    with torch.no_grad():
        logits = logits_of(model, ids[None, :-1]).float()[0]
    nll = torch.nn.functional.cross_entropy(logits[start - 1:], ids[start:], reduction="sum")
    return float(nll), ids.numel() - start


@probe("sample_likelihood", branch="generation", needs=("generate", "prompts", "tokenizer", "texts"),
       catches="generation that samples what the model does not predict (scrambled ids, KV-cache or sampler "
               "bugs in the user's generate); tells a half-trained model's poor text from broken decoding",
       fails_when="the samples' NLL under the model exceeds its NLL on the reference text by > 1.5 nats/token",
       measured="healthy -0.37..+0.25 vs +7.5 (ids shifted in generate)")
def sample_likelihood(s: Subject):
    """The model's own samples are as likely under its teacher-forced forward as the reference text
    is: poor samples from a correct decoder mean a weak model, not broken generation."""
    model = s.model.eval()
    total = count = 0.0
    for n, ids in generation_ids(s):
        ids = ids[:SELF_TOKENS].to(s.device)
        if ids.numel() > max(n, 1):
            nll, k = _nll(model, ids, max(n, 1))
            total, count = total + nll, count + k
    ref = torch.tensor(s.tokenizer.encode("".join(s.texts))[: 8 * SELF_TOKENS], device=s.device)
    rows = ref[: ref.numel() // SELF_TOKENS * SELF_TOKENS].view(-1, SELF_TOKENS)
    if not count or not rows.numel():
        return Measurement(None, [SELF_NLL], "no sampled tokens or reference text to score")
    ref_nll = sum(_nll(model, r, 1)[0] for r in rows) / (rows.numel() - rows.shape[0])
    sample_nll = total / count
    excess = sample_nll - ref_nll
    return Measurement(excess, [SELF_NLL],
                       f"samples {sample_nll:.2f} nats/token under the model vs its reference text {ref_nll:.2f} "
                       f"({excess:+.2f})" + (": generation emits tokens the model does not predict"
                                             if excess > SELF_NLL.fail else ": the samples are what the model predicts"),
                       "The decoder does not sample what the model predicts: compare your generate's ids with "
                       "argmax/softmax of a full forward pass (KV-cache positions, id offsets, the sampler).",
                       details={"sample_nll": sample_nll, "reference_nll": ref_nll})
