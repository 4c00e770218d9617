"""`goldmine data prepare` end to end on small messy inputs written by the tests."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from goldmine.config import PrepareConfig
from goldmine.data.prepare import prepare_dataset
from goldmine.errors import GoldmineError

REVIEWS = [
    ("The wool scarf is warm and soft, I wear it every single day this winter", "Positive"),
    ("Terrible zipper, it broke after two days and support never answered me", "negative"),
    ("It is fine. Nothing special about the colour or the fit, does the job", "neutral"),
    ("这条围巾非常暖和，颜色也很好看，强烈推荐给大家购买", "positive"),
    ("质量太差了，用了两天就坏了，客服也不回复消息", "negative"),
]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def make_reviews(n_per_label=30):
    """Distinct review texts: a base sentence with a numbered product and a varying tail."""
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
             "november oscar papa quebec romeo sierra tango uniform victor whiskey").split()
    rows = []
    for label, base in (("positive", "I love the {w} kettle number {i}, it boils fast and looks "
                                     "great on the {v} counter"),
                        ("negative", "The {w} lamp model {i} stopped working, the {v} switch is "
                                     "loose and the light flickers"),
                        ("neutral", "Received the {w} mug order {i}. It is a mug, {v} colour, "
                                    "nothing more to say about it")):
        for i in range(n_per_label):
            rows.append((base.format(w=words[i % len(words)], v=words[(7 * i + 3) % len(words)],
                                     i=1000 + 37 * i), label))
    return rows


def write_reviews(path: Path, rows) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))


def check_accounting(out: Path, manifest: dict):
    """kept + duplicates + rejected = read, and the files agree with the counts."""
    c = manifest["counts"]
    assert c["kept"] + c["exact_duplicates"] + c["near_duplicates"] + c["rejected"] == c["read"]
    rejected = read_jsonl(out / "rejected.jsonl")
    assert len(rejected) == c["rejected"]
    assert Counter(r["reason"] for r in rejected) == Counter(c["rejected_by_reason"])
    for r in rejected:
        assert r["source"] and r["line"] >= 1 and r["reason"]
    dups = read_jsonl(out / "duplicates.jsonl")
    assert len(dups) == c["exact_duplicates"] + c["near_duplicates"]
    assert sum(d["kind"] == "near" for d in dups) == c["near_duplicates"]
    originals = 0
    for split, name in manifest["files"].items():
        if name.endswith(".jsonl"):
            rows = read_jsonl(out / name)
            assert len(rows) == c["splits"][split]
            originals += sum(r.get("origin", "original") == "original" for r in rows)
    if all(name.endswith(".jsonl") for name in manifest["files"].values()):
        assert originals == c["kept"]
    return rejected, dups


def test_classify_from_a_messy_gb18030_csv(tmp_path):
    rows = make_reviews(30)
    messy = [
        ["<p>I love the alpha kettle number 1000, it boils fast &amp; looks great</p>", "Positive "],
        ["I love the alpha kettle number 1000, it boils fast & looks great", "positive"],  # exact
        ["Mail me at zhang.wei@example.cn or call +86 138 1234 5678 about the lamp", "NEGATIVE"],
        ["   ", "negative"],                       # empty after cleaning
        ["a review without a label", ""],          # missing label
        ["用户说：这个杯子很好用，推荐！", "positive"],
    ]
    path = tmp_path / "reviews.csv"
    with open(path, "w", encoding="gb18030", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows([list(r) for r in rows] + messy)
        f.write("too,many,fields,here\n")
        # a near duplicate: the same words, other punctuation
        f.write('"' + rows[5][0].replace(",", ";") + '!",positive\n')
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], out=str(tmp_path / "ds"),
                                        text_column="review", label_column="sentiment", seed=0))
    out = tmp_path / "ds"
    rejected, dups = check_accounting(out, res)
    c = res["counts"]
    assert c["read"] == len(rows) + len(messy) + 2
    assert res["inputs"][0]["encoding"] == "gb18030"
    assert {"empty after cleaning", "missing label", "wrong number of fields"} <= set(
        c["rejected_by_reason"])
    assert c["exact_duplicates"] == 1 and c["near_duplicates"] >= 1
    near = next(d for d in dups if d["kind"] == "near")
    assert near["duplicate_of"]["line"] == 7 and near["similarity"] >= 0.8  # rows[5] is line 7
    assert res["labels"] == ["negative", "neutral", "positive"]
    assert c["pii"] == {"email": 1, "phone": 1}
    all_rows = [r for s in ("train", "val", "test") for r in read_jsonl(out / f"{s}.jsonl")]
    texts = " ".join(r["text"] for r in all_rows)
    assert "<EMAIL>" in texts and "<PHONE>" in texts and "example.cn" not in texts
    assert "用户说:这个杯子很好用,推荐!" in texts  # NFKC folded the full-width punctuation
    assert "<p>" not in texts and "&amp;" not in texts
    # stratified 80/10/10: every label in every split
    for split in ("train", "val", "test"):
        assert set(c["labels"][split]) == {"negative", "neutral", "positive"}
    # the report and its charts
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "kept + exact duplicates + near duplicates + rejected = read" in report
    for png in ("counts.png", "lengths.png", "labels.png", "pii.png"):
        assert (out / png).stat().st_size > 1000
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"][0]["sha256"] and manifest["format"] == "goldmine-dataset/1"
    assert not (out / ".work").exists()


def test_no_duplicate_crosses_splits_and_kept_splits_prefer_test(tmp_path):
    rows = make_reviews(20)
    lines = [{"text": t, "label": lab, "split": "train"} for t, lab in rows]
    # the same review in test and in train: the train copy goes, the test copy stays
    lines.append({"text": rows[0][0].upper(), "label": rows[0][1], "split": "test"})
    lines.append({"text": rows[1][0], "label": rows[1][1], "split": "validation"})
    lines.append({"text": "some text", "label": "positive", "split": "holdout"})
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)],
                                        out=str(tmp_path / "ds"), split_column="split"))
    out = tmp_path / "ds"
    _, dups = check_accounting(out, res)
    assert res["counts"]["rejected_by_reason"] == {"unknown split value": 1}
    assert {(d["line"], d["duplicate_of"]["line"]) for d in dups} == {(1, 61), (2, 62)}
    assert len(read_jsonl(out / "test.jsonl")) == 1 and len(read_jsonl(out / "val.jsonl")) == 1
    assert res["counts"]["splits"]["train"] == 58


def test_drawn_splits_never_share_near_duplicates(tmp_path):
    short = make_reviews(40)
    # ~50-word reviews; a one-word edit keeps the shingle Jaccard near 0.9
    base = [(" ".join(short[(i + k * 7) % len(short)][0] for k in range(3)), short[i][1])
            for i in range(len(short))]
    rows = base + [(t.replace("fast", "quickly", 1), lab) for t, lab in base[::3]]
    path = tmp_path / "r.jsonl"
    write_reviews(path, rows)
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], out=str(tmp_path / "ds")))
    from goldmine.data.dedup import MinHasher, jaccard_estimate

    h = MinHasher()
    by_split = {s: [h.signature(r["text"]) for r in read_jsonl(tmp_path / "ds" / f"{s}.jsonl")]
                for s in ("train", "val", "test")}
    c = res["counts"]
    assert c["exact_duplicates"] + c["near_duplicates"] >= 38 and c["near_duplicates"] >= 10
    for held_out in ("val", "test"):
        for a in by_split[held_out]:
            assert max(jaccard_estimate(a, b) for b in by_split["train"]) < 0.8


def test_balance_augment_and_folds(tmp_path):
    rows = make_reviews(40)
    rows = rows[:40] + rows[40:52] + rows[80:86]  # 40 positive, 12 negative, 6 neutral
    path = tmp_path / "r.jsonl"
    write_reviews(path, rows)
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], out=str(tmp_path / "o"),
                                        balance="over", augment=2, folds=4, seed=3))
    out = tmp_path / "o"
    check_accounting(out, res)
    c = res["counts"]
    train = read_jsonl(out / "train.jsonl")
    before = c["labels_before_balance"]["train"]
    # oversampling: every label as many original+copies as the largest
    real = Counter(r["label"] for r in train if r["origin"] != "augmented")
    assert len(set(real.values())) == 1 and max(real.values()) == max(before.values())
    augmented = [r for r in train if r["origin"] == "augmented"]
    assert 0 < len(augmented) <= 2 * sum(real.values()) and len(augmented) == c["augmented"]
    # augmentation covers the oversampled copies too, so labels stay balanced
    total = Counter(r["label"] for r in train)
    assert max(total.values()) <= 1.1 * min(total.values())
    originals = {r["source"]: r["text"] for r in train if r["origin"] == "original"}
    assert all(r["text"] != originals[r["source"]] for r in augmented)
    assert set(res["files"]) == {"train", "test"}  # folds replace val
    test = read_jsonl(out / "test.jsonl")
    assert test and all(r["origin"] == "original" and r["fold"] == -1 for r in test)
    # folds: 4 stratified folds over train; copies keep the fold of their original
    assert res["folds"]["k"] == 4 and sum(res["folds"]["sizes"]) == c["original_by_split"]["train"]
    fold_of = {r["source"]: r["fold"] for r in train if r["origin"] == "original"}
    assert set(fold_of.values()) == {0, 1, 2, 3}
    assert all(r["fold"] == fold_of[r["source"]] for r in train)


def test_undersampling_is_accounted_as_rejection(tmp_path):
    rows = make_reviews(30)
    rows = rows[:30] + rows[30:40] + rows[60:70]  # 30 positive, 10 negative, 10 neutral
    path = tmp_path / "r.jsonl"
    write_reviews(path, rows)
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], out=str(tmp_path / "o"),
                                        balance="under"))
    rejected, _ = check_accounting(tmp_path / "o", res)
    train = Counter(r["label"] for r in read_jsonl(tmp_path / "o" / "train.jsonl"))
    assert len(set(train.values())) == 1
    assert res["counts"]["rejected_by_reason"] == {"dropped by --balance under": 16}
    assert all(r["row"]["label"] == "positive" for r in rejected)


def test_label_map_and_allowlist(tmp_path):
    path = tmp_path / "sst.tsv"
    lines = ["sentence\tlabel"] + [f"{t}\t{i % 3}" for i, (t, _) in enumerate(make_reviews(20))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "map.yaml").write_text("0: negative\n1: positive\n2: null\n")
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], out=str(tmp_path / "o"),
                                        text_column="sentence", label_map=str(tmp_path / "map.yaml")))
    assert res["labels"] == ["negative", "positive"]
    assert res["counts"]["rejected_by_reason"] == {"label dropped by --label-map": 20}
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], out=str(tmp_path / "p"),
                                        text_column="sentence", labels=["0", "1"]))
    assert res["counts"]["rejected_by_reason"] == {"label not in --labels": 20}


def test_label_from_folder(tmp_path):
    for label, texts in (("pos", ["good one here", "great stuff indeed", "love it a lot"]),
                         ("neg", ["bad one here", "awful thing truly", "hate it so much"])):
        (tmp_path / "in" / label).mkdir(parents=True)
        for i, t in enumerate(texts):
            (tmp_path / "in" / label / f"{i}.txt").write_text(t)
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(tmp_path / "in")],
                                        out=str(tmp_path / "o"), label_from_folder=True,
                                        val_fraction=0, test_fraction=0))
    assert res["labels"] == ["neg", "pos"] and res["counts"]["kept"] == 6


def test_chat_from_messages_and_prompt_response(tmp_path):
    convs = [
        {"messages": [{"role": "user", "content": f"Where is my order #{1000 + i}?"},
                      {"role": "assistant", "content": f"Order #{1000 + i} ships on day {i}."}]}
        for i in range(20)]
    convs.append({"conversations": [{"from": "human", "value": "hi"}]})          # no messages
    convs[3]["messages"].append({"role": "user", "content": "thanks"})           # no reply
    convs[4]["messages"][0]["role"] = "customer"                                 # bad role
    convs[5]["messages"][1]["content"] = "<p></p>"                               # empty reply
    convs[6] = {"messages": [{"from": "human", "value": "Email me: a.b@shop.com"},
                             {"from": "gpt", "value": "Done, a.b@shop.com is saved."}]}
    p1 = tmp_path / "chats.jsonl"
    p1.write_text("".join(json.dumps(c) + "\n" for c in convs))
    p2 = tmp_path / "faq.csv"
    with open(p2, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer", "lang"])
        w.writerows([[f"How long does shipping to zone {i} take?", f"{i + 2} days.", "en"]
                     for i in range(10)])
    res = prepare_dataset(PrepareConfig(kind="chat", inputs=[str(p1), str(p2)],
                                        out=str(tmp_path / "o"), system_prompt="Be brief.",
                                        max_reject_ratio=0.9))
    out = tmp_path / "o"
    check_accounting(out, res)
    reasons = res["counts"]["rejected_by_reason"]
    assert reasons["no assistant reply"] == 1 and reasons["bad messages"] == 1
    assert reasons["empty message"] == 1 and reasons["missing messages"] == 1
    rows = [r for s in ("train", "val", "test") for r in read_jsonl(out / f"{s}.jsonl")]
    assert len(rows) == res["counts"]["kept"] == 20 - 3 + 10
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant"] and r["messages"][0]["content"] == "Be brief."
    sharegpt = next(r for r in rows if r["source"] == "chats.jsonl:7")
    assert sharegpt["messages"][1]["content"] == "Email me: <EMAIL>"
    assert any(r["source"].startswith("faq.csv") for r in rows)


def test_chat_without_conversation_columns_is_an_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("foo,bar\n1,2\n")
    with pytest.raises(GoldmineError, match=r"x.csv:2: no conversation found.*'foo', 'bar'"):
        prepare_dataset(PrepareConfig(kind="chat", inputs=[str(p)], out=str(tmp_path / "o")))


def test_text_corpus_paragraphs_html_and_dedup(tmp_path):
    paras = [f"Paragraph {i} talks about topic {i * 7} at some length, with several words "
             f"so that shingles mean something, number {i}." for i in range(30)]
    doc = "\n\n".join(paras + [paras[3], "<div>" + paras[4].replace(",", ";") + "</div>"])
    (tmp_path / "a.txt").write_text(doc + "\n", encoding="utf-8")
    res = prepare_dataset(PrepareConfig(kind="text", inputs=[str(tmp_path / "a.txt")],
                                        out=str(tmp_path / "o"), unit="paragraph"))
    check_accounting(tmp_path / "o", res)
    c = res["counts"]
    assert c["read"] == 32 and c["exact_duplicates"] == 1 and c["near_duplicates"] == 1
    assert res["files"] == {"train": "train.jsonl"}  # text: no val/test unless asked
    rows = read_jsonl(tmp_path / "o" / "train.jsonl")
    assert [r["text"] for r in rows] == paras


def test_tokenizer_and_shards_read_a_prepared_dataset_and_record_it_as_parent(tmp_path):
    from goldmine.config import TokenizeConfig, TokenizerConfig
    from goldmine.data.shards import tokenize_corpus
    from goldmine.registry import Registry
    from goldmine.tokenizer import train_tokenizer

    lines = [{"text": f"Document {i}: the shop sells item {i * 13} in colour {i % 7} today."}
             for i in range(200)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = prepare_dataset(PrepareConfig(kind="text", inputs=[str(tmp_path / "c.jsonl")],
                                       out=str(tmp_path / "ds"), val_fraction=0.1, dedup="exact"))
    assert set(ds["files"]) == {"train", "val"}
    tok = train_tokenizer(TokenizerConfig(inputs=[str(tmp_path / "ds")], vocab_size=300,
                                          out=str(tmp_path / "tok")))
    shards = tokenize_corpus(TokenizeConfig(inputs=[str(tmp_path / "ds")], tokenizer=tok["tokenizer"],
                                            out=str(tmp_path / "shards")))
    assert shards["documents"] == ds["counts"]["kept"]
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    assert meta["split"] == "dataset" and meta["val"]["tokens"] > 0
    from goldmine.config import PretrainConfig
    from goldmine.train.pretrain import pretrain

    trained = pretrain(PretrainConfig.from_preset("test"), data=str(tmp_path / "ds"),
                       tokenizer=tok["tokenizer"], max_steps=2, block_size=16)
    reg = Registry()
    assert ds["run_id"] in reg.get(tok["run_id"])["parents"]
    assert ds["run_id"] in reg.get(shards["run_id"])["parents"]
    assert ds["run_id"] in reg.get(trained["run_id"])["parents"]


def test_parquet_in_and_out(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_reviews(10)
    pq.write_table(pa.table({"body": [t for t, _ in rows], "y": [lab for _, lab in rows]}),
                   tmp_path / "in.parquet")
    res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(tmp_path / "in.parquet")],
                                        out=str(tmp_path / "o"), text_column="body",
                                        label_column="y", format="parquet"))
    tables = {s: pq.read_table(tmp_path / "o" / f) for s, f in res["files"].items()}
    assert sum(t.num_rows for t in tables.values()) == res["counts"]["kept"] == 30
    assert set(tables["train"].column_names) >= {"text", "label", "source", "origin"}


def test_workers_give_the_same_dataset(tmp_path):
    rows = make_reviews(40)
    rows += [(t + " Contact: x@y.org", lab) for t, lab in rows[:10]]
    path = tmp_path / "r.jsonl"
    write_reviews(path, rows)
    outs = []
    for w in (1, 2):
        res = prepare_dataset(PrepareConfig(kind="classify", inputs=[str(path)], workers=w,
                                            out=str(tmp_path / f"o{w}")))
        outs.append((res["counts"], [(tmp_path / f"o{w}" / f).read_bytes()
                                     for f in res["files"].values()]))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.write_text("text,label\nhello,pos\n"), r"no column 'review' \(columns: 'text', 'label'\)"),
    (lambda p: p.write_text("review\nhello\n"), r"no column 'label'.*--label-column"),
])
def test_missing_columns_name_the_file_and_fields(tmp_path, setup, message):
    p = tmp_path / "in.csv"
    setup(p)
    with pytest.raises(GoldmineError, match=message):
        prepare_dataset(PrepareConfig(kind="classify", inputs=[str(p)], out=str(tmp_path / "o"),
                                      text_column="review" if "review" not in p.read_text() else "review"))


def test_nothing_left_and_reject_ratio_are_errors(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"text": ""}\n{"text": "  "}\n')
    with pytest.raises(GoldmineError, match=r"no rows left .*empty after cleaning \(2\)"):
        prepare_dataset(PrepareConfig(inputs=[str(p)], out=str(tmp_path / "o")))
    p.write_text('{"text": "a fine document"}\n{"text": ""}\nnot json\n')
    with pytest.raises(GoldmineError, match=r"2 of 3 rows rejected \(67% > --max-reject-ratio 0.5\)"):
        prepare_dataset(PrepareConfig(inputs=[str(p)], out=str(tmp_path / "o2")))
    # the outputs are still there to inspect
    assert len(read_jsonl(tmp_path / "o2" / "rejected.jsonl")) == 2
    res = prepare_dataset(PrepareConfig(inputs=[str(p)], out=str(tmp_path / "o3"),
                                        max_reject_ratio=1.0))
    assert res["counts"]["rejected_by_reason"] == {"empty after cleaning": 1, "malformed JSON": 1}
    lines = {r["reason"]: r["line"] for r in read_jsonl(tmp_path / "o3" / "rejected.jsonl")}
    assert lines == {"empty after cleaning": 2, "malformed JSON": 3}


def test_config_checks():
    with pytest.raises(GoldmineError, match="balance: only for --kind classify"):
        PrepareConfig(kind="text", inputs=["x"], balance="over").validate()
    with pytest.raises(GoldmineError, match="need --tokenizer"):
        PrepareConfig(inputs=["x"], max_tokens=10).validate()
    with pytest.raises(GoldmineError, match="val_fraction \\+ test_fraction"):
        PrepareConfig(kind="classify", inputs=["x"], val_fraction=0.5, test_fraction=0.5).validate()
    assert PrepareConfig(kind="classify").fractions() == (0.1, 0.1)
    assert PrepareConfig(kind="text").fractions() == (0.0, 0.0)
    assert PrepareConfig(kind="classify", folds=5).fractions() == (0.0, 0.1)


def test_token_length_filter(tmp_path, workspace):
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                         ["short text", "a much longer text " * 20, "medium sized text here ok"]))
    res = prepare_dataset(PrepareConfig(inputs=[str(p)], out=str(tmp_path / "o"),
                                        tokenizer=workspace["tokenizer"], max_tokens=40,
                                        min_tokens=3))
    assert res["counts"]["rejected_by_reason"] == {"too many tokens": 1, "too few tokens": 1} or \
        res["counts"]["rejected_by_reason"] == {"too many tokens": 1}


def test_a_prepared_dataset_can_be_prepared_again(tmp_path):
    """Its folder stands for its split files, not its reports and rejects."""
    rows = make_reviews(10)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
                    + "not json\n")
    first = prepare_dataset(kind="classify", inputs=[str(path)], out=str(tmp_path / "a"))
    again = prepare_dataset(kind="classify", inputs=[str(tmp_path / "a")], out=str(tmp_path / "b"),
                            balance="under")
    assert [Path(i["path"]).name for i in again["inputs"]] == ["train.jsonl", "val.jsonl",
                                                               "test.jsonl"]
    assert again["counts"]["read"] == first["counts"]["kept"] == 30
