"""The headers of a gateway exchange: the browser's request as the site gets it, and the
site's response as the browser gets it.

Strategy: towards the site, a short list of end-to-end headers passes (content
negotiation, conditional and range requests, the body's framing); Referer and Origin
are turned back from gateway URLs into the site URLs they stand for; the browser's
credentials for the proxy (Authorization, Proxy-Authorization, unmarked cookies) never
pass. Towards the browser, every header that names a URL (Location, Content-Location,
Refresh, Link) is rewritten into the gateway, cookies are scoped (`cookies`), and the
headers that would act on the proxy's origin as a whole, not on one site, are dropped:
a site's CSP (it names the site's origins, which the rewritten links no longer match),
HSTS and Alt-Svc (they would bind the proxy's host), Clear-Site-Data (it would wipe
every site's cookies), Service-Worker-Allowed (a worker's scope past its site's path),
and the like.
"""

from __future__ import annotations

import re

from fwdproxy.gateway.cookies import cookies_for_site, set_cookie_for_browser
from fwdproxy.gateway.urls import GatewayTarget, LinkRewriter, parse_gateway_path

__all__ = ["SANDBOX", "body_kind", "refresh_value", "request_headers", "response_headers"]

Headers = list[tuple[bytes, bytes]]

# From the browser to the site, as they are (RFC 9110 end-to-end headers a page needs).
_PASSED = {b"accept", b"accept-language", b"user-agent", b"content-type", b"content-length",
           b"transfer-encoding", b"cache-control", b"pragma", b"if-modified-since",
           b"if-none-match", b"if-match", b"if-unmodified-since", b"if-range", b"range",
           b"dnt"}
# From the site to the browser: dropped, since they act on the proxy's whole origin, or
# are framing that is redone here.
_DROPPED = {b"content-security-policy", b"content-security-policy-report-only",
            b"strict-transport-security", b"public-key-pins", b"alt-svc", b"clear-site-data",
            b"report-to", b"reporting-endpoints", b"nel", b"www-authenticate", b"set-cookie2",
            b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
            b"trailer", b"upgrade", b"proxy-authenticate",
            b"service-worker-allowed"}  # it would widen a service worker to every site
# Dropped when the body is rewritten: they describe the site's bytes, not the gateway's.
_OF_THE_BYTES = {b"content-length", b"content-encoding", b"etag", b"content-md5", b"digest",
                 b"content-digest", b"repr-digest"}
# A proxied document is sandboxed (when `gateway.sandbox` is on): its scripts run in an
# opaque origin, so they can neither read the proxy's other pages nor script another
# site's pages, which all share the proxy's origin.
SANDBOX = (b"sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox "
           b"allow-downloads allow-top-navigation-by-user-activation allow-modals")
# What follows a Refresh delay's ";" or ",": an optional "url=", an optional quote, the URL.
_REFRESH_URL = re.compile(r"^(\s*)(url\s*=\s*)?(['\"]?)(.*?)\3\s*$", re.IGNORECASE | re.DOTALL)
_LINK_TARGET = re.compile(r"<([^>]*)>")


def body_kind(content_type: str | None) -> str | None:
    """"html" or "css" for a body the gateway rewrites; None for one it relays as is."""
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("text/html", "application/xhtml+xml"):
        return "html"
    if media == "text/css":
        return "css"
    return None


def _site_url(gateway_url: str) -> GatewayTarget | None:
    """The site page a gateway URL (absolute or root-relative, as the browser sent it in
    Referer) stands for."""
    path = gateway_url
    if "://" in path:
        rest = path.split("://", 1)[1]
        path = rest[rest.find("/"):] if "/" in rest else "/"
    try:
        return parse_gateway_path(path.split("#", 1)[0])
    except ValueError:
        return None


def request_headers(received: Headers, target: GatewayTarget, via: str) -> Headers:
    """The headers the site gets for a browser's gateway request (Host, Via and
    Accept-Encoding: identity added)."""
    out: Headers = [(b"host", target.authority.encode("latin-1"))]
    cookies: list[str] = []
    referring: GatewayTarget | None = None
    has_origin = False
    for name, value in received:
        if name in _PASSED:
            out.append((name, value))
        elif name == b"origin":
            has_origin = True  # the proxy's origin (or "null"): turned back from Referer
        elif name == b"cookie":
            cookies.append(value.decode("latin-1"))
        elif name == b"referer":
            referring = _site_url(value.decode("latin-1"))
            if referring is not None:
                out.append((b"referer", referring.url().encode("latin-1")))
    site_cookies = cookies_for_site(cookies)
    if site_cookies is not None:
        out.append((b"cookie", site_cookies.encode("latin-1")))
    if referring is not None and has_origin:
        # A browser sends Origin on a form's POST and on CORS requests: the site gets
        # the origin of the page that sent it, as a browser would have written it.
        out.append((b"origin", f"{referring.scheme}://{referring.authority}".encode("latin-1")))
    out.append((b"accept-encoding", b"identity"))  # the gateway rewrites what it reads
    out.append((b"via", f"1.1 {via}".encode("latin-1")))
    return out


def refresh_value(value: str, links: LinkRewriter) -> str:
    """A Refresh header's (or meta refresh's) value with its URL in the gateway."""
    cut = min((i for i in (value.find(";"), value.find(",")) if i >= 0), default=-1)
    if cut < 0:
        return value  # a delay alone: the page reloads itself
    match = _REFRESH_URL.match(value[cut + 1:])
    if match is None or not match.group(4):
        return value
    space, url_key, quote, url = match.groups()
    return f"{value[:cut + 1]}{space}{url_key or 'url='}{quote}{links.url(url)}{quote}"


def response_headers(received: Headers, target: GatewayTarget, *, rewritten: bool,
                     sandbox: bool) -> Headers:
    """The headers the browser gets for a site's response.

    Args:
        received: the site's response headers.
        target: the page that was fetched.
        rewritten: the body is rewritten (so Content-Encoding and any validator of the
            site's bytes no longer hold).
        sandbox: add the CSP sandbox to a rewritten document.
    """
    links = LinkRewriter(target.url())
    out: Headers = []
    for name, value in received:
        if name in _DROPPED or (rewritten and name in _OF_THE_BYTES):
            continue
        text = value.decode("latin-1")
        if name in (b"location", b"content-location"):
            text = links.url(text)
        elif name == b"refresh":
            text = refresh_value(text, links)
        elif name == b"link":
            text = _LINK_TARGET.sub(lambda m: f"<{links.url(m.group(1))}>", text)
        elif name == b"set-cookie":
            scoped = set_cookie_for_browser(text, target.site_prefix(), target.path)
            if scoped is None:
                continue
            text = scoped
        out.append((name, text.encode("latin-1")))
    out.append((b"x-content-type-options", b"nosniff"))
    if sandbox and rewritten:
        out.append((b"content-security-policy", SANDBOX))
    return out
