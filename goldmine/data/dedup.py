"""Exact and near-duplicate detection for ``goldmine data prepare``.

Exact duplicates: each text is normalised (casefolded, whitespace runs collapsed to one space,
stripped) and hashed to a 16-byte BLAKE2b key; rows with equal keys are duplicates.

Near duplicates, in four steps:

1. Units and shingles. ``text_units`` splits a text into casefolded words (``\\w`` runs,
   combining marks included) and, for Chinese, Japanese and Korean, into single characters,
   since those scripts do not separate words with spaces. A shingle is an n-gram of consecutive
   units (n = ``shingle_size``), hashed to 32 bits (CRC-32 per unit, combined and mixed in
   64-bit integer arithmetic).
2. MinHash. ``num_perm`` hash functions from the multiply-add-shift family
   ``h_k(x) = ((a_k * x + b_k) mod 2^64) >> 32`` (a_k odd; a_k and b_k are 64-bit words of
   SHAKE-128 of the seed) are applied to many shingles at once as a (num_perm, S) matrix; the
   signature is the minimum over the shingles. Two signatures agree in a given position with
   probability (close to) the Jaccard similarity of the shingle sets, so the fraction of equal
   entries estimates it. ``signatures`` does this for a batch of texts, in bounded chunks, with
   ``np.minimum.reduceat`` giving each text its own minimum.
3. LSH banding. The signature is cut into ``bands`` bands of ``rows`` columns, with (bands, rows)
   chosen by ``lsh_params`` to minimise the weighted false-positive plus false-negative area
   under the S-curve ``1 - (1 - s^rows)^bands`` around the threshold (as datasketch does; the
   dedup weights favour recall, since every candidate is verified). Each band of a row becomes
   one 64-bit key; rows sharing a key in any band are candidates. Groups are found by sorting
   the keys of one band at a time.
4. Greedy resolution. Rows are visited in the caller's ``order``; a row is a near duplicate iff
   its estimated Jaccard (over the full signature) with some already-kept candidate reaches the
   threshold, and it then points at the most similar one. Otherwise it is kept. There are no
   transitive chains: a row is only dropped for a kept row it really resembles. Texts without
   units (empty, or only punctuation and symbols) have no near duplicates.

Everything is deterministic across processes and runs: no use of Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import re
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain

import numpy as np

EMPTY_HASH = np.uint32(0xFFFFFFFF)  # signature entries of a text without units
CHUNK_ELEMENTS = 1 << 21  # (num_perm x shingles) hashes computed at a time: 2M, 16 MiB
KEY_ROWS = 1 << 20  # rows per chunk when turning one band of signatures into keys
RECALL_WEIGHTS = (0.1, 0.9)  # LSH (false positive, false negative) weights for dedup

# 64-bit constants: FNV-1a offset and prime, murmur3 fmix64 multipliers
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33, _S32 = np.uint64(33), np.uint64(32)

# Han (with extensions A, B-F in the astral planes, compatibility ideographs), iteration marks,
# Hiragana, Katakana (with phonetic extensions and half-width forms), Hangul syllables and jamo
_CJK = (
    "\u1100-\u11ff\u3005-\u3007\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)


def _mark_ranges() -> str:
    """Regex class body of the BMP combining marks (Mn, Mc, Me), which ``\\w`` leaves out."""
    marks = [c for c in range(0x10000) if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me")]
    ranges: list[tuple[int, int]] = []
    for c in marks:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "")
                   for a, b in ranges)


# a word: runs of non-CJK word characters, which combining marks (Devanagari vowel signs,
# Arabic vowels, decomposed accents) may join, written as an unrolled loop for speed;
# or a single CJK character
_MARKS = _mark_ranges()
_UNIT = re.compile(f"[^\\W{_CJK}]+(?:[{_MARKS}]+[^\\W{_CJK}]*)*|[{_CJK}]")
# text without CJK characters or combining marks (most text, all ASCII) has the same units as
# plain \w+, which is about twice as fast
_WORD = re.compile(r"\w+")
_NEEDS_UNIT = re.compile(f"[{_CJK}{_MARKS}]")


def normalize_for_hash(text: str) -> str:
    """Casefold, collapse every whitespace run to one space and strip."""
    return " ".join(text.casefold().split())


def exact_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of ``normalize_for_hash(text)``."""
    data = normalize_for_hash(text).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()


