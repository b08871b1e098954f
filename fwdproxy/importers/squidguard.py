"""`fwdproxy import squidguard squidGuard.conf`: sources, destination classes, time rules
and the acl turned into categories and ordered policies.

squidGuard's semantics, as squidGuard 1.6 (Debian's) shows them when fed requests:

- The client's source is the first ``src`` *in the order the sources are defined* that
  matches it (not the order of the acl); a source with both ``ip`` and ``user`` matches
  only a client that has both. A source with ``within``/``outside`` matches only then.
- Its acl entry applies (``within``/``outside`` a time, else its ``else`` block, else
  the ``default`` acl); a source without an acl entry, and a client in no source, get
  ``default``.
- A ``pass`` list is read left to right and the first class that matches decides:
  ``name`` passes, ``!name`` blocks, ``any``/``all`` pass everything left, ``none``
  blocks it; a list that runs out passes. ``in-addr`` is a host written as an address.
- A blocked request is redirected to the acl's ``redirect`` (else ``default``'s).

Each source becomes a group and a policy per time part, in source order, then
``default`` for everyone. fwdproxy's allow beats deny, so a class allowed after a
``!class`` is noted (a site in both is blocked by squidGuard, allowed here).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from fwdproxy.importers.model import (
    CategoryDraft,
    Imported,
    PolicyDraft,
    SourceError,
    safe_name,
)
from fwdproxy.importers.sgtime import WEEK, Minutes, parse_weekly, windows_of

# The class squidGuard matches when the URL's host is an address: as host regexes
# over fwdproxy's canonical host (IPv4 dotted, IPv6 without brackets).
IN_ADDR = "in-addr"
_IN_ADDR_LINES = ["# squidGuard's in-addr: a host written as an IP address",
                  r"^[0-9]+(\.[0-9]+){3}$", ":"]
_LIST_FILES = {"domainlist": "domains", "urllist": "urls", "expressionlist": "expressions"}
# squidGuard's redirect fields → fwdproxy's (see policy.policies.REDIRECT_FIELDS).
_REDIRECT_FIELDS = {"a": "$client", "i": "$user", "t": "$category", "u": "$url", "%": "%"}
_TOKEN = re.compile(r"[{}]|[^\s{}]+")


@dataclass(slots=True)
class _Line:
    number: int
    words: list[str]


@dataclass(slots=True)
class _Block:
    """``kind name [within|outside time] { lines }`` (an acl entry may have ``else``)."""

    kind: str
    name: str
    line: int
    time: tuple[str, str] | None = None  # ("within" | "outside", time name)
    lines: list[_Line] = field(default_factory=list)
    children: list[_Block] = field(default_factory=list)


def _lines(text: str) -> list[_Line]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = _TOKEN.findall(raw.split("#", 1)[0])
        if words:
            out.append(_Line(number, words))
    return out


class _Reader:
    """squidGuard.conf's blocks, read from its words; notes go to `imported`."""

    def __init__(self, path: Path, imported: Imported) -> None:
        self.path = path
        self.imported = imported
        self.lines = _lines(path.read_text(encoding="utf-8", errors="replace"))
        self.at = 0

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"

    def note(self, line: int, message: str) -> None:
        self.imported.note(self.where(line), message)

    def blocks(self) -> tuple[dict[str, str], list[_Block]]:
        settings: dict[str, str] = {}
        blocks: list[_Block] = []
        while self.at < len(self.lines):
            line = self.lines[self.at]
            self.at += 1
            if "{" in line.words:
                block = self._open(line, line.words[0])
                if line.words[0] == "acl":
                    block.children = self._entries()
                else:
                    self._body(block)
                blocks.append(block)
            elif len(line.words) >= 2:
                settings[line.words[0]] = " ".join(line.words[1:])
            else:
                self.note(line.number, f"{line.words[0]!r} without a value: skipped")
        return settings, blocks

    def _open(self, line: _Line, kind: str) -> _Block:
        words = line.words[: line.words.index("{")]
        if kind != "entry":  # "src name ... {"; an acl entry has no keyword: "name ... {"
            words = words[1:]
        block = _Block(kind, words[0] if words else kind, line.number)
        if len(words) >= 3 and words[1] in ("within", "outside"):
            block.time = (words[1], words[2])
        trailing = line.words[line.words.index("{") + 1:]
        if trailing and trailing != ["}"]:
            block.lines.append(_Line(line.number, [w for w in trailing if w != "}"]))
        if trailing[-1:] == ["}"]:
            block.lines.append(_Line(line.number, ["}"]))
        return block

    def _body(self, block: _Block) -> None:
        """Lines up to the closing brace (``}`` alone, or ending a line)."""
        if block.lines and block.lines[-1].words == ["}"]:
            block.lines.pop()
            return
        while self.at < len(self.lines):
            line = self.lines[self.at]
            self.at += 1
            if line.words[0] == "}" and len(line.words) > 1:  # "} else {": leave "else {"
                self.at -= 1
                self.lines[self.at] = _Line(line.number, line.words[1:])
                return
            if line.words[-1] == "}":
                if line.words[:-1]:
                    block.lines.append(_Line(line.number, line.words[:-1]))
                return
            block.lines.append(line)
        self.note(block.line, f"{block.kind} {block.name!r}: no closing brace")

    def _entries(self) -> list[_Block]:
        """The acl's entries, each ``name [within|outside t] { ... } [else { ... }]``."""
        entries: list[_Block] = []
        while self.at < len(self.lines):
            line = self.lines[self.at]
            self.at += 1
            if line.words == ["}"]:
                return entries
            if line.words[0] == "else" and entries:
                other = _Block("else", entries[-1].name, line.number)
                self._body(other)
                entries[-1].children.append(other)
                continue
            if "{" not in line.words:
                self.note(line.number, f"acl: expected an entry 'name {{', got {' '.join(line.words)!r}")
                continue
            entry = self._open(line, "entry")
            self._body(entry)
            entries.append(entry)
        return entries


