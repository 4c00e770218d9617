"""`goldmine finetune classify` on a tiny random BERT (2 layers, 32 wide) with the MiniLM
tokenizer, and a separable sentiment set: every run takes a second or two on a CPU."""

import csv
import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from goldmine.config import FinetuneClassifyConfig
from goldmine.errors import GoldmineError
from goldmine.hf import ENCODER_TYPES, MINILM, minilm_path, resolve_encoder
from goldmine.registry import Registry, run_id_for_path
from goldmine.train.finetune_classify import (
    epoch_batches,
    finetune_classify,
    inverse_frequency_weights,
    learning_rate,
)

POSITIVE = "great love excellent wonderful superb amazing perfect delighted".split()
NEGATIVE = "awful hate broken terrible horrible useless disappointed refund".split()
FILLER = ("the a this product item box it was and arrived on time for my order really quite "
          "very today with some parts of colour size").split()
# fast and learns the task: tiny model, high learning rate; on CPU, where runs are exact
# tiny random encoders learn at 3e-3 whole; a 20x faster head would overshoot
FAST = dict(batch_size=16, learning_rate=3e-3, head_lr_scale=1.0, warmup_ratio=0.1, patience=0,
            device="cpu")


def sentiment_rows(n_pos: int, n_neg: int, seed: int = 0) -> list[dict]:
    """Filler words with one sentiment word put in at random: separable by that word."""
    rng = random.Random(seed)
    labels = ["pos"] * n_pos + ["neg"] * n_neg
    rng.shuffle(labels)
    rows = []
    for label in labels:
        words = rng.sample(FILLER, rng.randint(4, 9))
        words.insert(rng.randrange(len(words) + 1), rng.choice(
            POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], fields=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(fields), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def prime_sentiment(model, tokenizer):
    """What pretraining would give a backbone: the sentiment words' embeddings share a
    direction (+ for positive, - for negative). LoRA adapts a frozen backbone, so it needs
    one that knows something; on a random one it learns slowly and erratically."""
    direction = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    direction /= direction.norm()
    with torch.no_grad():
        for sign, words in ((1, POSITIVE), (-1, NEGATIVE)):
            for ids in tokenizer(words, add_special_tokens=False)["input_ids"]:
                model.embeddings.word_embeddings.weight[ids] += sign * direction
    return model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny BERT backbone directory, raw CSVs and prepared datasets, built once."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from goldmine.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("finetune")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    backbone = root / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    primed = root / "tiny-bert-primed"
    prime_sentiment(BertModel.from_pretrained(backbone), tokenizer).save_pretrained(primed)
    tokenizer.save_pretrained(primed)

    balanced = write_csv(root / "sentiment.csv", sentiment_rows(60, 60))
    skewed = write_csv(root / "skewed.csv", sentiment_rows(90, 30, seed=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        common = dict(kind="classify", dedup="none", pii=False)
        with_val = prepare_dataset(inputs=[str(balanced)], out=str(root / "ds"), **common)
        no_val = prepare_dataset(inputs=[str(skewed)], out=str(root / "ds-noval"),
                                 val_fraction=0.0, test_fraction=0.0, balance="over",
                                 augment=1, **common)
    return {"root": root, "backbone": str(backbone), "primed": str(primed),
            "tokenizer": tokenizer, "csv": balanced, "skewed": skewed, "ds": with_val["out"],
            "ds_noval": no_val["out"]}


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_minilm_resolves_to_an_encoder_directory():
    path = resolve_encoder(MINILM)
    assert path == minilm_path() and (path / "config.json").is_file()
    assert json.loads((path / "config.json").read_text())["model_type"] in ENCODER_TYPES


def test_full_finetuning_learns_and_saves_a_plain_transformers_model(world):
    from transformers import AutoModelForSequenceClassification

    texts = [r["text"] for r in rows_of(Path(world["ds"]) / "val.jsonl")][:8]
    batch = world["tokenizer"](texts, padding=True, return_tensors="pt")
    seen = {}

    def grab_logits(step, model):  # the in-loop model's logits after the last step
        if step == 60:
            model.eval()
            with torch.no_grad():
                seen["logits"] = model(**batch).logits
            model.train()

    res = finetune_classify(data=world["ds"], model=world["backbone"], max_steps=60,
                            eval_every=0, callback=grab_logits, **FAST)
    assert res["stop_reason"] == "max_steps" and res["steps"] == 60 and res["best_step"] == 60
    assert res["val"]["accuracy"] >= 0.9 and res["val"]["f1_macro"] >= 0.9
    assert res["val_from_train"] is False and res["labels"] == ["neg", "pos"]
    assert res["trainable_params"] == res["total_params"] and res["examples_per_s"] > 0

    model_dir = Path(res["model_dir"])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.label2id == {"neg": 0, "pos": 1}
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, seen["logits"])
    meta = json.loads((model_dir / "goldmine.json").read_text())
    assert meta["task"] == "classify" and meta["labels"] == ["neg", "pos"]
    assert meta["best_step"] == 60 and meta["val_metrics"] == res["val"]
    assert meta["lora"] is False and meta["max_length"] == 128
    assert meta["backbone"] == str(Path(world["backbone"]).resolve())
    assert meta["dataset"] == str(Path(world["ds"]).resolve())
    assert (model_dir / "tokenizer.json").is_file() and (model_dir / "model.safetensors").is_file()

    run_dir = Path(res["run_dir"])
    rows = rows_of(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 61))
    assert [r["step"] for r in rows if "val_loss" in r] == [60]
    assert (run_dir / "training.png").stat().st_size > 10_000
    assert (run_dir / "checkpoint" / "trainer.json").is_file()
    run = Registry().get(res["run_id"])
    assert run["status"] == "completed" and run["command"] == "finetune classify"
    assert run["metrics"]["val_accuracy"] == res["val"]["accuracy"]
    assert run["metrics"]["steps"] == 60 and run["metrics"]["labels"] == 2
    assert run_id_for_path(world["ds"]) in run["parents"]       # lineage: model <- dataset
    assert Path(run["artifacts"]["model"]) == model_dir


def test_lora_trains_few_parameters_and_saves_a_merged_plain_model(world):
    from transformers import AutoModelForSequenceClassification

    texts = [r["text"] for r in rows_of(Path(world["ds"]) / "val.jsonl")][:8]
    batch = world["tokenizer"](texts, padding=True, return_tensors="pt")
    seen = {}

    def grab_logits(step, model):
        if step == 60:
            model.eval()
            with torch.no_grad():
                seen["logits"] = model(**batch).logits
            model.train()

    res = finetune_classify(data=world["ds"], model=world["primed"], max_steps=60,
                            eval_every=0, callback=grab_logits,
                            **{**FAST, "lora": True, "learning_rate": 1e-2})
    assert res["trainable_params"] * 100 < res["total_params"]
    assert res["val"]["accuracy"] >= 0.9
    model = AutoModelForSequenceClassification.from_pretrained(res["model_dir"]).eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not any("lora" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, seen["logits"], atol=1e-5, rtol=1e-5)
    adapter = Path(res["adapter_dir"])
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()


def test_class_weights_auto_weigh_the_rarer_label_more(world):
    res = finetune_classify(data=str(world["skewed"]), model=world["backbone"], max_steps=2,
                            class_weights="auto", **FAST)
    w = res["class_weights"]
    assert w["neg"] > w["pos"] and (w["neg"] + w["pos"]) / 2 == pytest.approx(1.0)
    assert w["neg"] / w["pos"] == pytest.approx(3.0, rel=0.05)        # 90 pos : 30 neg
    assert Registry().get(res["run_id"])["metrics"]["class_weights"] == w
    weights = inverse_frequency_weights([0, 0, 0, 1], 2)
    assert torch.allclose(weights, torch.tensor([0.5, 1.5]))


def test_without_a_val_split_a_stratified_share_of_train_is_held_out(world, capsys):
    ds = Path(world["ds_noval"])
    assert not rows_of(ds / "train.jsonl")[0].get("fold")
    origins = {r["origin"] for r in rows_of(ds / "train.jsonl")}
    assert origins == {"original", "oversampled", "augmented"}     # balanced and augmented

    res = finetune_classify(data=str(ds), model=world["backbone"], max_steps=2, **FAST)
    assert res["val_from_train"] is True
    assert res["val_rows"] == 12                                   # 10% of 90 pos + 30 neg
    assert "held out 10% of train" in capsys.readouterr().err
    assert Registry().get(res["run_id"])["metrics"]["val_from_train"] is True
    meta = json.loads((Path(res["model_dir"]) / "goldmine.json").read_text())
    assert meta["val_from_train"] is True and meta["val_rows"] == 12
    # copies of a held-out row leave train with it: no validation text is trained on
    from goldmine.train.finetune_classify import Skipped, hold_out, read_table

    rows = read_table(ds / "train.jsonl", "text", "label", Skipped(), grouped=True)
    train, val = hold_out(rows, 0.1, 42)
    assert len(val) == 12 and all(r.origin == "original" for r in val)
    assert {r.group for r in val}.isdisjoint({r.group for r in train})
    assert sum(r.label == "neg" for r in val) == 3                  # stratified: 30 * 0.1


def test_truncated_texts_are_counted(world, capsys):
    res = finetune_classify(data=str(world["csv"]), model=world["backbone"], max_steps=1,
                            max_length=9, **FAST)
    tok = world["tokenizer"]
    lengths = [len(tok(r["text"])["input_ids"]) for r in sentiment_rows(60, 60)]
    expected = sum(n > 9 for n in lengths)
    assert 0 < expected < len(lengths)
    assert res["truncated"]["train"] + res["truncated"]["val"] == expected
    assert res["train_rows"] + res["val_rows"] == 120
    metrics = Registry().get(res["run_id"])["metrics"]
    assert metrics["truncated_train"] == res["truncated"]["train"]
    assert "truncated to 9 tokens" in capsys.readouterr().err


def test_early_stopping_when_the_metric_stops_improving(world):
    # a learning rate so small that no prediction changes: accuracy is flat after step 1
    res = finetune_classify(data=world["ds"], model=world["backbone"], max_steps=50,
                            eval_every=1, metric="accuracy",
                            **{**FAST, "patience": 2, "learning_rate": 1e-9})
    assert res["stop_reason"] == "early_stopping"
    assert res["steps"] == 3 and res["best_step"] == 1
    evals = [r for r in rows_of(Path(res["run_dir"]) / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [1, 2, 3]
    assert json.loads((Path(res["model_dir"]) / "goldmine.json").read_text())["best_step"] == 1


@pytest.mark.parametrize("lora", [False, True])
def test_resume_after_sigint_reaches_the_same_weights_bit_for_bit(world, lora):
    cfg = FinetuneClassifyConfig(data=world["ds"], model=world["backbone"], max_steps=14,
                                 eval_every=5, batch_size=16, learning_rate=3e-3, patience=0,
                                 lora=lora, device="cpu")
    a = finetune_classify(cfg)

    def interrupt(step, model):  # Ctrl-C in the middle of an epoch, between evaluations
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    b = finetune_classify(cfg, callback=interrupt)
    assert b["stop_reason"] == "interrupted" and b["steps"] == 7
    assert Registry().get(b["run_id"])["status"] == "interrupted"
    b2 = finetune_classify(cfg, resume=b["run_id"])
    assert b2["run_id"] == b["run_id"] and b2["resumed_from_step"] == 7
    assert b2["steps"] == 14 and b2["stop_reason"] == "max_steps"
    assert b2["best_step"] == a["best_step"] and b2["val"] == a["val"]
    assert Registry().get(b["run_id"])["status"] == "completed"

    for name in ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors"):
        ta = load_file(Path(a["run_dir"]) / "checkpoint" / name)
        tb = load_file(Path(b["run_dir"]) / "checkpoint" / name)
        assert ta.keys() == tb.keys()
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name
    ma = load_file(Path(a["model_dir"]) / "model.safetensors")
    mb = load_file(Path(b["model_dir"]) / "model.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    losses = [[r["loss"] for r in rows_of(Path(x["run_dir"]) / "metrics.jsonl") if "loss" in r]
              for x in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 14


def test_resume_refuses_changed_training_options(world):
    def interrupt(step, model):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    b = finetune_classify(data=world["ds"], model=world["backbone"], max_steps=4,
                          callback=interrupt, **FAST)
    with pytest.raises(GoldmineError, match="cannot change: learning_rate"):
        finetune_classify(resume=b["run_dir"], learning_rate=1e-4)
    done = finetune_classify(resume=b["run_dir"], max_steps=5)   # longer: allowed
    assert done["steps"] == 5 and done["resumed_from_step"] == 1


def test_epoch_batches_are_a_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(3, 60, size=1003)
    one = epoch_batches(lengths, 8, seed=1, epoch=2, group_by_length=True)
    again = epoch_batches(lengths, 8, seed=1, epoch=2, group_by_length=True)
    other = epoch_batches(lengths, 8, seed=1, epoch=3, group_by_length=True)
    assert [b.tolist() for b in one] == [b.tolist() for b in again]
    assert [b.tolist() for b in one] != [b.tolist() for b in other]
    assert len(one) == 126 and sorted(np.concatenate(one).tolist()) == list(range(1003))
    assert sum(len(b) < 8 for b in one) == 1
    # grouped batches waste less padding than plain shuffled ones
    plain = epoch_batches(lengths, 8, seed=1, epoch=2, group_by_length=False)

    def padding(bs):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs)

    assert padding(one) * 5 < padding(plain)


def test_the_new_head_learns_at_a_multiple_of_the_rate(world):
    from goldmine.train.finetune_classify import build_model, make_optimizer

    cfg = FinetuneClassifyConfig(learning_rate=1e-4, head_lr_scale=20.0)
    model = build_model(Path(world["backbone"]), ["neg", "pos"], cfg)
    opt = make_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    scaled = {names[id(p)] for g in opt.param_groups if g["lr_scale"] == 20.0 for p in g["params"]}
    assert scaled == {n for n, _ in model.named_parameters()
                      if n.startswith(("classifier.", "bert.pooler."))}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)
    for g in opt.param_groups:  # no weight decay on vectors, whatever their rate
        assert g["weight_decay"] == (cfg.weight_decay if g["params"][0].ndim >= 2 else 0.0)
    # LoRA: one rate (already high)
    lora = FinetuneClassifyConfig(lora=True, head_lr_scale=20.0).with_arch_defaults()
    assert {g["lr_scale"] for g in make_optimizer(build_model(
        Path(world["backbone"]), ["neg", "pos"], lora), lora).param_groups} == {1.0}


def test_learning_rate_warmup_then_decay():
    cfg = FinetuneClassifyConfig(learning_rate=1.0, warmup_ratio=0.1, schedule="linear")
    assert [learning_rate(s, cfg, 100) for s in (0, 9)] == [0.1, 1.0]
    assert learning_rate(55, cfg, 100) == pytest.approx(0.5)
    assert learning_rate(100, cfg, 100) == 0.0
    cos = FinetuneClassifyConfig(learning_rate=1.0, warmup_ratio=0.1, schedule="cosine")
    assert learning_rate(55, cos, 100) == pytest.approx(0.5)
    assert learning_rate(10, cos, 100) == 1.0
    const = FinetuneClassifyConfig(learning_rate=1.0, warmup_ratio=0.0, schedule="constant")
    assert learning_rate(0, const, 100) == learning_rate(99, const, 100) == 1.0


def test_rows_without_text_or_label_are_skipped_and_reported(world, tmp_path, capsys):
    rows = sentiment_rows(20, 20) + [{"text": "  ", "label": "pos"}, {"text": "ok", "label": ""}]
    res = finetune_classify(data=str(write_csv(tmp_path / "gaps.csv", rows)),
                            model=world["backbone"], max_steps=1, **FAST)
    assert res["skipped"] == {"no text": 1, "no label": 1}
    assert res["train_rows"] + res["val_rows"] == 40
    assert "skipped 2 rows" in capsys.readouterr().err


# --------------------------------------------------------------------------------- errors
def test_backbone_errors(world, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    (tmp_path / "empty").mkdir()
    with pytest.raises(GoldmineError, match="not a Hugging Face model directory: no config.json"):
        finetune_classify(data=str(world["csv"]), model=str(tmp_path / "empty"))
    with pytest.raises(GoldmineError, match="no such directory"):
        resolve_encoder(str(tmp_path / "missing"))
    llama = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1)).save_pretrained(llama)
    with pytest.raises(GoldmineError, match="llama: no tokenizer.json"):  # imported as a GPT
        finetune_classify(data=str(world["csv"]), model=str(llama))
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(GoldmineError, match="no weights file"):
        resolve_encoder(str(weightless))


def test_data_errors(world, tmp_path):
    bb = world["backbone"]
    with pytest.raises(GoldmineError, match="give --data"):
        finetune_classify(model=bb)
    same = write_csv(tmp_path / "same.csv", [{"text": f"text {i}", "label": "pos"}
                                             for i in range(20)])
    with pytest.raises(GoldmineError, match="labels that are all the same"):
        finetune_classify(data=str(same), model=bb)
    nolabel = write_csv(tmp_path / "nolabel.csv", sentiment_rows(5, 5), fields=("text",))
    with pytest.raises(GoldmineError, match=r"nolabel.csv: no column 'label' \(columns: text\)"):
        finetune_classify(data=str(nolabel), model=bb)
    with pytest.raises(GoldmineError, match="no column 'review'"):
        finetune_classify(data=str(world["csv"]), model=bb, text_column="review")

    ds = tmp_path / "handmade"                        # a dataset whose val has an unseen label
    ds.mkdir()
    (ds / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentiment_rows(8, 8)))
    (ds / "val.jsonl").write_text(json.dumps({"text": "meh", "label": "neutral"}) + "\n")
    manifest = {"format": "goldmine-dataset/1", "kind": "classify", "labels": ["neg", "pos"],
                "files": {"train": "train.jsonl", "val": "val.jsonl"}}
    (ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldmineError, match="validation labels not seen in train: 'neutral'"):
        finetune_classify(data=str(ds), model=bb)
    (ds / "manifest.json").write_text(json.dumps({**manifest, "kind": "text"}))
    with pytest.raises(GoldmineError, match="a 'text' dataset"):
        finetune_classify(data=str(ds), model=bb)
    assert Registry().list() == []                    # nothing recorded for bad input
