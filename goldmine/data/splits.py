"""Splits, folds, class balancing and text augmentation for `goldmine data prepare`.

All of it is seeded and works on small integer arrays (one entry per kept row), so the rows
themselves can stay on disk:

    split = assign_splits(labels, val=0.1, test=0.1, seed=0)   # (n,) int8: 0 train, 1 val, 2 test
    fold  = assign_folds(labels, split == TRAIN, k=5, seed=0)  # (n,) int16: -1 outside train
    copies = balance(labels, split == TRAIN, "over", seed=0)   # (n,) int32: times each row is written
    augment_text("the scarf is very warm", rng)                # "the scarf very warm"
"""

from __future__ import annotations

import random
import re

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {"train": TRAIN, "training": TRAIN, "val": VAL, "valid": VAL,
                 "validation": VAL, "dev": VAL, "test": TEST, "testing": TEST}


def _counts(n: int, val: float, test: float) -> tuple[int, int]:
    """How many of n rows go to val and test (each at least 1 when its fraction is > 0 and
    n allows it, and never all of them)."""
    n_test = int(round(n * test))
    n_val = int(round(n * val))
    if n >= 3:
        n_test = max(n_test, 1 if test > 0 else 0)
        n_val = max(n_val, 1 if val > 0 else 0)
    while n_val + n_test >= n and (n_val or n_test):  # keep at least one training row
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def assign_splits(labels: np.ndarray | None, n: int, val: float, test: float,
                  seed: int) -> np.ndarray:
    """(n,) int8 split codes. With labels, each label is split on its own (stratified); a
    label with fewer than 3 rows stays in train."""
    split = np.full(n, TRAIN, dtype=np.int8)
    if n == 0 or (val <= 0 and test <= 0):
        return split
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c)
                                                     for c in np.unique(labels)]
    for idx in groups:
        if labels is not None and len(idx) < 3:
            continue
        idx = rng.permutation(idx)
        n_val, n_test = _counts(len(idx), val, test)
        split[idx[:n_test]] = TEST
        split[idx[n_test:n_test + n_val]] = VAL
    return split


def assign_folds(labels: np.ndarray | None, member: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(n,) int16 fold index in [0, k) for rows where `member` is True, -1 elsewhere.

    Stratified: each label's rows are shuffled and dealt round-robin, continuing where the
    previous label stopped, so folds differ in size by at most one row overall."""
    fold = np.full(len(member), -1, dtype=np.int16)
    rng = np.random.default_rng(seed + 1)
    groups = ([np.flatnonzero(member)] if labels is None
              else [np.flatnonzero(member & (labels == c)) for c in np.unique(labels)])
    start = 0
    for idx in groups:
        idx = rng.permutation(idx)
        fold[idx] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return fold


def balance(labels: np.ndarray, member: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(n,) int32 copies of each row to write: 1 normally; for `member` rows (train),

    over:  rows of smaller labels are repeated (whole copies first, then a seeded sample
           without replacement) until every label has as many rows as the largest;
    under: larger labels keep a seeded sample as large as the smallest label; the others
           get 0 copies (they are reported as dropped by balancing).
    """
    copies = np.ones(len(labels), dtype=np.int32)
    if method == "none" or not member.any():
        return copies
    rng = np.random.default_rng(seed + 2)
    groups = {c: np.flatnonzero(member & (labels == c)) for c in np.unique(labels[member])}
    sizes = {c: len(i) for c, i in groups.items()}
    if method == "over":
        target = max(sizes.values())
        for idx in groups.values():
            whole, extra = divmod(target, len(idx))
            copies[idx] = whole
            copies[rng.choice(idx, size=extra, replace=False)] += 1
    elif method == "under":
        target = min(sizes.values())
        for idx in groups.values():
            drop = rng.choice(idx, size=len(idx) - target, replace=False)
            copies[drop] = 0
    else:
        raise ValueError(f"unknown balance method {method!r}")
    return copies


# ------------------------------------------------------------------------------ augmentation
# A unit is a CJK character (or CJK punctuation mark) or a run of other non-space characters
# (a word with its punctuation). Units are joined with a space only between two non-CJK units.
_CJK_CLASS = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_RE_UNIT = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")
_CJK = re.compile(f"[{_CJK_CLASS}]")
_PLACEHOLDER = re.compile(r"^<[A-Z_]+>$")
AUGMENT_OPS = ("delete", "swap", "insert")


def _join(units: list[str]) -> str:
    out = []
    for i, u in enumerate(units):
        if i and not (_CJK.match(u) or _CJK.match(units[i - 1])):
            out.append(" ")
        out.append(u)
    return "".join(out)


def augment_text(text: str, rng: random.Random, p: float = 0.1) -> str | None:
    """One label-preserving edit of `text` (EDA-style, no synonym lists, so it works for any
    language): random deletion of units with probability p, a swap of two units, or the
    insertion of a copy of one of the text's units at a random place. Words are units in
    English; characters are units in Chinese. PII placeholders such as <EMAIL> are kept
    whole. None when the text is too short (fewer than 3 units) or no edit changed it."""
    units = _RE_UNIT.findall(text)
    if len(units) < 3:
        return None
    for _ in range(5):
        op = rng.choice(AUGMENT_OPS)
        new = list(units)
        n_edits = max(1, int(round(p * len(units))))
        if op == "delete":
            keep = [u for u in new if _PLACEHOLDER.match(u) or rng.random() >= p]
            if len(keep) == len(new):
                del keep[rng.randrange(len(keep))]
            new = keep or new
        elif op == "swap":
            for _ in range(n_edits):
                i, j = rng.sample(range(len(new)), 2)
                new[i], new[j] = new[j], new[i]
        else:
            for _ in range(n_edits):
                new.insert(rng.randrange(len(new) + 1), rng.choice(units))
        out = _join(new)
        if out != _join(units):
            return out
    return None
