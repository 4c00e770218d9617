"""report.md and its PNG charts for a prepared dataset (see goldmine/data/prepare.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GOLD, BLUE, GREY, RED = "#c9a227", "#1f4e79", "#9a9a9a", "#b03a2e"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def counts_chart(counts: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: read, kept, duplicates, and each rejection reason."""
    rows = [("read", counts["read"], GREY), ("kept", counts["kept"], GOLD),
            ("exact duplicates", counts["exact_duplicates"], BLUE),
            ("near duplicates", counts["near_duplicates"], BLUE)]
    rows += [(f"rejected: {r}", c, RED) for r, c in counts["rejected_by_reason"].items()]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.38 * len(rows)), dpi=110)
    names, values, colors = zip(*rows)
    y = np.arange(len(rows))[::-1]
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, names)
    for yi, v in zip(y, values):
        ax.text(v, yi, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.set_title("where every row went")
    ax.margins(x=0.15)
    return _save(fig, path)


def lengths_chart(lengths: np.ndarray, path: Path, unit: str = "characters") -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    if len(lengths):
        hi = max(int(np.percentile(lengths, 99.5)), 1)
        ax.hist(np.clip(lengths, 0, hi), bins=min(60, max(hi, 1)), color=GOLD)
        for q, style in ((50, "-"), (95, "--")):
            v = np.percentile(lengths, q)
            ax.axvline(v, color=BLUE, linestyle=style, linewidth=1, label=f"p{q} = {v:,.0f}")
        ax.legend()
    ax.set_xlabel(f"length of kept rows ({unit}; clipped at p99.5)")
    ax.set_ylabel("rows")
    ax.set_title("length distribution")
    return _save(fig, path)


def labels_chart(before: dict[str, int], after: dict[str, int], path: Path) -> Path:
    """Train label counts before and after balancing/augmentation (grouped bars)."""
    labels = sorted(set(before) | set(after), key=lambda k: -before.get(k, 0))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels) + 2), 4), dpi=110)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [before.get(k, 0) for k in labels], 0.4, color=GREY, label="kept")
    ax.bar(x + 0.2, [after.get(k, 0) for k in labels], 0.4, color=GOLD,
           label="written (after balancing and augmentation)")
    ax.set_xticks(x, labels, rotation=60 if len(labels) > 8 else 0, ha="right" if len(labels) > 8
                  else "center", fontsize=8 if len(labels) > 20 else 10)
    ax.set_ylabel("train rows")
    ax.set_title("label distribution (train)")
    ax.legend()
    return _save(fig, path)


def pii_chart(pii: dict[str, int], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 0.9 + 0.4 * len(pii)), dpi=110)
    names = list(pii)[::-1]
    ax.barh(names, [pii[k] for k in names], color=RED)
    ax.set_xlabel("replacements")
    ax.set_title("personal data replaced by placeholders")
    return _save(fig, path)


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in r) + " |"
            for r in rows]
    return "\n".join(out)


def write_report(out: Path, manifest: dict[str, Any], lengths: np.ndarray) -> Path:
    """Write the charts and report.md into `out`; returns the report's path."""
    c = manifest["counts"]
    read = max(c["read"], 1)
    counts_chart(c, out / "counts.png")
    lengths_chart(lengths, out / "lengths.png",
                  "characters; chat: the whole conversation" if manifest["kind"] == "chat"
                  else "characters")
    lines = [f"# Dataset report: {manifest['kind']}", "",
             f"Prepared by `goldmine data prepare` (run `{manifest['run_id']}`) on "
             f"{manifest['created']} in {manifest['seconds']:.1f} s.", "",
             "## Rows", "",
             _table(("", "rows", "share of read"), [
                 ("read", c["read"], "100%"),
                 ("kept", c["kept"], f"{c['kept'] / read:.1%}"),
                 ("exact duplicates", c["exact_duplicates"], f"{c['exact_duplicates'] / read:.1%}"),
                 ("near duplicates", c["near_duplicates"], f"{c['near_duplicates'] / read:.1%}"),
                 ("rejected", c["rejected"], f"{c['rejected'] / read:.1%}")]), "",
             "kept + exact duplicates + near duplicates + rejected = read. Rejected rows are in "
             "`rejected.jsonl` with their file, line and reason; duplicates in `duplicates.jsonl` "
             "with the row they duplicate.", "", "![rows](counts.png)", ""]
    if c.get("label_conflicts"):
        lines += [f"**{c['label_conflicts']:,} duplicates carried a different label** than the row "
                  "kept in their place (`label` and `duplicate_of.label` in `duplicates.jsonl`): "
                  "worth a look, they are often labelling mistakes.", ""]
    if c["rejected_by_reason"]:
        lines += ["### Rejected, by reason", "",
                  _table(("reason", "rows"), list(c["rejected_by_reason"].items())), ""]
    lines += ["## Splits", "", _table(("split", "file", "rows written", "original rows"), [
        (k, manifest["files"][k], v, c["original_by_split"].get(k, 0))
        for k, v in c["splits"].items()]), ""]
    if c["oversampled"] or c["augmented"]:
        lines += [f"Train also holds {c['oversampled']:,} oversampled copies and "
                  f"{c['augmented']:,} augmented rows (field `origin`).", ""]
    if manifest.get("folds"):
        f = manifest["folds"]
        lines += [f"{f['k']}-fold cross-validation indices in the `fold` field of train rows "
                  f"(sizes {', '.join(map(str, f['sizes']))}).", ""]
    if manifest["kind"] == "classify":
        before = c["labels_before_balance"].get("train", {})
        after = c["labels"].get("train", {})
        labels_chart(before, after, out / "labels.png")
        splits = list(c["labels"])
        lines += ["## Labels", "", _table(("label", *[f"{s} (written)" for s in splits]), [
            (lab, *[c["labels"][s].get(lab, 0) for s in splits]) for lab in manifest["labels"]]),
            "", "![labels](labels.png)", ""]
    lines += ["## Lengths", "", "![lengths](lengths.png)", ""]
    if len(lengths):
        q = np.percentile(lengths, [5, 50, 95])
        lines += [f"Characters per kept row: min {int(lengths.min()):,}, p5 {q[0]:,.0f}, "
                  f"median {q[1]:,.0f}, p95 {q[2]:,.0f}, max {int(lengths.max()):,}.", ""]
    lines += ["## Personal data", ""]
    if c["pii"]:
        pii_chart(c["pii"], out / "pii.png")
        lines += [_table(("kind", "replaced"), list(c["pii"].items())), "", "![pii](pii.png)", ""]
    else:
        lines += ["None found." if manifest["options"]["pii"] else "Scrubbing was off (--no-pii).",
                  ""]
    lines += ["## Inputs", "", _table(("file", "rows", "bytes", "encoding", "sha256"), [
        (i["path"], i["rows"], i["bytes"], f"{i['encoding']} ({i['encoding_reason']})",
         i["sha256"][:16]) for i in manifest["inputs"]]), ""]
    path = out / "report.md"
    from goldmine.files import write_text

    write_text(path, "\n".join(lines))
    return path
