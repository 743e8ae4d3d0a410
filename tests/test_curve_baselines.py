"""`bitcheck curve --data [--tokenizer]`: the held-out unigram and bigram losses of the run's own data
(bitcheck/user/baselines.py) and the loss_baseline probe that holds a log's end loss against them. The data is
a Markov chain the test samples (its true entropies known), written in the formats runs keep tokens in."""
import json
import math

import numpy as np
import pytest

from bitcheck.commands.curve import CurveOptions, check_curve
from bitcheck.user.baselines import LLMC_MAGIC, baselines_of, read_tokens
from bitcheck.user.runlog import LogError
from synthetic.curves import generate, spec_for


def _chain(vocab=60, n=300_000, seed=0):
    """Tokens of a first-order Markov chain with sparse rows, and its true conditional and stationary entropies."""
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.full(vocab, 0.05), size=vocab)
    cum = trans.cumsum(axis=1)
    ids = np.empty(n, dtype=np.int64)
    ids[0] = 0
    u = rng.random(n)
    for i in range(1, n):
        ids[i] = min(int(np.searchsorted(cum[ids[i - 1]], u[i])), vocab - 1)
    pi = np.bincount(ids, minlength=vocab) / n
    h_cond = float(-(pi[:, None] * trans * np.log(np.where(trans > 0, trans, 1))).sum())
    h_uni = float(-(pi[pi > 0] * np.log(pi[pi > 0])).sum())
    return ids, h_cond, h_uni


def test_held_out_estimates_match_the_chain():
    ids, h_cond, h_uni = _chain()
    base = baselines_of(ids)
    assert abs(base["bigram"] - h_cond) < 0.05, (base, h_cond)
    assert abs(base["unigram"] - h_uni) < 0.02, (base, h_uni)
    assert base["bigram"] < base["unigram"] < math.log(60)


def test_token_files_as_runs_keep_them(tmp_path):
    ids, _, _ = _chain(n=20_000)
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (LLMC_MAGIC, 1, len(ids))
    with open(tmp_path / "llmc_train_000.bin", "wb") as f:  # llm.c: header, then uint16 tokens
        f.write(header.tobytes())
        f.write(ids.astype(np.uint16).tobytes())
    ids.astype(np.uint16).tofile(tmp_path / "train.bin")  # nanoGPT: raw uint16
    np.save(tmp_path / "tokens.npy", ids.astype(np.int32))
    for name in ("llmc_train_000.bin", "train.bin", "tokens.npy"):
        assert np.array_equal(read_tokens(str(tmp_path / name)), ids), name
    (tmp_path / "text.txt").write_text("a b c\n" * 10)
    with pytest.raises(LogError, match="give --tokenizer"):
        read_tokens(str(tmp_path / "text.txt"))
    with pytest.raises(LogError, match="does not exist"):
        read_tokens(str(tmp_path / "missing.bin"))


def test_text_through_the_runs_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "park"]
    rng = np.random.default_rng(0)
    chosen = [words[i] for i in rng.integers(0, len(words), 20_000)]
    text = " ".join(chosen)
    (tmp_path / "corpus.txt").write_text(text)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": " ".join(chosen[i:i + 100])}) + "\n"
                                                   for i in range(0, len(chosen), 100)))
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([text], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    for name in ("corpus.txt", "corpus.jsonl"):
        ids = read_tokens(str(tmp_path / name), str(tmp_path))  # a folder holding tokenizer.json
        base = baselines_of(ids)
        assert len(ids) == 20_000 and abs(base["unigram"] - math.log(10)) < 0.05  # ten words, uniform, independent
        assert abs(base["bigram"] - base["unigram"]) < 0.03  # independent words: the previous one tells nothing


@pytest.mark.parametrize("seed", range(3))
def test_log_stuck_at_the_bigram_level_is_the_infrastructure(tmp_path, seed):
    """A run whose loss flattens at its data's bigram loss learned nothing past the previous token (a ternary model
    whose BitLinear layers never trained): INFRASTRUCTURE BUG, although ln V is far above. The same curve shape ending
    well below the bigram loss is CONVERGED; a curve still falling through the bigram level is UNDERTRAINED."""
    ids, h_cond, _ = _chain(vocab=60, n=100_000, seed=seed)
    ids.astype(np.uint16).tofile(tmp_path / "train.bin")
    rows = generate(spec_for("saturated", seed=seed))
    end = rows[-1]["loss"]
    for shift, expected in ((h_cond + 0.02 - end, "INFRASTRUCTURE BUG"), (h_cond - 0.8 - end, "CONVERGED")):
        log = tmp_path / f"log{shift:.2f}.jsonl"
        log.write_text("".join(json.dumps({"step": r["step"], "loss": r["loss"] + shift, "lr": r["lr"]}) + "\n"
                               for r in rows))
        report = check_curve(CurveOptions(run=str(log), out=str(tmp_path / "out"), vocab=60,
                                          data=str(tmp_path / "train.bin"))).to_dict()
        base = next(p for p in report["probes"] if p["name"] == "loss_baseline")
        assert report["verdict"]["category"] == expected, (report["verdict"], base["message"])
        assert "bigram model of train.bin" in base["message"]
        if expected == "INFRASTRUCTURE BUG":
            assert base["status"] == "WARN" and base["value"] > 0.5  # ln V alone would not have caught it
    # a healthy run still falling through the bigram level (as every run does early) is not a bug
    rows = generate(spec_for("falling", seed=seed))
    shift = h_cond + 0.02 - rows[-1]["loss"]
    log = tmp_path / "falling.jsonl"
    log.write_text("".join(json.dumps({"step": r["step"], "loss": r["loss"] + shift, "lr": r["lr"]}) + "\n"
                           for r in rows))
    report = check_curve(CurveOptions(run=str(log), out=str(tmp_path / "out"), vocab=60,
                                      data=str(tmp_path / "train.bin"))).to_dict()
    assert report["verdict"]["category"] == "UNDERTRAINED", report["verdict"]
