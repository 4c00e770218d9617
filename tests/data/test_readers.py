"""Tests for goldmine.data.readers: file collection, streaming, and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goldmine.data.readers import collect_files, is_safe_cut, iter_texts
from goldmine.errors import GoldmineError


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------------------ collect_files
def test_collect_files_recursive_sorted_and_hidden_skipped(tmp_path):
    _write(tmp_path / "b.txt", "b\n")
    _write(tmp_path / "a.jsonl", '{"text": "a"}\n')
    _write(tmp_path / "sub" / "c.md", "# c\n")
    _write(tmp_path / "sub" / "notes.csv", "x,y\n")  # unsupported inside a folder: ignored
    _write(tmp_path / ".hidden.txt", "secret\n")
    _write(tmp_path / ".git" / "d.txt", "d\n")
    files = collect_files([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.jsonl", "b.txt", "sub/c.md"]
    # a file named twice is read once; an explicit file keeps its order
    again = collect_files([tmp_path / "sub" / "c.md", tmp_path])
    assert [f.name for f in again] == ["c.md", "a.jsonl", "b.txt"]


@pytest.mark.parametrize("case, needle", [
    ("none", "no inputs given"),
    ("missing", "nope.txt: not found"),
    ("unsupported", "data.csv: unsupported file type '.csv'; supported: .txt, .md, .jsonl"),
    ("empty_dir", "folder holds no .txt, .md, .jsonl, .parquet files"),
    ("empty_file", "empty.txt: file is empty (0 bytes)"),
])
def test_collect_files_errors(tmp_path, case, needle):
    args = {
        "none": [],
        "missing": [tmp_path / "nope.txt"],
        "unsupported": [_write(tmp_path / "data.csv", "a,b\n")],
        "empty_dir": [_write(tmp_path / "d" / "x.csv", "a\n").parent],
        "empty_file": [_write(tmp_path / "empty.txt", b"")],
    }[case]
    with pytest.raises(GoldmineError) as e:
        collect_files(args)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------ text files
def test_text_file_is_one_document_with_exact_bytes(tmp_path):
    text = "  leading spaces\r\nwindows line\r\n\n你好，世界 😀\ttrailing  \nno final newline"
    f = _write(tmp_path / "a.txt", text)
    pieces = list(iter_texts([f]))
    assert "".join(p.text for p in pieces) == text
    assert [p.doc_end for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert sum(p.nbytes for p in pieces) == f.stat().st_size


def test_text_chunks_cut_where_tokenization_is_unchanged(tmp_path):
    lines = [f"line {i} with some words {'x' * (i % 7)}\n" for i in range(400)]
    text = "".join(lines)
    f = _write(tmp_path / "a.md", text)
    pieces = list(iter_texts([f], chunk_bytes=256))
    assert len(pieces) > 10
    assert "".join(p.text for p in pieces) == text
    data = text.encode()
    at = 0
    for p in pieces[:-1]:
        at += p.nbytes
        assert is_safe_cut(data, at), repr(data[at - 5:at + 5])
    assert [p.doc_end for p in pieces].count(True) == 1 and pieces[-1].doc_end
    assert sum(p.nbytes for p in pieces) == len(text.encode())


def test_a_giant_line_is_yielded_whole(tmp_path):
    text = "short\n" + "y" * 5000 + "\nend\n"
    f = _write(tmp_path / "a.txt", text)
    pieces = list(iter_texts([f], chunk_bytes=64))
    assert "".join(p.text for p in pieces) == text
    assert any("y" * 5000 in p.text for p in pieces)


def test_max_bytes_limits_the_stream(tmp_path):
    f = _write(tmp_path / "a.txt", "".join(f"line number {i}\n" for i in range(1000)))
    g = _write(tmp_path / "b.jsonl", '{"text": "more"}\n')
    pieces = list(iter_texts([f, g], max_bytes=1000, chunk_bytes=300))
    got = "".join(p.text for p in pieces).encode()
    assert 0 < len(got) <= 1000 and f.read_bytes().startswith(got)
    assert pieces[-1].doc_end
    assert all(p.path == f for p in pieces)


def test_invalid_utf8_names_file_line_and_column(tmp_path):
    f = _write(tmp_path / "corpus.txt", b"first\nsecond\nabcd\xb0ef\n")
    with pytest.raises(GoldmineError) as e:
        list(iter_texts([f]))
    assert str(e.value) == f"{f} line 3: not valid UTF-8 (byte 0xb0 at column 5)"


def test_invalid_utf8_line_number_in_a_later_chunk(tmp_path):
    data = b"".join(b"good line %d\n" % i for i in range(300)) + b"bad \xff line\n"
    f = _write(tmp_path / "corpus.txt", data)
    with pytest.raises(GoldmineError, match=r"line 301: not valid UTF-8 \(byte 0xff at column 5\)"):
        list(iter_texts([f], chunk_bytes=128))


# ---------------------------------------------------------------------------------- jsonl
def test_jsonl_documents_and_blank_lines(tmp_path):
    rows = [{"text": "one\r\n  two  "}, {"text": "中文 ✨", "id": 2}, {"text": ""}]
    data = json.dumps(rows[0]) + "\n\n   \n" + json.dumps(rows[1], ensure_ascii=False) + "\n" \
        + json.dumps(rows[2]) + "\n"
    f = _write(tmp_path / "c.jsonl", data)
    pieces = list(iter_texts([f]))
    assert [p.text for p in pieces] == [r["text"] for r in rows]
    assert all(p.doc_end for p in pieces)
    assert sum(p.nbytes for p in pieces) == f.stat().st_size
    body = [p.text for p in iter_texts([_write(tmp_path / "d.jsonl", '{"body": "x"}\n')],
                                       text_field="body")]
    assert body == ["x"]


@pytest.mark.parametrize("line, needle", [
    ('{"text": "a",}', "line 3: not valid JSON (Expecting property name enclosed in double quotes"
                       " at column 14)"),
    ('["a list"]', "line 3: expected a JSON object with a 'text' field, got list"),
    ('{"body": "x", "id": 1}', "line 3: no 'text' field (fields present: 'body', 'id')"),
    ('{"text": 42}', "line 3: field 'text' is int, expected a string"),
    ('{"text": "\\ud800"}', "line 3: field 'text' holds an unpaired surrogate"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, needle):
    f = _write(tmp_path / "data.jsonl", '{"text": "ok"}\n\n' + line + "\n")
    with pytest.raises(GoldmineError) as e:
        list(iter_texts([f]))
    assert str(e.value).startswith(f"{f} line 3: ")
    assert needle in str(e.value)


def test_jsonl_invalid_utf8(tmp_path):
    f = _write(tmp_path / "data.jsonl", b'{"text": "ok"}\n{"text": "\xe4\xbd"}\n')
    with pytest.raises(GoldmineError, match=r"data.jsonl line 2: not valid UTF-8 \(byte 0xe4 at "
                                            r"column 11\)"):
        list(iter_texts([f]))


@pytest.mark.parametrize("text, cut, safe", [
    ("end.\nNext line", 5, True),        # after a newline between non-space characters
    ("end.\n\nNext", 6, False),          # "\n\n" would become one piece at a chunk's end
    ("end. Next", 4, True),              # before a single space between non-space characters
    ("end.  Next", 5, False),            # inside a run of spaces
    ("wor ld", 2, False),                # inside a word
    ("这是 中文", 2, True),               # multi-byte characters on both sides
])
def test_safe_cut_rules(text, cut, safe):
    data = text.encode()
    c = len(text[:cut].encode())
    assert is_safe_cut(data, c) is safe


def test_paragraphs_without_hard_wraps_still_cut_safely(tmp_path):
    # long one-line paragraphs separated by blank lines: no newline is a safe cut, spaces are
    para = " ".join(f"word{i}." for i in range(300))
    text = "\n\n".join([para] * 20) + "\n"
    f = _write(tmp_path / "prose.txt", text)
    pieces = list(iter_texts([f], chunk_bytes=512))
    assert len(pieces) > 10 and "".join(p.text for p in pieces) == text
    data, at = text.encode(), 0
    for p in pieces[:-1]:
        at += p.nbytes
        assert is_safe_cut(data, at)
