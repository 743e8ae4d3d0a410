"""Real-text plumbing: the story generator, tokenizers (round trip as a property), data sources,
the uint16 token cache and memory-mapped batches. All data is generated here."""
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bitcheck.bitnet import tokenizer as toks
from bitcheck.bitnet.textdata import SEPARATOR, VAL_EVERY, TextDataError, TokenBatches, build_cache, open_source
from synthetic.stories import generate_stories, stories_text

STORIES = generate_stories(400, seed=3)
BPE = toks.train(STORIES, 512)
CHARS = toks.train(STORIES, 64)


def test_story_generator_is_seeded_and_varied():
    assert generate_stories(5, seed=1) == generate_stories(5, seed=1)
    assert generate_stories(5, seed=1) != generate_stories(5, seed=2)
    many = generate_stories(3000, seed=0)
    words = {w for s in many for w in re.findall(r"[A-Za-z']+", s)}
    assert 900 <= len(words) <= 2000, len(words)  # the "~1-2K distinct words"
    assert len(set(many)) == len(many)
    assert all(s.split()[0] in ("Once", "There", "Long") and s.endswith((".", "!")) for s in many)
    assert all(SEPARATOR not in s and "\n" not in s for s in many)


@given(st.text(max_size=200))
def test_byte_level_bpe_round_trip_is_exact(text):
    assert BPE.decode(BPE.encode(text).ids, skip_special_tokens=False) == text


def test_tokenizers_have_exactly_the_asked_vocabulary_and_specials():
    for tok, n in ((BPE, 512), (CHARS, 64), (toks.train(STORIES[:20], 300), 300)):
        assert tok.get_vocab_size() == n  # padded with unused specials when the text is short
        assert [tok.token_to_id(s) for s in toks.SPECIALS] == [0, 1, 2]
    with pytest.raises(toks.TokenizerError, match="at least 260"):
        toks.train_bpe(STORIES, 200)


def test_char_tokenizer_round_trip_and_lost_share():
    lost, n = toks.lost_share(CHARS, STORIES[:50])
    assert lost == 0.0 and n > 10_000  # every character of the stories is in the alphabet
    lost, _ = toks.lost_share(CHARS, ["Once upon a time ü日本"])
    assert 0.1 < lost < 0.2  # 3 of 20 characters become <|unk|> and are dropped on decode


def _write_sources(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    stories = generate_stories(300, seed=4)
    (tmp_path / "s.txt").write_text(f"\n{SEPARATOR}\n".join(stories) + "\n")
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"text": s, "id": i}) + "\n" for i, s in enumerate(stories)))
    pq.write_table(pa.table({"text": stories}), tmp_path / "s.parquet")
    datasets.Dataset.from_dict({"text": stories}).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": stories[:290]}),
                          "validation": datasets.Dataset.from_dict({"text": stories[290:]})}
                         ).save_to_disk(str(tmp_path / "saved_dict"))
    return stories


def test_every_local_source_gives_the_same_stories(tmp_path):
    stories = _write_sources(tmp_path)
    want_val = [s for i, s in enumerate(stories) if i % VAL_EVERY == VAL_EVERY - 1]
    for name in ("s.txt", "s.jsonl", "s.parquet", "saved"):
        src = open_source(str(tmp_path / name))
        assert list(src.stories("val")) == want_val, name
        assert len(list(src.stories("train"))) == len(stories) - len(want_val), name
    d = open_source(str(tmp_path / "saved_dict"))  # its own validation split is used
    assert list(d.stories("val")) == stories[290:] and d.count("train") == 290
    syn = open_source("synthetic:500")
    assert syn.count("val") == 5 and len(list(syn.stories("train"))) == 495


@pytest.mark.training
def test_bad_sources_are_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    (tmp_path / "notext.parquet").write_bytes(b"PAR1 garbage")
    (tmp_path / "x.csv").write_text("a,b\n")
    (tmp_path / "folder").mkdir()
    cases = [(str(tmp_path / "missing.txt"), "no such file"), (str(tmp_path / "x.csv"), "unknown file type"),
             (str(tmp_path / "folder"), "not one written by datasets' save_to_disk"),
             ("synthetic:10", "at least 100 stories")]
    for spec, message in cases:
        with pytest.raises(TextDataError, match=re.escape(message)):
            open_source(spec)
    with pytest.raises(TextDataError, match="bad.jsonl:2 is not a JSON object"):
        list(open_source(str(tmp_path / "bad.jsonl")).stories("train"))
    with pytest.raises(TextDataError, match="not a readable parquet file"):
        list(open_source(str(tmp_path / "notext.parquet")).stories("train"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests never reach the network
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(TextDataError, match="Offline\\? Use --data with a TinyStories .txt file"):
        open_source("nobody/no-such-dataset")


def test_cache_is_built_once_per_source_and_tokenizer(tmp_path):
    (tmp_path / "s.txt").write_text(stories_text(300, seed=5))
    src = open_source(str(tmp_path / "s.txt"))
    cache = build_cache(src, BPE, tmp_path / "data", progress=False)
    stamp = (cache.dir / "meta.json").stat().st_mtime_ns
    again = build_cache(open_source(str(tmp_path / "s.txt")), BPE, tmp_path / "data", progress=False)
    assert again.dir == cache.dir and (again.dir / "meta.json").stat().st_mtime_ns == stamp
    other = build_cache(src, CHARS, tmp_path / "data", progress=False)
    assert other.dir != cache.dir
    ids = np.fromfile(cache.val, dtype=np.uint16).tolist()
    eos = BPE.token_to_id(SEPARATOR)
    first = BPE.decode(ids[:ids.index(eos)])
    assert first == next(iter(src.stories("val")))  # exactly the story, no loss
    m = cache.meta
    assert m["val"]["stories"] == 3 and m["train"]["stories"] == 297
    assert m["val"]["tokens"] == len(ids) and 2.0 < cache.bytes_per_token() < 6.0
    assert not list(cache.dir.glob("*.tmp"))


def test_batches_are_shifted_seeded_and_split_over_ranks(tmp_path):
    cache = build_cache(open_source("synthetic:200"), BPE, tmp_path, progress=False)
    b = TokenBatches(cache.train, seq_len=32, batch_size=8, seed=0)
    x, y = b(5)
    assert x.shape == y.shape == (8, 32) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(b(5)[0], x) and not torch.equal(b(6)[0], x)
    halves = [TokenBatches(cache.train, 32, 8, 0, rank=r, world=2)(5)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), x)  # two ranks together feed the one-process batch
    with pytest.raises(TextDataError, match="does not split evenly"):
        TokenBatches(cache.train, 32, 7, 0, rank=0, world=2)
