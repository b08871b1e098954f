"""Gateway URLs: ``/browse/<scheme>/<host>[:<port>]/<path>[?<query>]`` ↔ the page's URL.

Strategy: every URL a rewritten page links to is resolved against the page's base URL
the way a browser resolves it (WHATWG URL for the special schemes: leading and trailing
C0 controls and spaces dropped, tabs and newlines removed, ``\\`` read as ``/``), and an
http or https result becomes a root-relative gateway path. A rewritten link therefore
always starts with ``/browse/``: whatever a page writes, the browser has no way to read
it as a link to another host. Other schemes (``javascript:``, ``data:``, ``mailto:``,
``blob:``...) and same-document links (``#top``, the empty reference) are left as they
are: they fetch nothing from another host (JavaScript is passed through unrewritten and
the gateway says so).

Strings here are the page's bytes decoded as Latin-1 (see `html`): every byte is one
character, so a URL in any ASCII-compatible encoding comes out as the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

__all__ = ["PREFIX", "GatewayTarget", "LinkRewriter", "gateway_path", "parse_gateway_path"]

PREFIX = "/browse"
SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a browser drops around a URL (C0 controls and space) and inside it (tab, LF, CR).
_EDGES = "".join(chr(c) for c in range(0x21))
_INSIDE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# A host as it may appear in a gateway path: a name, an IPv4 address or [IPv6]; the port.
_AUTHORITY = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\[\]/:@?#\s]+)(?::([0-9]{1,5}))?$")
# Hosts whose gateway authority one page remembers: a page links to few, but may name many.
_AUTHORITY_CACHE = 256


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    """The page a gateway path names."""

    scheme: str  # "http" or "https"
    host: str  # as written in the URL: a name, an IPv4 address or "[IPv6]"
    port: int | None  # None: the scheme's default
    path: str  # "/docs/?q=1": path and query, never empty

    @property
    def authority(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def url(self) -> str:
        """The page's own URL, e.g. ``https://example.org/docs/?q=1``."""
        return f"{self.scheme}://{self.authority}{self.path}"

    def site_prefix(self) -> str:
        """The gateway path under which this site's pages (and its cookies) live."""
        return f"{PREFIX}/{self.scheme}/{self.authority}/"


