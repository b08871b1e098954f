"""Rule-list lines → typed rules, for every list format an office already has.

Strategy: one pass over a file's lines, each line classified by its shape and handed to a
`RuleSink` as one typed call (domain, address, URL prefix, URL regex, host regex). Nothing
is materialised per rule here, so a million-line hosts file costs no million objects: the
sink (see `index.RuleSetBuilder`) stores what it needs compactly. A malformed line is
reported through the sink with its line number and skipped; the rest of the file loads.
AdBlock rules with paths or wildcards become URL patterns (adblock.py, plain HTTP only);
rules with options a proxy cannot judge, and cosmetic filters, are skipped and counted,
never reduced to a domain block: that reduction over-blocks.

Formats (see rules/README.md for the user's view):
- ``example.com``, ``.example.com``: the domain and every subdomain; ``*.example.com``:
  subdomains only.
- ``||example.com^`` (AdBlock/AdGuard) and ``@@||example.com^`` (an allow entry);
  ``||203.0.113.7^`` an address; ``||host^*/ads/``, ``/banner/*/img^``, ``|http://h/``
  URL patterns; in a file with an ``[Adblock...]`` header, any line that is no name or
  address (``-ad-banner.``) is a pattern too.
- hosts-file lines ``0.0.0.0 a.com b.com``: every name, as a domain entry.
- IP addresses and CIDRs: destination addresses.
- ``example.com/path``, ``example.com:8080/path``: URL prefixes (plain HTTP only).
- ``/regex/``: a regular expression over the full URL.
- files of kind ``hostregex`` (``*.regex``, Pi-hole's ``regex.list``): one regex per line
  over the canonical host name; ``urls``/``domains``/``expressions``: UT1/SquidGuard files.
- e2guardian ``.Include<path>`` and ``#listcategory: "Name"``.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Literal, Protocol

from fwdproxy.errors import BadRequest
from fwdproxy.policy.adblock import split_options, unjudged_option
from fwdproxy.policy.names import canonical_host, normalize_path

Kind = Literal["list", "domains", "urls", "expressions", "hostregex"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Domain entry modes.
DOMAIN_AND_SUBDOMAINS = 0
SUBDOMAINS_ONLY = 1

# Names in the preamble of hosts files (StevenBlack, Pi-hole) that are housekeeping, not
# blocks: blocking "localhost" would break the proxy's own page.
HOSTS_HOUSEKEEPING = frozenset({
    "localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0",
    "ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes",
    "ip6-allrouters", "ip6-allhosts",
})

# The common case, checked before anything slower: a lower-case ASCII host name.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_PLAIN_NAME = rf"{_LABEL}(?:\.{_LABEL})*"  # no trailing dot
_PLAIN_HOST = re.compile(rf"{_PLAIN_NAME}\.?")
# The million-line case, a hosts file's "0.0.0.0 name": the whole line in one match, the
# name (less its one trailing dot) in group 1. Anything else about the line (upper case,
# other spacing, a comment) goes the general way.
_HOSTS_LINE = re.compile(rf"(?:0\.0\.0\.0|127\.0\.0\.1)[ \t]+({_PLAIN_NAME})\.?[ \t]*\r?\n?")
_ADBLOCK_DOMAIN = re.compile(r"(@@)?\|\|([^/^$*|:?]+)\^\|?")
_ADBLOCK_HEADER = re.compile(r"\[[A-Za-z][^\[\]]*\]")
_COSMETIC = ("##", "#@#", "#?#", "#$#", "#%#")
_POSIX_CLASS = re.compile(
    r"\[:(alpha|digit|alnum|upper|lower|space|blank|punct|print|graph|cntrl|xdigit|word):\]")
_LISTCATEGORY = re.compile(r'#listcategory:\s*"?([^"]*)"?', re.IGNORECASE)


class RuleSink(Protocol):
    """Receives what a list file holds, one call per entry (see index.RuleSetBuilder)."""

    def domain(self, host: str, mode: int, line: int, *, allow: bool = False) -> None: ...
    def domains(self, hosts: list[str], lines: list[int]) -> None:
        """Many plain domain entries (domain and subdomains) at once: the bulk path."""
    def address(self, network: IPNetwork, line: int, *, literal: bool = False) -> None:
        """Destination addresses; `literal`: only a request naming the address itself
        (UT1/SquidGuard ``domains`` files), never a name resolving to it."""
    def url_prefix(self, host: str, port: int | None, path: str, line: int, *,
                   squidguard: bool = False) -> None:
        """`squidguard`: a ``urls`` file's entry, which squidGuard compares in lower case
        (`path` is lower-cased) and after dropping ``www.``, ``web.``, ``ftp2.``...."""
    def url_regex(self, pattern: str, line: int, *, squidguard: bool = False) -> None:
        """`squidguard`: an ``expressions`` file's, searched as squidGuard does: in the
        URL without its scheme (``host/path``), ignoring case."""
    def url_pattern(self, pattern: str, line: int, *, allow: bool = False,
                    match_case: bool = False) -> None:
        """An AdBlock pattern (``||host^*/ads/``), without ``@@`` and options."""
    def host_regex(self, pattern: str, line: int) -> None: ...
    def include(self, target: str, line: int) -> None: ...
    def set_category(self, name: str, line: int) -> None: ...
    def error(self, line: int, message: str) -> None: ...
    def skipped(self, reason: str, line: int) -> None: ...


def check_regex(pattern: str) -> str | None:
    """Why `pattern` cannot be used (POSIX-only syntax, invalid), or None when it can."""
    posix = _POSIX_CLASS.search(pattern)
    if posix is not None:
        return (f"POSIX class [:{posix.group(1)}:] is not Python regex syntax "
                "(write \\s, \\d, [a-z]... instead)")
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None


def _numeric_tail(name: str) -> bool:
    """Does the last label of `name` (trailing dot ignored) start with a digit?"""
    end = len(name) - 1 if name.endswith(".") else len(name)
    return name[name.rfind(".", 0, end) + 1: end][:1].isdigit()


def _host_or_address(text: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """Canonical host of a list entry, and its address when it spells one. Raises BadRequest."""
    # A last label starting with a digit may be an IPv4 spelling (127.1, 0x7f.0xa): no
    # top-level domain does, so only those take the slow path.
    if _PLAIN_HOST.fullmatch(text) and not _numeric_tail(text):
        return (text[:-1] if text.endswith(".") else text), None
    return canonical_host(text)  # IDN, percent-escapes, numeric IPv4 spellings


def _host(text: str, *, allow_ip: bool = False) -> str:
    """Canonical host name of a list entry. Raises BadRequest."""
    host, ip = _host_or_address(text)
    if ip is not None and not allow_ip:
        raise BadRequest(f"{text!r} is an address, not a name")
    return host


def _strip_comment(line: str) -> str:
    for marker in (" #", "\t#"):
        cut = line.find(marker)
        if cut != -1:
            line = line[:cut].rstrip()
    return line


_IPV4_CHARS = frozenset("0123456789./")
_BATCH = 4096


def _address(token: str) -> IPNetwork | None:
    """The token as an address or CIDR, or None when it is not one."""
    # Cheap shape test first: most tokens are host names, and an exception costs.
    if ":" not in token and not (token[:1].isdigit() and _IPV4_CHARS.issuperset(token)):
        return None
    return _network(token)


@functools.lru_cache(maxsize=256)
def _network(token: str) -> IPNetwork | None:
    # Cached: every line of a hosts file starts with the same "0.0.0.0".
    try:
        return ipaddress.ip_network(token, strict=False)
    except ValueError:
        return None


def _url_prefix(text: str, sink: RuleSink, number: int, *, squidguard: bool) -> None:
    scheme = text[:8].lower()  # schemes are case-insensitive: HTTP:// is http://
    if scheme.startswith("https://"):
        sink.error(number, "URL rules see plain HTTP only (https:// is tunnelled, its path "
                           "is never seen): use a domain entry")
        return
    if scheme.startswith("http://"):
        text = text[len("http://"):]
    authority, slash, path = text.partition("/")
    host_text, colon, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    port: int | None = None
    if colon:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            sink.error(number, f"invalid port in {text!r}")
            return
        port = int(port_text)
    try:
        host = _host(host_text.lower(), allow_ip=True)
    except BadRequest as exc:
        sink.error(number, exc.detail)
        return
    path = normalize_path(slash + path)
    if squidguard:  # a UT1/SquidGuard urls file: www. and case are not significant
        host, path = host.removeprefix("www."), path.lower()
    sink.url_prefix(host, port, path, number, squidguard=squidguard)


def _regex(pattern: str, sink: RuleSink, number: int, *, host: bool,
           squidguard: bool = False) -> None:
    problem = check_regex(pattern)
    if problem is not None:
        sink.error(number, problem)
    elif host:
        sink.host_regex(pattern, number)
    else:
        sink.url_regex(pattern, number, squidguard=squidguard)


def _adblock(line: str, sink: RuleSink, number: int) -> None:
    """One AdBlock network rule: a domain or address rule when it is exactly ``||name^``,
    else a URL pattern (see adblock.py); rules with options a proxy cannot judge are
    skipped, counted by option."""
    allow = line.startswith("@@")
    text, options = split_options(line[2:] if allow else line)
    unjudged = unjudged_option(options)
    if unjudged is not None:
        sink.skipped(f"adblock option ${unjudged}", number)
        return
    if any(char.isspace() for char in text):
        sink.error(number, "an AdBlock rule holds no spaces")
        return
    if text.startswith("/") and text.endswith("/") and len(text) > 2:
        if allow:
            sink.skipped("adblock exception regex", number)
        else:
            _regex(text[1:-1], sink, number, host=False)
        return
    if not text.strip("|*^"):
        sink.error(number, f"AdBlock rule {line!r} matches every URL")
        return
    domain = _ADBLOCK_DOMAIN.fullmatch(text)
    if domain is not None:
        try:
            host, ip = _host_or_address(domain.group(2).lower())
        except BadRequest:
            pass  # ||.com^ and the like: still a valid pattern
        else:
            if ip is None:
                sink.domain(host, DOMAIN_AND_SUBDOMAINS, number, allow=allow)
            elif allow:
                sink.skipped("adblock exception for an address", number)
            else:
                sink.address(ipaddress.ip_network(ip), number)
            return
    sink.url_pattern(text, number, allow=allow, match_case="match-case" in options)


def _abp_pattern(line: str) -> bool:
    """In an AdBlock file: is this line a pattern rather than a name, address or hosts line?"""
    if " " in line or "\t" in line:
        return False  # a hosts-file line, or an error reported as such
    if _PLAIN_HOST.fullmatch(line.lower()) is not None:
        return False  # a bare name: a domain entry, as every other list means it
    return _address(line) is None


def _hosts_line(tokens: list[str], sink: RuleSink, number: int) -> None:
    for name in tokens[1:]:
        if name.startswith("#"):
            break
        lowered = name.lower()
        if lowered.rstrip(".") in HOSTS_HOUSEKEEPING:
            continue
        try:
            sink.domain(_host(lowered), DOMAIN_AND_SUBDOMAINS, number)
        except BadRequest as exc:
            sink.error(number, exc.detail)


def _single(token: str, sink: RuleSink, number: int, kind: Kind) -> None:
    # squidGuard compares a domains file's addresses with the URL as written: it never
    # resolves (and UT1's adult list alone has thousands of shared-hosting addresses).
    literal = kind == "domains"
    network = _address(token)
    if network is not None:
        sink.address(network, number, literal=literal)
        return
    if "/" in token:
        if kind == "domains":
            sink.error(number, f"{token!r} is not a domain (a path belongs in a urls file)")
        else:
            _url_prefix(token, sink, number, squidguard=kind == "urls")
        return
    if kind == "urls":
        _url_prefix(token, sink, number, squidguard=True)
        return
    mode = DOMAIN_AND_SUBDOMAINS
    if token.startswith("*."):
        token, mode = token[2:], SUBDOMAINS_ONLY
    elif token.startswith("."):
        token = token[1:]
    if "*" in token:
        sink.error(number, f"{token!r}: a wildcard is allowed only as a leading '*.'")
        return
    try:
        host, ip = _host_or_address(token.lower())
    except BadRequest as exc:
        sink.error(number, exc.detail)
        return
    if ip is None:
        sink.domain(host, mode, number)
    elif mode == SUBDOMAINS_ONLY:
        sink.error(number, f"{token!r} is an address: it has no subdomains")
    else:
        sink.address(ipaddress.ip_network(ip), number, literal=literal)  # 2130706433, 0x7f.1


# long: one branch per line format (hosts, AdBlock, CIDR, URL, regex, .Include), read top to
# bottom in the order a line is tried; the order is the specification.
def parse_lines(lines: Iterable[str], sink: RuleSink, kind: Kind = "list") -> None:
    """Read the lines of one list file into `sink`.

    Args:
        lines: the file's lines, decoded (line ends and a UTF-8 BOM are tolerated).
        sink: receives each entry, error and skipped line, with 1-based line numbers.
        kind: ``list`` (any mix of the formats above), or a UT1/SquidGuard file kind
            (``domains``, ``urls``, ``expressions``), or ``hostregex``.
    """
    is_list = kind == "list"
    regexes = kind == "expressions" or kind == "hostregex"
    # Plain hosts-file names are batched: one sink call per thousands of entries.
    batch_hosts: list[str] = []
    batch_lines: list[int] = []
    known_address = ""  # the hosts file's usual "0.0.0.0", once seen to be an address
    hosts_line = _HOSTS_LINE.fullmatch if is_list else None
    # In an AdBlock file (its "[Adblock Plus 2.0]" header seen), a line that is no
    # name or address is an ABP substring pattern ("-ad-banner."), not a malformed name.
    adblock = False
    for number, raw in enumerate(lines, 1):
        if hosts_line is not None and (plain := hosts_line(raw)) is not None:
            name = plain.group(1)
            if not name[name.rfind(".") + 1].isdigit() and name not in HOSTS_HOUSEKEEPING:
                batch_hosts.append(name)
                batch_lines.append(number)
                if len(batch_hosts) >= _BATCH:
                    sink.domains(batch_hosts, batch_lines)
                    batch_hosts, batch_lines = [], []
                continue
        line = raw.strip()
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line:
            continue
        first = line[0]
        if first == "#":
            category = _LISTCATEGORY.match(line)
            if category is not None and category.group(1).strip():
                if batch_hosts:  # the lines above keep the category they were under
                    sink.domains(batch_hosts, batch_lines)
                    batch_hosts, batch_lines = [], []
                sink.set_category(category.group(1).strip(), number)
            continue
        if first == "!":
            continue  # AdBlock comment
        if first == "[" and _ADBLOCK_HEADER.fullmatch(line):
            adblock = is_list  # "[Adblock Plus 2.0]": the file says it is ABP syntax
            continue
        if first == "." and line.startswith(".Include<") and line.endswith(">"):
            sink.include(line[len(".Include<"):-1], number)
            continue
        if regexes:
            _regex(_strip_comment(line) if " #" in line else line, sink, number,
                   host=kind == "hostregex", squidguard=kind == "expressions")
            continue
        if "#" in line:  # rare: trailing comments, AdBlock cosmetic filters
            if " #" in line or "\t#" in line:
                line = _strip_comment(line)
            if is_list and any(marker in line for marker in _COSMETIC):
                sink.skipped("adblock cosmetic filter", number)
                continue
        if is_list:
            if first == "|" or first == "@":
                _adblock(line, sink, number)
                continue
            if first == "/" and line.endswith("/") and len(line) > 2:
                _regex(line[1:-1], sink, number, host=False)
                continue
            if "$" in line or first == "/" or "^" in line or (adblock and _abp_pattern(line)):
                _adblock(line, sink, number)  # /banner/*/img^, .com/ads/, -ad-banner.
                continue
        tokens = line.split()
        if len(tokens) > 1:
            if is_list and (tokens[0] == known_address
                            or _address(tokens[0].split("%", 1)[0]) is not None):
                known_address = tokens[0]
                _hosts_line(tokens, sink, number)  # the plain "0.0.0.0 name" took _HOSTS_LINE
            else:
                sink.error(number, "one entry per line expected (or 'ADDRESS NAME...' as in a hosts file)")
            continue
        _single(tokens[0], sink, number, kind)
    if batch_hosts:
        sink.domains(batch_hosts, batch_lines)
