"""`goldmine compare`: is the bigger classifier worth it?

    goldmine compare LOGREG_RUN MINILM_RUN --data reviews        # the first run is the baseline
    goldmine compare EVAL_RUN_A EVAL_RUN_B                       # on the data they evaluated
    goldmine compare A B C --data held-out.csv --baseline B --price-per-hour 0.05

Every model predicts exactly the same rows: a prepared classify dataset's test split (else val)
or a labelled file; or, given `evaluate` runs, the data those evaluated (they must all have
evaluated the same file, split and columns; otherwise the difference is named and nothing is
run). Every model must know the same labels, and the data no others.

Per model: accuracy and macro F1 with a percentile bootstrap 95% interval (the rows resampled
with replacement, seeded, the same resamples for every model); parameters; size of the weights
files; CPU latency per example (one text at a time) and throughput (examples/s in batches of
--batch-size), measured now with the models taking turns (goldmine.quantize._rep_times: the
median of --reps repetitions over the same texts, tokenization included); and the cost of a
million predictions at that throughput (goldmine.cost.serving.cost_per_million).

Against the baseline (the first run, or --baseline): the accuracy difference with a paired
bootstrap interval, McNemar's exact test on the rows where exactly one of the two is right, and
one sentence: is the more expensive model's gain significant (p < 0.05), and what does a point
of accuracy cost per million predictions.

The run directory gets compare.json (what --json prints), report.md and compare.png (accuracy
with its interval against cost per million predictions); the compared runs are its parents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.config import CompareConfig
from goldmine.errors import GoldmineError

FORMAT = "goldmine-compare/1"
ALPHA = 0.05        # significance level of the sentence
LEVEL = 0.95        # confidence level of the intervals
SAME_COST = 0.05    # costs per million within 5% of each other are "about the same"
CHUNK = 2_000_000   # resampled indices held at once (B x n), to bound memory
GOLD, BLUE, GREY = "#c9a227", "#1f4e79", "#9a9a9a"


# ---------------------------------------------------------------------------------- statistics
def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 of each row of two (B, n) arrays of label indices in [0, k): shape (B,).

    Averaged over the labels that occur in the row's truth or predictions, as scikit-learn's
    f1_score(average="macro") does; F1 = 2 TP / (support + predicted). Vectorised (one
    bincount for all rows) because the bootstrap calls it on a thousand resamples."""
    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    rows = len(y_true)
    codes = (np.arange(rows)[:, None] * k + y_true) * k + y_pred
    cm = np.bincount(codes.ravel(), minlength=rows * k * k).reshape(rows, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=2) + cm.sum(axis=1)                       # support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
    return f1.sum(axis=1) / np.maximum((denom > 0).sum(axis=1), 1)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Macro F1 of one prediction array (see macro_f1_rows)."""
    return float(macro_f1_rows(y_true, y_pred, k)[0])


def resamples(n: int, count: int, seed: int) -> Iterator[np.ndarray]:
    """`count` bootstrap resamples of n rows (indices drawn with replacement), in (b, n) blocks.

    One seeded generator: the same seed gives the same resamples, so every model is scored on
    the same resampled rows and differences between models are paired."""
    rng = np.random.default_rng(seed)
    block = max(1, CHUNK // max(n, 1))
    done = 0
    while done < count:
        b = min(block, count - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def bootstrap_scores(y_true: np.ndarray, preds: np.ndarray, k: int, count: int,
                     seed: int) -> dict[str, np.ndarray]:
    """Accuracy and macro F1 of each model (rows of `preds`, shape (m, n)) on `count` bootstrap
    resamples: {"accuracy": (count, m), "f1_macro": (count, m)}.

    Why resample rows: the test set is one sample of the texts the model will see; the spread
    of the metric over resamples estimates how much it would move on another such sample."""
    y_true, preds = np.asarray(y_true), np.atleast_2d(np.asarray(preds))
    acc, f1 = [], []
    for idx in resamples(len(y_true), count, seed):
        y = y_true[idx]
        acc.append(np.stack([(p[idx] == y).mean(axis=1) for p in preds], axis=1))
        f1.append(np.stack([macro_f1_rows(y, p[idx], k) for p in preds], axis=1))
    return {"accuracy": np.concatenate(acc), "f1_macro": np.concatenate(f1)}


def percentile_ci(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile bootstrap interval: the (1-level)/2 and (1+level)/2 quantiles of the
    resampled statistic. Simple and, for a mean of 0/1 outcomes over hundreds of rows, close
    to the textbook interval p ± 1.96 sqrt(p(1-p)/n)."""
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mcnemar(only_a: int, only_b: int) -> dict[str, Any]:
    """McNemar's test of two classifiers on the same rows, from the discordant pairs: `only_a`
    rows only A gets right, `only_b` rows only B gets right.

    Why McNemar: the models answer the same rows, so their errors are paired; rows both get
    right or both get wrong say nothing about which is better. Under "equally accurate" each
    discordant row is a fair coin flip, so min(only_a, only_b) ~ Binomial(only_a + only_b, 1/2).
    `p` is that exact two-sided binomial p-value (valid for any count, conservative when it is
    small); the chi-square statistic with continuity correction, (|b - c| - 1)^2 / (b + c), and
    its p-value (1 degree of freedom) are given beside it for those used to that form."""
    from scipy.stats import binom, chi2

    n = only_a + only_b
    if n == 0:
        return {"only_a": only_a, "only_b": only_b, "p": 1.0, "chi2": 0.0, "p_chi2": 1.0}
    p = min(1.0, 2 * float(binom.cdf(min(only_a, only_b), n, 0.5)))
    stat = (abs(only_a - only_b) - 1) ** 2 / n if only_a != only_b else 0.0
    return {"only_a": only_a, "only_b": only_b, "p": p, "chi2": stat,
            "p_chi2": float(chi2.sf(stat, 1))}


