"""`goldmine evaluate --folds K`: K-fold cross-validation of a `finetune classify` recipe.

    goldmine data prepare --kind classify reviews.csv --folds 5 --out reviews-5fold
    goldmine evaluate --folds 5 --model minilm --data reviews-5fold --finetune finetune.yaml
    cross_validate(EvaluateConfig(folds=5, model="minilm", data="reviews-5fold"))

For each fold k, `finetune classify` trains on the train rows of the other folds (with their
oversampled and augmented copies) and is evaluated once, at the end, on the original rows of
fold k. Nothing looks at fold k before that evaluation (no checkpoint selection, no early
stopping: eval_every 0, patience 0), so the mean over the folds is an unbiased estimate of
what the recipe gives on data like this. The test split of a prepared dataset is not used.

Each fold is a `finetune classify` run of its own in the registry. The evaluate run has them
as parents, writes `metrics.json` (a "folds" list, "mean" and "std") and `report.md`, and
records the means (and `<metric>_std`) as its metrics. std is the population standard
deviation over the folds (numpy's default, ddof=0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from goldmine.config import EvaluateConfig, FinetuneClassifyConfig, load_yaml
from goldmine.errors import GoldmineError

FORMAT = "goldmine-crossval/1"
METRICS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro",
           "log_loss")
# set per fold by cross-validation, so a --finetune file may not set them
PER_FOLD = ("data", "fold", "out", "resume")
# one evaluation at the end of each fold: the fold scored never picks a checkpoint or stops
UNBIASED = {"eval_every": 0, "patience": 0}


def finetune_config(cfg: EvaluateConfig) -> FinetuneClassifyConfig:
    """The fine-tuning recipe of every fold: defaults, then the --finetune YAML file, then
    --data, --model and --device (and the columns of a raw file) from the evaluate options."""
    from goldmine.progress import info

    base = FinetuneClassifyConfig()
    if cfg.finetune:
        raw = load_yaml(cfg.finetune)
        clash = sorted(k for k in (str(k).replace("-", "_") for k in raw) if k in PER_FOLD)
        if clash:
            raise GoldmineError(f"finetune: {cfg.finetune} sets {', '.join(clash)}; "
                                "cross-validation sets these for each fold (give the data with "
                                "--data), leave them out of the file")
        base = FinetuneClassifyConfig.load(yaml_path=cfg.finetune)
        ignored = [f"{k} {getattr(base, k)}" for k, v in UNBIASED.items()
                   if k in raw and getattr(base, k) != v]
        if ignored:
            info(f"[yellow]{cfg.finetune}: {', '.join(ignored)} not used: each fold is "
                 "evaluated once, at the end (eval_every 0, patience 0)[/]")
    if not cfg.data:
        raise GoldmineError("data: give --data (a dataset prepared with `goldmine data prepare "
                            "--kind classify --folds K`)")
    overrides: dict[str, Any] = {"data": str(Path(cfg.data).expanduser().resolve()), **UNBIASED}
    if cfg.model:
        overrides["model"] = cfg.model
    if cfg.device != "auto":
        overrides["device"] = cfg.device
    for name in ("text_column", "label_column"):  # raw files: evaluate's flags, when given
        if getattr(cfg, name) != getattr(EvaluateConfig, name):
            overrides[name] = getattr(cfg, name)
    ft = base.update(overrides, where="evaluate --folds")
    ft.validate()
    return ft


def check_options(cfg: EvaluateConfig) -> None:
    """Options of `goldmine evaluate` that mean nothing for cross-validation are errors."""
    unused = [flag for flag, value in (("--baseline", cfg.baseline), ("--max-drop", cfg.max_drop),
                                       ("--split", cfg.split)) if value]
    if unused:
        raise GoldmineError(f"{', '.join(unused)}: not used with --folds (cross-validation "
                            "scores each fold of train; compare runs with `goldmine runs "
                            "compare`)")


def check_backbone(ref: str) -> None:
    """Fail before any fold runs when --model names no usable backbone (no conversion yet)."""
    from goldmine.hf import gpt_checkpoint, hf_causal_lm, resolve_encoder

    if gpt_checkpoint(ref) is None and hf_causal_lm(ref) is None:
        resolve_encoder(ref)


def score_fold(ft: FinetuneClassifyConfig, model_dir: str, cfg: EvaluateConfig) -> dict[str, Any]:
    """Metrics of the saved fold model on the fold's validation rows (the same rows that
    `finetune classify` validated on), computed like `goldmine evaluate` computes them."""
    from goldmine.classifier import Classifier
    from goldmine.eval.classify import classification_metrics
    from goldmine.train.finetune_classify import load_examples

    val = load_examples(ft).val
    clf = Classifier.load(model_dir, device=cfg.device, max_length=cfg.max_length)
    index = {label: i for i, label in enumerate(clf.labels)}
    y_true = np.array([index[ex.label] for ex in val], dtype=np.int64)
    probs = clf.predict_proba([ex.text for ex in val], cfg.batch_size)
    m = classification_metrics(y_true, probs, clf.labels)["metrics"]
    return {"n": len(val), "truncated": clf.last_truncated,
            "metrics": {k: float(m[k]) for k in METRICS if k in m}}


def summarize(folds: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean, std) of each metric over the folds; std is numpy's (ddof=0)."""
    names = [k for k in METRICS if all(k in f["metrics"] for f in folds)]
    values = {k: np.array([f["metrics"][k] for f in folds], dtype=np.float64) for k in names}
    return ({k: float(np.mean(v)) for k, v in values.items()},
            {k: float(np.std(v)) for k, v in values.items()})


