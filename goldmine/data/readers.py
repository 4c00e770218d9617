"""Streaming corpus readers: text files and folders in, pieces of text out.

    collect_files(["corpus/", "extra.jsonl"])  ->  [Path, ...]       (validated, sorted)
    iter_texts(files)                           ->  TextPiece, ...    (bounded memory)

A `.txt` / `.md` file is one document, yielded in chunks of about `CHUNK_BYTES`. A `.jsonl` line
or `.parquet` row is one document (its `text_field`). A dataset folder written by
`goldmine data prepare` stands for its train and val files (never test). Text is passed on exactly as
it is in the file (no stripping, no newline conversion), so a tokenizer trained on it and the
shards written from it see the same bytes.

Chunks are cut, where possible, where byte-level BPE pre-tokenization always separates pieces
(after "end.\\n" before "Next", or before the space in "end. Next"; see `is_safe_cut`), so
encoding the chunks one by one gives exactly the tokens of the whole file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from goldmine.errors import GoldmineError

SUPPORTED = (".txt", ".md", ".jsonl", ".parquet")
TEXT_SUFFIXES = (".txt", ".md")
CHUNK_BYTES = 1 << 20  # ~1 MB pieces for .txt/.md
_SAFE_CUT_TRIES = 4096  # places examined before settling for any line boundary


@dataclass(slots=True)
class TextPiece:
    """A piece of a document. `nbytes` counts the raw input bytes it consumed (progress)."""

    text: str
    doc_end: bool  # True on the last piece of a document
    path: Path
    nbytes: int


# ------------------------------------------------------------------------------------ files
def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _dataset_manifest(folder: Path) -> dict | None:
    """The manifest of a folder written by `goldmine data prepare`, else None."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == "goldmine-dataset/1" else None


def dataset_split(path: str | Path) -> str | None:
    """"train"/"val"/"test" for a split file of a prepared dataset (`goldmine data prepare`)."""
    p = Path(path)
    meta = _dataset_manifest(p.parent) or {}
    return next((k for k, v in (meta.get("files") or {}).items() if v == p.name), None)


def _dataset_files(folder: Path, splits: tuple[str, ...]) -> list[Path] | None:
    """The non-empty split files of a prepared dataset folder (None if it is not one)."""
    meta = _dataset_manifest(folder)
    if meta is None:
        return None
    files = meta.get("files") or {}
    return [folder / files[s] for s in splits if s in files
            and (folder / files[s]).is_file() and (folder / files[s]).stat().st_size > 0]


def collect_files(inputs: Iterable[str | Path], suffixes: tuple[str, ...] = SUPPORTED,
                  dataset_splits: tuple[str, ...] = ("train", "val")) -> list[Path]:
    """Files and folders -> the files with one of `suffixes`, folders searched recursively and
    sorted (hidden files and folders inside them skipped). A prepared dataset folder gives its
    `dataset_splits` files instead.

    Raises GoldmineError for a missing path, an explicitly named file of an unsupported type, a
    folder with no supported files, or an empty file.
    """
    inputs = list(inputs or [])
    supported = ", ".join(suffixes)
    if not inputs:
        raise GoldmineError(f"no inputs given: name files or folders ({supported})")
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise GoldmineError(f"{p}: not found")
        dataset = _dataset_files(p, dataset_splits) if p.is_dir() else None
        if dataset is not None:
            found = dataset
            if not found:
                raise GoldmineError(f"{p}: the prepared dataset has no {'/'.join(dataset_splits)}"
                                    " rows")
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.suffix.lower() in suffixes and f.is_file() and not _hidden(f, p))
            if not found:
                raise GoldmineError(f"{p}: folder holds no {supported} files")
        else:
            if p.suffix.lower() not in suffixes:
                raise GoldmineError(f"{p}: unsupported file type {p.suffix or '(no extension)'!r};"
                                    f" supported: {supported}")
            found = [p]
        for f in found:
            if f.stat().st_size == 0:
                raise GoldmineError(f"{f}: file is empty (0 bytes)")
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def total_bytes(files: Iterable[Path]) -> int:
    return sum(os.path.getsize(f) for f in files)


