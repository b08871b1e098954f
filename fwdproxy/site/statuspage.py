"""The status page: one self-contained HTML page rendered from a `StatsSnapshot`.

Strategy: plain string building, no template engine and no assets: the CSS is inline, the
chart is an inline SVG drawn here, and the page refreshes itself every 10 s with a meta
tag, so it needs no JavaScript and works from a locked-down browser. Every string that did
not come from this module (hosts, clients, categories, the rules summary, the version) is
passed through `html.escape` exactly once, where it is placed; the SVG is also valid XML
(a test parses it). Pure: no I/O; times are formatted from the snapshot's own clock.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from fwdproxy.stats import StatsSnapshot, Top

# Seconds between automatic reloads of the page.
REFRESH_SECONDS = 10
# Rows per table.
TABLE_ROWS = 10

ALLOWED_COLOUR = "#3b82f6"
BLOCKED_COLOUR = "#ef4444"

_STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#f5f6f8;color:#1f2328;
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 20px 40px}
header{display:flex;align-items:baseline;justify-content:space-between;flex-wrap:wrap;gap:8px;
margin-bottom:18px}
h1{font-size:22px;margin:0;font-weight:650}
h1 small{font-size:14px;font-weight:400;color:#6b7280;margin-left:8px}
.meta{color:#6b7280;font-size:13px}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:10px;padding:16px 18px}
h2{font-size:14px;font-weight:600;margin:0 0 10px;color:#374151}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px;
margin-bottom:16px}
.tile .label{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.tile .value{font-size:26px;font-weight:650;margin-top:2px;font-variant-numeric:tabular-nums;
white-space:nowrap}
.tile .value small{font-size:15px;font-weight:500;color:#6b7280;margin-left:3px}
.tile .note{font-size:12px;color:#6b7280}
.allowed .value{color:#1d4ed8}.blocked .value{color:#b91c1c}
.chart{margin-bottom:16px}
.chart svg{display:block;width:100%;height:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:16px;
margin-bottom:16px}
table{width:100%;border-collapse:collapse;font-size:14px}
td{padding:5px 0;border-top:1px solid #f0f1f3;vertical-align:middle}
tr:first-child td{border-top:0}
td.name{max-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding-right:10px}
td.n{width:6.5em;text-align:right;font-variant-numeric:tabular-nums}
td.bar{width:20%}
.bar span{display:block;height:6px;border-radius:3px;background:#cbd5e1}
.blocked-bars .bar span{background:#fca5a5}
.empty{color:#9ca3af;font-style:italic}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:0;font-size:14px}
dt{color:#6b7280}dd{margin:0;word-break:break-word}
.warn{color:#b45309;font-weight:600}
footer{color:#9ca3af;font-size:12px;text-align:center}
"""


# -- figures as text --------------------------------------------------------------------


def human_bytes(n: int) -> str:
    """Bytes in binary units, three significant digits: ``0 B``, ``980 B``, ``1.21 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"


def human_duration(seconds: float) -> str:
    """A duration in its two largest units: ``42 s``, ``5 min 3 s``, ``2 d 4 h``."""
    total = int(max(0.0, seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{value} {unit}" for value, unit in parts[:2])


def human_rate(rate: float) -> str:
    return f"{rate:.2f}" if rate < 10 else f"{rate:.1f}" if rate < 100 else f"{rate:,.0f}"


def _clock(timestamp: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A wall-clock time in the server's local zone."""
    return datetime.fromtimestamp(timestamp).strftime(fmt)


# -- the chart --------------------------------------------------------------------------

# SVG user units; the SVG scales to the card's width.
_W, _H = 1120, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 44, 34
_PLOT_W = _W - _LEFT - _RIGHT
_PLOT_H = _H - _TOP - _BOTTOM


