"""`goldmine data prepare`: raw files in, a clean, documented dataset out - every row accounted for.

    prepare_dataset(PrepareConfig(kind="classify", inputs=["reviews.csv"], out="reviews"))

Two passes over the data, so memory stays bounded by a batch of rows plus a few small arrays
per row (hash key, label code, split code, length, MinHash signature on disk):

  pass 1  read rows (tables.py) -> extract the fields of the kind -> clean (clean.py), scrub PII
          (pii.py), filter by length, normalise labels -> hash (dedup.py). Rows that fail are
          written to rejected.jsonl at once; candidates go to a spool file on disk. Cleaning and
          hashing run in `--workers` processes.
  resolve exact, then near duplicates (kept: the first row in priority order - with existing
          splits, test before val before train, so nothing in test also sits in train); draw
          splits, folds and class balance over the kept rows.
  pass 2  stream the spool into train/val/test files; oversampled copies and augmented rows
          are added to train only and marked with `origin`.

The output directory holds the split files (.jsonl or .parquet), rejected.jsonl,
duplicates.jsonl, manifest.json (inputs with sha256 and encoding, options, counts) and
report.md with PNG charts. The invariant  kept + exact + near duplicates + rejected = read
is checked before anything is reported.
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
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.config import PrepareConfig, load_yaml
from goldmine.data import splits as S
from goldmine.data.clean import clean_text, normalize_label
from goldmine.errors import GoldmineError

FORMAT = "goldmine-dataset/1"
BATCH_ROWS = 1000
BATCH_CHARS = 1 << 20
PROMPT_COLUMNS = ("prompt", "instruction", "question", "input", "query")
RESPONSE_COLUMNS = ("response", "output", "answer", "completion")
ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant",
              "gpt": "assistant", "bot": "assistant", "model": "assistant", "chatgpt": "assistant"}
UNDERSAMPLED = "dropped by --balance under"


class Rejected(Exception):
    """A row-level rejection: `reason` is the category counted in the report, `detail` the
    specifics written to rejected.jsonl."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------- extraction
def _reader_reason(error: str) -> str:
    """A reader's error message -> the category it is counted under."""
    e = error.lower()
    for needle, reason in (("empty line", "empty line"), ("expected a json", "not an object"),
                           ("not valid json", "malformed JSON"), ("not valid csv", "malformed CSV"),
                           ("fields, header has", "wrong number of fields"),
                           ("bytes not valid", "undecodable bytes")):
        if needle in e:
            return reason
    return error.split("(")[0].strip() or "unreadable row"