# --------------------------------------------------------------------------- utf-8 helpers
def _char_at(buf: bytes, i: int) -> str | None:
    """The character whose UTF-8 encoding starts at byte i (None if invalid)."""
    lead = buf[i]
    n = 1 if lead < 0x80 else 2 if lead >> 5 == 6 else 3 if lead >> 4 == 14 else 4
    try:
        return buf[i:i + n].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _char_before(buf: bytes, j: int) -> str | None:
    """The character that ends just before byte j (None if invalid)."""
    i = j - 1
    while i > 0 and j - i < 4 and buf[i] & 0xC0 == 0x80:
        i -= 1
    try:
        return buf[i:j].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _solid(ch: str | None) -> bool:
    """A character that no pre-tokenizer pattern treats as whitespace."""
    return bool(ch) and not ch.isspace() and ch not in "\x1c\x1d\x1e\x1f\x85\u200b"


def is_safe_cut(buf: bytes, c: int) -> bool:
    """True if tokenizing buf[:c] and buf[c:] separately gives the tokens of buf.

    Byte-level BPE merges only inside the pieces its pre-tokenizer (GPT-2's pattern) splits
    text into, and two kinds of place always separate pieces:
      - just after a newline that sits between two non-space characters ("end.\n|Next");
      - just before a single space between two non-space characters ("end.| Next"), since a
        piece never ends in a space unless it is all whitespace.
    """
    if c < 1 or c + 1 >= len(buf):
        return False
    if buf[c - 1] == 0x0A:
        return _solid(_char_before(buf, c - 1)) and _solid(_char_at(buf, c))
    if buf[c] == 0x20:
        return _solid(_char_before(buf, c)) and _solid(_char_at(buf, c + 1))
    return False


def _candidates_back(buf: bytes, end: int) -> Iterator[int]:
    """Cut positions after a newline or before a space, from `end` backwards."""
    nl, sp = buf.rfind(b"\n", 0, end - 1) + 1, buf.rfind(b" ", 0, end)
    while nl > 0 or sp >= 0:
        if nl >= sp:
            yield nl
            nl = buf.rfind(b"\n", 0, nl - 1) + 1
        else:
            yield sp
            sp = buf.rfind(b" ", 0, sp)


def last_cut(buf: bytes) -> int:
    """The last place in buf (before its final byte) where a cut keeps tokenization unchanged;
    else just after the last newline; -1 if there is none."""
    for tries, c in enumerate(_candidates_back(buf, len(buf))):
        if tries >= _SAFE_CUT_TRIES:
            break
        if is_safe_cut(buf, c):
            return c
    nl = buf.rfind(b"\n", 0, len(buf) - 1)
    return nl + 1 if nl >= 0 else -1


def first_cut(buf: bytes, start: int) -> int:
    """The first place at or after `start` where a cut keeps tokenization unchanged; else just
    after the first newline there; else the character boundary at or before start."""
    pos = start
    for _ in range(_SAFE_CUT_TRIES):
        nl, sp = buf.find(b"\n", pos), buf.find(b" ", pos)
        options = [c for c in (nl + 1 if nl >= 0 else -1, sp) if c >= pos and c > 0]
        if not options:
            break
        c = min(options)
        if c >= len(buf):
            break
        if is_safe_cut(buf, c):
            return c
        pos = c + 1
    nl = buf.find(b"\n", start)
    if 0 <= nl < len(buf) - 1:
        return nl + 1
    i = min(start, len(buf))
    while 0 < i < len(buf) and buf[i] & 0xC0 == 0x80:
        i -= 1
    return i


def _utf8_error(path: Path, data: bytes, err: UnicodeDecodeError, first_line: int) -> GoldmineError:
    line = first_line + data.count(b"\n", 0, err.start)
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return GoldmineError(f"{path} line {line}: not valid UTF-8 "
                         f"(byte 0x{data[err.start]:02x} at column {column})")


# ------------------------------------------------------------------------------------ readers
def _text_chunks(path: Path, chunk_bytes: int) -> Iterator[tuple[bytes, int]]:
    """(raw chunk, line number of its first line), cut where tokenization is unaffected."""
    line = 1
    carry = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                if carry:
                    yield carry, line
                return
            buf = carry + block if carry else block
            if b"\n" not in block:  # one long line: keep reading until it ends
                parts = [buf]
                while True:
                    block = f.read(chunk_bytes)
                    if not block:
                        break
                    parts.append(block)
                    if b"\n" in block:
                        break
                buf = b"".join(parts)
                if not block:
                    yield buf, line
                    return
            cut = last_cut(buf)
            if cut <= 0:  # only a final newline: wait for more data
                carry = buf
                continue
            piece, carry = buf[:cut], buf[cut:]
            yield piece, line
            line += piece.count(b"\n")


