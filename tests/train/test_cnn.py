"""`goldmine finetune classify --arch cnn`: the image baseline (goldmine/baselines/cnn.py) on
scikit-learn's digits and on tiny generated image folders, through evaluate, predict, compare
and serve. Runs are a few epochs of the small network: a second or two each on a CPU."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from image_helpers import bars, image_folder
from PIL import Image
from safetensors.torch import load_file

from goldmine.baselines.cnn import CNN, CNNClassifier, CNNConfig, shift_images
from goldmine.classifier import Classifier, is_image_model
from goldmine.cli import main
from goldmine.config import FinetuneClassifyConfig
from goldmine.data.images import read_images
from goldmine.errors import GoldmineError
from goldmine.registry import Registry
from goldmine.train.finetune_classify import finetune_classify

TINY = dict(arch="cnn", cnn_size="small", device="cpu")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small cnn trained 4 epochs on digits (about a second), in a home of its own."""
    root = tmp_path_factory.mktemp("cnn")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        res = finetune_classify(data="digits", epochs=4, **TINY)
        config = Registry().get(res["run_id"])["config"]
    test = read_images("digits", splits=("test",)).splits["test"]
    return {"res": res, "config": config, "test": test, "root": root, "home": root / "home"}


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------- the model
def test_network_shapes_and_shifts():
    for c_in, h, w in ((1, 8, 8), (3, 28, 20), (1, 1, 1)):
        model = CNN(CNNConfig(c_in, h, w, (4, 8, 8), 16, 5))
        x = torch.randint(0, 256, (2, c_in, h, w), dtype=torch.uint8)
        assert model(x).shape == (2, 5)
    assert CNN(CNNConfig(1, 28, 28, (4, 8), 16, 3)).grid == (4, 4)  # 7x7 pooled to 4x4
    x = torch.zeros(64, 1, 5, 5)
    x[:, 0, 2, 2] = 255.0  # one bright pixel in the middle
    out = shift_images(x, 1, False, torch.Generator().manual_seed(0))
    where = [tuple(np.argwhere(o[0].numpy() == 255)[0]) for o in out]
    assert out.shape == x.shape and set(where) == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}
    assert all((o == 255).sum() == 1 for o in out)  # moved, not smeared
    flipped = shift_images(torch.arange(4.0).view(1, 1, 1, 4).repeat(16, 1, 1, 1), 0, True,
                           torch.Generator().manual_seed(1))
    assert {tuple(f.flatten().tolist()) for f in flipped} == {(0, 1, 2, 3), (3, 2, 1, 0)}


