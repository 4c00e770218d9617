"""Token shards: a corpus tokenized once, memory-mapped for training.

    shards/
      train-00000.bin  train-00001.bin ...   raw little-endian uint16 (uint32 past 65,536 ids)
      val-00000.bin ...
      tokenizer.json                         the tokenizer that wrote them (a copy)
      meta.json                              written last: its presence means "complete"

`write_shards` streams text -> token ids -> files with bounded memory; `TokenShards` maps the
files read-only and draws random (x, y) windows for training, or walks them in order.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.data.readers import (
    TextPiece,
    collect_files,
    dataset_split,
    first_cut,
    iter_texts,
    total_bytes,
)
from goldmine.errors import GoldmineError
from goldmine.files import write_json
from goldmine.tokenizer import FILE_NAME as TOKENIZER_FILE
from goldmine.tokenizer import Tokenizer

FORMAT = "goldmine-shards/1"
META = "meta.json"
SPLITS = ("train", "val")
PIECE_BYTES = 16 * 1024  # text pieces handed to the tokenizer (bounds Python memory)
BATCH_BYTES = 256 * 1024  # text per encode_batch call (parallel in Rust)
BATCH_PIECES = 1024
_SHARD_RE = re.compile(r"^(train|val)-\d{5}\.bin$")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab_size <= 65,536), else uint32; little-endian."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def _dtype_name(dt: np.dtype) -> str:
    return {2: "uint16", 4: "uint32"}[dt.itemsize]


def is_shards_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / META).is_file()


# ---------------------------------------------------------------------------------- writing
class _SplitWriter:
    """Appends token ids to <split>-NNNNN.bin files, starting a new file every shard_tokens."""

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, dtype, shard_tokens
        self.files: list[str] = []
        self.file_tokens: list[int] = []
        self.tokens = 0
        self._f = None

    def write(self, ids: np.ndarray) -> None:
        start = 0
        while start < len(ids):
            if self._f is None or self.file_tokens[-1] >= self.shard_tokens:
                self._next_file()
            take = min(len(ids) - start, self.shard_tokens - self.file_tokens[-1])
            ids[start:start + take].tofile(self._f)
            self.file_tokens[-1] += take
            self.tokens += take
            start += take

    def _next_file(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.files):05d}.bin"
        self._f = open(self.out_dir / name, "wb", buffering=1 << 18)
        self.files.append(name)
        self.file_tokens.append(0)

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def meta(self) -> dict[str, Any]:
        return {"files": self.files, "file_tokens": self.file_tokens, "tokens": self.tokens}


class _Splitter:
    """Decides which split each piece of text goes to."""

    def __init__(self, split: str, val_fraction: float, seed: int, total: int):
        if split not in ("tail", "random"):
            raise GoldmineError(f"split: {split!r} is not one of tail, random")
        if not 0.0 <= val_fraction < 1.0:
            raise GoldmineError(f"val_fraction: must be in [0, 1), got {val_fraction}")
        self.split, self.val_fraction = split, val_fraction
        self.rng = np.random.default_rng(seed)
        # tail: input bytes before this point go to train, the rest to val
        self.threshold = total - int(round(total * val_fraction)) if val_fraction else None
        self.consumed = 0
        self.doc_split = None  # random: the current document's split

    def route(self, piece: TextPiece) -> list[tuple[str, TextPiece]]:
        start = self.consumed
        self.consumed += piece.nbytes
        if self.split == "random":
            if self.doc_split is None:
                self.doc_split = "val" if self.rng.random() < self.val_fraction else "train"
            where = self.doc_split
            if piece.doc_end:
                self.doc_split = None
            return [(where, piece)]
        t = self.threshold
        if t is None or start + piece.nbytes <= t:
            return [("train", piece)]
        if start >= t:
            return [("val", piece)]
        # the piece crosses the threshold
        if piece.path.suffix.lower() == ".jsonl":  # a whole document: majority decides
            return [("train" if t - start >= start + piece.nbytes - t else "val", piece)]
        data = piece.text.encode("utf-8")
        cut = first_cut(data, t - start)
        if cut <= 0:
            return [("val", piece)]
        if cut >= len(data):
            return [("train", piece)]
        head = TextPiece(data[:cut].decode("utf-8"), False, piece.path, cut)
        tail = TextPiece(data[cut:].decode("utf-8"), piece.doc_end, piece.path,
                         piece.nbytes - cut)
        return [("train", head), ("val", tail)]


def write_shards(inputs, tokenizer: Tokenizer | str | Path, out_dir: str | Path, *,
                 val_fraction: float = 0.1, split: str = "tail", seed: int = 0,
                 text_field: str = "text", eos: bool = True, bos: bool = True,
                 shard_tokens: int = 100_000_000,
                 progress: bool = True) -> dict[str, Any]:
    """Tokenize `inputs` (files/folders) into a shards directory; return its meta dict.

    Memory stays bounded (pieces of PIECE_BYTES, batches of BATCH_BYTES) whatever the corpus
    size. meta.json is written last and atomically, so a crash never leaves a directory that
    looks complete.
    """
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
    files = collect_files(inputs)
    if shard_tokens < 1:
        raise GoldmineError(f"shard_tokens: must be >= 1, got {shard_tokens}")
    total = total_bytes(files)
    splitter = _Splitter(split, val_fraction, seed, total)
    # a prepared dataset's own val file is the validation split (no split is drawn then)
    fixed = {f: dataset_split(f) for f in files}
    if "val" not in fixed.values():
        fixed = {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # from here on the directory is incomplete
    for stale in out.iterdir():
        if _SHARD_RE.match(stale.name):
            stale.unlink()
    dtype = token_dtype(tok.vocab_size)
    writers = {s: _SplitWriter(out, s, dtype, shard_tokens) for s in SPLITS}
    documents = consumed = 0
    t0 = time.time()

    def flush(batch: list[tuple[str, TextPiece, bool]]) -> None:
        encodings = tok.encode_batch_encodings([p.text for _, p, _ in batch])
        for (where, piece, starts), enc in zip(batch, encodings):
            ids = np.asarray(enc.ids, dtype=dtype)  # one piece's ids at a time in Python
            if bos and starts:
                ids = np.insert(ids, 0, tok.bos_id)
            if eos and piece.doc_end:
                ids = np.append(ids, np.asarray([tok.eos_id], dtype=dtype))
            writers[where].write(ids)

    bar = _Bar(progress, total)
    try:
        with bar:
            batch: list[tuple[str, TextPiece, bool]] = []
            batch_bytes = 0
            starts = True  # the next piece begins a document
            for piece in iter_texts(files, text_field=text_field, chunk_bytes=PIECE_BYTES):
                documents += piece.doc_end
                consumed += piece.nbytes
                routes = [(fixed[piece.path], piece)] if fixed else splitter.route(piece)
                for i, (where, part) in enumerate(routes):
                    batch.append((where, part, starts and i == 0))
                    batch_bytes += len(part.text)
                starts = piece.doc_end
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_PIECES:
                    flush(batch)
                    batch, batch_bytes = [], 0
                    bar.update(consumed, writers, t0)
            if batch:
                flush(batch)
            bar.update(consumed, writers, t0)
    finally:
        for w in writers.values():
            w.close()
    tok.save(out)
    seconds = time.time() - t0
    meta = {
        "format": FORMAT,
        "dtype": _dtype_name(dtype),
        "vocab_size": tok.vocab_size,
        "tokenizer_sha256": tok.sha256,
        "tokenizer_kind": tok.kind,
        "train": writers["train"].meta(),
        "val": writers["val"].meta(),
        "documents": documents,
        "bytes": consumed,
        "split": "dataset" if fixed else split,
        "val_fraction": val_fraction,
        "seed": seed,
        "text_field": text_field,
        "shard_tokens": shard_tokens,
        "inputs": [str(f.resolve()) for f in files],
        "input_bytes": total,
        "eos": eos,
        "bos": bos,
        "seconds": round(seconds, 3),
    }
    write_json(out / META, meta)
    if progress:
        from goldmine.progress import info

        for s in SPLITS:
            if writers[s].tokens == 0 and (s == "train" or val_fraction > 0):
                info(f"[yellow]warning:[/] {out}: the {s} split is empty "
                     f"({documents} document(s); try --split tail or more data)")
    return meta


class _Bar:
    """A progress bar over input bytes with tokens/s, or nothing when progress=False."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.bar = self.task = None

    def __enter__(self):
        if self.enabled:
            from goldmine.progress import progress_bar

            self.bar = progress_bar()
            self.bar.__enter__()
            self.task = self.bar.add_task("tokenizing", total=self.total, stats="")
        return self

    def update(self, consumed: int, writers: dict[str, _SplitWriter], t0: float) -> None:
        if self.bar is None:
            return
        from goldmine.progress import human_count

        tokens = sum(w.tokens for w in writers.values())
        rate = tokens / max(time.time() - t0, 1e-9)
        self.bar.update(self.task, completed=consumed,
                        stats=f"{human_count(tokens)} tokens | {human_count(rate)} tok/s")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


