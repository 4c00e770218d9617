"""`goldmine compare`: the statistics as pure functions on fixed arrays, then the command on two
tiny BERT classifiers (seconds on a CPU). No timing is asserted."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from goldmine.cost.serving import cost_per_million
from goldmine.errors import GoldmineError
from goldmine.eval.compare import (
    bootstrap_scores,
    compare,
    data_difference,
    macro_f1,
    mcnemar,
    percentile_ci,
    resamples,
    verdict,
)

FAST = dict(bootstrap=200, reps=1, batch_size=8)


# ------------------------------------------------------------------------------- statistics
def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for k in (2, 3, 7):
        y = rng.integers(0, k, 80)
        p = np.where(rng.random(80) < 0.6, y, rng.integers(0, k, 80))
        assert macro_f1(y, p, k) == pytest.approx(f1_score(y, p, average="macro"))
    # a label that occurs in neither truth nor predictions does not count (sklearn's default)
    y, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert macro_f1(y, p, 5) == pytest.approx(f1_score(y, p, average="macro"))


def test_mcnemar_against_a_hand_computation_and_scipy():
    from scipy.stats import binomtest

    # 10 rows only A gets right, 2 only B: P(X <= 2 | Binomial(12, 1/2)) doubled
    t = mcnemar(10, 2)
    assert t["p"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # 0.0386
    assert t["chi2"] == pytest.approx((10 - 2 - 1) ** 2 / 12)
    assert t["p_chi2"] == pytest.approx(math.erfc(math.sqrt(t["chi2"] / 2)))  # chi2, 1 dof
    for a, b in ((0, 5), (3, 3), (7, 1), (40, 25), (120, 80)):
        assert mcnemar(a, b)["p"] == pytest.approx(binomtest(min(a, b), a + b, 0.5).pvalue)
        assert mcnemar(a, b)["p"] == mcnemar(b, a)["p"]
    assert mcnemar(0, 0)["p"] == 1.0 and mcnemar(4, 4)["p"] == 1.0


def test_bootstrap_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    """Rows right with probability 0.8: the percentile interval of the mean should hold 0.8 in
    about 95% of samples and be about as wide as the normal interval 1.96 sqrt(p(1-p)/n)."""
    rng = np.random.default_rng(1)
    n, trials, covered, widths = 200, 200, 0, []
    for t in range(trials):
        right = (rng.random(n) < 0.8).astype(float)
        idx = np.concatenate(list(resamples(n, 1000, seed=t)))
        lo, hi = percentile_ci(right[idx].mean(axis=1))
        assert lo <= right.mean() <= hi
        covered += lo <= 0.8 <= hi
        widths.append(hi - lo)
    assert 0.90 <= covered / trials <= 0.99
    assert np.mean(widths) == pytest.approx(2 * 1.96 * math.sqrt(0.8 * 0.2 / n), rel=0.1)


def test_bootstrap_scores_are_seeded_and_paired():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 50)
    p = np.where(rng.random(50) < 0.7, y, (y + 1) % 3)
    a = bootstrap_scores(y, np.stack([p, p, y]), 3, 300, seed=5)
    b = bootstrap_scores(y, np.stack([p, p, y]), 3, 300, seed=5)
    assert a["accuracy"].shape == a["f1_macro"].shape == (300, 3)
    np.testing.assert_array_equal(a["accuracy"], b["accuracy"])
    np.testing.assert_array_equal(a["accuracy"][:, 0], a["accuracy"][:, 1])  # same resamples
    assert (a["accuracy"][:, 2] == 1).all() and (a["f1_macro"][:, 2] == 1).all()


def test_cost_per_million_predictions():
    # $0.089 an hour, 100 examples/s, busy half the time: 0.089 / (3600 * 100 * 0.5) * 1e6
    assert cost_per_million(100, 0.089, 0.5) == pytest.approx(0.4944, abs=1e-4)
    assert cost_per_million(200, 0.089, 1.0) == pytest.approx(cost_per_million(100, 0.089) / 4)
    with pytest.raises(GoldmineError, match="examples/s"):
        cost_per_million(0, 0.089)


def test_verdict_sentences():
    s = verdict("logreg", "minilm", 0.041, (0.029, 0.053), 0.0004, 0.10, 0.52)
    assert s == ("minilm is 4.1 points more accurate than logreg (95% CI 2.9 to 5.3, McNemar "
                 "p < 0.001) and costs $0.42 more per million predictions: $0.10 per point per "
                 "million.")
    s = verdict("logreg", "minilm", 0.01, (-0.01, 0.03), 0.41, 0.10, 0.52)
    assert "not significant (McNemar p = 0.41)" in s and "logreg, is the better buy" in s
    # told from the expensive model's side, whichever was the baseline
    s = verdict("minilm", "logreg", -0.041, (-0.053, -0.029), 0.0004, 0.52, 0.10)
    assert s.startswith("minilm is 4.1 points more accurate than logreg (95% CI 2.9 to 5.3")
    s = verdict("a", "b", -0.05, (-0.08, -0.02), 0.001, 1.0, 3.0)
    assert "b is 5.0 points less accurate than a (95% CI 2.0 to 8.0" in s
    assert s.endswith("a is better and cheaper.")
    s = verdict("a", "b", 0.0, (0.0, 0.0), 1.0, 1.0, 1.01)
    assert "equally accurate" in s and "not significant" in s and "about the same" in s


def test_data_difference_names_what_differs():
    a = {"path": "/d/test.jsonl", "split": "test", "sha256": "1" * 64, "text_column": "text",
         "label_column": "label"}
    assert data_difference(a, dict(a)) is None
    diff = data_difference(a, {**a, "path": "/d/val.jsonl", "split": "val", "sha256": "2" * 64})
    assert "/d/test.jsonl vs /d/val.jsonl" in diff and "split test vs val" in diff
    assert "changed since" in data_difference(a, {**a, "sha256": "3" * 64})


# ------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def world(tiny_bert, workspace, tmp_path_factory):
    """Two tiny classifiers fine-tuned differently, evaluate runs of them, a classifier with
    other labels and a tiny GPT, recorded in a registry of their own."""
    from goldmine.eval import evaluate
    from goldmine.train.finetune_classify import finetune_classify
    from goldmine.train.pretrain import pretrain

    root = tmp_path_factory.mktemp("compare")
    reviews = tiny_bert["reviews"]
    common = dict(model=tiny_bert["bert"], batch_size=8, device="cpu", patience=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        a = finetune_classify(data=reviews, max_steps=2, learning_rate=1e-3, seed=1,
                              out=str(root / "small"), **common)
        b = finetune_classify(data=reviews, max_steps=12, learning_rate=3e-3,
                              head_lr_scale=1.0, out=str(root / "big"), **common)
        ev = {name: evaluate(model=str(root / run), data=reviews, split=split, device="cpu",
                             out=str(root / name))
              for name, run, split in (("eval-small", "small", "test"),
                                       ("eval-big", "big", "test"),
                                       ("eval-small-val", "small", "val"))}
        with open(root / "other.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([("good thing", "good"), ("bad thing", "bad")] * 8)
        other = finetune_classify(data=str(root / "other.csv"), max_steps=1,
                                  out=str(root / "other"), **common)
        gpt = pretrain(data=workspace["shards"], model="test", batch_size=2, max_steps=2,
                       warmup_steps=1, eval_every=0, out=str(root / "gpt"))
    return {"root": root, "reviews": reviews, "small": a, "big": b, "ev": ev, "other": other,
            "gpt": gpt}


def test_compare_two_classifiers(world):
    from goldmine.registry import Registry

    root = world["root"]
    res = compare(runs=[str(root / "small"), str(root / "big")], data=world["reviews"],
                  out=str(root / "cmp"), **FAST)
    assert [m["name"] for m in res["models"]] == ["small", "big"] and res["baseline"] == "small"
    assert res["data"]["split"] == "test" and res["data"]["n"] > 0
    for m in res["models"]:
        assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]
        assert m["f1_macro_ci"][0] <= m["f1_macro"] <= m["f1_macro_ci"][1]
        assert m["parameters"] > 0 and m["size_mb"] > 0
        assert m["latency_ms"] > 0 and m["examples_per_s"] > 0 and m["usd_per_1m"] > 0
    (pair,) = res["pairs"]
    n = res["data"]["n"]
    assert (pair["both_right"] + pair["both_wrong"] + pair["only_baseline_right"]
            + pair["only_model_right"]) == n
    assert pair["accuracy_diff"] == pytest.approx(
        res["models"][1]["accuracy"] - res["models"][0]["accuracy"])
    assert pair["accuracy_diff_ci"][0] <= pair["accuracy_diff"] <= pair["accuracy_diff_ci"][1]
    assert pair["mcnemar_p"] == pytest.approx(
        mcnemar(pair["only_baseline_right"], pair["only_model_right"])["p"])
    assert "small" in pair["sentence"] and "big" in pair["sentence"]
    assert res["sentences"] == [pair["sentence"]]

    run_dir = Path(res["run_dir"])
    assert run_dir == (root / "cmp").resolve()
    assert json.loads((run_dir / "compare.json").read_text())["pairs"] == res["pairs"]
    report = (run_dir / "report.md").read_text()
    assert pair["sentence"] in report and "| small |" in report
    assert (run_dir / "compare.png").stat().st_size > 0
    row = Registry().get(res["run_id"])
    assert row["command"] == "compare" and row["status"] == "completed"
    assert {world["small"]["run_id"], world["big"]["run_id"]} <= set(row["parents"])


def test_identical_models_are_not_significantly_different(world):
    small = world["root"] / "small"
    res = compare(runs=[str(small), str(small / "model")], data=world["reviews"], **FAST)
    assert [m["name"] for m in res["models"]] == ["small", "small#2"]
    (pair,) = res["pairs"]
    assert pair["accuracy_diff"] == 0 and pair["accuracy_diff_ci"] == [0.0, 0.0]
    assert pair["mcnemar_p"] == 1.0 and not pair["significant"]
    assert "not significant" in pair["sentence"]


def test_cli_prints_one_json_object(world, capsys):
    from goldmine.cli import main

    root = world["root"]
    code = main(["compare", str(root / "small"), str(root / "big"), "--data", world["reviews"],
                 "--baseline", "big", "--bootstrap", "100", "--reps", "1", "--price-per-hour",
                 "0.5", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, dict) and out["baseline"] == "big"
    assert out["pricing"]["price_per_hour"] == 0.5 and out["pairs"][0]["model"] == "small"


def test_evaluate_runs_are_compared_on_the_data_they_evaluated(world):
    from goldmine.registry import Registry

    root, ev = world["root"], world["ev"]
    res = compare(runs=[str(root / "eval-small"), str(root / "eval-big")], **FAST)
    assert res["data"]["sha256"] == ev["eval-small"]["data"]["sha256"]
    assert res["data"]["split"] == "test"
    assert [m["evaluate_run"] for m in res["models"]] == [ev["eval-small"]["run_id"],
                                                          ev["eval-big"]["run_id"]]
    parents = Registry().get(res["run_id"])["parents"]
    assert {ev["eval-small"]["run_id"], ev["eval-big"]["run_id"]} <= set(parents)


def test_refusals(world):
    root, reviews = world["root"], world["reviews"]
    small, big = str(root / "small"), str(root / "big")
    with pytest.raises(GoldmineError, match="two or more runs"):
        compare(runs=[small], data=reviews)
    with pytest.raises(GoldmineError, match=r"evaluated different data: .*split test vs val"):
        compare(runs=[str(root / "eval-small"), str(root / "eval-small-val")])
    with pytest.raises(GoldmineError, match="evaluated other data than --data"):
        compare(runs=[str(root / "eval-small"), big], data=reviews, split="val")
    with pytest.raises(GoldmineError, match="give --data"):
        compare(runs=[small, big])
    with pytest.raises(GoldmineError, match=r"gpt is a language model .*, not a classifier"):
        compare(runs=[str(root / "gpt"), small], data=reviews)
    with pytest.raises(GoldmineError, match=r"small and other know different labels: only "
                                            r"small has negative, neutral, positive; only other "
                                            r"has bad, good"):
        compare(runs=[small, str(root / "other")], data=reviews)
    with pytest.raises(GoldmineError, match="'nope' is not one of the runs"):
        compare(runs=[small, big], data=reviews, baseline="nope")
    with pytest.raises(GoldmineError, match="runs: missing: .*not found"):
        compare(runs=[small, str(root / "missing")], data=reviews)
    bad = root / "sarcastic.csv"
    bad.write_text("text,label\nlovely scarf,positive\noh great another delay,sarcastic\n")
    with pytest.raises(GoldmineError, match=r"labels the models do not know: 'sarcastic'"):
        compare(runs=[small, big], data=str(bad))
