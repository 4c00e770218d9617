"""`goldmine data prepare`: raw files in, a clean, documented dataset out - every row accounted for.

    prepare_dataset(kind="classify", inputs=["reviews.csv"], label_column="rating", out="reviews")

Two passes over the data, so memory holds a batch of rows plus a few bytes per row (hash key,
label code, split code, length), never the corpus:

  read     rows (tables.py) -> records of the kind -> cleaned, PII-scrubbed, filtered, hashed
           (records.py, in `--workers` processes). Rejections go to rejected.jsonl at once;
           candidates to a spool file, their MinHash signatures to a file beside it.
  dedup    exact, then near duplicates (dedup.py); the kept row is the first in priority
           order - with existing splits test before val before train, so nothing in test also
           sits in train. Dropped rows go to duplicates.jsonl.
  plan     splits, folds and class balance over the kept rows (splits.py).
  write    the spool streamed into train/val/test; oversampled copies and augmented rows are
           added to train only and marked with `origin`.

The directory then holds the split files (.jsonl or .parquet), rejected.jsonl, duplicates.jsonl,
manifest.json (inputs with sha256 and encoding, options, counts) and report.md with its charts.
kept + exact + near duplicates + rejected = read is checked before anything is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from array import array
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.config import PrepareConfig
from goldmine.data import splits as S
from goldmine.data.records import (
    Extractor,
    Processor,
    Rejected,
    init_worker,
    load_label_map,
    process_batch,
    reader_reason,
)
from goldmine.errors import GoldmineError

FORMAT = "goldmine-dataset/1"
BATCH_ROWS = 1000  # rows per batch sent to a worker ...
BATCH_CHARS = 1 << 20  # ... or this many characters, whichever comes first
UNDERSAMPLED = "dropped by --balance under"
AUTO_WORKERS_BYTES = 16 << 20  # --workers 0: below this, one process (no start-up cost)


# ------------------------------------------------------------------------------------ writing
class SplitWriter:
    """Rows of one split to .jsonl (streamed) or .parquet (row groups of 10k rows)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.rows = path, fmt, 0
        self._buf: list[dict] = []
        self._pq = None
        self._f = open(path, "w", encoding="utf-8") if fmt == "jsonl" else None

    def write(self, row: dict[str, Any]) -> None:
        self.rows += 1
        if self._f is not None:
            self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self._buf.append(row)
        if len(self._buf) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._buf)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.path, table.schema)
        self._pq.write_table(table.cast(self._pq.schema))
        self._buf = []

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            return
        if self._buf or self._pq is None:
            if not self._buf:  # an empty split still gets a readable file
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"source": pa.array([], pa.string())}), self.path)
                return
            self._flush()
        self._pq.close()


def _jsonl(path: Path):
    return open(path, "w", encoding="utf-8")


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()




class Rejects:
    """rejected.jsonl, written as rows are rejected, with counts per reason."""

    def __init__(self, path: Path):
        self.f = _jsonl(path)
        self.reasons: Counter = Counter()

    def add(self, source: Path | str, line: int, reason: str, detail: str, row: Any) -> None:
        self.reasons[reason] += 1
        self.f.write(_line({"source": str(source), "line": line, "reason": reason,
                            "detail": detail, "row": row}))

    def close(self) -> None:
        self.f.close()


@dataclass
class Candidates:
    """Rows that passed cleaning, waiting for deduplication: compact per-row arrays (the rows
    themselves are in the spool file, their MinHash signatures in a file beside it)."""

    keys: bytearray = field(default_factory=bytearray)  # 16-byte exact keys, concatenated
    file: array = field(default_factory=lambda: array("i"))  # index into the input files
    line: array = field(default_factory=lambda: array("q"))  # line / row number in that file
    label: array = field(default_factory=lambda: array("i"))  # label code (classify)
    split: array = field(default_factory=lambda: array("b"))  # given split code, -1 if none
    length: array = field(default_factory=lambda: array("q"))  # characters
    label_codes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.length)

    def add(self, rec: dict[str, Any], key: bytes, file: int, line: int, length: int) -> None:
        self.keys.extend(key)
        self.file.append(file)
        self.line.append(line)
        self.length.append(length)
        self.split.append(rec.pop("split", -1))
        if "label" in rec:
            self.label.append(self.label_codes.setdefault(rec["label"], len(self.label_codes)))

    def labels(self) -> np.ndarray | None:
        return np.frombuffer(self.label, np.int32) if len(self.label) else None


