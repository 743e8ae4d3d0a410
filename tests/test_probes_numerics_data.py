"""Numerics and data probes: PASS when healthy, FAIL with NaN sources and data bugs planted."""
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from bitcheck.judge.plants import no_eps, patch_bitlinear
from bitcheck.judge.subjects import LogitsOnly
from probes import TokenizerAdapter
from tests.probe_helpers import part, result, subject


def test_healthy_numerics_and_data_pass():
    """Finite everywhere; exact round trip; shifted targets; ids in range; batches read as the source."""
    s = subject()
    assert result(s, "nonfinite").status == "PASS"
    r = result(s, "data_decode")
    assert r.status == "PASS", r.message
    assert r.value["shifted_share"] == 1.0 and r.value["lost_char_share"] == 0.0


def test_zero_row_nan_is_caught():
    """absmax without eps: an all-zero row turns into NaN, and the probe names the layer."""
    s = subject()
    s.model = LogitsOnly(patch_bitlinear(s.model.inner, no_eps))
    r = result(s, "nonfinite")
    assert r.status == "FAIL" and "all-zero input row" in r.message
    assert part(s, "nonfinite") == "numerics"


def test_first_nonfinite_module_is_named():
    """A NaN weight in one layer: the first module with a non-finite output is that layer."""
    s = subject()
    with torch.no_grad():
        s.model.inner.blocks[1].ffn.up_proj.weight[0, 0] = float("nan")
    r = result(s, "nonfinite")
    assert r.status == "FAIL"
    assert r.details["first_module"] == "inner.blocks.1.ffn.up_proj", r.details
    assert "parameter inner.blocks.1.ffn.up_proj.weight" in r.message


def _whitespace_bpe(texts):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"]))
    return tok


@pytest.mark.training
def test_whitespace_pretokenizer_is_caught():
    """The seed recipe's Whitespace pre-tokenizer loses newlines/spaces: the round trip fails."""
    s = subject()
    s.tokenizer = TokenizerAdapter(_whitespace_bpe(s.texts))
    s.batches = None
    r = result(s, "data_decode")
    assert r.status == "FAIL" and r.value["lost_char_share"] > 0.01, r.value
    assert part(s, "data_decode") == "data/tokenizer"


def test_byte_level_bpe_passes():
    """A byte-level BPE (ByteLevel pre-tokenizer and decoder) round-trips exactly: no false alarm."""
    s = subject()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(s.texts, trainers.BpeTrainer(vocab_size=300,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    s.tokenizer = TokenizerAdapter(tok)
    s.batches = None
    assert result(s, "data_decode").status == "PASS"


def test_unshifted_targets_are_caught():
    """targets == inputs (not shifted by one) is caught by the shifted share."""
    s = subject()
    batches = []
    for x, y in s.batches:
        y2 = x.clone()
        y2[y < 0] = -1
        batches.append((x, y2))
    s.batches = batches
    r = result(s, "data_decode")
    assert r.status == "FAIL" and r.value["shifted_share"] < 0.5
    assert part(s, "data_decode") == "data/tokenizer"


def test_out_of_range_ids_are_caught():
    """An id >= vocab in the batch fails the probe."""
    s = subject()
    x, y = s.batches[0]
    x = x.clone()
    x[0, 5] = 99
    s.batches = [(x, y)]
    r = result(s, "data_decode")
    assert r.status == "FAIL" and r.value["out_of_range_ids"] == 1
