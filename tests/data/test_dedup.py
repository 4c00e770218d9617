"""Tests for exact and near-duplicate detection (goldmine.data.dedup)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from goldmine.data import dedup
from goldmine.data.dedup import (
    EMPTY_HASH,
    MinHasher,
    exact_key,
    find_exact_duplicates,
    find_near_duplicates,
    jaccard_estimate,
    lsh_params,
    normalize_for_hash,
    text_units,
)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _vocab(rng: random.Random, size: int = 800) -> list[str]:
    return sorted({"".join(rng.choices(LETTERS, k=rng.randint(2, 8))) for _ in range(size)})


def _english(rng: random.Random, vocab: list[str], words: int) -> list[str]:
    return rng.choices(vocab, k=words)


def _chinese(rng: random.Random, chars: int) -> str:
    return "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(chars))


def _edit(rng: random.Random, units: list[str], edits: int, pool: list[str]) -> list[str]:
    """A copy of units with `edits` substitutions, insertions or deletions at spread positions."""
    out = list(units)
    slots = sorted(rng.sample(range(2, len(units) - 2, 4), edits), reverse=True)
    for pos in slots:
        op = rng.choice(("sub", "ins", "del"))
        if op == "sub":
            out[pos] = rng.choice(pool)
        elif op == "ins":
            out.insert(pos, rng.choice(pool))
        else:
            del out[pos]
    return out


def _true_jaccard(h: MinHasher, a: str, b: str) -> float:
    sa, sb = set(h.shingles(a).tolist()), set(h.shingles(b).tolist())
    return len(sa & sb) / len(sa | sb)


# ------------------------------------------------------------------------------- exact keys
def test_normalize_and_exact_key():
    variants = ["Hello  World", "hello world", "  HELLO\tWORLD \n", "Hello\u3000World\r\n"]
    assert {normalize_for_hash(v) for v in variants} == {"hello world"}
    keys = {exact_key(v) for v in variants}
    assert len(keys) == 1 and len(next(iter(keys))) == 16
    assert exact_key("STRASSE") == exact_key("straße")  # casefold, not just lower
    different = ["Hello, World", "helloworld", "hello world!", "hello wor1d", "world hello", ""]
    assert len({exact_key(t) for t in different} | keys) == len(different) + 1


def test_find_exact_duplicates_honours_order():
    texts = ["a b", "c", "A  B", "d", "a b", "C"]
    keys = [exact_key(t) for t in texts]
    assert find_exact_duplicates(keys, np.arange(6)).tolist() == [-1, -1, 0, -1, 0, 1]
    # row 4 comes later in the file but first in `order`: it is the one kept
    order = np.array([4, 5, 0, 1, 2, 3])
    assert find_exact_duplicates(keys, order).tolist() == [4, 5, 4, -1, -1, -1]
    assert find_exact_duplicates([], np.arange(0)).tolist() == []
    with pytest.raises(ValueError):
        find_exact_duplicates(keys, np.array([0, 1, 2, 3, 4, 4]))


# ------------------------------------------------------------------------------------ units
def test_text_units():
    assert text_units("Hello, World! It's 42 -- e-mail_me.") == [
        "hello", "world", "it", "s", "42", "e", "mail_me"]
    assert text_units("我喜欢这个产品") == list("我喜欢这个产品")
    assert text_units("我喜欢这个产品。") == list("我喜欢这个产品")  # punctuation dropped
    assert text_units("我爱Python编程，version 3.12！") == [
        "我", "爱", "python", "编", "程", "version", "3", "12"]
    assert text_units("カタカナとひらがな") == list("カタカナとひらがな")
    assert text_units("한국어 텍스트") == list("한국어텍스트")
    assert text_units("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # vowel signs stay in the word
    assert text_units("cafe\u0301 Café") == ["cafe\u0301", "café"]
    assert text_units("!!! 🙂 ...  ") == [] and text_units("") == []


def test_text_units_fast_path_matches_full_pattern():
    rng = random.Random(1)
    alphabet = LETTERS + "ABCDÉéßü0123456789 _-.,'\"!?\n\t“”–😀"
    for _ in range(300):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        assert text_units(text) == dedup._UNIT.findall(text.casefold())


# --------------------------------------------------------------------------------- MinHash
def test_shingles():
    h = MinHasher(shingle_size=3)
    assert h.shingles("").dtype == np.uint32 and h.shingles("").size == 0
    assert h.shingles("...").size == 0
    assert h.shingles("hello world").size == 1  # fewer units than n: one shingle of all
    assert h.shingles("a b c d e").size == 3
    assert h.shingles("我喜欢这个产品").size == 5
    assert h.shingles("A, b; C!").tolist() == h.shingles("a b c").tolist()
    assert h.shingles("a b c").tolist() != h.shingles("c b a").tolist()
    assert h.shingles("a b").tolist() != h.shingles("a b c").tolist()
    assert MinHasher(shingle_size=1).shingles("x y x").size == 3


def test_signature_shape_and_empty():
    h = MinHasher(num_perm=64)
    sig = h.signature("the quick brown fox jumps over the lazy dog")
    assert sig.shape == (64,) and sig.dtype == np.uint32
    assert (h.signature("") == EMPTY_HASH).all() and (h.signature("?!") == EMPTY_HASH).all()
    assert not (sig == EMPTY_HASH).any()
    assert np.array_equal(MinHasher(num_perm=16).signature(
        "the quick brown fox jumps over the lazy dog"), sig[:16])  # a prefix of a larger one
    assert not np.array_equal(sig, MinHasher(num_perm=64, seed=1).signature(
        "the quick brown fox jumps over the lazy dog"))


@pytest.mark.parametrize("chunk_elements", [dedup.CHUNK_ELEMENTS, 64 * 5, 64])
def test_signatures_equal_stacked_signature(monkeypatch, chunk_elements):
    rng = random.Random(2)
    vocab = _vocab(rng)
    texts = ["", "one", "two words", "!!!", "我喜欢这个产品", "a b c d", ""]
    texts += [" ".join(_english(rng, vocab, rng.randint(1, 40))) for _ in range(20)]
    texts += [_chinese(rng, rng.randint(1, 30)) for _ in range(5)] + ["", "x"]
    monkeypatch.setattr(dedup, "CHUNK_ELEMENTS", chunk_elements)  # texts straddle chunks
    h = MinHasher(num_perm=64)
    sigs = h.signatures(texts)
    assert sigs.shape == (len(texts), 64) and sigs.dtype == np.uint32
    np.testing.assert_array_equal(sigs, np.stack([h.signature(t) for t in texts]))
    assert h.signatures([]).shape == (0, 64)
    assert (h.signatures(["", ".."]) == EMPTY_HASH).all()


def test_jaccard_estimate_is_close_to_true_jaccard():
    rng = random.Random(3)
    vocab = _vocab(rng)
    h = MinHasher(num_perm=256)
    base_en = _english(rng, vocab, 200)
    base_zh = list(_chinese(rng, 200))
    seen = []
    for edits in (0, 4, 10, 20, 45):
        for base, join, pool in ((base_en, " ", vocab), (base_zh, "", base_zh)):
            a, b = join.join(base), join.join(_edit(rng, base, edits, pool))
            true = _true_jaccard(h, a, b)
            est = jaccard_estimate(h.signature(a), h.signature(b))
            assert abs(est - true) < 0.1, (edits, true, est)
            seen.append(true)
    assert min(seen) < 0.4 and max(seen) == 1.0  # the levels really span the range
    unrelated = jaccard_estimate(h.signature(" ".join(base_en)),
                                 h.signature(" ".join(_english(rng, vocab, 200))))
    assert unrelated < 0.05


# ------------------------------------------------------------------------------------- LSH
def _s_curve(s: float, bands: int, rows: int) -> float:
    return 1 - (1 - s**rows) ** bands


def test_lsh_params():
    # datasketch's MinHashLSH(threshold=0.8, num_perm=128) uses 9 bands of 13 rows
    assert lsh_params(0.8, 128) == (9, 13)
    for threshold in (0.5, 0.6, 0.7, 0.8, 0.9):
        for num_perm in (64, 128, 256):
            b, r = lsh_params(threshold, num_perm)
            assert b * r <= num_perm
            assert _s_curve(threshold - 0.2, b, r) < 0.15
            assert 0.25 < _s_curve(threshold, b, r) < 0.65  # the S-curve's knee is near it
            assert _s_curve(min(1.0, threshold + 0.2), b, r) > 0.95
    b, r = lsh_params(0.8, 128)
    assert _s_curve(0.5, b, r) < 0.01 and _s_curve(0.95, b, r) > 0.99
    # the recall-weighted parameters find_near_duplicates uses by default
    b, r = lsh_params(0.8, 128, dedup.RECALL_WEIGHTS)
    assert b * r <= 128 and _s_curve(0.8, b, r) > 0.8 and _s_curve(0.85, b, r) > 0.95
    assert _s_curve(0.5, b, r) < 0.05
    with pytest.raises(ValueError):
        lsh_params(0.0, 128)


def _planted_corpus(seed: int = 4, edits: int = 2):
    """A few hundred English and Chinese documents, some of them edited copies of others."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    docs: list[str] = []
    pairs: list[tuple[int, int]] = []  # (original, copy)
    for i in range(240):
        chinese = i % 4 == 3
        units = list(_chinese(rng, 60)) if chinese else _english(rng, vocab, 60)
        join = "" if chinese else " "
        docs.append(join.join(units))
        if i % 3 == 0:
            pool = [chr(0x4E00 + rng.randrange(3000)) for _ in range(50)] if chinese else vocab
            pairs.append((len(docs) - 1, len(docs)))
            docs.append(join.join(_edit(rng, units, edits, pool)))
    # shuffle, so that copies sometimes come before their originals
    perm = list(range(len(docs)))
    rng.shuffle(perm)
    where = {old: new for new, old in enumerate(perm)}
    return [docs[p] for p in perm], [(where[a], where[b]) for a, b in pairs]


