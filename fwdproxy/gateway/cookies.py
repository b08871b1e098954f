"""Cookies through the gateway: each site's cookies live under its own gateway path.

Strategy: every page of every site is served from the proxy's one origin, so the
browser's cookie jar would mix all sites' cookies (and send each site the others'). A
cookie a site sets is therefore rewritten to a path inside that site's gateway prefix
(``/browse/https/example.org/`` + the cookie's own path), its Domain dropped (it becomes a
host-only cookie of the proxy), and its name given the `NAME_PREFIX` mark. RFC 6265's
path matching then gives a request for one site only the cookies of that site; a site's
prefix ends in ``/``, so ``example.org`` never gets ``example.org.evil``'s cookies.
On the way to a site, only marked cookies go (unmarked): whatever else the browser holds
for the proxy's origin (the proxy's own cookies, another application's on the same host
and port, cookies a page's script set, which the gateway cannot scope) never leaves.
``Secure`` is dropped, since the gateway itself is plain http; the cookie still travels
to the site over https when the site is https. So are ``SameSite=None`` and
``Partitioned``, which browsers accept only on a Secure cookie (they would reject the
cookie whole): such a cookie gets the browser's default, ``Lax``.
"""

from __future__ import annotations

__all__ = ["NAME_PREFIX", "cookies_for_site", "set_cookie_for_browser"]

NAME_PREFIX = "fwdgw_"
# Attributes kept as they are; Path is rewritten, Domain, Secure and Partitioned are
# dropped, SameSite is kept unless it is None (both need Secure).
_KEPT = {"expires", "max-age", "httponly", "samesite"}


def _default_path(request_path: str) -> str:
    """RFC 6265 §5.1.4: the directory of the request path."""
    path = request_path.split("?", 1)[0]
    if not path.startswith("/") or path.count("/") <= 1:
        return "/"
    return path[: path.rindex("/")]


def set_cookie_for_browser(value: str, site_prefix: str, request_path: str) -> str | None:
    """A site's ``Set-Cookie`` value as the browser gets it from the gateway; None when
    it is not a cookie (no name=value pair).

    Args:
        value: the Set-Cookie header value as the site sent it.
        site_prefix: the site's gateway prefix, e.g. ``/browse/https/example.org/``.
        request_path: the path (and query) of the site's URL that set it.
    """
    pair, *attributes = value.split(";")
    name, eq, cookie_value = pair.partition("=")
    name = name.strip()
    if not eq or not name:
        return None
    path = _default_path(request_path)
    kept: list[str] = []
    for attribute in attributes:
        key, _, attribute_value = attribute.strip().partition("=")
        key_lower = key.strip().lower()
        if key_lower == "path":
            candidate = attribute_value.strip()
            path = candidate if candidate.startswith("/") else _default_path(request_path)
        elif key_lower == "samesite" and attribute_value.strip().lower() == "none":
            continue
        elif key_lower in _KEPT:
            kept.append(attribute.strip())
    scoped = site_prefix.rstrip("/") + path
    return "; ".join([f"{NAME_PREFIX}{name}={cookie_value.strip()}", f"Path={scoped}", *kept])


def cookies_for_site(header_values: list[str]) -> str | None:
    """The ``Cookie`` header a site gets, from the browser's Cookie header values: the
    marked cookies, unmarked; None when there are none."""
    pairs: list[str] = []
    for header in header_values:
        for pair in header.split(";"):
            name, eq, value = pair.strip().partition("=")
            if eq and name.startswith(NAME_PREFIX) and len(name) > len(NAME_PREFIX):
                pairs.append(f"{name[len(NAME_PREFIX):]}={value}")
    return "; ".join(pairs) if pairs else None