def _axis(peak: int) -> tuple[int, int]:
    """(step, ticks) of the y axis: the smallest step of 1, 2, 2.5, 5 x 10^k (whole
    numbers) that reaches `peak` in at most 4 steps, and the steps needed (2 to 4), so the
    tallest bar fills more than half of the plot. Small and zero peaks get 0..4 in ones."""
    if peak <= 4:
        return 1, 4
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude // 2, 5 * magnitude):
            if step * 4 >= peak:
                return step, -(-peak // step)
        magnitude *= 10


# long: one SVG drawn top to bottom (axes, bars, labels); its pieces share every coordinate.
def chart_svg(allowed: tuple[int, ...], blocked: tuple[int, ...], taken_at: float) -> str:
    """Allowed and blocked requests per minute as grouped bars, oldest minute first.

    Args:
        allowed, blocked: equal-length series (60 minutes), the current minute last.
        taken_at: the snapshot's time, for the hover titles' clock times.
    Returns:
        One ``<svg>`` element, valid XML, readable when every count is zero.
    """
    count = len(allowed)
    step, ticks = _axis(max((*allowed, *blocked, 0)))
    top = step * ticks
    slot = _PLOT_W / max(1, count)
    bar = max(1.0, slot * 0.38)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="Allowed and blocked requests per minute, last hour" '
        f'font-family="system-ui,sans-serif" font-size="12">'
    ]
    # Legend, top left.
    out.append(
        f'<g transform="translate({_LEFT},14)">'
        f'<rect width="12" height="12" rx="2" fill="{ALLOWED_COLOUR}"/>'
        f'<text x="18" y="10.5" fill="#374151">Allowed ({sum(allowed):,})</text>'
        f'<rect x="150" width="12" height="12" rx="2" fill="{BLOCKED_COLOUR}"/>'
        f'<text x="168" y="10.5" fill="#374151">Blocked ({sum(blocked):,})</text></g>'
    )
    # Horizontal grid lines and y labels.
    for i in range(ticks + 1):
        y = _TOP + _PLOT_H - _PLOT_H * i / ticks
        colour = "#9ca3af" if i == 0 else "#eceef1"
        out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{colour}" stroke-width="1"/>')
        out.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" '
                   f'fill="#6b7280">{step * i:,}</text>')
    # x labels: minutes ago, every quarter hour.
    for ago in range(count, -1, -15):
        x = _LEFT + _PLOT_W * (count - ago) / max(1, count)
        label = "now" if ago == 0 else f"{ago} min ago"
        anchor = "end" if ago == 0 else "start" if ago == count else "middle"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP + _PLOT_H}" '
                   f'y2="{_TOP + _PLOT_H + 5}" stroke="#9ca3af"/>')
        out.append(f'<text x="{x:.1f}" y="{_H - 10}" text-anchor="{anchor}" '
                   f'fill="#6b7280">{label}</text>')
    # Bars: one group per minute, with a hover title.
    minute_start = int(taken_at // 60) * 60
    for i, (a, b) in enumerate(zip(allowed, blocked, strict=True)):
        if not a and not b:
            continue
        x = _LEFT + slot * i + (slot - 2 * bar - 1) / 2
        when = _clock(minute_start - (count - 1 - i) * 60, "%H:%M")
        out.append(f"<g><title>{escape(when)}: {a:,} allowed, {b:,} blocked</title>")
        for value, colour, dx in ((a, ALLOWED_COLOUR, 0.0), (b, BLOCKED_COLOUR, bar + 1)):
            if value:
                h = max(1.0, _PLOT_H * value / top)
                out.append(f'<rect x="{x + dx:.1f}" y="{_TOP + _PLOT_H - h:.1f}" '
                           f'width="{bar:.1f}" height="{h:.1f}" rx="1" fill="{colour}"/>')
        out.append("</g>")
    if not any(allowed) and not any(blocked):
        out.append(f'<text x="{_LEFT + _PLOT_W / 2:.1f}" y="{_TOP + _PLOT_H / 2:.1f}" '
                   f'text-anchor="middle" fill="#9ca3af" font-size="14">'
                   f"No requests in the last hour</text>")
    out.append("</svg>")
    return "".join(out)


# -- the page ---------------------------------------------------------------------------


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _tile(label: str, value: str, note: str = "", kind: str = "") -> str:
    """A figure card; a unit after the number's space (``2.4 MiB``) is set smaller."""
    number, _, unit = value.partition(" ")
    unit_html = f"<small>{escape(unit)}</small>" if unit else ""
    note_html = f'<div class="note">{escape(note)}</div>' if note else ""
    return (f'<div class="card tile {kind}"><div class="label">{escape(label)}</div>'
            f'<div class="value">{escape(number)}{unit_html}</div>{note_html}</div>')


def _table(title: str, rows: Top, empty: str, kind: str = "") -> str:
    body = []
    peak = max((n for _, n in rows), default=0)
    for name, n in rows[:TABLE_ROWS]:
        width = 100 * n / peak if peak else 0
        body.append(f'<tr><td class="name" title="{escape(name)}">{escape(name)}</td>'
                    f'<td class="bar"><span style="width:{width:.0f}%"></span></td>'
                    f'<td class="n">{n:,}</td></tr>')
    if not body:
        body.append(f'<tr><td class="empty">{escape(empty)}</td></tr>')
    return (f'<section class="card {kind}"><h2>{escape(title)}</h2>'
            f'<table>{"".join(body)}</table></section>')


def status_page(snapshot: StatsSnapshot, *, rules_summary: str, rules_errors: int,
                loaded_at: float, version: str) -> bytes:
    """The status page for `snapshot`, as UTF-8 HTML.

    Args:
        snapshot: the figures, from `Stats.snapshot()`.
        rules_summary: `LoadedRules.summary`, one line.
        rules_errors: problems found in the rules folder at the last load.
        loaded_at: wall-clock time of the last (re)load of the rules.
        version: fwdproxy's version.
    Returns:
        The whole page; every outside string escaped.
    """
    s = snapshot
    tiles = "".join([
        _tile("Requests / s", human_rate(s.requests_per_second),
              f"{s.requests_last_minute:,} in 60 s"),
        _tile("Requests", f"{s.requests:,}", _plural(s.errors, "error")),
        _tile("Allowed", f"{s.allowed:,}", kind="allowed"),
        _tile("Blocked", f"{s.blocked:,}", _plural(s.auth_failures, "auth failure"), kind="blocked"),
        _tile("Open tunnels", f"{s.open_tunnels:,}"),
        _tile("Bytes up", human_bytes(s.bytes_up), "from clients"),
        _tile("Bytes down", human_bytes(s.bytes_down), "to clients"),
    ])
    workers = f" · {_plural(s.workers, 'worker')}" if s.workers > 1 else ""
    problems = (f'<span class="warn">{rules_errors:,}</span>' if rules_errors
                else "none")
    rules = (
        '<section class="card"><h2>Rule set</h2><dl>'
        f"<dt>Loaded</dt><dd>{escape(rules_summary)}</dd>"
        f"<dt>Problems</dt><dd>{problems}</dd>"
        f"<dt>Last reload</dt><dd>{escape(_clock(loaded_at))} "
        f"({escape(human_duration(s.taken_at - loaded_at))} ago)</dd>"
        "</dl><p>Users see their own recent blocks at <a href=\"/blocked\">/blocked</a> "
        "(browsers show no page for a blocked HTTPS site): tell them to bookmark it.</p>"
        "</section>"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>fwdproxy status</title><style>{_STYLE}</style></head>
<body><main>
<header><h1>fwdproxy<small>{escape(version)}</small></h1>
<div class="meta">up {escape(human_duration(s.uptime_seconds))} · since
{escape(_clock(s.started))}{workers} · updated {escape(_clock(s.taken_at, "%H:%M:%S"))}</div></header>
<div class="tiles">{tiles}</div>
<section class="card chart"><h2>Allowed vs blocked, last hour</h2>
{chart_svg(s.allowed_per_minute, s.blocked_per_minute, s.taken_at)}</section>
<div class="grid">
{_table("Blocked by category", s.top_categories, "Nothing blocked yet", "blocked-bars")}
{_table("Top blocked hosts", s.top_blocked_hosts, "Nothing blocked yet", "blocked-bars")}
{_table("Top clients", s.top_clients, "No requests yet")}
</div>
{rules}
<footer>Refreshes every {REFRESH_SECONDS} s</footer>
</main></body></html>
"""
    return page.encode("utf-8")
