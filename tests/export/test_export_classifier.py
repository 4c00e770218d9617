"""goldmine export of classifier runs: a copy transformers loads, with a model card; LoRA
merged from the backbone and adapter; formats that do not apply are refused."""

import json
from pathlib import Path

import pytest
import torch

from goldmine.classifier import Classifier
from goldmine.errors import GoldmineError
from goldmine.export.command import export
from goldmine.registry import Registry


@pytest.fixture(scope="module")
def classify_run(tiny_bert, tmp_path_factory):
    """A tiny BERT classifier fine-tuned with LoRA for a few steps on the sample reviews."""
    from goldmine.train.finetune_classify import finetune_classify

    root = tmp_path_factory.mktemp("classify-export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        res = finetune_classify(data=tiny_bert["reviews"], model=tiny_bert["bert"], max_steps=3,
                                batch_size=8, lora=True, lora_r=4, learning_rate=5e-3, device="cpu")
    return {**res, "home": root / "home"}


@pytest.fixture
def home_of(classify_run, monkeypatch):
    monkeypatch.setenv("GOLDMINE_HOME", str(classify_run["home"]))


TEXTS = ["Great scarf, warm and soft.", "It never arrived and support did not answer."]


def test_classifier_export_is_a_transformers_directory_with_a_card(classify_run, home_of,
                                                                   tmp_path):
    from transformers import pipeline

    res = export(run=classify_run["run_id"], format="hf", out=str(tmp_path / "clf"))
    out = Path(res["out"])
    assert res["kind"] == "classifier"
    clf = Classifier.load(classify_run["run_id"], device="cpu")
    pipe = pipeline("text-classification", model=str(out), device="cpu", top_k=None)
    for text, scores in zip(TEXTS, pipe(TEXTS)):
        probs = dict(zip(clf.labels, clf.predict_proba([text])[0]))
        for s in scores:
            assert s["score"] == pytest.approx(float(probs[s["label"]]), abs=1e-5)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card
    for label in clf.labels:
        assert f"`{label}`" in card
    assert classify_run["run_id"] in card
    assert json.loads((out / "goldmine.json").read_text())["labels"] == clf.labels
    assert Registry().get(res["run_id"])["parents"] == [classify_run["run_id"]]


def test_merge_lora_rebuilds_the_classifier_from_backbone_and_adapter(classify_run, home_of,
                                                                      tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    res = export(run=classify_run["run_id"], merge_lora=True, out=str(tmp_path / "merged"))
    merged = AutoModelForSequenceClassification.from_pretrained(res["out"]).eval()
    cfg = Registry().get(classify_run["run_id"])["config"]
    labels = json.loads((Path(res["out"]) / "goldmine.json").read_text())["labels"]
    base = AutoModelForSequenceClassification.from_pretrained(
        cfg["model"], num_labels=len(labels))
    unmerged = PeftModel.from_pretrained(base, classify_run["adapter_dir"]).eval()
    tok = AutoTokenizer.from_pretrained(res["out"])
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**enc).logits, unmerged(**enc).logits,
                                   rtol=1e-4, atol=1e-4)


def test_gguf_does_not_apply_to_a_classifier(classify_run, home_of, tmp_path):
    with pytest.raises(GoldmineError, match="format gguf: does not apply.*hf or onnx"):
        export(run=classify_run["run_id"], format="gguf", out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_merge_lora_of_a_classifier_on_a_goldmine_gpt(gpt_run, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from goldmine.train.finetune_classify import finetune_classify

    monkeypatch.setenv("GOLDMINE_HOME", str(gpt_run["root"] / "home"))
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(
        f"the order {'arrived' if i % 2 else 'never came'},{'pos' if i % 2 else 'neg'}\n"
        for i in range(24)))
    run = finetune_classify(data=str(data), model=gpt_run["run_dir"], lora=True, lora_r=4,
                            max_steps=3, batch_size=8, learning_rate=5e-3, device="cpu",
                            eval_every=0, max_length=32)
    res = export(run=run["run_id"], merge_lora=True, out=str(tmp_path / "merged"))
    merged = AutoModelForSequenceClassification.from_pretrained(res["out"]).eval()
    clf = Classifier.load(run["run_id"], device="cpu")  # the copy merged at training time
    enc = clf.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**enc).logits, clf.model(**enc).logits,
                                   rtol=1e-4, atol=1e-4)