class Extractor:
    """Turns a reader Row's fields into the record of the dataset kind (parent process).

    Column problems that would reject every row of a file (a missing column) are errors naming
    the file and the fields it has, raised at its first row."""

    def __init__(self, cfg: PrepareConfig):
        self.cfg = cfg
        self.checked: dict[Path, dict[str, Any]] = {}

    def _text_field(self, path: Path) -> str:
        return "text" if path.suffix.lower() in (".txt", ".md") else self.cfg.text_column

    def _check_file(self, row) -> dict[str, Any]:
        """Per-file column choices, decided (and checked) at the file's first parsed row."""
        cfg, path, names = self.cfg, row.path, list(row.fields)
        shown = ", ".join(map(repr, names)) or "none"

        def need(column: str, option: str) -> None:
            if column not in row.fields:
                raise GoldmineError(f"{row.where}: no column {column!r} (columns: {shown}); "
                                    f"choose one with {option}")

        plan: dict[str, Any] = {}
        if cfg.kind in ("text", "classify"):
            need(self._text_field(path), "--text-column")
        if cfg.kind == "classify" and not cfg.label_from_folder:
            need(cfg.label_column, "--label-column")
        if cfg.split_column:
            need(cfg.split_column, "--split-column")
        if cfg.kind == "chat":
            if cfg.messages_column in row.fields and not (cfg.prompt_column or cfg.response_column):
                plan["messages"] = cfg.messages_column
            else:
                prompt = cfg.prompt_column or next((c for c in PROMPT_COLUMNS if c in row.fields), None)
                response = cfg.response_column or next(
                    (c for c in RESPONSE_COLUMNS if c in row.fields), None)
                if prompt is None or response is None:
                    raise GoldmineError(
                        f"{row.where}: no conversation found: no {cfg.messages_column!r} field and no "
                        f"prompt/response columns (columns: {shown}); name them with "
                        "--messages-column or --prompt-column/--response-column")
                need(prompt, "--prompt-column")
                need(response, "--response-column")
                plan["prompt"], plan["response"] = prompt, response
        return plan

    def __call__(self, row) -> dict[str, Any]:
        cfg = self.cfg
        if row.path not in self.checked:
            self.checked[row.path] = self._check_file(row)
        plan = self.checked[row.path]
        f = row.fields
        rec: dict[str, Any] = {}
        if cfg.kind == "chat":
            if "messages" in plan and f.get(plan["messages"]) is None:
                raise Rejected("missing messages", f"field {plan['messages']!r} is missing or null")
            rec["messages"] = (_messages(f[plan["messages"]]) if "messages" in plan
                               else _pair(f, plan["prompt"], plan["response"]))
            if cfg.system_prompt and rec["messages"][0]["role"] != "system":
                rec["messages"].insert(0, {"role": "system", "content": cfg.system_prompt})
        else:
            rec["text"] = _string(f, self._text_field(row.path), "text")
        if cfg.kind == "classify":
            if cfg.label_from_folder:
                rec["label"] = row.path.parent.name
            else:
                label = f.get(cfg.label_column)
                if label is None or (isinstance(label, str) and not label.strip()):
                    raise Rejected("missing label", f"field {cfg.label_column!r} is empty")
                if isinstance(label, (dict, list)):
                    raise Rejected("bad label", f"field {cfg.label_column!r} is a "
                                   f"{type(label).__name__}")
                rec["label"] = label
        if cfg.split_column:
            raw = f.get(cfg.split_column)
            code = S.SPLIT_ALIASES.get(str(raw).strip().lower()) if raw is not None else None
            if code is None:
                raise Rejected("unknown split value", f"{cfg.split_column}={raw!r} (expected "
                               "train, val or test)")
            rec["split"] = code
        return rec


def _string(fields: dict, name: str, what: str) -> str:
    value = fields.get(name)
    if value is None:
        raise Rejected(f"missing {what}", f"field {name!r} is missing or null")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise Rejected(f"bad {what}", f"field {name!r} is a {type(value).__name__}, not text")
    return value


def _pair(fields: dict, prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": _string(fields, prompt, "prompt")},
            {"role": "assistant", "content": _string(fields, response, "response")}]


