"""Tests for goldmine.tokenizer: training, losslessness, special tokens, loading and saving."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldmine.config import TokenizerConfig
from goldmine.data.readers import iter_texts
from goldmine.data.sample import generate_sample_data
from goldmine.errors import GoldmineError
from goldmine.registry import Registry
from goldmine.tokenizer import (
    BYTE_TOKENS,
    ROLE_TOKENS,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    Tokenizer,
    build_bpe,
    build_char,
    train_tokenizer,
)

HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])
TRICKY = [
    "", " ", "  leading and trailing  ", "\r\n", "a\r\nb\r\n", "\n\n\n", "\t\x00\x01\x7f\x1b[0m",
    "金矿良品的羊毛围巾非常暖和。", "emoji 😀👍🏽 and flags 🇨🇳🇬🇧, ZWJ 👩‍👩‍👧",
    "combining e\u0301 a\u0308\u0323 and NFC é", "\ufeffBOM \u200bzero width\u00a0nbsp",
    "<|eos|> in text <|user|>hi<|end|>", "<0x41> looks like a byte token", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010ffff",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    generate_sample_data(d, scale=0.05)
    return d


def _texts(corpus: Path):
    return (p.text for p in iter_texts([corpus / "corpus.txt", corpus / "corpus.jsonl"]))


@pytest.fixture(scope="module")
def bpe(corpus) -> Tokenizer:
    return build_bpe(_texts(corpus), vocab_size=800, min_frequency=2)


@pytest.fixture(scope="module")
def char(corpus) -> Tokenizer:
    counts: Counter = Counter()
    for t in _texts(corpus):
        counts.update(t)
    return build_char(counts, vocab_size=100_000)


# ------------------------------------------------------------------------------ losslessness
@HYPOTHESIS
@given(text=st.text())
def test_bpe_round_trip_any_unicode(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@HYPOTHESIS
@given(text=st.text())
def test_char_round_trip_any_unicode(char, text):
    assert char.decode(char.encode(text)) == text


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_tricky_strings(bpe, char, text):
    for tok in (bpe, char):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.encode_batch([text, text]) == [ids, ids]


def test_bpe_learned_english_and_chinese(bpe, corpus):
    text = (corpus / "corpus.txt").read_text(encoding="utf-8")[:5000]
    ids = bpe.encode(text)
    assert len(text.encode("utf-8")) / len(ids) > 2.0  # merges actually compress
    assert bpe.kind == "bpe" and bpe.vocab_size == 800
    # the 256 byte symbols are in the vocabulary right after the special tokens
    assert bpe.id_to_token(7) is not None and bpe.token_to_id("Ġ") is not None


# ------------------------------------------------------------------------------ special tokens
def test_special_token_ids(bpe, char):
    assert SPECIAL_TOKENS == ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>",
                              "<|assistant|>", "<|end|>"]
    assert set(ROLE_TOKENS) == {"system", "user", "assistant"}
    for tok in (bpe, char):
        assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(7))
        assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
        assert tok.special_ids == {"pad": 0, "bos": 1, "eos": 2, "system": 3, "user": 4,
                                   "assistant": 5, "end": 6}
        assert tok.role_ids == {"system": 3, "user": 4, "assistant": 5}
        ids = tok.encode("hi", bos=True, eos=True)
        assert ids[0] == 1 and ids[-1] == 2 and tok.decode(ids, skip_special=True) == "hi"
        assert tok.encode("<|user|>x<|end|>") == [4, *tok.encode("x"), 6]
        assert len(tok) == tok.vocab_size


# ------------------------------------------------------------------------------ char mode
def test_char_vocab_contents(char, corpus):
    text = (corpus / "corpus.txt").read_text(encoding="utf-8")
    seen = set(text) | set("".join(_texts(corpus)))
    vocab = char.get_vocab()
    assert char.kind == "char"
    assert char.vocab_size == len(SPECIAL_TOKENS) + len(seen) + 256
    assert all(c in vocab for c in seen)
    assert all(b in vocab for b in BYTE_TOKENS)
    # the most frequent character comes first, right after the special tokens
    assert char.id_to_token(7) == Counter(text).most_common(1)[0][0]
    assert char.encode("a") == [vocab["a"]]


def test_char_byte_fallback_for_unseen_characters(char):
    unseen = "龘🦙"
    assert not any(c in char.get_vocab() for c in unseen)
    ids = char.encode(unseen)
    assert [char.id_to_token(i) for i in ids] == [f"<0x{b:02X}>" for b in unseen.encode()]
    assert char.decode(ids) == unseen


def test_char_vocab_is_capped_by_vocab_size():
    counts = Counter("aaaabbbcc d")
    tok = build_char(counts, vocab_size=7 + 256 + 2)
    assert tok.vocab_size == 265
    assert tok.id_to_token(7) == "a" and tok.id_to_token(8) == "b"
    assert tok.decode(tok.encode("abcd")) == "abcd"  # c, d fall back to bytes


def test_char_without_byte_fallback_uses_unk():
    tok = build_char(Counter("hello"), vocab_size=1000, byte_fallback=False)
    assert tok.vocab_size == 7 + 1 + 4
    assert tok.special_ids["unk"] == 7
    ids = tok.encode("hex")
    assert tok.id_to_token(ids[-1]) == UNK_TOKEN and tok.decode(ids) == "he" + UNK_TOKEN


def test_char_encoding_of_a_megabyte_is_one_token_per_character(char, corpus):
    text = (corpus / "corpus.txt").read_text(encoding="utf-8")
    big = text * max(1, (1 << 20) // len(text))
    ids = char.encode(big)
    assert len(ids) == len(big)
    assert char.decode(ids) == big


# ------------------------------------------------------------------------------ training API
def test_train_tokenizer_records_a_run(corpus):
    cfg = TokenizerConfig(inputs=[str(corpus / "corpus.jsonl")], vocab_size=600)
    result = train_tokenizer(cfg)
    assert set(result) == {"run_id", "tokenizer", "vocab_size", "kind", "documents", "bytes",
                           "bytes_per_token", "seconds"}
    assert result["vocab_size"] == 600 and result["kind"] == "bpe"
    assert result["documents"] == 250
    assert result["bytes"] == (corpus / "corpus.jsonl").stat().st_size
    assert result["bytes_per_token"] > 1.5
    run = Registry().get(result["run_id"])
    assert run["status"] == "completed"
    assert run["metrics"]["vocab_size"] == 600
    assert Path(run["artifacts"]["tokenizer"]) == Path(result["tokenizer"]).resolve()
    # by run id, run directory, directory, file
    tok = Tokenizer.load(result["run_id"])
    for ref in (Path(result["tokenizer"]).parent, result["tokenizer"], run["run_dir"]):
        assert Tokenizer.load(ref).sha256 == tok.sha256
    assert tok.encode("wool scarf") == Tokenizer.load(run["run_dir"]).encode("wool scarf")


def test_train_char_mode(corpus, tmp_path):
    out = tmp_path / "tok"
    result = train_tokenizer(TokenizerConfig(inputs=[str(corpus / "corpus.txt")], char=True,
                                             out=str(out)))
    assert result["kind"] == "char" and Path(result["tokenizer"]) == out / "tokenizer.json"
    assert result["vocab_size"] < 8192 and result["documents"] == 1
    assert 1.0 <= result["bytes_per_token"] < 1.6


def test_vocab_too_small(corpus):
    cfg = TokenizerConfig(inputs=[str(corpus / "corpus.txt")], vocab_size=200)
    with pytest.raises(GoldmineError) as e:
        train_tokenizer(cfg)
    assert str(e.value) == ("vocab_size 200 is too small: the 7 special tokens and 256 byte "
                            "symbols need at least 263")
    with pytest.raises(GoldmineError, match="need at least 264"):
        train_tokenizer(TokenizerConfig(inputs=[str(corpus / "corpus.txt")], vocab_size=263,
                                        char=True))


@pytest.mark.parametrize("char", [False, True])
def test_bad_input_line_stops_training(tmp_path, char):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine words"}\n' * 50 + '{"body": "x"}\n')
    with pytest.raises(GoldmineError, match=r"bad.jsonl line 51: no 'text' field"):
        train_tokenizer(TokenizerConfig(inputs=[str(f)], vocab_size=300, char=char))


def test_empty_corpus(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text('{"text": ""}\n{"text": ""}\n')
    with pytest.raises(GoldmineError, match="no text to train on"):
        train_tokenizer(TokenizerConfig(inputs=[str(f)], vocab_size=300))


# ------------------------------------------------------------------------------ load / save
def test_save_is_atomic_and_stable(bpe, tmp_path):
    path = bpe.save(tmp_path / "out")
    assert path == tmp_path / "out" / "tokenizer.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]
    again = Tokenizer.load(tmp_path / "out")
    assert again.sha256 == bpe.sha256 and again.path == path.resolve()
    again.save(tmp_path / "out")  # overwriting keeps the same bytes
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]
    assert Tokenizer.load(path).sha256 == bpe.sha256


def test_load_errors(tmp_path, bpe):
    (tmp_path / "notjson.json").write_text("hello")
    (tmp_path / "rejected.json").write_text(json.dumps({"model": {"type": "Nope"}}))
    (tmp_path / "empty").mkdir()
    import tokenizers

    plain = tokenizers.Tokenizer(tokenizers.models.BPE())
    plain.save(str(tmp_path / "plain.json"))
    cases = {
        tmp_path / "missing" / "tokenizer.json": "tokenizer not found",
        tmp_path / "notjson.json": "not a tokenizer.json (not valid JSON",
        tmp_path / "rejected.json": "not a tokenizer.json the tokenizers library can read",
        tmp_path / "empty": "no tokenizer.json in this directory",
        tmp_path / "plain.json": "lacks goldmine's special tokens <|pad|>",
        "no-such-run-id": "not a tokenizer.json, a directory holding one, or a run id",
    }
    for ref, needle in cases.items():
        with pytest.raises(GoldmineError) as e:
            Tokenizer.load(ref)
        assert needle in str(e.value), (ref, str(e.value))
        assert "\n" not in str(e.value)
