"""AdBlock network patterns (``||host^*/ads/``, ``/banner/*/img^``, ``|http://host/``),
indexed so that a request tries only the few that could match it.

Strategy: EasyList holds tens of thousands of path and wildcard patterns; one combined
regex, or one regex per pattern tried per request, would cost milliseconds a request.
Instead, as uBlock Origin does, each pattern is filed under one key:

- a pattern anchored to a host (``||host^...``, ``|http://host/...``) under that host,
  looked up with the request's host and each parent domain, as the domain index does;
- any other pattern under one literal token: its longest run of ``[a-z0-9]`` that is
  bounded on both sides (not touching a ``*`` or an open end), so the URL must contain
  that exact run; at match time the URL is split into its runs and only patterns under
  those tokens are tried;
- the few with no usable token in a small fallback list, tried for every URL.

A pattern is translated to a regex only when first tried (most never are): compiling
forty thousand at start-up would cost seconds. Semantics are ABP's: ``*`` any run, ``^`` a
separator (anything but a letter, digit or ``_-.%``, or the end of the URL), ``|`` a
start or end anchor, ``||`` the start of the host or of one of its labels;
case-insensitive unless ``$match-case``. Patterns see plain-HTTP URLs only: a CONNECT
shows no path, so a pattern never blocks a whole HTTPS host. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ABP's separator class, or the end of the URL.
_SEPARATOR = r"(?:[^A-Za-z0-9_\-.%]|$)"
# ``||``: after the scheme, at the start of the host or after a dot inside it.
# Lazy, so that `_Matcher`'s first segment ends as early as it can: at the first label.
_DOMAIN_ANCHOR = r"^[a-z][a-z0-9+.\-]*://(?:[^/?#]*?\.)??"
_RUN = re.compile(r"[a-z0-9]+")
# The host a host-anchored pattern names, up to the first separator-like character.
_ANCHORED_HOST = re.compile(r"(?:\|\||\|https?://)([a-z0-9][a-z0-9.\-_]*)(?=[/^:?])")
# Runs in almost every URL: a pattern filed under one is tried for nearly every request.
_COMMON_TOKENS = frozenset({"http", "https", "www", "com", "net", "org", "html", "php", "js"})

# Options a proxy judges as well as a browser does (see rules/README.md for the others).
JUDGED_OPTIONS = frozenset({"match-case", "all", "important"})
_OPTIONS = re.compile(r"[A-Za-z_~].*")  # $csp= values hold spaces


def split_options(text: str) -> tuple[str, list[str]]:
    """``/ads/$script,domain=a.com`` → (``/ads/``, [``script``, ``domain``]).

    A ``$`` whose tail does not read as options (``/ads$/``) is part of the pattern.
    """
    pattern, dollar, tail = text.rpartition("$")
    if not dollar or not _OPTIONS.fullmatch(tail):
        return text, []
    names = [option.split("=", 1)[0].strip().lower() for option in tail.split(",")]
    return pattern, [name for name in names if name]


def unjudged_option(options: list[str]) -> str | None:
    """The first option a proxy cannot judge without the page's context, or None."""
    for name in options:
        if name not in JUDGED_OPTIONS:
            return name
    return None


def _translate(pattern: str) -> str:
    """ABP pattern → one Python regex source (case handled by the caller's flags): the
    reference that `_Matcher` agrees with (tests/policy/test_adblock.py)."""
    prefix, segments, suffix = _split(pattern)
    return prefix + ".*".join(segments) + suffix


def _split(pattern: str) -> tuple[str, list[str], str]:
    """The anchor before, the regex source of each literal segment between ``*``s, the
    anchor after."""
    prefix = ""
    if pattern.startswith("||"):
        prefix, pattern = _DOMAIN_ANCHOR, pattern[2:]
    elif pattern.startswith("|"):
        prefix, pattern = "^", pattern[1:]
    suffix = ""
    if pattern.endswith("|"):
        suffix, pattern = "$", pattern[:-1]
    segments = ["".join(_SEPARATOR if char == "^" else re.escape(char) for char in part)
                for part in pattern.split("*")]
    return prefix, segments, suffix