def parse_gateway_path(path: str) -> GatewayTarget | None:
    """The target of a request path under ``/browse/``; None when the path is
    ``/browse`` itself (the form), with or without a query.

    Raises:
        ValueError: the path is under /browse but names no http or https page.
    """
    if path == PREFIX or path.startswith((PREFIX + "?", PREFIX + "/?")) or path == PREFIX + "/":
        return None
    if not path.startswith(PREFIX + "/"):
        raise ValueError(f"{path!r} is not a gateway path")
    scheme, _, rest = path[len(PREFIX) + 1:].partition("/")
    if scheme not in SCHEMES:
        raise ValueError(f"the gateway fetches http and https pages, not {scheme!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, page = rest[:cut], rest[cut:]
    match = _AUTHORITY.match(authority)
    if match is None:
        raise ValueError(f"{authority!r} is not a host[:port]")
    host, port_text = match.group(1).lower(), match.group(2)
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    if not page.startswith("/"):
        page = "/" + page
    return GatewayTarget(scheme, host, port, page)


def gateway_path(url: str) -> str | None:
    """The gateway path of an absolute http or https URL (its fragment kept); None for
    another scheme or a URL without a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    has_query = bool(parts.query) or url.split("#", 1)[0].endswith("?")
    return _gateway(parts.scheme, _authority(parts.scheme, parts.netloc), parts.path,
                    parts.query, has_query, parts.fragment)


def _authority(scheme: str, netloc: str) -> str | None:
    """`netloc` as a gateway path names it (host lower-cased, default port left out);
    None for another scheme, no host or a port that cannot be read."""
    parts = SplitResult(scheme, netloc, "", "", "")
    try:
        port = parts.port
    except ValueError:
        return None
    if scheme not in SCHEMES or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def _gateway(scheme: str, authority: str | None, path: str, query: str, has_query: bool,
             fragment: str) -> str | None:
    """The gateway path of a split URL; `has_query`: it has a query, maybe an empty one."""
    if authority is None:
        return None
    if not path.startswith("/"):
        path = "/" + path  # also "" → "/"
    query = f"?{query}" if has_query else ""
    fragment = f"#{fragment}" if fragment else ""
    return f"{PREFIX}/{scheme}/{authority}{path}{query}{fragment}"


def _as_browser_reads(ref: str) -> str:
    ref = ref.strip(_EDGES)
    if "\t" in ref or "\n" in ref or "\r" in ref:
        ref = _INSIDE.sub("", ref)
    if "\\" in ref:
        match = _SCHEME.match(ref)
        if match is None or match.group(1).lower() in SCHEMES:
            ref = ref.replace("\\", "/")  # special schemes: a backslash is a slash
    return ref


def _fetches(cleaned: str) -> bool:
    """Would the browser fetch something over http(s) for this (cleaned) reference?"""
    if not cleaned or cleaned.startswith("#"):
        return False
    match = _SCHEME.match(cleaned) if ":" in cleaned else None
    return match is None or match.group(1).lower() in SCHEMES


@dataclass(frozen=True, slots=True)
class _Base:
    """An http(s) base URL split once, as `urljoin` splits it for every link."""

    scheme: str
    netloc: str
    path: str
    query: str
    authority: str | None  # the netloc in a gateway path (None: no gateway path)
    dirs: list[str]  # urljoin's base_parts: the path's segments but the last (file) one
    # The directory a dot-free relative path is appended to (the dirs resolved, empty
    # segments dropped, "/" at both ends); None when the dirs hold "." or "..".
    prefix: str | None


def _split_base(url: str) -> _Base | None:
    """`url`'s parts, or None when urljoin would take another road for it than the one
    `LinkRewriter` follows (not http(s), no host, ";params" in its path)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in SCHEMES or not parts.netloc or ";" in parts.path:
        return None
    dirs = parts.path.split("/")
    if dirs[-1] != "":
        del dirs[-1]
    named = [seg for seg in dirs[1:] if seg]
    prefix = None if "." in named or ".." in named else "".join(f"{seg}/" for seg in ["", *named])
    return _Base(parts.scheme, parts.netloc, parts.path, parts.query,
                 _authority(parts.scheme, parts.netloc), dirs, prefix)


def _join_path(base: _Base, path: str) -> str:
    """`path` (not empty) resolved against the base's path exactly as `urljoin` does,
    with the leading "/" that `urlunsplit` adds."""
    if path[:1] == "/":
        if "/." not in path:  # no "." or ".." segment: the path as it is
            return path
        segments = path.split("/")
    else:
        if base.prefix is not None and "//" not in path and "/." not in path \
                and path[:1] != ".":  # no empty, "." or ".." segment: appended
            return base.prefix + path
        segments = base.dirs + path.split("/")
        segments[1:-1] = filter(None, segments[1:-1])
    resolved: list[str] = []
    for seg in segments:
        if seg == "..":
            if resolved:
                resolved.pop()
        elif seg != ".":
            resolved.append(seg)
    if segments[-1] in (".", ".."):
        resolved.append("")  # a directory: its trailing "/"
    joined = "/".join(resolved) or "/"
    return joined if joined[:1] == "/" else "/" + joined


class LinkRewriter:
    """Rewrites the links of one page (or style sheet) against its base URL.

    `url` does what ``gateway_path(urljoin(base, ref))`` did, without the string
    round trips: the base is split once (again on each `set_base`), a reference once
    (by hand when it has no ":" and no authority), and the parts of the result go to
    the gateway path as they are. What that road does not cover (";params", a base
    that is not http(s) with a host) takes urljoin's. tests/gateway/test_urls.py holds
    the old code and checks that the two agree.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # The gateway authority of the netlocs of absolute links, bounded.
        self._authorities: dict[tuple[str, str], str | None] = {}

    @property
    def base_url(self) -> str:
        return self._base_url

    @base_url.setter
    def base_url(self, url: str) -> None:
        self._base_url = url
        self._base = _split_base(url)

    def set_base(self, href: str) -> None:
        """A ``<base href>``: later links resolve against it (when it is an http or https
        URL that can be read; otherwise the base stays, as in browsers)."""
        try:
            resolved = urljoin(self.base_url, _as_browser_reads(href))
            scheme = urlsplit(resolved).scheme.lower()
        except ValueError:  # "http://[", or a page URL urlsplit cannot read: no valid URL
            return
        if scheme in SCHEMES:
            self.base_url = resolved

    def absolute(self, ref: str) -> str | None:
        """`ref` resolved as the browser would, when it is an http or https URL that
        can be read."""
        cleaned = _as_browser_reads(ref)
        if not _fetches(cleaned):
            return None
        try:
            resolved = urljoin(self.base_url, cleaned)
            urlsplit(resolved).port  # noqa: B018 - raises for a port out of range
        except ValueError:
            return None
        return resolved if urlsplit(resolved).scheme.lower() in SCHEMES else None

    def url(self, ref: str) -> str:
        """`ref` as a link inside the gateway; unchanged when it fetches nothing (another
        scheme, a fragment). An http link that cannot be read becomes the gateway's form,
        never a link out of it."""
        cleaned = _as_browser_reads(ref)
        if not _fetches(cleaned):
            return ref
        base = self._base
        if base is None or ";" in cleaned:
            resolved = self.absolute(ref)
            mapped = gateway_path(resolved) if resolved is not None else None
        else:
            try:
                mapped = self._resolve(base, cleaned)
            except ValueError:  # urlsplit: a bracketed host that is no IP address...
                mapped = None
        return mapped if mapped is not None else PREFIX

    def _resolve(self, base: _Base, cleaned: str) -> str | None:
        """The gateway path of ``urljoin(base, cleaned)``: its cases in its order."""
        if ":" not in cleaned and not cleaned.startswith("//"):
            # No scheme, no authority: urlsplit would only cut at "#" and "?" (`cleaned`
            # has no C0, space, tab or newline at its ends or tab or newline inside).
            scheme, netloc = base.scheme, ""
            rest, _, fragment = cleaned.partition("#")
            path, _, query = rest.partition("?")
        else:
            scheme, netloc, path, query, fragment = urlsplit(cleaned, base.scheme)
            if scheme != base.scheme:  # urljoin returns the reference as it is
                has_query = bool(query) or cleaned.split("#", 1)[0].endswith("?")
                return _gateway(scheme, self._authority(scheme, netloc), path, query,
                                has_query, fragment)
            if netloc:  # urlunsplit drops an empty query
                return _gateway(scheme, self._authority(scheme, netloc), path, query,
                                bool(query), fragment)
        if not path:  # "?q", "?": the base's path (and its query for an empty one)
            query = query or base.query
            return _gateway(scheme, base.authority, base.path, query, bool(query), fragment)
        return _gateway(scheme, base.authority, _join_path(base, path), query, bool(query),
                        fragment)

    def _authority(self, scheme: str, netloc: str) -> str | None:
        key = (scheme, netloc)
        if key not in self._authorities:
            if len(self._authorities) >= _AUTHORITY_CACHE:
                self._authorities.clear()
            self._authorities[key] = _authority(scheme, netloc)
        return self._authorities[key]
