"""Style sheets with every URL they load turned into a gateway link.

Strategy: a small tokenizer of our own, after CSS Syntax Level 3, finds the URL
references: what is a URL depends on what came before (a comment, a string, an escaped
name), which no regular expression over the whole sheet can follow. It keeps the
standard's token boundaries exactly (numbers and their units, escapes in names, CDO and
CDC), since a sheet that made us see a string where the browser sees ``url(...)`` would
load that URL from outside the gateway. Rewritten: ``url(...)`` and ``url("...")`` (the
name in any case, escapes included), the string after ``@import``, and the bare strings
directly inside ``image-set()``, ``-webkit-image-set()``, ``image()`` and ``src()``. Left
alone: comments, other strings, ``@namespace`` (a name, never fetched), names that only
end in ``url``. A bad ``url(`` (a space or a quote inside) loads nothing: it becomes
``url("/browse")``, unless it is a ``data:`` URL.

Only the token that a chunk ends inside is held back, at most about ``max_token``
characters: a longer URL token streams through when it is a ``data:`` URL and becomes
``url("/browse")`` otherwise. The output is the same for any split of the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

__all__ = ["CssRewriter", "rewrite_css"]

_Mode = Literal["normal", "comment", "string", "ident", "url", "url-space"]

# What stands for a URL too long to hold: the gateway's own page, never a link out.
_PLACEHOLDER = 'url("/browse")'
# Names longer than this (raw, escapes included) cannot spell any name looked for here
# (the longest, "-webkit-image-set", is 17 escapes of 9 characters at most): they stream.
_NAME_LIMIT = 256
_RESCAN = 4096  # held text longer than this is read again once it has doubled
# Past this nesting depth the gateway stops tracking blocks: every string is a URL then.
_MAX_DEPTH = 1024
# Functions whose bare string arguments are URLs ("url" has its own token besides).
_URL_FUNCTIONS = frozenset({"url", "src", "image", "image-set", "-webkit-image-set"})

_WS = frozenset(" \t\n\r\f")
_NEWLINE = frozenset("\n\r\f")
_QUOTES = frozenset("\"'")
_DIGITS = frozenset("0123456789")
_BRACKETS = frozenset("()[]{}")
_CLOSES = {")": "(fu", "]": "[", "}": "{"}  # a closer ends only the block it matches

_WS_RUN = re.compile(r"[ \t\n\r\f]*")
_DELIM_RUN = re.compile(r"[!$%&*,:;=>?^`|~]+")
_NAME = "[A-Za-z0-9_\\-\x00\x80-\U0010ffff]"  # U+0000 stands for U+FFFD
_NAME_RUN = re.compile(_NAME + "*")
# What starts a name: a letter or "_" or non-ASCII, or an escape, after at most one "-";
# or "--". (A backslash at the very end starts one too; there it makes no difference.)
_NAME_START = "(?:-?(?:[A-Za-z_\x00\x80-\U0010ffff]|\\\\[^\n\r\f])|--)"
# In this order: "-5" is a number, "-->" no name (CSS Syntax §4.3.1).
_STARTS = [(kind, re.compile(pattern)) for kind, pattern in [
    ("number", r"[+-]?\.?[0-9]"), ("cdc", "-->"), ("ident", _NAME_START),
    ("at", "@" + _NAME_START), ("hash", f"#(?:{_NAME}|\\\\[^\n\r\f])"), ("comment", r"/\*"),
    ("cdo", "<!--"),
]]
_UNIT_START = re.compile(_NAME_START)
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{1,6}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Inside an unquoted url(...): what may stand there as it is (not a quote, "(",
# whitespace, a backslash or a non-printable code point).
_URL_RUN = re.compile("[^)\\\\ \t\n\r\f\"'(\x01-\x08\x0b\x0e-\x1f\x7f]*")
_URL_REST_RUN = re.compile(r"[^)\\]*")
_STRING_RUNS = {'"': re.compile(r'[^"\\\n\r\f]*'), "'": re.compile(r"[^'\\\n\r\f]*")}
_ESCAPE = re.compile(r"\\(?:([0-9A-Fa-f]{1,6})(?:\r\n|[ \t\n\r\f])?|(\r\n|[\n\r\f])|(.)|\Z)", re.DOTALL)
# Escaped in a rewritten URL: what would end the string, controls, and characters past
# U+00FF (decoded from an escape), since the sheet is its bytes read as Latin-1; left are
# U+F0000..U+F00FF, which stand for character references of an HTML attribute (`html`).
_UNSAFE = re.compile("[\\\\\"\x00-\x1f\x7f\u0100-\U000effff\U000f0100-\U0010ffff]")


class _NeedMore(Exception):
    """The token at hand may go on past the text fed so far."""


def rewrite_css(text: str, rewrite: Callable[[str], str]) -> str:
    """`text`, a style sheet or a ``style`` attribute's value, with every URL it
    references replaced by ``rewrite(url)``."""
    rewriter = CssRewriter(rewrite)
    return rewriter.feed(text) + rewriter.close()


class CssRewriter:
    """`rewrite_css` over a sheet that comes in chunks, holding back at most about
    `max_token` characters (the token that a chunk ends inside)."""

    def __init__(self, rewrite: Callable[[str], str], *, max_token: int = 65536) -> None:
        if max_token < 1:
            raise ValueError("max_token must be positive")
        self._rewrite = rewrite
        self._max = max_token
        self._reset()

    def _reset(self) -> None:
        self._buf = ""  # text fed but not yet written out
        self._retry_at = 0  # run again once _buf is this long (see _run)
        self._mode: _Mode = "normal"  # inside which long token the held text starts
        self._keep = True  # string and url modes: write the token's rest, or drop it
        self._quote = '"'  # string mode: the quote that ends it
        self._stack: list[str] = []  # open blocks: ( [ { and functions, f or u (URL)
        self._lost = False  # nested deeper than _MAX_DEPTH
        self._after_import = False  # the last token (bar spaces, comments) was @import

    def feed(self, text: str) -> str:
        """Take the next chunk; return the output that is final so far."""
        self._buf += text
        if len(self._buf) < self._retry_at:
            return ""
        return self._run(final=False)

    def close(self) -> str:
        """The rest of the output: the input has ended (unterminated tokens end here)."""
        out = self._run(final=True)
        self._reset()
        return out

    def _run(self, final: bool) -> str:
        buf, pos = self._buf, 0
        out: list[str] = []
        while pos < len(buf):
            try:
                new = self._step(buf, pos, final, out)
            except _NeedMore:
                new = None
            if new is None:
                break
            pos = new
        self._buf = held = buf[pos:]
        # A held token is read again from its start: past a few kilobytes, waiting until
        # the held text has doubled keeps tiny chunks from costing quadratic time (at
        # max_token + 1 the token is known to be too long).
        self._retry_at = min(2 * len(held), self._max + 1) if len(held) > _RESCAN else 0
        return "".join(out)

    def _step(self, buf: str, pos: int, final: bool, out: list[str]) -> int | None:
        """Write out what starts at `pos`; return where the rest starts (None: it needs
        more text). A step that returns `pos` itself has changed the mode."""
        if self._mode == "normal":
            return self._token(buf, pos, final, out)
        if self._mode == "comment":
            end, done = _comment_end(buf, pos, final)
        elif self._mode == "ident":
            end, done = _name_end(buf, pos, final)
        elif self._mode == "string":
            end, how = _string_end(buf, pos, self._quote, final)
            done = how != "more"
        elif self._mode == "url":
            end, done = _url_rest_end(buf, pos, final)
        else:
            return self._url_space_rest(buf, pos, final, out)
        if end == pos and not done:
            return None
        if self._keep or self._mode not in ("string", "url"):  # those two may drop theirs
            out.append(buf[pos:end])
        if done:
            self._mode = "normal"
        return end

    def _token(self, buf: str, pos: int, final: bool, out: list[str]) -> int:
        char = buf[pos]
        if char in _WS:
            end = _span(_WS_RUN, buf, pos)
            out.append(buf[pos:end])
            return end
        if char in _QUOTES:
            if self._after_import or self._lost or (self._stack and self._stack[-1] == "u"):
                return self._url_string(buf, pos, final, out)
            self._mode, self._keep, self._quote, self._after_import = "string", True, char, False
            out.append(char)
            return pos + 1
        kind = _classify(buf, pos, final)
        if kind == "number":
            return self._number(buf, pos, final, out)
        if kind in ("ident", "at", "hash"):
            return self._name(buf, pos, pos if kind == "ident" else pos + 1, kind, final, out)
        if kind == "comment":
            self._mode = "comment"
            out.append("/*")
            return pos + 2
        self._after_import = False
        match = _DELIM_RUN.match(buf, pos)
        end = match.end() if match else pos + {"cdo": 4, "cdc": 3}.get(kind, 1)
        if char in _BRACKETS:
            self._bracket(char)
        out.append(buf[pos:end])
        return end

    def _bracket(self, char: str) -> None:
        if char in "([{":
            self._push(char)
        elif self._stack and self._stack[-1] in _CLOSES[char]:
            self._stack.pop()  # a closer that matches no open block is a token, no more

    def _push(self, kind: str) -> None:
        if len(self._stack) < _MAX_DEPTH:
            self._stack.append(kind)
        else:
            self._lost = True

    def _number(self, buf: str, pos: int, final: bool, out: list[str]) -> int:
        n = len(buf)
        end = _span(_NUMBER, buf, pos)
        if not final and n - end < 3:  # ".5", "e+5" or a unit may follow
            if end - pos <= _NAME_LIMIT:
                raise _NeedMore
            # A long number: read on from inside its last run of digits, which ends
            # the token where the whole would have ended it.
            cut = end - 1
            while not (buf[cut] in _DIGITS and buf[cut - 1] in _DIGITS):
                cut -= 1
            self._after_import = False
            out.append(buf[pos:cut])
            return cut
        if end < n and buf[end] == "%":
            end += 1
        elif _UNIT_START.match(buf, end):  # a dimension: the unit is never a function
            end, complete = _name_end(buf, end, final)
            if not complete:
                if n - pos <= _NAME_LIMIT:
                    raise _NeedMore
                self._mode = "ident"
        self._after_import = False
        out.append(buf[pos:end])
        return end

    def _name(self, buf: str, pos: int, start: int, kind: str, final: bool, out: list[str]) -> int:
        """An identifier, function, at-keyword (`start` after the "@") or hash."""
        end, complete = _name_end(buf, start, final)
        if not complete:
            if len(buf) - pos <= _NAME_LIMIT:
                raise _NeedMore
            self._mode, self._after_import = "ident", False  # too long to be a name we want
            out.append(buf[pos:end])
            return end
        name = _decode(buf[start:end], in_string=False)
        name = name.lower() if name.isascii() else name  # ASCII case-insensitive
        if kind == "ident" and end < len(buf) and buf[end] == "(":
            if name == "url":
                return self._url(buf, pos, end + 1, final, out)
            self._push("u" if name in _URL_FUNCTIONS else "f")
            end += 1
        self._after_import = kind == "at" and name == "import"
        out.append(buf[pos:end])
        return end

    def _url(self, buf: str, pos: int, body: int, final: bool, out: list[str]) -> int:
        """``url(`` at `pos`; `body` is just after the "(". """
        start = _span(_WS_RUN, buf, body)
        if start - pos > self._max:  # url( and a sea of spaces: decide after them
            self._mode, self._after_import = "url-space", False
            out.append(buf[pos:start])
            return start
        try:
            if _char(buf, start, final) in _QUOTES:
                return self._url_function(buf, pos, start, final, out)
            end, value_end, bad = _url_token_end(buf, start, final)
        except _NeedMore:
            if len(buf) - pos <= self._max:
                raise
            return self._too_long(buf, pos, start, "url", _PLACEHOLDER, out)
        if end - pos > self._max:
            return self._too_long(buf, pos, start, "url", _PLACEHOLDER, out)
        self._after_import = False
        raw = buf[pos:end]
        if bad:  # the browser loads nothing: a data: URL stays, anything else is dropped
            out.append(raw if _is_data(buf, start, end) else _PLACEHOLDER)
        else:
            value = _decode(buf[start:value_end], in_string=False)
            new = self._rewrite(value)
            out.append(raw if new == value else f"url({_quoted(new)})")
        return end

    def _url_space_rest(self, buf: str, pos: int, final: bool, out: list[str]) -> int | None:
        end = _span(_WS_RUN, buf, pos)
        if end > pos:
            out.append(buf[pos:end])
            return end
        if buf[pos] in _QUOTES:  # url( "...": its string is a URL, read as one
            self._mode = "normal"
            self._push("u")
            return pos
        if not final and len(buf) - pos < 5:
            return None
        self._mode, self._keep = "url", _is_data(buf, pos, len(buf))
        if not self._keep:
            out.append('"/browse")')  # after "url(  ": a whole url("/browse")
        return pos

    def _url_function(self, buf: str, pos: int, quote: int, final: bool, out: list[str]) -> int:
        """``url( "..." )``, the function form: `quote` is at the string's quote."""
        n = len(buf)
        end, how = _string_end(buf, quote + 1, buf[quote], final)
        if how == "more" and n - pos <= self._max:
            raise _NeedMore
        if how == "more" or end - pos > self._max:
            self._push("u")
            self._quote = buf[quote]
            return self._too_long(buf, pos, quote + 1, "string", 'url("/browse"', out)
        after = _span(_WS_RUN, buf, end)
        try:
            closer = _char(buf, after, final)
        except _NeedMore:
            if n - pos <= self._max:
                raise
            closer = "?"  # too long to hold for its ")": treated as what follows
        close_end = after + 1 if closer == ")" else after
        value = _decode(buf[quote + 1:end - 1 if how == "closed" else end], in_string=True)
        new = self._rewrite(value)
        self._after_import = False
        if closer in ("", ")") and close_end - pos <= self._max:
            out.append(buf[pos:close_end] if new == value else f"url({_quoted(new)})")
            return close_end
        # More follows the string (url() modifiers): the function stays open.
        self._push("u")
        out.append(buf[pos:end] if new == value else f"url({_quoted(new)}")
        return end

    def _url_string(self, buf: str, pos: int, final: bool, out: list[str]) -> int:
        """A string that is a URL: after @import, or inside image-set() and the like."""
        quote = buf[pos]
        end, how = _string_end(buf, pos + 1, quote, final)
        if how == "more" and len(buf) - pos <= self._max:
            raise _NeedMore
        if how == "more" or end - pos > self._max:
            self._quote = quote
            return self._too_long(buf, pos, pos + 1, "string", _PLACEHOLDER, out)
        value = _decode(buf[pos + 1:end - 1 if how == "closed" else end], in_string=True)
        new = self._rewrite(value)
        self._after_import = False
        out.append(buf[pos:end] if new == value else _quoted(new))
        return end

    def _too_long(self, buf: str, pos: int, content: int, mode: _Mode, placeholder: str,
                  out: list[str]) -> int:
        """A URL token over max_token, its content from `content`: a data: URL streams
        through, anything else becomes `placeholder` and the rest of it is dropped."""
        # Only the first max_token + 1 characters count: a chunked feed may have no more.
        keep = _is_data(buf, content, pos + self._max + 1)
        self._mode, self._keep, self._after_import = mode, keep, False
        out.append(buf[pos:content] if keep else placeholder)
        return content


def _span(pattern: re.Pattern[str], buf: str, i: int) -> int:
    """The end of `pattern`'s match at `i` (a pattern that matches the empty string)."""
    match = pattern.match(buf, i)
    assert match is not None
    return match.end()


def _char(buf: str, i: int, final: bool) -> str:
    """The code point at `i`; "" at the end of the input; _NeedMore past the text fed."""
    if i < len(buf):
        return buf[i]
    if final:
        return ""
    raise _NeedMore


def _classify(buf: str, pos: int, final: bool) -> str:
    """What starts at `pos` (not a space, quote or bracket), as CSS Syntax §4.3.1 tells."""
    if not final and len(buf) - pos < 4:  # the most that any of these looks ahead
        raise _NeedMore
    return next((kind for kind, start in _STARTS if start.match(buf, pos)), "delim")


def _comment_end(buf: str, i: int, final: bool) -> tuple[int, bool]:
    """Past the "*/" that ends the comment, and True; or how far it surely goes."""
    close = buf.find("*/", i)
    if close >= 0:
        return close + 2, True
    return (len(buf) - 1 if buf.endswith("*") and not final else len(buf)), final


def _escape_end(buf: str, i: int, final: bool) -> int:
    """The end of the escape whose backslash is at `i` (not before a newline)."""
    hex_digits = _HEX_RUN.match(buf, i + 1)
    if hex_digits is None:  # one code point; a backslash at the end of the input: none
        return i + 2 if _char(buf, i + 1, final) else i + 1
    j = hex_digits.end()
    after = _char(buf, j, final)  # up to 6 digits and one space, CR LF counting as one
    if after == "\r":
        return j + 2 if _char(buf, j + 1, final) == "\n" else j + 1
    return j + 1 if after in _WS else j


def _name_end(buf: str, i: int, final: bool) -> tuple[int, bool]:
    """Where the name (ident sequence) from `i` ends, and whether it surely ends
    there; when not, the end given is that of its last whole code point."""
    n = len(buf)
    while True:
        i = _span(_NAME_RUN, buf, i)
        if i >= n:
            return n, final
        if buf[i] != "\\":
            return i, True
        try:
            if _char(buf, i + 1, final) in _NEWLINE:
                return i, True  # a backslash before a newline is no escape
            i = _escape_end(buf, i, final)
        except _NeedMore:
            return i, False


def _string_end(buf: str, i: int, quote: str, final: bool) -> tuple[int, str]:
    """Where the string whose content starts at `i` ends: past its closing quote
    ("closed"), at the newline that ends it ("bad"), at the end of the input ("eof"),
    or not yet known ("more", at the last point known to be inside it)."""
    pattern, n = _STRING_RUNS[quote], len(buf)
    while True:
        i = _span(pattern, buf, i)
        if i >= n:
            return n, "eof" if final else "more"
        if buf[i] == quote:
            return i + 1, "closed"
        if buf[i] != "\\":
            return i, "bad"  # the newline is not part of the string
        try:
            after = _char(buf, i + 1, final)
            if after == "":
                return n, "eof"  # a backslash at the end of the input: nothing
            if after == "\r":  # an escaped newline continues the string; CR LF is one
                i += 3 if _char(buf, i + 2, final) == "\n" else 2
            else:
                i = i + 2 if after in _NEWLINE else _escape_end(buf, i, final)
        except _NeedMore:
            return i, "more"


def _url_token_end(buf: str, i: int, final: bool) -> tuple[int, int, bool]:
    """The end of the unquoted url( token whose value starts at `i`, the end of its
    value, and whether it is a bad URL (the browser loads nothing)."""
    n = len(buf)
    while True:
        i = _span(_URL_RUN, buf, i)
        char = _char(buf, i, final)
        if char in ("", ")"):
            return (i + 1 if char else n), i, False
        if char in _WS:
            after = _span(_WS_RUN, buf, i)
            closer = _char(buf, after, final)
            if closer in ("", ")"):
                return (after + 1 if closer else n), i, False
            break
        if char != "\\" or _char(buf, i + 1, final) in _NEWLINE:
            after = i + 1  # a quote, "(", a non-printable, a backslash before a newline
            break
        i = _escape_end(buf, i, final)
    end, done = _url_rest_end(buf, after, final)  # the remnants of a bad url
    if not done:
        raise _NeedMore
    return end, i, True


def _url_rest_end(buf: str, i: int, final: bool) -> tuple[int, bool]:
    """Past the ")" that ends the url( token read up to `i`, and True; or the last
    point known to be inside it, and False. Whether good or bad, an unquoted url( token
    ends at the first ")" that no backslash escapes."""
    n = len(buf)
    while True:
        i = _span(_URL_REST_RUN, buf, i)
        if i >= n:
            return n, final
        if buf[i] == ")":
            return i + 1, True
        if i + 1 >= n:
            return (n, True) if final else (i, False)
        i += 2


def _is_data(buf: str, content: int, limit: int) -> bool:
    """Does the URL whose content starts at `content` start with data: (before `limit`)?"""
    return buf[content:min(content + 5, limit)].lower() == "data:"


def _decode(raw: str, *, in_string: bool) -> str:
    """A token's text with its CSS escapes decoded."""

    def one(match: re.Match[str]) -> str:
        hex_digits, newline, char = match.groups()
        if hex_digits is not None:
            code = int(hex_digits, 16)
            return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
        if newline is not None:
            return ""  # an escaped newline continues a string
        if char is not None:
            return char
        return "" if in_string else "\ufffd"  # a backslash at the end of the input

    return _ESCAPE.sub(one, raw).replace("\x00", "\ufffd")


def _quoted(url: str) -> str:
    """`url` as a double-quoted CSS string."""
    return '"' + _UNSAFE.sub(lambda m: "\\" + m[0] if m[0] in '\\"' else f"\\{ord(m[0]):x} ", url) + '"'

