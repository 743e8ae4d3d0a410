"""Real text for training: sources of stories, a token cache, and memory-mapped random batches.

    source = open_source("roneneldan/TinyStories")   # or a .txt/.jsonl/.parquet file, a save_to_disk
                                                     # folder, or "synthetic[:N]" (generated stories)
    cache = build_cache(source, tokenizer, "data")   # train.bin / val.bin (uint16) + meta.json, once
    batches = TokenBatches(cache.train, seq_len=256, batch_size=32, seed=0)
    x, y = batches(step, micro)                      # (B, T) int64 each, y = x shifted by one

Stories are tokenised once into flat uint16 files (each story followed by <|endoftext|>), keyed by
the source's identity and the tokenizer, written to a temporary name and renamed when complete (an
interrupted build leaves nothing half-written). Batches are random windows of the memory-mapped
file, drawn from a generator seeded by (seed, step, micro): any step's batch is reproducible,
which makes resume exact, and each DDP rank takes its slice of the same global batch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from bitcheck.bitnet import tokenizer as toks
from bitcheck.bitnet.tokenizer import EOS as SEPARATOR  # ends every story: the .txt line and the token
from bitcheck.bitnet.tokenizer import special_id
from bitcheck.errors import UserError, first_line

HUB_DEFAULT = "roneneldan/TinyStories"
VAL_EVERY = 100  # local sources: every 100th story is held out for validation
CACHE_VERSION = 1
LOCAL_OPTIONS = ("a TinyStories .txt file (stories separated by a line <|endoftext|>), a .jsonl file with a "
                 "'text' field, a .parquet file, a folder written by datasets' save_to_disk, or "
                 "'synthetic' (generated stories, offline)")


class TextDataError(UserError):
    """A bad or unreachable data source: one line, exit 2."""


@dataclass
class Source:
    """Where stories come from: `stories(split)` yields the texts of 'train' or 'val'."""
    name: str  # shown to users
    identity: str  # what the cache key hashes: path + size + mtime, the hub name, or the generator's
    stories: Callable[[str], Iterator[str]]
    count: Callable[[str], int | None]  # number of stories in a split when known (progress bars)
    reopen: str  # the --data that opens this source again from any directory (local paths absolute)


def _split_txt(path: Path) -> Iterator[str]:
    buf: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip() == SEPARATOR:
                text = "".join(buf).strip()
                if text:
                    yield text
                buf = []
            else:
                buf.append(line)
    text = "".join(buf).strip()
    if text:
        yield text


def _jsonl(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError):
                raise TextDataError(f"{path}:{n} is not a JSON object with a 'text' field") from None
            if text.strip():
                yield text.strip()


def _parquet(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise TextDataError(f"{path} is not a readable parquet file ({first_line(e)})") from None
    if "text" not in pf.schema_arrow.names:
        raise TextDataError(f"{path} has no 'text' column (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(columns=["text"], batch_size=4096):
        for text in batch.column(0).to_pylist():
            if text and text.strip():
                yield text.strip()


def _held_out(stories: Callable[[], Iterator[str]]) -> Callable[[str], Iterator[str]]:
    """A train/val split of one stream: every VAL_EVERY-th story is validation."""
    def split(which: str) -> Iterator[str]:
        for i, s in enumerate(stories()):
            if (i % VAL_EVERY == VAL_EVERY - 1) == (which == "val"):
                yield s
    return split


def _from_dataset(ds, name: str) -> tuple[Callable[[str], Iterator[str]], Callable[[str], int | None]]:
    """A datasets Dataset or DatasetDict: its 'validation' split when it has one, else held out."""
    import datasets
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        train = ds["train"] if "train" in ds else ds[next(iter(ds))]
        val = ds.get("validation") or ds.get("test")
    else:
        train, val = ds, None
    if "text" not in (train.column_names or []):
        raise TextDataError(f"{name} has no 'text' column (columns: {train.column_names})")

    def texts(d) -> Iterator[str]:
        for row in d:
            t = row["text"]
            if t and t.strip():
                yield t.strip()

    def length(d) -> int | None:
        try:
            return len(d)
        except TypeError:  # streaming
            return None
    if val is None:
        n = length(train)
        return _held_out(lambda: texts(train)), lambda split: (
            None if n is None else (n // VAL_EVERY if split == "val" else n - n // VAL_EVERY))
    return (lambda split: texts(val if split == "val" else train)), \
        (lambda split: length(val if split == "val" else train))


def open_source(spec: str) -> Source:
    """Parse --data: a local file or folder, 'synthetic[:N]', or a Hugging Face hub dataset name."""
    m = re.fullmatch(r"synthetic(?::(\d+))?", spec)
    if m:
        from synthetic.stories import generate_stories
        n = int(m.group(1) or 20000)
        if n < VAL_EVERY:
            raise TextDataError(f"synthetic:{n}: give at least {VAL_EVERY} stories (one in {VAL_EVERY} is validation)")
        split = _held_out(lambda: iter(generate_stories(n, seed=0)))
        return Source(f"synthetic:{n}", f"synthetic:{n}:v1", split,
                      lambda s: n // VAL_EVERY if s == "val" else n - n // VAL_EVERY, f"synthetic:{n}")
    p = Path(spec).expanduser()
    if p.exists():
        st, where = p.stat(), str(p.resolve())
        ident = f"{where}:{st.st_size}:{st.st_mtime_ns}"
        if p.is_dir():
            if not any((p / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
                raise TextDataError(f"{spec} is a folder but not one written by datasets' save_to_disk; give "
                                    f"{LOCAL_OPTIONS}")
            import datasets
            try:
                ds = datasets.load_from_disk(str(p))
            except Exception as e:  # noqa: BLE001 - datasets raises many types
                raise TextDataError(f"{spec}: cannot load the saved dataset ({first_line(e)})") from None
            stories, count = _from_dataset(ds, spec)
            return Source(spec, ident, stories, count, where)
        readers = {".txt": _split_txt, ".jsonl": _jsonl, ".parquet": _parquet}
        if p.suffix not in readers:
            raise TextDataError(f"{spec}: unknown file type {p.suffix!r}; give {LOCAL_OPTIONS}")
        reader = readers[p.suffix]
        return Source(spec, ident, _held_out(lambda: reader(p)), lambda split: None, where)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec) and not spec.endswith((".txt", ".jsonl", ".parquet")):
        return _hub(spec)
    raise TextDataError(f"{spec}: no such file or folder; give {LOCAL_OPTIONS}, or a hub dataset name")


def _hub(name: str) -> Source:
    import datasets
    import huggingface_hub
    # the hub client logs every retry with its URL; the one line below says what happened
    huggingface_hub.utils.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    try:
        ds = datasets.load_dataset(name)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, auth: all one line for the user
        raise TextDataError(f"cannot load the hub dataset {name!r} ({type(e).__name__}: {first_line(e)[:160]}). "
                            f"Offline? Use --data with {LOCAL_OPTIONS}") from None
    stories, count = _from_dataset(ds, name)
    return Source(name, f"hub:{name}", stories, count, name)


# ---- the token cache ---------------------------------------------------------------------------------

@dataclass
class TokenCache:
    dir: Path
    meta: dict

    @property
    def train(self) -> Path:
        return self.dir / "train.bin"

    @property
    def val(self) -> Path:
        return self.dir / "val.bin"

    def bytes_per_token(self, split: str = "val") -> float:
        m = self.meta[split]
        return m["bytes"] / max(m["tokens"], 1)


def cache_key(source: Source, tokenizer_json: str, max_stories: int | None) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}|{source.identity}|{max_stories}|".encode())
    h.update(tokenizer_json.encode())
    return h.hexdigest()[:16]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name if os.sep in name else name)[:40]


def build_cache(source: Source, tokenizer, data_dir: str | Path, max_stories: int | None = None,
                progress: bool = True) -> TokenCache:
    """Tokenise both splits into uint16 files once; later calls with the same source and tokenizer
    reuse them. The tokenizer must have <|endoftext|> (appended after every story)."""
    vocab = tokenizer.get_vocab_size()
    if vocab > 65535:
        raise TextDataError(f"the tokenizer has {vocab} tokens; the uint16 cache holds at most 65535")
    eos = special_id(tokenizer, SEPARATOR)
    tok_json = tokenizer.to_str()
    target = Path(data_dir) / f"{_slug(source.name)}-{cache_key(source, tok_json, max_stories)}"
    if (target / "meta.json").is_file():
        return TokenCache(target, json.loads((target / "meta.json").read_text()))
    target.mkdir(parents=True, exist_ok=True)
    meta = {"source": source.name, "identity": source.identity, "vocab_size": vocab,
            "tokenizer_sha256": hashlib.sha256(tok_json.encode()).hexdigest(), "max_stories": max_stories}
    for split in ("val", "train"):
        limit = None if max_stories is None else (max(1, max_stories // VAL_EVERY) if split == "val" else max_stories)
        meta[split] = _tokenize_split(source, split, tokenizer, eos, target / f"{split}.bin", limit, progress)
        if meta[split]["tokens"] < 2:
            raise TextDataError(f"{source.name}: the {split} split is empty (too few stories; one in "
                                f"{VAL_EVERY} is held out for validation)")
    (target / "tokenizer.json").write_text(tok_json)
    tmp = target / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(target / "meta.json")  # meta.json last: its presence means the cache is complete
    return TokenCache(target, meta)


def _tokenize_split(source: Source, split: str, tokenizer, eos: int, out: Path, limit: int | None,
                    progress: bool) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    total = source.count(split)
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    tokens = stories = nbytes = 0
    tmp = out.with_suffix(".bin.tmp")
    bar = Progress(TextColumn(f"[bold]tokenize {split}"), BarColumn(), MofNCompleteColumn(), TextColumn("stories"),
                   TimeElapsedColumn(), console=Console(stderr=True), disable=not progress)
    with bar, tmp.open("wb") as f:
        task = bar.add_task(split, total=total)
        chunk: list[str] = []

        def flush():
            nonlocal tokens, nbytes
            for enc, text in zip(tokenizer.encode_batch(chunk, add_special_tokens=False), chunk):
                ids = np.asarray(enc.ids + [eos], dtype=np.uint16)
                ids.tofile(f)
                tokens += ids.size
                nbytes += len(text.encode("utf-8")) + 1  # the separator counts as one byte (a newline)
            bar.update(task, advance=len(chunk))
            chunk.clear()
        for text in source.stories(split):
            if limit is not None and stories >= limit:
                break
            chunk.append(text)
            stories += 1
            if len(chunk) == 2048:
                flush()
        if chunk:
            flush()
    tmp.replace(out)
    return {"stories": stories, "tokens": tokens, "bytes": nbytes}


# ---- batches -------------------------------------------------------------------------------------------

class TokenBatches:
    """batches(step, micro) -> (x, y): random windows of a uint16 token file, seeded by position.
    With world > 1 each rank returns its rows of the same global batch."""

    def __init__(self, path: Path, seq_len: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 salt: int = 0):
        self.data = np.memmap(path, dtype=np.uint16, mode="r")
        if len(self.data) <= seq_len + 1:
            raise TextDataError(f"{path} holds {len(self.data)} tokens; a batch needs windows of {seq_len + 1}")
        if batch_size % world:
            raise TextDataError(f"batch {batch_size} does not split evenly over {world} processes")
        self.seq, self.batch, self.seed, self.rank, self.world, self.salt = seq_len, batch_size, seed, rank, world, salt

    def __call__(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed((((self.seed * 1_000_003 + self.salt) * 1_000_003 + step) * 1009 + micro) % 2**63)
        starts = torch.randint(0, len(self.data) - self.seq - 1, (self.batch,), generator=g)
        per = self.batch // self.world
        mine = starts[self.rank * per:(self.rank + 1) * per].tolist()
        rows = np.stack([self.data[s:s + self.seq + 1] for s in mine]).astype(np.int64)
        t = torch.from_numpy(rows)  # (B, T+1)
        return t[:, :-1], t[:, 1:]


def train_tokenizer(data: str, vocab: int, stories: int, kind: str, out: str) -> dict:
    """`bitcheck tokenizer train`: train on the first `stories` stories of `data`, check the round trip
    on held-out ones, write `out`. Returns what was done (lost_char_share: the share of held-out
    characters decode(encode(text)) loses)."""
    if vocab < 8 or vocab > 65535:
        raise toks.TokenizerError(f"--vocab must be between 8 and 65535, got {vocab}")
    source = open_source(data)
    seen = [0]

    def counted():
        for text in islice(source.stories("train"), stories):
            seen[0] += 1
            yield text
    tok = toks.train(counted(), vocab, kind)
    lost, checked = toks.lost_share(tok, islice(source.stories("val"), 200))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tok.save(out)
    return {"out": out, "data": source.name, "vocab_size": tok.get_vocab_size(), "stories": seen[0],
            "kind": kind, "lost_char_share": lost, "chars_checked": checked}
