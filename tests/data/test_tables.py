"""Tests for goldmine.data.tables: file collection, encoding detection and the row readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goldmine.data.tables import (
    Encoding,
    Row,
    collect_table_files,
    detect_encoding,
    iter_rows,
)
from goldmine.errors import GoldmineError

UTF8 = Encoding("utf-8", "valid UTF-8")


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _rows(path: Path, encoding: Encoding | None = None, **kw) -> list[Row]:
    return list(iter_rows(path, encoding or detect_encoding(path), **kw))


def _ok(rows: list[Row]) -> list[dict]:
    return [r.fields for r in rows if r.error is None]


def _bad(rows: list[Row]) -> list[tuple[int, str]]:
    return [(r.line, r.error) for r in rows if r.error is not None]


# ------------------------------------------------------------------------ collect_table_files
def test_collect_table_files_recursive_sorted_and_hidden_skipped(tmp_path):
    for name in ["b.csv", "a.jsonl", "sub/c.tsv", "sub/d.parquet", "e.json", "f.md", "g.txt"]:
        _write(tmp_path / name, "x\n")
    _write(tmp_path / "notes.xlsx", "x")  # unsupported inside a folder: ignored
    _write(tmp_path / ".hidden.csv", "x\n")
    _write(tmp_path / ".cache" / "h.csv", "x\n")
    files = collect_table_files([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "a.jsonl", "b.csv", "e.json", "f.md", "g.txt", "sub/c.tsv", "sub/d.parquet"]
    again = collect_table_files([tmp_path / "g.txt", tmp_path])
    assert again[0].name == "g.txt" and len(again) == len(files)


@pytest.mark.parametrize("case, needle", [
    ("none", "no inputs given"),
    ("missing", "nope.csv: not found"),
    ("unsupported", "data.xlsx: unsupported file type '.xlsx'; supported: .txt, .md, .jsonl"),
    ("empty_dir", "folder holds no .txt, .md, .jsonl, .json, .csv, .tsv, .parquet files"),
    ("empty_file", "empty.csv: file is empty (0 bytes)"),
])
def test_collect_table_files_errors(tmp_path, case, needle):
    args = {
        "none": [],
        "missing": [tmp_path / "nope.csv"],
        "unsupported": [_write(tmp_path / "data.xlsx", "a,b\n")],
        "empty_dir": [_write(tmp_path / "d" / "x.xlsx", "a\n").parent],
        "empty_file": [_write(tmp_path / "empty.csv", b"")],
    }[case]
    with pytest.raises(GoldmineError) as e:
        collect_table_files(args)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------- encodings
def test_detect_utf8_and_bom(tmp_path):
    plain = _write(tmp_path / "a.csv", "名字,label\n你好,1\n")
    assert detect_encoding(plain) == Encoding("utf-8", "valid UTF-8")
    bom = _write(tmp_path / "b.csv", b"\xef\xbb\xbf" + "name,label\ncafé,1\n".encode())
    enc = detect_encoding(bom)
    assert enc == Encoding("utf-8-sig", "UTF-8 byte-order mark")
    rows = _rows(bom, enc)
    assert _ok(rows) == [{"name": "café", "label": "1"}]  # no BOM in the first header name


def test_detect_utf8_ignores_a_character_cut_by_the_sample(tmp_path):
    f = _write(tmp_path / "a.txt", "ab€cd\n")  # € is 3 bytes; a 4-byte sample cuts it
    assert detect_encoding(f, sample_bytes=4).name == "utf-8"


def test_gb18030_chinese_csv_detected_and_decoded(tmp_path):
    text = "问题,标签\n我的卡还没到，怎么办？,卡片到达\n如何修改密码,账户\n"
    f = _write(tmp_path / "zh.csv", text.encode("gb18030"))
    enc = detect_encoding(f)
    assert enc.name == "gb18030"
    assert enc.reason.startswith("not UTF-8; decodes as GB18030 with 100% CJK")
    assert _ok(_rows(f, enc)) == [{"问题": "我的卡还没到，怎么办？", "标签": "卡片到达"},
                                  {"问题": "如何修改密码", "标签": "账户"}]


def test_gbk_file_reads_as_gb18030(tmp_path):
    text = "{\"text\": \"退款需要几天？\", \"label\": \"退款\"}\n"
    f = _write(tmp_path / "zh.jsonl", text.encode("gbk"))
    enc = detect_encoding(f)
    assert enc.name == "gb18030"
    assert _ok(_rows(f, enc)) == [{"text": "退款需要几天？", "label": "退款"}]


def test_cp1252_and_latin1_fallbacks(tmp_path):
    cp = _write(tmp_path / "fr.txt", "café naïve “quoted” œuvre\n".encode("cp1252"))
    enc = detect_encoding(cp)
    assert enc == Encoding("cp1252", "fallback: not UTF-8 or GB18030; decoded as cp1252")
    assert _ok(_rows(cp, enc)) == [{"text": "café naïve “quoted” œuvre\n"}]
    # 0x81 is not defined in cp1252: only latin-1 decodes it
    lat = _write(tmp_path / "x.txt", "café \x81 déjà\n".encode("latin-1"))
    enc = detect_encoding(lat)
    assert enc.name == "latin-1" and enc.reason.startswith("fallback:")
    assert _ok(_rows(lat, enc)) == [{"text": "café \x81 déjà\n"}]


def test_utf16_bom_read_line_by_line(tmp_path):
    f = _write(tmp_path / "a.csv", "text,label\n退款,1\nhello,0\n".encode("utf-16"))
    enc = detect_encoding(f)
    assert enc.name == "utf-16"
    rows = _rows(f, enc)
    assert _ok(rows) == [{"text": "退款", "label": "1"}, {"text": "hello", "label": "0"}]
    assert [r.line for r in rows] == [2, 3]


def test_forced_encoding_and_unknown_name(tmp_path):
    f = _write(tmp_path / "a.txt", "naïve\n".encode("latin-1"))
    enc = detect_encoding(f, forced="latin-1")
    assert enc.reason == "forced by --encoding"
    assert _ok(_rows(f, enc)) == [{"text": "naïve\n"}]
    with pytest.raises(GoldmineError, match=r"unknown encoding 'klingon'.*utf-8.*gb18030"):
        detect_encoding(f, forced="klingon")
    with pytest.raises(GoldmineError, match="unknown encoding 'base64'"):
        detect_encoding(f, forced="base64")  # a codec, but not a text encoding


def test_invalid_byte_rejects_only_its_row(tmp_path):
    data = b'{"text": "one"}\n{"text": "t\xffwo"}\n{"text": "three"}\n'
    f = _write(tmp_path / "a.jsonl", data)
    assert detect_encoding(f).name == "cp1252"  # the whole sample is not UTF-8...
    rows = _rows(f, UTF8)  # ...but read as UTF-8, only the bad line is lost
    assert _ok(rows) == [{"text": "one"}, {"text": "three"}]
    assert _bad(rows) == [(2, "bytes not valid in utf-8 (byte 0xff at column 12)")]
    assert rows[1].raw == '{"text": "t\ufffdwo"}\n'
    csv_f = _write(tmp_path / "a.csv", b'text,label\n"multi\nli\xffne",1\nok,0\n')
    rows = _rows(csv_f, UTF8)
    assert _ok(rows) == [{"text": "ok", "label": "0"}]
    assert _bad(rows) == [(2, "line 3: bytes not valid in utf-8 (byte 0xff at column 3)")]
    assert rows[1].line == 4


# ------------------------------------------------------------------------------- text files
TEXT = "Title\r\n\n  indented first para\nsecond line  \n\n\n   \nlast para\nno newline at end"


def test_text_units(tmp_path):
    f = _write(tmp_path / "a.txt", TEXT)
    size = f.stat().st_size
    (doc,) = _rows(f, UTF8)
    assert (doc.fields, doc.line, doc.nbytes) == ({"text": TEXT}, 1, size)
    paras = _rows(f, UTF8, unit="paragraph")
    assert [(r.line, r.fields["text"]) for r in paras] == [
        (1, "Title"),
        (3, "  indented first para\nsecond line  "),
        (8, "last para\nno newline at end"),
    ]
    assert sum(r.nbytes for r in paras) == size
    lines = _rows(f, UTF8, unit="line")
    assert [(r.line, r.fields["text"]) for r in lines] == [
        (1, "Title"), (3, "  indented first para"), (4, "second line  "),
        (8, "last para"), (9, "no newline at end")]
    assert sum(r.nbytes for r in lines) == size


def test_document_with_bad_byte_is_rejected_and_unknown_unit(tmp_path):
    f = _write(tmp_path / "a.md", b"# ok\nfine\nbad \xc3(\n")
    (row,) = _rows(f, UTF8)
    assert row.fields is None and row.error == "line 3: bytes not valid in utf-8 " \
                                               "(byte 0xc3 at column 15)"
    with pytest.raises(GoldmineError, match="unknown unit 'sentence'"):
        iter_rows(f, UTF8, unit="sentence")


# ------------------------------------------------------------------------------------ jsonl
def test_jsonl_rows_and_rejections(tmp_path):
    lines = ['{"text": "a", "label": 1}', '{"text": "b" "label": 2}', "", "[1, 2]",
             '"just a string"', '{"text": "c"}']
    f = _write(tmp_path / "a.jsonl", "\n".join(lines) + "\n")
    rows = _rows(f)
    assert _ok(rows) == [{"text": "a", "label": 1}, {"text": "c"}]
    assert [r.line for r in rows if r.error is None] == [1, 6]
    assert _bad(rows) == [
        (2, "not valid JSON (Expecting ',' delimiter at column 14)"),
        (3, "empty line"),
        (4, "expected a JSON object, got list"),
        (5, "expected a JSON object, got str"),
    ]
    assert rows[1].raw == '{"text": "b" "label": 2}\n'
    assert sum(r.nbytes for r in rows) == f.stat().st_size
    assert rows[1].where == f"{f}:2"


# ------------------------------------------------------------------------------------- json
def test_json_list_of_records(tmp_path):
    f = _write(tmp_path / "a.json", json.dumps([{"text": "a"}, ["b", "x"], 7, {"text": "d"}]))
    rows = _rows(f)
    assert [r.fields for r in rows] == [{"text": "a"}, {"0": "b", "1": "x"}, None, {"text": "d"}]
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert _bad(rows) == [(3, "expected a JSON object or list, got int")]
    assert rows[2].raw == "7"
    assert sum(r.nbytes for r in rows) == f.stat().st_size


def test_json_clinc_style_dict_of_lists(tmp_path):
    doc = {"train": [["what is my balance", "balance"], ["hi", "greeting"]],
           "val": [["reset my pin", "pin_change"]],
           "extra": [{"text": "t", "split": "custom"}]}
    f = _write(tmp_path / "clinc.json", json.dumps(doc))
    rows = _rows(f)
    assert [r.fields for r in rows] == [
        {"0": "what is my balance", "1": "balance", "split": "train"},
        {"0": "hi", "1": "greeting", "split": "train"},
        {"0": "reset my pin", "1": "pin_change", "split": "val"},
        {"text": "t", "split": "custom"},  # an item's own "split" wins
    ]
    assert [r.line for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize("content, needle", [
    ('{"text": "one record"}', "found an object whose value for 'text' is str, not a list"),
    ('"hello"', "found a single str"),
    ('[{"a": 1},\n {"b": 2]', "a.json line 2 column 9: not valid JSON (Expecting ',' delimiter)"),
])
def test_json_file_errors(tmp_path, content, needle):
    f = _write(tmp_path / "a.json", content)
    with pytest.raises(GoldmineError) as e:
        _rows(f)
    assert needle in str(e.value)


# -------------------------------------------------------------------------------------- csv
def test_csv_quoted_multiline_field_keeps_line_numbers(tmp_path):
    text = ('instruction,response,intent\n'
            'cancel order,"Sure.\n\n1. Log in\n2. Click ""Cancel""",cancel\n'
            'track order,"It ships, soon",track\r\n'
            'refund,fine,refund\n')
    f = _write(tmp_path / "a.csv", text)
    rows = _rows(f)
    assert _ok(rows) == [
        {"instruction": "cancel order", "response": 'Sure.\n\n1. Log in\n2. Click "Cancel"',
         "intent": "cancel"},
        {"instruction": "track order", "response": "It ships, soon", "intent": "track"},
        {"instruction": "refund", "response": "fine", "intent": "refund"},
    ]
    assert [r.line for r in rows] == [2, 6, 7]
    assert sum(r.nbytes for r in rows) == f.stat().st_size - len("instruction,response,intent\n")