# ---------------------------------------------------------------------------------- sentences
def fmt_usd(x: float) -> str:
    """Dollars with as many decimals as a small amount needs: $1,234, $12.34, $0.42, $0.00123."""
    x = abs(x)
    if x >= 100:
        return f"${x:,.0f}"
    if x >= 0.01 or x == 0:
        return f"${x:.2f}"
    return f"${x:.3g}"


def fmt_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    if p >= 0.995:
        return "p = 1"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(base: str, other: str, diff: float, ci: tuple[float, float], p: float,
            usd_base: float, usd_other: float, alpha: float = ALPHA) -> str:
    """One sentence on a pair: whether the more expensive model's accuracy gain over the
    cheaper one is significant, and what it costs per point per million predictions.

    `diff` and `ci` are other minus base, as shares (0.041 is 4.1 points); `usd_*` are the
    costs per million predictions. The sentence is told from the expensive model's side. Costs
    within SAME_COST of each other are called the same: timing on a shared CPU is not finer."""
    if usd_other >= usd_base:
        big, small, gain, lo, hi = other, base, diff, ci[0], ci[1]
    else:
        big, small, gain, lo, hi = base, other, -diff, -ci[1], -ci[0]
    pts, lo, hi = 100 * gain, 100 * lo, 100 * hi
    if pts < 0:  # "less accurate by 3.1 (95% CI 1.2 to 5.0)": the interval of what is said
        lo, hi = -hi, -lo
    interval = f"95% CI {lo + 0.0:.1f} to {hi + 0.0:.1f}"  # + 0.0: no "-0.0"
    extra = abs(usd_other - usd_base)
    same = extra <= SAME_COST * max(usd_base, usd_other)
    costs = (f"costs about the same per million predictions ({fmt_usd(max(usd_base, usd_other))}"
             f" vs {fmt_usd(min(usd_base, usd_other))})" if same
             else f"costs {fmt_usd(extra)} more per million predictions")
    if p >= alpha:
        buy = "either will do" if same else f"the cheaper model, {small}, is the better buy"
        if round(pts, 1) == 0:
            return (f"{big} and {small} are equally accurate ({interval} points, McNemar "
                    f"{fmt_p(p)}: the difference is not significant) and "
                    f"{'they cost' + costs[5:] if same else big + ' ' + costs}: {buy}.")
        way = "more" if pts > 0 else "less"
        return (f"{big} is {abs(pts):.1f} points {way} accurate than {small} ({interval}) and "
                f"{costs}, but the difference is not significant (McNemar {fmt_p(p)}): {buy}.")
    if pts > 0:
        then = "the better buy" if same else f"{fmt_usd(extra / pts)} per point per million"
        return (f"{big} is {pts:.1f} points more accurate than {small} ({interval}, McNemar "
                f"{fmt_p(p)}) and {costs}: {then}.")
    return (f"{big} is {-pts:.1f} points less accurate than {small} ({interval}, McNemar "
            f"{fmt_p(p)}) and {costs}: {small} is better" + ("." if same else " and cheaper."))


