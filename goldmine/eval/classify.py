"""`goldmine evaluate` for text classifiers: metrics, plots, a report, and a gate on a baseline.

    goldmine evaluate --model RUN --data reviews            # prepared dataset: test, else val
    goldmine evaluate --model RUN --data held-out.csv --text-column review --label-column stars
    goldmine evaluate --model NEW --data reviews --baseline EVAL_RUN --max-drop f1_macro=0.5

Metrics (scikit-learn): accuracy; precision, recall and F1 averaged macro, micro and weighted
(over the labels that occur in the data or the predictions, sklearn's default); a per-class
report over all the model's labels; the confusion matrix (`confusion.png`); ROC-AUC (binary:
the second label is the positive class; more labels: macro one-vs-rest, only when every label
occurs in the data); expected calibration error over 15 equal-width confidence bins
(`calibration.png`); log loss; how many texts were truncated. Rows without text or label, and
unreadable rows, are counted and reported, never silently dropped.

The run directory gets `metrics.json` (everything, with the data's path, split, row count and
sha256) and `report.md`.

Gate: `--baseline` names an earlier evaluate run on the same data (same file sha256 and
split). Every shared metric's change is recorded; each `--max-drop NAME=POINTS` fails the run
(GateFailed, exit code 3) when NAME got worse by more than POINTS percentage points (0.5 means
0.005). For `ece` and `log_loss` worse means higher; `log_loss` is not a share, so its
allowance is in nats (log_loss=0.05 allows +0.05).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.config import EvaluateConfig
from goldmine.errors import GoldmineError

FORMAT = "goldmine-evaluate/1"
RAW_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
ECE_BINS = 15
HIGHER_IS_BETTER = ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                    "precision_micro", "recall_micro", "f1_micro", "precision_weighted",
                    "recall_weighted", "f1_weighted", "roc_auc")
LOWER_IS_BETTER = ("ece", "log_loss")
GATE_METRICS = HIGHER_IS_BETTER + LOWER_IS_BETTER
NOT_A_SHARE = ("log_loss",)  # allowance in the metric's own units, not percentage points
GOLD, BLUE, GREY, RED = "#c9a227", "#1f4e79", "#9a9a9a", "#b03a2e"


class GateFailed(GoldmineError):
    """A metric dropped by more than --max-drop allows against the baseline. `result` holds
    what evaluate_classifier would have returned (everything is recorded before raising)."""

    exit_code = 3
    result: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------ gate
def parse_max_drop(specs: list[str]) -> dict[str, float]:
    """["f1_macro=0.5", ...] -> {"f1_macro": 0.5}; a bad spec is a GoldmineError."""
    out: dict[str, float] = {}
    for spec in specs or []:
        name, sep, value = str(spec).partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise GoldmineError(f"max_drop: expected NAME=POINTS (e.g. f1_macro=0.5), got "
                                f"{spec!r}")
        if name not in GATE_METRICS:
            raise GoldmineError(f"max_drop: unknown metric {name!r} in {spec!r}; choose among "
                                f"{', '.join(GATE_METRICS)}")
        try:
            points = float(value)
        except ValueError:
            raise GoldmineError(f"max_drop: {value.strip()!r} in {spec!r} is not a number") \
                from None
        if not math.isfinite(points) or points < 0:
            raise GoldmineError(f"max_drop: the allowance in {spec!r} must be a number >= 0")
        out[name] = points
    return out


def allowance(metric: str, points: float) -> float:
    """--max-drop points -> the allowed change in the metric's own units."""
    return points if metric in NOT_A_SHARE else points / 100.0


def worsening(metric: str, baseline: float, current: float) -> float:
    """How much worse `current` is than `baseline` (negative: better)."""
    return current - baseline if metric in LOWER_IS_BETTER else baseline - current