def _iter_text_file(path: Path, chunk_bytes: int) -> Iterator[TextPiece]:
    pending: TextPiece | None = None
    for data, first_line in _text_chunks(path, chunk_bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _utf8_error(path, data, e, first_line) from None
        if pending is not None:
            yield pending
        pending = TextPiece(text, False, path, len(data))
    if pending is not None:
        pending.doc_end = True
        yield pending


def _iter_jsonl(path: Path, text_field: str) -> Iterator[TextPiece]:
    skipped = 0  # bytes of blank lines, credited to the next document
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                skipped += len(raw)
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_error(path, raw, e, lineno) from None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise GoldmineError(f"{path} line {lineno}: not valid JSON "
                                    f"({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise GoldmineError(f"{path} line {lineno}: expected a JSON object with a "
                                    f"{text_field!r} field, got {type(obj).__name__}")
            if text_field not in obj:
                present = ", ".join(map(repr, obj)) or "none"
                raise GoldmineError(f"{path} line {lineno}: no {text_field!r} field "
                                    f"(fields present: {present}); choose one with --text-field")
            text = obj[text_field]
            if not isinstance(text, str):
                raise GoldmineError(f"{path} line {lineno}: field {text_field!r} is "
                                    f"{type(text).__name__}, expected a string")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise GoldmineError(f"{path} line {lineno}: field {text_field!r} holds an "
                                    f"unpaired surrogate ({text[e.start]!r}), not valid Unicode") from None
            yield TextPiece(text, True, path, len(raw) + skipped)
            skipped = 0


def _iter_parquet(path: Path, text_field: str) -> Iterator[TextPiece]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise GoldmineError(f"{path}: not a readable Parquet file ({e})") from None
    if text_field not in pf.schema_arrow.names:
        raise GoldmineError(f"{path}: no {text_field!r} column (columns: "
                            f"{', '.join(pf.schema_arrow.names)}); choose one with --text-field")
    per_row = max(1, path.stat().st_size // max(pf.metadata.num_rows, 1))
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
        for text in batch.column(0).to_pylist():
            row += 1
            if not isinstance(text, str):
                raise GoldmineError(f"{path} row {row}: column {text_field!r} is "
                                    f"{type(text).__name__}, expected a string")
            yield TextPiece(text, True, path, per_row)


def _truncate(piece: TextPiece, budget: int) -> TextPiece | None:
    """The part of `piece` within `budget` bytes (cut at a line or character boundary)."""
    data = piece.text.encode("utf-8")
    if len(data) <= budget:
        return TextPiece(piece.text, True, piece.path, min(piece.nbytes, budget))
    window = data[:budget + 1]
    cut = window.rfind(b"\n", 0, budget) + 1
    if cut <= 0:
        cut = budget
        while cut > 0 and data[cut] & 0xC0 == 0x80:
            cut -= 1
    if cut <= 0:
        return None
    return TextPiece(data[:cut].decode("utf-8"), True, piece.path, cut)


def iter_texts(files: Iterable[str | Path], text_field: str = "text",
               max_bytes: int | None = None,
               chunk_bytes: int = CHUNK_BYTES) -> Iterator[TextPiece]:
    """Stream the text of `files` (from `collect_files`) as TextPieces, in order.

    Memory is bounded by `chunk_bytes` (or the longest line / jsonl document), not by the
    corpus. `max_bytes` stops after that many input bytes; the piece that crosses the limit
    is cut short and ends its document. Errors name the file and line.
    """
    used = 0
    for f in files:
        path = Path(f)
        if path.suffix.lower() == ".jsonl":
            pieces = _iter_jsonl(path, text_field)
        elif path.suffix.lower() == ".parquet":
            pieces = _iter_parquet(path, text_field)
        else:
            pieces = _iter_text_file(path, chunk_bytes)
        for piece in pieces:
            if max_bytes is not None and used + piece.nbytes > max_bytes:
                cut = _truncate(piece, max_bytes - used)
                if cut is not None:
                    yield cut
                return
            used += piece.nbytes
            yield piece
        if max_bytes is not None and used >= max_bytes:
            return