def _messages(value: Any) -> list[dict[str, str]]:
    """OpenAI {role, content} or ShareGPT {from, value} lists (or such a list as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise Rejected("bad messages", f"messages text is not valid JSON ({e.msg})") from None
    if not isinstance(value, list) or not value:
        raise Rejected("bad messages", "messages must be a non-empty list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise Rejected("bad messages", f"message {i} is a {type(m).__name__}, not an object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        norm = ROLE_NAMES.get(str(role).strip().lower()) if role is not None else None
        if norm is None:
            raise Rejected("bad messages", f"message {i} has role {role!r} (expected system, "
                           "user or assistant)")
        if not isinstance(content, str):
            raise Rejected("bad messages", f"message {i} has no text content")
        out.append({"role": norm, "content": content})
    return out


# ---------------------------------------------------------------------------------- processing
class Processor:
    """Cleaning, PII, filters, labels and hashing for a batch of records (runs in workers)."""

    def __init__(self, cfg: PrepareConfig):
        from goldmine.data.dedup import MinHasher

        self.cfg = cfg
        self.hasher = (MinHasher(num_perm=cfg.num_perm, shingle_size=cfg.shingle_size, seed=0)
                       if cfg.dedup == "near" else None)
        self.label_map = load_label_map(cfg.label_map) if cfg.label_map else None
        self.allowed = set(cfg.labels) if cfg.labels else None
        self.tokenizer = None
        if cfg.tokenizer:
            from goldmine.tokenizer import Tokenizer

            self.tokenizer = Tokenizer.load(cfg.tokenizer)

    def _text(self, text: str, pii: Counter) -> str:
        text = clean_text(text, normalize=self.cfg.normalize, html_tags=self.cfg.strip_html)
        if self.cfg.pii and text:
            from goldmine.data.pii import scrub_pii

            text, found = scrub_pii(text)
            pii.update(found)
        return text

    def _label(self, label: Any) -> str:
        name = normalize_label(label, lowercase=self.cfg.lowercase_labels)
        if self.label_map is not None and name in self.label_map:
            mapped = self.label_map[name]
            if mapped is None:
                raise Rejected("label dropped by --label-map", f"label {name!r} maps to null")
            name = mapped
        if not name:
            raise Rejected("missing label", "label is empty after normalisation")
        if self.allowed is not None and name not in self.allowed:
            raise Rejected("label not in --labels", f"label {name!r}")
        return name

    def _check_length(self, text: str) -> int:
        cfg, n = self.cfg, len(text)
        if n == 0:
            raise Rejected("empty after cleaning")
        if n < cfg.min_chars:
            raise Rejected("too short", f"{n} characters < --min-chars {cfg.min_chars}")
        if cfg.max_chars is not None and n > cfg.max_chars:
            raise Rejected("too long", f"{n} characters > --max-chars {cfg.max_chars}")
        if self.tokenizer is not None:
            t = len(self.tokenizer.encode(text))
            if cfg.min_tokens is not None and t < cfg.min_tokens:
                raise Rejected("too few tokens", f"{t} tokens < --min-tokens {cfg.min_tokens}")
            if cfg.max_tokens is not None and t > cfg.max_tokens:
                raise Rejected("too many tokens", f"{t} tokens > --max-tokens {cfg.max_tokens}")
        return n

    def one(self, rec: dict[str, Any], pii: Counter) -> tuple[dict[str, Any], str, int]:
        """(cleaned record, the text that is hashed, its length) or raises Rejected."""
        found: Counter = Counter()
        out = dict(rec)
        if "messages" in rec:
            msgs = [{"role": m["role"], "content": self._text(m["content"], found)}
                    for m in rec["messages"]]
            _check_conversation(msgs)
            out["messages"] = msgs
            key_text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
            length = self._check_length(key_text)
        else:
            out["text"] = key_text = self._text(rec["text"], found)
            length = self._check_length(key_text)
        if "label" in rec:
            out["label"] = self._label(rec["label"])
        pii.update(found)  # only rows that are kept count towards the PII report
        return out, key_text, length

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        from goldmine.data.dedup import exact_key

        results: list[tuple] = []
        texts: list[str] = []
        pii: Counter = Counter()
        for rec in batch:
            try:
                out, key_text, length = self.one(rec, pii)
            except Rejected as r:
                results.append(("reject", r.reason, r.detail))
                continue
            results.append(("keep", out, exact_key(key_text), length))
            texts.append(key_text)
        sigs = self.hasher.signatures(texts) if self.hasher is not None and texts else None
        return {"results": results, "signatures": sigs, "pii": pii}


def _check_conversation(msgs: list[dict[str, str]]) -> None:
    roles = [m["role"] for m in msgs]
    if any(not m["content"] for m in msgs):
        raise Rejected("empty message", f"a {roles[[bool(m['content']) for m in msgs].index(False)]}"
                       " message is empty after cleaning")
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body:
        raise Rejected("bad messages", "a system message appears after the first message")
    if not body or body[0] != "user":
        raise Rejected("bad messages", "the conversation does not start with a user message")
    if any(a == b for a, b in zip(body, body[1:])):
        raise Rejected("bad messages", "user and assistant messages do not alternate")
    if body[-1] != "assistant":
        raise Rejected("no assistant reply", "the last message is not from the assistant")


def load_label_map(path: str) -> dict[str, str | None]:
    """A YAML/JSON mapping raw label -> name (keys normalised like labels; null drops)."""
    p = Path(path)
    data = load_yaml(p) if p.suffix.lower() in (".yaml", ".yml") else _read_json_map(p)
    return {normalize_label(k): (None if v is None else normalize_label(v, lowercase=False))
            for k, v in data.items()}


def _read_json_map(p: Path) -> dict:
    if not p.is_file():
        raise GoldmineError(f"{p}: label map not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GoldmineError(f"{p}: not a JSON/YAML mapping ({e})") from None
    if not isinstance(data, dict):
        raise GoldmineError(f"{p}: expected a mapping of raw label: name")
    return data


_WORKER: Processor | None = None


def _init_worker(cfg_dict: dict[str, Any]) -> None:
    global _WORKER
    _WORKER = Processor(PrepareConfig(**cfg_dict))


def _work(batch: list[dict[str, Any]]) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER(batch)


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


# --------------------------------------------------------------------------------- the command
def prepare_dataset(cfg: PrepareConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Run `goldmine data prepare`; returns the manifest plus the output directory.

    `prepare_dataset(kind="classify", inputs=["reviews.csv"], label_column="rating")` works too:
    keyword arguments override the config's fields."""
    from goldmine.data.tables import collect_table_files, detect_encoding, iter_rows
    from goldmine.progress import info, progress_bar
    from goldmine.registry import start_run

    cfg = (cfg or PrepareConfig()).update(overrides, where="prepare_dataset") if overrides else (
        cfg or PrepareConfig())
    cfg.validate()
    files = collect_table_files(cfg.inputs)
    encodings = {f: detect_encoding(f, None if cfg.encoding == "auto" else cfg.encoding)
                 for f in files}
    total = sum(f.stat().st_size for f in files)
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
        for name in ("train", "val", "test"):
            for suffix in (".jsonl", ".parquet"):
                (out / f"{name}{suffix}").unlink(missing_ok=True)
        work = out / ".work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        counts: Counter = Counter()
        reasons: Counter = Counter()
        pii: Counter = Counter()
        file_rows: Counter = Counter()
        file_index = {f: i for i, f in enumerate(files)}
        # per candidate (cleaned row waiting for deduplication)
        keys = bytearray()
        # compact arrays, not lists of Python ints: a few bytes per row
        cand_file, cand_line = array("i"), array("q")
        cand_label, cand_split, cand_len = array("i"), array("b"), array("q")
        label_codes: dict[str, int] = {}
        spool = open(work / "spool.jsonl", "w", encoding="utf-8")
        sig_file = open(work / "signatures.u32", "wb")
        rejected = _jsonl(out / "rejected.jsonl")
        extractor = Extractor(cfg)
        workers = cfg.workers or (os.cpu_count() or 1)
        pool = (ProcessPoolExecutor(workers, initializer=_init_worker,
                                    initargs=(cfg.to_dict(),)) if workers > 1 else None)
        local = Processor(cfg) if pool is None else None
        pending: deque = deque()

        def reject(path: Path, line: int, reason: str, detail: str, raw: Any) -> None:
            reasons[reason] += 1
            rejected.write(_line({"source": str(path), "line": line, "reason": reason,
                                  "detail": detail, "row": raw}))

        def collect(fut_or_result, batch_meta) -> None:
            res = fut_or_result.result() if pool is not None else fut_or_result
            pii.update(res["pii"])
            if res["signatures"] is not None:
                sig_file.write(np.ascontiguousarray(res["signatures"], dtype=np.uint32).tobytes())
            for (path, line, rec_raw), r in zip(batch_meta, res["results"]):
                if r[0] == "reject":
                    reject(path, line, r[1], r[2], rec_raw)
                    continue
                _, rec, key, length = r
                keys.extend(key)
                cand_file.append(file_index[path])
                cand_line.append(line)
                cand_len.append(length)
                cand_split.append(rec.pop("split", -1))
                if "label" in rec:
                    cand_label.append(label_codes.setdefault(rec["label"], len(label_codes)))
                spool.write(_line(rec))

        def submit(batch, meta) -> None:
            if pool is None:
                collect(local(batch), meta)
                return
            pending.append((pool.submit(_work, batch), meta))
            while len(pending) > workers + 1:
                collect(*pending.popleft())

        batch: list[dict] = []
        meta: list[tuple] = []
        chars = 0
        done_bytes = 0
        try:
            with progress_bar(unit_column=False) as bar:
                task = bar.add_task("reading", total=max(total, 1), stats="")
                for path in files:
                    for row in iter_rows(path, encodings[path], unit=cfg.unit):
                        counts["read"] += 1
                        file_rows[path] += 1
                        done_bytes += row.nbytes
                        if row.error is not None or row.fields is None:
                            reject(path, row.line, _reader_reason(row.error or ""),
                                   row.error or "unreadable", row.raw)
                        else:
                            try:
                                rec = extractor(row)
                            except Rejected as r:
                                reject(path, row.line, r.reason, r.detail, row.fields)
                            else:
                                batch.append(rec)
                                meta.append((path, row.line, row.fields if cfg.kind != "text"
                                             else {"text": str(rec.get("text", ""))[:2000]}))
                                chars += sum(len(m["content"]) for m in rec["messages"]) \
                                    if "messages" in rec else len(rec["text"])
                                if len(batch) >= BATCH_ROWS or chars >= BATCH_CHARS:
                                    submit(batch, meta)
                                    batch, meta, chars = [], [], 0
                        if counts["read"] % 1000 == 0:
                            el = max(time.time() - t0, 1e-9)
                            bar.update(task, completed=done_bytes, stats=(
                                f"{counts['read']:,} rows · {counts['read'] / el:,.0f} rows/s · "
                                f"{done_bytes / el / 1e6:.1f} MB/s"))
                if batch:
                    submit(batch, meta)
                while pending:
                    collect(*pending.popleft())
                bar.update(task, completed=max(total, 1), stats=f"{counts['read']:,} rows")
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            spool.close()
            sig_file.close()
            rejected.flush()

        n = len(cand_len)
        read_s = time.time() - t0
        if n == 0:
            rejected.close()
            top = ", ".join(f"{r} ({c:,})" for r, c in reasons.most_common(3)) or "no rows read"
            raise GoldmineError(f"no rows left after cleaning and filtering ({counts['read']:,} "
                                f"read; rejected: {top}); see {out / 'rejected.jsonl'}")

        # ---- deduplication ----------------------------------------------------------------
        from goldmine.data.dedup import find_exact_duplicates, find_near_duplicates

        split_raw = np.frombuffer(cand_split, dtype=np.int8)
        has_split = cfg.split_column is not None
        priority = np.where(split_raw == S.TEST, 0, np.where(split_raw == S.VAL, 1, 2))
        order = (np.lexsort((np.arange(n), priority)) if has_split else np.arange(n))
        key_arr = np.frombuffer(keys, np.uint64).reshape(n, 2)  # (n, 2) the 16-byte keys
        dup_of = np.full(n, -1, dtype=np.int64)
        kind = np.zeros(n, dtype=np.int8)  # 1 exact, 2 near
        sim = np.zeros(n, dtype=np.float32)
        if cfg.dedup != "none":
            if n >= 50_000:
                info(f"[dim]deduplicating {n:,} rows ...[/dim]")
            exact = find_exact_duplicates(key_arr, order)
            dup_of[exact >= 0] = exact[exact >= 0]
            kind[exact >= 0] = 1
            sim[exact >= 0] = 1.0
            if cfg.dedup == "near":
                sigs = np.memmap(work / "signatures.u32", dtype=np.uint32, mode="r",
                                 shape=(n, cfg.num_perm))
                near, near_sim = find_near_duplicates(sigs, cfg.near_threshold, order,
                                                      skip=exact >= 0)
                dup_of[near >= 0] = near[near >= 0]
                kind[near >= 0] = 2
                sim[near >= 0] = near_sim[near >= 0]
                del sigs
        del key_arr
        keep = dup_of < 0
        counts["exact_duplicates"] = int((kind == 1).sum())
        counts["near_duplicates"] = int((kind == 2).sum())
        names = [str(f) for f in files]
        with _jsonl(out / "duplicates.jsonl") as dfile:
            for i in np.flatnonzero(~keep):
                j = int(dup_of[i])
                dfile.write(_line({"source": names[cand_file[i]], "line": cand_line[i],
                                   "kind": "exact" if kind[i] == 1 else "near",
                                   "similarity": round(float(sim[i]), 3),
                                   "duplicate_of": {"source": names[cand_file[j]],
                                                    "line": cand_line[j]}}))

        # ---- splits, folds, balance ----------------------------------------------------------
        labels = np.frombuffer(cand_label, dtype=np.int32) if cfg.kind == "classify" else None
        val_f, test_f = cfg.fractions()
        split = np.full(n, -1, dtype=np.int8)
        kept_idx = np.flatnonzero(keep)
        if has_split:
            split[kept_idx] = split_raw[kept_idx]
        else:
            split[kept_idx] = S.assign_splits(None if labels is None else labels[kept_idx],
                                              len(kept_idx), val_f, test_f, cfg.seed)
        train = keep & (split == S.TRAIN)
        fold = (S.assign_folds(labels, train, cfg.folds, cfg.seed) if cfg.folds
                else np.full(n, -1, dtype=np.int16))
        copies = (S.balance(labels, train, cfg.balance, cfg.seed) if labels is not None
                  else np.ones(n, dtype=np.int32))
        copies[~keep] = 0

        # ---- pass 2: write the splits -------------------------------------------------------
        ext = ".jsonl" if cfg.format == "jsonl" else ".parquet"
        present = sorted(set(split[kept_idx].tolist()) | {S.TRAIN}
                         | ({S.VAL} if val_f > 0 else set()) | ({S.TEST} if test_f > 0 else set()))
        writers = {s: SplitWriter(out / f"{S.SPLIT_NAMES[s]}{ext}", cfg.format) for s in present}
        written_labels: dict[str, Counter] = {S.SPLIT_NAMES[s]: Counter() for s in present}
        kept_labels: dict[str, Counter] = {S.SPLIT_NAMES[s]: Counter() for s in present}
        origin_counts: Counter = Counter()
        lengths = np.frombuffer(cand_len, dtype=np.int64)
        try:
            with open(work / "spool.jsonl", encoding="utf-8") as sp:
                for i, line in enumerate(sp):
                    if not keep[i]:
                        continue
                    rec = json.loads(line)
                    where = f"{Path(names[cand_file[i]]).name}:{cand_line[i]}"
                    s = int(split[i])
                    sname = S.SPLIT_NAMES[s]
                    if "label" in rec:
                        kept_labels[sname][rec["label"]] += 1
                    if copies[i] == 0:  # undersampled: accounted for as a rejection
                        reject(Path(names[cand_file[i]]), cand_line[i], UNDERSAMPLED,
                               "train row not drawn when balancing labels", rec)
                        continue
                    base = {**rec, "source": where}
                    if cfg.kind == "classify":
                        base["origin"] = "original"
                        if cfg.folds:
                            base["fold"] = int(fold[i]) if s == S.TRAIN else -1
                    rng = random.Random(cfg.seed * 1_000_003 + i)
                    seen = {rec.get("text")}
                    for c in range(int(copies[i])):
                        row = base if c == 0 else {**base, "origin": "oversampled"}
                        writers[s].write(row)
                        origin_counts[row.get("origin", "original")] += 1
                        if "label" in rec:
                            written_labels[sname][rec["label"]] += 1
                        # augmented rows for every written copy, so balance holds
                        for _ in range(cfg.augment if s == S.TRAIN else 0):
                            text = S.augment_text(rec["text"], rng)
                            if text is None or text in seen:
                                continue
                            seen.add(text)
                            writers[s].write({**base, "text": text, "origin": "augmented"})
                            origin_counts["augmented"] += 1
                            written_labels[sname][rec["label"]] += 1
        finally:
            for w in writers.values():
                w.close()
            rejected.close()
            shutil.rmtree(work, ignore_errors=True)

        # ---- counts and checks --------------------------------------------------------------
        counts["rejected"] = sum(reasons.values())
        counts["kept"] = origin_counts["original"]
        accounted = (counts["kept"] + counts["exact_duplicates"] + counts["near_duplicates"]
                     + counts["rejected"])
        if accounted != counts["read"]:  # a bug, never the user's data
            raise RuntimeError(f"row accounting is off: kept {counts['kept']} + duplicates "
                               f"{counts['exact_duplicates'] + counts['near_duplicates']} + "
                               f"rejected {counts['rejected']} != read {counts['read']}")
        quality_rejects = counts["rejected"] - reasons.get(UNDERSAMPLED, 0)
        reject_ratio = quality_rejects / max(counts["read"], 1)

        manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": cfg.kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run_id": run.id,
            "files": {S.SPLIT_NAMES[s]: w.path.name for s, w in writers.items()},
            "file_format": cfg.format,
            "inputs": [{"path": str(f), "bytes": f.stat().st_size, "sha256": _sha256(f),
                        "encoding": encodings[f].name, "encoding_reason": encodings[f].reason,
                        "rows": file_rows[f]} for f in files],
            "options": cfg.to_dict(),
            "counts": {
                "read": counts["read"], "kept": counts["kept"],
                "exact_duplicates": counts["exact_duplicates"],
                "near_duplicates": counts["near_duplicates"], "rejected": counts["rejected"],
                "rejected_by_reason": dict(reasons.most_common()),
                "splits": {S.SPLIT_NAMES[s]: w.rows for s, w in writers.items()},
                "original_by_split": {k: int(((split == s) & keep & (copies > 0)).sum())
                                      for s, k in enumerate(S.SPLIT_NAMES) if s in writers},
                "oversampled": origin_counts["oversampled"],
                "augmented": origin_counts["augmented"],
                "pii": dict(pii.most_common()),
            },
            "seconds": round(time.time() - t0, 2),
            "read_seconds": round(read_s, 2),
            "mb_per_s": round(total / 1e6 / max(time.time() - t0, 1e-9), 2),
        }
        if cfg.kind == "classify":
            manifest["labels"] = sorted(label_codes)
            manifest["counts"]["labels_before_balance"] = {k: dict(sorted(v.items()))
                                                           for k, v in kept_labels.items()}
            manifest["counts"]["labels"] = {k: dict(sorted(v.items()))
                                            for k, v in written_labels.items()}
        if cfg.folds:
            manifest["folds"] = {"k": cfg.folds, "field": "fold",
                                 "sizes": np.bincount(fold[fold >= 0], minlength=cfg.folds).tolist()}
        from goldmine.data.report import write_report
        from goldmine.files import write_json

        manifest["report"] = write_report(out, manifest, lengths[keep]).name
        write_json(out / "manifest.json", manifest)
        for name, fname in manifest["files"].items():
            run.add_artifact(name, out / fname)
        run.add_artifact("manifest", out / "manifest.json")
        run.add_artifact("report", out / "report.md")
        run.log_metrics({k: v for k, v in manifest["counts"].items() if isinstance(v, int)}
                        | {"mb_per_s": manifest["mb_per_s"]})
        if reject_ratio > cfg.max_reject_ratio:
            top = ", ".join(f"{r} ({c:,})" for r, c in reasons.most_common(3))
            raise GoldmineError(
                f"{quality_rejects:,} of {counts['read']:,} rows rejected "
                f"({reject_ratio:.0%} > --max-reject-ratio {cfg.max_reject_ratio:g}): {top}; "
                f"see {out / 'rejected.jsonl'}")
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
