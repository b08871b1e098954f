"""The squid access-log format as a real log analyser reads it: calamaris (Debian package
``calamaris``), fed a log written by `format_record` for a realistic mix of exchanges.

calamaris parses Squid's native format strictly (it counts lines it cannot parse as
invalid), classifies each line by its action code and hierarchy, and reports requests by
client and by destination domain; those counts must be the ones we wrote.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass

import pytest

from fwdproxy.accesslog import Exchange, format_record

CALAMARIS = shutil.which("calamaris")
pytestmark = pytest.mark.skipif(
    CALAMARIS is None,
    reason="calamaris is not installed (Debian package 'calamaris'; .ci/run installs it)",
)

START = 1764064800.0  # 2025-11-25 10:00:00 UTC


@dataclass(frozen=True)
class Kind:
    """One kind of exchange in the mix: its fields, and how many of it."""

    count: int
    client: str
    fields: dict[str, object]


MIX = [
    # forwarded GETs, the bulk
    Kind(12, "10.1.0.11", {"method": "GET", "url": "http://www.example.com/index.html", "status": 200,
                           "bytes_down": 5120, "upstream_address": "192.0.2.10",
                           "content_type": "text/html; charset=utf-8"}),
    Kind(5, "10.1.0.12", {"method": "GET", "url": "http://static.example.com/logo.png", "status": 200,
                          "bytes_down": 20480, "upstream_address": "192.0.2.11",
                          "content_type": "image/png"}),
    Kind(3, "10.1.0.13", {"method": "GET", "url": "http://cdn.example.net/app.js", "status": 200,
                          "bytes_down": 80000, "upstream_address": "198.51.100.7",
                          "content_type": "application/javascript"}),
    Kind(1, "10.1.0.13", {"method": "POST", "url": "http://api.example.org/v1/items", "status": 201,
                          "bytes_down": 150, "upstream_address": "198.51.100.8",
                          "content_type": "application/json", "user": "alice"}),
    Kind(1, "10.1.0.11", {"method": "GET", "url": "http://www.example.com/missing", "status": 404,
                          "bytes_down": 300, "upstream_address": "192.0.2.10", "content_type": "text/html"}),
    # tunnels
    Kind(3, "10.1.0.12", {"method": "CONNECT", "url": "www.example.org:443", "status": 200,
                          "bytes_down": 250000, "upstream_address": "198.51.100.9"}),
    Kind(1, "10.1.0.13", {"method": "CONNECT", "url": "www.example.org:443", "status": 200,
                          "bytes_down": 4000, "upstream_address": "198.51.100.9"}),
    # denials
    Kind(2, "10.1.0.11", {"method": "GET", "url": "http://ads.tracker.test/pixel.gif", "status": 403,
                          "bytes_down": 2100, "verdict": "deny", "answered_by_proxy": True,
                          "content_type": "text/html; charset=utf-8"}),
    Kind(1, "10.1.0.13", {"method": "CONNECT", "url": "www.example.org:22", "status": 403,
                          "bytes_down": 700, "verdict": "deny", "answered_by_proxy": True,
                          "content_type": "text/html; charset=utf-8"}),
    Kind(1, "192.168.7.20", {"method": "GET", "url": "http://www.example.com/", "status": 407,
                             "bytes_down": 400, "answered_by_proxy": True, "content_type": "text/html"}),
    # errors the proxy answered itself, and one exchange nobody answered
    Kind(1, "192.168.7.20", {"method": "GET", "url": "/relative", "status": 400, "bytes_down": 310,
                             "answered_by_proxy": True, "content_type": "text/html"}),
    Kind(1, "10.1.0.12", {"method": "GET", "url": "http://nx.example.com/", "status": 502,
                          "bytes_down": 512, "answered_by_proxy": True, "content_type": "text/html"}),
    Kind(1, "10.1.0.12", {"method": "GET", "url": "http://www.example.com/slow", "status": 504,
                          "bytes_down": 512, "upstream_address": "192.0.2.10", "answered_by_proxy": True,
                          "content_type": "text/html"}),
    Kind(1, "192.168.7.20", {"status": 503, "bytes_down": 200, "answered_by_proxy": True,
                             "content_type": "text/html"}),
    Kind(1, "10.1.0.11", {}),
]
TOTAL = sum(kind.count for kind in MIX)


def squid_log() -> str:
    """The mix as a squid-format log, interleaved in time as a busy proxy would write it."""
    exchanges: list[tuple[str, dict[str, object]]] = []
    for kind in MIX:
        exchanges.extend((kind.client, kind.fields) for _ in range(kind.count))
    random.Random(7).shuffle(exchanges)
    lines = []
    for number, (client, fields) in enumerate(exchanges):
        now = START + number * 37.25
        exchange = Exchange(client=client, started=now - 0.015 * (number + 1), **fields)  # type: ignore[arg-type]
        lines.append(format_record(exchange, now, "squid"))
    return "\n".join(lines) + "\n"


def run_calamaris(log: str) -> str:
    assert CALAMARIS is not None
    result = subprocess.run(
        # -a: all useful reports; -n: no DNS lookups of clients; -f squid: the native format,
        # never guessed
        [CALAMARIS, "-a", "-n", "-f", "squid"],
        input=log, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


RULE = re.compile(r"^-+( -+)+ ?$")


def section(report: str, title: str) -> dict[str, int]:
    """A calamaris table as {first column: request count}: the rows between its two rules."""
    lines = report.split(f"# {title}\n", 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if RULE.match(line))
    table: dict[str, int] = {}
    for line in lines[first + 1:]:
        if RULE.match(line):
            return table
        match = re.match(r"\s*(\S+(?: \S+)*?)\s{2,}(\d+)\s", line)
        assert match, f"unexpected row {line!r} in {title!r}"
        table[match[1]] = table.get(match[1], 0) + int(match[2])
    raise AssertionError(f"table {title!r} has no closing rule")


def summary(report: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}:\s+\S+\s+(\d+)\s*$", report, re.MULTILINE)
    assert match, f"no {label!r} in the report:\n{report}"
    return int(match[1])


@pytest.fixture(scope="module")
def report() -> str:
    return run_calamaris(squid_log())


def test_every_line_is_parsed(report: str) -> None:
    assert summary(report, "lines parsed") == TOTAL
    assert summary(report, "invalid lines") == 0
    assert summary(report, "Total amount") == TOTAL
    assert summary(report, "Total Bandwidth") == sum(
        kind.count * int(kind.fields.get("bytes_down", 0)) for kind in MIX)  # type: ignore[call-overload]


def test_report_period_is_read_from_the_timestamps(report: str) -> None:
    last = START + (TOTAL - 1) * 37.25  # 10:21:06.5
    assert last == 1764066066.5
    assert "Report period: 25.Nov 25 10:00:00 - 25.Nov 25 10:21:06\n" in report


def test_requests_by_client(report: str) -> None:
    expected = Counter[str]()
    for kind in MIX:
        expected[kind.client] += kind.count
    clients = section(report, "Incoming TCP-requests by host")
    assert list(clients.items()) == expected.most_common()  # the top client first
    assert expected.most_common()[0] == ("10.1.0.11", 16)


def test_requests_by_destination(report: str) -> None:
    # calamaris files 4xx/5xx answers and lines without a host under <error>
    domains = section(report, "Request-destinations by 2nd-level-domain")
    assert list(domains.items()) == [  # the top destination first
        ("*.example.com", 17), ("<error>", 10), ("*.example.org", 5), ("*.example.net", 3)]


def test_action_codes(report: str) -> None:
    statuses = section(report, "Incoming TCP-requests by status")
    assert statuses["TCP_MISS"] == 22
    assert statuses["TCP_TUNNEL"] == 4
    assert statuses["TCP_DENIED"] == 4
    assert statuses["TAG_NONE"] == 4  # listed twice: the 504 reached an origin (HIER_DIRECT)
    assert statuses["NONE_NONE"] == 1
    # calamaris counts what went to an origin as a miss, what went nowhere as an error
    assert statuses["MISS"] == 22 + 4 + 1
    assert statuses["ERROR"] == 4 + 3 + 1


def test_direct_fetches_and_methods(report: str) -> None:
    assert section(report, "Outgoing requests by status")["HIER_DIRECT"] == 27
    methods = section(report, "Incoming requests by method")
    assert methods == {"GET": 27, "CONNECT": 5, "-": 2, "POST": 1}


def test_response_codes(report: str) -> None:
    codes = section(report, "TCP Response code distribution")
    assert {code.split()[0]: count for code, count in codes.items()} == {
        "000": 1, "200": 24, "201": 1, "400": 1, "403": 3, "404": 1, "407": 1, "502": 1,
        "503": 1, "504": 1}
