"""e2guardian list files, read as e2guardian 5.3 reads them, and their entries turned into
fwdproxy list lines that decide the same.

How e2guardian 5.3.5 matches (src/ListContainer.cpp, ListMeta.cpp, NaughtyFilter.cpp):

- A list line is lower-cased (but in regexp lists), loses a ``' #'`` comment, a trailing
  ``/``, a leading ``ftp://`` and, in site and URL lists, a ``:port`` before the path.
  ``#time: H M H M DAYS`` limits the whole file (days 0 = Monday .. 6), both minutes
  included; ``#listcategory: "Name"`` names the whole file; ``.Include<path>`` adds a
  list with its own category and time limit, active only while its parent is.
- Site lists: the host, then each parent domain, must *equal* an entry, and last
  ``.tld``: so ``example.com`` is the domain and its subdomains, ``.gov`` a top-level
  domain, while ``.example.com`` and ``localhost`` match nothing. An address entry
  matches a URL written with that address (``searchsitelistforip``).
- IP site lists: only URLs written with an IPv4 address; entries are addresses,
  ``a/nn``, ``a/mask`` and ``a-b`` ranges.
- URL lists: ``host/path`` compared with the URL less its scheme and port, lower-cased,
  the path decoded and its trailing ``/`` dropped; an entry matches when it is a prefix
  ending at ``/ ? & =`` or at the end, on the host or any parent domain; never for a
  site's root page, never for a CONNECT.
- Regexp URL lists (PCRE, case-insensitive) search that same ``host/path?query``, and
  for a CONNECT just the host.

fwdproxy's own forms are close but not equal (its URL prefixes match ``/foobar`` for
``/foo`` and only the ``www.`` subdomain; its address entries also match resolved
addresses), so entries become: domain lines for site lists, host regexes for addresses,
AdBlock patterns ``||host/path^`` for URL lists (the host or a parent domain, a separator
or the end after the path, any case; indexed by host, so a big list stays cheap; an entry
without a path is a URL regex), and URL regexes over fwdproxy's ``http://host[:port]/path``
for regexp lists (plus the regexp as a host regex, which is what a CONNECT is judged by).
A URL with an explicit port is the one difference left: e2guardian ignores the port, the
patterns and regexes here see it; ABP's separator also counts ``:;,`` where e2guardian's
ends a path only at ``/ ? & =``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from fwdproxy.importers.model import Imported
from fwdproxy.importers.sgtime import Minutes, week_minutes
from fwdproxy.policy.rules import check_regex

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

Kind = Literal["site", "ipsite", "url", "regexp"]
# e2guardian follows .Include without a limit (a loop never ends); stop where fwdproxy's
# own loader stops.
MAX_DEPTH = 8
# e2guardian's own limit on a list line (ListContainer::ifsreadItemList).
_MAX_LINE = 2048
_TIME = re.compile(r"#time: (\d+) (\d+) (\d+) (\d+) ?(\S*)\s*$")
_PORT = re.compile(r"^.*:[0-9]+/.*")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_POSIX = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
          "lower": "a-z", "space": r"\s", "blank": r" \t", "xdigit": "0-9A-Fa-f",
          "word": r"\w", "punct": r"!-/:-@\[-`{-~", "cntrl": r"\x00-\x1f\x7f",
          "print": r"\x20-\x7e", "graph": r"\x21-\x7e"}
BLANKETS = ("**", "**s", "*ip", "*ips")


@dataclass(slots=True)
class ListFile:
    """One list file as e2guardian holds it: its entries (line, text), category, time
    limit (None: always) and included lists."""

    path: Path
    entries: list[tuple[int, str]] = field(default_factory=list)
    category: str | None = None
    time: Minutes | None = None
    time_line: int = 0
    includes: list[ListFile] = field(default_factory=list)

    def size(self) -> int:
        """Entries here and in every included list."""
        return len(self.entries) + sum(child.size() for child in self.includes)


def time_limit(text: str) -> Minutes | str:
    """``#time: 9 0 17 0 01234`` → the minutes of the week it allows, or why not."""
    found = _TIME.match(text)
    if found is None:
        return "not '#time: START-HOUR START-MIN END-HOUR END-MIN DAYS'"
    sh, sm, eh, em = (int(g) for g in found.groups()[:4])
    days = found.group(5)
    if sh > 23 or eh > 23 or sm > 59 or em > 59 or len(days) > 7:
        return "hour, minute or days out of bounds"
    # e2guardian includes the end minute
    return week_minutes({int(c) for c in days if c in "0123456"}, sh * 60 + sm, eh * 60 + em + 1)