# ---------------------------------------------------------------------------------- 1. read
def read_rows(cfg: PrepareConfig, files: list[Path], encodings: dict, work: Path,
              rejects: Rejects) -> tuple[Candidates, Counter, Counter]:
    """Pass 1: every row read is either rejected or becomes a candidate.
    Returns (candidates, rows read per file, PII replacements)."""
    from goldmine.data.tables import iter_rows
    from goldmine.progress import progress_bar

    cands = Candidates()
    file_rows: Counter = Counter()
    pii: Counter = Counter()
    file_index = {f: i for i, f in enumerate(files)}
    extractor = Extractor(cfg)
    total = max(sum(f.stat().st_size for f in files), 1)
    workers = cfg.workers or ((os.cpu_count() or 1) if total > AUTO_WORKERS_BYTES else 1)
    pool = (ProcessPoolExecutor(workers, initializer=init_worker, initargs=(cfg.to_dict(),))
            if workers > 1 else None)
    local = Processor(cfg) if pool is None else None
    pending: deque = deque()
    spool = open(work / "spool.jsonl", "w", encoding="utf-8")
    sig_file = open(work / "signatures.u32", "wb")

    def collect(result, meta) -> None:
        res = result.result() if pool is not None else result
        pii.update(res["pii"])
        if res["signatures"] is not None:
            sig_file.write(np.ascontiguousarray(res["signatures"], dtype=np.uint32).tobytes())
        for (path, line, raw), r in zip(meta, res["results"]):
            if r[0] == "reject":
                rejects.add(path, line, r[1], r[2], raw)
            else:
                _, rec, key, length = r
                cands.add(rec, key, file_index[path], line, length)
                spool.write(_line(rec))

    def submit(batch, meta) -> None:
        if pool is None:
            collect(local(batch), meta)
            return
        pending.append((pool.submit(process_batch, batch), meta))
        while len(pending) > workers + 1:  # bounded: memory holds a few batches
            collect(*pending.popleft())

    batch: list[dict] = []
    meta: list[tuple] = []
    chars = done_bytes = read = 0
    t0 = time.time()
    try:
        with progress_bar(unit_column=False) as bar:
            task = bar.add_task("reading", total=total, stats="")
            for path in files:
                for row in iter_rows(path, encodings[path], unit=cfg.unit):
                    read += 1
                    file_rows[path] += 1
                    done_bytes += row.nbytes
                    if row.error is not None or row.fields is None:
                        rejects.add(path, row.line, reader_reason(row.error or ""),
                                    row.error or "unreadable", row.raw)
                        continue
                    try:
                        rec = extractor(row)
                    except Rejected as r:
                        rejects.add(path, row.line, r.reason, r.detail, row.fields)
                        continue
                    batch.append(rec)
                    raw = row.fields if cfg.kind != "text" else {"text": rec["text"][:2000]}
                    meta.append((path, row.line, raw))
                    chars += (sum(len(m["content"]) for m in rec["messages"])
                              if "messages" in rec else len(rec["text"]))
                    if len(batch) >= BATCH_ROWS or chars >= BATCH_CHARS:
                        submit(batch, meta)
                        batch, meta, chars = [], [], 0
                    if read % 1000 == 0:
                        el = max(time.time() - t0, 1e-9)
                        bar.update(task, completed=done_bytes, stats=(
                            f"{read:,} rows · {read / el:,.0f} rows/s · "
                            f"{done_bytes / el / 1e6:.1f} MB/s"))
            if batch:
                submit(batch, meta)
            while pending:
                collect(*pending.popleft())
            bar.update(task, completed=total, stats=f"{read:,} rows")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        spool.close()
        sig_file.close()
    return cands, file_rows, pii


