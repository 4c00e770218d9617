import random

import numpy as np
import pytest

from goldmine.data import splits as S


def test_stratified_splits_keep_label_shares():
    labels = np.array([0] * 800 + [1] * 150 + [2] * 50)
    split = S.assign_splits(labels, len(labels), val=0.1, test=0.2, seed=0)
    for c, n in ((0, 800), (1, 150), (2, 50)):
        mine = split[labels == c]
        assert (mine == S.TEST).sum() == round(0.2 * n)
        assert (mine == S.VAL).sum() == round(0.1 * n)
    assert np.array_equal(split, S.assign_splits(labels, len(labels), 0.1, 0.2, seed=0))
    assert not np.array_equal(split, S.assign_splits(labels, len(labels), 0.1, 0.2, seed=1))


def test_small_labels_and_unlabelled_splits():
    labels = np.array([0] * 20 + [1] * 2 + [2] * 3)
    split = S.assign_splits(labels, len(labels), 0.1, 0.1, seed=0)
    assert (split[labels == 1] == S.TRAIN).all()          # too few rows to split
    assert set(split[labels == 2].tolist()) == {0, 1, 2}   # 3 rows: one in each split
    plain = S.assign_splits(None, 1000, 0.05, 0.0, seed=3)
    assert (plain == S.VAL).sum() == 50 and (plain == S.TEST).sum() == 0
    assert (S.assign_splits(None, 10, 0.0, 0.0, seed=0) == S.TRAIN).all()


def test_folds_are_stratified_and_cover_train_only():
    labels = np.array([0] * 103 + [1] * 31)
    member = np.ones(len(labels), dtype=bool)
    member[::10] = False
    fold = S.assign_folds(labels, member, k=5, seed=0)
    assert (fold[~member] == -1).all()
    assert set(fold[member].tolist()) == set(range(5))
    sizes = np.bincount(fold[member], minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for c in (0, 1):
        per = np.bincount(fold[member & (labels == c)], minlength=5)
        assert per.max() - per.min() <= 1


@pytest.mark.parametrize("method", ["over", "under"])
def test_balance_equalises_train_labels(method):
    labels = np.array([0] * 70 + [1] * 20 + [2] * 7)
    member = np.ones(len(labels), dtype=bool)
    member[-3:] = False  # three rows of label 2 are in val: never touched
    copies = S.balance(labels, member, method, seed=0)
    assert (copies[~member] == 1).all()
    per = [int(copies[member & (labels == c)].sum()) for c in (0, 1, 2)]
    assert per == ([70, 70, 70] if method == "over" else [4, 4, 4])
    assert np.array_equal(copies, S.balance(labels, member, method, seed=0))
    if method == "over":  # every original row is written at least once
        assert (copies[member] >= 1).all()
    assert (S.balance(labels, member, "none", 0) == 1).all()


def test_augment_english_and_chinese_changes_text_but_keeps_its_units():
    rng = random.Random(0)
    en = "the wool scarf is warm and soft but the colour faded after one wash"
    zh = "这条羊毛围巾很暖和但是洗了一次就褪色了"
    for text, unit_count in ((en, len(en.split())), (zh, len(zh))):
        outs = {S.augment_text(text, rng) for _ in range(30)}
        outs.discard(None)
        assert len(outs) > 10 and text not in outs
        for out in outs:
            units = out.split() if text is en else list(out)
            assert abs(len(units) - unit_count) <= max(3, unit_count // 3)
            assert set(units) <= set(text.split() if text is en else text)
    assert S.augment_text("too short", rng) is None


def test_augment_keeps_placeholders_whole():
    rng = random.Random(1)
    text = "write to <EMAIL> or call <PHONE> today please"
    for _ in range(50):
        out = S.augment_text(text, rng)
        for token in out.split():
            assert not token.startswith("<") or token in ("<EMAIL>", "<PHONE>")