class ListReader:
    """Reads list files once each (e2guardian shares a list used twice), noting what
    e2guardian would refuse."""

    def __init__(self, imported: Imported, resolve: Callable[[str], Path]) -> None:
        self.imported = imported
        self.resolve = resolve
        self.cache: dict[tuple[Path, bool], ListFile | None] = {}

    def read(self, path: Path, *, regex: bool, where: str, depth: int = 0) -> ListFile | None:
        """The list at `path` (None when it cannot be read: noted at `where`)."""
        key = (path, regex)
        if key in self.cache:
            return self.cache[key]
        self.cache[key] = None  # a list including itself ends here
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            self.imported.note(where, f"cannot read {path}: {exc.strerror or exc}: not carried over")
            return None
        listed = ListFile(path)
        for number, raw in enumerate(text.splitlines(), 1):
            self._line(listed, number, raw, regex=regex, depth=depth)
        self.cache[key] = listed
        return listed

    def _line(self, listed: ListFile, number: int, raw: str, *, regex: bool, depth: int) -> None:
        where = f"{listed.path}:{number}"
        if len(raw) < 2:
            return
        if len(raw) > _MAX_LINE:
            self.imported.note(where, "line longer than 2048 characters: skipped, as e2guardian does")
            return
        if raw.startswith("#"):
            if raw.startswith("#time: "):
                limit = time_limit(raw)
                if isinstance(limit, str):
                    self.imported.note(where, f"bad time limit ({limit}): e2guardian refuses "
                                              "this list; here it applies at all times")
                else:
                    listed.time, listed.time_line = limit, number
            elif raw.startswith("#listcategory:"):
                name = raw.partition('"')[2].partition('"')[0].strip()
                listed.category = name or None
            return
        cut = raw.find(" #", 0)
        line = (raw[:cut] if cut > 0 else raw).strip(" \t\r\n")
        if line.startswith(".Include<"):
            self._include(listed, line, where, regex=regex, depth=depth)
            return
        line = line.removesuffix("/").removeprefix("ftp://")
        if not regex:
            if ":" in line.partition("/")[0] and _PORT.match(line):
                line = line.partition(":")[0] + "/" + line.partition("/")[2]
            line = line.lower()
        if line:
            listed.entries.append((number, line))

    def _include(self, listed: ListFile, line: str, where: str, *, regex: bool, depth: int) -> None:
        target = line[len(".Include<"):].partition(">")[0]
        if depth >= MAX_DEPTH:
            self.imported.note(where, f".Include nested deeper than {MAX_DEPTH}: not carried over")
            return
        path = self.resolve(target)
        if not path.is_file():
            self.imported.note(where, f".Include<{target}>: no such file: not carried over "
                                      "(e2guardian refuses to start)")
            return
        child = self.read(path, regex=regex, where=where, depth=depth + 1)
        if child is not None:
            listed.includes.append(child)


# -- entries → fwdproxy lines ---------------------------------------------------------------


@dataclass(slots=True)
class Converted:
    """fwdproxy lines made from entries: list lines (domains, ``/URL regexes/``), host
    regexes, blanket entries seen, and skipped entries by reason (count, first line)."""

    lines: list[str] = field(default_factory=list)
    host_regexes: list[str] = field(default_factory=list)
    blankets: list[tuple[str, int]] = field(default_factory=list)
    skipped: dict[str, tuple[int, int]] = field(default_factory=dict)

    def skip(self, reason: str, line: int) -> None:
        count, first = self.skipped.get(reason, (0, line))
        self.skipped[reason] = (count + 1, first)


def _escaped(pattern: str) -> str:
    # fwdproxy's list parser cuts a line at " #" (a trailing comment) and skips lines
    # holding AdBlock's "##": a literal "#" is written "\#", which means the same.
    return re.sub(r"(?<!\\)#", r"\#", pattern)


def network_regex(network: ipaddress.IPv4Network) -> str:
    """A host regex for the dotted addresses in `network` (fwdproxy's canonical form)."""
    octets = network.network_address.packed
    whole, bits = divmod(network.prefixlen, 8)
    parts = [str(octet) for octet in octets[:whole]]
    if bits:
        low = octets[whole]
        parts.append("(?:" + "|".join(str(v) for v in range(low, low + 2 ** (8 - bits))) + ")")
    parts += [r"\d{1,3}"] * (4 - len(parts))
    return "^" + r"\.".join(parts) + "$"


def networks(entry: str) -> list[ipaddress.IPv4Network] | None:
    """An IP list entry (address, ``a/nn``, ``a/mask``, ``a-b``) as networks, or None."""
    try:
        if "-" in entry:
            first, _, last = entry.partition("-")
            return list(ipaddress.summarize_address_range(
                ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())))
        return [ipaddress.IPv4Network(entry, strict=False)]
    except ValueError:
        return None


def _site(entry: str, line: int, out: Converted, *, ip_names: bool) -> None:
    if entry in BLANKETS:
        out.blankets.append((entry, line))
    elif "/" in entry:
        out.skip("hold a path (a site list matches host names only)", line)
    elif _IPV4.fullmatch(entry):
        if ip_names:
            out.host_regexes.append("^" + re.escape(entry) + "$")
        else:
            out.skip("are addresses, which searchsitelistforip = off never looks up", line)
    elif "*" in entry:
        out.skip("hold a '*', which e2guardian compares literally (matching no host)", line)
    elif entry.startswith("."):
        if "." in entry[1:] or len(entry) < 3:
            out.skip("start with '.' but are no top-level domain: e2guardian matches them "
                     "with no host", line)
        else:
            out.lines.append(entry)  # .tld: the top-level domain and all under it
    elif "." not in entry:
        out.skip("have no dot, so e2guardian matches them with no host (write .name for a "
                 "top-level domain)", line)
    else:
        out.lines.append(entry)


