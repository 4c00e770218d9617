"""Streaming row readers for `goldmine data prepare`: text, JSON, CSV/TSV and Parquet files in,
one `Row` (a dict of fields, or a rejection reason) per record out.

    files = collect_table_files(["data/", "extra.csv"])        # validated, sorted
    for path in files:
        enc = detect_encoding(path)                             # or forced="gb18030"
        print(f"{path}: {enc.name} ({enc.reason})")
        for row in iter_rows(path, enc, unit="paragraph"):
            if row.error:                                       # write to rejected.jsonl
                print(f"{row.where}: {row.error}")
            else:
                use(row.fields)

Formats (every text format decoded with the given `Encoding`):

- `.txt` / `.md`: unit "document" gives the whole file as one row {"text": ...}; "paragraph"
  one row per block of non-blank lines; "line" one row per non-blank line. Text is kept as it is
  in the file, except that the line end closing a paragraph or line is dropped.
- `.jsonl`: one JSON object per line.
- `.json`: a list of records, or an object whose values are all lists of records (each record
  then gets "split" = its key, as in CLINC150's {"train": [[text, label], ...], ...}). A record
  that is a list becomes {"0": item[0], "1": item[1], ...}.
- `.csv` / `.tsv`: the first row is the header. `.tsv` is read without quoting (GLUE exports
  hold bare quotes); `.csv` delimiters are sniffed among , ; TAB |.
- `.parquet`: read in batches with pyarrow; strings in Parquet are UTF-8.

A record that cannot be read (bytes not valid in the encoding, malformed JSON, wrong number of
CSV fields) comes back as a Row with `fields=None`, the reason in `error` and its text in `raw`;
the other rows are read normally. Problems with a whole file raise GoldmineError.

Memory is bounded by the largest row (or document, for unit "document"), never by the file,
except for `.json`, which is parsed whole.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from goldmine.data.readers import collect_files
from goldmine.errors import GoldmineError

TABLE_SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".csv", ".tsv", ".parquet")
TEXT_SUFFIXES = (".txt", ".md")
UNITS = ("document", "paragraph", "line")
MAX_DOCUMENT_BYTES = 256 << 20  # a .txt/.md larger than this must be read by paragraph or line
RAW_CHARS = 2000  # text of a rejected row kept in Row.raw
SNIFF_BYTES = 64 << 10
CSV_FIELD_LIMIT = 256 << 20  # characters; csv's default (128 KB) is too small for documents
CSV_DELIMITERS = ",;\t|"
ENCODING_EXAMPLES = "utf-8, utf-8-sig, utf-16, gb18030, gbk, big5, shift_jis, cp1252, latin-1"
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32 little-endian byte-order mark"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32 big-endian byte-order mark"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 byte-order mark"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 little-endian byte-order mark"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 big-endian byte-order mark"),
)


@dataclass(slots=True)
class Row:
    """One record. `fields` is None when it could not be read; `error` then says why."""

    fields: dict[str, Any] | None
    path: Path
    line: int  # 1-based line of the row's first line; 1-based item index for .json/.parquet
    nbytes: int  # raw input bytes this row consumed (progress; sums to about the file size)
    error: str | None = None
    raw: str | None = None  # rejected rows: their text (decoded with replacement), clipped

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(slots=True)
class Encoding:
    """The codec a file is decoded with, and why it was chosen (for the user)."""

    name: str
    reason: str


# ------------------------------------------------------------------------------------ files
def collect_table_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files and folders -> the files with a TABLE_SUFFIXES type (see readers.collect_files);
    a folder written by `goldmine data prepare` gives its train, val and test files."""
    return collect_files(inputs, TABLE_SUFFIXES, dataset_splits=("train", "val", "test"))


# --------------------------------------------------------------------------------- encoding
def _decodes(data: bytes, codec: str, complete: bool) -> str | None:
    """data decoded strictly (a character cut at the end allowed unless `complete`), or None."""
    try:
        return codecs.getincrementaldecoder(codec)("strict").decode(data, final=complete)
    except UnicodeDecodeError:
        return None