def load_baseline(ref: str) -> dict[str, Any]:
    """An earlier evaluate run (id or directory) -> {"id", "dir", "metrics": metrics.json}."""
    from goldmine.files import read_json
    from goldmine.registry import Registry, run_id_for_path

    p = Path(ref).expanduser()
    if p.is_dir():
        run_dir, run_id = p, run_id_for_path(p) or p.name
    else:
        reg = Registry()
        try:
            row = reg.get(str(ref))
        except GoldmineError:
            raise GoldmineError(f"baseline: {ref!r} is neither a directory nor a run id in "
                                f"{reg.path}") from None
        if row["command"].split()[0] != "evaluate":
            raise GoldmineError(f"baseline: run {row['id']} is a `goldmine {row['command']}` "
                                "run; give an earlier `goldmine evaluate` run")
        run_dir, run_id = Path(row["run_dir"]), row["id"]
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise GoldmineError(f"baseline: {run_dir} is not an evaluate run (no metrics.json)")
    data = read_json(path, "baseline metrics")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GoldmineError(f"baseline: {path} was not written by `goldmine evaluate` for a "
                            "classifier")
    return {"id": run_id, "dir": str(run_dir.resolve()), "metrics": data}


def compare(baseline: dict[str, Any], current: dict[str, Any],
            max_drop: dict[str, float]) -> dict[str, Any]:
    """The gate's verdict: every shared metric's change and each --max-drop check."""
    base = baseline["metrics"]["metrics"]
    deltas = {k: current[k] - base[k] for k in GATE_METRICS
              if isinstance(current.get(k), (int, float)) and isinstance(base.get(k), (int, float))}
    checks = []
    for name, points in max_drop.items():
        b, c = base.get(name), current.get(name)
        if not isinstance(b, (int, float)) or not isinstance(c, (int, float)):
            checks.append({"metric": name, "baseline": b, "current": c, "max_drop": points,
                           "allowed": allowance(name, points), "worse_by": None,
                           "passed": False, "reason": "not available in both runs"})
            continue
        worse = worsening(name, b, c)
        allowed = allowance(name, points)
        checks.append({"metric": name, "baseline": b, "current": c, "max_drop": points,
                       "allowed": allowed, "worse_by": worse,
                       "passed": bool(worse <= allowed + 1e-12)})
    return {"baseline": baseline["id"], "baseline_dir": baseline["dir"],
            "passed": all(c["passed"] for c in checks), "checks": checks, "deltas": deltas}


def _change_text(check: dict[str, Any]) -> str:
    name, b, c = check["metric"], check["baseline"], check["current"]
    if check["worse_by"] is None:
        return f"{name} {b} → {c} ({check['reason']})"
    if name in NOT_A_SHARE:
        return (f"{name} {b:.4f} → {c:.4f} (+{check['worse_by']:.4f}, allowed "
                f"+{check['allowed']:.4f})")
    sign = "+" if name in LOWER_IS_BETTER else "-"
    return (f"{name} {b:.4f} → {c:.4f} ({sign}{100 * check['worse_by']:.2f} points, allowed "
            f"{check['max_drop']:g})")


