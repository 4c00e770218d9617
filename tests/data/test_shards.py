"""Tests for goldmine.data.shards: writing, splitting, reading and batching token shards."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from goldmine.config import TokenizeConfig
from goldmine.data import shards as shards_mod
from goldmine.data.readers import iter_texts
from goldmine.data.sample import generate_sample_data
from goldmine.data.shards import (
    TokenShards,
    ensure_shards,
    token_dtype,
    tokenize_corpus,
    write_shards,
)
from goldmine.errors import GoldmineError
from goldmine.registry import Registry
from goldmine.tokenizer import Tokenizer, build_bpe, build_char


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    generate_sample_data(d, scale=0.05)
    return d


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return build_bpe((p.text for p in iter_texts([corpus / "corpus.txt"])), vocab_size=600)


def _docs(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def _all(sh: TokenShards, split: str) -> np.ndarray:
    arrays = sh.arrays(split)
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def _write(corpus, tok, out, **kw):
    kw.setdefault("progress", False)
    write_shards([corpus], tok, out, **kw)
    return TokenShards(out)


# ---------------------------------------------------------------------------------- writing
def test_jsonl_token_counts_equal_direct_encoding(corpus, tok, tmp_path):
    sh = _write(corpus / "corpus.jsonl", tok, tmp_path / "s", shard_tokens=1024)
    docs = _docs(corpus / "corpus.jsonl")
    expected = [t for d in docs for t in tok.encode(d, bos=True, eos=True)]
    got = np.concatenate([_all(sh, "train"), _all(sh, "val")])
    assert got.tolist() == expected
    assert (got == tok.eos_id).sum() == len(docs) == (got == tok.bos_id).sum()
    assert sh.meta["bos"] is True
    meta = sh.meta
    assert meta["format"] == "goldmine-shards/1" and meta["dtype"] == "uint16"
    assert meta["documents"] == len(docs) and meta["eos"] is True
    assert meta["tokenizer_sha256"] == tok.sha256 == sh.tokenizer().sha256
    assert meta["bytes"] == (corpus / "corpus.jsonl").stat().st_size
    assert meta["train"]["files"][:2] == ["train-00000.bin", "train-00001.bin"]
    assert all(n <= 1024 for n in meta["train"]["file_tokens"])
    assert sh.tokens("train") + sh.tokens("val") == len(expected)


def test_text_chunks_tokenize_like_the_whole_file(corpus, tok, tmp_path, monkeypatch):
    # small pieces force many chunk cuts and a tail cut inside a chunk
    monkeypatch.setattr(shards_mod, "PIECE_BYTES", 2048)
    monkeypatch.setattr(shards_mod, "BATCH_BYTES", 8192)
    text = (corpus / "corpus.txt").read_bytes().decode("utf-8")
    sh = _write(corpus / "corpus.txt", tok, tmp_path / "s", val_fraction=0.25)
    train, val = _all(sh, "train"), _all(sh, "val")
    assert np.concatenate([train, val]).tolist() == tok.encode(text, bos=True, eos=True)
    # tail split: val is the end of the text, about the last quarter of it
    val_text = tok.decode(val[:-1].tolist())
    assert val[-1] == tok.eos_id and text.endswith(val_text)
    share = len(val_text.encode()) / len(text.encode())
    assert 0.2 < share < 0.3
    assert train[0] == tok.bos_id and tok.decode(train[1:].tolist()) + val_text == text


def test_no_eos_no_bos(corpus, tok, tmp_path):
    sh = _write(corpus / "corpus.jsonl", tok, tmp_path / "s", eos=False)
    docs = _docs(corpus / "corpus.jsonl")
    got = np.concatenate([_all(sh, "train"), _all(sh, "val")])
    assert got.tolist() == [t for d in docs for t in tok.encode(d, bos=True)]
    assert sh.meta["eos"] is False
    sh = _write(corpus / "corpus.jsonl", tok, tmp_path / "s2", eos=False, bos=False)
    got = np.concatenate([_all(sh, "train"), _all(sh, "val")])
    assert got.tolist() == [t for d in docs for t in tok.encode(d)]
    assert sh.meta["bos"] is False


def test_dtype_choice():
    assert token_dtype(600) == np.dtype("<u2")
    assert token_dtype(65536) == np.dtype("<u2")
    assert token_dtype(65537) == np.dtype("<u4")
    assert token_dtype(200_000) == np.dtype("<u4")


def test_uint32_shards_round_trip(corpus, tok, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_mod, "token_dtype", lambda v: np.dtype("<u4"))
    sh = _write(corpus / "corpus.jsonl", tok, tmp_path / "s")
    assert sh.meta["dtype"] == "uint32"
    f = tmp_path / "s" / "train-00000.bin"
    assert f.stat().st_size == 4 * sh.meta["train"]["file_tokens"][0]
    docs = _docs(corpus / "corpus.jsonl")
    assert np.concatenate([_all(sh, "train"), _all(sh, "val")]).tolist() == \
        [t for d in docs for t in tok.encode(d, bos=True, eos=True)]


def test_random_split_is_deterministic(corpus, tok, tmp_path):
    a = _write(corpus / "corpus.jsonl", tok, tmp_path / "a", split="random", seed=7,
               val_fraction=0.3)
    b = _write(corpus / "corpus.jsonl", tok, tmp_path / "b", split="random", seed=7,
               val_fraction=0.3)
    c = _write(corpus / "corpus.jsonl", tok, tmp_path / "c", split="random", seed=8,
               val_fraction=0.3)
    for split in ("train", "val"):
        assert _all(a, split).tolist() == _all(b, split).tolist()
    assert _all(a, "val").tolist() != _all(c, "val").tolist()
    n_val = (_all(a, "val") == tok.eos_id).sum()
    assert 0.15 * 250 < n_val < 0.45 * 250  # documents in val ~ val_fraction
    total = a.tokens("train") + a.tokens("val")
    assert total == c.tokens("train") + c.tokens("val")


def test_char_tokenizer_shards(corpus, tmp_path):
    char = build_char(Counter((corpus / "corpus.txt").read_text(encoding="utf-8")), 100_000)
    sh = _write(corpus / "corpus.txt", char, tmp_path / "s")
    text = (corpus / "corpus.txt").read_bytes().decode("utf-8")
    assert sh.tokens("train") + sh.tokens("val") == len(text) + 2  # + BOS + EOS
    assert sh.tokenizer().kind == "char"


def test_failed_write_leaves_no_meta(corpus, tok, tmp_path):
    bad = tmp_path / "in" / "bad.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"text": "fine"}\n' * 100 + "{oops\n")
    out = tmp_path / "s"
    _write(corpus / "corpus.jsonl", tok, out)  # a complete directory first
    with pytest.raises(GoldmineError, match="bad.jsonl line 101: not valid JSON"):
        write_shards([bad], tok, out, progress=False)
    assert not (out / "meta.json").exists()
    with pytest.raises(GoldmineError, match="not a token shards directory"):
        TokenShards(out)


def test_memory_is_bounded(corpus, tok, tmp_path):
    big = tmp_path / "big.txt"
    chunk = (corpus / "corpus.txt").read_bytes()
    with open(big, "wb") as f:
        for _ in range(5_000_000 // len(chunk) + 1):
            f.write(chunk)
    size = big.stat().st_size
    write_shards([corpus / "corpus.jsonl"], tok, tmp_path / "warm", progress=False)  # imports
    tracemalloc.start()
    try:
        meta = write_shards([big], tok, tmp_path / "s", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert meta["bytes"] == size and meta["train"]["tokens"] > 1_000_000
    assert peak < size / 2, f"peak Python allocation {peak:,} B for a {size:,} B file"


# ---------------------------------------------------------------------------------- reading
@pytest.fixture
def sharded(corpus, tok, tmp_path) -> TokenShards:
    return _write(corpus / "corpus.jsonl", tok, tmp_path / "s", shard_tokens=1024)


def test_get_batch_shapes_shift_bounds_and_determinism(sharded, tok):
    g = torch.Generator().manual_seed(0)
    x, y = sharded.get_batch("train", 8, 32, g)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.min()) >= 0 and int(max(x.max(), y.max())) < tok.vocab_size
    # every row is a real window of the data: y's last token follows x's in some shard
    data = [a.astype(np.int64) for a in sharded.arrays("train")]
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        window = np.concatenate([row_x, row_y[-1:]])
        assert any(np.array_equal(d[i:i + 33], window) for d in data
                   for i in np.flatnonzero(d[:len(d) - 32] == window[0]))
    x2, y2 = sharded.get_batch("train", 8, 32, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = sharded.get_batch("train", 8, 32, torch.Generator().manual_seed(1))
    assert not torch.equal(x, x3)


def test_get_batch_samples_every_shard_uniformly(sharded):
    # block 1023 with shards of 1024 tokens: one window per full shard, none in the short last one
    arrays = sharded.arrays("train")
    full = [a for a in arrays if len(a) == 1024]
    assert len(full) > 3 and len(arrays[-1]) < 1024
    x, y = sharded.get_batch("train", 2000, 1023, torch.Generator().manual_seed(0))
    rows = Counter(tuple(r) for r in x[:, :8].tolist())
    assert set(rows) == {tuple(a[:8].tolist()) for a in full}
    assert max(rows.values()) < 2.5 * min(rows.values())
    assert all(int(y[i, -1]) == int(full[0][-1]) for i in range(2000)
               if x[i, :8].tolist() == full[0][:8].tolist())


def test_block_size_too_long(sharded, tmp_path):
    with pytest.raises(GoldmineError) as e:
        sharded.get_batch("train", 2, 5000, torch.Generator())
    msg = str(e.value)
    assert str(sharded.dir) in msg and "train split" in msg and "block_size + 1 = 5,001" in msg
    assert f"{sharded.tokens('train'):,} tokens" in msg and "--block-size" in msg
    with pytest.raises(GoldmineError, match="no shard holds"):
        list(sharded.iter_sequential("val", 2, 5000))


def test_iter_sequential_covers_windows_in_order(sharded):
    got = list(sharded.iter_sequential("val", 4, 16))
    xs = torch.cat([x for x, _ in got])
    ys = torch.cat([y for _, y in got])
    assert all(x.shape[0] <= 4 for x, _ in got) and torch.equal(xs[:, 1:], ys[:, :-1])
    val = sharded.arrays("val")
    expected = sum((len(a) - 1) // 16 for a in val)
    assert xs.shape == (expected, 16)
    assert xs[0].tolist() == val[0][:16].tolist() and xs[1].tolist() == val[0][16:32].tolist()


def test_corrupt_shards_directory(sharded, tmp_path):
    d = sharded.dir
    with pytest.raises(GoldmineError, match="not a token shards directory"):
        TokenShards(tmp_path)
    with pytest.raises(GoldmineError, match="split: 'test' is not one of train, val"):
        sharded.tokens("test")
    shard = d / "train-00001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(GoldmineError, match=r"train-00001.bin: 2,046 bytes, expected 1,024 uint16"):
        TokenShards(d)
    shard.unlink()
    with pytest.raises(GoldmineError, match=r"train-00001.bin: shard file listed in meta.json is "
                                            r"missing"):
        TokenShards(d)
    (d / "meta.json").write_text("{not json")
    with pytest.raises(GoldmineError, match="meta.json: not valid JSON"):
        TokenShards(d)
    (d / "meta.json").write_text(json.dumps({"format": "goldmine-shards/1", "dtype": "uint16"}))
    with pytest.raises(GoldmineError, match="meta.json: malformed shards metadata"):
        TokenShards(d)


# ---------------------------------------------------------------------------------- commands
def test_tokenize_corpus_records_a_run(corpus, tok, tmp_path):
    from goldmine.registry import start_run

    with start_run("tokenizer train", {}) as tok_run:
        tok_path = tok.save(tok_run.dir)
    cfg = TokenizeConfig(inputs=[str(corpus / "corpus.jsonl")], tokenizer=tok_run.id,
                         shard_tokens=2048)
    result = tokenize_corpus(cfg)
    assert set(result) == {"run_id", "out", "train_tokens", "val_tokens", "documents", "dtype",
                           "seconds"}
    sh = TokenShards(result["out"])
    assert result["train_tokens"] == sh.tokens("train") > result["val_tokens"] == \
        sh.tokens("val") > 0
    assert result["documents"] == 250 and result["dtype"] == "uint16"
    run = Registry().get(result["run_id"])
    assert run["status"] == "completed" and tok_run.id in run["parents"]
    assert run["metrics"]["train_tokens"] == result["train_tokens"]
    assert run["metrics"]["tokens_per_s"] > 0
    assert Path(run["artifacts"]["shards"]) == Path(result["out"]).resolve()
    assert Tokenizer.load(result["out"]).sha256 == Tokenizer.load(tok_path).sha256
    with pytest.raises(GoldmineError, match="tokenizer: required"):
        tokenize_corpus(TokenizeConfig(inputs=[str(corpus / "corpus.jsonl")]))


def test_ensure_shards(corpus, tok, tmp_path):
    tok_dir = tmp_path / "tok"
    tok.save(tok_dir)
    work = tmp_path / "work"
    got = ensure_shards(str(corpus / "corpus.jsonl"), str(tok_dir), work, progress=False)
    assert got == work and TokenShards(work).tokens("train") > 0
    assert ensure_shards(str(work), None, tmp_path / "other") == work  # already shards
    stamp = (work / "meta.json").stat().st_mtime_ns
    ensure_shards(str(corpus / "corpus.jsonl"), str(tok_dir), work, progress=False)
    assert (work / "meta.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(GoldmineError, match="needs a tokenizer"):
        ensure_shards(str(corpus / "corpus.jsonl"), None, tmp_path / "w2")
