"""statuspage.py: the status page escapes every outside string, its SVG chart is valid XML
with and without data, and it renders in a real browser (when chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import pytest

from fwdproxy.accesslog import Exchange
from fwdproxy.site.statuspage import _PLOT_H, chart_svg, human_bytes, human_duration, status_page
from fwdproxy.stats import Stats, StatsSnapshot

T0 = 1_704_067_200.0
SVG = "{http://www.w3.org/2000/svg}"

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "</td></table><h1>pwned</h1>",
    "a&b",
]


def render(snapshot: StatsSnapshot, **overrides: object) -> str:
    args: dict[str, object] = dict(rules_summary="rules from /etc/fwdproxy/rules: deny ads: 3",
                                   rules_errors=0, loaded_at=T0, version="0.1.0")
    args.update(overrides)
    return status_page(snapshot, **args).decode()  # type: ignore[arg-type]


def svg_of(page: str) -> ET.Element:
    match = re.search(r"<svg\b.*?</svg>", page, re.S)
    assert match is not None
    return ET.fromstring(match.group(0))


def realistic() -> StatsSnapshot:
    """An hour of a small office: a daily-looking curve of traffic and some blocking."""
    stats = Stats(started=T0 - 3 * 86_400 - 4 * 3600 - 17 * 60)
    now = T0 + 3600
    hosts = ["doubleclick.net", "ads.example.com", "tracker.example.org", "malware.test",
             "telemetry.vendor.example", "pixel.social.example"]
    categories = ["ads", "ads", "tracking", "malware", "tracking", "social"]
    for minute in range(60):
        t = T0 + minute * 60
        for i in range(40 + (minute * 7) % 23 + (30 if 20 <= minute < 35 else 0)):
            stats.record(Exchange(client=f"192.168.1.{10 + i % 12}", started=t, method="GET",
                                  url=f"http://site{i % 9}.example/", status=200,
                                  bytes_up=700, bytes_down=48_000 + i * 900, verdict="allow"),
                         t + i % 60)
        for i in range((minute * 5) % 11):
            stats.record(Exchange(client=f"192.168.1.{10 + i % 5}", started=t, method="CONNECT",
                                  url=f"{hosts[i % 6]}:443", status=403, bytes_up=300,
                                  bytes_down=900, verdict="deny", category=categories[i % 6]),
                         t + i)
    stats.record(Exchange(client="192.168.1.66", started=now, url="http://x.example/",
                          status=407, verdict="auth"), now)
    for _ in range(7):
        stats.tunnel_opened()
    return stats.snapshot(now)


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("where", ["category", "host", "client"])
def test_hostile_names_are_escaped(where: str, value: str) -> None:
    stats = Stats(started=T0)
    url = "http://ok.example/"
    if where == "host":
        # a host name that urlsplit hands back as it is (it is lower-cased)
        url = f"http://{value.replace('/', '').replace('?', '').replace('#', '')}/"
    stats.record(Exchange(client=value if where == "client" else "10.0.0.1", started=T0,
                          url=url, status=403, verdict="deny",
                          category=value if where == "category" else "ads"), T0)
    snap = stats.snapshot(T0)
    names = {"category": snap.top_categories, "host": snap.top_blocked_hosts,
             "client": snap.top_clients}[where]
    name = names[0][0]
    assert any(c in name for c in "<>\"'&")  # the hostile characters did reach the table
    page = render(snap)
    assert name not in page
    assert escape(name, quote=True) in page
    assert "<script" not in page and "<img" not in page and "<h1>pwned" not in page


@pytest.mark.parametrize("value", HOSTILE)
def test_rules_summary_and_version_are_escaped(value: str) -> None:
    page = render(Stats(started=T0).snapshot(T0), rules_summary=value, version=value)
    assert value not in page
    assert page.count(escape(value, quote=True)) == 2


def test_page_structure() -> None:
    page = render(realistic(), rules_errors=3)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta http-equiv="refresh" content="10">' in page
    assert "<script" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", "")  # no external assets
    for text in ["Requests / s", "Open tunnels", "Bytes up", "Bytes down",
                 "Allowed vs blocked, last hour", "Blocked by category", "Top blocked hosts",
                 "Top clients", "Rule set", "rules from /etc/fwdproxy/rules: deny ads: 3",
                 "up 3 d 5 h", "doubleclick.net", "192.168.1.10", "malware"]:
        assert text in page, text
    assert '<span class="warn">3</span>' in page


def test_empty_page_reads_well() -> None:
    page = render(Stats(started=T0).snapshot(T0 + 5))
    assert "No requests in the last hour" in page
    assert "Nothing blocked yet" in page and "No requests yet" in page
    assert "up 5 s" in page
    assert "<dd>none</dd>" in page


def test_svg_with_zero_data_is_valid_xml() -> None:
    svg = svg_of(render(Stats(started=T0).snapshot(T0)))
    assert svg.tag == f"{SVG}svg"
    assert svg.findall(f".//{SVG}g/{SVG}title") == []  # no bars
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "No requests in the last hour" in labels
    assert {"0", "1", "2", "3", "4"} <= set(labels)  # a readable axis even at zero
    assert "now" in labels and "60 min ago" in labels
    assert any(label and label.startswith("Allowed (0)") for label in labels)


def test_svg_with_data_is_valid_xml_and_scaled_to_the_max() -> None:
    snap = realistic()
    svg = svg_of(render(snap))
    bars = [rect for rect in svg.iter(f"{SVG}rect") if rect.get("fill") and
            float(rect.get("height", "0")) > 0 and rect.get("width") != "12"]
    assert len(bars) == sum(1 for n in snap.allowed_per_minute + snap.blocked_per_minute if n)
    titles = svg.findall(f".//{SVG}g/{SVG}title")
    assert len(titles) == sum(1 for a, b in zip(snap.allowed_per_minute, snap.blocked_per_minute,
                                                 strict=True) if a or b)
    peak = max(snap.allowed_per_minute + snap.blocked_per_minute)
    labels = [int(t.text.replace(",", "")) for t in svg.iter(f"{SVG}text")
              if t.text and t.text.replace(",", "").isdigit()]
    assert peak <= max(labels) < 2 * peak  # the axis fits the data
    tallest = max(float(rect.get("height", "0")) for rect in bars)
    assert 0.5 * _PLOT_H < tallest <= _PLOT_H  # the tallest bar fills most of the plot
    legend = [t.text for t in svg.iter(f"{SVG}text") if t.text and t.text.startswith("Blocked")]
    assert legend == [f"Blocked ({sum(snap.blocked_per_minute):,})"]


@pytest.mark.parametrize("peak", [1, 3, 4, 5, 9, 17, 21, 91, 100, 101, 999, 123_456])
def test_chart_axis_covers_the_peak(peak: int) -> None:
    series = (0,) * 59 + (peak,)
    svg = ET.fromstring(chart_svg(series, (0,) * 60, T0))
    numbers = [int(t.text.replace(",", "")) for t in svg.iter(f"{SVG}text")
               if t.text and t.text.replace(",", "").isdigit()]
    assert numbers[0] == 0 and max(numbers) >= peak
    assert peak <= 4 or max(numbers) < 2 * peak  # the tallest bar fills over half the plot


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
     (5 * 1024**3, "5 GiB"), (int(1.234 * 1024**2), "1.23 MiB"), (1000 * 1024, "1000 KiB"),
     (3 * 1024**5, "3072 TiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42.9, "42 s"), (303, "5 min 3 s"), (3600, "1 h 0 min"),
     (2 * 86_400 + 4 * 3600 + 5, "2 d 4 h"), (-5, "0 s")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def screenshot(page: Path, out: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH: cannot render the page")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={out}", "--window-size=1280,1000", page.as_uri()],
                   check=True, timeout=60, capture_output=True)


def test_page_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "status.html"
    page.write_bytes(status_page(realistic(),
                                 rules_summary="rules from /etc/fwdproxy/rules: allow work: 12, "
                                 "deny ads: 48211, deny malware: 913, deny tracking: 7340",
                                 rules_errors=2, loaded_at=T0 + 3600 - 754, version="0.1.0"))
    out = tmp_path / "status.png"
    screenshot(page, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000  # a blank 1280x1000 PNG is a few KB