class _Matcher:
    """A pattern's segments found one after the other, each at its leftmost match.

    One regex with a ``.*`` per ``*`` backtracks: two of them make a search quadratic in
    the URL's length, and a client's 64 KiB URL would hold the proxy for seconds. Each
    segment here matches a fixed length (a ``^`` at the very end matches nothing), so
    taking every segment at its leftmost match after the one before finds a match
    whenever there is one, in one pass per segment.
    """

    __slots__ = ("first", "last", "middle")

    def __init__(self, pattern: str, flags: int) -> None:
        prefix, segments, suffix = _split(pattern)
        if len(segments) == 1:
            self.first = re.compile(prefix + segments[0] + suffix, flags)
            self.middle: list[re.Pattern[str]] = []
            self.last: re.Pattern[str] | None = None
            return
        self.first = re.compile(prefix + segments[0], flags)
        self.middle = [re.compile(segment, flags) for segment in segments[1:-1] if segment]
        self.last = re.compile(segments[-1] + suffix, flags)

    def search(self, url: str) -> bool:
        match = self.first.search(url)
        if match is None:
            return False
        if self.last is None:
            return True
        pos = match.end()
        for segment in self.middle:
            found = segment.search(url, pos)
            if found is None:
                return False
            pos = found.end()
        return self.last.search(url, pos) is not None


def _token(pattern: str) -> str | None:
    """The best literal run to file `pattern` under, or None when it has none."""
    lowered = pattern.lower()
    start_bounded = lowered.startswith("|")
    body = lowered.lstrip("|")
    end_bounded = body.endswith("|")
    body = body.rstrip("|")
    best: str | None = None
    for run in _RUN.finditer(body):
        first, end = run.start(), run.end()
        if (first == 0 and not start_bounded) or (first > 0 and body[first - 1] == "*"):
            continue  # the URL's run may start earlier
        if (end == len(body) and not end_bounded) or (end < len(body) and body[end] == "*"):
            continue  # ... or go on further
        token = run.group()
        if best is None or _score(token) > _score(best):
            best = token
    return best


def _score(token: str) -> int:
    return len(token) - (100 if token in _COMMON_TOKENS else 0)


def anchored_host(pattern: str) -> str | None:
    """The host of a ``||host^...`` or ``|http://host/...`` pattern, or None."""
    match = _ANCHORED_HOST.match(pattern.lower())
    return match.group(1).rstrip(".") if match is not None else None


class _Pattern:
    """One pattern as written, its regex compiled on first use."""

    __slots__ = ("case", "compiled", "fid", "line", "text")

    def __init__(self, text: str, case: bool, fid: int, line: int) -> None:
        self.text = text
        self.case = case
        self.fid = fid
        self.line = line
        self.compiled: _Matcher | None = None

    def search(self, url: str) -> bool:
        compiled = self.compiled
        if compiled is None:
            compiled = self.compiled = _Matcher(self.text, 0 if self.case else re.IGNORECASE)
        return compiled.search(url)


@dataclass
class PatternIndex:
    """Every AdBlock pattern of a rule set, filed by host or token."""

    by_host: dict[str, list[_Pattern]] = field(default_factory=dict)
    by_token: dict[str, list[_Pattern]] = field(default_factory=dict)
    fallback: list[_Pattern] = field(default_factory=list)
    size: int = 0

    def add(self, pattern: str, fid: int, line: int, *, match_case: bool = False) -> None:
        """File `pattern` (without ``@@`` and options) from file `fid`, line `line`."""
        entry = _Pattern(pattern, match_case, fid, line)
        self.size += 1
        host = anchored_host(pattern)
        if host is not None:
            self.by_host.setdefault(host, []).append(entry)
            return
        token = _token(pattern)
        if token is None:
            self.fallback.append(entry)
        else:
            self.by_token.setdefault(token, []).append(entry)

    def candidates(self, host: str, url: str) -> list[_Pattern]:
        """The patterns that could match `url` (on `host`): the rest cannot."""
        found: list[_Pattern] = []
        if self.by_host:
            suffix = host
            while True:
                found.extend(self.by_host.get(suffix, ()))
                dot = suffix.find(".")
                if dot == -1:
                    break
                suffix = suffix[dot + 1:]
        if self.by_token:
            by_token = self.by_token
            for token in set(_RUN.findall(url.lower())):
                hits = by_token.get(token)
                if hits:
                    found.extend(hits)
        found.extend(self.fallback)
        return found

    def search(self, host: str, url: str, allowing: frozenset[int]) -> list[tuple[int, int, str]]:
        """(file id, line, pattern) of the first denying and first allowing match.

        Args:
            host: the request's canonical host.
            url: the plain-HTTP URL.
            allowing: the file ids whose entries allow (``@@`` rules and allow/ files).
        """
        found: list[tuple[int, int, str]] = []
        deny = allow = False
        for entry in self.candidates(host, url):
            is_allow = entry.fid in allowing
            if (allow if is_allow else deny) or not entry.search(url):
                continue
            found.append((entry.fid, entry.line, entry.text))
            if is_allow:
                allow = True
            else:
                deny = True
            if allow and deny:
                break
        return found
