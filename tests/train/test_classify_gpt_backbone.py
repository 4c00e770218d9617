"""`goldmine finetune classify` on a goldmine GPT: a tiny GPT (2 layers, 32 wide, context 32)
pretrained a few steps on the sample corpus, converted to a Hugging Face Llama directory and
fine-tuned with a classification head on its last token."""

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from goldmine.classifier import Classifier
from goldmine.errors import GoldmineError
from goldmine.registry import Registry, run_id_for_path, start_run
from goldmine.train.finetune_classify import finetune_classify

POSITIVE = "great love excellent wonderful perfect".split()
NEGATIVE = "awful hate broken terrible useless".split()
FILLER = "the a this scarf order box it was and arrived on time for my very".split()
FAST = dict(batch_size=16, learning_rate=3e-3, warmup_ratio=0.1, patience=0, eval_every=0,
            max_length=32, device="cpu")
TEXTS = ["great scarf", "the box arrived broken, awful"]


def write_sentiment_csv(path: Path, n: int = 40, seed: int = 0) -> Path:
    """Filler words plus one sentiment word: separable by that word."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = ("pos", "neg")[i % 2]
            words = rng.sample(FILLER, rng.randint(3, 6))
            words.insert(rng.randrange(len(words) + 1),
                         rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            w.writerow([" ".join(words), label])
    return path


@pytest.fixture(scope="module")
def gpt(workspace, tmp_path_factory):
    """A pretrained tiny GPT run (in a home of its own) and a labelled CSV."""
    from goldmine.train.pretrain import pretrain

    root = tmp_path_factory.mktemp("gpt-backbone")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        res = pretrain(data=workspace["shards"], model="test", batch_size=4, block_size=32,
                       warmup_steps=2, eval_batches=2, max_steps=4, eval_every=0, ckpt_every=4)
    return {"home": root / "home", "run_id": res["run_id"], "run_dir": res["run_dir"],
            "csv": write_sentiment_csv(root / "sentiment.csv")}


def test_conversion_gives_the_gpt_logits_and_frames_texts_like_pretraining(gpt, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from goldmine.checkpoint import load_model
    from goldmine.hf import resolve_backbone

    path, source = resolve_backbone(gpt["run_dir"], tmp_path)
    assert source == Path(gpt["run_dir"]) / "checkpoints" / "best"
    model, tok, _ = load_model(source)
    hf_tok = AutoTokenizer.from_pretrained(path)
    ids = hf_tok(TEXTS[1])["input_ids"]
    assert ids == tok.encode(TEXTS[1], bos=True, eos=True)      # as documents were framed
    assert hf_tok.pad_token_id == tok.pad_id and hf_tok.model_max_length == 32
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    assert hf.config.pad_token_id == tok.pad_id
    with torch.no_grad():
        x = torch.tensor([ids])
        torch.testing.assert_close(hf(x).logits, model(x), atol=1e-4, rtol=1e-4)


def test_a_gpt_run_fine_tunes_into_a_plain_llama_classifier(gpt, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from goldmine.eval.classify import evaluate_classifier
    from goldmine.predict import predict

    res = finetune_classify(data=str(gpt["csv"]), model=gpt["run_dir"], max_steps=20, **FAST)
    assert res["labels"] == ["neg", "pos"] and res["steps"] == 20
    losses = [json.loads(line)["loss"] for line in
              (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5              # it learned something

    model_dir = Path(res["model_dir"])                             # loads as-is
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.id2label == {0: "neg", 1: "pos"}
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")   # right-padded
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits, -1).double().numpy()
    clf = Classifier.load(res["run_id"], device="cpu")             # pads its own way
    assert clf.labels == ["neg", "pos"]
    assert clf.predict_proba(TEXTS) == pytest.approx(probs, abs=1e-5)
    one = clf.predict_proba(TEXTS[:1])                             # padding changes nothing
    assert one[0] == pytest.approx(probs[0], abs=1e-5)

    meta = json.loads((model_dir / "goldmine.json").read_text())
    assert meta["backbone"] == str(Path(gpt["run_dir"]).resolve())
    run = Registry().get(res["run_id"])
    assert run_id_for_path(gpt["run_dir"]) in run["parents"]       # lineage: classifier <- GPT

    ev = evaluate_classifier(model=res["run_id"], data=str(gpt["csv"]), device="cpu")
    assert ev["data"]["n"] == 40 and 0 <= ev["metrics"]["accuracy"] <= 1
    out = predict(model=res["run_id"], inputs=[str(gpt["csv"])], out=str(tmp_path / "p.jsonl"),
                  device="cpu")
    assert out["rows"] == 40 and sum(out["labels_count"].values()) == 40


def test_lora_on_a_gpt_by_run_id(gpt, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    monkeypatch.setenv("GOLDMINE_HOME", str(gpt["home"]))          # where the GPT run is
    res = finetune_classify(data=str(gpt["csv"]), model=gpt["run_id"], max_steps=4, lora=True,
                            **FAST)
    assert res["trainable_params"] * 10 < res["total_params"]
    assert (Path(res["adapter_dir"]) / "adapter_config.json").is_file()
    assert gpt["run_id"] in Registry().get(res["run_id"])["parents"]
    model = AutoModelForSequenceClassification.from_pretrained(res["model_dir"])
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_bad_backbones_are_clear_errors(gpt, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    data = str(gpt["csv"])
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1,
                               n_head=2)).save_pretrained(gpt2)
    with pytest.raises(GoldmineError, match=r"model_type 'gpt2' is not a supported encoder; "
                                            r"supported: .*bert.*; a local Llama, Mistral or "
                                            r"Qwen2 directory; or a goldmine GPT run"):
        finetune_classify(data=data, model=str(gpt2), **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GoldmineError, match="not a Hugging Face model directory: no config.json"):
        finetune_classify(data=data, model=str(tmp_path / "empty"), **FAST)
    with pytest.raises(GoldmineError, match="no such directory and no run with that id"):
        finetune_classify(data=data, model="pretrain-19990101-000000-zzzz", **FAST)
    with start_run("data prepare", {}) as other:
        pass
    with pytest.raises(GoldmineError, match=f"run {other.id} is a `goldmine data prepare` run, "
                                            "not a GPT"):
        finetune_classify(data=data, model=other.id, **FAST)
    assert [r["command"] for r in Registry().list()] == ["data prepare"]  # no fine-tuning run
    with pytest.raises(GoldmineError, match=r"max_length: 128 is more than .* \(32 tokens\)"):
        finetune_classify(data=data, model=gpt["run_dir"], **{**FAST, "max_length": 128})