# ---------------------------------------------------------------------------------- the runs
def _evaluate_run(ref: str) -> dict[str, Any] | None:
    """An `evaluate` run (id or directory) -> {"id", "dir", "metrics"}; None for anything else."""
    from goldmine.eval.classify import load_baseline
    from goldmine.registry import Registry

    p = Path(ref).expanduser()
    if p.is_dir():
        found = str(p) if (p / "metrics.json").is_file() else None
    elif p.exists() or any(sep in ref for sep in ("/", "\\")):
        found = None  # a file or a missing path: Classifier.load says what is wrong
    else:
        try:
            row = Registry().get(ref)
        except GoldmineError:
            row = None  # Classifier.load says what is wrong
        found = row["id"] if row and row["command"].split()[0] == "evaluate" else None
    if found is None:
        return None
    try:
        return load_baseline(found)
    except GoldmineError as e:  # e.g. an evaluate run of a GPT
        raise GoldmineError(f"runs: {str(e).removeprefix('baseline: ')}") from None


def _data_record(src: dict[str, Any], text_column: str, label_column: str) -> dict[str, Any]:
    from goldmine.eval.classify import _sha256

    return {"path": str(Path(src["path"]).resolve()), "split": src["split"],
            "sha256": _sha256(Path(src["path"])), "text_column": text_column,
            "label_column": label_column}


def data_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """What differs between two evaluation data records (None when they are the same rows)."""
    out = []
    if a.get("sha256") != b.get("sha256"):
        where = (f"{a.get('path')} vs {b.get('path')}" if a.get("path") != b.get("path")
                 else f"{a.get('path')}, changed since")
        out.append(f"other rows ({where}; sha256 {str(a.get('sha256'))[:12]} vs "
                   f"{str(b.get('sha256'))[:12]})")
    for key in ("split", "text_column", "label_column"):
        if a.get(key) != b.get(key):
            out.append(f"{key.replace('_', ' ')} {a.get(key) or '-'} vs {b.get(key) or '-'}")
    return "; ".join(out) or None


