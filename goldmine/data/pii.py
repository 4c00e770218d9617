"""PII detection and scrubbing for ``goldmine data prepare``.

    find_pii("mail zhang.wei@example.cn")  ->  [PiiMatch(5, 25, "email", "zhang.wei@example.cn")]
    scrub_pii("call +1 415-555-2671")       ->  ("call <PHONE>", {"phone": 1})

Text is expected to be NFKC-normalised already (full-width digits, "＠" and "：" are ASCII by
then). Each kind is found with precompiled regular expressions and then validated:

- ``url_credentials``: the ``user:password`` part of ``scheme://user:password@host``; only that
  part is replaced (``postgres://<CREDENTIALS>@db.example.com:5432/app``).
- ``email``: ``local@domain.tld`` with ASCII local part and domain and a letters-only TLD of 2+
  letters. Boundaries are ASCII classes, never ``\\b``/``\\w`` (those treat Chinese characters
  as word characters, so "邮箱是a@b.cn谢谢" would be missed).
- ``cn_id``: 18-character PRC resident ID numbers (17 digits and a digit or X), checked with
  `cn_id_valid` (birth date and ISO 7064 MOD 11-2 check character).
- ``card``: 13-19 digits, contiguous or in groups (first group of 4) split by one kind of
  separator (space or dash), whose prefix and length fit a card network (Visa 4 with 13/16/19
  digits, Mastercard, Amex 34/37 with 15, Discover, UnionPay 62, JCB, Diners, Maestro;
  `card_network_ok`) and passing the Luhn check (`luhn_valid`).
  Trailing groups that break the check are dropped ("4111 1111 1111 1111 12" keeps 16 digits).
- ``ip``: IPv4 (octets 0-255, no leading zeros, not part of a longer dotted or alphanumeric run
  such as "1.2.3.4.5" or "v1.2.3.4") and IPv6 (runs of hex digits and colons accepted by
  `ipaddress.IPv6Address` that contain a decimal digit, so "12:30:45", "std::vector" and a bare
  "::" are left alone). MAC addresses ("00:1a:2b:3c:4d:5e") are not IP addresses and are kept.
- ``phone``: international numbers written with "+" and a country code (8-15 digits in all),
  North-American numbers ("(415) 555-2671", "415-555-2671", "415.555.2671", "1-415-555-2671")
  and Chinese mobiles (11 digits "1[3-9]...", also "138-1234-5678" / "138 1234 5678").

None of the numeric kinds match next to other digits. Kinds are searched in `PII_TYPES` order
and an earlier kind wins: a later one never matches inside an earlier match or inside a
placeholder already in the text. `scrub_pii` repeats until nothing is found, so its output
contains nothing `find_pii` would report and scrubbing scrubbed text changes nothing.

Speed (it runs over hundreds of MB): whole families are skipped after cheap tests on the text
(no "@" -> no e-mail or credentials; no run of 7+ digits and separators -> no ID, card, IPv4 or
phone; no ":" -> no IPv6), so text without any of them costs one quick regex search. Patterns
are written so that re can jump to their first character, and e-mail and IPv6 are only tried
around an "@" or two close colons. Mixed English/Chinese prose goes at tens of MB/s.

Not detected, deliberately: names and postal addresses; phone numbers without "+" other than
the North-American and Chinese-mobile shapes (e.g. "020 7946 0958", landline "010-12345678",
"415 555 2671" with spaces only); e-mail addresses with non-ASCII characters or without a dot
in the domain ("root@localhost"); URL credentials without a password ("https://user@host") or
with characters a URL must percent-encode ("#", "/", spaces, non-ASCII); cards in other
groupings or starting with 0, 1, 7, 8 or 9. On the other side, any Luhn-valid 13-19 digit
number starting with 2-6 counts as a card, any 11-digit number starting with 13-19 as a phone,
and four-part version numbers such as "1.0.0.1" as IPv4 addresses.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

PII_TYPES: tuple[str, ...] = ("url_credentials", "email", "cn_id", "card", "ip", "phone")
PLACEHOLDERS: dict[str, str] = {
    "url_credentials": "<CREDENTIALS>",
    "email": "<EMAIL>",
    "cn_id": "<CN_ID>",
    "card": "<CARD>",
    "ip": "<IP>",
    "phone": "<PHONE>",
}


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of PII: ``text == source[start:end]``."""

    start: int
    end: int
    kind: str
    text: str