# ------------------------------------------------------------------------------ training
def test_digits_defaults_learn_and_the_model_loads_with_the_same_predictions(digits_run):
    res, cfg, test = digits_run["res"], digits_run["config"], digits_run["test"]
    assert (cfg["learning_rate"], cfg["batch_size"], cfg["schedule"], cfg["metric"],
            cfg["patience"], cfg["data"]) == (3e-3, 64, "cosine", "loss", 0, "digits")
    assert res["arch"] == "cnn" and res["val_from_train"] and res["val_rows"] == 142
    assert res["train_rows"] == 1437 - 142 and res["steps"] == 4 * 21
    assert res["val"]["accuracy"] > 0.5  # chance is 0.1
    model = Path(res["model_dir"])
    assert sorted(p.name for p in model.iterdir()) == ["goldmine.json", "model.safetensors"]
    meta = json.loads((model / "goldmine.json").read_text())
    assert (meta["task"], meta["arch"], meta["labels"]) == ("classify", "cnn",
                                                            [str(i) for i in range(10)])
    assert meta["image"] == {"height": 8, "width": 8, "channels": 1, "mode": "L"}
    assert {"mean", "std"} <= set(load_file(model / "model.safetensors"))
    assert Path(res["plot"]).is_file()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(digits_run["home"]))
        loaded = [Classifier.load(ref) for ref in (res["run_id"], res["run_dir"], model)]
        assert is_image_model(res["run_id"]) and not is_image_model("no-such-run")
    assert all(isinstance(c, CNNClassifier) and c.inputs == "image" for c in loaded)
    probs = [c.predict_proba(test.pixels) for c in loaded]
    assert probs[0].shape == (360, 10) and np.allclose(probs[0].sum(1), 1.0)
    assert all(np.array_equal(probs[0], p) for p in probs[1:])
    accuracy = np.mean(np.array(loaded[0].labels)[probs[0].argmax(1)] == np.array(test.labels))
    assert accuracy > 0.5

    # the same image as bytes, a file, a PIL image, an (H, W) and a (C, H, W) array
    clf, a = loaded[0], test.pixels[7, 0]
    path = digits_run["root"] / "seven.png"
    path.write_bytes(png(a))
    forms = [png(a), str(path), path, Image.fromarray(a), a, a[None]]
    got = clf.predict_proba(forms)
    assert np.allclose(got, probs[0][7][None].repeat(len(forms), 0), atol=1e-6)
    assert clf.last_resized == 0 and clf.last_tokens == len(forms)
    big = np.kron(a, np.ones((2, 2), np.uint8))  # 16x16: resized, and counted
    colour = np.repeat(a[:, :, None], 3, axis=2)  # RGB: converted, and counted
    clf.predict([big, colour])
    assert (clf.last_resized, clf.last_converted) == (1, 1)
    with pytest.raises(GoldmineError, match=r"image 1: text \('a great product'\) given to an "
                                            r"image classifier"):
        clf.predict([a, "a great product"])
    with pytest.raises(GoldmineError, match="image 0: not an image Pillow can read"):
        clf.predict([b"not a png"])
    with pytest.raises(GoldmineError, match="max_length: a cnn model reads images"):
        CNNClassifier.load(model, max_length=32)


def test_resume_after_sigint_reaches_the_same_weights_bit_for_bit():
    cfg = FinetuneClassifyConfig(data="digits", **TINY, max_steps=12, eval_every=5)
    a = finetune_classify(cfg)

    def interrupt(step, model):  # Ctrl-C between evaluations
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    b = finetune_classify(cfg, callback=interrupt)
    assert b["stop_reason"] == "interrupted" and b["steps"] == 7
    b2 = finetune_classify(cfg, resume=b["run_id"])
    assert b2["resumed_from_step"] == 7 and b2["steps"] == 12 and b2["val"] == a["val"]
    for sub, name in (("checkpoint", "trainable.safetensors"), ("model", "model.safetensors")):
        ta = load_file(Path(a["run_dir"]) / sub / name)
        tb = load_file(Path(b["run_dir"]) / sub / name)
        assert set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta), name