def resolve_runs(cfg: CompareConfig) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """The runs (each {"ref", "model", "eval"}), the data record and the data source
    (eval/classify.resolve_data's dict), after checking that evaluate runs share their data."""
    from goldmine.eval.classify import resolve_data
    from goldmine.eval.lm import is_language_model

    runs = []
    for ref in cfg.runs:
        ev = _evaluate_run(ref)
        model = ev["metrics"]["model"]["path"] if ev else ref
        if ev is None and is_language_model(ref):
            raise GoldmineError(f"runs: {ref} is a language model (a `pretrain` or `finetune "
                                "sft` run), not a classifier; compare takes `finetune "
                                "classify` runs, `quantize` runs of them, classifier "
                                "directories or `evaluate` runs of them")
        runs.append({"ref": ref, "model": model, "eval": ev})

    from goldmine.classifier import is_image_model

    image = {r["ref"]: is_image_model(r["model"]) for r in runs}
    if any(image.values()) and not all(image.values()):
        img = next(ref for ref, yes in image.items() if yes)
        txt = next(ref for ref, yes in image.items() if not yes)
        raise GoldmineError(f"runs: {img} is an image classifier and {txt} a text classifier; "
                            "compare models that take the same inputs")
    image = all(image.values())
    from goldmine.data.images import is_image_source

    if not image and is_image_source(cfg.data):
        raise GoldmineError(f"data: {cfg.data} holds images, and the runs are text "
                            "classifiers; compare them on text")
    evaluated = [r for r in runs if r["eval"]]
    records = [(r["ref"], r["eval"]["metrics"]["data"]) for r in evaluated]
    for ref, rec in records[1:]:
        diff = data_difference(records[0][1], rec)
        if diff:
            raise GoldmineError(f"runs: {records[0][0]} and {ref} evaluated different data: "
                                f"{diff}; compare runs evaluated on the same data, or give "
                                "the model runs and --data")
    if image and (cfg.data or records):  # images: the same split, whatever size models take
        src = _image_source(cfg.data or records[0][1]["path"],
                            cfg.split if cfg.data else records[0][1]["split"])
        data = src["record"]
        for ref, rec in records:
            diff = data_difference(rec, data)
            if diff:
                raise GoldmineError(f"data: {ref} evaluated other images than "
                                    f"{cfg.data or records[0][0] + ' did'}: {diff}")
    elif cfg.data:
        src = resolve_data(cfg.data, cfg.split)
        cols = ((cfg.text_column, cfg.label_column) if src["raw"] else ("text", "label"))
        data = _data_record(src, *cols)
        for ref, rec in records:
            diff = data_difference(rec, data)
            if diff:
                raise GoldmineError(f"data: {ref} evaluated other data than --data {cfg.data}: "
                                    f"{diff}; drop --data to use the evaluated data")
    elif records:
        rec = records[0][1]
        if not Path(rec["path"]).is_file():
            raise GoldmineError(f"data: {records[0][0]} evaluated {rec['path']}, which is gone; "
                                "give --data")
        src = resolve_data(rec["path"], None)
        data = _data_record(src, rec.get("text_column") or "text",
                            rec.get("label_column") or "label")
        diff = data_difference(rec, data)
        if diff:
            raise GoldmineError(f"data: the data {records[0][0]} evaluated is not what it was: "
                                f"{diff}; give --data")
    else:
        raise GoldmineError("data: give --data (a prepared classify dataset or a labelled "
                            "file) for the models to be measured on")
    return runs, data, src


def _image_source(data: str, split: str | None) -> dict[str, Any]:
    """An image source (goldmine.data.images) for comparing image classifiers: the split
    evaluate would score, and its record (checksum of the stored images)."""
    from goldmine.data.images import checksum, evaluation_split, is_digits, read_images
    from goldmine.eval.classify import _path_text

    found = read_images(data)
    chosen, note = evaluation_split(found, split)
    split_name = chosen if found.named_splits else None
    return {"path": data, "split": split_name, "read_split": chosen, "note": note,
            "dataset": None if is_digits(data) else Path(found.source), "raw": False,
            "image": True,
            "record": {"path": _path_text(data), "split": split_name,
                       "sha256": checksum(found, chosen), "text_column": "image",
                       "label_column": "label"}}


def _names(runs: list[dict[str, Any]]) -> list[str]:
    """Short names for tables and sentences: the reference as typed, or the last part of a path;
    a name given twice gets #2, #3."""
    out, seen = [], Counter()
    for r in runs:
        ref = str(r["ref"]).rstrip("/\\")
        name = Path(ref).name if any(s in ref for s in ("/", "\\")) else ref
        if name == "model":  # .../RUN/model: the run's name says more
            name = Path(ref).parent.name or name
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def param_count(model) -> int | None:
    """Parameters of a loaded classifier. int8 models (goldmine.quantize) keep their weights in
    buffers, so those count too: an int8 model has as many parameters as its fp32 source."""
    from goldmine.quantize import Int8Embedding, Int8Linear

    if not hasattr(model, "parameters"):
        return None
    seen, total = set(), 0
    tensors = list(model.parameters())
    for m in model.modules():
        if isinstance(m, (Int8Linear, Int8Embedding)):
            tensors += [m.weight] + ([m.bias] if getattr(m, "bias", None) is not None else [])
    for t in tensors:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel()
    return total


