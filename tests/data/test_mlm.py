"""Masked-language-modelling data (goldmine/data/mlm.py): BERT's masking and its statistics,
the WordPiece tokenizer (English words, Chinese characters) in transformers' form, the corpus
in memory and its batches."""

import json

import numpy as np
import pytest
import torch

from goldmine.data.mlm import (
    MLMCorpus,
    MLMTokenizer,
    encode_corpus,
    load_mlm_data,
    mask_tokens,
    mlm_tokenizer,
    train_wordpiece,
)
from goldmine.errors import GoldmineError

PAD, UNK, CLS, SEP, MASK = range(5)
V = 1000
STARTS, CONTINUATIONS = range(5, 500), range(500, V)  # a synthetic vocabulary: "w" and "##w"

ENGLISH = ["The wool scarf arrived on time and it is wonderful.",
           "Unbelievably comfortable shoes, although the laces broke.",
           "I returned the kettle: it leaked everywhere."]
CHINESE = ["我很喜欢这个杯子，质量很好。", "后悔买了这个积木套装，颜色不对。", "物流很快，包装完好。"]


def synthetic_batch(rows: int, T: int, seed: int = 0):
    """[CLS] words [SEP] [PAD]...: words of 1 to 3 tokens (a start and its continuations);
    also each token's word number (-1 for specials)."""
    rng = np.random.default_rng(seed)
    ids = np.full((rows, T), PAD)
    words = np.full((rows, T), -1)
    for r in range(rows):
        end = T - 1 - rng.integers(0, 8)                            # some rows padded
        lengths = rng.integers(1, 4, size=T)
        starts = 1 + np.concatenate([[0], np.cumsum(lengths)])
        n_words = int(np.searchsorted(starts, end, side="right")) - 1   # words that fit
        t = starts[n_words]
        word = np.repeat(np.arange(n_words), lengths[:n_words])      # (t - 1,)
        first = np.r_[True, word[1:] != word[:-1]]
        ids[r, 1:t] = np.where(first, rng.choice(STARTS, t - 1), rng.choice(CONTINUATIONS, t - 1))
        ids[r, 0], ids[r, t] = CLS, SEP
        words[r, 1:t] = word
    return torch.from_numpy(ids), torch.from_numpy(words)


def masking_args(whole_word=True):
    special = torch.zeros(V, dtype=torch.bool)
    special[:5] = True
    continuation = torch.zeros(V, dtype=torch.bool)
    continuation[500:] = True
    return dict(special=special, mask_id=MASK, replacements=torch.arange(5, V),
                continuation=continuation if whole_word else None)


def test_bert_masking_statistics_on_a_large_sample():
    ids, words = synthetic_batch(3000, 64)
    inputs, targets = mask_tokens(ids, mask_prob=0.15, generator=torch.Generator().manual_seed(0),
                                  **masking_args())
    maskable = ids > SEP
    chosen = targets != -100
    assert not chosen[~maskable].any()                               # never [CLS] [SEP] [PAD]
    assert torch.equal(inputs[~maskable], ids[~maskable])
    assert torch.equal(targets[chosen], ids[chosen])                 # targets: the original ids
    assert chosen.sum() / maskable.sum() == pytest.approx(0.15, abs=0.005)
    budget = torch.round(maskable.sum(1) * 0.15).clamp(min=1)        # Google's, per row
    per_row = chosen.sum(1)
    assert ((budget - 2 <= per_row) & (per_row <= budget)).all()     # words are <= 3 tokens
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == MASK).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    swapped = 1 - as_mask - kept
    assert as_mask == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01) and swapped == pytest.approx(0.1, abs=0.01)
    random = inputs[chosen & (inputs != MASK) & (inputs != ids)]
    assert (random >= 5).all()                                       # never a special token
    assert len(random.unique()) > 500                                # drawn over the vocabulary
    # whole words: every word is chosen entirely or not at all
    word_ids = (torch.arange(len(ids))[:, None] * 64 + words)[words >= 0]
    size = torch.bincount(word_ids)
    picked = torch.bincount(word_ids, weights=chosen[words >= 0].float()).long()
    assert ((picked == 0) | (picked == size)).all() and (picked == size).sum() > 1000
    assert (chosen & (ids >= 500)).any()                             # continuations masked too


def test_masking_is_a_function_of_the_generator_and_single_tokens_without_words():
    ids, _ = synthetic_batch(50, 32, seed=1)

    def run(seed, **kw):
        return mask_tokens(ids, generator=torch.Generator().manual_seed(seed),
                           **{**masking_args(), **kw})

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    _, targets = run(7, continuation=None)                           # token masking
    maskable = (ids > SEP).sum(1)
    want = torch.tensor([max(1, round(int(m) * 0.15)) for m in maskable])
    assert torch.equal((targets != -100).sum(1), want)               # the budget exactly
    _, targets = mask_tokens(ids[:, :4], generator=torch.Generator().manual_seed(0),
                             **masking_args())
    assert ((targets != -100).sum(1) >= 1).all()                     # at least one per row


@pytest.fixture(scope="module")
def wordpiece():
    return train_wordpiece(iter((ENGLISH + CHINESE) * 30), vocab_size=300)