# ----------------------------------------------------------------------------- validators
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"  # check character for (weighted sum % 11)


def luhn_valid(digits: str) -> bool:
    """True for a string of 2+ ASCII digits whose Luhn (mod 10) checksum is right."""
    if len(digits) < 2 or not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_valid(s: str) -> bool:
    """True for an 18-character PRC resident ID number with a plausible birth date and check.

    Area code starting 1-9, birth date YYYYMMDD from 1900-01-01 to today, and the ISO 7064
    MOD 11-2 check character (0-9 or X/x) over the first 17 digits.
    """
    body = s[:17]
    if len(s) != 18 or not (body.isascii() and body.isdigit()) or s[0] == "0":
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if born.year < 1900 or born > date.today():
        return False
    total = sum(int(c) * w for c, w in zip(body, _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == s[17].upper()


# ----------------------------------------------------------------------------- patterns
# A rule is a search function, (text, pos) -> first candidate at or after pos, and a check that
# turns a candidate into the span to report, or rejects it (None).
#
# Speed: re jumps quickly to a pattern's first character (or literal prefix) only when the
# pattern starts with it, so a left-boundary look-behind comes *after* the first character:
# "[2-6](?<![0-9].)" is "a 2-6 not preceded by a digit" (the "." is that first character).
_Span = tuple[int, int]
_Search = Callable[[str, int], "re.Match[str] | None"]
_Check = Callable[[re.Match[str]], "_Span | None"]
_Rule = tuple[_Search, _Check]


def _whole(m: re.Match[str]) -> _Span | None:
    return m.span()


_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# RFC 3986 userinfo characters. A raw "@" is tolerated in the password: as in browsers, the
# last "@" before the host ends it.
_URL_CREDENTIALS = re.compile(
    r"://(?P<cred>[A-Za-z0-9._~!$&'()*+;=%-]*:[A-Za-z0-9._~!$&'()*+;=%:@-]*)@(?=[A-Za-z0-9\[])"
)


def _credentials(m: re.Match[str]) -> _Span | None:
    at = m.start()
    if at == 0 or m.string[at - 1] not in _SCHEME_CHARS or m.group("cred") == ":":
        return None
    return m.span("cred")


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9-])"
)
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_LOCAL_MAX = 64  # RFC 5321; longer local parts are not matched


def _search_email(text: str, pos: int) -> re.Match[str] | None:
    """`_EMAIL.search(text, pos)`, trying only where the run of local-part characters before
    each "@" starts (searching from every letter would be slow)."""
    at = text.find("@", pos)
    while at != -1:
        start, floor = at, max(pos, at - _LOCAL_MAX)
        while start > floor and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        if (m := _EMAIL.match(text, start)) is not None:  # its look-behind rejects runs > 64
            return m
        at = text.find("@", at + 1)
    return None


_CN_ID = re.compile(r"[1-9](?<![0-9A-Za-z].)[0-9]{16}[0-9Xx](?![0-9A-Za-z])")


def _cn_id(m: re.Match[str]) -> _Span | None:
    return m.span() if cn_id_valid(m.group()) else None


# Contiguous, or a group of 4 then 2-4 groups all split by the same separator.
_CARD = re.compile(
    r"[2-6](?<![0-9].)"
    r"(?:[0-9]{12,18}|[0-9]{3}(?P<sep>[ -])[0-9]{3,6}(?:(?P=sep)[0-9]{1,6}){1,3})"
    r"(?![0-9])"
)


def _span_range(lo: int, hi: int) -> tuple[str, ...]:
    return tuple(str(p) for p in range(lo, hi + 1))