def model_label(ft: dict[str, Any]) -> str:
    """What each fold trains, from the fine-tuning config: the backbone of a transformer, or the
    baseline's arch."""
    arch = ft.get("arch", "transformer")
    return f"backbone `{ft['model']}`" if arch == "transformer" else f"`--arch {arch}`"


def write_report(path: Path, out: dict[str, Any]) -> Path:
    from goldmine.files import write_text

    names = list(out["mean"])
    ft = out["finetune"]
    lines = ["# Cross-validation", "",
             f"- model: {model_label(ft['config'])}",
             f"- data: `{out['data']['path']}`, {out['k']} folds of its train split; each fold's "
             "original rows are scored by a model fine-tuned on the other folds",
             f"- fine-tuning: {'`' + ft['file'] + '`' if ft['file'] else 'defaults'}; evaluated "
             "once at the end of training (no checkpoint selection, no early stopping)",
             "- std: population standard deviation over the folds", "",
             "| fold | run | train rows | val rows | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for f in out["folds"]:
        lines.append(f"| {f['fold']} | `{f['run_id']}` | {f['train_rows']:,} | {f['val_rows']:,} "
                     "| " + " | ".join(f"{f['metrics'][k]:.4f}" for k in names) + " |")
    lines.append("| **mean ± std** | | | | " + " | ".join(
        f"{out['mean'][k]:.4f} ± {out['std'][k]:.4f}" for k in names) + " |")
    return write_text(path, "\n".join(lines) + "\n")


def cross_validate(cfg: EvaluateConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """K-fold cross-validation (see the module docstring). Returns {run_id, run_dir, k, folds
    (per fold: fold, run_id, run_dir, model_dir, train_rows, val_rows, metrics), mean, std,
    metrics (means and <name>_std, as recorded), report}."""
    from goldmine.files import write_json
    from goldmine.progress import info
    from goldmine.registry import start_run
    from goldmine.train.finetune_classify import finetune_classify, folds_of, read_rows

    cfg = (cfg or EvaluateConfig()).update(overrides)
    cfg.validate()
    if not cfg.folds:
        raise GoldmineError("folds: give --folds K (the number of folds the dataset was "
                            "prepared with)")
    check_options(cfg)
    ft = finetune_config(cfg)
    k = cfg.folds
    present = folds_of(read_rows(ft, folds=True)[0], ft.data)
    if present != list(range(k)):
        raise GoldmineError(f"data {ft.data}: its train rows are in folds "
                            f"{', '.join(map(str, present))}, not the {k} folds of --folds {k}; "
                            f"prepare it with `goldmine data prepare --kind classify --folds {k}` "
                            f"or pass --folds {len(present)}")
    if ft.arch == "transformer":
        check_backbone(ft.model)

    with start_run("evaluate", cfg.to_dict(), out=cfg.out) as run:
        run.add_parent_from_path(ft.data)
        folds = []
        for fold in range(k):
            info(f"[bold]fold {fold} ({fold + 1} of {k})[/]: training "
                 f"{model_label(ft.to_dict())} on the other folds")
            fold_cfg = ft.update({"fold": fold})
            res = finetune_classify(fold_cfg)
            run.add_parent_from_path(res["run_dir"])
            if res["stop_reason"] == "interrupted":  # Ctrl-C: the evaluate run stops too
                raise KeyboardInterrupt
            scored = score_fold(fold_cfg, res["model_dir"], cfg)
            folds.append({"fold": fold, "run_id": res["run_id"], "run_dir": res["run_dir"],
                          "model_dir": res["model_dir"], "train_rows": res["train_rows"],
                          "val_rows": scored["n"], "steps": res["steps"],
                          "truncated": scored["truncated"], "metrics": scored["metrics"]})
            m = scored["metrics"]
            info(f"fold {fold}: accuracy {m['accuracy']:.4f} · f1_macro {m['f1_macro']:.4f} · "
                 f"log_loss {m['log_loss']:.4f} on {scored['n']:,} rows ({res['run_id']})")

        mean, std = summarize(folds)
        out = {"format": FORMAT, "task": "classify", "run_id": run.id, "k": k,
               "data": {"path": ft.data},
               "finetune": {"file": str(Path(cfg.finetune).resolve()) if cfg.finetune else None,
                            "config": {n: v for n, v in ft.to_dict().items() if n != "fold"}},
               "folds": folds, "mean": mean, "std": std}
        write_json(run.dir / "metrics.json", out)
        write_report(run.dir / "report.md", out)
        for name in ("metrics.json", "report.md"):
            run.add_artifact(name.rsplit(".", 1)[0], run.dir / name)
        scalars = {**mean, **{f"{n}_std": v for n, v in std.items()}, "folds": k}
        run.log_metrics(scalars)
        info(f"{k}-fold cross-validation: accuracy {mean['accuracy']:.4f} ± "
             f"{std['accuracy']:.4f} · f1_macro {mean['f1_macro']:.4f} ± {std['f1_macro']:.4f} "
             f"→ {run.dir / 'report.md'}")
    return {"run_id": run.id, "run_dir": str(run.dir), "k": k, "folds": folds, "mean": mean,
            "std": std, "metrics": scalars, "report": str(run.dir / "report.md")}
