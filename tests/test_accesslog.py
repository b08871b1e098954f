"""accesslog.py: the four line formats and their escaping.

Formats are tables: a record, the expected line. The writer is driven against real files,
pipes, FIFOs and /dev/full; a stalled or closed reader must never block or raise, and
anything that might block runs in a thread with a deadline, so a regression fails the test
instead of hanging it.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fwdproxy.accesslog import (
    FORMATS,
    Exchange,
    format_combined,
    format_json,
    format_line,
    format_record,
    format_squid,
    squid_action,
)
from fwdproxy.logwriter import AccessLog

# 2024-03-01T12:34:56Z; .25 and .5 are exact in binary, so the milliseconds are exact too
T0 = float(calendar.timegm((2024, 3, 1, 12, 34, 56)))


def exchange(**fields: object) -> Exchange:
    base: dict[str, object] = {"client": "127.0.0.1", "started": T0 + 0.25}
    base.update(fields)
    return Exchange(**base)  # type: ignore[arg-type]


# -- fwdproxy format (format_line) -------------------------------------------------------
#
# ``TIME CLIENT METHOD URL STATUS up=BYTES down=BYTES DURATIONms VERDICT SOURCE "DETAIL"``


def test_all_fields() -> None:
    record = exchange(method="GET", url="http://example.com/a?b=1", status=200, bytes_up=12,
                      bytes_down=3456, verdict="allow", source="default", detail="ok")
    assert format_line(record, T0 + 0.25 + 1.5) == (
        '2024-03-01T12:34:56.250Z 127.0.0.1 GET http://example.com/a?b=1 200 '
        'up=12 down=3456 1500ms allow default "ok"'
    )


def test_defaults_for_an_exchange_that_never_got_a_request() -> None:
    line = format_line(Exchange(client="::1", started=T0), T0)
    assert line == '2024-03-01T12:34:56.000Z ::1 - - - up=0 down=0 0ms - - ""'


def test_new_fields_do_not_change_the_fwdproxy_line() -> None:
    plain = exchange(method="GET", url="http://a.example/", status=200)
    rich = exchange(method="GET", url="http://a.example/", status=200, user="alice",
                    upstream_address="192.0.2.7", content_type="text/html", referer="http://r/",
                    user_agent="curl/8", http_version="1.0", category="ads", answered_by_proxy=True)
    assert format_line(rich, T0 + 1) == format_line(plain, T0 + 1)


@pytest.mark.parametrize(
    ("elapsed", "text"),
    [(0.0, "0ms"), (0.0004, "0ms"), (0.0006, "1ms"), (2.0, "2000ms"), (-5.0, "0ms")],
)
def test_duration(elapsed: float, text: str) -> None:
    fields = format_line(exchange(), T0 + 0.25 + elapsed).split(" ")
    assert fields[7] == text


def test_deny_line_names_the_source() -> None:
    record = exchange(method="CONNECT", url="example.com:22", status=403, verdict="deny",
                      source="config:connect_ports", detail="CONNECT to port 22 is not allowed")
    fields = format_line(record, T0 + 0.25).split(" ", 10)
    assert fields[2:5] == ["CONNECT", "example.com:22", "403"]
    assert fields[8:10] == ["deny", "config:connect_ports"]
    assert fields[10] == '"CONNECT to port 22 is not allowed"'


@pytest.mark.parametrize(
    ("detail", "logged"),
    [
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ('\\"', r'"\\\""'),  # an escaped quote cannot close the field early
        ("line one\nline two", r'"line one\x0aline two"'),
        ("cr\rlf", r'"cr\x0dlf"'),
        ("tab\there", r'"tab\x09here"'),
        ("nul\x00", r'"nul\x00"'),
        ("esc\x1b[31mred", r'"esc\x1b[31mred"'),
        ("del\x7f", r'"del\x7f"'),
        ("caf\u00e9", '"caf\u00e9"'),  # printable non-ASCII is kept
        ("", '""'),
    ],
)
def test_detail_escaping(detail: str, logged: str) -> None:
    line = format_line(exchange(detail=detail), T0 + 0.25)
    assert line.endswith(" " + logged)
    assert "\n" not in line and "\r" not in line


URL_ESCAPES = [
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/\x00\x1f", "http://example.com/%00%1F"),
    ("http://example.com/\x7f", "http://example.com/%7F"),
    ("http://example.com/caf\u00c3\u00a9", "http://example.com/caf%C3%A9"),  # latin-1 bytes
    ("http://example.com/\ufffd", "http://example.com/%EF%BF%BD"),  # beyond latin-1: UTF-8
    ("http://example.com/\r\nforged line", "http://example.com/%0D%0Aforged%20line"),
    ("http://example.com/%2F?q=\"x\"", "http://example.com/%2F?q=\"x\""),  # printable kept
]


@pytest.mark.parametrize(("url", "logged"), URL_ESCAPES)
def test_url_escaping(url: str, logged: str) -> None:
    line = format_line(exchange(method="GET", url=url), T0 + 0.25)
    assert line.split(" ")[3] == logged
    assert len(line.split(" ")) == 11  # the URL never adds a field


# -- squid format ------------------------------------------------------------------------
#
# ``time.ms elapsed client action/code size method URL user hierarchy/peer type``, as
# Squid's ``logformat squid %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt``.

NOW = 1764069513.123  # the end of the exchange: Squid logs when it finishes


def squid(**fields: object) -> str:
    base: dict[str, object] = {"client": "127.0.0.1", "started": NOW - 0.012}
    base.update(fields)
    return format_squid(Exchange(**base), NOW)  # type: ignore[arg-type]


def test_squid_example_line() -> None:
    assert squid(method="GET", url="http://example.com/", status=200, bytes_down=1234,
                 upstream_address="93.184.216.34", content_type="text/html") == (
        "1764069513.123     12 127.0.0.1 TCP_MISS/200 1234 GET http://example.com/ - "
        "HIER_DIRECT/93.184.216.34 text/html"
    )


FORWARDED = {"method": "GET", "url": "http://www.example.com/", "upstream_address": "192.0.2.10"}
PROXY_PAGE = {"content_type": "text/html; charset=utf-8", "answered_by_proxy": True}


@pytest.mark.parametrize(
    ("fields", "action", "rest"),
    [
        pytest.param({**FORWARDED, "status": 200, "bytes_down": 5120, "content_type": "text/html"},
                     "TCP_MISS/200", "5120 GET http://www.example.com/ - HIER_DIRECT/192.0.2.10 text/html",
                     id="forwarded"),
        pytest.param({**FORWARDED, "status": 404, "bytes_down": 300,
                      "content_type": "text/plain; charset=us-ascii"},
                     "TCP_MISS/404", "300 GET http://www.example.com/ - HIER_DIRECT/192.0.2.10 text/plain",
                     id="origin-error-is-still-a-miss"),
        pytest.param({**FORWARDED, "method": "POST", "status": 201, "bytes_down": 90},
                     "TCP_MISS/201", "90 POST http://www.example.com/ - HIER_DIRECT/192.0.2.10 -",
                     id="no-content-type"),
        pytest.param({**PROXY_PAGE, "method": "GET", "url": "http://ads.example/b.js", "status": 403,
                      "bytes_down": 2048, "verdict": "deny"},
                     "TCP_DENIED/403", "2048 GET http://ads.example/b.js - HIER_NONE/- text/html",
                     id="denied"),
        pytest.param({**PROXY_PAGE, "method": "CONNECT", "url": "example.com:22", "status": 403,
                      "bytes_down": 700},
                     "TCP_DENIED/403", "700 CONNECT example.com:22 - HIER_NONE/- text/html",
                     id="denied-connect"),
        pytest.param({**PROXY_PAGE, "method": "GET", "url": "http://x.example/", "status": 407,
                      "bytes_down": 400},
                     "TCP_DENIED/407", "400 GET http://x.example/ - HIER_NONE/- text/html",
                     id="auth-required"),
        pytest.param({"method": "CONNECT", "url": "www.example.org:443", "status": 200,
                      "bytes_down": 98765, "upstream_address": "192.0.2.20", "user": "alice"},
                     "TCP_TUNNEL/200", "98765 CONNECT www.example.org:443 alice HIER_DIRECT/192.0.2.20 -",
                     id="tunnel"),
        pytest.param({"method": "CONNECT", "url": "[2001:db8::1]:443", "status": 200,
                      "bytes_down": 39, "upstream_address": "2001:db8::1"},
                     "TCP_TUNNEL/200", "39 CONNECT [2001:db8::1]:443 - HIER_DIRECT/2001:db8::1 -",
                     id="tunnel-ipv6"),
        pytest.param({"method": "CONNECT", "url": "192.0.2.20:443", "status": 200,
                      "bytes_down": 4096, "upstream_address": "192.0.2.20", "sni": "www.example.org"},
                     "TCP_TUNNEL/200", "4096 CONNECT www.example.org:443 - HIER_DIRECT/192.0.2.20 -",
                     id="tunnel-by-its-server-name"),
        pytest.param({"method": "CONNECT", "url": "192.0.2.20:443", "status": 200, "bytes_down": 46,
                      "upstream_address": "192.0.2.20", "sni": "denied.example", "verdict": "deny"},
                     "TCP_DENIED/200", "46 CONNECT denied.example:443 - HIER_DIRECT/192.0.2.20 -",
                     id="tunnel-refused-by-its-client-hello"),
        pytest.param({**PROXY_PAGE, "method": "GET", "url": "/x", "status": 400, "bytes_down": 310},
                     "TAG_NONE/400", "310 GET /x - HIER_NONE/- text/html", id="bad-request"),
        pytest.param({**PROXY_PAGE, "status": 400, "bytes_down": 310},
                     "TAG_NONE/400", "310 - - - HIER_NONE/- text/html", id="unparsable-request"),
        pytest.param({**PROXY_PAGE, "method": "GET", "url": "http://nx.example/", "status": 502,
                      "bytes_down": 512},
                     "TAG_NONE/502", "512 GET http://nx.example/ - HIER_NONE/- text/html",
                     id="unresolvable"),
        pytest.param({**PROXY_PAGE, **FORWARDED, "status": 504, "bytes_down": 512},
                     "TAG_NONE/504", "512 GET http://www.example.com/ - HIER_DIRECT/192.0.2.10 text/html",
                     id="upstream-timeout-after-connecting"),
        pytest.param({**PROXY_PAGE, "status": 503, "bytes_down": 200},
                     "TAG_NONE/503", "200 - - - HIER_NONE/- text/html", id="overload"),
        pytest.param({**PROXY_PAGE, "method": "GET", "url": "http://127.0.0.1:3128/", "status": 200,
                      "bytes_down": 900},
                     "TCP_MISS/200", "900 GET http://127.0.0.1:3128/ - HIER_NONE/- text/html",
                     id="own-page"),
        pytest.param({}, "NONE_NONE/000", "0 - - - HIER_NONE/- -", id="nothing-answered"),
        pytest.param({**FORWARDED, "bytes_down": 0}, "NONE_NONE/000",
                     "0 GET http://www.example.com/ - HIER_DIRECT/192.0.2.10 -",
                     id="upstream-died-before-head"),
    ],
)
def test_squid_action_codes(fields: dict[str, object], action: str, rest: str) -> None:
    line = squid(**fields)
    assert line == f"1764069513.123     12 127.0.0.1 {action} {rest}"
    assert squid_action(Exchange(client="-", started=0, **fields)) == action.split("/")[0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "elapsed", "head"),
    [
        (NOW, 0.0, "1764069513.123      0"),
        (NOW, 0.0009, "1764069513.123      0"),  # truncated like Squid, not rounded
        (NOW, 0.0019, "1764069513.123      1"),
        (NOW, 123.456, "1764069513.123 123456"),
        (NOW, 1234.567, "1764069513.123 1234567"),  # wider than 6: never cut
        (NOW, -3.0, "1764069513.123      0"),  # a clock step back
        (1764069513.0, 0.0, "1764069513.000      0"),
        (1764069513.9999, 0.0, "1764069513.999      0"),  # never rounded up into the next second
        (999999999.5, 0.0, "999999999.500      0"),
        (5.007, 0.0, "        5.007      0"),  # %9d: right-aligned seconds
    ],
)
def test_squid_time_and_elapsed(now: float, elapsed: float, head: str) -> None:
    line = format_squid(Exchange(client="127.0.0.1", started=now - elapsed), now)
    assert line.startswith(head + " 127.0.0.1 ")


@pytest.mark.parametrize(("url", "logged"), URL_ESCAPES)
def test_squid_url_is_one_field(url: str, logged: str) -> None:
    line = squid(method="GET", url=url, status=200)
    assert line.split()[6] == logged
    assert len(line.split()) == 10


@pytest.mark.parametrize(
    ("user", "logged"),
    [(None, "-"), ("", "-"), ("alice", "alice"), ("alice smith", "alice%20smith"),
     ("100%", "100%25"), ("dom\\user", "dom\\user"), ("j\u00f6rg", "j%F6rg"), ("a\nb", "a%0Ab")],
)
def test_squid_user(user: str | None, logged: str) -> None:
    assert squid(user=user).split()[7] == logged


@pytest.mark.parametrize(
    ("content_type", "logged"),
    [(None, "-"), ("", "-"), ("text/html", "text/html"), ("text/html; charset=utf-8", "text/html"),
     ("  application/json ;x=y", "application/json"), ("bad type", "bad%20type")],
)
def test_squid_media_type(content_type: str | None, logged: str) -> None:
    line = squid(status=200, content_type=content_type)
    assert line.split()[9] == logged
    assert len(line.split()) == 10


# -- combined format ---------------------------------------------------------------------
#
# ``client - user [time] "METHOD URL HTTP/x.y" status bytes "referer" "user-agent"``

# Apache's own reading of the format (the regex log tools use), with escaped quotes allowed.
COMBINED = re.compile(
    r'^(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


def test_combined_example_line() -> None:
    record = exchange(method="GET", url="http://x/", status=200, bytes_down=1234,
                      referer="http://ref.example/", user_agent="Mozilla/5.0 (X11; Linux)",
                      user="bob", started=float(calendar.timegm((2026, 11, 25, 11, 18, 33))))
    assert format_combined(record, T0) == (
        '127.0.0.1 - bob [25/Nov/2026:11:18:33 +0000] "GET http://x/ HTTP/1.1" 200 1234 '
        '"http://ref.example/" "Mozilla/5.0 (X11; Linux)"'
    )


def test_combined_missing_values_are_dashes() -> None:
    line = format_combined(Exchange(client="::1", started=T0), T0)
    assert line == '::1 - - [01/Mar/2024:12:34:56 +0000] "-" - - "-" "-"'
    assert COMBINED.match(line)


def test_combined_request_line() -> None:
    tunnel = exchange(method="CONNECT", url="example.org:443", status=200, bytes_down=5,
                      http_version="1.0")
    assert '"CONNECT example.org:443 HTTP/1.0" 200 5 ' in format_combined(tunnel, T0)


@pytest.mark.parametrize("month", range(1, 13))
def test_combined_month_names_are_english(month: int) -> None:
    started = float(calendar.timegm((2025, month, 9, 1, 2, 3)))
    name = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][month - 1]
    assert f"[09/{name}/2025:01:02:03 +0000]" in format_combined(exchange(started=started), T0)


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("plain", "plain"),
        ('say "hi"', r"say \"hi\""),
        ("back\\slash", r"back\\slash"),
        ('\\"', r"\\\""),  # an escaped quote cannot close the field early
        ("a\nb\rc\td", r"a\x0ab\x0dc\x09d"),
        ("nul\x00del\x7f", r"nul\x00del\x7f"),
        ("caf\u00e9", r"caf\xe9"),  # header text is latin-1: one byte
        ("\u2028", r"\xe2\x80\xa8"),  # beyond latin-1: its UTF-8 bytes
    ],
)
def test_combined_quoted_field_escaping(value: str, logged: str) -> None:
    line = format_combined(exchange(method="GET", url="http://x/", status=200, bytes_down=1,
                                    referer=value, user_agent=value), T0)
    match = COMBINED.match(line)
    assert match, line
    assert match["referer"] == logged
    assert match["agent"] == logged


@pytest.mark.parametrize(("url", "logged"), URL_ESCAPES)
def test_combined_url_escaping(url: str, logged: str) -> None:
    line = format_combined(exchange(method="GET", url=url, status=200), T0)
    match = COMBINED.match(line)
    assert match, line
    assert match["request"] == "GET " + logged.replace('"', '\\"') + " HTTP/1.1"


def test_combined_user_is_one_field() -> None:
    match = COMBINED.match(format_combined(exchange(user='a "b" c'), T0))
    assert match and match["user"] == "a%20%22b%22%20c"


# -- json format -------------------------------------------------------------------------

JSON_KEYS = ["time", "client", "user", "method", "url", "status", "bytes_up", "bytes_down",
             "duration_ms", "verdict", "source", "category", "detail", "upstream", "content_type",
             "referer", "user_agent", "sni", "gateway"]


def test_json_all_fields() -> None:
    record = exchange(method="GET", url="http://a.example/x", status=403, bytes_up=120,
                      bytes_down=2048, verdict="deny", source="deny/ads.txt:12", category="ads",
                      detail="listed", user="alice", upstream_address=None,
                      content_type="text/html; charset=utf-8", referer="http://r.example/",
                      user_agent="curl/8.5", answered_by_proxy=True)
    line = format_json(record, T0 + 0.25 + 0.0424)
    assert list(json.loads(line)) == JSON_KEYS
    assert json.loads(line) == {
        "time": "2024-03-01T12:34:56.250Z", "client": "127.0.0.1", "user": "alice",
        "method": "GET", "url": "http://a.example/x", "status": 403, "bytes_up": 120,
        "bytes_down": 2048, "duration_ms": 42, "verdict": "deny", "source": "deny/ads.txt:12",
        "category": "ads", "detail": "listed", "upstream": None,
        "content_type": "text/html; charset=utf-8", "referer": "http://r.example/",
        "user_agent": "curl/8.5", "sni": None, "gateway": False,
    }


def test_json_absent_values_are_null() -> None:
    record = json.loads(format_json(Exchange(client="::1", started=T0), T0 - 1))
    assert record == {
        "time": "2024-03-01T12:34:56.000Z", "client": "::1", "user": None, "method": None,
        "url": None, "status": None, "bytes_up": 0, "bytes_down": 0, "duration_ms": 0,
        "verdict": None, "source": None, "category": None, "detail": "", "upstream": None,
        "content_type": None, "referer": None, "user_agent": None, "sni": None,
        "gateway": False,
    }


def test_a_tunnels_server_name_in_the_fwdproxy_and_json_lines() -> None:
    record = exchange(method="CONNECT", url="203.0.113.7:443", status=200, verdict="deny",
                      source="deny/x.txt:3", detail="tunnel refused", sni="denied.example")
    assert format_line(record, T0).endswith('"tunnel refused" sni=denied.example')
    assert json.loads(format_json(record, T0))["sni"] == "denied.example"
    assert "sni=" not in format_line(exchange(method="CONNECT", url="h.example:443"), T0)
    assert format_combined(record, T0).endswith('"-" "-" "sni=denied.example"')
    assert "sni=" not in format_combined(exchange(method="CONNECT", url="h.example:443"), T0)


def test_a_gateway_request_is_marked_in_the_fwdproxy_combined_and_json_lines() -> None:
    record = exchange(method="GET", url="https://site.example/docs/", status=200, verdict="allow",
                      source="default", user="alice", gateway=True)
    assert format_line(record, T0).endswith('"" mode=gateway')
    assert format_combined(record, T0).startswith('127.0.0.1 - alice ')
    assert format_combined(record, T0).endswith('"-" "-" "mode=gateway"')
    assert json.loads(format_json(record, T0))["gateway"] is True
    plain = exchange(method="GET", url="https://site.example/docs/", status=200)
    assert "mode=" not in format_line(plain, T0) + format_combined(plain, T0)


def test_json_upstream_address() -> None:
    record = exchange(method="CONNECT", url="h.example:443", status=200, upstream_address="2001:db8::5")
    assert json.loads(format_json(record, T0))["upstream"] == "2001:db8::5"


@pytest.mark.parametrize("nasty", ['"', "\\", "\n", "\r\n", "\x00", "\u2028", "caf\u00e9", "}{"])
def test_json_is_one_ascii_line_that_round_trips(nasty: str) -> None:
    record = exchange(method="GET", url=f"http://x/{nasty}", detail=nasty, user_agent=nasty,
                      referer=nasty, user=nasty)
    line = format_json(record, T0)
    assert line.isascii() and "\n" not in line and "\r" not in line
    parsed = json.loads(line)
    assert (parsed["url"], parsed["detail"], parsed["user_agent"]) == (f"http://x/{nasty}", nasty, nasty)


# -- format_record -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "function"),
    [("fwdproxy", format_line), ("squid", format_squid), ("combined", format_combined),
     ("json", format_json)],
)
def test_format_record_dispatches(fmt: str, function: Callable[[Exchange, float], str]) -> None:
    record = exchange(method="GET", url="http://x/", status=200, bytes_down=10)
    assert format_record(record, T0 + 1, fmt) == function(record, T0 + 1)


def test_formats_are_the_four() -> None:
    assert list(FORMATS) == ["fwdproxy", "squid", "combined", "json"]


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown access-log format 'apache'.*fwdproxy, squid"):
        format_record(exchange(), T0, "apache")
    with pytest.raises(ValueError, match="unknown access-log format"):
        AccessLog(tmp_path / "access.log", "Squid")
    assert not (tmp_path / "access.log").exists()
