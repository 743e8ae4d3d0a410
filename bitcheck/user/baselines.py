"""The losses of the trivial predictors on the user's own data: what `bitcheck curve --data --tokenizer` holds a
run's loss against, besides ln V (probes/curve.py, `loss_baseline`).

    base = data_baselines("train.bin")                                   # llm.c / nanoGPT token shards
    base = data_baselines("corpus.txt", tokenizer="tokenizer.json")      # text through the run's tokenizer
    base["unigram"], base["bigram"]                                      # nats per token, held out

A model that learned its data ends well below both: a unigram model knows only token frequencies, a bigram
model only the previous token (the input embedding times the head can hold no more: a ternary model whose
BitLinear layers never trained ends there). Both are estimated on the first 90% of the tokens read and scored
on the last 10%, so a small sample's overfitting does not make the bar unreachably low: unigram add-one
smoothed, bigram interpolated with the unigram by Witten-Bell (Witten & Bell 1991; Chen & Goodman 1998, eq. 16).

Data: `.bin` token files (llm.c's shards with their 256-int32 header, magic 20240520; nanoGPT's raw uint16),
`.npy` token arrays, or text (`.txt`, `.jsonl` with a "text" field, `.parquet` with one) with `--tokenizer` (a
Hugging Face tokenizers JSON, or a folder holding tokenizer.json). Errors: LogError (one line, exit 2).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bitcheck.user.runlog import LogError

MAX_TOKENS = 5_000_000  # read at most this many tokens: ~2 s, and the bigram bar moves < 0.05 nats past ~1M
HELD_OUT = 0.1
LLMC_MAGIC = 20240520


def _tokens_of_bin(path: Path, limit: int) -> np.ndarray:
    head = np.fromfile(path, dtype=np.int32, count=256)
    if len(head) >= 3 and head[0] == LLMC_MAGIC:  # llm.c: header, then uint16 tokens (version 1)
        return np.fromfile(path, dtype=np.uint16, count=min(int(head[2]), limit), offset=256 * 4)
    return np.fromfile(path, dtype=np.uint16, count=limit)  # nanoGPT's train.bin: raw uint16


def _texts(path: Path):
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    yield row.get("text", "") if isinstance(row, dict) else str(row)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq  # installed with datasets
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            yield from batch.column("text").to_pylist()
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            while chunk := f.read(1 << 20):
                yield chunk


def _tokenizer(spec: str):
    from tokenizers import Tokenizer
    p = Path(spec)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise LogError(f"tokenizer {spec} does not exist (give a tokenizers JSON file or a folder holding tokenizer.json)")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # noqa: BLE001 - any parse error is the same user mistake
        raise LogError(f"{p} is not a tokenizers JSON file ({type(e).__name__})") from None


def read_tokens(data: str, tokenizer: str | None = None, limit: int = MAX_TOKENS) -> np.ndarray:
    """Token ids (int64, 1-D) of `data`, at most `limit`. Raises LogError for a missing file, text without a
    tokenizer, or fewer than 1,000 tokens."""
    p = Path(data)
    if not p.is_file():
        raise LogError(f"--data {data} does not exist")
    if p.suffix == ".bin":
        ids = _tokens_of_bin(p, limit).astype(np.int64)
    elif p.suffix == ".npy":
        ids = np.load(p, mmap_mode="r").reshape(-1)[:limit].astype(np.int64)
    else:
        if tokenizer is None:
            raise LogError(f"--data {data} is text: give --tokenizer (the run's tokenizer.json) to count its tokens")
        tok, parts, n = _tokenizer(tokenizer), [], 0
        for text in _texts(p):
            ids = tok.encode(text).ids
            parts.append(np.asarray(ids, dtype=np.int64))
            n += len(ids)
            if n >= limit:
                break
        ids = np.concatenate(parts)[:limit] if parts else np.zeros(0, dtype=np.int64)
    if len(ids) < 1000:
        raise LogError(f"--data {data} holds {len(ids)} tokens: too few to estimate a baseline (needs 1,000)")
    return ids


def baselines_of(ids: np.ndarray, vocab: int | None = None) -> dict:
    """Held-out cross-entropy (nats per token) of the unigram and the bigram model of `ids` (module docstring).
    `vocab`: the model's vocabulary (the add-one unigram spreads its mass over it; default: the largest id + 1)."""
    cut = int(len(ids) * (1 - HELD_OUT))
    train, test = ids[:cut], ids[cut:]
    size = max(int(ids.max()) + 1, vocab or 0)
    uni_counts = np.bincount(train, minlength=size).astype(np.float64)
    p_uni = (uni_counts + 1) / (uni_counts.sum() + size)
    unigram = float(-np.log(p_uni[test]).mean())
    pairs = train[:-1] * size + train[1:]
    keys, counts = np.unique(pairs, return_counts=True)
    prev_tot = np.bincount(train[:-1], minlength=size).astype(np.float64)  # c(a)
    followers = np.bincount(keys // size, minlength=size).astype(np.float64)  # T(a): distinct followers
    q = test[:-1] * size + test[1:]
    idx = np.searchsorted(keys, q)
    found = (idx < len(keys)) & (keys[np.minimum(idx, len(keys) - 1)] == q)
    c_ab = np.where(found, counts[np.minimum(idx, len(keys) - 1)], 0).astype(np.float64)
    a = test[:-1]
    denom = prev_tot[a] + followers[a]
    lam = np.divide(prev_tot[a], denom, out=np.zeros_like(denom), where=denom > 0)  # Witten-Bell weight
    p_bi = lam * np.divide(c_ab, prev_tot[a], out=np.zeros_like(c_ab), where=prev_tot[a] > 0) \
        + (1 - lam) * p_uni[test[1:]]
    bigram = float(-np.log(p_bi).mean())
    return {"unigram": unigram, "bigram": bigram, "tokens": int(len(ids)), "held_out": int(len(test))}


def data_baselines(data: str, tokenizer: str | None = None, vocab: int | None = None) -> dict:
    """`baselines_of` on the tokens of `data` (read_tokens), with where they came from."""
    base = baselines_of(read_tokens(data, tokenizer), vocab)
    base["source"] = f"{Path(data).name}" + (f" through {Path(tokenizer).name}" if tokenizer else "")
    return base