# --------------------------------------------------------------------------------- 2. dedup
def deduplicate(cfg: PrepareConfig, cands: Candidates, work: Path) -> tuple[np.ndarray, ...]:
    """(dup_of, kind, similarity), each (n,): dup_of -1 for kept rows, else the kept row's
    index; kind 0 kept, 1 exact, 2 near."""
    from goldmine.data.dedup import find_exact_duplicates, find_near_duplicates
    from goldmine.progress import info

    n = len(cands)
    given = np.frombuffer(cands.split, np.int8)
    if cfg.split_column:  # test first, then val, then train; file order within each
        priority = np.where(given == S.TEST, 0, np.where(given == S.VAL, 1, 2))
        order = np.lexsort((np.arange(n), priority))
    else:
        order = np.arange(n)
    dup_of = np.full(n, -1, np.int64)
    kind = np.zeros(n, np.int8)
    sim = np.zeros(n, np.float32)
    if cfg.dedup == "none":
        return dup_of, kind, sim
    if n >= 50_000:
        info(f"[dim]deduplicating {n:,} rows ...[/dim]")
    exact = find_exact_duplicates(np.frombuffer(cands.keys, np.uint64).reshape(n, 2), order)
    hit = exact >= 0
    dup_of[hit], kind[hit], sim[hit] = exact[hit], 1, 1.0
    if cfg.dedup == "near":
        sigs = np.memmap(work / "signatures.u32", dtype=np.uint32, mode="r",
                         shape=(n, cfg.num_perm))
        near, near_sim = find_near_duplicates(sigs, cfg.near_threshold, order, skip=hit)
        del sigs
        hit = near >= 0
        dup_of[hit], kind[hit], sim[hit] = near[hit], 2, near_sim[hit]
    return dup_of, kind, sim


def write_duplicates(path: Path, cands: Candidates, names: list[str], dup_of: np.ndarray,
                     kind: np.ndarray, sim: np.ndarray) -> int:
    """duplicates.jsonl; returns how many duplicates carry another label than their kept row."""
    code_names = list(cands.label_codes)
    conflicts = 0
    with _jsonl(path) as f:
        for i in np.flatnonzero(dup_of >= 0).tolist():
            j = int(dup_of[i])
            entry = {"source": names[cands.file[i]], "line": cands.line[i],
                     "kind": "exact" if kind[i] == 1 else "near",
                     "similarity": round(float(sim[i]), 3),
                     "duplicate_of": {"source": names[cands.file[j]], "line": cands.line[j]}}
            if code_names:
                entry["label"] = code_names[cands.label[i]]
                entry["duplicate_of"]["label"] = code_names[cands.label[j]]
                conflicts += cands.label[i] != cands.label[j]
            f.write(_line(entry))
    return conflicts


