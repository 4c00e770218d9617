"""The classic models on real data: is the big model worth it? Each baseline next to a reference
measured in the same run.

    python bench/baselines.py                      # datasets from ../shared/datasets
    python bench/baselines.py --skip lstm          # leave a part out (logreg, cnn, lstm)

1. `sst2_logreg_accuracy`: `goldmine finetune classify --arch logreg` (default options) on
   SST-2's train.tsv (exact duplicates removed), scored by `goldmine evaluate` on dev.tsv.
2. `banking77_logreg_accuracy`: the same on Banking77's train.csv with a stratified, seeded 20%
   held out and scored (published TF-IDF + logistic regression: about 0.889 on the official
   test set, which is not in ../shared).
   Reference for both: scikit-learn's `LogisticRegression` (lbfgs, run to convergence) on the
   very same hashed n-gram features and L2 penalty.
3. `digits_cnn_accuracy`: `--arch cnn` (default options) on scikit-learn's 8x8 digits, seeded
   80/20 split (10% of the 80% held out for picking the best epoch), scored on the 20%; goal
   >= 0.98. Reference: scikit-learn's `SVC` (RBF, gamma 0.001) trained on the whole 80%, the
   classic digits example.
4. `shakespeare_lstm_val_loss` next to `shakespeare_gpt_val_loss`: character-level
   tiny-shakespeare, first 90% train, last 10% val, nanoGPT's CPU budget (2000 steps of 12 x 64
   tokens) for the `shakespeare-char` GPT (4L/4H/128d) and the `shakespeare-char-lstm` LSTM of
   the same parameter count, on the same shards. Val loss on 200 random windows.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PUBLISHED = {"banking77_tfidf_logreg_test_accuracy": 0.889}
GOALS = {"digits_cnn_accuracy": 0.98}


def logreg(kind: str, src: Path, work: Path) -> dict:
    """Train logreg on a prepared copy of `src`; goldmine's accuracy and scikit-learn's on the
    same features."""
    import numpy as np
    from classify import prepare  # bench/classify.py: the same preparation as the MiniLM bench
    from sklearn.linear_model import LogisticRegression

    from goldmine.baselines.logreg import LogRegClassifier
    from goldmine.config import FinetuneClassifyConfig
    from goldmine.eval.classify import evaluate_classifier, read_labelled
    from goldmine.train.finetune_classify import finetune_classify

    work.mkdir(parents=True, exist_ok=True)
    ds, dev = prepare(kind, src, work)
    t0 = time.perf_counter()
    l2 = FinetuneClassifyConfig().l2  # logreg's default penalty, given to both
    res = finetune_classify(arch="logreg", data=str(ds), l2=l2, out=str(work / "logreg"))
    train_s = time.perf_counter() - t0
    ev = evaluate_classifier(model=res["run_dir"], data=str(dev or ds),
                             split=None if dev else "val", out=str(work / "eval"))
    # scikit-learn on the features the trained model uses (its IDF fit on train)
    clf = LogRegClassifier.load(res["model_dir"])
    train = read_labelled(ds / "train.jsonl", "text", "label")
    test = read_labelled(dev or ds / "val.jsonl", "text", "label")
    index = {name: i for i, name in enumerate(clf.labels)}
    y, y_test = (np.array([index[v] for v in d["labels"]]) for d in (train, test))
    X, X_test = (clf.featurizer.transform(d["texts"]) for d in (train, test))
    t0 = time.perf_counter()
    sk = LogisticRegression(C=1.0 / (len(y) * l2), max_iter=2000).fit(X, y)
    sk_s = time.perf_counter() - t0
    return {"accuracy": round(ev["metrics"]["accuracy"], 4),
            "f1_macro": round(ev["metrics"]["f1_macro"], 4),
            "sklearn_accuracy": round(float((sk.predict(X_test) == y_test).mean()), 4),
            "eval_on": "dev.tsv" if dev else "val split (20% of train.csv)",
            "train_rows": res["train_rows"], "eval_rows": ev["data"]["n"],
            "train_s": round(train_s, 1), "sklearn_fit_s": round(sk_s, 1),
            "epochs": round(res["epochs_done"], 2), "run_id": res["run_id"]}


def digits() -> dict:
    """--arch cnn on the embedded digits (scored on the test 20%); scikit-learn's SVC on the
    same split."""
    from sklearn.svm import SVC

    from goldmine.baselines.cnn import digits_cnn_accuracy
    from goldmine.data.images import load_digits_split

    res = digits_cnn_accuracy()
    (X, y), (X_test, y_test) = load_digits_split()
    svc = SVC(gamma=0.001).fit(X, y)
    return {"accuracy": round(res["accuracy"], 4), "f1_macro": round(res["f1_macro"], 4),
            "sklearn_svc_accuracy": round(float((svc.predict(X_test) == y_test).mean()), 4),
            "test_images": res["test_images"], "steps": res["steps"],
            "train_s": round(res["train_seconds"], 1), "run_id": res["run_id"]}


def shakespeare(src: Path, steps: int, eval_batches: int) -> dict:
    """The GPT and the LSTM of the same size on the same character shards."""
    from goldmine.config import PretrainConfig, TokenizeConfig, TokenizerConfig
    from goldmine.data.shards import tokenize_corpus
    from goldmine.tokenizer import train_tokenizer
    from goldmine.train.pretrain import pretrain

    text = str(src / "input.txt")
    tok = train_tokenizer(TokenizerConfig(inputs=[text], char=True, byte_fallback=False))
    shards = tokenize_corpus(TokenizeConfig(inputs=[text], tokenizer=tok["tokenizer"],
                                            val_fraction=0.1, split="tail"))
    out = {}
    for name, preset in (("gpt", "shakespeare-char"), ("lstm", "shakespeare-char-lstm")):
        cfg = PretrainConfig.from_preset(preset).update(
            {"data": shards["out"], "max_steps": steps, "eval_every": 0,
             "eval_batches": eval_batches})
        res = pretrain(cfg)
        out[name] = {"val_loss": round(res["val_loss"], 4), "params": res["params"],
                     "tokens": res["step"] * cfg.batch_size * cfg.block_size,
                     "train_s": round(res["elapsed_s"], 1),
                     "tokens_per_s": round(res["tokens_per_s"]), "run_id": res["run_id"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=str(SHARED), help=f"default: {SHARED}")
    ap.add_argument("--skip", nargs="*", default=[], choices=["logreg", "cnn", "lstm"],
                    help="parts to leave out")
    ap.add_argument("--steps", type=int, default=2000, help="pretraining steps (default 2000)")
    ap.add_argument("--eval-batches", type=int, default=200)
    ap.add_argument("--dir", help="working directory (default: a temporary one)")
    args = ap.parse_args()
    shared = Path(args.datasets)
    work = Path(args.dir or tempfile.mkdtemp(prefix="goldmine-bench-baselines-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GOLDMINE_HOME"] = str(work / "home")
    t0 = time.perf_counter()
    result: dict = {}
    if "logreg" not in args.skip:
        for kind, folder in (("sst2", "sst2"), ("banking77", "banking77")):
            if not (shared / folder).is_dir():
                sys.exit(f"error: {shared / folder}: not found (give --datasets, or --skip logreg)")
            part = logreg(kind, shared / folder, work / kind)
            result[f"{kind}_logreg_accuracy"] = part["accuracy"]
            result[f"{kind}_sklearn_logreg_accuracy"] = part["sklearn_accuracy"]
            result[f"{kind}_logreg"] = part
        result["published"] = PUBLISHED
    if "cnn" not in args.skip:
        part = digits()
        result["digits_cnn_accuracy"] = part["accuracy"]
        result["digits_sklearn_svc_accuracy"] = part["sklearn_svc_accuracy"]
        result["digits_cnn"] = part
        result["goals"] = {"digits_cnn_accuracy": part["accuracy"] >= GOALS["digits_cnn_accuracy"]}
        result["goal_thresholds"] = GOALS
    if "lstm" not in args.skip:
        if not (shared / "tiny-shakespeare" / "input.txt").is_file():
            sys.exit(f"error: {shared / 'tiny-shakespeare'}: not found (give --datasets, or "
                     f"--skip lstm)")
        part = shakespeare(shared / "tiny-shakespeare", args.steps, args.eval_batches)
        result["shakespeare_lstm_val_loss"] = part["lstm"]["val_loss"]
        result["shakespeare_gpt_val_loss"] = part["gpt"]["val_loss"]
        result["shakespeare"] = part
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