# ---------------------------------------------------------------------------------- reading
class TokenShards:
    """A shards directory, memory-mapped read-only."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta_path = self.dir / META
        if not self.dir.is_dir():
            raise GoldmineError(f"{self.dir}: token shards directory not found")
        if not meta_path.is_file():
            raise GoldmineError(f"{self.dir}: not a token shards directory (no {META}; "
                                "write one with `goldmine data tokenize`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise GoldmineError(f"{meta_path}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise GoldmineError(f"{meta_path}: not a goldmine shards file (format {got!r}, "
                                f"expected {FORMAT!r})")
        self.meta = meta
        try:
            self.dtype = np.dtype({"uint16": "<u2", "uint32": "<u4"}[meta["dtype"]])
            self.vocab_size = int(meta["vocab_size"])
            self._maps: dict[str, list[np.ndarray]] = {}
            for split in SPLITS:
                info = meta[split]
                names, counts = list(info["files"]), [int(n) for n in info["file_tokens"]]
                if len(names) != len(counts) or sum(counts) != int(info["tokens"]):
                    raise GoldmineError(f"{meta_path}: {split}: file list and token counts "
                                        "disagree")
                self._maps[split] = [self._map(name, n) for name, n in zip(names, counts)]
        except (KeyError, TypeError, ValueError) as e:
            raise GoldmineError(f"{meta_path}: malformed shards metadata ({type(e).__name__}: "
                                f"{e})") from None

    def _map(self, name: str, n_tokens: int) -> np.ndarray:
        path = self.dir / name
        if os.sep in name or "/" in name or not path.is_file():
            raise GoldmineError(f"{path}: shard file listed in {META} is missing")
        size = path.stat().st_size
        if size != n_tokens * self.dtype.itemsize:
            raise GoldmineError(f"{path}: {size:,} bytes, expected {n_tokens:,} {self.meta['dtype']}"
                                f" tokens = {n_tokens * self.dtype.itemsize:,} bytes "
                                "(truncated or corrupt; tokenize again)")
        if n_tokens == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(path, dtype=self.dtype, mode="r", shape=(n_tokens,))

    def __repr__(self) -> str:
        return (f"TokenShards({str(self.dir)!r}, train={self.tokens('train'):,}, "
                f"val={self.tokens('val'):,}, dtype={self.meta['dtype']})")

    # -- facts ----------------------------------------------------------------------------
    def tokenizer(self) -> Tokenizer:
        tok = Tokenizer.load(self.dir / TOKENIZER_FILE)
        want = self.meta.get("tokenizer_sha256")
        if want and tok.sha256 != want:
            raise GoldmineError(f"{self.dir / TOKENIZER_FILE}: does not match the tokenizer the "
                                "shards were written with (sha256 differs)")
        return tok

    def _split(self, split: str) -> list[np.ndarray]:
        if split not in self._maps:
            raise GoldmineError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        return self._maps[split]

    def tokens(self, split: str) -> int:
        return sum(len(m) for m in self._split(split))

    def arrays(self, split: str) -> list[np.ndarray]:
        """The memory-mapped token arrays of a split (read-only)."""
        return list(self._split(split))

    # -- batches --------------------------------------------------------------------------
    def _too_short(self, split: str, block_size: int) -> GoldmineError:
        return GoldmineError(
            f"{self.dir}: the {split} split has {self.tokens(split):,} tokens, but no shard holds "
            f"block_size + 1 = {block_size + 1:,}; use a smaller --block-size or more data")

    def get_batch(self, split: str, batch_size: int, block_size: int, generator=None):
        """Random windows: x (B, T) int64 and y = x shifted by one. Uniform over all windows of
        the split; deterministic for a given torch.Generator state."""
        import torch

        maps = self._split(split)
        if batch_size < 1 or block_size < 1:
            raise GoldmineError("batch_size and block_size must be >= 1")
        windows = torch.tensor([max(0, len(m) - block_size) for m in maps], dtype=torch.float64)
        if not maps or windows.sum() == 0:
            raise self._too_short(split, block_size)
        shard = torch.multinomial(windows, batch_size, replacement=True, generator=generator)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        offsets = torch.minimum((u * windows[shard]).long(), windows[shard].long() - 1)
        buf = np.empty((batch_size, block_size + 1), dtype=np.int64)
        for b, (s, o) in enumerate(zip(shard.tolist(), offsets.tolist())):
            buf[b] = maps[s][o:o + block_size + 1]
        t = torch.from_numpy(buf)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def iter_sequential(self, split: str, batch_size: int,
                        block_size: int) -> Iterator[tuple[Any, Any]]:
        """Non-overlapping windows in order (each shard on its own); the last batch may be
        smaller. Raises if no window fits."""
        import torch

        maps = self._split(split)
        if not any(len(m) > block_size for m in maps):
            raise self._too_short(split, block_size)
        rows: list[np.ndarray] = []
        for m in maps:
            for start in range(0, len(m) - block_size, block_size):
                rows.append(np.asarray(m[start:start + block_size + 1], dtype=np.int64))
                if len(rows) == batch_size:
                    t = torch.from_numpy(np.stack(rows))
                    yield t[:, :-1].contiguous(), t[:, 1:].contiguous()
                    rows = []
        if rows:
            t = torch.from_numpy(np.stack(rows))
            yield t[:, :-1].contiguous(), t[:, 1:].contiguous()


# ------------------------------------------------------------------------------ commands
def tokenize_corpus(cfg) -> dict[str, Any]:
    """`goldmine data tokenize` as a function: TokenizeConfig in, summary dict out."""
    from goldmine.registry import start_run

    cfg.validate()
    if cfg.tokenizer is None:
        raise GoldmineError("tokenizer: required (a tokenizer.json, its directory or a run id; "
                            "train one with `goldmine tokenizer train`)")
    tok = Tokenizer.load(cfg.tokenizer)
    files = collect_files(cfg.inputs)
    with start_run("data tokenize", cfg.to_dict(), out=cfg.out) as run:
        run.add_parent_from_path(tok.path)
        for f in files:
            run.add_parent_from_path(f)
        t0 = time.time()
        meta = write_shards(files, tok, run.dir, val_fraction=cfg.val_fraction, split=cfg.split,
                            seed=cfg.seed, text_field=cfg.text_field, eos=cfg.eos, bos=cfg.bos,
                            shard_tokens=cfg.shard_tokens)
        seconds = round(time.time() - t0, 3)
        n_tokens = meta["train"]["tokens"] + meta["val"]["tokens"]
        metrics = {"train_tokens": meta["train"]["tokens"], "val_tokens": meta["val"]["tokens"],
                   "documents": meta["documents"], "bytes": meta["bytes"],
                   "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 1), "seconds": seconds}
        run.log_metrics(metrics)
        run.add_artifact("shards", run.dir)
        return {"run_id": run.id, "out": str(run.dir), "train_tokens": metrics["train_tokens"],
                "val_tokens": metrics["val_tokens"], "documents": meta["documents"],
                "dtype": meta["dtype"], "seconds": seconds}


def ensure_shards(data: str | Path, tokenizer_ref: str | Path | None, work_dir: str | Path,
                  **kw) -> Path:
    """`data` if it is a shards directory; else tokenize the text in `data` into `work_dir`.

    A `work_dir` already holding shards of the same inputs (same sizes), tokenizer and options
    is reused, so a resumed run does not tokenize again. `kw` goes to `write_shards`.
    """
    p = Path(data)
    if is_shards_dir(p):
        return p
    if not p.exists():
        raise GoldmineError(f"{p}: data not found (a token shards directory or .txt/.jsonl text)")
    if tokenizer_ref is None:
        raise GoldmineError(f"{p}: raw text needs a tokenizer to be tokenized (--tokenizer: a "
                            "tokenizer.json, its directory or a run id)")
    tok = tokenizer_ref if isinstance(tokenizer_ref, Tokenizer) else Tokenizer.load(tokenizer_ref)
    files = collect_files([p])
    work = Path(work_dir)
    if _reusable(work, files, tok, kw):
        return work
    write_shards(files, tok, work, **kw)
    return work


def _reusable(work: Path, files: list[Path], tok: Tokenizer, kw: dict[str, Any]) -> bool:
    if not is_shards_dir(work):
        return False
    try:
        meta = json.loads((work / META).read_text(encoding="utf-8"))
        defaults = {"val_fraction": 0.1, "split": "tail", "seed": 0, "text_field": "text",
                    "eos": True, "bos": True, "shard_tokens": 100_000_000}
        same_options = all(meta.get(k) == kw.get(k, v) for k, v in defaults.items())
        return (same_options and meta.get("tokenizer_sha256") == tok.sha256
                and meta.get("inputs") == [str(f.resolve()) for f in files]
                and meta.get("input_bytes") == total_bytes(files))
    except (OSError, ValueError):
        return False
