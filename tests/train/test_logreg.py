"""`goldmine finetune classify --arch logreg`: the linear baseline (goldmine/baselines/logreg.py)
on the sample shop reviews (English and Chinese, three sentiments). Every run takes a second
or a few on a CPU."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from goldmine.baselines.logreg import (
    Features,
    Featurizer,
    LogRegClassifier,
    batch_matrix,
    clean,
    log_softmax,
    loss_and_grad,
    ngrams,
)
from goldmine.classifier import Classifier
from goldmine.cli import main
from goldmine.config import FinetuneClassifyConfig
from goldmine.errors import GoldmineError
from goldmine.registry import Registry
from goldmine.train.finetune_classify import finetune_classify, load_examples

SMALL = dict(arch="logreg", hash_buckets=2**14, device="cpu")  # fewer columns: faster


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The sample reviews (900, 20% Chinese) as a raw file and as a prepared dataset."""
    from goldmine.data.prepare import prepare_dataset
    from goldmine.data.sample import generate_sample_data

    root = tmp_path_factory.mktemp("logreg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        sample = generate_sample_data(root / "shop", seed=0, scale=0.3)
        reviews = sample["files"]["reviews.jsonl"]["path"]
        ds = prepare_dataset(kind="classify", inputs=[reviews], label_column="sentiment",
                             out=str(root / "reviews"))
    return {"root": root, "reviews": reviews, "ds": ds["out"]}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------------- features
def test_word_and_character_ngrams():
    grams = ngrams(clean("Great MUG, love it!"), Features())
    assert clean("Great MUG, love it!") == ["great", "mug", "love", "it"]
    assert {"wgreat", "wgreat mug", "wlove it"} <= set(grams)
    assert {"c g", "cgr", "cgrea", "ct ", "c it "} <= set(grams)  # each word, space-padded
    assert not any("," in g or "!" in g for g in grams)
    across = ngrams(clean("love it"), Features(char_scope="text"))
    assert "ce i" in across and "ce i" not in ngrams(clean("love it"), Features())


def test_chinese_gets_character_ngram_features():
    f = Features(word_ngrams=(0, 0), buckets=2**12)
    assert "c退货" in ngrams(clean("质量很差，退货了"), f)
    X = Featurizer(f).fit(["质量很差，退货了", "已经退货", "很喜欢"])
    assert X[0].nnz > 10
    shared = set(X[0].indices) & set(X[1].indices)  # "退货" in both
    assert shared and not set(X[0].indices) & set(X[2].indices) - shared


def test_rows_have_unit_norm_and_the_idf_comes_from_train():
    fz = Featurizer(Features(buckets=2**12))
    X = fz.fit(["a good mug", "a bad mug", "good good good"])
    assert np.allclose(np.sqrt(X.multiply(X).sum(axis=1)).A.ravel(), 1.0, atol=1e-6)
    idf = fz.idf.copy()
    Y = fz.transform(["!!!", "", "a mug nobody saw"])
    assert np.array_equal(np.diff(Y.indptr)[:2], [0, 0])  # no n-grams: empty rows
    assert np.array_equal(fz.idf, idf)  # transform does not refit
    assert np.array_equal(X.indices, Featurizer(Features(buckets=2**12)).fit(
        ["a good mug", "a bad mug", "good good good"]).indices)  # stable hashing


# --------------------------------------------------------------------------------- the math
@pytest.mark.parametrize("sparse", [False, True])
def test_gradient_matches_autograd(sparse):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 9, generator=g) * (torch.rand(6, 9, generator=g) < 0.4)
    W, b = torch.randn(9, 4, generator=g), torch.randn(4, generator=g)
    y = torch.tensor([0, 3, 1, 1, 2, 3])
    for weights in (None, torch.tensor([0.5, 2.0, 1.0, 1.5])):
        Wa, ba = W.clone().requires_grad_(), b.clone().requires_grad_()
        ref = F.cross_entropy(x @ Wa + ba, y, weight=weights)
        ref.backward()
        x_in = sp.csr_matrix(x.numpy()) if sparse else x.numpy()
        loss, gW, gb = loss_and_grad(W, b, x_in, y, weights)
        assert torch.allclose(loss, ref.detach(), atol=1e-6)
        assert torch.allclose(gW, Wa.grad, atol=1e-6) and torch.allclose(gb, ba.grad, atol=1e-6)