def test_csv_missing_extra_and_empty_rows(tmp_path):
    f = _write(tmp_path / "a.csv", "text,label,split\na,1,train\nb,2\n\nc,3,train,oops\nd,4,val\n")
    rows = _rows(f)
    assert _ok(rows) == [{"text": "a", "label": "1", "split": "train"},
                         {"text": "d", "label": "4", "split": "val"}]
    assert _bad(rows) == [
        (3, "row has 2 fields, header has 3 (missing: split)"),
        (4, "empty line"),
        (5, "row has 4 fields, header has 3"),
    ]
    assert rows[1].raw == "b,2\n"


def test_tsv_with_bare_quotes_sst2_style(tmp_path):
    f = _write(tmp_path / "train.tsv", 'sentence\tlabel\nit \'s a "funny" film \t1\n'
                                       '" unbalanced quote\t0\n')
    rows = _rows(f)
    assert _ok(rows) == [{"sentence": 'it \'s a "funny" film ', "label": "1"},
                         {"sentence": '" unbalanced quote', "label": "0"}]
    assert [r.line for r in rows] == [2, 3]


def test_csv_delimiter_sniffed_or_given(tmp_path):
    f = _write(tmp_path / "semi.csv", 'text;label\n"hello, world";greeting\nbye;farewell\n')
    assert _ok(_rows(f)) == [{"text": "hello, world", "label": "greeting"},
                             {"text": "bye", "label": "farewell"}]
    pipe = _write(tmp_path / "pipe.csv", "a|b\n1|2\n")
    assert _ok(_rows(pipe)) == [{"a": "1", "b": "2"}]
    assert _ok(_rows(pipe, delimiter=",")) == [{"a|b": "1|2"}]