# ------------------------------------------------------------------------------ commands
def test_cli_image_folder_train_predict_and_evaluate(tmp_path, capsys):
    root = image_folder(tmp_path / "bars", per_label=10, size=10)
    Image.fromarray(bars("h", 14, np.random.default_rng(3)), "L").save(root / "h" / "big.png")
    out = tmp_path / "run"
    assert main(["finetune", "classify", "--arch", "cnn", "--data", str(root), "--out",
                 str(out), "--epochs", "2", "--cnn-size", "small", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["image"] == {"height": 10, "width": 10, "mode": "L", "resized": 1,
                                "converted": 0}
    assert trained["labels"] == ["h", "v"] and trained["model_dir"] == str(out / "model")

    loose = tmp_path / "loose"
    loose.mkdir()
    for i, lab in enumerate("hv"):
        Image.fromarray(bars(lab, 20, np.random.default_rng(i)), "L").save(loose / f"{i}.png")
    (loose / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    labelled = tmp_path / "labelled.jsonl"
    assert main(["predict", "--model", str(out), str(loose), "--out", str(labelled),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert (pred["rows"], pred["errors"], pred["resized"]) == (3, 1, 2)
    rows = [json.loads(line) for line in labelled.open()]
    assert [Path(r["image"]).name for r in rows] == ["0.png", "1.png", "broken.jpg"]
    assert rows[2]["label"] is None and "not an image Pillow can read" in rows[2]["error"]
    assert set(rows[0]["probabilities"]) == {"h", "v"}
    # the labelled folder itself: each image with its split and true label, in a CSV
    assert main(["predict", "--model", str(out), str(root), "--out",
                 str(tmp_path / "all.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 21
    header = (tmp_path / "all.csv").read_text().splitlines()[0]
    assert header == "image,split,input_label,label,p_h,p_v,error"

    text = tmp_path / "reviews.jsonl"
    text.write_text('{"text": "great"}\n')
    assert main(["predict", "--model", str(out), str(text)]) == 2
    assert "reviews.jsonl: not an image (.jsonl); the model is an image classifier" in \
        capsys.readouterr().err

    assert main(["evaluate", "--model", str(out), "--data", str(root), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["data"]["n"] == 21 and ev["data"]["split"] is None
    assert ev["model"]["input"] == "10x10 L" and ev["metrics"]["accuracy"] >= 0.5


def test_evaluate_and_compare_on_digits(digits_run, capsys, monkeypatch):
    from goldmine.eval.compare import compare

    monkeypatch.setenv("GOLDMINE_HOME", str(digits_run["home"]))
    run_id = digits_run["res"]["run_id"]
    assert main(["evaluate", "--model", run_id, "--data", "digits", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert (ev["data"]["path"], ev["data"]["split"], ev["data"]["n"]) == ("digits", "test", 360)
    assert ev["metrics"]["accuracy"] > 0.5 and len(ev["confusion"]) == 10
    assert Path(ev["run_dir"], "confusion.png").is_file()
    # another model, at another image size; both score the same 360 test images
    other = finetune_classify(data="digits", **TINY, max_steps=5, image_size="12")
    res = compare(runs=[ev["run_id"], other["run_id"]], reps=1, bootstrap=100)
    assert res["data"]["n"] == 360 and res["data"]["path"] == "digits"
    assert [m["accuracy"] for m in res["models"]][0] == pytest.approx(ev["metrics"]["accuracy"])
    assert len(res["sentences"]) == 1


def test_serve_base64_images(digits_run, tmp_path):
    from fastapi.testclient import TestClient

    from goldmine.serve.app import create_app
    from goldmine.serve.models import load_served

    served = load_served("digits", digits_run["res"]["model_dir"], torch.device("cpu"), None)
    text_model = tmp_path / "reviews.jsonl"
    text_model.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in
                                  [("great mug", "pos"), ("awful mug", "neg")] * 10))
    logreg = finetune_classify(data=str(text_model), arch="logreg", hash_buckets=2**10,
                               max_steps=2)
    text = load_served("reviews", logreg["model_dir"], torch.device("cpu"), None)
    test = digits_run["test"]
    one = base64.b64encode(png(test.pixels[0, 0])).decode()
    rgb = base64.b64encode(png(np.repeat(test.pixels[1, 0][:, :, None], 3, 2))).decode()
    with TestClient(create_app({"digits": served, "reviews": text}, auth=False)) as client:
        r = client.post("/v1/classify", json={"model": "digits", "image": one})
        assert r.status_code == 200, r.text
        body = r.json()
        expected = CNNClassifier.load(digits_run["res"]["model_dir"]).predict_proba(
            test.pixels[:2])
        assert body["data"][0]["label"] == str(expected[0].argmax())
        assert body["data"][0]["probabilities"]["0"] == pytest.approx(expected[0][0], abs=1e-6)
        assert body["usage"]["prompt_tokens"] == 1
        r = client.post("/v1/classify", json={"model": "digits", "images": [
            one, "data:image/png;base64," + rgb]})
        assert r.status_code == 200, r.text
        assert r.json()["images"] == {"count": 2, "resized": 0, "converted": 1, "size": "8x8",
                                      "mode": "L"}
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert models["digits"]["inputs"] == "image" and "inputs" not in models["reviews"]

        def error(body, param):
            r = client.post("/v1/classify", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == param, r.text
            return r.json()["error"]["message"]

        assert "not valid base64" in error({"model": "digits", "image": "%%%"}, "image")
        assert "not an image Pillow can read" in error(
            {"model": "digits", "images": [one, base64.b64encode(b"GIF89a??").decode()]},
            "images.1")
        assert "data:image/...;base64" in error({"model": "digits",
                                                 "image": "data:image/png," + one}, "image")
        assert "classifies images" in error({"model": "digits", "input": "seven"}, "input")
        assert "classifies text" in error({"model": "reviews", "image": one}, "image")
        assert "give one of input" in error({"model": "digits"}, "input")
        assert "not image and images" in error({"model": "digits", "image": one,
                                                "images": [one]}, "images")


def test_quantize_and_export_refuse_a_cnn_model(digits_run, monkeypatch):
    from goldmine.export.command import export
    from goldmine.quantize import quantize

    monkeypatch.setenv("GOLDMINE_HOME", str(digits_run["home"]))
    res = digits_run["res"]
    for ref in (res["run_id"], res["run_dir"]):
        with pytest.raises(GoldmineError, match="a cnn model is small"):
            quantize(run=ref)
    for ref in (res["run_id"], res["model_dir"]):
        with pytest.raises(GoldmineError, match="a cnn image classifier has no Hugging Face, "
                                                "ONNX or GGUF form"):
            export(run=ref, format="onnx")


# ----------------------------------------------------------------------------- bad input
def test_bad_input_errors(tmp_path, digits_run):
    with pytest.raises(GoldmineError, match="l2: applies to --arch logreg only"):
        finetune_classify(data="digits", arch="cnn", l2=1e-3)
    with pytest.raises(GoldmineError, match="cnn_size: applies to --arch cnn only"):
        finetune_classify(data="digits", cnn_size="large")
    with pytest.raises(GoldmineError, match="weight_decay: applies to --arch transformer and "
                                            "cnn only, and this run is --arch logreg"):
        finetune_classify(data="digits", arch="logreg", weight_decay=0.1)
    with pytest.raises(GoldmineError, match="image_size: expected SIZE or WIDTHxHEIGHT"):
        finetune_classify(data="digits", arch="cnn", image_size="big")
    with pytest.raises(GoldmineError, match="text_column: applies to table files"):
        finetune_classify(data="digits", arch="cnn", text_column="review")
    with pytest.raises(GoldmineError, match="fold: cross-validation folds come from"):
        finetune_classify(data="digits", arch="cnn", fold=1)
    one = image_folder(tmp_path / "one", labels=("h",))
    with pytest.raises(GoldmineError, match="every training image has the label 'h'"):
        finetune_classify(data=str(one), arch="cnn")
    (tmp_path / "one" / "v").mkdir()
    with pytest.raises(GoldmineError, match=r"one/v: empty label folder"):
        finetune_classify(data=str(one), arch="cnn")
    table = tmp_path / "t.csv"
    table.write_text("text,label\nfine,a\nbad,b\n")
    with pytest.raises(GoldmineError, match="t.csv: a single file; training and evaluating on "
                                            "images take a folder"):
        finetune_classify(data=str(table), arch="cnn")
    assert Registry().list() == []  # nothing recorded for bad input

    # images to a text model, text to an image model
    text_model = tmp_path / "r.jsonl"
    text_model.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n"
                                  for t, lab in [("great", "pos"), ("awful", "neg")] * 10))
    logreg = finetune_classify(data=str(text_model), arch="logreg", hash_buckets=2**10,
                               max_steps=1)
    from goldmine.eval.classify import evaluate_classifier
    from goldmine.predict import predict

    with pytest.raises(GoldmineError, match="digits holds images, and .* is a text classifier"):
        evaluate_classifier(model=logreg["run_id"], data="digits")
    with pytest.raises(GoldmineError, match="one: images, and .* is a text classifier"):
        predict(model=logreg["run_id"], inputs=[str(one)])
    with pytest.raises(GoldmineError, match="r.jsonl: not an image"):
        predict(model=digits_run["res"]["model_dir"], inputs=[str(text_model)])
