import pytest

from goldmine.data.clean import clean_text, normalize_label, strip_html


@pytest.mark.parametrize("raw, expected", [
    ("<p>Hello&nbsp;<b>world</b></p>", "Hello world"),
    ("Caf&eacute; &amp; bar &#39;ok&#39; &#x4E2D;", "Café & bar 'ok' 中"),
    ("line one<br>line two<br/>line three", "line one\nline two\nline three"),
    ("<div class=\"x\">a</div><div>b</div>", "a\n\nb"),
    ("<script>var x = '<p>';</script>visible<style>p {}</style>", "visible"),
    ("before<!-- a comment -->after", "beforeafter"),
    ("<!DOCTYPE html><html><head><title>T</title></head><body>body</body></html>", "T\n\nbody"),
])
def test_html_is_removed_and_entities_decoded(raw, expected):
    assert clean_text(raw) == expected


@pytest.mark.parametrize("text", [
    "if a<b and c>d then swap",      # comparison, not a tag
    "contact <EMAIL> or <PHONE>",    # PII placeholders survive
    "x < y > z",
    "use vector<int> here",          # C++ template argument
])
def test_text_that_only_looks_like_html_is_kept(text):
    assert clean_text(text) == text


def test_html_can_be_left_alone():
    assert clean_text("<b>x</b>", html_tags=False) == "<b>x</b>"
    assert strip_html("no tags here") == "no tags here"


def test_nfkc_folds_full_width_and_ligatures():
    assert clean_text("ＡＢＣ１２３，你好") == "ABC123,你好"
    assert clean_text("ﬁne") == "fine"
    assert clean_text("ＡＢＣ", normalize=False) == "ＡＢＣ"


def test_controls_invisibles_and_whitespace():
    raw = "\ufeffHello\x07 \u200bworld\t\t!\r\n\r\n\r\n\r\n  next\x00 line  \r\nend"
    assert clean_text(raw) == "Hello world !\n\nnext line\nend"
    assert clean_text(" \n\t\x0b ") == ""
    # tabs and newlines are whitespace, not removed controls
    assert clean_text("a\tb\nc") == "a b\nc"


@pytest.mark.parametrize("raw, lowercase, expected", [
    ("  Card_Arrival ", True, "card_arrival"),
    ("Very   Positive", True, "very positive"),
    ("Very   Positive", False, "Very Positive"),
    (1, True, "1"),
    (1.0, True, "1"),
    (2.5, True, "2.5"),
    (True, True, "true"),
    ("ＰＯＳ", True, "pos"),
    ("正面", True, "正面"),
])
def test_normalize_label(raw, lowercase, expected):
    assert normalize_label(raw, lowercase=lowercase) == expected
