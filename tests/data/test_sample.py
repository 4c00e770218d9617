"""Tests for the seeded synthetic shop corpus (goldmine.data.sample)."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from goldmine.data.sample import generate_sample_data

DATA_FILES = ["products.jsonl", "reviews.jsonl", "support.jsonl", "faq.jsonl"]
ALL_FILES = DATA_FILES + ["corpus.txt", "corpus.jsonl", "README.md"]
SENTIMENTS = {"positive", "neutral", "negative"}
CJK = re.compile(r"[\u4e00-\u9fff]")
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _corpus_docs(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n")
    return text[:-1].split("\n\n")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    return generate_sample_data(out, seed=0, scale=0.05), out


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    out = tmp_path_factory.mktemp("medium")
    return generate_sample_data(out, seed=3, scale=0.2), out


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    summary = generate_sample_data(out, seed=0, scale=1.0)
    return summary, out


def test_same_seed_gives_identical_bytes(small, tmp_path):
    _, first = small
    generate_sample_data(tmp_path / "again", seed=0, scale=0.05)
    for name in ALL_FILES:
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_different_seed_gives_different_content(small, tmp_path):
    _, first = small
    generate_sample_data(tmp_path, seed=1, scale=0.05)
    for name in ALL_FILES:
        assert (first / name).read_bytes() != (tmp_path / name).read_bytes(), name


def test_creates_missing_directory_and_accepts_str(tmp_path):
    out = tmp_path / "a" / "b"
    summary = generate_sample_data(str(out), seed=5, scale=0.001)
    assert summary["out_dir"] == str(out)
    for name in ALL_FILES:
        assert (out / name).stat().st_size > 0
        assert summary["files"][name]["rows"] >= 1


def test_rejects_non_positive_scale(tmp_path):
    with pytest.raises(ValueError):
        generate_sample_data(tmp_path, scale=0)


def test_files_are_utf8_with_unix_newlines(small):
    _, out = small
    for name in ALL_FILES:
        raw = (out / name).read_bytes()
        raw.decode("utf-8")
        assert b"\r" not in raw and raw.endswith(b"\n"), name


def test_products_schema(small):
    _, out = small
    products = _jsonl(out / "products.jsonl")
    assert products
    for p in products:
        assert set(p) == {"id", "name", "category", "price", "lang", "description"}
        assert re.fullmatch(r"P\d{4}", p["id"])
        assert isinstance(p["name"], str) and p["name"]
        assert isinstance(p["category"], str) and p["category"]
        assert isinstance(p["price"], float) and 0 < p["price"] < 1000
        assert round(p["price"], 2) == p["price"]
        assert p["lang"] in {"en", "zh"}
        ends = r"[。！？]" if p["lang"] == "zh" else r"[.!?](?:\s|$)"
        assert 2 <= len(re.findall(ends, p["description"])) <= 5, p["description"]
    assert len({p["id"] for p in products}) == len(products)
    assert len({p["category"] for p in products}) >= 5


def test_reviews_schema_and_rating_sentiment_consistency(small):
    _, out = small
    product_ids = {p["id"] for p in _jsonl(out / "products.jsonl")}
    reviews = _jsonl(out / "reviews.jsonl")
    expected = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}
    for r in reviews:
        assert set(r) == {"id", "product_id", "rating", "sentiment", "lang", "text"}
        assert r["product_id"] in product_ids
        assert isinstance(r["rating"], int) and 1 <= r["rating"] <= 5
        assert r["sentiment"] == expected[r["rating"]]
        assert r["lang"] in {"en", "zh"}
        assert isinstance(r["text"], str) and len(r["text"]) > 10
    counts = collections.Counter(r["sentiment"] for r in reviews)
    assert set(counts) == SENTIMENTS and min(counts.values()) >= 2


def test_review_text_varies_with_sentiment(medium):
    _, out = medium
    texts = collections.defaultdict(set)
    for r in _jsonl(out / "reviews.jsonl"):
        texts[r["sentiment"]].add(r["text"])
    # plenty of distinct texts; sentiment-specific vocabulary exists on both ends
    assert all(len(v) > 20 for v in texts.values())
    words = {s: collections.Counter(w for t in v for w in re.findall(r"[a-z]+", t.lower()))
             for s, v in texts.items()}
    assert any(words["positive"][w] > 5 * (words["negative"][w] + 1) for w in words["positive"])
    assert any(words["negative"][w] > 5 * (words["positive"][w] + 1) for w in words["negative"])


def test_support_conversations(small):
    summary, out = small
    conversations = _jsonl(out / "support.jsonl")
    for c in conversations:
        assert set(c) == {"id", "intent", "lang", "messages"}
        assert c["intent"] in summary["intents"] and c["lang"] in {"en", "zh"}
        roles = [m["role"] for m in c["messages"]]
        assert all(isinstance(m["content"], str) and m["content"] for m in c["messages"])
        if roles[0] == "system":
            roles = roles[1:]
        assert roles and len(roles) % 2 == 0 and 2 <= len(roles) <= 6
        assert roles == ["user", "assistant"] * (len(roles) // 2)
    counts = collections.Counter(c["intent"] for c in conversations)
    assert len(summary["intents"]) >= 8
    assert set(counts) == set(summary["intents"]) and min(counts.values()) >= 2
    assert summary["intents"] == sorted(summary["intents"])


def test_first_user_messages_are_varied(medium):
    _, out = medium
    firsts = collections.defaultdict(set)
    for c in _jsonl(out / "support.jsonl"):
        user = next(m["content"] for m in c["messages"] if m["role"] == "user")
        # mask order numbers, amounts and digits so only the phrasing counts
        firsts[c["intent"]].add(re.sub(r"#?[A-Z]?\d[\d.,]*", "N", user))
    assert all(len(v) >= 4 for v in firsts.values()), {k: len(v) for k, v in firsts.items()}


def test_faq_schema(small):
    _, out = small
    for f in _jsonl(out / "faq.jsonl"):
        assert set(f) == {"id", "lang", "question", "answer"}
        assert f["lang"] in {"en", "zh"}
        assert isinstance(f["question"], str) and f["question"]
        assert isinstance(f["answer"], str) and f["answer"]


def test_chinese_share_and_language_labels(medium):
    summary, out = medium
    for name in DATA_FILES:
        rows = _jsonl(out / name)
        zh = [r for r in rows if r["lang"] == "zh"]
        assert 0.10 <= len(zh) / len(rows) <= 0.35, name
        for r in rows:  # zh rows contain Chinese, en rows have no Chinese
            text = json.dumps(r, ensure_ascii=False)
            assert bool(CJK.search(text)) == (r["lang"] == "zh"), text
    langs = summary["languages"]
    assert 0.10 <= langs["zh"] / (langs["zh"] + langs["en"]) <= 0.35
    docs = _corpus_docs(out / "corpus.txt")
    assert sum(1 for d in docs if CJK.search(d)) == langs["zh"]


def test_corpus_matches_sources(medium):
    summary, out = medium
    docs = _corpus_docs(out / "corpus.txt")
    n_rows = sum(len(_jsonl(out / name)) for name in DATA_FILES)
    assert len(docs) == n_rows == summary["files"]["corpus.txt"]["rows"]
    assert all(d.strip() == d and d for d in docs)
    assert [r["text"] for r in _jsonl(out / "corpus.jsonl")] == docs
    text = "\n\n".join(docs)
    assert re.search(r"^User: .+\nAssistant: .+", text, re.M)
    assert re.search(r"^Q: .+\nA: .+", text, re.M)
    assert "You are" not in text  # system prompts are not part of the corpus
    descriptions = {p["description"] for p in _jsonl(out / "products.jsonl")}
    assert sum(any(desc in d for desc in descriptions) for d in docs) == len(descriptions)
    kinds = ["review" if d[0] in "★☆" else d.split(":")[0] if d.startswith(("User:", "Q:"))
             else "product" for d in docs]
    switches = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert switches > len(docs) // 4  # seeded shuffle, not grouped by source


def test_summary_matches_files(small):
    summary, out = small
    assert summary["seed"] == 0 and summary["scale"] == 0.05
    assert set(summary["files"]) == set(ALL_FILES)
    for name, info in summary["files"].items():
        path = Path(info["path"])
        assert path == out / name and path.stat().st_size == info["bytes"]
        if name.endswith(".jsonl") or name == "README.md":
            lines = path.read_text(encoding="utf-8").count("\n")
            assert info["rows"] == lines, name
    assert summary["files"]["corpus.txt"]["rows"] == sum(summary["languages"].values())
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "synthetic" in readme.lower() and "seed=0" in readme and "scale=0.05" in readme
    for name in DATA_FILES:
        assert f"| `{name}` | {summary['files'][name]['rows']} |" in readme


def test_emoji_in_reviews(small):
    _, out = small
    assert any(EMOJI.search(r["text"]) for r in _jsonl(out / "reviews.jsonl"))


def test_full_scale_size_and_variety(full):
    summary, out = full
    assert 800_000 <= summary["files"]["corpus.txt"]["bytes"] <= 2_000_000
    rows = {name: summary["files"][name]["rows"] for name in DATA_FILES}
    assert rows == {"products.jsonl": 300, "reviews.jsonl": 3000, "support.jsonl": 1500,
                    "faq.jsonl": 200}
    docs = _corpus_docs(out / "corpus.txt")
    counts = collections.Counter()
    for doc in docs:
        doc = re.sub(r"^(?:User|Assistant|Q|A): |^[★☆]+ ", "", doc, flags=re.M)
        counts.update({s for s in re.split(r"(?<=[.!?])\s+|(?<=[。！？])|\n", doc) if s})
    sentence, n = counts.most_common(1)[0]
    assert n <= 0.02 * len(docs), sentence
