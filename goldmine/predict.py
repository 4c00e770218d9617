"""`goldmine predict`: label files with a fine-tuned classifier, streamed in batches.

    goldmine predict --model RUN reviews.csv                  # -> reviews.predictions.jsonl
    goldmine predict --model RUN a.jsonl b.txt --out labelled.csv --top-k 2

Inputs are read with goldmine.data.tables (CSV/TSV/JSONL/JSON/Parquet; `.txt`/`.md` are one
text per non-blank line). A folder gives its files; a prepared dataset folder its split files.

Output, chosen by the suffix of `--out` (default: `<input stem>.predictions.jsonl` beside each
input; an existing folder, or a path ending in "/", gets one such file per input):

- `.jsonl`: the input fields, then `label` (the most likely label) and `probabilities`
  {label: p}, most likely first (only the `--top-k` most likely when given);
- `.csv`: the input columns, `label`, one `p_<label>` column per label (with `--top-k`, only
  the k most likely are filled) and `error`. Columns come from the first row of each input;
  fields that appear only later in a JSONL input are left out of a CSV (use .jsonl to keep
  them; the count is reported).

An input field named like an output field (`label`, `probabilities`, `error`, `p_<label>`)
is kept as `input_<name>`. Rows without text and rows that cannot be read are written too, with
`label: null` and an `error`, and counted. Several inputs with one `--out` file go into it in
order. An output file appears (atomically) only when complete.

Memory is bounded by a batch of rows, whatever the input size.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from goldmine.config import PredictConfig
from goldmine.errors import GoldmineError

OUT_SUFFIXES = (".jsonl", ".csv")
OUTPUT_FIELDS = ("label", "probabilities", "error")
PROB_DECIMALS = 6


def _text_field(path: Path, text_column: str) -> str:
    from goldmine.data.tables import TEXT_SUFFIXES

    return "text" if path.suffix.lower() in TEXT_SUFFIXES else text_column


def _rows(path: Path) -> Iterator:
    from goldmine.data.tables import detect_encoding, iter_rows

    return iter_rows(path, detect_encoding(path), unit="line")


def _first_columns(path: Path) -> list[str]:
    """The fields of the first readable row of a file (empty if none is readable)."""
    rows = _rows(path)
    try:
        for row in rows:
            if row.fields is not None:
                return [str(k) for k in row.fields]
    finally:
        close = getattr(rows, "close", None)
        if close:
            close()
    return []


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    return isinstance(value, str) and not value.strip()


def plan_outputs(files: list[Path], out: str | None) -> list[tuple[Path, list[Path]]]:
    """[(output path, [inputs written to it]), ...] for --out (see the module docstring)."""
    if out is not None and (out.endswith(("/", os.sep)) or Path(out).is_dir()):
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        pairs = [(folder / f"{f.stem}.predictions.jsonl", f) for f in files]
    elif out is not None:
        target = Path(out)
        if target.suffix.lower() not in OUT_SUFFIXES:
            raise GoldmineError(f"out: {target}: unsupported output type "
                                f"{target.suffix or '(none)'!r}; use .jsonl or .csv")
        return [(target, list(files))]
    else:
        pairs = [(f.parent / f"{f.stem}.predictions.jsonl", f) for f in files]
    seen: dict[Path, Path] = {}
    for target, f in pairs:
        key = target.resolve()
        if key in seen:
            raise GoldmineError(f"out: {seen[key]} and {f} would both write {target}; name "
                                "an output folder or file with --out")
        seen[key] = f
    return [(t, [f]) for t, f in pairs]


class _Writer:
    """One output file, written to a temporary file and renamed into place on success."""

    def __init__(self, path: Path, labels: list[str], columns: list[str] | None):
        self.path = path
        self.labels = labels
        self.csv = path.suffix.lower() == ".csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=".partial")
        self.f = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self.dropped_fields = 0  # CSV: rows with fields not in the header
        if self.csv:
            self.columns = list(columns or [])
            self.header = self.columns + ["label"] + [f"p_{lab}" for lab in labels] + ["error"]
            self.w = csv.writer(self.f)
            self.w.writerow(self.header)

    def write(self, fields: dict[str, Any], label: str | None,
              probs: dict[str, float] | None, error: str | None) -> None:
        if not self.csv:
            rec = dict(fields)
            rec["label"] = label
            rec["probabilities"] = probs
            if error is not None:
                rec["error"] = error
            self.f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            return
        if any(k not in self.columns for k in fields):
            self.dropped_fields += 1
        cells = [_cell(fields.get(c)) for c in self.columns]
        cells.append("" if label is None else label)
        cells += ["" if probs is None or lab not in probs else repr(probs[lab])
                  for lab in self.labels]
        cells.append(error or "")
        self.w.writerow(cells)

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        Path(self.tmp).unlink(missing_ok=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _rename_clashes(fields: dict[str, Any], taken: frozenset[str]) -> dict[str, Any]:
    """Input fields named like output fields (label, probabilities, error, p_<label>) become
    input_<name>."""
    if not any(k in taken for k in fields):
        return fields
    return {(f"input_{k}" if k in taken else k): v for k, v in fields.items()}


def _label_batch(clf, buffer: list[tuple[dict[str, Any], str | None, str | None]],
                 writer: _Writer, top_k: int, counts: Counter, batch_size: int) -> int:
    """Label the buffered rows that have text, write all of them in order, empty the buffer.
    Returns how many texts were truncated."""
    labels = clf.labels
    texts = [t for _, t, _ in buffer if t is not None]
    probs = clf.predict_proba(texts, batch_size) if texts else None
    j = 0
    for fields, text, error in buffer:
        if text is None:
            writer.write(fields, None, None, error)
            continue
        p = probs[j]
        j += 1
        order = p.argsort()[::-1][:top_k]
        label = labels[int(order[0])]
        counts[label] += 1
        writer.write(fields, label,
                     {labels[int(i)]: round(float(p[i]), PROB_DECIMALS) for i in order}, None)
    buffer.clear()
    return clf.last_truncated if texts else 0


def predict(cfg: PredictConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine predict` (see the module docstring).

    Returns {run_id, outputs: [paths], rows, errors, errors_by_reason, labels_count: {label: n},
    truncated, seconds, rows_per_s}.
    """
    from goldmine.classifier import Classifier
    from goldmine.data.tables import collect_table_files
    from goldmine.files import write_json
    from goldmine.progress import info, progress_bar
    from goldmine.registry import start_run
    from goldmine.runtime import tune_cpu_allocator

    cfg = (cfg or PredictConfig()).update(overrides)
    cfg.validate()
    tune_cpu_allocator()  # inference on CPU: keep freed activations mapped (see runtime.py)
    if not cfg.model:
        raise GoldmineError("model: give --model (a fine-tuned classifier's run id or directory)")
    files = collect_table_files(cfg.inputs)
    plan = plan_outputs(files, cfg.out)
    inputs = {f.resolve() for f in files}
    for target, _ in plan:
        if target.resolve() in inputs:
            raise GoldmineError(f"out: {target} is also an input; name another output")

    clf = Classifier.load(cfg.model, device=cfg.device, max_length=cfg.max_length)
    labels = clf.labels
    top_k = min(cfg.top_k, len(labels)) if cfg.top_k else len(labels)
    taken = frozenset(OUTPUT_FIELDS) | {f"p_{lab}" for lab in labels}
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    n_rows = truncated = dropped = 0
    total_bytes = sum(f.stat().st_size for f in files)

    with start_run("predict", cfg.to_dict()) as run:
        run.add_parent_from_path(clf.path)
        for f in files:
            run.add_parent_from_path(f)
        t0 = time.perf_counter()
        outputs: list[str] = []
        with progress_bar(unit_column=False) as bar:
            task = bar.add_task("predict", total=total_bytes or None, stats="")
            for target, sources in plan:
                columns = None
                if target.suffix.lower() == ".csv":
                    columns = []
                    for src in sources:
                        found = ([_text_field(src, cfg.text_column)]
                                 if src.suffix.lower() in (".txt", ".md") else _first_columns(src))
                        for c in _rename_clashes(dict.fromkeys(found), taken):
                            if c not in columns:
                                columns.append(c)
                writer = _Writer(target, labels, columns)
                try:
                    buffer: list[tuple[dict[str, Any], str | None, str | None]] = []
                    pending = 0  # rows in the buffer with text
                    for src in sources:
                        column = _text_field(src, cfg.text_column)
                        checked = src.suffix.lower() in (".txt", ".md")
                        for row in _rows(src):
                            n_rows += 1
                            if row.fields is None:
                                errors["unreadable"] += 1
                                buffer.append(({}, None, f"{row.where}: {row.error}"))
                            else:
                                if not checked:
                                    if column not in row.fields:
                                        shown = ", ".join(map(repr, row.fields)) or "none"
                                        raise GoldmineError(
                                            f"{row.where}: no column {column!r} (columns: "
                                            f"{shown}); choose one with --text-column")
                                    checked = True
                                fields = _rename_clashes(row.fields, taken)
                                text = row.fields.get(column)
                                if _empty(text):
                                    errors["no_text"] += 1
                                    buffer.append((fields, None, f"no text in {column!r}"))
                                else:
                                    buffer.append((fields, text if isinstance(text, str)
                                                   else str(text), None))
                                    pending += 1
                            if pending >= cfg.batch_size or len(buffer) >= 4 * cfg.batch_size:
                                truncated += _label_batch(clf, buffer, writer, top_k, counts,
                                                          cfg.batch_size)
                                pending = 0
                            bar.advance(task, row.nbytes)
                            if n_rows % 256 == 0:
                                rate = n_rows / max(time.perf_counter() - t0, 1e-9)
                                bar.update(task, stats=f"{n_rows:,} rows | {rate:,.0f} rows/s")
                    if buffer:
                        truncated += _label_batch(clf, buffer, writer, top_k, counts,
                                                  cfg.batch_size)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
                dropped += writer.dropped_fields
                outputs.append(str(target))
            rate = n_rows / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, stats=f"{n_rows:,} rows | {rate:,.0f} rows/s")
        seconds = time.perf_counter() - t0
        n_errors = sum(errors.values())
        if n_errors:
            info(f"[yellow]{n_errors:,} row(s) not labelled: "
                 + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in errors.items())
                 + " (written with label null and an error)[/]")
        if truncated:
            info(f"[yellow]{truncated:,} text(s) longer than {clf.max_length} tokens were "
                 "truncated[/]")
        if dropped:
            info(f"[yellow]{dropped:,} row(s) had fields not in the CSV header (left out; "
                 "write .jsonl to keep them)[/]")
        result = {"run_id": run.id, "outputs": outputs, "rows": n_rows, "errors": n_errors,
                  "errors_by_reason": dict(errors),
                  "labels_count": {lab: counts[lab] for lab in labels},
                  "truncated": truncated, "seconds": seconds,
                  "rows_per_s": n_rows / seconds if seconds > 0 else None,
                  "model": str(clf.path), "labels": labels}
        run.log_metrics({"rows": n_rows, "errors": n_errors, "truncated": truncated,
                         "seconds": seconds, "rows_per_s": result["rows_per_s"]})
        for i, path in enumerate(outputs):
            run.add_artifact("predictions" if len(outputs) == 1 else f"predictions-{i}", path)
        write_json(run.dir / "predict.json", result)
        info(f"{n_rows - n_errors:,} of {n_rows:,} rows labelled in {seconds:.1f}s "
             f"({result['rows_per_s'] or 0:,.0f} rows/s) → {', '.join(outputs)}")
    return result
