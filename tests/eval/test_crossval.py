"""`goldmine evaluate --folds K` (goldmine/eval/crossval.py) and `finetune classify --fold`:
a tiny random BERT (1 layer, 32 wide) with the MiniLM tokenizer, fine-tuned a few steps per
fold on a skewed sentiment set prepared with 3 folds, oversampling and augmentation."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from goldmine.config import FinetuneClassifyConfig
from goldmine.errors import GoldmineError
from goldmine.eval.crossval import METRICS, cross_validate
from goldmine.registry import Registry, run_id_for_path
from goldmine.train.finetune_classify import finetune_classify, load_examples

POSITIVE = "great love excellent wonderful superb".split()
NEGATIVE = "awful hate broken terrible useless".split()
FILLER = "the a this product box it was and arrived on time for my order very".split()
RECIPE = "max_steps: 3\nbatch_size: 16\nmax_length: 32\nlearning_rate: 0.003\n"


def write_sentiment(path: Path, n_pos: int, n_neg: int, fold_column: bool = False) -> Path:
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"] + (["fold"] if fold_column else []))
        for i, label in enumerate(["pos"] * n_pos + ["neg"] * n_neg):
            words = rng.sample(FILLER, rng.randint(3, 7))
            words.insert(rng.randrange(len(words) + 1),
                         rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            w.writerow([" ".join(words), label] + ([i % 2] if fold_column else []))
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny BERT directory, a recipe file, and datasets with and without folds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from goldmine.data.prepare import prepare_dataset
    from goldmine.hf import minilm_path

    root = tmp_path_factory.mktemp("crossval")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    backbone = root / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    recipe = root / "finetune.yaml"
    recipe.write_text(RECIPE)
    table = write_sentiment(root / "sentiment.csv", 30, 15)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        common = dict(inputs=[str(table)], kind="classify", dedup="none", pii=False)
        folded = prepare_dataset(out=str(root / "ds3"), folds=3, balance="over", augment=1,
                                 **common)
        plain = prepare_dataset(out=str(root / "plain"), **common)
    return {"root": root, "backbone": str(backbone), "recipe": str(recipe), "ds": folded["out"],
            "plain": plain["out"], "table": table}


def test_a_fold_validates_on_its_originals_and_trains_on_the_other_folds(world):
    train_rows = rows_of(Path(world["ds"]) / "train.jsonl")
    assert {r["origin"] for r in train_rows} == {"original", "oversampled", "augmented"}
    for k in range(3):
        ex = load_examples(FinetuneClassifyConfig(data=world["ds"], fold=k))
        expected_val = [r for r in train_rows if r["fold"] == k and r["origin"] == "original"]
        assert [(e.text, e.label) for e in ex.val] == [(r["text"], r["label"])
                                                       for r in expected_val]
        assert [(e.text, e.origin) for e in ex.train] == [(r["text"], r["origin"])
                                                          for r in train_rows if r["fold"] != k]
        # a validation row's copies are neither trained on nor validated
        assert {e.group for e in ex.train}.isdisjoint({e.group for e in ex.val})
        assert ex.fold == k and ex.val_from_train is False


def test_raw_tables_with_a_fold_column_and_fold_errors(world, tmp_path):
    table = write_sentiment(tmp_path / "folded.csv", 10, 10, fold_column=True)
    ex = load_examples(FinetuneClassifyConfig(data=str(table), fold=1))
    assert len(ex.val) == 10 and len(ex.train) == 10 and ex.val[0].where.endswith(":3")
    with pytest.raises(GoldmineError, match=r"fold: 2 is not a fold of .*folded.csv \(folds: 0, 1\)"):
        load_examples(FinetuneClassifyConfig(data=str(table), fold=2))
    with pytest.raises(GoldmineError, match=r"the train rows have no `fold` field; prepare the "
                                            r"dataset with `goldmine data prepare --kind "
                                            r"classify --folds K`"):
        finetune_classify(data=world["plain"], model=world["backbone"], fold=0)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label,fold\ngreat box,pos,0\nawful box,neg,zero\n")
    with pytest.raises(GoldmineError, match=r"bad.csv:3: fold 'zero' is not a fold number"):
        load_examples(FinetuneClassifyConfig(data=str(bad), fold=0))
    assert Registry().list() == []                           # nothing recorded for bad input


def test_three_folds_are_three_runs_with_mean_and_std(world, capsys):
    recipe = Path(world["recipe"])
    recipe.write_text(RECIPE + "eval_every: 1\n")           # replaced: one evaluation, at the end
    res = cross_validate(folds=3, model=world["backbone"], data=world["ds"],
                         finetune=str(recipe), device="cpu")
    assert "eval_every 1 not used" in capsys.readouterr().err
    assert [f["fold"] for f in res["folds"]] == [0, 1, 2]

    reg = Registry()
    train_rows = rows_of(Path(world["ds"]) / "train.jsonl")
    for f in res["folds"]:
        run = reg.get(f["run_id"])
        assert run["command"] == "finetune classify" and run["status"] == "completed"
        assert run["config"]["fold"] == f["fold"] and run["config"]["max_steps"] == 3
        assert run["config"]["eval_every"] == 0 and run["config"]["patience"] == 0
        assert f["val_rows"] == sum(r["fold"] == f["fold"] and r["origin"] == "original"
                                    for r in train_rows) == run["metrics"]["val_rows"]
        # scored on the rows the loop validated on: the same accuracy and loss
        assert f["metrics"]["accuracy"] == pytest.approx(run["metrics"]["val_accuracy"])
        assert f["metrics"]["log_loss"] == pytest.approx(run["metrics"]["val_loss"], rel=1e-4)
        assert set(f["metrics"]) == set(METRICS)
    for name in METRICS:
        values = [f["metrics"][name] for f in res["folds"]]
        assert res["mean"][name] == pytest.approx(np.mean(values))
        assert res["std"][name] == pytest.approx(np.std(values))

    run = reg.get(res["run_id"])
    assert run["command"] == "evaluate" and run["status"] == "completed"
    assert {f["run_id"] for f in res["folds"]} <= set(run["parents"])
    assert run_id_for_path(world["ds"]) in run["parents"]
    assert run["metrics"]["accuracy"] == res["mean"]["accuracy"]
    assert run["metrics"]["f1_macro_std"] == res["std"]["f1_macro"] and run["metrics"]["folds"] == 3

    run_dir = Path(res["run_dir"])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["mean"] == res["mean"] and saved["std"] == res["std"]
    assert [f["run_id"] for f in saved["folds"]] == [f["run_id"] for f in res["folds"]]
    assert saved["finetune"]["config"]["learning_rate"] == 0.003
    report = (run_dir / "report.md").read_text()
    assert all(f"`{f['run_id']}`" in report for f in res["folds"])
    assert f"{res['mean']['f1_macro']:.4f} ± {res['std']['f1_macro']:.4f}" in report


def test_cli_prints_a_fold_table(world, capsys):
    from goldmine.cli import main

    Path(world["recipe"]).write_text(RECIPE.replace("max_steps: 3", "max_steps: 1"))
    code = main(["evaluate", "--folds", "3", "--model", world["backbone"], "--data", world["ds"],
                 "--finetune", world["recipe"], "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3-fold cross-validation" in out and "mean ± std" in out
    assert len(Registry().list(command="finetune classify")) == 3


def test_bad_cross_validation_input(world, tmp_path):
    common = dict(model=world["backbone"], device="cpu")
    with pytest.raises(GoldmineError, match="folds: must be >= 2"):
        cross_validate(folds=1, data=world["ds"], **common)
    with pytest.raises(GoldmineError, match=r"in folds 0, 1, 2, not the 4 folds of --folds 4"):
        cross_validate(folds=4, data=world["ds"], **common)
    with pytest.raises(GoldmineError, match="no `fold` field"):
        cross_validate(folds=3, data=world["plain"], **common)
    with pytest.raises(GoldmineError, match="--baseline: not used with --folds"):
        cross_validate(folds=3, data=world["ds"], baseline="x", **common)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("out: somewhere\nepochs: 1\n")
    with pytest.raises(GoldmineError, match="recipe.yaml sets out; cross-validation sets these"):
        cross_validate(folds=3, data=world["ds"], finetune=str(recipe), **common)
    recipe.write_text("epoch: 1\n")
    with pytest.raises(GoldmineError, match="unknown option 'epoch' \\(did you mean 'epochs'"):
        cross_validate(folds=3, data=world["ds"], finetune=str(recipe), **common)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GoldmineError, match="not a Hugging Face model directory"):
        cross_validate(folds=3, data=world["ds"], model=str(tmp_path / "empty"))
    with pytest.raises(GoldmineError, match="finetune: only used with --folds"):
        from goldmine.eval.classify import evaluate_classifier

        evaluate_classifier(model=world["backbone"], data=world["ds"], finetune=str(recipe))
    assert Registry().list() == []                           # nothing recorded for bad input


def test_a_logreg_recipe_cross_validates_and_the_report_names_it(world, tmp_path):
    recipe = tmp_path / "logreg.yaml"
    recipe.write_text("arch: logreg\nepochs: 2\n")
    res = cross_validate(folds=3, data=world["ds"], finetune=str(recipe), device="cpu")
    runs = [Registry().get(f["run_id"]) for f in res["folds"]]
    assert {r["config"]["arch"] for r in runs} == {"logreg"}
    assert all(0.0 <= f["metrics"]["accuracy"] <= 1.0 for f in res["folds"])
    report = (Path(res["run_dir"]) / "report.md").read_text()
    assert "- model: `--arch logreg`" in report and "minilm" not in report
