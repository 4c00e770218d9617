"""Fine-tune the embedded MiniLM on a real classification set; compare the training loop with
`transformers.Trainer` in the same run.

    python bench/classify.py --data ../shared/datasets/sst2        # accuracy on dev.tsv
    python bench/classify.py --data ../shared/datasets/banking77   # 20% of train.csv held out
    python bench/classify.py --data ../shared/datasets/sst2 --minutes 3   # a quick look

1. The data goes through `goldmine data prepare` (exact duplicates removed; SST-2's 0/1 labels
   named negative/positive).
2. Throughput: `--compare-steps` optimizer steps of full fine-tuning by goldmine's loop and by
   `transformers.Trainer` (its defaults: no length grouping, dynamic padding), same model,
   batch size, max length, learning rate and training texts. `ratio` = goldmine / Trainer.
3. Accuracy: goldmine fine-tunes for as many steps as fit in `--minutes` at the measured rate
   (at most `--epochs`), then `goldmine evaluate` scores the result: SST-2 on its dev.tsv (never seen in training);
   Banking77 on the 20% of train.csv held out as validation (also used to pick the best
   checkpoint).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GOALS = {"sst2": 0.90, "banking77": 0.92}


def prepare(kind: str, src: Path, work: Path) -> tuple[Path, Path | None]:
    """(prepared dataset, evaluation file or None for the dataset's val split)."""
    from goldmine.data.prepare import prepare_dataset

    if kind == "sst2":
        (work / "labels.yaml").write_text("0: negative\n1: positive\n")
        ds = prepare_dataset(kind="classify", inputs=[str(src / "train.tsv")],
                             text_column="sentence", label_map=str(work / "labels.yaml"),
                             dedup="exact", val_fraction=0.02, test_fraction=0.0,
                             out=str(work / "ds"))
        dev = work / "dev.jsonl"  # named labels, as the model has them
        with open(src / "dev.tsv", encoding="utf-8") as f, open(dev, "w", encoding="utf-8") as o:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                label = {"0": "negative", "1": "positive"}[row["label"].strip()]
                o.write(json.dumps({"text": row["sentence"], "label": label}) + "\n")
        return Path(ds["out"]), dev
    ds = prepare_dataset(kind="classify", inputs=[str(src / "train.csv")],
                         label_column="category", dedup="exact", val_fraction=0.2,
                         test_fraction=0.0, out=str(work / "ds"))
    return Path(ds["out"]), None


def trainer_examples_per_s(ds: Path, steps: int, batch: int, max_length: int, lr: float) -> float:
    """transformers.Trainer on the same model and training texts, defaults otherwise."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from goldmine.hf import minilm_path, quiet_transformers

    rows = [json.loads(line) for line in (ds / "train.jsonl").read_text().splitlines()]
    labels = sorted({r["label"] for r in rows})
    label_id = {k: i for i, k in enumerate(labels)}
    rows = rows[:steps * batch]
    tok = AutoTokenizer.from_pretrained(minilm_path())
    enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length)
    data = [{"input_ids": ids, "attention_mask": m, "labels": label_id[r["label"]]}
            for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], rows)]
    torch.manual_seed(0)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            minilm_path(), num_labels=len(labels))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-trainer-"), max_steps=steps,
                             per_device_train_batch_size=batch, learning_rate=lr,
                             warmup_steps=max(1, int(0.06 * steps)), weight_decay=0.01,
                             logging_strategy="no",
                             save_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary: stdout is ours
        trainer.train()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="../shared/datasets/sst2 or .../banking77")
    ap.add_argument("--minutes", type=float, default=20, help="training budget (default: 20)")
    ap.add_argument("--epochs", type=float, default=4,
                    help="at most this many epochs, if the budget allows more (default: 4)")
    ap.add_argument("--compare-steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--dir", help="working directory (default: a temporary one)")
    args = ap.parse_args()
    src = Path(args.data)
    kind = "sst2" if (src / "train.tsv").is_file() else "banking77"
    if kind == "banking77" and not (src / "train.csv").is_file():
        sys.exit(f"error: {src}: expected SST-2 (train.tsv, dev.tsv) or Banking77 (train.csv)")
    work = Path(args.dir or tempfile.mkdtemp(prefix="goldmine-bench-classify-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GOLDMINE_HOME"] = str(work / "home")

    from goldmine.eval.classify import evaluate_classifier
    from goldmine.train.finetune_classify import finetune_classify

    t_start = time.perf_counter()
    ds, dev = prepare(kind, src, work)
    common = dict(data=str(ds), batch_size=args.batch_size, max_length=args.max_length,
                  learning_rate=args.learning_rate, device="cpu", patience=0)
    # 1. throughput, same steps for both loops
    short = finetune_classify(max_steps=args.compare_steps, eval_every=10 ** 9,
                              out=str(work / "short"), **common)
    ours = short["examples_per_s"]
    hf = trainer_examples_per_s(ds, args.compare_steps, args.batch_size, args.max_length,
                                args.learning_rate)
    # 2. accuracy within the budget (90% of it training, the rest evaluation and saving), and
    #    at most --epochs: the rate decays to 0 at the last step, and past a few epochs a small
    #    set is learnt by heart (Banking77 peaks near epoch 4-6)
    steps = max(args.compare_steps, int(0.9 * args.minutes * 60 * ours / args.batch_size))
    steps = min(steps, math.ceil(args.epochs * short["train_rows"] / args.batch_size))
    t0 = time.perf_counter()
    full = finetune_classify(max_steps=steps, eval_every=max(steps // 4, 1),
                             out=str(work / "model"), **common)
    train_s = time.perf_counter() - t0
    ev = evaluate_classifier(model=full["run_dir"], data=str(dev or ds),
                             split=None if dev else "val", out=str(work / "eval"))
    acc = ev["metrics"]["accuracy"]
    result = {
        "dataset": kind, "accuracy": round(acc, 4), "f1_macro": round(ev["metrics"]["f1_macro"], 4),
        "eval_on": "dev.tsv" if dev else "val split (20% of train.csv)",
        "eval_examples": ev["data"]["n"], "wall_s": round(time.perf_counter() - t_start, 1),
        "train_s": round(train_s, 1), "steps": full["steps"],
        "epochs": round(full["steps"] * args.batch_size / full["train_rows"], 2),
        "goldmine_examples_per_s": round(ours, 1), "hf_trainer_examples_per_s": round(hf, 1),
        "ratio": round(ours / hf, 3), "batch_size": args.batch_size,
        "max_length": args.max_length, "model": "all-MiniLM-L6-v2 (embedded)",
        "goal_accuracy": GOALS[kind], "goal_met": bool(acc >= GOALS[kind] and ours / hf >= 1.3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