def text_units(text: str) -> list[str]:
    """Casefolded words, and each CJK character as its own unit; punctuation is dropped."""
    text = text.casefold()
    if text.isascii() or not _NEEDS_UNIT.search(text):
        return _WORD.findall(text)
    return _UNIT.findall(text)


def _fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser (in place): every input bit affects every output bit."""
    x ^= x >> _S33
    x *= _MIX1
    x ^= x >> _S33
    x *= _MIX2
    x ^= x >> _S33
    return x


class MinHasher:
    """MinHash signatures of texts: ``num_perm`` uint32 values over word or character n-grams."""

    def __init__(self, num_perm: int = 128, shingle_size: int = 3, seed: int = 0):
        if num_perm < 1 or shingle_size < 1:
            raise ValueError("num_perm and shingle_size must be at least 1")
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        # (a_k, b_k) pairs from SHAKE-128 of the seed: the same on every platform and numpy
        # version, and MinHasher(64) gives the first 64 entries of MinHasher(128)
        raw = hashlib.shake_128(f"goldmine-minhash/{seed}".encode()).digest(16 * num_perm)
        ab = np.frombuffer(raw, "<u8").astype(np.uint64).reshape(num_perm, 2)  # (P, 2)
        self._a = ab[:, 0] | np.uint64(1)  # (P,) odd multipliers
        self._b = ab[:, 1].copy()  # (P,)

    def shingles(self, text: str) -> np.ndarray:
        """(S,) uint32 hashes of the n-grams of ``text_units(text)``, in text order.

        A text with fewer units than n gives one shingle of all its units; an empty one none.
        """
        return self._shingle_batch([text])[0]

    def _shingle_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes of many texts: (S,) uint32, concatenated, and (n,) int64 counts."""
        units = [text_units(t) for t in texts]
        n_units = np.array([len(u) for u in units], np.int64)  # (n,)
        total = int(n_units.sum())
        u = np.fromiter(map(zlib.crc32, map(str.encode, chain.from_iterable(units))),
                        np.uint64, total)  # (U,) one CRC-32 per unit
        width = np.minimum(n_units, self.shingle_size)  # (n,) units per shingle
        counts = np.where(n_units > 0, n_units - width + 1, 0)  # (n,) shingles per text
        first = np.arange(int(counts.sum())) + np.repeat(  # (S,) first unit of each shingle
            np.cumsum(n_units) - n_units - (np.cumsum(counts) - counts), counts)
        width = np.repeat(width, counts)  # (S,)
        h = np.full(first.size, _FNV_OFFSET, np.uint64)  # (S,)
        for j in range(self.shingle_size):  # FNV-1a over 32-bit words, then mixed
            more = width > j
            h[more] = (h[more] ^ u[first[more] + j]) * _FNV_PRIME
        return (_fmix64(h) >> _S32).astype(np.uint32), counts

    def _hash_into(self, shingles: np.ndarray, buf: np.ndarray) -> np.ndarray:
        """(k,) uint32 shingle hashes -> (num_perm, k) view of buf: a * x + b mod 2^64.

        The ">> 32" of the multiply-shift family is left to the caller, after the minimum (the
        shift is monotonic, so it commutes with min). Writing into a preallocated (P, k)
        buffer, one contiguous row per hash function, is several times faster than a fresh
        (k, P) array.
        """
        out = buf[:, :shingles.size]
        np.multiply(self._a[:, None], shingles.astype(np.uint64)[None, :], out=out)
        out += self._b[:, None]
        return out

    def _chunk(self) -> int:
        return max(1, CHUNK_ELEMENTS // self.num_perm)

    def signature(self, text: str) -> np.ndarray:
        """(num_perm,) uint32 MinHash signature; all 0xFFFFFFFF for a text without units."""
        sh = self.shingles(text)  # (S,)
        if sh.size == 0:
            return np.full(self.num_perm, EMPTY_HASH, np.uint32)
        step = self._chunk()
        buf = np.empty((self.num_perm, min(step, sh.size)), np.uint64)
        sig = np.full(self.num_perm, np.iinfo(np.uint64).max, np.uint64)  # (P,)
        for c0 in range(0, sh.size, step):
            np.minimum(sig, self._hash_into(sh[c0:c0 + step], buf).min(axis=1), out=sig)
        return (sig >> _S32).astype(np.uint32)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(n, num_perm) uint32 signatures of many texts, equal row by row to ``signature``.

        The shingles of all texts are concatenated and hashed in chunks of about
        ``CHUNK_ELEMENTS`` hashes; ``np.minimum.reduceat`` takes each text's minimum within a
        chunk, and texts that straddle chunk boundaries are merged with ``np.minimum``.
        """
        flat, lengths = self._shingle_batch(texts)  # (S,), (n,)
        sig = np.full((len(texts), self.num_perm), EMPTY_HASH, np.uint32)  # (n, P)
        nonempty = np.flatnonzero(lengths)  # texts with at least one shingle
        if nonempty.size == 0:
            return sig
        ends = np.cumsum(lengths)[nonempty]  # shingle offset past each non-empty text
        starts = ends - lengths[nonempty]
        step = self._chunk()
        buf = np.empty((self.num_perm, min(step, flat.size)), np.uint64)
        for c0 in range(0, flat.size, step):
            c1 = min(c0 + step, flat.size)
            # the texts overlapping [c0, c1): they end after c0 and start before c1
            t0 = int(np.searchsorted(ends, c0, side="right"))
            t1 = int(np.searchsorted(starts, c1, side="left"))
            seg = np.maximum(starts[t0:t1], c0) - c0  # (k,) strictly increasing
            h = np.minimum.reduceat(self._hash_into(flat[c0:c1], buf), seg, axis=1)  # (P, k)
            rows = nonempty[t0:t1]
            sig[rows] = np.minimum(sig[rows], (h >> _S32).astype(np.uint32).T)
        return sig


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures: the fraction of equal entries."""
    return float(np.mean(np.asarray(a) == np.asarray(b)))


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int,
               weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm for an LSH index at ``threshold``.

    Minimises the false-positive area (probability 1 - (1 - s^r)^b of becoming candidates,
    integrated over s in [0, threshold]) plus the false-negative area (its complement over
    [threshold, 1]), weighted by ``weights`` = (false positive, false negative), equal by
    default: datasketch's ``_optimal_param``, with the trapezoid rule in place of scipy's quad.
    Ties go to the fewest bands, then the fewest rows.

    With equal weights the S-curve's midpoint lies a little above the threshold: pairs just
    above it become candidates only about 40% of the time (0.8, 128 perms: 9 x 13, 93% at 0.9).
    Weighting false negatives more, e.g. (0.1, 0.9), finds more of them for more candidates.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError("num_perm must be at least 1")
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    b = np.array([p[0] for p in pairs], np.float64)[:, None]  # (K, 1)
    r = np.array([p[1] for p in pairs], np.float64)[:, None]

    def area(lo: float, hi: float, false_negative: bool) -> np.ndarray:  # (K,)
        s = np.linspace(lo, hi, 1025)[None, :]  # (1, G)
        p = 1.0 - (1.0 - s**r) ** b  # (K, G) probability of becoming candidates
        y = 1.0 - p if false_negative else p
        return ((y[:, 1:] + y[:, :-1]) * 0.5 * np.diff(s)).sum(axis=1)

    error = weights[0] * area(0.0, threshold, False) + weights[1] * area(threshold, 1.0, True)
    return pairs[int(np.argmin(error))]


def _check_order(order: np.ndarray, n: int) -> np.ndarray:
    """``order`` as int64, or ValueError unless it is a permutation of range(n)."""
    order = np.asarray(order, np.int64)
    ok = order.shape == (n,) and (n == 0 or (
        order.min() >= 0 and order.max() < n and np.bincount(order, minlength=n).max() == 1))
    if not ok:
        raise ValueError(f"order must be a permutation of range({n})")
    return order


def find_exact_duplicates(keys: Sequence[bytes] | np.ndarray, order: np.ndarray) -> np.ndarray:
    """(n,) int64: -1 for a kept row, else the index of the kept row with the same key.

    ``keys``: 16-byte keys from ``exact_key``, as a sequence of bytes or an (n, 2) uint64 array
    (the keys' bytes); ``order`` is a permutation of range(n); rows earlier in it are kept.
    Sorting, not a dict: memory is a few arrays of n integers.
    """
    n = len(keys)
    order = _check_order(order, n)
    if not isinstance(keys, np.ndarray):
        keys = np.frombuffer(b"".join(keys), np.uint64).reshape(n, 2) if n else np.zeros((0, 2),
                                                                                          np.uint64)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    idx = np.lexsort((rank, keys[:, 1], keys[:, 0]))  # (n,) equal keys together, best rank first
    sk = keys[idx]
    new = np.ones(n, bool)
    new[1:] = (sk[1:] != sk[:-1]).any(axis=1)
    head = idx[np.maximum.accumulate(np.where(new, np.arange(n), 0))]  # (n,) kept row per group
    dup_of = np.full(n, -1, np.int64)
    dup_of[idx] = np.where(head == idx, -1, head)
    return dup_of


def _release(signatures: np.ndarray) -> None:
    """Drop the pages of a memory-mapped signature file from this process's resident set (they
    are read again from the page cache when needed), so RSS does not grow with the corpus."""
    mm = getattr(signatures, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def _band_keys(block: np.ndarray) -> np.ndarray:
    """(m, rows) uint32 band of signatures -> (m,) uint64 keys (FNV-1a over words, mixed)."""
    key = np.full(block.shape[0], _FNV_OFFSET, np.uint64)
    for j in range(block.shape[1]):
        key ^= block[:, j]
        key *= _FNV_PRIME
    return _fmix64(key)


def find_near_duplicates(
    signatures: np.ndarray,
    threshold: float,
    order: np.ndarray,
    skip: np.ndarray | None = None,
    progress: Callable[[int, int], object] | None = None,
    weights: tuple[float, float] = RECALL_WEIGHTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy near-duplicate resolution over MinHash signatures with LSH candidates.

    ``signatures`` (n, P) uint32, possibly an ``np.memmap`` (read one band, in row chunks, at a
    time, plus the full rows of candidates); ``order`` a permutation of range(n), earlier rows
    are kept; ``skip`` (n,) bool marks rows already removed, which are neither kept nor
    compared. Returns ``dup_of`` (n,) int64 (-1 for kept and skipped rows, else the index of
    the kept row it duplicates) and ``similarity`` (n,) float32 (estimated Jaccard to that row,
    0 elsewhere). Rows whose signature is all ``EMPTY_HASH`` (no units) are always kept.
    ``progress(done, total)`` is called now and then with rows visited in order, out of n.
    ``weights`` (false positive, false negative) go to ``lsh_params``. Candidates are verified
    on the full signature, so LSH false positives cost only time, while false negatives are
    missed duplicates: the default favours recall (0.8, 128 perms: 14 x 9 instead of
    datasketch's 9 x 13; pairs at 0.85 become candidates 97.5% rather than 69% of the time).
    """
    n, num_perm = signatures.shape
    order = _check_order(order, n)
    bands, rows = lsh_params(threshold, num_perm, tuple(weights))
    need = math.ceil(threshold * num_perm - 1e-9)  # equal entries needed to reach threshold
    active = np.arange(n) if skip is None else np.flatnonzero(~np.asarray(skip, bool))  # (m,)
    dup_of = np.full(n, -1, np.int64)
    similarity = np.zeros(n, np.float32)

    # 1. banding: per band, rows with equal keys form a group; groups of one are dropped.
    # row_group[i, band] is a global group id or -1; group g owns the slots
    # group_start[g]:group_start[g + 1] of kept_slots, filled with its kept rows as they come.
    gdtype = np.int32 if n * bands < 2**31 else np.int64
    row_group = np.full((n, bands), -1, gdtype)  # (n, bands)
    no_units = np.ones(n, bool)  # (n,) signature all EMPTY_HASH (checked over the bands)
    starts: list[np.ndarray] = []
    n_groups = n_slots = 0
    for band in range(bands):
        cols = slice(band * rows, (band + 1) * rows)
        keys = np.empty(active.size, np.uint64)  # (m,)
        for r0 in range(0, active.size, KEY_ROWS):
            idx = active[r0:r0 + KEY_ROWS]
            block = np.asarray(signatures[idx, cols], np.uint32)  # (<= KEY_ROWS, rows)
            keys[r0:r0 + KEY_ROWS] = _band_keys(block)
            no_units[idx] &= (block == EMPTY_HASH).all(axis=1)
        _release(signatures)
        by_key = np.argsort(keys, kind="stable")  # (m,)
        sorted_keys = keys[by_key]
        first = np.ones(active.size, bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        local = np.cumsum(first) - 1  # (m,) group number per sorted position
        shared = np.bincount(local)[local] >= 2  # (m,) in a group of two or more
        members = active[by_key[shared]]  # (k,) grouped rows, contiguous per group
        new_group = first[shared]  # (k,) True where a group begins
        row_group[members, band] = n_groups + np.cumsum(new_group) - 1
        starts.append(n_slots + np.flatnonzero(new_group))
        n_groups += int(new_group.sum())
        n_slots += members.size
    group_start = np.concatenate(starts + [np.array([n_slots])]).astype(np.int64)  # (G + 1,)
    kept_count = np.zeros(n_groups, np.int64)  # (G,)
    kept_slots = np.empty(n_slots, np.int64)

    # 2. greedy pass in `order`, only over rows that share a group with someone
    row_group[no_units] = -1
    in_group = (row_group >= 0).any(axis=1)  # (n,)
    positions = np.flatnonzero(in_group[order])  # positions in `order` of those rows
    report_every = max(1, positions.size // 100)
    for done, pos in enumerate(positions.tolist()):
        i = int(order[pos])
        groups = row_group[i][row_group[i] >= 0].tolist()
        kept = [kept_slots[group_start[g]:group_start[g] + kept_count[g]] for g in groups]
        cands = np.unique(np.concatenate(kept))  # (c,) kept rows sharing a band with row i
        if cands.size:
            equal = (np.asarray(signatures[cands]) == np.asarray(signatures[i])).sum(axis=1)
            best = int(np.argmax(equal))  # the most similar; the lowest index on ties
            if equal[best] >= need:
                dup_of[i] = cands[best]
                similarity[i] = equal[best] / num_perm
        if dup_of[i] < 0:
            for g in groups:
                kept_slots[group_start[g] + kept_count[g]] = i
                kept_count[g] += 1
        if done % report_every == 0:
            _release(signatures)
            if progress is not None:
                progress(pos + 1, n)
    if progress is not None:
        progress(n, n)
    return dup_of, similarity