@pytest.mark.parametrize("threshold, edits", [(0.6, 2), (0.8, 1)])  # Jaccard ~0.81, ~0.9
def test_find_near_duplicates_planted(threshold, edits):
    docs, pairs = _planted_corpus(edits=edits)
    assert len(docs) == 320 and len(pairs) == 80
    sigs = MinHasher().signatures(docs)
    calls: list[tuple[int, int]] = []
    dup_of, sim = find_near_duplicates(sigs, threshold, np.arange(len(docs)),
                                       progress=lambda d, t: calls.append((d, t)))
    assert dup_of.dtype == np.int64 and sim.dtype == np.float32
    expected = {max(a, b): min(a, b) for a, b in pairs}  # the earlier row is kept
    found = {i: int(j) for i, j in enumerate(dup_of) if j >= 0}
    assert all(expected.get(i) == j for i, j in found.items())  # no false positives
    assert len(found) >= 0.95 * len(pairs)
    for i, j in found.items():
        assert sim[i] >= threshold and abs(sim[i] - jaccard_estimate(sigs[i], sigs[j])) < 1e-6
    assert (sim[dup_of < 0] == 0).all()
    assert calls and calls[-1] == (len(docs), len(docs))
    assert all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    # reversed order: the other member of each found pair is kept
    dup_rev, _ = find_near_duplicates(sigs, threshold, np.arange(len(docs))[::-1].copy())
    assert {int(j): i for i, j in enumerate(dup_rev) if j >= 0} == found