def test_batch_matrix_is_the_batch_over_its_columns():
    X = Featurizer(Features(buckets=2**10)).fit(["a good mug", "bad", "good mug", "ok then"])
    rows = np.array([2, 0])
    x, cols = batch_matrix(X, rows)
    assert np.array_equal(x.toarray(), X[rows][:, cols.numpy()].toarray())
    assert x.shape == (2, len(cols)) and len(cols) == len(set(X[rows].indices))


def test_huge_logits_are_stable():
    z = torch.tensor([[1e4, 0.0, -1e4], [3e38, 3e38, 0.0], [-1e4, -1e4, -1e4]])
    logp = log_softmax(z)
    assert torch.isfinite(logp[:, :2]).all()
    assert torch.allclose(logp[0], torch.tensor([0.0, -1e4, -2e4]))
    assert torch.allclose(logp[1, :2], torch.full((2,), -np.log(2.0)))
    assert torch.allclose(logp[2], torch.full((3,), -np.log(3.0)))
    W = torch.tensor([[1e4, -1e4], [0.0, 0.0]])
    loss, gW, gb = loss_and_grad(W, torch.zeros(2), np.eye(2, dtype=np.float32),
                                 torch.tensor([1, 0]))
    # row 0 puts its label 2e4 below the other, row 1 is even: mean of 2e4 and log 2
    assert loss.item() == pytest.approx((2e4 + np.log(2.0)) / 2, rel=1e-6)
    assert torch.isfinite(gW).all() and torch.isfinite(gb).all()


