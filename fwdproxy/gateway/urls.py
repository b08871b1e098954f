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
from urllib.parse import urljoin, urlsplit

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
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = parts.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = f"?{parts.query}" if parts.query or url.split("#", 1)[0].endswith("?") else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{PREFIX}/{scheme}/{authority}{path}{query}{fragment}"


def _as_browser_reads(ref: str) -> str:
    ref = _INSIDE.sub("", ref.strip(_EDGES))
    match = _SCHEME.match(ref)
    if match is None or match.group(1).lower() in SCHEMES:
        ref = ref.replace("\\", "/")  # special schemes: a backslash is a slash
    return ref


class LinkRewriter:
    """Rewrites the links of one page (or style sheet) against its base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def set_base(self, href: str) -> None:
        """A ``<base href>``: later links resolve against it (when it is an http or https
        URL that can be read; otherwise the base stays, as in browsers)."""
        try:
            resolved = urljoin(self.base_url, _as_browser_reads(href))
        except ValueError:  # "http://[": no valid URL
            return
        if urlsplit(resolved).scheme.lower() in SCHEMES:
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
        if not _fetches(_as_browser_reads(ref)):
            return ref
        resolved = self.absolute(ref)
        mapped = gateway_path(resolved) if resolved is not None else None
        return mapped if mapped is not None else PREFIX


def _fetches(cleaned: str) -> bool:
    """Would the browser fetch something over http(s) for this (cleaned) reference?"""
    if not cleaned or cleaned.startswith("#"):
        return False
    match = _SCHEME.match(cleaned)
    return match is None or match.group(1).lower() in SCHEMES
