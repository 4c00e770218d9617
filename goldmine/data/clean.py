"""Text and label cleaning for `goldmine data prepare`.

    clean_text("<p>Caf&eacute;&nbsp; ＡＢＣ</p>\\x07")  ->  "Café ABC"
    normalize_label("  Card_Arrival ")              ->  "card_arrival"

`clean_text` applies, in order:
  1. HTML: <script>/<style> blocks and comments removed, tags of real HTML elements removed
     (block elements such as <p>, <br>, <li> become line breaks), then entities decoded.
     Only known element names count as tags, and only in text that looks like HTML (a closing
     tag, an attribute, <br>/<p>, a comment), so "if a<b and c>d" and "<EMAIL>" survive.
  2. Unicode NFKC: full-width letters and digits become ASCII, ligatures split, compatibility
     forms folded - what Chinese exports and PDF copies are full of.
  3. Control and invisible characters removed (C0/C1 controls except tab and newline,
     zero-width spaces, byte-order marks); CR/LF and CR become LF.
  4. Whitespace: runs of spaces and tabs become one space, lines are stripped at the ends,
     three or more line breaks become one blank line, and the text is stripped.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Element names of HTML 4/5 (and a few common SVG/legacy ones): only these are tags.
_BLOCK = ("address article aside blockquote body br dd details dialog div dl dt fieldset "
          "figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hr html li main nav ol p "
          "pre section summary table tbody td tfoot th thead title tr ul").split()
_INLINE = ("a abbr b bdi bdo big button canvas caption center cite code col colgroup data "
           "datalist del dfn em embed font i iframe img input ins kbd label legend link map mark "
           "meta meter noscript object optgroup option output param picture progress q rp rt "
           "ruby s samp select small source span strike strong sub sup svg template textarea "
           "time track tt u var video wbr audio area base").split()
_TAG_NAMES = "|".join(sorted(_BLOCK + _INLINE, key=len, reverse=True))
_RE_DROP_BLOCKS = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->|<!DOCTYPE[^>]*>",
                             re.IGNORECASE | re.DOTALL)
_RE_BLOCK_TAG = re.compile(rf"</?(?:{'|'.join(_BLOCK)})\b(?:\s[^<>]*)?/?>", re.IGNORECASE)
_RE_TAG = re.compile(rf"</?(?:{_TAG_NAMES})\b(?:\s[^<>]*)?/?>", re.IGNORECASE)
# Tags are only removed from text that looks like HTML: a closing tag, an attribute with a
# value, a line-break/paragraph tag or a comment. "if a<b and c>d" is left alone.
_RE_LOOKS_HTML = re.compile(rf"</(?:{_TAG_NAMES})\s*>|<(?:{_TAG_NAMES})\b[^<>]*=|"
                            r"<(?:br|hr|p|li|img)\b[^<>]*>|<!--|<(?:script|style)\b", re.IGNORECASE)
_RE_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

# C0 and C1 controls except \t and \n; zero-width and byte-order marks; soft hyphen.
_RE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u200e\u200f\u2060\ufeff]")
_RE_SPACES = re.compile(r"[^\S\n]+")
_RE_LINE_EDGES = re.compile(r" *\n *")
_RE_BLANK_LINES = re.compile(r"\n{3,}")


def strip_html(text: str) -> str:
    """Remove scripts, styles, comments and tags of real HTML elements; decode entities."""
    if "<" in text and _RE_LOOKS_HTML.search(text):
        text = _RE_DROP_BLOCKS.sub("", text)
        text = _RE_BLOCK_TAG.sub("\n", text)
        text = _RE_TAG.sub("", text)
    if "&" in text and _RE_ENTITY.search(text):
        text = html.unescape(text)
    return text


def clean_text(text: str, *, normalize: bool = True, html_tags: bool = True) -> str:
    """The cleaned text (see the module docstring); "" when nothing is left."""
    if html_tags:
        text = strip_html(text)
    if normalize and not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _RE_CONTROL.sub("", text)
    text = _RE_SPACES.sub(" ", text)
    text = _RE_LINE_EDGES.sub("\n", text)
    text = _RE_BLANK_LINES.sub("\n\n", text)
    return text.strip()


def normalize_label(label, *, lowercase: bool = True) -> str:
    """A label as text: NFKC, whitespace collapsed and stripped, lower-cased unless told not to.

    Integral floats read from spreadsheets (1.0) become "1"; booleans become "true"/"false".
    """
    if isinstance(label, bool):
        label = "true" if label else "false"
    elif isinstance(label, float) and label.is_integer():
        label = str(int(label))
    text = unicodedata.normalize("NFKC", str(label))
    text = " ".join(text.split())
    return text.lower() if lowercase else text