# --------------------------------------------------------------------------------- training
def test_matches_scikit_learn_logistic_regression(shop):
    """Same features, same objective (C = 1 / (n * l2)), both run to convergence: accuracy
    and log-loss on the held-out rows within 1% of scikit-learn's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss

    data = dict(data=shop["reviews"], label_column="sentiment", val_fraction=0.2)
    l2 = 1e-3
    res = finetune_classify(**data, **SMALL, l2=l2, epochs=100, batch_size=128, patience=0,
                            eval_every=0)
    clf = Classifier.load(res["run_id"])
    assert isinstance(clf, LogRegClassifier)
    ex = load_examples(FinetuneClassifyConfig(**data))  # the same split, seeded
    index = {label: i for i, label in enumerate(clf.labels)}
    y = np.array([index[e.label] for e in ex.train])
    y_val = np.array([index[e.label] for e in ex.val])
    X = clf.featurizer.transform([e.text for e in ex.train]).astype(np.float64)
    X_val = clf.featurizer.transform([e.text for e in ex.val]).astype(np.float64)

    sk = LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-10, max_iter=10_000).fit(X, y)
    p_sk = sk.predict_proba(X_val)
    p = clf.predict_proba([e.text for e in ex.val])
    ours = {"accuracy": accuracy_score(y_val, p.argmax(1)), "log_loss": log_loss(y_val, p)}
    theirs = {"accuracy": accuracy_score(y_val, p_sk.argmax(1)),
              "log_loss": log_loss(y_val, p_sk)}
    print(f"\nlogreg {ours}\nsklearn {theirs}")
    assert theirs["accuracy"] > 0.85  # a task worth comparing on
    assert abs(ours["accuracy"] - theirs["accuracy"]) <= 0.01
    assert abs(ours["log_loss"] - theirs["log_loss"]) <= 0.01 * theirs["log_loss"]
    assert res["val"]["loss"] == pytest.approx(ours["log_loss"], rel=1e-5)


def test_defaults_train_a_good_model_that_loads_with_the_same_predictions(shop, capsys):
    res = finetune_classify(data=shop["ds"], arch="logreg", device="cpu")
    cfg = Registry().get(res["run_id"])["config"]
    assert (cfg["learning_rate"], cfg["batch_size"], cfg["schedule"], cfg["metric"]) == \
        (4.0, 64, "cosine", "loss")  # logreg's own defaults, not the transformer's
    assert res["arch"] == "logreg" and res["val"]["accuracy"] > 0.9
    assert res["trainable_params"] == res["total_params"] == 2**18 * 3 + 3
    model = Path(res["model_dir"])
    assert sorted(p.name for p in model.iterdir()) == ["goldmine.json", "model.safetensors"]
    meta = json.loads((model / "goldmine.json").read_text())
    assert (meta["task"], meta["arch"], meta["labels"]) == \
        ("classify", "logreg", ["negative", "neutral", "positive"])
    assert set(load_file(model / "model.safetensors")) == {"W", "b", "idf"}
    assert Path(res["plot"]).is_file()
    rows = [json.loads(line) for line in (Path(res["run_dir"]) / "metrics.jsonl").open()]
    assert any("val_loss" in r for r in rows) and any("lr" in r for r in rows)

    texts = ["The mug is lovely, works perfectly", "Very disappointed. Save your money.",
             "后悔买了，已经退货了", ""]
    loaded = [Classifier.load(ref) for ref in (res["run_id"], res["run_dir"], model)]
    probs = [c.predict_proba(texts) for c in loaded]
    assert probs[0].shape == (4, 3) and np.allclose(probs[0].sum(1), 1.0)
    assert all(np.array_equal(probs[0], p) for p in probs[1:])
    assert loaded[0].predict(texts[:3]) == ["positive", "negative", "negative"]
    assert loaded[0].last_tokens == 6 + 5 + 2 and loaded[0].last_truncated == 0


def test_resume_after_sigint_reaches_the_same_weights_bit_for_bit(shop):
    cfg = FinetuneClassifyConfig(data=shop["ds"], **SMALL, max_steps=30, eval_every=8,
                                 patience=0)
    a = finetune_classify(cfg)

    def interrupt(step, model):  # Ctrl-C between evaluations
        if step == 13:
            os.kill(os.getpid(), signal.SIGINT)

    b = finetune_classify(cfg, callback=interrupt)
    assert b["stop_reason"] == "interrupted" and b["steps"] == 13
    assert Registry().get(b["run_id"])["status"] == "interrupted"
    b2 = finetune_classify(cfg, resume=b["run_id"])
    assert b2["resumed_from_step"] == 13 and b2["steps"] == 30 and b2["val"] == a["val"]
    for sub, name in (("checkpoint", "state.safetensors"), ("model", "model.safetensors")):
        ta = load_file(Path(a["run_dir"]) / sub / name)
        tb = load_file(Path(b["run_dir"]) / sub / name)
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_texts_without_ngrams_are_skipped_and_reported(shop, tmp_path, capsys):
    rows = [json.loads(line) for line in Path(shop["reviews"]).open()][:200]
    rows += [{"text": "!!! ???", "sentiment": "positive"}, {"text": "😐 …", "sentiment": "neutral"}]
    res = finetune_classify(data=str(write_jsonl(tmp_path / "r.jsonl", rows)),
                            label_column="sentiment", **SMALL, epochs=1)
    assert res["skipped"] == {"no n-grams": 2}
    assert res["train_rows"] + res["val_rows"] == 200
    assert "no n-grams (2, first at" in capsys.readouterr().err


# --------------------------------------------------------------------------------- commands
def test_cli_train_evaluate_predict_and_serve(shop, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from goldmine.serve.app import create_app
    from goldmine.serve.models import load_served

    out = tmp_path / "baseline"
    assert main(["finetune", "classify", "--arch", "logreg", "--data", shop["ds"], "--out",
                 str(out), "--epochs", "3", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["model_dir"] == str(out / "model") and trained["stop_reason"] == "epochs"

    assert main(["evaluate", "--model", trained["run_id"], "--data", shop["ds"], "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["metrics"]["accuracy"] > 0.85 and ev["model"]["max_length"] is None
    assert Path(ev["run_dir"], "report.md").is_file()

    labelled = tmp_path / "labelled.csv"
    assert main(["predict", "--model", str(out), shop["reviews"], "--out", str(labelled),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["rows"] == 900 and sum(pred["labels_count"].values()) == 900
    assert "p_negative" in labelled.read_text().splitlines()[0]

    served = load_served("baseline", str(out), torch.device("cpu"), None)
    with TestClient(create_app({"baseline": served}, auth=False)) as client:
        r = client.post("/v1/classify", json={"model": "baseline",
                                              "input": ["Lovely mug, works perfectly", "差评"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["data"][0]["label"] == "positive" and body["usage"]["prompt_tokens"] == 5
        assert set(body["data"][1]["probabilities"]) == {"negative", "neutral", "positive"}
        models = client.get("/v1/models").json()["data"]
        assert models[0]["kind"] == "classify"


def test_quantize_and_export_refuse_a_logreg_model(shop):
    from goldmine.export.command import export
    from goldmine.quantize import quantize

    res = finetune_classify(data=shop["ds"], **SMALL, max_steps=1)
    with pytest.raises(GoldmineError, match="applies to neural models; a logreg model is "
                                            "already small"):
        quantize(run=res["run_id"])
    for ref in (res["run_id"], res["model_dir"]):
        with pytest.raises(GoldmineError, match="no Hugging Face, ONNX or GGUF form"):
            export(run=ref, format="hf")
    with pytest.raises(GoldmineError, match="max_length: a logreg model reads whole texts"):
        Classifier.load(res["run_id"], max_length=64)


# --------------------------------------------------------------------------------- bad input
def test_bad_input_errors(shop, tmp_path):
    ds = shop["ds"]
    punct = write_jsonl(tmp_path / "punct.jsonl", [
        {"text": t, "label": lab} for t, lab in [("!!!", "a"), ("...", "b"), ("?!", "a")] * 5])
    with pytest.raises(GoldmineError, match=r"punct.jsonl: no training text has a word or "
                                            r"character n-gram .* first at .*punct.jsonl:"):
        finetune_classify(data=str(punct), arch="logreg")
    same = write_jsonl(tmp_path / "same.jsonl", [{"text": f"text {i}", "label": "pos"}
                                                 for i in range(20)])
    with pytest.raises(GoldmineError, match="labels that are all the same"):
        finetune_classify(data=str(same), arch="logreg")
    with pytest.raises(GoldmineError, match="lora: applies to --arch transformer only"):
        finetune_classify(data=ds, arch="logreg", lora=True)
    with pytest.raises(GoldmineError, match="max_length: applies to --arch transformer only"):
        finetune_classify(data=ds, arch="logreg", max_length=64)
    with pytest.raises(GoldmineError, match="l2: applies to --arch logreg only"):
        finetune_classify(data=ds, l2=1e-3)
    with pytest.raises(GoldmineError, match="word_ngrams: expected MIN-MAX"):
        finetune_classify(data=ds, arch="logreg", word_ngrams="one")
    with pytest.raises(GoldmineError, match="both 0 leaves"):
        finetune_classify(data=ds, arch="logreg", word_ngrams="0", char_ngrams="0")
    with pytest.raises(GoldmineError, match="arch: 'svm' is not one of"):
        finetune_classify(data=ds, arch="svm")
    assert Registry().list() == []  # nothing recorded for bad input