# Issuer prefixes and the lengths each network issues: an order number that merely passes Luhn
# (one in ten does) is a card only if its prefix and length fit a network.
_CARD_NETWORKS: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("4",), (13, 16, 19)),                                          # Visa
    (_span_range(51, 55) + _span_range(2221, 2720), (16,)),          # Mastercard
    (("34", "37"), (15,)),                                           # American Express
    (("6011", "65") + _span_range(644, 649), (16, 19)),              # Discover
    (("62",), (16, 17, 18, 19)),                                     # UnionPay
    (_span_range(3528, 3589), (16, 17, 18, 19)),                     # JCB
    (("36", "38", "39") + _span_range(300, 305), (14, 16, 19)),      # Diners Club
    (("50",) + _span_range(56, 69), (16, 19)),                       # Maestro
)


def card_network_ok(digits: str) -> bool:
    """True if some card network issues numbers with this prefix and length."""
    return any(len(digits) in lengths and digits.startswith(prefixes)
               for prefixes, lengths in _CARD_NETWORKS)


def _card(m: re.Match[str]) -> _Span | None:
    sep = m.group("sep")
    if sep is None:
        digits = m.group()
        return m.span() if card_network_ok(digits) and luhn_valid(digits) else None
    groups = m.group().split(sep)
    for n in range(len(groups), 1, -1):  # longest first: drop trailing groups that do not fit
        digits = "".join(groups[:n])
        if 13 <= len(digits) <= 19 and card_network_ok(digits) and luhn_valid(digits):
            return m.start(), m.start() + len(sep.join(groups[:n]))
    return None


# Candidates only; ipaddress decides (octets up to 255, no leading zeros).
_IPV4 = re.compile(r"[0-9](?<![0-9A-Za-z.].)[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9A-Za-z]|\.[0-9])")


def _ipv4(m: re.Match[str]) -> _Span | None:
    try:
        ipaddress.IPv4Address(m.group())
    except ValueError:
        return None
    return m.span()


# A ":" may follow if no address character follows it ("地址是fe80::1：" after NFKC), a "."
# if no digit follows it.
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z.])"
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:\.[0-9]{1,3}){0,3}"
    r"(?![0-9A-Za-z]|[.:][0-9A-Za-z:])"
)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")  # every IPv6 address has two close colons
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGIT = re.compile(r"[0-9]")


def _search_ipv6(text: str, pos: int) -> re.Match[str] | None:
    """`_IPV6.search(text, pos)`, trying only just before two close colons (hex is common)."""
    while (hint := _IPV6_HINT.search(text, pos)) is not None:
        start = colon = hint.start()
        while start > pos and colon - start < 4 and text[start - 1] in _HEX:
            start -= 1
        if (m := _IPV6.match(text, start)) is not None:
            return m
        pos = colon + 1
    return None


def _ipv6(m: re.Match[str]) -> _Span | None:
    start, end = m.span()
    candidate = m.group()
    if candidate.endswith(":") and not candidate.endswith("::"):  # "fe80::1:" + "请"
        candidate, end = candidate[:-1], end - 1
    if "::" not in candidate and candidate.count(":") < 6:  # "12:30:45" (full form has 7)
        return None
    if _DIGIT.search(candidate) is None:  # "::", "a::b", "dead::beef"
        return None
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return start, end


_NOT_DIGIT = str.maketrans("", "", " .-()+")
_PHONE_INTL = re.compile(
    r"\+(?<![0-9A-Za-z+].)[1-9][0-9]{0,2}"
    r"(?:[ .-]?(?:\(0?[0-9]{1,4}\)|[0-9]{1,6})){1,7}"
    r"(?![0-9])"
)


def _phone_intl(m: re.Match[str]) -> _Span | None:
    return m.span() if 8 <= len(m.group().translate(_NOT_DIGIT)) <= 15 else None


_NANP_END = r"(?![0-9]|[.-][0-9])"
_PHONE_NANP_PAREN = re.compile(
    rf"\((?<![0-9A-Za-z].)[2-9][0-9]{{2}}\) ?[2-9][0-9]{{2}}[ .-]?[0-9]{{4}}{_NANP_END}"
)
_PHONE_NANP = re.compile(rf"[2-9][0-9]{{2}}(?P<s>[.-])[2-9][0-9]{{2}}(?P=s)[0-9]{{4}}{_NANP_END}")
_NANP_NOT_AFTER = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+-")


