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
