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

An image classifier (`finetune classify --arch cnn`) labels images instead (`predict_images`):
image files, folders of them (searched recursively; each file is a row with its path in
`image`), or the labelled forms training reads (`digits`, a folder of MNIST-format IDX files,
a folder of label folders; each image a row with `image`, its `split` and its label as
`input_label`). Images of another size or mode than the model's are resized or converted, and
counted; a file that cannot be decoded is written with `label: null` and an error. Text given
to an image model, and images to a text model, are errors that say so.
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
    from goldmine.classifier import is_image_model
    from goldmine.data.images import is_image_source

    if is_image_model(cfg.model):
        return predict_images(cfg)
    for inp in cfg.inputs:
        if is_image_source(inp):
            raise GoldmineError(f"{inp}: images, and {cfg.model} is a text classifier; give "
                                "it .csv/.tsv/.jsonl/.txt files, or label images with an image "
                                "classifier (`finetune classify --arch cnn`)")
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


# ---------------------------------------------------------------------------------------------
# images (an --arch cnn model)
# ---------------------------------------------------------------------------------------------
def _image_units(inputs: list[str]) -> list[tuple[Path, str]]:
    """Each input as (path, kind): "file" (one image), "loose" (a folder of image files) or
    "dataset" (digits, IDX files, label folders); text inputs are an error."""
    from goldmine.data.images import IDX_IMAGES, IMAGE_SUFFIXES, is_digits, is_image_source

    if not inputs:
        raise GoldmineError("no inputs given: name image files or folders, an IDX folder or "
                            "digits")
    units = []
    for raw in inputs:
        p = Path(raw)
        if is_digits(raw):
            units.append((p, "dataset"))
        elif not p.exists():
            raise GoldmineError(f"{p}: not found")
        elif p.is_file() and IDX_IMAGES.match(p.name):
            units.append((p.parent, "dataset"))
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise GoldmineError(f"{p}: not an image ({p.suffix or 'no extension'}); the "
                                    "model is an image classifier (--arch cnn): give image "
                                    f"files ({', '.join(IMAGE_SUFFIXES)}), folders of them, an "
                                    "IDX folder or digits")
            units.append((p, "file"))
        elif any(f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
            units.append((p, "loose"))
        elif is_image_source(p):
            units.append((p, "dataset"))
        else:
            raise GoldmineError(f"{p}: no images in the folder; the model is an image "
                                "classifier (--arch cnn): give image files, folders of them, "
                                "an IDX folder or digits")
    return units


def _image_rows(clf, path: Path, kind: str, counts: Counter) -> Iterator[
        tuple[dict[str, Any], Any, str | None]]:
    """(fields, pixels (C, H, W) or None, error) per image of one input, at the model's size
    and mode; `counts` gets "resized" and "converted"."""
    from goldmine.data.images import IMAGE_SUFFIXES, _hidden, open_image, read_images, to_array

    if kind == "dataset":
        data = read_images(path, size=clf.size, mode=clf.mode, progress=False)
        counts["resized"] += data.resized
        counts["converted"] += data.converted
        for note in data.messages():
            from goldmine.progress import info

            info(f"[yellow]{note}[/]")
        for split, images in data.splits.items():
            for i, where in enumerate(images.where):
                fields = {"image": where}
                if data.named_splits:
                    fields["split"] = split
                fields["input_label"] = images.labels[i]
                yield fields, images.pixels[i], None
        return
    files = [path] if kind == "file" else sorted(
        f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        and not _hidden(f, path))
    for f in files:
        try:
            pixels, resized, converted = to_array(open_image(f, str(f)), clf.size, clf.mode)
        except GoldmineError as e:
            yield {"image": str(f)}, None, str(e)
            continue
        counts["resized"] += resized
        counts["converted"] += converted
        yield {"image": str(f)}, pixels, None


def predict_images(cfg: PredictConfig) -> dict[str, Any]:
    """`goldmine predict` with an image classifier (see the module docstring); returns the keys
    of `predict`, with `resized` and `converted` image counts."""
    from goldmine.classifier import Classifier
    from goldmine.files import write_json
    from goldmine.progress import info, progress_bar
    from goldmine.registry import start_run

    if cfg.text_column != "text":
        raise GoldmineError("text_column: an image classifier reads images, not a text column; "
                            "drop --text-column")
    units = _image_units(cfg.inputs)
    plan = plan_outputs([p for p, _ in units], cfg.out)
    kinds = {p: kind for p, kind in units}
    clf = Classifier.load(cfg.model, device=cfg.device, max_length=cfg.max_length)
    labels = clf.labels
    top_k = min(cfg.top_k, len(labels)) if cfg.top_k else len(labels)
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    images: Counter[str] = Counter()
    n_rows = 0
    with start_run("predict", cfg.to_dict()) as run:
        run.add_parent_from_path(clf.path)
        t0 = time.perf_counter()
        outputs: list[str] = []
        with progress_bar() as bar:
            task = bar.add_task("predict", total=None, stats="")
            for target, sources in plan:
                columns = ["image", "split", "input_label"] if any(
                    kinds[s] == "dataset" for s in sources) else ["image"]
                writer = _Writer(target, labels, columns)
                try:
                    buffer: list[tuple[dict[str, Any], Any, str | None]] = []
                    for src in sources:
                        run.add_parent_from_path(src)
                        for fields, pixels, error in _image_rows(clf, src, kinds[src], images):
                            n_rows += 1
                            if error is not None:
                                errors["unreadable"] += 1
                            buffer.append((fields, pixels, error))
                            if len(buffer) >= cfg.batch_size:
                                _label_batch(clf, buffer, writer, top_k, counts, cfg.batch_size)
                                bar.update(task, completed=n_rows, stats=f"{n_rows:,} images")
                    if buffer:
                        _label_batch(clf, buffer, writer, top_k, counts, cfg.batch_size)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
                outputs.append(str(target))
            bar.update(task, completed=n_rows, stats=f"{n_rows:,} images")
        seconds = time.perf_counter() - t0
        n_errors = sum(errors.values())
        if n_errors:
            info(f"[yellow]{n_errors:,} image(s) could not be read (written with label null and "
                 "an error)[/]")
        for what in ("resized", "converted"):
            if images[what]:
                info(f"[yellow]{images[what]:,} image(s) {what} to the model's "
                     f"{clf.describe_input()}[/]")
        result = {"run_id": run.id, "outputs": outputs, "rows": n_rows, "errors": n_errors,
                  "errors_by_reason": dict(errors),
                  "labels_count": {lab: counts[lab] for lab in labels},
                  "truncated": 0, "resized": images["resized"],
                  "converted": images["converted"], "seconds": seconds,
                  "rows_per_s": n_rows / seconds if seconds > 0 else None,
                  "model": str(clf.path), "labels": labels}
        run.log_metrics({"rows": n_rows, "errors": n_errors, "resized": images["resized"],
                         "converted": images["converted"], "seconds": seconds,
                         "rows_per_s": result["rows_per_s"]})
        for i, path in enumerate(outputs):
            run.add_artifact("predictions" if len(outputs) == 1 else f"predictions-{i}", path)
        write_json(run.dir / "predict.json", result)
        info(f"{n_rows - n_errors:,} of {n_rows:,} images labelled in {seconds:.1f}s "
             f"({result['rows_per_s'] or 0:,.0f} images/s) → {', '.join(outputs)}")
    return result