def _phone_nanp(m: re.Match[str]) -> _Span | None:
    """415-555-2671 or 415.555.2671, with an optional leading "1-" / "1." taken along."""
    text, start = m.string, m.start()
    if text[start - 2 : start] == "1" + m.group("s"):
        start -= 2
    if start and text[start - 1] in _NANP_NOT_AFTER:
        return None
    return start, m.end()


_PHONE_CN_MOBILE = re.compile(
    r"1(?<![0-9].)[3-9][0-9](?:[0-9]{8}|(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4})(?![0-9])"
)


# Every ID, card, IPv4 address and phone number holds a run like this (7+ characters); text
# without one skips those detectors.
_NUMBERISH = re.compile(r"[0-9][0-9 ().-]{5,}[0-9]")

# kind -> (cheap test on the text and whether it is numberish, rules tried in order)
_DETECTORS: dict[str, tuple[Callable[[str, bool], bool], tuple[_Rule, ...]]] = {
    "url_credentials": (
        lambda text, _: "@" in text and "://" in text,
        ((_URL_CREDENTIALS.search, _credentials),),
    ),
    "email": (lambda text, _: "@" in text, ((_search_email, _whole),)),
    "cn_id": (lambda _, numberish: numberish, ((_CN_ID.search, _cn_id),)),
    "card": (lambda _, numberish: numberish, ((_CARD.search, _card),)),
    "ip": (
        lambda text, numberish: numberish or ":" in text,
        ((_search_ipv6, _ipv6), (_IPV4.search, _ipv4)),
    ),
    "phone": (
        lambda _, numberish: numberish,
        (
            (_PHONE_INTL.search, _phone_intl),
            (_PHONE_NANP_PAREN.search, _whole),
            (_PHONE_NANP.search, _phone_nanp),
            (_PHONE_CN_MOBILE.search, _whole),
        ),
    ),
}
assert tuple(_DETECTORS) == PII_TYPES

_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))


# ----------------------------------------------------------------------------- public API
class _Taken:
    """Sorted, non-overlapping spans already claimed (by a match or a placeholder)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add_if_free(self, start: int, end: int) -> bool:
        i = bisect_right(self.starts, start)
        if (i and self.ends[i - 1] > start) or (i < len(self.starts) and self.starts[i] < end):
            return False
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        return True


def find_pii(text: str) -> list[PiiMatch]:
    """All PII in `text`, sorted by start and non-overlapping."""
    numberish = _NUMBERISH.search(text) is not None
    if not numberish and "@" not in text and ":" not in text:
        return []
    taken = _Taken()
    if "<" in text:
        for m in _PLACEHOLDER.finditer(text):
            taken.add_if_free(*m.span())
    found: list[PiiMatch] = []
    for kind, (may_contain, rules) in _DETECTORS.items():
        if not may_contain(text, numberish):
            continue
        for search, check in rules:
            pos = 0
            while (m := search(text, pos)) is not None:
                span = check(m)
                if span is not None and taken.add_if_free(*span):
                    found.append(PiiMatch(span[0], span[1], kind, text[span[0] : span[1]]))
                    pos = m.end()
                else:  # rejected: a later start may still match (e.g. after "IPv6:")
                    pos = m.start() + 1
    found.sort(key=lambda p: p.start)
    return found


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace every piece of PII with its placeholder; also count the pieces per kind.

    Replacing can expose a match that a neighbouring character used to block ("a@b.com" right
    before "13812345678"), so this repeats until nothing is found. Text without PII is
    returned as the same object, with an empty dict.
    """
    counts: dict[str, int] = {}
    while matches := find_pii(text):
        parts: list[str] = []
        last = 0
        for m in matches:
            parts += (text[last : m.start], PLACEHOLDERS[m.kind])
            last = m.end
            counts[m.kind] = counts.get(m.kind, 0) + 1
        parts.append(text[last:])
        text = "".join(parts)
    return text, counts