def _read_list(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        return [w for raw in handle for w in raw.split("#", 1)[0].split()]


class _Translator:
    def __init__(self, conf: Path, imported: Imported, reader: _Reader) -> None:
        self.imported = imported
        self.reader = reader
        self.dbhome = conf.parent
        self.times: dict[str, Minutes] = {}
        self.sources: list[_Block] = []
        self.dests: dict[str, _Block] = {}
        self.acl: dict[str, _Block] = {}

    def note(self, line: int, message: str) -> None:
        self.reader.note(line, message)

    def run(self, settings: dict[str, str], blocks: list[_Block]) -> None:
        if "dbhome" in settings:
            self.dbhome = Path(settings["dbhome"])
        elif any(block.kind == "dest" for block in blocks):
            self.note(1, f"no dbhome: relative list paths are read from {self.dbhome}")
        for block in blocks:
            if block.kind == "time":
                self.times[block.name] = self._time(block)
            elif block.kind == "src":
                self.sources.append(block)
            elif block.kind == "dest":
                self.dests[block.name] = block
                self._dest(block)
            elif block.kind == "acl":
                self.acl = {entry.name: entry for entry in block.children}
            elif block.kind == "rew":
                self.note(block.line, f"rew {block.name}: URL rewriting is not carried over")
            else:
                self.note(block.line, f"{block.kind!r} block: not understood, skipped")
        for source in self.sources:
            self._source(source)
        if "default" not in self.acl:
            self.note(1, "no default acl: clients in no source are allowed everything here")
        self._policy("default", self.acl.get("default"), [], WEEK)

    def _time(self, block: _Block) -> Minutes:
        minutes: Minutes = frozenset()
        for line in block.lines:
            if line.words[0] == "weekly":
                parsed = parse_weekly(line.words[1:])
                if isinstance(parsed, str):
                    self.note(line.number, f"time {block.name}: {parsed}; skipped")
                else:
                    minutes |= parsed
            else:
                self.note(line.number, f"time {block.name}: {' '.join(line.words)!r}: only "
                          "weekly rules are carried over (fwdproxy windows are days of the week)")
        return minutes

    def _when(self, block: _Block) -> Minutes:
        if block.time is None:
            return WEEK
        how, name = block.time
        if name not in self.times:
            self.note(block.line, f"unknown time {name!r}: taken as always")
            return WEEK
        return self.times[name] if how == "within" else WEEK - self.times[name]

    def _dest(self, block: _Block) -> None:
        name = safe_name(block.name)
        category = CategoryDraft(name, self.reader.where(block.line))
        for line in block.lines:
            key, values = line.words[0], line.words[1:]
            if key in _LIST_FILES and values:
                path = Path(values[0])
                path = path if path.is_absolute() else self.dbhome / path
                if path.is_file():
                    category.copies.append((f"{name}/{_LIST_FILES[key]}", path))
                else:
                    self.note(line.number, f"dest {block.name}: {path}: no such file")
            elif key == "redirect":
                self.note(line.number, f"dest {block.name}: a class's own redirect is not "
                          "carried over: the acl's redirect applies")
            elif key != "log":
                self.note(line.number, f"dest {block.name}: {key!r} is not carried over")
        if block.time is not None:
            self.note(block.line, f"dest {block.name} {' '.join(block.time)}: a class "
                      "limited to a time is imported as always active")
        self.imported.categories[name] = category

    def _source(self, block: _Block) -> None:
        networks: list[str] = []
        users: list[str] = []
        for line in block.lines:
            key, values = line.words[0], line.words[1:]
            if key in ("ip", "iplist"):
                for value in values if key == "ip" else self._list(line, values):
                    networks.extend(self._networks(line, value))
            elif key in ("user", "userlist"):
                users.extend(values if key == "user" else self._list(line, values))
            elif key in ("within", "outside") and values:
                block.time = (key, values[0])
            elif key != "log":
                self.note(line.number, f"src {block.name}: {key!r} is not carried over")
        if not networks and not users:
            self.note(block.line, f"src {block.name}: no addresses or users; skipped")
            return
        group = safe_name(block.name)
        members = list(dict.fromkeys(networks)) or [f"user:{u}" for u in users]
        self.imported.groups[group] = (members, self.reader.where(block.line))
        if users:
            self.note(block.line, f"src {block.name}: user names need proxy authentication "
                      "(auth: in fwdproxy.yaml)")
        self._policy(block.name, self.acl.get(block.name) or self.acl.get("default"),
                     [group], self._when(block), users if networks else None)

    def _list(self, line: _Line, values: list[str]) -> list[str]:
        path = Path(values[0]) if values else Path()
        path = path if path.is_absolute() else self.dbhome / path
        try:
            return _read_list(path)
        except OSError as exc:
            self.note(line.number, f"{path}: cannot read: {exc.strerror or exc}")
            return []

    def _networks(self, line: _Line, value: str) -> list[str]:
        try:
            if "-" in value and "/" not in value:
                first, last = (ipaddress.ip_address(v) for v in value.split("-", 1))
                return [str(n) for n in ipaddress.summarize_address_range(first, last)]
            return [str(ipaddress.ip_network(value, strict=False))]
        except (ValueError, TypeError):
            self.note(line.number, f"{value!r} is not an address, network or range: skipped")
            return []

    def _policy(self, name: str, entry: _Block | None, clients: list[str], when: Minutes,
                users: list[str] | None = None) -> None:
        if entry is None:  # no acl at all: squidGuard passes the request
            self._add(PolicyDraft(name, self.reader.where(1), list(clients)), when, users)
            return
        inside = self._when(entry)
        draft = self._pass(name, name, entry, clients)
        self._add(draft, when & inside, users)
        if inside != WEEK:
            other = next((c for c in entry.children if c.kind == "else"), None)
            fallback = other if other is not None else self.acl.get("default")
            if fallback is not None and fallback is not entry:
                self._add(self._pass(f"{name}-else" if other else f"{name}-default", name,
                                     fallback, clients), when - inside, users)

    def _add(self, draft: PolicyDraft, when: Minutes, users: list[str] | None) -> None:
        if not when:
            return  # a time part that never occurs
        draft.when = windows_of(when)
        draft.users = list(users or [])
        self.imported.policies.append(draft)

    def _pass(self, name: str, source: str, entry: _Block, clients: list[str]) -> PolicyDraft:
        """The policy for one acl block; `source` is the src name its redirect names."""
        draft = PolicyDraft(safe_name(name), self.reader.where(entry.line), list(clients))
        passes: list[_Line] = []
        for line in entry.lines:
            if line.words[0] == "pass":
                passes.append(line)
            elif line.words[0] == "redirect" and len(line.words) > 1:
                continue  # read by _redirect_of
            elif line.words[0] not in ("log", "logfile"):
                self.note(line.number, f"acl {name}: {line.words[0]!r} is not carried over")
        default = self.acl.get("default")
        draft.redirect = self._redirect_of(entry, source)
        if draft.redirect is None and default is not None and default is not entry:
            draft.redirect = self._redirect_of(default, source)
        for line in passes or (default.lines if default is not None else []):
            if line.words[0] == "pass":
                self._pass_list(draft, line)
        return draft

    def _pass_list(self, draft: PolicyDraft, line: _Line) -> None:
        for index, word in enumerate(line.words[1:]):
            if word in ("any", "all", "none"):
                draft.default = "deny" if word == "none" else "allow"
                if line.words[index + 2:]:
                    self.note(line.number, f"pass: {' '.join(line.words[index + 2:])} after "
                              f"{word} is never reached; ignored, as squidGuard does")
                return
            negative = word.startswith("!")
            name = word.lstrip("!")
            category = self._category(line, name)
            if category is None:
                continue
            if negative:
                draft.deny.append(category)
            else:
                if draft.deny:
                    self.note(line.number, f"pass: {name} after !{draft.deny[0]}: squidGuard "
                              f"blocks a site in both; here allow beats deny")
                draft.allow.append(category)
        # A pass list that runs out passes the request (squidGuard 1.6).

    def _category(self, line: _Line, name: str) -> str | None:
        if name == IN_ADDR:
            self.imported.categories.setdefault(IN_ADDR, CategoryDraft(
                IN_ADDR, "squidGuard's built-in in-addr class",
                lines={f"{IN_ADDR}.regex": _IN_ADDR_LINES}))
            return IN_ADDR
        if name not in self.dests:
            self.note(line.number, f"pass: unknown class {name!r}: skipped")
            return None
        return safe_name(name)

    def _redirect_of(self, entry: _Block, source: str) -> str | None:
        """The acl block's redirect (its last, as squidGuard keeps the last), if usable."""
        redirect = None
        for line in entry.lines:
            if line.words[0] == "redirect" and len(line.words) > 1:
                redirect = self._redirect(line, line.words[1], source)
        return redirect

    def _redirect(self, line: _Line, url: str, source: str) -> str | None:
        url = re.sub(r"^30[1237]:", "", url)  # squid's "302:URL" form
        out: list[str] = []
        lost: list[str] = []
        pieces = re.split(r"(%.)", url.replace("$", "$$"))
        for piece in pieces:
            if len(piece) == 2 and piece[0] == "%":
                if piece[1] == "s":
                    out.append(safe_name(source))
                elif piece[1] in _REDIRECT_FIELDS:
                    out.append(_REDIRECT_FIELDS[piece[1]])
                elif piece[1] == "n":
                    out.append("$client")
                    lost.append("%n (the client's name) is its address")
                else:
                    out.append("")
                    lost.append(f"{piece} is left empty")
            else:
                out.append(piece)
        if lost:
            self.note(line.number, f"redirect: {'; '.join(dict.fromkeys(lost))}")
        result = "".join(out)
        if not re.match(r"https?://[^/?#\s]", result, re.IGNORECASE):
            self.note(line.number, f"redirect {url!r} is not an http(s) URL: the block page is shown")
            return None
        return result


def read(conf: Path) -> Imported:
    """Read `conf` (and the lists it names, relative to its ``dbhome``).

    Raises:
        SourceError: `conf` cannot be read.
    """
    imported = Imported(source=str(conf))
    try:
        reader = _Reader(conf, imported)
    except OSError as exc:
        raise SourceError(f"{conf}: cannot read: {exc.strerror or exc}") from None
    settings, blocks = reader.blocks()
    if not any(block.kind == "acl" for block in blocks):
        raise SourceError(f"{conf}: no acl block: not a squidGuard configuration")
    _Translator(conf, imported, reader).run(settings, blocks)
    return imported