# ------------------------------------------------------------------------------------ data
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def resolve_data(data: str, split: str | None) -> dict[str, Any]:
    """--data (+ --split) -> {"path", "split", "dataset", "note", "columns_from_cfg"}."""
    from goldmine.data.prepare import evaluation_split, is_dataset_dir, read_manifest
    from goldmine.data.readers import dataset_split

    p = Path(data).expanduser()
    if not p.exists():
        raise GoldmineError(f"data: {p} not found")
    if p.is_dir():
        if not is_dataset_dir(p):
            raise GoldmineError(f"data: {p} is a folder but not a prepared dataset (no "
                                "manifest.json); give a `goldmine data prepare` folder or a "
                                f"{'/'.join(RAW_SUFFIXES)} file")
        manifest = read_manifest(p)
        kind = manifest.get("kind")
        if kind not in (None, "classify"):
            raise GoldmineError(f"data: {p} is a {kind!r} dataset; evaluating a classifier "
                                "needs one prepared with --kind classify")
        chosen, note = evaluation_split(p, manifest, split)
        files = manifest["files"]
        return {"path": p / files[chosen], "split": chosen, "dataset": p, "note": note,
                "raw": False}
    if p.suffix.lower() not in RAW_SUFFIXES:
        raise GoldmineError(f"data: {p}: unsupported file type {p.suffix or '(none)'!r}; give a "
                            f"prepared dataset folder or a {'/'.join(RAW_SUFFIXES)} file")
    if p.stat().st_size == 0:
        raise GoldmineError(f"data: {p} is empty (0 bytes)")
    own = dataset_split(p)
    if split and split != own:
        raise GoldmineError(f"data: --split {split} applies to a prepared dataset folder, not to "
                            f"the file {p}")
    return {"path": p, "split": own, "dataset": p.parent if own else None, "note": None,
            "raw": own is None}


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def read_labelled(path: Path, text_column: str, label_column: str) -> dict[str, Any]:
    """(text, raw label) pairs of a file, and the rows skipped, by reason (with examples)."""
    from goldmine.data.tables import detect_encoding, iter_rows

    texts: list[str] = []
    labels: list[Any] = []
    skipped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    checked = False

    def skip(reason: str, where: str) -> None:
        skipped[reason] += 1
        examples.setdefault(reason, [])
        if len(examples[reason]) < 5:
            examples[reason].append(where)

    read = 0
    for row in iter_rows(path, detect_encoding(path)):
        read += 1
        if row.fields is None:
            skip("unreadable", f"{row.where}: {row.error}")
            continue
        if not checked:
            shown = ", ".join(map(repr, row.fields)) or "none"
            for column, option in ((text_column, "--text-column"),
                                   (label_column, "--label-column")):
                if column not in row.fields:
                    raise GoldmineError(f"{row.where}: no column {column!r} (columns: {shown});"
                                        f" choose one with {option}")
            checked = True
        text, label = row.fields.get(text_column), row.fields.get(label_column)
        if _missing(text):
            skip("no_text", row.where)
        elif _missing(label):
            skip("no_label", row.where)
        else:
            texts.append(text if isinstance(text, str) else str(text))
            labels.append(label)
    return {"texts": texts, "labels": labels, "read": read, "skipped": dict(skipped),
            "examples": examples}


def label_mapper(model_labels: list[str]):
    """raw label -> the model's label: exact match first, else after normalize_label (NFKC,
    tidy whitespace, lower case) on both sides; None when unknown."""
    from goldmine.data.clean import normalize_label

    exact = {lab: lab for lab in model_labels}
    normal: dict[str, str] = {}
    for lab in model_labels:
        normal.setdefault(normalize_label(lab), lab)

    def to_model(raw: Any) -> str | None:
        if isinstance(raw, str) and raw in exact:
            return raw
        text = normalize_label(raw)
        if text in exact:
            return text
        return normal.get(text)

    return to_model


def _path_text(path: Path | str) -> str:
    """A data path as recorded: absolute, except `digits` (no file)."""
    from goldmine.data.images import is_digits

    return str(path) if is_digits(path) else str(Path(path).resolve())


def image_data(data: str, split: str | None, clf) -> tuple[dict[str, Any], dict[str, Any]]:
    """An image source for an image classifier: (the `resolve_data` dict, {"rows" as
    `read_labelled` returns them, with the images (n, C, H, W) as "texts", "sha256", "image"}).
    The images are read at the model's size and mode (others resized or converted, and said);
    the split is --split, else test, else val (see goldmine.data.images.evaluation_split)."""
    from goldmine.data.images import checksum, evaluation_split, is_digits, read_images
    from goldmine.progress import info

    src = read_images(data, size=clf.size, mode=clf.mode)
    chosen, note = evaluation_split(src, split)
    for message in src.messages():
        info(f"[yellow]{message}[/]")
    images = src.splits[chosen]
    path = data if is_digits(data) else Path(src.source)
    resolved = {"path": path, "split": chosen if src.named_splits else None,
                "dataset": None if is_digits(data) else Path(src.source), "note": note,
                "raw": False}
    rows = {"texts": images.pixels, "labels": list(images.labels), "read": len(images),
            "skipped": {}, "examples": {}}
    return resolved, {"rows": rows, "sha256": checksum(src, chosen),
                      "image": {"size": f"{src.size[1]}x{src.size[0]}", "mode": src.mode,
                                "resized": src.resized, "converted": src.converted}}


