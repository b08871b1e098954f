"""Start tags and attribute values read as the HTML standard's tokenizer reads them, and
written back (`html` drives them; everything here is a pure function of its input).

Text is the page's bytes decoded as Latin-1, and so is the output: a character
reference decoded in a rebuilt attribute is written back as a reference, and one to
U+0080..U+00FF is marked while decoded (moved to U+F0080..U+F00FF) so that it is not
taken for a raw byte.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.entities import html5 as _ENTITIES

__all__ = ["TOKEN", "Attrs", "build_tag", "decode_attr", "rewrite_refresh", "rewrite_srcset",
           "scan_tag"]

Attrs = list[tuple[str, str | None]]

_WS = "[\t\n\f\r ]*"
_MARK = 0xF0000  # a character reference to U+0080..U+00FF, told apart from a raw byte
_WS_RUN = re.compile(_WS)
_ATTR_GAP = re.compile("[\t\n\f\r /]*")
_ATTR_NAME = re.compile("[^\t\n\f\r />][^\t\n\f\r />=]*")
_UNQUOTED = re.compile("[^\t\n\f\r >]*")
_TAG_NAME = re.compile("[^\t\n\f\r />]*")
_ATTR_REF = re.compile("&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")
_NOT_LATIN1 = re.compile("[^\x00-\xff]")
TOKEN = re.compile("[^\t\n\f\r ]+")
_SRCSET_GAP = re.compile("[\t\n\f\r ,]*")
# One attribute, or a whole tag, in one match: the tokenizer's steps (see `_scan`) as
# possessive runs and alternatives that exclude each other by their first character, so
# that the only match is the one those steps take; a quote that does not close matches
# nothing (and `_scan` reads the tag).
_ATTR_STEPS = ("[\t\n\f\r /]*+({n}[^\t\n\f\r />][^\t\n\f\r />=]*+)[\t\n\f\r ]*+"
               "(?:({n}=)[\t\n\f\r ]*+(?:\"({n}[^\"]*+)\"|'({n}[^']*+)'|(?![\"'])({n}[^\t\n\f\r >]*+))"
               "|(?!=))")
_ATTR = re.compile(_ATTR_STEPS.format(n=""))
_WHOLE_TAG = re.compile(f"([^\t\n\f\r />]*+)((?:{_ATTR_STEPS.format(n='?:')})*+)"
                        "([\t\n\f\r /]*+)>")
_REFRESH = re.compile(f"{_WS}[0-9.]+(?=\\Z|[;,\t\n\f\r ]){_WS}[;,]?{_WS}"
                      f"(?:[Uu][Rr][Ll]{_WS}={_WS})?")


def scan_tag(text: str, start: int) -> tuple[str, Attrs, bool, int] | None:
    """The tag whose name starts at text[start], read by the HTML standard's tokenizer
    rules: its name, attributes (raw names and values), self-closing flag and end; None
    when the text ends inside it."""
    whole = _WHOLE_TAG.match(text, start)
    if whole is None:  # the text ends inside the tag (or `_scan` says otherwise)
        return _scan(text, start)
    name_end, run_end, gt = whole.end(1), whole.end(2), whole.end(3)
    attrs: Attrs = []
    if run_end > name_end:
        # The same steps again, one attribute at a time: they match back to back.
        for name, equals, double, single, bare in _ATTR.findall(text, name_end, run_end):
            attrs.append((name, (double or single or bare) if equals else None))
    closing = gt > run_end and text[gt - 1] == "/"
    return text[start:name_end], attrs, closing, gt + 1


def _scan(text: str, start: int) -> tuple[str, Attrs, bool, int] | None:
    """`scan_tag` step by step, as the tokenizer's states go."""
    name_end = _end(_TAG_NAME, text, start)
    pos, size = name_end, len(text)
    attrs: Attrs = []
    while True:
        gap = pos
        pos = _end(_ATTR_GAP, text, pos)
        if pos >= size:
            return None
        if text[pos] == ">":
            closing = pos > gap and text[pos - 1] == "/"
            return text[start:name_end], attrs, closing, pos + 1
        name = text[pos:_end(_ATTR_NAME, text, pos)]
        pos = _end(_WS_RUN, text, pos + len(name))
        if not text.startswith("=", pos):
            attrs.append((name, None))
            continue
        pos = _end(_WS_RUN, text, pos + 1)
        quote = text[pos:pos + 1]
        if quote in ("'", '"'):
            close = text.find(quote, pos + 1)
            if close < 0:
                return None
            attrs.append((name, text[pos + 1:close]))
            pos = close + 1
        else:
            value = text[pos:_end(_UNQUOTED, text, pos)]
            attrs.append((name, value))
            pos += len(value)


