"""Every failure a client can cause or meet, as one exception class with one HTTP status.

Strategy: code anywhere in the request path raises a `FwdproxyError` subclass; the one
handler in `connection.py` turns it into a response page (while h11 still allows a
response) and an access-log line. Foreign exceptions (OSError, trio, h11) are translated
at the I/O edge with ``raise ... from exc``, so nothing else reaches that handler.
This module is pure: no trio, socket or h11 imports.
"""

from __future__ import annotations


class FwdproxyError(Exception):
    """Base class: a failure with the HTTP status and the short title to answer with.

    Args:
        detail: one sentence for the client page and the log, naming what went wrong.
        host: the destination concerned, when there is one (shown on the page).
    """

    status: int = 500
    title: str = "Internal proxy error"
    verdict: str = "error"

    def __init__(self, detail: str, *, host: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.host = host


class BadRequest(FwdproxyError):
    """The request is malformed or ambiguous; it is never forwarded."""

    status = 400
    title = "Bad request"
    verdict = "bad-request"


class Forbidden(FwdproxyError):
    """Policy refused the client or the destination.

    Args:
        source: the rule or setting that decided, e.g. ``config:connect_ports``.
    """

    status = 403
    title = "Access denied"
    verdict = "deny"

    def __init__(self, detail: str, *, source: str, host: str | None = None,
                 category: str | None = None, rule: str | None = None,
                 url: str | None = None, policy: str | None = None) -> None:
        super().__init__(detail, host=host)
        self.source = source
        self.category = category
        self.rule = rule
        self.url = url
        self.policy = policy


class BlockedRedirect(Forbidden):
    """A denial answered with a redirect to the policy's ``redirect`` page (302), as
    squidGuard and e2guardian send blocked users to a page of the office's own.

    Args:
        location: the page, its fields already filled in.
    """

    status = 302
    title = "Blocked: see the filter's page"

    def __init__(self, detail: str, *, location: str, source: str, host: str | None = None,
                 category: str | None = None, rule: str | None = None,
                 url: str | None = None, policy: str | None = None) -> None:
        super().__init__(detail, source=source, host=host, category=category, rule=rule,
                         url=url, policy=policy)
        self.location = location


class AuthRequired(FwdproxyError):
    """Proxy authentication is required and was missing or wrong (RFC 9110 §15.5.8).

    Args:
        realm: the realm to name in Proxy-Authenticate.
    """

    status = 407
    title = "Proxy authentication required"
    verdict = "auth"

    def __init__(self, detail: str, *, realm: str, host: str | None = None) -> None:
        super().__init__(detail, host=host)
        self.realm = realm


class LoginRequired(AuthRequired):
    """The web gateway needs the user's password (RFC 9110 §15.5.2): the browser, which
    has no proxy set, asks with WWW-Authenticate, not Proxy-Authenticate."""

    status = 401
    title = "Login required"


class NotFound(FwdproxyError):
    """A page of the proxy's own that does not exist."""

    status = 404
    title = "Not found"
    verdict = "own-page"


class MethodNotAllowed(FwdproxyError):
    """A method the proxy's own pages do not serve."""

    status = 405
    title = "Method not allowed"
    verdict = "own-page"
    allow = "GET, HEAD"  # the Allow header RFC 9110 §15.5.6 requires with a 405


class RequestTimeout(FwdproxyError):
    """The client was too slow to send its request head."""

    status = 408
    title = "Request timeout"
    verdict = "timeout"


class BodyTooLarge(FwdproxyError):
    """The request body is larger than ``limits.max_request_body``."""

    status = 413
    title = "Content too large"
    verdict = "bad-request"


class HeadTooLarge(FwdproxyError):
    """The request head is larger than ``limits.max_head_bytes``."""

    status = 431
    title = "Request header fields too large"
    verdict = "bad-request"


class BadGateway(FwdproxyError):
    """The destination could not be resolved or reached, or broke the protocol."""

    status = 502
    title = "Bad gateway"
    verdict = "upstream-error"


class ServiceUnavailable(FwdproxyError):
    """The proxy is at its connection cap or shutting down."""

    status = 503
    title = "Service unavailable"
    verdict = "overload"


class GatewayTimeout(FwdproxyError):
    """The destination did not answer in time."""

    status = 504
    title = "Gateway timeout"
    verdict = "upstream-timeout"


class LoopDetected(FwdproxyError):
    """The request already passed through this proxy (our own Via entry is on it)."""

    status = 508
    title = "Loop detected"
    verdict = "loop"


class ConnectionLost(Exception):
    """A peer vanished (reset, EOF mid-message). Not answered: there is nobody to answer."""


class ConfigError(Exception):
    """A configuration problem found at startup; the message names the file, key or line."""
