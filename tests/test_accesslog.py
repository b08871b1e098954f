"""accesslog.py: the one log line per exchange, and its escaping.

Format: ``TIME CLIENT METHOD URL STATUS up=BYTES down=BYTES DURATIONms VERDICT SOURCE "DETAIL"``.
"""

from __future__ import annotations

import calendar

import pytest

from fwdproxy.accesslog import Exchange, format_line

# 2024-03-01T12:34:56Z; .25 and .5 are exact in binary, so the milliseconds are exact too
T0 = float(calendar.timegm((2024, 3, 1, 12, 34, 56)))


def exchange(**fields: object) -> Exchange:
    base: dict[str, object] = {"client": "127.0.0.1", "started": T0 + 0.25}
    base.update(fields)
    return Exchange(**base)  # type: ignore[arg-type]


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


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/\x00\x1f", "http://example.com/%00%1F"),
        ("http://example.com/\x7f", "http://example.com/%7F"),
        ("http://example.com/caf\u00c3\u00a9", "http://example.com/caf%C3%A9"),  # latin-1 bytes
        ("http://example.com/\r\nforged line", "http://example.com/%0D%0Aforged%20line"),
        ("http://example.com/%2F?q=\"x\"", "http://example.com/%2F?q=\"x\""),  # printable kept
    ],
)
def test_url_escaping(url: str, logged: str) -> None:
    line = format_line(exchange(method="GET", url=url), T0 + 0.25)
    assert line.split(" ")[3] == logged
    assert len(line.split(" ")) == 11  # the URL never adds a field