# --------------------------------------------------------------------------------- metrics
def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray,
                               n_bins: int = ECE_BINS) -> tuple[float, list[dict[str, Any]]]:
    """ECE of the top-1 confidence over `n_bins` equal-width bins (lo, hi], and the bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins - 1e-9).astype(int) - 1, 0, n_bins - 1)
    n = len(conf)
    ece, bins = 0.0, []
    for b in range(n_bins):
        sel = idx == b
        count = int(sel.sum())
        acc = float(correct[sel].mean()) if count else None
        mean_conf = float(conf[sel].mean()) if count else None
        if count:
            ece += count / n * abs(acc - mean_conf)
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": count,
                     "accuracy": acc, "confidence": mean_conf})
    return float(ece), bins


def classification_metrics(y_true: np.ndarray, probs: np.ndarray,
                           labels: list[str]) -> dict[str, Any]:
    """All metrics of predictions `probs` (n, k) against label indices `y_true` (n,)."""
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    k = len(labels)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    y_pred = probs.argmax(axis=1)
    m: dict[str, Any] = {"n": int(len(y_true)), "accuracy": float(accuracy_score(y_true, y_pred))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for avg in ("macro", "micro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg,
                                                         zero_division=0)
            m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"] = (
                float(p), float(r), float(f))
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)),
                                                     average=None, zero_division=0)
    per_class = {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])} for i in range(k)}
    notes = []
    present = np.unique(y_true)
    if k == 2:
        if len(present) == 2:
            m["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
        else:
            notes.append("ROC-AUC left out: only one label occurs in the data")
    elif k > 2:
        if len(present) == k:
            m["roc_auc"] = float(roc_auc_score(y_true, probs, multi_class="ovr",
                                               average="macro", labels=list(range(k))))
        else:
            notes.append(f"ROC-AUC (macro one-vs-rest) left out: {k - len(present)} of the "
                         f"model's {k} labels do not occur in the data")
    m["log_loss"] = float(log_loss(y_true, probs, labels=list(range(k))))
    m["ece"], bins = expected_calibration_error(probs, y_true)
    m["mean_confidence"] = float(probs.max(axis=1).mean())
    cm = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    return {"metrics": m, "per_class": per_class, "confusion": cm.tolist(),
            "calibration_bins": bins, "notes": notes}


# ----------------------------------------------------------------------------------- plots
def confusion_png(cm: np.ndarray, labels: list[str], path: Path, title: str = "") -> Path:
    """Heat map of the confusion matrix: colour = share of the true label's rows (recall),
    numbers = counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    k = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = min(max(4.5, 0.55 * k + 2.5), 22)
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=110)
    im = ax.imshow(share, cmap="YlOrBr", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true label's rows")
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center",
                  fontsize=8 if k > 12 else 10)
    ax.set_yticks(range(k), labels, fontsize=8 if k > 12 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{cm[i, j]:,}", ha="center", va="center",
                            fontsize=8 if k > 12 else 10,
                            color="white" if share[i, j] > 0.6 else "black")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def calibration_png(bins: list[dict[str, Any]], ece: float, path: Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, and how many rows per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(2, 1, figsize=(6, 6.4), dpi=110, sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["hi"] - bins[0]["lo"]
    used = [b for b in bins if b["count"]]
    centers = [(b["lo"] + b["hi"]) / 2 for b in used]
    ax.plot([0, 1], [0, 1], "--", color=GREY, linewidth=1, label="perfect calibration",
            zorder=3)
    ax.bar(centers, [b["accuracy"] for b in used], width=width * 0.95, color=GOLD,
           edgecolor="white", label="accuracy")
    gap_lo = [min(b["accuracy"], b["confidence"]) for b in used]
    gap = [abs(b["accuracy"] - b["confidence"]) for b in used]
    ax.bar(centers, gap, bottom=gap_lo, width=width * 0.95, color=RED, alpha=0.35,
           label="gap to confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.4f}, {len(bins)} bins)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    hx.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["count"] for b in bins],
           width=width * 0.95, color=BLUE)
    hx.set_xlabel("confidence (top-1 probability)")
    hx.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- report
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "—" if v is None else str(v)


def write_report(path: Path, out: dict[str, Any]) -> Path:
    from goldmine.files import write_text

    m, data, model = out["metrics"], out["data"], out["model"]
    lines = ["# Classifier evaluation", "",
             f"- model: `{model['path']}`" + (f" (run `{model['run_id']}`)" if model["run_id"]
                                               else ""),
             f"- data: `{data['path']}`" + (f", split `{data['split']}`" if data["split"] else ""),
             f"- sha256: `{data['sha256']}`",
             f"- rows read: {data['rows_read']:,}; evaluated: {data['n']:,}"]
    for reason, count in data["skipped"].items():
        lines.append(f"- skipped ({reason.replace('_', ' ')}): {count:,}, e.g. "
                     + ", ".join(f"`{w}`" for w in data["skipped_examples"].get(reason, [])[:3]))
    if m.get("truncated"):
        lines.append(f"- texts truncated at {model['max_length']} tokens: {m['truncated']:,}")
    for note in out["notes"]:
        lines.append(f"- note: {note}")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    for k in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_micro",
              "precision_micro", "recall_micro", "f1_weighted", "precision_weighted",
              "recall_weighted", "roc_auc", "log_loss", "ece", "mean_confidence", "n"):
        if k in m:
            lines.append(f"| {k} | {_fmt(m[k])} |")
    lines += ["", "## Per class", "", "| label | precision | recall | f1 | support |",
              "|---|---|---|---|---|"]
    for lab, r in out["per_class"].items():
        lines.append(f"| {lab} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
                     f"{r['support']:,} |")
    labels, cm = out["labels"], out["confusion"]
    lines += ["", "## Confusion matrix", "", "Rows: true label; columns: predicted.", ""]
    if len(labels) <= 20:
        lines += ["| true \\ predicted | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        lines += [f"| {lab} | " + " | ".join(f"{v:,}" for v in row) + " |"
                  for lab, row in zip(labels, cm)]
        lines.append("")
    lines += ["![confusion matrix](confusion.png)", "", "## Calibration", "",
              f"Expected calibration error over {ECE_BINS} equal-width confidence bins: "
              f"{m['ece']:.4f}.", "", "![reliability diagram](calibration.png)", ""]
    gate = out.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "FAILED"
        lines += ["## Gate", "", f"Baseline: `{gate['baseline']}` — {verdict}.", ""]
        if gate["checks"]:
            lines += ["| metric | baseline | current | worse by | allowed | result |",
                      "|---|---|---|---|---|---|"]
            for c in gate["checks"]:
                lines.append(f"| {c['metric']} | {_fmt(c['baseline'])} | {_fmt(c['current'])} "
                             f"| {_fmt(c['worse_by'])} | {_fmt(c['allowed'])} | "
                             f"{'ok' if c['passed'] else 'FAIL'} |")
            lines.append("")
        lines += ["| metric | change vs baseline |", "|---|---|"]
        lines += [f"| {k} | {v:+.4f} |" for k, v in gate["deltas"].items()]
        lines.append("")
    return write_text(path, "\n".join(lines))


# --------------------------------------------------------------------------------- command
def evaluate_classifier(cfg: EvaluateConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine evaluate` for a fine-tuned classifier (see the module docstring).

    Returns {run_id, run_dir, metrics (flat scalars), per_class, confusion, labels,
    data {path, split, n, sha256, ...}, gate (None without --baseline)}. Raises GateFailed
    (exit code 3) after recording everything when a --max-drop check fails.
    """
    from goldmine.classifier import Classifier
    from goldmine.files import write_json
    from goldmine.progress import info, progress_bar
    from goldmine.registry import start_run

    cfg = (cfg or EvaluateConfig()).update(overrides)
    cfg.validate()
    max_drop = parse_max_drop(cfg.max_drop)
    if max_drop and not cfg.baseline:
        raise GoldmineError("max_drop: needs --baseline (an earlier evaluate run to compare "
                            "with)")
    if cfg.finetune:
        raise GoldmineError("finetune: only used with --folds (cross-validation fine-tunes with "
                            "those options); evaluating a trained classifier takes none")
    if not cfg.model:
        raise GoldmineError("model: give --model (a fine-tuned classifier's run id or directory)")
    if not cfg.data:
        raise GoldmineError("data: give --data (a prepared dataset or a labelled file)")

    from goldmine.classifier import is_image_model
    from goldmine.data.images import is_image_source

    images = None
    if is_image_model(cfg.model):  # an --arch cnn model: its images, at its size and mode
        clf = Classifier.load(cfg.model, device=cfg.device, max_length=cfg.max_length)
        src, images = image_data(cfg.data, cfg.split, clf)
    elif is_image_source(cfg.data):
        raise GoldmineError(f"data: {cfg.data} holds images, and {cfg.model} is a text "
                            "classifier; evaluate it on text, or evaluate an image classifier "
                            "(`finetune classify --arch cnn`) on images")
    else:
        src = resolve_data(cfg.data, cfg.split)
    path: Path = src["path"]
    split = src["split"]
    if src["note"]:
        info(f"[yellow]{src['note']}[/]")
    sha = images["sha256"] if images else _sha256(path)
    baseline = None
    if cfg.baseline:
        baseline = load_baseline(cfg.baseline)
        bdata = baseline["metrics"].get("data") or {}
        if bdata.get("sha256") != sha or bdata.get("split") != split:
            raise GoldmineError(
                f"baseline: {baseline['id']} evaluated other data ({bdata.get('path')}, split "
                f"{bdata.get('split') or '-'}, sha256 {str(bdata.get('sha256'))[:12]}) than "
                f"{path} (split {split or '-'}, sha256 {sha[:12]}); compare on the same data")
        bm = baseline["metrics"].get("metrics") or {}
        for name in max_drop:
            if not isinstance(bm.get(name), (int, float)):
                raise GoldmineError(f"max_drop: the baseline {baseline['id']} has no {name} "
                                    "to compare with")

    if images:
        text_col, label_col, rows = "image", "label", images["rows"]
    else:
        text_col = cfg.text_column if src["raw"] else "text"
        label_col = cfg.label_column if src["raw"] else "label"
        rows = read_labelled(path, text_col, label_col)
        for reason, count in rows["skipped"].items():
            first = rows["examples"][reason][0]
            info(f"[yellow]{count:,} row(s) skipped ({reason.replace('_', ' ')}), e.g. "
                 f"{first}[/]")
        if not rows["texts"]:
            raise GoldmineError(f"data: {path} has no rows with both a text and a label "
                                f"({rows['read']:,} read)")

        clf = Classifier.load(cfg.model, device=cfg.device, max_length=cfg.max_length)
    to_model = label_mapper(clf.labels)
    mapped = [to_model(x) for x in rows["labels"]]
    unknown = Counter(str(raw) for raw, m in zip(rows["labels"], mapped) if m is None)
    if unknown:
        shown = ", ".join(f"{lab!r} ({n:,})" for lab, n in unknown.most_common(10))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise GoldmineError(f"data: {path} has labels the model does not know: {shown}{more}; "
                            f"the model's labels: {', '.join(clf.labels)}")
    index = {lab: i for i, lab in enumerate(clf.labels)}
    y_true = np.array([index[m] for m in mapped], dtype=np.int64)
    texts = rows["texts"]
    del rows["texts"], rows["labels"]

    with start_run("evaluate", cfg.to_dict(), out=cfg.out) as run:
        run.add_parent_from_path(clf.path)
        run.add_parent_from_path(src["dataset"] or path)
        n = len(texts)
        probs = np.zeros((n, len(clf.labels)), dtype=np.float64)
        truncated = 0
        chunk = max(cfg.batch_size * 8, 256)
        t0 = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task("evaluate", total=n, stats="")
            for start in range(0, n, chunk):
                part = texts[start:start + chunk]
                probs[start:start + len(part)] = clf.predict_proba(part, cfg.batch_size)
                truncated += clf.last_truncated
                done = start + len(part)
                rate = done / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, completed=done, stats=f"{rate:,.0f} rows/s")
        seconds = time.perf_counter() - t0
        if truncated:
            info(f"[yellow]{truncated:,} of {n:,} texts were longer than {clf.max_length} "
                 "tokens and truncated[/]")

        res = classification_metrics(y_true, probs, clf.labels)
        metrics = {**res["metrics"], "truncated": truncated,
                   "skipped_no_text": rows["skipped"].get("no_text", 0),
                   "skipped_no_label": rows["skipped"].get("no_label", 0),
                   "unreadable": rows["skipped"].get("unreadable", 0),
                   "seconds": seconds, "rows_per_s": n / seconds if seconds > 0 else None}
        data = {"path": _path_text(path), "split": split, "n": n, "sha256": sha,
                "dataset": str(src["dataset"].resolve()) if src["dataset"] else None,
                "text_column": text_col, "label_column": label_col,
                "rows_read": rows["read"], "skipped": rows["skipped"],
                "skipped_examples": rows["examples"], "note": src["note"]}
        model = {"path": str(clf.path.resolve()), "run_id": clf.run_id, "labels": clf.labels,
                 "max_length": clf.max_length}
        if images:
            data["image"] = images["image"]
            model["input"] = clf.describe_input()
        notes = ([src["note"]] if src["note"] else []) + res["notes"]
        for note in res["notes"]:
            info(f"[yellow]{note}[/]")
        gate = compare(baseline, metrics, max_drop) if baseline else None

        out = {"format": FORMAT, "task": "classify", "run_id": run.id, "model": model,
               "data": data, "metrics": metrics, "per_class": res["per_class"],
               "labels": clf.labels, "confusion": res["confusion"],
               "calibration": {"bins": ECE_BINS, "ece": metrics["ece"],
                               "table": res["calibration_bins"]},
               "notes": notes, "gate": gate}
        confusion_png(np.array(res["confusion"]), clf.labels, run.dir / "confusion.png",
                      title=f"confusion matrix ({n:,} rows)")
        calibration_png(res["calibration_bins"], metrics["ece"], run.dir / "calibration.png")
        write_json(run.dir / "metrics.json", out)
        write_report(run.dir / "report.md", out)
        for name in ("metrics.json", "report.md", "confusion.png", "calibration.png"):
            run.add_artifact(name.rsplit(".", 1)[0], run.dir / name)
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if gate:
            scalars["gate_passed"] = gate["passed"]
        run.log_metrics(scalars)

        result = {"run_id": run.id, "run_dir": str(run.dir), "metrics": scalars,
                  "per_class": res["per_class"], "confusion": res["confusion"],
                  "labels": clf.labels, "model": model,
                  "data": {k: data[k] for k in ("path", "split", "n", "sha256", "rows_read",
                                                "skipped", "note")},
                  "gate": gate}
        info(f"accuracy {metrics['accuracy']:.4f} | f1_macro {metrics['f1_macro']:.4f} | "
             f"ece {metrics['ece']:.4f} | {n:,} rows → {run.dir / 'report.md'}")
        if gate and not gate["passed"]:
            failed = [c for c in gate["checks"] if not c["passed"]]
            err = GateFailed(f"gate failed against baseline {gate['baseline']}: "
                             + "; ".join(_change_text(c) for c in failed))
            err.result = result
            raise err
        if gate:
            info(f"gate passed against baseline {gate['baseline']}")
    return result