@pytest.mark.parametrize("header, needle", [
    ("text,label,text", "header names column 'text' twice"),
    ("text,,label", "header column 2 has no name"),
    ("", "empty line; the first row must be a header"),
])
def test_csv_header_errors(tmp_path, header, needle):
    f = _write(tmp_path / "a.csv", header + "\nx,y,z\n")
    with pytest.raises(GoldmineError) as e:
        _rows(f)
    assert needle in str(e.value) and "a.csv" in str(e.value)


# ---------------------------------------------------------------------------------- parquet
def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"text": [f"row {i}" for i in range(2500)], "label": list(range(2500))})
    f = tmp_path / "a.parquet"
    pq.write_table(table, f)
    rows = _rows(f)
    assert detect_encoding(f).name == "utf-8"
    assert len(rows) == 2500 and not _bad(rows)
    assert rows[0].fields == {"text": "row 0", "label": 0}
    assert (rows[-1].fields, rows[-1].line) == ({"text": "row 2499", "label": 2499}, 2500)
    assert sum(r.nbytes for r in rows) == f.stat().st_size


def test_unreadable_parquet_is_an_error(tmp_path):
    pytest.importorskip("pyarrow")
    f = _write(tmp_path / "bad.parquet", b"this is not parquet")
    with pytest.raises(GoldmineError, match="bad.parquet: cannot read as Parquet"):
        _rows(f)


def test_binary_file_is_an_error_not_a_latin1_text(tmp_path):
    p = tmp_path / "data.csv"
    p.write_bytes(b"PK\x03\x04\x00\x00\x08\x00\xc3\x9f" * 2000)  # a zip archive, renamed
    with pytest.raises(GoldmineError, match="looks like a binary file"):
        detect_encoding(p)
    assert detect_encoding(p, forced="latin-1").name == "iso8859-1"
