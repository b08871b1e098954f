"""The loaded rule set: compact indexes that answer "which entries match this request?".

Strategy: a list can hold a million domains, so domains are not kept as Python objects:
each entry is a 64-bit hash of its canonical name in one sorted `array`, with parallel
array packing its line, file and mode (16 bytes an entry). A lookup hashes the
host and each parent domain (``a.b.example.com``, ``b.example.com``, ``example.com``,
``com``) and binary-searches each: microseconds, whatever the list size. Addresses are
indexed by prefix length, URL prefixes by host, AdBlock patterns by host or token (see
adblock.py), and each file's regular expressions are compiled together into one pattern.
Every match names its file and line.

Hashes are Python's own str hash (SipHash, randomised per process): two names colliding
in a 64-bit hash among a million entries has odds of about 1 in 10^7 per lookup... of
a lifetime; the host itself is not stored, which is what keeps the index small.
Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from typing import Literal

from fwdproxy.policy.adblock import PatternIndex
from fwdproxy.policy.names import IPAddress, canonical_address
from fwdproxy.policy.rules import DOMAIN_AND_SUBDOMAINS, IPNetwork

Action = Literal["allow", "deny"]
_FID_MASK = (1 << 23) - 1  # file ids fit in 23 bits of a domain entry's info word
_BIAS = 1 << 63  # makes a signed 64-bit hash non-negative, to pack it above the info word
_LOW64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class ListFile:
    """Where entries came from: the file (relative to the rules folder), its category
    (the file or folder name, or e2guardian's #listcategory) and what it does."""

    path: str
    category: str
    action: Action


@dataclass(frozen=True, slots=True)
class Match:
    """One entry that matched a request."""

    action: Action
    category: str
    source: str  # "deny/ads.txt:12"
    rule: str    # what the entry says, e.g. "ads.example.com and its subdomains"


@dataclass
class _Regexes:
    """The regular expressions of one file, compiled together."""

    fid: int
    patterns: list[tuple[str, int]] = field(default_factory=list)  # (pattern, line)
    combined: re.Pattern[str] | None = None
    combined_lines: list[int] = field(default_factory=list)  # by alternative, r0, r1...
    alone: list[tuple[re.Pattern[str], int]] = field(default_factory=list)
    flags: int = 0  # re.IGNORECASE for squidGuard's expressions

    def compile(self) -> None:
        together: list[tuple[str, str, int]] = []  # (as combined, as written, line)
        for pattern, line in self.patterns:
            # Group references would point at another alternative's groups once combined,
            # and a verbose-mode comment would swallow the closing parenthesis of a scope.
            if _KEEP_ALONE.search(pattern):
                self.alone.append((re.compile(pattern, self.flags), line))
            else:
                together.append((_scope_flags(pattern), pattern, line))
        if together:
            source = "|".join(f"(?P<r{i}>{pattern})" for i, (pattern, _, _) in enumerate(together))
            try:
                self.combined = re.compile(source, self.flags)
                self.combined_lines = [line for _, _, line in together]
            except re.error:  # e.g. the same group name in two patterns
                self.alone.extend((re.compile(written, self.flags), line) for _, written, line in together)
        self.patterns = []

    def search(self, text: str) -> int | None:
        """The line of an expression that matches `text`, or None."""
        if self.combined is not None:
            found = self.combined.search(text)
            if found is not None and found.lastgroup is not None:
                return self.combined_lines[int(found.lastgroup[1:])]
        for compiled, line in self.alone:
            if compiled.search(text):
                return line
        return None


_KEEP_ALONE = re.compile(r"\\[1-9]|\(\?P=|\(\?P<|\(\?\(|^\(\?[aiLmsu]*x")


def _scope_flags(pattern: str) -> str:
    """``(?i)abc`` → ``(?i:abc)``: global flags must lead the whole combined pattern."""
    match = re.match(r"\(\?([aiLmsux]+)\)", pattern)
    if match is None:
        return pattern
    return f"(?{match.group(1)}:{pattern[match.end():]})"


# (IP version, prefix length) → network address as an int → (file id, line, as written)
_Networks = dict[tuple[int, int], dict[int, list[tuple[int, int, str]]]]
# The host prefixes squidGuard drops before looking a URL up in a urls file.
_SQUIDGUARD_HOST_PREFIX = re.compile(r"(?:www|web|ftp)[0-9]*\.")


class RuleSet:
    """Everything the rules folder says, indexed. Built by `RuleSetBuilder`."""

    def __init__(self) -> None:
        self.files: list[ListFile] = []
        self._hashes = array("Q")  # hash(name) + 2**63: unsigned, sorted
        # Per domain entry, packed: line << 24 | file id << 1 | mode (one array, not three).
        self._info = array("Q")
        self._addresses: _Networks = {}
        self._literal_addresses: _Networks = {}  # UT1/SquidGuard domains files: as written
        # host → (port, path prefix, file id, line, as squidGuard reads it: case-folded)
        self._url_prefixes: dict[str, list[tuple[int | None, str, int, int, bool]]] = {}
        self._squidguard_prefixes = False  # any of those case-folded (urls files)?
        self._url_regexes: list[_Regexes] = []
        self._squidguard_regexes: list[_Regexes] = []  # expressions files: no scheme, any case
        self._host_regexes: list[_Regexes] = []
        self._patterns = PatternIndex()  # AdBlock path and wildcard patterns
        self._allowing: frozenset[int] = frozenset()  # file ids whose entries allow
        self.errors: list[str] = []
        self.skipped: Counter[str] = Counter()
        self.counts: Counter[tuple[Action, str]] = Counter()

    # -- facts about the set -----------------------------------------------------------

    @property
    def has_address_rules(self) -> bool:
        return bool(self._addresses)

    @property
    def domain_count(self) -> int:
        return len(self._hashes)

    def categories(self, action: Action) -> frozenset[str]:
        return frozenset(f.category for f in self.files if f.action == action)

    # -- lookups -------------------------------------------------------------------------

    def _source(self, fid: int, line: int) -> tuple[ListFile, str]:
        listed = self.files[fid]
        return listed, f"{listed.path}:{line}"

    def _match(self, fid: int, line: int, rule: str) -> Match:
        listed, source = self._source(fid, line)
        return Match(listed.action, listed.category, source, rule)

    def match_domain(self, host: str) -> list[Match]:
        """Domain entries matching canonical `host`: its own and its parents'."""
        hashes = self._hashes
        size = len(hashes)
        if not size:
            return []
        found: list[Match] = []
        suffix = host
        while True:
            key = hash(suffix) + _BIAS
            index = bisect_left(hashes, key)
            while index < size and hashes[index] == key:
                info = self._info[index]
                mode = info & 1
                if suffix != host or mode == DOMAIN_AND_SUBDOMAINS:
                    rule = (f"{suffix} and its subdomains" if mode == DOMAIN_AND_SUBDOMAINS
                            else f"subdomains of {suffix}")
                    found.append(self._match((info >> 1) & _FID_MASK, info >> 24, rule))
                index += 1
            dot = suffix.find(".")
            if dot == -1:
                return found
            suffix = suffix[dot + 1:]

    def match_address(self, address: IPAddress) -> list[Match]:
        """Address and CIDR entries containing `address`."""
        return self._match_networks(self._addresses, address)

    def match_literal(self, address: IPAddress) -> list[Match]:
        """Entries that match only a URL or CONNECT that names `address` itself: the
        addresses in UT1/SquidGuard ``domains`` files, which squidGuard compares with the
        URL's host as written and never with what a name resolves to."""
        return self._match_networks(self._literal_addresses, address) if self._literal_addresses else []

    def _match_networks(self, table: _Networks, address: IPAddress) -> list[Match]:
        address = canonical_address(address)
        bits = address.max_prefixlen
        value = int(address)
        found: list[Match] = []
        for (version, prefixlen), networks in table.items():
            if version != address.version:
                continue
            shift = bits - prefixlen
            hits = networks.get(value >> shift << shift)
            if hits:
                found.extend(self._match(fid, line, f"address {text}") for fid, line, text in hits)
        return found

    def match_url(self, host: str, port: int, path: str, url: str) -> list[Match]:
        """URL-prefix and URL-regex entries for a plain-HTTP request.

        Args:
            host: canonical host.
            port: destination port.
            path: normalised path and query (see target.normalize_path).
            url: the normalised URL regexes are matched against.
        """
        found: list[Match] = []
        candidates = self._url_prefixes.get(host, [])
        if host.startswith("www."):
            candidates = candidates + self._url_prefixes.get(host[4:], [])
        elif self._squidguard_prefixes and (bare := _SQUIDGUARD_HOST_PREFIX.match(host)) is not None:
            # squidGuard also drops web., ftp., www2. ... (its urls entries only)
            candidates = candidates + [c for c in self._url_prefixes.get(host[bare.end():], []) if c[4]]
        folded = ""
        for entry_port, prefix, fid, line, fold in candidates:
            if entry_port is not None and entry_port != port:
                continue
            if fold:
                folded = folded or path.lower()
            if (folded if fold else path).startswith(prefix):
                shown = host if entry_port is None else f"{host}:{entry_port}"
                found.append(self._match(fid, line, f"URL prefix {shown}{prefix}"))
        for regexes in self._url_regexes:
            hit = regexes.search(url)
            if hit is not None:
                found.append(self._match(regexes.fid, hit, "URL regex"))
        if self._squidguard_regexes:
            bare_url = url.partition("://")[2]  # squidGuard matches host/path, any case
            for regexes in self._squidguard_regexes:
                hit = regexes.search(bare_url)
                if hit is not None:
                    found.append(self._match(regexes.fid, hit, "URL expression"))
        if self._patterns.size:
            for fid, line, text in self._patterns.search(host, url, self._allowing):
                found.append(self._match(fid, line, f"AdBlock pattern {text}"))
        return found

    def match_host_regex(self, host: str) -> list[Match]:
        found: list[Match] = []
        for regexes in self._host_regexes:
            hit = regexes.search(host)
            if hit is not None:
                found.append(self._match(regexes.fid, hit, "host regex"))
        return found


class RuleSetBuilder:
    """Collects entries file by file (it is the parser's `RuleSink`), then `build()`s."""

    def __init__(self) -> None:
        self._set = RuleSet()
        self._fid = -1
        self._file: ListFile | None = None
        self._fid_of: dict[ListFile, int] = {}
        self._regex_of: dict[tuple[int, str], _Regexes] = {}
        self.includes: list[tuple[str, int]] = []
        self._domain_count: Counter[int] = Counter()  # domain entries per file id

    def begin_file(self, path: str, category: str, action: Action) -> None:
        """Entries from now on come from `path`, in `category`, doing `action`."""
        self._file = ListFile(path, category, action)
        self._fid = self._file_id(self._file)

    def _file_id(self, listed: ListFile) -> int:
        fid = self._fid_of.get(listed)
        if fid is None:
            fid = self._fid_of[listed] = len(self._set.files)
            self._set.files.append(listed)
        return fid

    def _count(self, fid: int) -> None:
        listed = self._set.files[fid]
        self._set.counts[(listed.action, listed.category)] += 1

    # -- RuleSink -------------------------------------------------------------------------

    def _allow_fid(self, allow: bool) -> int:
        """The file id for an entry: an ``@@`` entry of a deny file gets an allow twin."""
        if allow and self._file is not None and self._file.action != "allow":
            return self._file_id(ListFile(self._file.path, self._file.category, "allow"))
        return self._fid

    def domain(self, host: str, mode: int, line: int, *, allow: bool = False) -> None:
        fid = self._allow_fid(allow)
        rules = self._set
        rules._hashes.append(hash(host) + _BIAS)
        self._domain_count[fid] += 1
        rules._info.append(line << 24 | fid << 1 | mode)

    def domains(self, hosts: list[str], lines: list[int]) -> None:
        rules = self._set
        rules._hashes.extend(map(operator.add, map(hash, hosts), repeat(_BIAS)))
        self._domain_count[self._fid] += len(hosts)
        packed = self._fid << 1 | DOMAIN_AND_SUBDOMAINS
        rules._info.extend([line << 24 | packed for line in lines])

    def address(self, network: IPNetwork, line: int, *, literal: bool = False) -> None:
        mapped = network
        v4 = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
        if v4 is not None and network.prefixlen >= 96:  # ::ffff:10.0.0.0/104 is 10.0.0.0/8
            mapped = ipaddress.IPv4Network(f"{v4}/{network.prefixlen - 96}")
        key = (mapped.version, mapped.prefixlen)
        table = self._set._literal_addresses if literal else self._set._addresses
        bucket = table.setdefault(key, {})
        bucket.setdefault(int(mapped.network_address), []).append((self._fid, line, str(network)))
        self._count(self._fid)

    def url_prefix(self, host: str, port: int | None, path: str, line: int, *,
                   squidguard: bool = False) -> None:
        self._set._url_prefixes.setdefault(host, []).append((port, path, self._fid, line, squidguard))
        self._set._squidguard_prefixes |= squidguard
        self._count(self._fid)

    def _regexes(self, kind: str) -> _Regexes:
        key = (self._fid, kind)
        regexes = self._regex_of.get(key)
        if regexes is None:
            regexes = self._regex_of[key] = _Regexes(self._fid)
            if kind == "squidguard":
                regexes.flags = re.IGNORECASE
            {"host": self._set._host_regexes, "url": self._set._url_regexes,
             "squidguard": self._set._squidguard_regexes}[kind].append(regexes)
        return regexes

    def url_regex(self, pattern: str, line: int, *, squidguard: bool = False) -> None:
        self._regexes("squidguard" if squidguard else "url").patterns.append((pattern, line))
        self._count(self._fid)

    def url_pattern(self, pattern: str, line: int, *, allow: bool = False,
                    match_case: bool = False) -> None:
        fid = self._allow_fid(allow)
        self._set._patterns.add(pattern, fid, line, match_case=match_case)
        self._count(fid)

    def host_regex(self, pattern: str, line: int) -> None:
        self._regexes("host").patterns.append((pattern, line))
        self._count(self._fid)

    def include(self, target: str, line: int) -> None:
        self.includes.append((target, line))

    def set_category(self, name: str, line: int) -> None:
        if self._file is not None:
            self.begin_file(self._file.path, name, self._file.action)

    def error(self, line: int, message: str) -> None:
        path = self._file.path if self._file is not None else "?"
        self._set.errors.append(f"{path}:{line}: {message}")

    def file_error(self, path: str, message: str) -> None:
        """A problem with a whole file (unreadable, not UTF-8...)."""
        self._set.errors.append(f"{path}: {message}")

    def skipped(self, reason: str, line: int) -> None:
        self._set.skipped[reason] += 1

    # -- result -------------------------------------------------------------------------

    def build(self) -> RuleSet:
        """Sort the domain index and compile the regexes; the builder is spent after."""
        rules = self._set
        for fid, count in self._domain_count.items():
            listed = rules.files[fid]
            rules.counts[(listed.action, listed.category)] += count
        # Sort hash and info together as one 128-bit key per entry; every step iterates
        # in C (map over operators), which is what makes a million entries take a second.
        keys = list(map(operator.or_, map(operator.lshift, rules._hashes, repeat(64)), rules._info))
        rules._hashes = array("Q")
        rules._info = array("Q")
        keys.sort()
        rules._hashes = array("Q", map(operator.rshift, keys, repeat(64)))
        rules._info = array("Q", map(operator.and_, keys, repeat(_LOW64)))
        del keys
        for regexes in (*rules._url_regexes, *rules._host_regexes, *rules._squidguard_regexes):
            regexes.compile()
        rules._allowing = frozenset(fid for fid, listed in enumerate(rules.files)
                                    if listed.action == "allow")
        return rules