def _is_cjk(ch: str) -> bool:
    """Han characters and the punctuation, kana and full-width forms written with them."""
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xFE30 <= o <= 0xFE4F
            or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x3FFFF)


def _utf16_without_bom(sample: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when every other byte is NUL (ASCII-range UTF-16), else None."""
    n = len(sample) // 2 * 2
    if n < 4:
        return None
    even, odd = sample[0:n:2].count(0), sample[1:n:2].count(0)
    if odd > 0.9 * n / 2 and even < 0.1 * n / 2:
        return "utf-16-le"
    if even > 0.9 * n / 2 and odd < 0.1 * n / 2:
        return "utf-16-be"
    return None


def detect_encoding(path: Path, forced: str | None = None,
                    sample_bytes: int = 1 << 20) -> Encoding:
    """The encoding of a text file, judged from its first `sample_bytes`.

    A byte-order mark decides; else strict UTF-8; else GB18030 if the sample decodes strictly
    and at least half of its non-ASCII characters are CJK; else cp1252 if it decodes strictly;
    else latin-1 (which decodes anything). `forced` (any Python text codec) skips detection.
    Bytes past the sample that do not decode turn into rejected rows, not errors.
    """
    path = Path(path)
    if forced:
        try:
            "a".encode(forced)  # LookupError for unknown names and bytes-to-bytes codecs
            name = codecs.lookup(forced).name
        except LookupError:
            raise GoldmineError(f"unknown encoding {forced!r}: use a Python codec name such as "
                                f"{ENCODING_EXAMPLES}") from None
        return Encoding(name, "forced by --encoding")
    if path.suffix.lower() == ".parquet":
        return Encoding("utf-8", "Parquet strings are UTF-8")
    with open(path, "rb") as f:
        sample = f.read(sample_bytes)
        complete = not f.read(1)
    for bom, name, reason in _BOMS:
        if sample.startswith(bom):
            return Encoding(name, reason)
    utf16 = _utf16_without_bom(sample)
    if utf16:
        return Encoding(utf16, "no byte-order mark, but every other byte is NUL (UTF-16)")
    nul = sample.count(0)
    if nul > len(sample) // 100:  # text never holds NUL bytes like this
        raise GoldmineError(f"{path}: looks like a binary file ({nul:,} NUL bytes in the first "
                            f"{len(sample):,}), not text; name the encoding with --encoding if "
                            "it really is text")
    if _decodes(sample, "utf-8", complete) is not None:
        return Encoding("utf-8", "valid UTF-8")
    text = _decodes(sample, "gb18030", complete)
    if text is not None:
        wide = [ch for ch in text if ord(ch) > 0x7F]
        cjk = sum(map(_is_cjk, wide))
        if wide and cjk * 2 >= len(wide):
            return Encoding("gb18030", f"not UTF-8; decodes as GB18030 with "
                                       f"{100 * cjk // len(wide)}% CJK characters")
    if _decodes(sample, "cp1252", complete) is not None:
        return Encoding("cp1252", "fallback: not UTF-8 or GB18030; decoded as cp1252")
    return Encoding("latin-1", "fallback: not UTF-8, GB18030 or cp1252; decoded as latin-1")


# ------------------------------------------------------------------------------------ lines
@dataclass(slots=True)
class _Line:
    number: int  # 1-based
    nbytes: int
    text: str  # with its line end; decoded with replacement when `error` is set
    error: str | None


def _line_codec(path: Path, name: str) -> str:
    """A codec that decodes any single line: UTF-16/32 with the byte order fixed."""
    base = codecs.lookup(name).name
    if base not in ("utf-16", "utf-32"):
        return name
    with open(path, "rb") as f:
        head = f.read(4)
    big = head.startswith(codecs.BOM_UTF32_BE if base == "utf-32" else codecs.BOM_UTF16_BE)
    return f"{base}-be" if big else f"{base}-le"


def _newline(codec: str) -> bytes:
    """The bytes of "\\n" in `codec`, without any byte-order mark."""
    encoder = codecs.getincrementalencoder(codec)()
    encoder.encode("a")
    return encoder.encode("\n")


def _split_lines(f: BinaryIO, nl: bytes, chunk_bytes: int = 1 << 16) -> Iterator[bytes]:
    """Raw lines, each with its line end; `nl` counts only at multiples of its length."""
    if nl == b"\n":
        yield from f
        return
    unit, buf, scan = len(nl), b"", 0
    while block := f.read(chunk_bytes):
        buf += block
        start = 0
        while (i := buf.find(nl, scan)) >= 0:
            if (i - start) % unit:
                scan = i + 1
                continue
            yield buf[start:i + unit]
            start = scan = i + unit
        buf = buf[start:]
        scan = max(0, len(buf) - unit + 1)
    if buf:
        yield buf


def _decode_error(name: str, data: bytes, err: UnicodeDecodeError) -> str:
    return f"bytes not valid in {name} (byte 0x{data[err.start]:02x} at column {err.start + 1})"


def _lines(path: Path, encoding: Encoding) -> Iterator[_Line]:
    """Decoded lines. A line whose bytes do not decode comes with an error (and U+FFFD)."""
    codec = _line_codec(path, encoding.name)
    with open(path, "rb") as f:
        for number, raw in enumerate(_split_lines(f, _newline(codec)), 1):
            error = None
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError as e:
                text, error = raw.decode(codec, "replace"), _decode_error(encoding.name, raw, e)
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield _Line(number, len(raw), text, error)


def _chomp(text: str) -> str:
    """text without its line end ("\\n" or "\\r\\n")."""
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


def _blank(text: str) -> bool:
    return not text.strip()


def _clip(text: str) -> str:
    return text[:RAW_CHARS]


def _rejected(path: Path, lines: list[_Line], error: str, extra_bytes: int = 0) -> Row:
    text = "".join(ln.text for ln in lines)
    nbytes = extra_bytes + sum(ln.nbytes for ln in lines)
    return Row(None, path, lines[0].number, nbytes, error, _clip(text))


def _bad_line_error(lines: list[_Line]) -> str | None:
    """The decoding error of a multi-line row, naming the line when it is not the first."""
    for ln in lines:
        if ln.error:
            return ln.error if ln is lines[0] else f"line {ln.number}: {ln.error}"
    return None


# ------------------------------------------------------------------------------ text files
def _iter_document(path: Path, encoding: Encoding) -> Iterator[Row]:
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise GoldmineError(f"{path}: {size / 1e6:.0f} MB is too large to read as one document "
                            f"(limit {MAX_DOCUMENT_BYTES >> 20} MB); use --unit paragraph or "
                            f"--unit line")
    data = path.read_bytes()
    codec = _line_codec(path, encoding.name)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        line = data.count(_newline(codec), 0, e.start) + 1
        text = data.decode(codec, "replace").removeprefix("\ufeff")
        yield Row(None, path, 1, size, f"line {line}: {_decode_error(encoding.name, data, e)}",
                  _clip(text))
        return
    yield Row({"text": text.removeprefix("\ufeff")}, path, 1, size)


def _iter_paragraphs(path: Path, encoding: Encoding) -> Iterator[Row]:
    block: list[_Line] = []
    skipped = 0  # bytes of blank lines, credited to the next paragraph

    def paragraph() -> Row:
        error = _bad_line_error(block)
        if error:
            return _rejected(path, block, error, skipped)
        text = _chomp("".join(ln.text for ln in block))
        return Row({"text": text}, path, block[0].number, skipped + sum(ln.nbytes for ln in block))

    for ln in _lines(path, encoding):
        if _blank(ln.text) and not ln.error:
            if block:
                yield paragraph()
                block, skipped = [], 0
            skipped += ln.nbytes
        else:
            block.append(ln)
    if block:
        yield paragraph()


def _iter_text_lines(path: Path, encoding: Encoding) -> Iterator[Row]:
    skipped = 0
    for ln in _lines(path, encoding):
        if _blank(ln.text) and not ln.error:
            skipped += ln.nbytes
            continue
        nbytes, skipped = ln.nbytes + skipped, 0
        if ln.error:
            yield Row(None, path, ln.number, nbytes, ln.error, _clip(ln.text))
        else:
            yield Row({"text": _chomp(ln.text)}, path, ln.number, nbytes)


# ------------------------------------------------------------------------------------- json
def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _iter_jsonl(path: Path, encoding: Encoding) -> Iterator[Row]:
    for ln in _lines(path, encoding):
        error, obj = ln.error, None
        if error is None:
            if _blank(ln.text):
                error = "empty line"
            else:
                try:
                    obj = json.loads(ln.text)
                except json.JSONDecodeError as e:
                    error = f"not valid JSON ({e.msg} at column {e.colno})"
                else:
                    if not isinstance(obj, dict):
                        error = f"expected a JSON object, got {_type_name(obj)}"
        if error:
            yield Row(None, path, ln.number, ln.nbytes, error, _clip(ln.text))
        else:
            yield Row(obj, path, ln.number, ln.nbytes)


def _share(size: int, n: int, i: int) -> int:
    """Bytes credited to item i (1-based) of n when `size` bytes are spread evenly."""
    return i * size // n - (i - 1) * size // n


def _json_records(path: Path, doc: Any) -> list[tuple[Any, str | None]]:
    """(item, split) pairs of a parsed .json file."""
    if isinstance(doc, list):
        return [(item, None) for item in doc]
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        return [(item, str(key)) for key, items in doc.items() for item in items]
    if isinstance(doc, dict):
        odd = next((k for k, v in doc.items() if not isinstance(v, list)), None)
        found = ("an empty object" if not doc else
                 f"an object whose value for {odd!r} is {_type_name(doc[odd])}, not a list")
    else:
        found = f"a single {_type_name(doc)}"
    raise GoldmineError(f"{path}: expected a JSON list of records or an object of lists "
                        f"(e.g. {{\"train\": [...]}}), found {found}")


def _iter_json(path: Path, encoding: Encoding) -> Iterator[Row]:
    data = path.read_bytes()
    codec = _line_codec(path, encoding.name)
    try:
        text = data.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(_newline(codec), 0, e.start) + 1
        raise GoldmineError(f"{path} line {line}: {_decode_error(encoding.name, data, e)}") \
            from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise GoldmineError(f"{path} line {e.lineno} column {e.colno}: not valid JSON "
                            f"({e.msg})") from None
    del data, text
    records = _json_records(path, doc)
    size, n = path.stat().st_size, len(records)
    for i, (item, split) in enumerate(records, 1):
        nbytes = _share(size, n, i)
        if isinstance(item, dict):
            fields = dict(item)
        elif isinstance(item, list):
            fields = {str(k): v for k, v in enumerate(item)}
        else:
            raw = json.dumps(item, ensure_ascii=False)
            yield Row(None, path, i, nbytes, f"expected a JSON object or list, got "
                                             f"{_type_name(item)}", _clip(raw))
            continue
        if split is not None:
            fields.setdefault("split", split)
        yield Row(fields, path, i, nbytes)


# -------------------------------------------------------------------------------------- csv
def _sniff_delimiter(path: Path, encoding: Encoding) -> str:
    """The delimiter of a .csv: csv.Sniffer on the first 64 KB, checked against the header."""
    sample: list[str] = []
    size = 0
    for ln in _lines(path, encoding):
        sample.append(ln.text)
        size += ln.nbytes
        if size >= SNIFF_BYTES:
            break
    text = "".join(sample)
    try:
        delimiter = csv.Sniffer().sniff(text, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        delimiter = None
    header = sample[0] if sample else ""
    if delimiter is None or delimiter not in header:
        counts = {d: header.count(d) for d in CSV_DELIMITERS}
        best = max(counts, key=counts.__getitem__)
        delimiter = best if counts[best] else ","
    return delimiter


def _header(path: Path, lines: list[_Line], fields: list[str]) -> list[str]:
    error = _bad_line_error(lines)
    if error:
        raise GoldmineError(f"{path} line {lines[0].number}: header row: {error}")
    names = [name.strip() for name in fields]
    if not names:
        raise GoldmineError(f"{path} line 1: empty line; the first row must be a header "
                            "naming the columns")
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise GoldmineError(f"{path} line 1: header column {empty[0]} has no name; the first "
                            "row must be a header naming every column")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise GoldmineError(f"{path} line 1: header names column {name!r} twice")
        seen.add(name)
    return names


def _iter_csv(path: Path, encoding: Encoding, delimiter: str | None) -> Iterator[Row]:
    tsv = path.suffix.lower() == ".tsv"
    if delimiter is None:
        delimiter = "\t" if tsv else _sniff_delimiter(path, encoding)
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    pending: deque[_Line] = deque()  # lines the csv reader has taken but no row has claimed

    def feed() -> Iterator[str]:
        for ln in _lines(path, encoding):
            pending.append(ln)
            yield ln.text

    reader = csv.reader(feed(), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    header: list[str] | None = None
    while True:
        try:
            values, error = next(reader), None
        except StopIteration:
            break
        except csv.Error as e:
            values, error = None, f"not valid CSV ({e})"
        lines = []
        while pending and pending[0].number <= reader.line_num:
            lines.append(pending.popleft())
        if not lines:  # nothing was consumed: cannot happen, but never loop forever
            break
        if header is None:
            if error:
                raise GoldmineError(f"{path} line 1: header row: {error}")
            header = _header(path, lines, values or [])
            continue
        error = error or _bad_line_error(lines)
        if error is None:
            if not values:
                error = "empty line"
            elif len(values) < len(header):
                missing = ", ".join(header[len(values):])
                error = (f"row has {len(values)} fields, header has {len(header)} "
                         f"(missing: {missing})")
            elif len(values) > len(header):
                error = f"row has {len(values)} fields, header has {len(header)}"
        if error:
            yield _rejected(path, lines, error)
        else:
            yield Row(dict(zip(header, values)), path, lines[0].number,
                      sum(ln.nbytes for ln in lines))
    if header is None:
        raise GoldmineError(f"{path}: no header row; the first row must name the columns")


# ---------------------------------------------------------------------------------- parquet
def _iter_parquet(path: Path) -> Iterator[Row]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GoldmineError(f"{path}: reading .parquet files needs pyarrow "
                            "(pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise GoldmineError(f"{path}: cannot read as Parquet ({e})") from None
    size, n = path.stat().st_size, max(pf.metadata.num_rows, 1)
    line = 0
    batches = pf.iter_batches(batch_size=1024)
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as e:
            raise GoldmineError(f"{path} row {line + 1}: cannot read Parquet ({e})") from None
        if batch is None:
            return
        for record in batch.to_pylist():
            line += 1
            yield Row(record, path, line, _share(size, n, min(line, n)))


# ------------------------------------------------------------------------------------ rows
def iter_rows(path: Path, encoding: Encoding, *, unit: str = "document",
              delimiter: str | None = None) -> Iterator[Row]:
    """Stream the rows of one file (see the module docstring for each format).

    `unit` ("document", "paragraph" or "line") applies to .txt/.md; `delimiter` overrides
    the CSV/TSV delimiter. Rows that cannot be read come back with `error` set.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        if unit not in UNITS:
            raise GoldmineError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
        if unit == "document":
            return _iter_document(path, encoding)
        if unit == "paragraph":
            return _iter_paragraphs(path, encoding)
        return _iter_text_lines(path, encoding)
    if suffix == ".jsonl":
        return _iter_jsonl(path, encoding)
    if suffix == ".json":
        return _iter_json(path, encoding)
    if suffix in (".csv", ".tsv"):
        return _iter_csv(path, encoding, delimiter)
    if suffix == ".parquet":
        return _iter_parquet(path)
    raise GoldmineError(f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
                        f"supported: {', '.join(TABLE_SUFFIXES)}")