def weights_mb(path: Path) -> float:
    """Size of the weights files in a model directory (config and tokenizer files excluded)."""
    from goldmine.quantize import WEIGHT_SUFFIXES

    return sum(f.stat().st_size for f in Path(path).iterdir()
               if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES)) / 1e6


# ---------------------------------------------------------------------------------- the report
def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def write_report(path: Path, res: dict[str, Any]) -> Path:
    from goldmine.files import write_text

    d, t = res["data"], res["timing"]
    lines = ["# Is the bigger model worth it?", "",
             f"- data: `{d['path']}`" + (f", split `{d['split']}`" if d["split"] else "")
             + f"; {d['n']:,} rows, the same for every model (sha256 `{d['sha256'][:12]}`)",
             f"- baseline: `{res['baseline']}`",
             f"- intervals: percentile bootstrap, {res['bootstrap']['resamples']:,} resamples "
             f"of the rows (seed {res['bootstrap']['seed']}), 95%; differences paired",
             f"- speed: measured on this machine's CPU ({t['threads']} threads), models taking "
             f"turns, median of {t['reps']} repetitions; latency one text at a time, throughput "
             f"in batches of {t['batch_size']}, tokenization included",
             f"- cost: ${res['pricing']['price_per_hour']:g} per hour "
             f"({res['pricing']['from']}) at {res['pricing']['utilization']:g} utilization, "
             "divided by the throughput", "",
             "| model | parameters | size MB | accuracy % (95% CI) | macro F1 % (95% CI) | "
             "latency ms/example | examples/s | $ per 1M predictions |",
             "|---|---|---|---|---|---|---|---|"]
    for m in res["models"]:
        params = f"{m['parameters']:,}" if m["parameters"] is not None else "—"
        lines.append(
            f"| {m['name']} | {params} | {m['size_mb']:.1f} | {_pct(m['accuracy'])} "
            f"({_pct(m['accuracy_ci'][0])}–{_pct(m['accuracy_ci'][1])}) | {_pct(m['f1_macro'])} "
            f"({_pct(m['f1_macro_ci'][0])}–{_pct(m['f1_macro_ci'][1])}) | "
            f"{m['latency_ms']:.2f} | {m['examples_per_s']:,.1f} | {fmt_usd(m['usd_per_1m'])} |")
    lines += ["", f"## Against {res['baseline']}", "",
              "| model | Δ accuracy points (95% CI) | Δ macro F1 points (95% CI) | only baseline "
              "right | only model right | McNemar p (exact) | Δ $ per 1M |",
              "|---|---|---|---|---|---|---|"]
    for c in res["pairs"]:
        lo, hi = c["accuracy_diff_ci"]
        flo, fhi = c["f1_macro_diff_ci"]
        lines.append(f"| {c['model']} | {100 * c['accuracy_diff']:+.1f} ({100 * lo:+.1f} to "
                     f"{100 * hi:+.1f}) | {100 * c['f1_macro_diff']:+.1f} ({100 * flo:+.1f} to "
                     f"{100 * fhi:+.1f}) | {c['only_baseline_right']:,} | "
                     f"{c['only_model_right']:,} | {c['mcnemar_p']:.4g} | "
                     f"{c['usd_per_1m_diff']:+.4g} |")
    lines += [""] + [c["sentence"] for c in res["pairs"]]
    lines += ["", "![accuracy against cost per million predictions](compare.png)", ""]
    return write_text(path, "\n".join(lines))