def test_wordpiece_splits_chinese_into_characters_and_english_into_pieces(wordpiece, tmp_path):
    tok = wordpiece
    assert [tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id] == [0, 1, 2, 3, 4]
    ids = tok.encode_batch(["我很喜欢这个杯子 Wonderful"])[0]
    pieces = [tok.tok.id_to_token(i) for i in ids]
    assert pieces[:7] == list("我很喜欢这个杯") and "##" not in "".join(pieces[:8])
    assert pieces[8].startswith("w") and all(p.startswith("##") for p in pieces[9:])
    cont = tok.continuation()
    assert not cont[ids[:8]].any() and cont[ids[9:]].all()
    # Chinese is masked character by character: every chosen span is one character
    stream = np.concatenate([np.asarray(i, np.int32) for i in tok.encode_batch(CHINESE * 40)])
    corpus = MLMCorpus({"train": stream, "val": stream}, tok)
    x, y = corpus.get_batch("train", 64, 34, torch.Generator().manual_seed(0))
    assert x.shape == (64, 34) and (x[:, 0] == tok.cls_id).all() and (x[:, -1] == tok.sep_id).all()
    assert ((y != -100).sum(1) == round(32 * 0.15)).all()           # one-token words: exact


def test_saved_tokenizer_loads_in_transformers_as_bert(wordpiece, tmp_path):
    from transformers import AutoTokenizer

    wordpiece.save_hf(tmp_path, model_max_length=64)
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:5] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert (hf.pad_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id) == (0, 2, 3, 4)
    assert hf.model_max_length == 64
    enc = hf("The scarf 我很喜欢")["input_ids"]
    assert enc[0] == 2 and enc[-1] == 3
    assert enc[1:-1] == wordpiece.encode_batch(["The scarf 我很喜欢"])[0]
    pair = hf("the scarf", "我很喜欢", return_token_type_ids=True)
    assert pair["token_type_ids"][-1] == 1 and pair["input_ids"].count(3) == 2


def test_a_given_tokenizer_is_used_or_refused_with_the_reason(tmp_path, workspace):
    files = [tmp_path / "c.txt"]
    files[0].write_text("\n".join(ENGLISH * 20))
    tok, source = mlm_tokenizer(files, "minilm", tmp_path / "w1", None, progress=False)
    assert tok.vocab_size == 30522 and source.endswith("tokenizer.json")
    assert len(tok.encode_batch(["hello"])[0]) == 1                  # MiniLM's padding is off
    assert (tmp_path / "w1" / "tokenizer.json").is_file()
    with pytest.raises(GoldmineError, match=r"byte-level BPE tokenizer \(a GPT's\) without "
                                            r"\[PAD\], \[UNK\], \[CLS\], \[SEP\], \[MASK\]"):
        mlm_tokenizer(files, workspace["tokenizer"], tmp_path / "w2", None, progress=False)


def test_a_trained_tokenizer_is_reused_only_for_the_same_inputs(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(ENGLISH * 20))
    work = tmp_path / "work"
    a, _ = mlm_tokenizer([corpus], None, work, 200, progress=False)
    spec = json.loads((work / "tokenizer.json").read_text())
    word = next(t for t in spec["model"]["vocab"] if t.isalpha() and len(t) > 3)
    spec["model"]["vocab"][word.upper()] = spec["model"]["vocab"].pop(word)
    (work / "tokenizer.json").write_text(json.dumps(spec))            # marked, to tell it apart
    b, _ = mlm_tokenizer([corpus], None, work, 200, progress=False)
    assert b.tok.token_to_id(word.upper()) is not None                # reused as it was
    c, _ = mlm_tokenizer([corpus], None, work, 220, progress=False)   # other options: retrained
    assert c.tok.token_to_id(word.upper()) is None and a.tok.token_to_id(word) is not None


def test_corpus_splits_and_bad_input(tmp_path, wordpiece):
    text = tmp_path / "c.txt"
    text.write_text("\n".join(ENGLISH * 10))
    splits = encode_corpus([text], wordpiece, progress=False)
    total = len(splits["train"]) + len(splits["val"])
    assert len(splits["val"]) == round(total * 0.1)
    assert splits["val"][-1] == wordpiece.sep_id                     # a document ends with [SEP]
    # a prepared dataset: its own val file is the val split
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ENGLISH))
    (ds / "val.jsonl").write_text(json.dumps({"text": CHINESE[0]}) + "\n")
    (ds / "manifest.json").write_text(json.dumps({"format": "goldmine-dataset/1", "files": {
        "train": "train.jsonl", "val": "val.jsonl"}}))
    corpus = load_mlm_data(ds, None, tmp_path / "w", vocab_size=200, progress=False)
    assert (corpus.splits["train"] == wordpiece.sep_id).sum() == 3
    val = corpus.splits["val"]
    assert corpus.tok.tok.decode(val[:-1].tolist()).replace(" ", "") == CHINESE[0]
    with pytest.raises(GoldmineError, match=f"the val split has {len(val)} tokens, fewer than"):
        corpus.get_batch("val", 2, 40)
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n \t\n")
    with pytest.raises(GoldmineError, match="no text"):
        load_mlm_data(blank, None, tmp_path / "w3", progress=False)
    with pytest.raises(GoldmineError, match="not found"):
        load_mlm_data(tmp_path / "missing.txt", None, tmp_path / "w4", progress=False)


def test_whole_words_need_a_wordpiece_tokenizer(foreign_bpe):
    tk = foreign_bpe(ENGLISH * 5)
    tk.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok = MLMTokenizer(tk)
    splits = {"train": np.arange(10, 60, dtype=np.int32), "val": np.arange(10, 60, dtype=np.int32)}
    with pytest.raises(GoldmineError, match="--whole-word false"):
        MLMCorpus(splits, tok)
    x, y = MLMCorpus(splits, tok, whole_word=False).get_batch("train", 3, 20)
    assert x.shape == (3, 20) and (y != -100).sum() == 3 * round(18 * 0.15)