def _chain_signatures(num_perm: int = 256) -> np.ndarray:
    """A, B, C with estimated Jaccard A~B = B~C = 0.84375 and A~C = 0.6875, exactly."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**32 - 1, num_perm, dtype=np.uint32)
    b, c = a.copy(), a.copy()
    b[:40] = rng.integers(0, 2**32 - 1, 40, dtype=np.uint32)
    c[:40] = b[:40]
    c[40:80] = rng.integers(0, 2**32 - 1, 40, dtype=np.uint32)
    return np.stack([a, b, c])


def test_greedy_semantics_without_chains():
    sigs = _chain_signatures()
    assert jaccard_estimate(sigs[0], sigs[1]) == jaccard_estimate(sigs[1], sigs[2]) == 0.84375
    assert jaccard_estimate(sigs[0], sigs[2]) == 0.6875
    # A kept, B dropped for A; C resembles only the dropped B, so C is kept (no chain A-B-C)
    dup_of, sim = find_near_duplicates(sigs, 0.75, np.array([0, 1, 2]))
    assert dup_of.tolist() == [-1, 0, -1]
    assert sim.tolist() == [0.0, 0.84375, 0.0]
    # B first: it is kept and both A and C are dropped for it
    dup_of, _ = find_near_duplicates(sigs, 0.75, np.array([1, 0, 2]))
    assert dup_of.tolist() == [1, -1, 1]
    # A and C both kept first; B resembles both equally and goes to the lower index
    dup_of, _ = find_near_duplicates(sigs, 0.75, np.array([0, 2, 1]))
    assert dup_of.tolist() == [-1, 0, -1]


def test_skip_and_rows_without_units():
    sigs = _chain_signatures()
    # A already removed: it is neither kept nor compared, so B is kept and C dropped for B
    dup_of, sim = find_near_duplicates(sigs, 0.75, np.arange(3), skip=np.array([1, 0, 0], bool))
    assert dup_of.tolist() == [-1, -1, 1] and sim[0] == 0
    assert find_near_duplicates(sigs, 0.75, np.arange(3), skip=np.ones(3, bool))[0].tolist() == [
        -1, -1, -1]
    # texts without units are never near duplicates of each other (exact dedup handles "")
    h = MinHasher()
    dup_of, _ = find_near_duplicates(h.signatures(["!!!", "???", "", "a b c"]), 0.8, np.arange(4))
    assert dup_of.tolist() == [-1, -1, -1, -1]
    assert [x.size for x in find_near_duplicates(np.zeros((0, 128), np.uint32), 0.8,
                                                 np.arange(0))] == [0, 0]


def test_memmap_input_and_determinism(tmp_path):
    docs, _ = _planted_corpus(seed=6)
    sigs = MinHasher().signatures(docs)
    path = tmp_path / "signatures.u32"
    mm = np.memmap(path, dtype=np.uint32, mode="w+", shape=sigs.shape)
    mm[:] = sigs
    mm.flush()
    mm = np.memmap(path, dtype=np.uint32, mode="r", shape=sigs.shape)
    order = np.random.default_rng(0).permutation(len(docs))
    skip = np.zeros(len(docs), bool)
    skip[::17] = True
    first = find_near_duplicates(mm, 0.6, order, skip=skip)
    second = find_near_duplicates(sigs, 0.6, order, skip=skip)
    assert (first[0] >= 0).sum() > 50
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(MinHasher().signatures(docs), sigs)


def test_deterministic_across_processes():
    text = "Deterministic 确定性 hashing, across processes and runs."
    show = f"exact_key({text!r}).hex(), MinHasher(num_perm=16).signature({text!r}).tolist()"
    code = f"from goldmine.data.dedup import MinHasher, exact_key; print({show})"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    here = f"{exact_key(text).hex()} {MinHasher(num_perm=16).signature(text).tolist()}\n"
    assert outs == {here}


def test_pinned_values():
    """Stored keys and signatures stay comparable across versions: changing these is a format
    change (old duplicate reports and signature files would no longer match)."""
    assert exact_key("Hello  World").hex() == "e9a804b2e527fd3601d2ffc0bb023cd6"
    h = MinHasher(num_perm=8)
    assert h.signature("the quick brown fox jumps").tolist() == [
        547204453, 300928683, 990243724, 1834943569, 1491468141, 2007785877, 326877587,
        1163862519]
    assert h.signature("我喜欢这个产品").tolist() == [
        270086020, 150777200, 1210337544, 401541784, 645978914, 1428849415, 225977052, 60123599]