# ---------------------------------------------------------------------------------- 3. plan
def plan(cfg: PrepareConfig, cands: Candidates, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """(split, fold, copies), each (n,): split code (-1 for dropped rows), fold (-1 outside
    train or without folds), copies to write (0 for dropped and undersampled rows)."""
    n = len(cands)
    labels = cands.labels()
    kept = np.flatnonzero(keep)
    split = np.full(n, -1, np.int8)
    if cfg.split_column:
        split[kept] = np.frombuffer(cands.split, np.int8)[kept]
    else:
        val, test = cfg.fractions()
        split[kept] = S.assign_splits(None if labels is None else labels[kept], len(kept), val,
                                      test, cfg.seed)
    train = keep & (split == S.TRAIN)
    fold = (S.assign_folds(labels, train, cfg.folds, cfg.seed) if cfg.folds
            else np.full(n, -1, np.int16))
    copies = (S.balance(labels, train, cfg.balance, cfg.seed) if labels is not None
              else np.ones(n, np.int32))
    copies[~keep] = 0
    return split, fold, copies


# --------------------------------------------------------------------------------- 4. write
@dataclass
class Written:
    files: dict[str, str]  # split -> file name
    rows: dict[str, int]  # split -> rows written
    origins: Counter  # original / oversampled / augmented
    labels_kept: dict[str, Counter]  # split -> label -> original rows
    labels_written: dict[str, Counter]  # split -> label -> rows written


def write_splits(cfg: PrepareConfig, out: Path, work: Path, cands: Candidates, names: list[str],
                 split: np.ndarray, fold: np.ndarray, copies: np.ndarray,
                 rejects: Rejects) -> Written:
    """Pass 2: the spool into split files, with copies and augmented rows in train."""
    kept = split >= 0
    present = set(split[kept].tolist()) | {S.TRAIN}
    if not cfg.split_column:  # drawn splits get their file even when a tiny dataset leaves it empty
        val, test = cfg.fractions()
        present |= ({S.VAL} if val > 0 else set()) | ({S.TEST} if test > 0 else set())
    ext = ".jsonl" if cfg.format == "jsonl" else ".parquet"
    writers = {s: SplitWriter(out / f"{S.SPLIT_NAMES[s]}{ext}", cfg.format) for s in sorted(present)}
    w = Written({S.SPLIT_NAMES[s]: wr.path.name for s, wr in writers.items()}, {}, Counter(),
                {S.SPLIT_NAMES[s]: Counter() for s in writers},
                {S.SPLIT_NAMES[s]: Counter() for s in writers})
    try:
        with open(work / "spool.jsonl", encoding="utf-8") as spool:
            for i, line in enumerate(spool):
                if not kept[i]:
                    continue
                rec = json.loads(line)
                s = int(split[i])
                name = S.SPLIT_NAMES[s]
                label = rec.get("label")
                if label is not None:
                    w.labels_kept[name][label] += 1
                if copies[i] == 0:  # undersampled: accounted for as a rejection
                    rejects.add(names[cands.file[i]], cands.line[i], UNDERSAMPLED,
                                "train row not drawn when balancing labels", rec)
                    continue
                base = {**rec, "source": f"{Path(names[cands.file[i]]).name}:{cands.line[i]}"}
                if cfg.kind == "classify":
                    base["origin"] = "original"
                    if cfg.folds:
                        base["fold"] = int(fold[i])
                rng = random.Random(cfg.seed * 1_000_003 + i)
                seen = {rec.get("text")}
                for c in range(int(copies[i])):
                    row = base if c == 0 else {**base, "origin": "oversampled"}
                    out_rows = [row]
                    # augmented versions of every copy written, so label balance holds
                    for _ in range(cfg.augment if s == S.TRAIN else 0):
                        text = S.augment_text(rec["text"], rng)
                        if text is not None and text not in seen:
                            seen.add(text)
                            out_rows.append({**base, "text": text, "origin": "augmented"})
                    for r in out_rows:
                        writers[s].write(r)
                        w.origins[r.get("origin", "original")] += 1
                        if label is not None:
                            w.labels_written[name][label] += 1
    finally:
        for wr in writers.values():
            wr.close()
    w.rows = {S.SPLIT_NAMES[s]: wr.rows for s, wr in writers.items()}
    return w


# --------------------------------------------------------------------------------- the command
def prepare_dataset(cfg: PrepareConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Run `goldmine data prepare`; returns the manifest plus the output directory (`out`).

    Keyword arguments override the config's fields:
    `prepare_dataset(kind="classify", inputs=["reviews.csv"], label_column="rating")`."""
    from goldmine.data.report import write_report
    from goldmine.data.tables import collect_table_files, detect_encoding
    from goldmine.files import write_json
    from goldmine.registry import start_run

    cfg = cfg or PrepareConfig()
    if overrides:
        cfg = cfg.update(overrides, where="prepare_dataset")
    cfg.validate()
    files = collect_table_files(cfg.inputs)
    encodings = {f: detect_encoding(f, None if cfg.encoding == "auto" else cfg.encoding)
                 for f in files}
    if cfg.label_map:
        load_label_map(cfg.label_map)  # fail before reading anything
    if cfg.tokenizer:
        from goldmine.tokenizer import resolve_tokenizer_path

        resolve_tokenizer_path(cfg.tokenizer)
    t0 = time.time()
    with start_run("data prepare", cfg.to_dict(), out=cfg.out) as run:
        out = run.dir
        for f in files:
            run.add_parent_from_path(f)
        for stale in ("train", "val", "test"):
            for suffix in (".jsonl", ".parquet"):
                (out / f"{stale}{suffix}").unlink(missing_ok=True)
        work = out / ".work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rejects = Rejects(out / "rejected.jsonl")
        names = [str(f) for f in files]
        try:
            cands, file_rows, pii = read_rows(cfg, files, encodings, work, rejects)
            read = sum(file_rows.values())
            read_s = time.time() - t0
            if not len(cands):
                top = ", ".join(f"{r} ({c:,})" for r, c in rejects.reasons.most_common(3))
                raise GoldmineError(f"no rows left after cleaning and filtering ({read:,} read; "
                                    f"rejected: {top or 'none'}); see {out / 'rejected.jsonl'}")
            dup_of, kind, sim = deduplicate(cfg, cands, work)
            conflicts = write_duplicates(out / "duplicates.jsonl", cands, names, dup_of, kind, sim)
            split, fold, copies = plan(cfg, cands, dup_of < 0)
            written = write_splits(cfg, out, work, cands, names, split, fold, copies, rejects)
        finally:
            rejects.close()
            shutil.rmtree(work, ignore_errors=True)

        reasons = rejects.reasons
        counts: dict[str, Any] = {
            "read": read, "kept": written.origins["original"],
            "exact_duplicates": int((kind == 1).sum()), "near_duplicates": int((kind == 2).sum()),
            "rejected": sum(reasons.values()), "rejected_by_reason": dict(reasons.most_common()),
            "splits": written.rows,
            "original_by_split": {k: int(((split == s) & (copies > 0)).sum())
                                  for s, k in enumerate(S.SPLIT_NAMES) if k in written.rows},
            "label_conflicts": conflicts, "oversampled": written.origins["oversampled"],
            "augmented": written.origins["augmented"], "pii": dict(pii.most_common())}
        accounted = (counts["kept"] + counts["exact_duplicates"] + counts["near_duplicates"]
                     + counts["rejected"])
        if accounted != read:  # a bug, never the user's data
            raise RuntimeError(f"row accounting is off: {accounted} accounted for, {read} read")
        total = sum(f.stat().st_size for f in files)
        seconds = time.time() - t0
        manifest: dict[str, Any] = {
            "format": FORMAT, "kind": cfg.kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run_id": run.id, "files": written.files, "file_format": cfg.format,
            "inputs": [{"path": str(f), "bytes": f.stat().st_size, "sha256": _sha256(f),
                        "encoding": encodings[f].name, "encoding_reason": encodings[f].reason,
                        "rows": file_rows[f]} for f in files],
            "options": cfg.to_dict(), "counts": counts,
            "seconds": round(seconds, 2), "read_seconds": round(read_s, 2),
            "mb_per_s": round(total / 1e6 / max(seconds, 1e-9), 2)}
        if cfg.kind == "classify":
            manifest["labels"] = sorted(cands.label_codes)
            counts["labels_before_balance"] = {k: dict(sorted(v.items()))
                                               for k, v in written.labels_kept.items()}
            counts["labels"] = {k: dict(sorted(v.items()))
                                for k, v in written.labels_written.items()}
        if cfg.folds:
            manifest["folds"] = {"k": cfg.folds, "field": "fold", "sizes": np.bincount(
                fold[fold >= 0], minlength=cfg.folds).tolist()}
        lengths = np.frombuffer(cands.length, np.int64)[split >= 0]
        manifest["report"] = write_report(out, manifest, lengths).name
        write_json(out / "manifest.json", manifest)
        for name, fname in written.files.items():
            run.add_artifact(name, out / fname)
        run.add_artifact("manifest", out / "manifest.json")
        run.add_artifact("report", out / "report.md")
        run.log_metrics({k: v for k, v in counts.items() if isinstance(v, int)}
                        | {"mb_per_s": manifest["mb_per_s"]})
        quality = counts["rejected"] - reasons.get(UNDERSAMPLED, 0)
        if quality / max(read, 1) > cfg.max_reject_ratio:
            top = ", ".join(f"{r} ({c:,})" for r, c in reasons.most_common(3))
            raise GoldmineError(
                f"{quality:,} of {read:,} rows rejected ({quality / read:.0%} > "
                f"--max-reject-ratio {cfg.max_reject_ratio:g}): {top}; see "
                f"{out / 'rejected.jsonl'}")
    return {**manifest, "out": str(out)}


def is_dataset_dir(path: str | Path) -> bool:
    """True for a directory written by `goldmine data prepare`."""
    m = Path(path) / "manifest.json"
    if not m.is_file():
        return False
    try:
        return json.loads(m.read_text(encoding="utf-8")).get("format") == FORMAT
    except (ValueError, OSError):
        return False


def read_manifest(path: str | Path) -> dict[str, Any]:
    from goldmine.files import read_json

    return read_json(Path(path) / "manifest.json", "dataset manifest")


def evaluation_split(path: str | Path, manifest: dict[str, Any],
                     split: str | None) -> tuple[str, str | None]:
    """(split to evaluate on, a note or None): `split` if given and it has rows, else test,
    else val (with a note saying so); an error naming the splits there are otherwise."""
    p = Path(path)
    files = manifest.get("files") or {}
    present = [s for s, name in files.items()
               if (p / name).is_file() and (p / name).stat().st_size > 0]
    if split:
        if split not in present:
            raise GoldmineError(f"data: {p} has no {split!r} split with rows (splits: "
                                f"{', '.join(present) or 'none'})")
        return split, None
    if "test" in present:
        return "test", None
    if "val" in present:
        return "val", f"{p} has no test split; evaluating on its val split"
    raise GoldmineError(f"data: {p} has neither a test nor a val split with rows (splits: "
                        f"{', '.join(present) or 'none'}); name one with --split")