def _ipsite(entry: str, line: int, out: Converted) -> None:
    if entry in BLANKETS:
        out.blankets.append((entry, line))
        return
    found = networks(entry) if entry[:1].isdigit() else None
    if found is None:
        out.skip("are no IPv4 address, subnet or range", line)
    else:
        out.host_regexes.extend(network_regex(n) for n in found)


def url_regex(entry: str) -> str:
    """The fwdproxy URL regex deciding as e2guardian's URL list entry ``host/path``."""
    host, slash, path = entry.partition("/")
    # The host or a parent domain, any port; then the path as a prefix ending at a
    # separator, or (no path) anything but the bare root page.
    head = r"(?i)^http://(?:[^/:]*\.)?" + re.escape(host) + r"(?::\d+)?"
    tail = re.escape(slash + path) + r"(?:[/?&=]|$)" if path else r"/."
    return _escaped(head + tail)


def _url(entry: str, line: int, out: Converted) -> None:
    if entry.startswith(("http://", "https://")):
        out.skip("start with a scheme, which e2guardian strips from the URL but not from "
                 "the entry (matching nothing)", line)
    elif "." not in entry.partition("/")[0]:
        out.skip("have no dot in the host, so e2guardian matches them with nothing", line)
    elif "/" in entry.strip("/") and not any(c in entry for c in "*^|$ "):
        # As an AdBlock pattern: indexed by host, so a list of 100,000 entries costs a
        # request only its host's entries (a regex each took 5 s to load 20,000, and was
        # tried in full by every request). ``||`` is the host or a parent domain, ``^`` a
        # separator or the end, case ignored: e2guardian's reading but for the port,
        # which e2guardian ignores and ``||host/`` does not allow.
        out.lines.append(f"||{entry.rstrip('/')}^" if not entry.endswith("/") else f"||{entry}")
    else:
        out.lines.append("/" + url_regex(entry) + "/")


def _bracket_end(pattern: str, at: int) -> int:
    """The index after the bracket expression opening at `at` (``[^]a[:digit:]]``)."""
    index = at + 1
    if pattern.startswith("^", index):
        index += 1
    if pattern.startswith("]", index):
        index += 1  # a "]" first is a literal
    while index < len(pattern):
        if pattern.startswith("[:", index) and ":]" in pattern[index:]:
            index = pattern.index(":]", index) + 2
        elif pattern[index] == "\\":
            index += 2
        elif pattern[index] == "]":
            return index + 1
        else:
            index += 1
    return len(pattern)


def translate_regex(pattern: str, *, url: bool) -> tuple[str, bool]:
    """A PCRE (POSIX classes, ``^``, ``$``) as Python regex, and whether it has ``$``.

    With `url`, it is rewritten to search fwdproxy's ``http://host/path`` as e2guardian
    searches ``host/path``: ``^`` is the end of ``http://`` and ``$`` allows the
    trailing ``/`` that e2guardian drops.
    """
    out: list[str] = []
    ends = False
    at = 0
    while at < len(pattern):
        char = pattern[at]
        if char == "\\":
            out.append(pattern[at:at + 2])
            at += 2
            continue
        if char == "[":
            end = _bracket_end(pattern, at)
            body = pattern[at:end]
            out.append(re.sub(r"\[:(\w+):\]", lambda m: _POSIX.get(m.group(1), m.group(0)), body))
            at = end
            continue
        if char == "$":
            ends = True
        if url and char == "^":
            out.append("(?<=^http://)")
        elif url and char == "$":
            out.append("(?=/?$)")
        else:
            out.append(char)
        at += 1
    return "".join(out), ends


def _regexp(entry: str, line: int, out: Converted) -> None:
    body = entry.removeprefix("(?i)")
    as_url, ends = translate_regex(body, url=True)
    url_pattern = _escaped(r"(?i)^http://.*?(?:" + as_url + ")")
    problem = check_regex(url_pattern)
    if problem is not None:
        out.skip(f"are no regular expression fwdproxy reads ({problem})", line)
        return
    out.lines.append("/" + url_pattern + "/")
    if not ends:
        # A CONNECT is judged by its host alone, as e2guardian judges it; a pattern with
        # "$" would then also end at the host of a plain-HTTP URL, so it is kept to HTTP.
        out.host_regexes.append(_escaped("(?i)" + translate_regex(body, url=False)[0]))


def convert(entries: list[tuple[int, str]], kind: Kind, *, ip_names: bool = True) -> Converted:
    """The fwdproxy lines for one list file's entries."""
    out = Converted()
    for line, entry in entries:
        if kind == "site":
            _site(entry, line, out, ip_names=ip_names)
        elif kind == "ipsite":
            _ipsite(entry, line, out)
        elif kind == "url":
            if entry in BLANKETS:
                out.blankets.append((entry, line))
            else:
                _url(entry, line, out)
        else:
            _regexp(entry, line, out)
    return out