def compare_png(models: list[dict[str, Any]], baseline: str, path: Path) -> Path:
    """Accuracy with its 95% interval against cost per million predictions (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for m in models:
        acc = 100 * m["accuracy"]
        err = [[acc - 100 * m["accuracy_ci"][0]], [100 * m["accuracy_ci"][1] - acc]]
        color = BLUE if m["name"] == baseline else GOLD
        ax.errorbar([m["usd_per_1m"]], [acc], yerr=err, fmt="o", color=color, ecolor=color,
                    capsize=4, markersize=7)
        ax.annotate(m["name"], (m["usd_per_1m"], acc), textcoords="offset points",
                    xytext=(8, 4), fontsize=9)
    ax.set_xscale("log")
    costs = [m["usd_per_1m"] for m in models]
    if max(costs) < 10 * min(costs):  # within a decade log ticks miss the points: mark theirs
        ax.set_xticks(sorted(set(costs)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_usd(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("USD per million predictions (log scale)")
    ax.set_ylabel("accuracy % (95% bootstrap CI)")
    ax.set_title(f"is it worth it? (baseline {baseline}, in blue)")
    ax.grid(alpha=0.3, which="both")
    ax.margins(x=0.25, y=0.15)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- command
def compare(cfg: CompareConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine compare` (see the module docstring). Returns what --json prints: {run_id,
    run_dir, data, baseline, models [...], pairs [...], sentences, pricing, timing, bootstrap,
    report, plot}."""
    import torch

    from goldmine.classifier import Classifier
    from goldmine.cost.hardware import get_hardware
    from goldmine.cost.serving import cost_per_million
    from goldmine.eval.classify import label_mapper, read_labelled
    from goldmine.files import write_json
    from goldmine.progress import info, progress_bar
    from goldmine.quantize import LATENCY_BATCHES, _rep_times
    from goldmine.registry import run_id_for_path, start_run
    from goldmine.runtime import tune_cpu_allocator

    cfg = (cfg or CompareConfig()).update(overrides)
    cfg.validate()
    tune_cpu_allocator()
    runs, data, src = resolve_runs(cfg)
    names = _names(runs)
    base_i = 0
    if cfg.baseline is not None:
        hits = [i for i, r in enumerate(runs) if cfg.baseline in (
            r["ref"], names[i], run_id_for_path(r["model"]), r["eval"] and r["eval"]["id"])]
        if not hits:
            raise GoldmineError(f"baseline: {cfg.baseline!r} is not one of the runs compared "
                                f"({', '.join(names)})")
        base_i = hits[0]

    # -- the price of an hour, before anything slow ----------------------------------------------
    if cfg.price_per_hour is not None:
        price, price_from = cfg.price_per_hour, "given"
    else:
        hw = get_hardware(cfg.hardware, cfg.hardware_file)
        if hw.price_per_gpu_hour is None:
            raise GoldmineError(f"hardware: {hw.name} has no price in the catalog; give "
                                "--price-per-hour")
        price, price_from = hw.price_per_gpu_hour, f"{hw.name}: {hw.source}"

    # -- the models (all on CPU, where they are timed) and one label order -----------------------
    clfs = []
    for r, name in zip(runs, names):
        try:
            clfs.append(Classifier.load(r["model"], device="cpu"))
        except GoldmineError as e:
            raise GoldmineError(f"runs: {name}: {e}") from None
    labels = clfs[base_i].labels
    for name, clf in zip(names, clfs):
        if set(clf.labels) != set(labels):
            only_b = sorted(set(labels) - set(clf.labels))
            only_m = sorted(set(clf.labels) - set(labels))
            raise GoldmineError(
                f"runs: {names[base_i]} and {name} know different labels: only "
                f"{names[base_i]} has {', '.join(only_b) or 'none'}; only {name} has "
                f"{', '.join(only_m) or 'none'}; compare models trained on the same labels")

    # -- the rows ---------------------------------------------------------------------------------
    path = Path(data["path"])
    inputs = None  # images: each model's (n, C, H, W), read at its own size and mode
    if src.get("image"):
        from goldmine.data.images import read_images

        shapes: dict[tuple, Any] = {}
        for clf in clfs:
            key = (clf.size, clf.mode)
            if key not in shapes:
                shapes[key] = read_images(src["path"], size=clf.size, mode=clf.mode,
                                          splits=(src["read_split"],))
                for message in shapes[key].messages():
                    info(f"[yellow]{message}[/]")
        inputs = [shapes[(c.size, c.mode)].splits[src["read_split"]].pixels for c in clfs]
        first = shapes[(clfs[base_i].size, clfs[base_i].mode)].splits[src["read_split"]]
        rows = {"texts": inputs[base_i], "labels": list(first.labels), "read": len(first),
                "skipped": {}, "examples": {}}
    else:
        rows = read_labelled(path, data["text_column"], data["label_column"])
    for reason, count in rows["skipped"].items():
        info(f"[yellow]{count:,} row(s) skipped ({reason.replace('_', ' ')}), e.g. "
             f"{rows['examples'][reason][0]}[/]")
    if not len(rows["texts"]):
        raise GoldmineError(f"data: {path} has no rows with both a text and a label "
                            f"({rows['read']:,} read)")
    to_model = label_mapper(labels)
    mapped = [to_model(x) for x in rows["labels"]]
    unknown = Counter(str(raw) for raw, m in zip(rows["labels"], mapped) if m is None)
    if unknown:
        shown = ", ".join(f"{lab!r} ({n:,})" for lab, n in unknown.most_common(10))
        raise GoldmineError(f"data: {path} has labels the models do not know: {shown}; the "
                            f"models' labels: {', '.join(labels)}")
    index = {lab: i for i, lab in enumerate(labels)}
    y_true = np.array([index[m] for m in mapped], dtype=np.int64)
    texts = rows["texts"]
    n, k, bs = len(texts), len(labels), cfg.batch_size

    with start_run("compare", cfg.to_dict(), out=cfg.out) as run:
        for r, clf in zip(runs, clfs):
            run.add_parent_from_path(r["eval"]["dir"] if r["eval"] else clf.path)
        run.add_parent_from_path(src["dataset"] or path)

        # predictions, then the timing: the models take turns over the same texts
        single = [[t] for t in texts[:LATENCY_BATCHES]]
        batched = [texts[i:i + bs] for i in range(0, min(n, bs * LATENCY_BATCHES), bs)]
        if inputs is not None:  # images: lists, which a model of another size resizes
            batched = [list(b) for b in batched]
        steps = len(clfs) * (n + 2 * (1 + cfg.reps))
        preds = np.zeros((len(clfs), n), dtype=np.int64)
        with progress_bar() as bar, torch.inference_mode():
            task = bar.add_task("predict", total=steps, stats=f"{len(clfs)} models, {n:,} rows")
            for j, clf in enumerate(clfs):
                order = np.array([index[lab] for lab in clf.labels])
                own = texts if inputs is None else inputs[j]
                for start in range(0, n, bs * 8):
                    part = own[start:start + bs * 8]
                    preds[j, start:start + len(part)] = order[
                        clf.predict_proba(part, bs).argmax(axis=1)]
                    bar.advance(task, len(part))
            bar.update(task, description="timing", stats="models taking turns")
            fns = [lambda b, c=c: c.predict_proba(b, len(b)) for c in clfs]
            tick = lambda: bar.advance(task)  # noqa: E731
            one_ms = _rep_times(fns, single, cfg.reps, 1, tick)
            batch_ms = _rep_times(fns, batched, cfg.reps, 1, tick)
        per_batch = sum(map(len, batched)) / len(batched)

        boot = bootstrap_scores(y_true, preds, k, cfg.bootstrap, cfg.seed)
        models = []
        for j, (r, clf, name) in enumerate(zip(runs, clfs, names)):
            throughput = 1000 * per_batch / float(np.median(batch_ms[j]))
            models.append({
                "name": name, "ref": r["ref"], "run_id": clf.run_id, "path": str(clf.path),
                "evaluate_run": r["eval"]["id"] if r["eval"] else None,
                "quantization": (clf.meta.get("quantization") or {}).get("method"),
                "parameters": param_count(clf.model), "size_mb": weights_mb(clf.path),
                "accuracy": float((preds[j] == y_true).mean()),
                "accuracy_ci": list(percentile_ci(boot["accuracy"][:, j])),
                "f1_macro": macro_f1(y_true, preds[j], k),
                "f1_macro_ci": list(percentile_ci(boot["f1_macro"][:, j])),
                "latency_ms": float(np.median(one_ms[j])),
                "examples_per_s": throughput,
                "usd_per_1m": cost_per_million(throughput, price, cfg.utilization)})

        base = models[base_i]
        pairs = []
        for j, m in enumerate(models):
            if j == base_i:
                continue
            right_b, right_m = preds[base_i] == y_true, preds[j] == y_true
            test = mcnemar(int((right_b & ~right_m).sum()), int((~right_b & right_m).sum()))
            acc_d = boot["accuracy"][:, j] - boot["accuracy"][:, base_i]
            f1_d = boot["f1_macro"][:, j] - boot["f1_macro"][:, base_i]
            diff = m["accuracy"] - base["accuracy"]
            ci = percentile_ci(acc_d)
            usd_d = m["usd_per_1m"] - base["usd_per_1m"]
            pairs.append({
                "baseline": base["name"], "model": m["name"],
                "accuracy_diff": diff, "accuracy_diff_ci": list(ci),
                "f1_macro_diff": m["f1_macro"] - base["f1_macro"],
                "f1_macro_diff_ci": list(percentile_ci(f1_d)),
                "only_baseline_right": test["only_a"], "only_model_right": test["only_b"],
                "both_right": int((right_b & right_m).sum()),
                "both_wrong": int((~right_b & ~right_m).sum()),
                "mcnemar_p": test["p"], "mcnemar_chi2": test["chi2"],
                "mcnemar_p_chi2": test["p_chi2"], "significant": test["p"] < ALPHA,
                "usd_per_1m_diff": usd_d,
                "usd_per_point": (usd_d / (100 * diff) if diff and test["p"] < ALPHA
                                  else None),
                "sentence": verdict(base["name"], m["name"], diff, ci, test["p"],
                                    base["usd_per_1m"], m["usd_per_1m"])})

        res = {"format": FORMAT, "run_id": run.id, "run_dir": str(run.dir),
               "data": {**data, "n": n, "rows_read": rows["read"], "skipped": rows["skipped"],
                        "note": src.get("note")},
               "labels": labels, "baseline": base["name"], "models": models, "pairs": pairs,
               "sentences": [p["sentence"] for p in pairs],
               "pricing": {"price_per_hour": price, "from": price_from,
                           "utilization": cfg.utilization},
               "timing": {"threads": torch.get_num_threads(), "reps": cfg.reps,
                          "batch_size": bs, "latency_texts": len(single),
                          "throughput_texts": sum(map(len, batched))},
               "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": LEVEL},
               "report": str(run.dir / "report.md"), "plot": str(run.dir / "compare.png")}
        write_json(run.dir / "compare.json", res)
        write_report(run.dir / "report.md", res)
        compare_png(models, base["name"], run.dir / "compare.png")
        for name in ("compare.json", "report.md", "compare.png"):
            run.add_artifact(name.rsplit(".", 1)[0], run.dir / name)
        metrics: dict[str, Any] = {"n": n}
        for m in models:
            for key in ("accuracy", "f1_macro", "examples_per_s", "usd_per_1m"):
                metrics[f"{m['name']}/{key}"] = m[key]
        for c in pairs:
            metrics[f"{c['model']}/mcnemar_p"] = c["mcnemar_p"]
        run.log_metrics(metrics)
    info(f"compared {len(models)} models on {n:,} rows → {res['report']}")
    return res
