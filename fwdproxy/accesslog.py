"""The access log's lines: one `Exchange` record per request or tunnel, and the formats that
render it (pure).

Formats, by the name the configuration gives (see `FORMATS`), one line per exchange:

- ``fwdproxy`` (`format_line`): ``TIME CLIENT METHOD URL STATUS up=BYTES down=BYTES
  DURATIONms VERDICT SOURCE "DETAIL"``, and ``sni=NAME`` after it for a tunnel whose
  ClientHello was read, ``mode=gateway`` for a request of the web gateway (its URL is
  the page the gateway fetched); the verdict and the deciding rule are its point.
- ``squid`` (`format_squid`): Squid's native access.log, the one its ``logformat squid``
  defines as ``%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt``, which log
  analysers (calamaris, sarg, GoAccess's SQUID format) read. A tunnel whose ClientHello
  was read is logged by its server name, as Squid logs a peeked tunnel.
- ``combined`` (`format_combined`): Apache/NCSA combined, as ``%h %l %u %t "%r" %>s %b
  "%{Referer}i" "%{User-Agent}i"`` writes it.
- ``json`` (`format_json`): one JSON object per line, with every field of the record.

In the combined format a tunnel's server name follows as one more quoted field,
``"sni=NAME"``, as sites add fields after combined's own (GoAccess's COMBINED reads past
it); its request line stays the CONNECT line as the client sent it. A gateway request
ends with ``"mode=gateway"`` the same way. (Squid's line has no field to spare.)

Every format keeps one record on one line: control characters, spaces and quotes in values
the client chose are escaped the way that format's readers expect. The squid line is stamped
with the end of the exchange, as Squid stamps it; the others with its start.
The writer that gets the lines out is `logwriter`.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Exchange:
    """What happened to one request or tunnel, filled in by `connection.py` as it goes.

    The first group is filled today. The optional group feeds the squid, combined and json
    formats; each defaults to "unknown", which every format renders as ``-`` (null in json).

    Attributes:
        client: the client's IP address.
        started: wall-clock `time.time()` when the request began.
        method: the request method; ``-`` when no request was read.
        url: the request target as a URL; ``host:port`` for CONNECT; ``-`` when none.
        status: the status sent to the client; 0 when nothing was answered.
        bytes_up: bytes received from the client, headers included.
        bytes_down: bytes sent to the client, headers included.
        verdict: ``allow``, ``deny``, ``own-page`` or an error's verdict.
        source: the deciding rule or setting, e.g. ``deny/ads.txt:12``.
        detail: one sentence on what happened.
        user: the authenticated proxy user, when proxy authentication named one.
        upstream_address: the origin IP the request was forwarded or tunnelled to, set as
            soon as the upstream connection is open (or taken from the pool); None when no
            upstream was contacted.
        content_type: the Content-Type of the response sent to the client (the origin's for
            forwarded responses, ours for the proxy's own pages).
        referer: the request's Referer header.
        user_agent: the request's User-Agent header.
        http_version: the request's HTTP version, e.g. ``1.1`` or ``1.0``.
        category: the category of the rule that decided (e.g. ``ads``), when one did.
        answered_by_proxy: True when the proxy itself sent the response head (an error
            page, a denial, a 407, its own info page) rather than relaying an origin's.
        sni: the server name of a tunnel's TLS ClientHello, when it was read (connect_sni).
        gateway: a request of the web gateway (``/browse/``); `url` is the page it fetched.
    """

    client: str
    started: float  # wall-clock time.time()
    method: str = "-"
    url: str = "-"
    status: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    verdict: str = "-"
    source: str = "-"
    detail: str = ""
    user: str | None = None
    upstream_address: str | None = None
    content_type: str | None = None
    referer: str | None = None
    user_agent: str | None = None
    http_version: str = "1.1"
    category: str | None = None
    answered_by_proxy: bool = False
    sni: str | None = None
    gateway: bool = False


# -- escaping --------------------------------------------------------------------------


def _char_bytes(char: str) -> bytes:
    # Request text is decoded as latin-1, so a character below 256 stands for that byte.
    return char.encode("latin-1") if ord(char) < 256 else char.encode("utf-8")


# Text that needs no escaping at all (the usual case): printable ASCII without a space,
# and without the characters _token escapes.
_PLAIN_URL = re.compile(r"[!-~]*")
_PLAIN_TOKEN = re.compile(r'[!#-$&-~]*')
_PLAIN_QUOTED = re.compile(r'[ !#-\[\]-~]*')


def _percent(text: str, also: str = "") -> str:
    """`text` with spaces, controls, non-ASCII and the characters in `also` %-encoded."""
    if (_PLAIN_TOKEN if also else _PLAIN_URL).fullmatch(text) and not (
            also and any(c in text for c in also)):
        return text
    return "".join(
        c if 32 < ord(c) < 127 and c not in also else "".join(f"%{b:02X}" for b in _char_bytes(c))
        for c in text
    )


def _url(url: str) -> str:
    """A URL as one space-free token; a ``%`` already in it stays (it is an escape)."""
    return _percent(url)


def _token(value: str | None) -> str:
    """A value as one space- and quote-free token that decodes back unambiguously (like
    Squid's %-encoded user names); ``-`` when absent."""
    return _percent(value, also='%"') if value else "-"


def _quoted(text: str) -> str:
    r"""Apache's log escaping inside "...": ``\"``, ``\\``, and ``\xhh`` for other bytes
    outside printable ASCII, so a value can neither end its field nor the line."""
    if _PLAIN_QUOTED.fullmatch(text):
        return text
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= ord(c) < 127:
            out.append(c)
        else:
            out.append("".join(f"\\x{b:02x}" for b in _char_bytes(c)))
    return "".join(out)


def _utc_stamp(moment: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2024-03-01T12:34:56.250Z``."""
    return f"{_utc_second(int(moment))}.{int((moment % 1) * 1000):03d}Z"


@functools.lru_cache(maxsize=64)
def _utc_second(second: int) -> str:
    # Formatting the date and time was a third of a log line's cost; most lines share
    # their second with the one before.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _duration_ms(exchange: Exchange, now: float) -> int:
    return max(0, round((now - exchange.started) * 1000))


# -- the formats -----------------------------------------------------------------------


def format_line(exchange: Exchange, now: float) -> str:
    """The ``fwdproxy`` line for `exchange` (without the newline)."""
    detail = exchange.detail
    if not _PLAIN_QUOTED.fullmatch(detail):
        detail = detail.replace("\\", "\\\\").replace('"', '\\"')
        detail = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in detail)
    return (
        f"{_utc_stamp(exchange.started)} {exchange.client} {exchange.method} {_url(exchange.url)} "
        f"{exchange.status or '-'} up={exchange.bytes_up} down={exchange.bytes_down} "
        f"{_duration_ms(exchange, now)}ms {exchange.verdict} {exchange.source} \"{detail}\""
        + (f" sni={_token(exchange.sni)}" if exchange.sni is not None else "")
        + (" mode=gateway" if exchange.gateway else "")
    )


def squid_action(exchange: Exchange) -> str:
    """Squid's result code (``%Ss``) for what happened to `exchange`.

    TCP_MISS: relayed from the origin (and the proxy's own pages: fetched, not cached).
    TCP_TUNNEL: a CONNECT tunnel was opened. TCP_DENIED: refused by policy (403) or for
    authentication (407). TAG_NONE: another error the proxy answered itself. NONE_NONE:
    nothing was answered (status 000).
    """
    if exchange.status == 0:
        return "NONE_NONE"
    if exchange.verdict == "deny" and exchange.method == "CONNECT":
        return "TCP_DENIED"  # refused by its ClientHello, after the 200 (or before it)
    if exchange.answered_by_proxy:
        if exchange.status in (403, 407):
            return "TCP_DENIED"
        if exchange.status >= 400:
            return "TAG_NONE"
        return "TCP_MISS"
    if exchange.method == "CONNECT":
        return "TCP_TUNNEL"
    return "TCP_MISS"


def format_squid(exchange: Exchange, now: float) -> str:
    """The Squid native line: ``time.ms elapsed client action/code size method URL user
    hierarchy/peer type``, the time being the end of the exchange, as Squid logs it."""
    # Squid prints the time and the elapsed milliseconds truncated, not rounded; going
    # through whole microseconds first keeps 0.123 from printing as .122.
    seconds, micros = divmod(round(now * 1_000_000), 1_000_000)
    elapsed = max(0, round((now - exchange.started) * 1_000_000) // 1000)
    upstream = exchange.upstream_address
    hierarchy = f"HIER_DIRECT/{upstream}" if upstream else "HIER_NONE/-"
    # %mt is the media type alone: Squid drops the parameters (``; charset=...``).
    media_type = (exchange.content_type or "").split(";", 1)[0].strip()
    url = exchange.url
    if exchange.sni is not None and exchange.method == "CONNECT":
        # As Squid logs a peeked tunnel: by its ClientHello's name (the address it went to
        # is in the hierarchy field).
        url = f"{exchange.sni}:{url.rpartition(':')[2]}"
    return (
        f"{seconds:9d}.{micros // 1000:03d} {elapsed:6d} {_token(exchange.client)} "
        f"{squid_action(exchange)}/{exchange.status:03d} {exchange.bytes_down} "
        f"{_token(exchange.method)} {_url(url)} {_token(exchange.user)} "
        f"{hierarchy} {_token(media_type)}"
    )


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _clf_time(moment: float) -> str:
    """``25/Nov/2026:11:18:33 +0000``, in UTC; the month in English whatever the locale."""
    t = time.gmtime(moment)
    return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def format_combined(exchange: Exchange, now: float) -> str:
    """The Apache/NCSA combined line: ``client - user [time] "request" status bytes
    "referer" "user-agent"``, the time being the start of the exchange, as Apache logs it.

    Absent values are ``-``, as Apache and Squid's own ``combined`` write them: the request
    line when none was read, the status when nothing was answered, and the size when no
    byte was sent (CLF's ``%b``). A tunnel whose ClientHello was read ends with
    ``"sni=NAME"``.
    """
    del now  # the combined format has no duration field
    request = "-"
    if exchange.method != "-":
        request = f"{exchange.method} {_url(exchange.url)} HTTP/{exchange.http_version}"
    return (
        f"{_token(exchange.client)} - {_token(exchange.user)} [{_clf_time(exchange.started)}] "
        f"\"{_quoted(request)}\" {exchange.status or '-'} {exchange.bytes_down or '-'} "
        f"\"{_quoted(exchange.referer or '-')}\" \"{_quoted(exchange.user_agent or '-')}\""
        + (f" \"sni={_quoted(exchange.sni)}\"" if exchange.sni is not None else "")
        + (' "mode=gateway"' if exchange.gateway else "")
    )


def format_json(exchange: Exchange, now: float) -> str:
    """One JSON object; absent values are null, never ``-``, and the output is pure ASCII."""

    def given(value: str) -> str | None:
        return None if value == "-" else value

    record = {
        "time": _utc_stamp(exchange.started),
        "client": given(exchange.client),
        "user": exchange.user,
        "method": given(exchange.method),
        "url": given(exchange.url),
        "status": exchange.status or None,
        "bytes_up": exchange.bytes_up,
        "bytes_down": exchange.bytes_down,
        "duration_ms": _duration_ms(exchange, now),
        "verdict": given(exchange.verdict),
        "source": given(exchange.source),
        "category": exchange.category,
        "detail": exchange.detail,
        "upstream": exchange.upstream_address,
        "content_type": exchange.content_type,
        "referer": exchange.referer,
        "user_agent": exchange.user_agent,
        "sni": exchange.sni,
        "gateway": exchange.gateway,
    }
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


Formatter = Callable[[Exchange, float], str]

FORMATS: dict[str, Formatter] = {
    "fwdproxy": format_line,
    "squid": format_squid,
    "combined": format_combined,
    "json": format_json,
}


def formatter(fmt: str) -> Formatter:
    """The function that renders format `fmt`.

    Raises:
        ValueError: `fmt` is not one of `FORMATS`.
    """
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown access-log format {fmt!r}; use one of: {', '.join(FORMATS)}") from None


def format_record(exchange: Exchange, now: float, fmt: str) -> str:
    """The line (without the newline) for `exchange` in format `fmt`, at time `now`.

    Raises:
        ValueError: `fmt` is not one of `FORMATS`.
    """
    return formatter(fmt)(exchange, now)