def _end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where a run of `pattern` starting at `pos` ends."""
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def decode_attr(raw: str) -> str:
    """An attribute value's character references decoded as a browser decodes them: a
    legacy name without ";" before "=" or a letter or digit stays (``?a=1&copy=2``)."""
    if "&" not in raw:
        return raw

    def one(match: re.Match[str]) -> str:
        ref = match.group()
        if ref[1] == "#":
            return _mark(html.unescape(ref))
        name = ref[1:]
        for size in range(min(len(name), 32), 0, -1):
            if name[:size] in _ENTITIES:
                break
        else:
            return ref
        known, rest = name[:size], name[size:]
        following = rest[:1] or raw[match.end():match.end() + 1]
        if not known.endswith(";") and (following == "=" or (following.isascii()
                                                             and following.isalnum())):
            return ref
        return _mark(_ENTITIES[known]) + rest

    return _ATTR_REF.sub(one, raw)


def _mark(text: str) -> str:
    # U+0080..U+00FF from a reference would read as a raw byte: keep it apart.
    return "".join(chr(_MARK + ord(c)) if 0x80 <= ord(c) <= 0xFF else c for c in text)


def _escape_attr(value: str) -> str:
    def ref(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"&#x{code - _MARK if _MARK <= code <= _MARK + 0xFF else code:X};"

    return _NOT_LATIN1.sub(ref, html.escape(value, quote=True))


def build_tag(name: str, attrs: Attrs, closing: bool) -> str:
    parts = ["<", name]
    for attr, value in attrs:
        parts.append(f" {attr}" if value is None else f' {attr}="{_escape_attr(value)}"')
    parts.append("/>" if closing else ">")
    return "".join(parts)


def rewrite_srcset(value: str, url: Callable[[str], str]) -> str:
    """Each candidate's URL rewritten (WHATWG srcset: a URL runs to whitespace, and ends
    in commas only when it has no descriptors), descriptors kept."""
    out: list[str] = []
    pos, size = 0, len(value)
    while pos < size:
        gap = _end(_SRCSET_GAP, value, pos)
        out.append(value[pos:gap])
        if gap >= size:
            break
        candidate = value[gap:_end(TOKEN, value, gap)]
        pos = gap + len(candidate)
        link = candidate.rstrip(",")
        out.append(url(link) + candidate[len(link):])
        if len(link) < len(candidate):
            continue
        in_parens, start = False, pos  # descriptors: up to a comma outside parentheses
        while pos < size and (in_parens or value[pos] != ","):
            in_parens = (in_parens or value[pos] == "(") and value[pos] != ")"
            pos += 1
        out.append(value[start:pos])
    return "".join(out)


def rewrite_refresh(content: str, url: Callable[[str], str]) -> str:
    """A refresh's URL rewritten: ``5; url='next.html'``, ``0;next.html`` (WHATWG's
    shared declarative refresh steps)."""
    match = _REFRESH.match(content)
    if match is None or match.end() == len(content):
        return content
    head, rest = content[:match.end()], content[match.end():]
    quote = rest[0] if rest[0] in "'\"" else ""
    body = rest[len(quote):]
    cut = body.find(quote) if quote else -1
    target, tail = (body, "") if cut < 0 else (body[:cut], body[cut:])
    return head + quote + url(target) + tail
