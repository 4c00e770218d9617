"""Real public corpora from ../shared/datasets (skipped where that folder is absent)."""

import os
from pathlib import Path

import pytest

from goldmine.config import TokenizeConfig, TokenizerConfig
from goldmine.data.shards import TokenShards, tokenize_corpus
from goldmine.tokenizer import Tokenizer, train_tokenizer

# ../shared/datasets beside the checkout, or wherever GOLDMINE_DATASETS points
DATASETS = Path(os.environ.get("GOLDMINE_DATASETS")
                or Path(__file__).resolve().parents[2] / "shared" / "datasets")
SONGCI = DATASETS / "chinese-poetry-songci" / "songci.txt"
WAR_AND_PEACE = DATASETS / "english-prose-war-and-peace" / "war_and_peace.txt"

pytestmark = pytest.mark.shared_data


@pytest.mark.skipif(not SONGCI.is_file(), reason="needs ../shared/datasets/chinese-poetry-songci")
def test_chinese_bpe_on_song_ci_is_lossless_and_compresses(tmp_path):
    res = train_tokenizer(TokenizerConfig(inputs=[str(SONGCI)], vocab_size=8192, out=str(tmp_path),
                                          max_bytes=2_000_000))
    tok = Tokenizer.load(res["tokenizer"])
    text = SONGCI.read_text(encoding="utf-8")[-200_000:]   # a part it was not trained on
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    # a Chinese character is 3 UTF-8 bytes; merges must do better than one byte per token
    assert len(text.encode("utf-8")) / len(ids) > 2.0


@pytest.mark.skipif(not WAR_AND_PEACE.is_file(), reason="needs ../shared/datasets/english-prose-war-and-peace")
def test_english_prose_shards_match_direct_encoding(tmp_path):
    res = train_tokenizer(TokenizerConfig(inputs=[str(WAR_AND_PEACE)], vocab_size=4096,
                                          out=str(tmp_path / "tok")))
    assert res["bytes_per_token"] > 3.5                       # English BPE: ~4 bytes per token
    shards = tokenize_corpus(TokenizeConfig(inputs=[str(WAR_AND_PEACE)], tokenizer=res["tokenizer"],
                                            out=str(tmp_path / "shards")))
    tok = Tokenizer.load(res["tokenizer"])
    text = WAR_AND_PEACE.read_bytes().decode("utf-8")
    assert shards["train_tokens"] + shards["val_tokens"] == len(tok.encode(text)) + 2  # BOS, EOS
    sh = TokenShards(shards["out"])
    assert tok.decode(sh.arrays("val")[0][:-1].tolist()) in text


# ------------------------------------------------------------------------- data prepare
def _accounted(res) -> None:
    c = res["counts"]
    assert c["kept"] + c["exact_duplicates"] + c["near_duplicates"] + c["rejected"] == c["read"]


BANKING77 = DATASETS / "banking77" / "train.csv"
SST2 = DATASETS / "sst2" / "train.tsv"
CLINC = DATASETS / "clinc150" / "data_train_val.json"
BITEXT = DATASETS / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"


@pytest.mark.skipif(not BANKING77.is_file(), reason="needs ../shared/datasets/banking77")
def test_prepare_banking77_intents(tmp_path):
    from goldmine.data.prepare import prepare_dataset

    res = prepare_dataset(kind="classify", inputs=[str(BANKING77)], label_column="category",
                          out=str(tmp_path / "ds"))
    _accounted(res)
    c = res["counts"]
    assert c["read"] == 10003 and c["rejected"] == 0 and len(res["labels"]) == 77
    assert 0 < c["exact_duplicates"] + c["near_duplicates"] < 300
    assert all(len(v) == 77 for v in c["labels"].values())  # stratified: every intent everywhere


@pytest.mark.skipif(not SST2.is_file(), reason="needs ../shared/datasets/sst2")
def test_prepare_sst2_finds_phrase_level_near_duplicates(tmp_path):
    from goldmine.data.prepare import prepare_dataset

    (tmp_path / "labels.yaml").write_text("0: negative\n1: positive\n")
    res = prepare_dataset(kind="classify", inputs=[str(SST2)], text_column="sentence",
                          label_map=str(tmp_path / "labels.yaml"), out=str(tmp_path / "ds"))
    _accounted(res)
    c = res["counts"]
    assert c["read"] == 60614 and res["labels"] == ["negative", "positive"]
    # SST-2's training rows are phrases of the same sentences: many near twins
    assert c["near_duplicates"] > 10000 and c["label_conflicts"] > 0


@pytest.mark.skipif(not CLINC.is_file(), reason="needs ../shared/datasets/clinc150")
def test_prepare_clinc150_keeps_its_splits(tmp_path):
    from goldmine.data.prepare import prepare_dataset

    res = prepare_dataset(kind="classify", inputs=[str(CLINC)], text_column="0", label_column="1",
                          split_column="split", out=str(tmp_path / "ds"))
    _accounted(res)
    c = res["counts"]
    assert c["rejected_by_reason"] == {"unknown split value": 200}  # oos_train, oos_val
    assert set(res["files"]) == {"train", "val"} and len(res["labels"]) == 150
    assert c["original_by_split"]["val"] + 20 > 3000  # val wins over train on duplicates


@pytest.mark.skipif(not BITEXT.is_file(), reason="needs ../shared/datasets/bitext-customer-support")
def test_prepare_bitext_as_chat(tmp_path):
    import json

    from goldmine.data.prepare import prepare_dataset

    res = prepare_dataset(kind="chat", inputs=[str(BITEXT)], prompt_column="instruction",
                          response_column="response", out=str(tmp_path / "ds"))
    _accounted(res)
    assert res["counts"]["read"] == 4514 and res["counts"]["kept"] > 4400
    row = json.loads((tmp_path / "ds" / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert "\n" in "".join(m["content"] for m in row["messages"])  # multi-line CSV fields survive
