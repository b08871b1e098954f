"""Running figures for the status page and /metrics, gathered from finished exchanges.

Strategy: `Stats.record()` is called once per finished request or tunnel, on the hot path,
so it does O(1) work (amortised) and holds bounded memory:

- totals are plain integers;
- the last hour is a ring of 60 per-minute slots, the last minute a ring of 60 per-second
  slots; each slot remembers which minute (second) it counts, and a slot holding an older
  one is reset when it is next written, or read as zero: nothing runs on a timer, and an
  idle gap of any length needs no catching up;
- blocked hosts and clients are counted in dicts of at most `MAX_KEYS` keys (see
  `_BoundedCounter`); blocked categories come from the rules folder's category names, a
  small finite set, and are counted in full.

`snapshot()` copies everything into a frozen `StatsSnapshot` that the page and metrics
renderers read; it is the only place that sorts. Time is always passed in (`now`, wall-clock
`time.time()`), so tests drive it directly. Pure: no I/O, no clock, no trio.

With `--workers`, each worker publishes its snapshot (`snapshot_to_dict`, with wider top
tables) and the one serving the status page adds up everyone's with `merge_snapshots`;
a restarted worker carries its predecessor's totals on (`Stats.carry_on`), so that the
summed counters never go backwards, as Prometheus counters must not.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # for annotations only: accesslog's writer pulls in os and select
    from fwdproxy.accesslog import Exchange

# Per-minute slots of the chart: one hour.
MINUTES = 60
# Per-second slots behind requests_per_second: one minute, long enough to smooth bursts,
# short enough to show a change within the status page's 10 s refresh.
SECONDS = 60
# Keys kept per top-N table. A busy office proxy sees a few hundred distinct hosts blocked
# per hour and fewer clients; 1,000 keeps every one that could make the top 10 while
# bounding memory (~100 KB) against a client that scans millions of names.
MAX_KEYS = 1_000
# Rows in each top-N table of the snapshot.
TOP = 10
# Rows a worker publishes per top-N table: enough that the sum of the workers' tables puts
# the right names in the merged top 10 unless the counts are nearly flat.
PUBLISHED_TOP = 100
# The category of a blocked request whose deciding rule had none (a `config:` setting such
# as connect_ports or deny_destinations).
NO_CATEGORY = "(none)"

Top = tuple[tuple[str, int], ...]

# The running totals that only grow (Prometheus counters), in the order workers share them.
COUNTERS = ("requests", "allowed", "blocked", "auth_failures", "errors", "bytes_up", "bytes_down")


class _BoundedCounter:
    """Counts per key, keeping at most `limit` keys.

    When a new key arrives and the dict is full, the smaller-count half of the keys is
    dropped (one O(n log n) prune per limit/2 new keys: O(log n) amortised per record).
    The price is approximation: a dropped key that comes back starts again from 1, so a
    host seen steadily but rarely may be under-counted or missing while a flood of one-off
    names passes through. Keys that matter for a top 10 have counts far above the
    median and survive every prune.
    """

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int = MAX_KEYS) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += 1
            return
        if len(counts) >= self.limit:
            # Full: drop the smallest half, keeping the limit // 2 largest counts.
            keep = heapq.nlargest(self.limit // 2, counts.items(), key=lambda item: item[1])
            self.counts = counts = dict(keep)
        counts[key] = 1

    def top(self, n: int = TOP) -> Top:
        """The `n` largest counts, largest first; ties by name, for a stable order."""
        return tuple(heapq.nsmallest(n, self.counts.items(), key=lambda item: (-item[1], item[0])))


class _Ring:
    """Counts per time slot (minute or second) for the last `size` slots.

    Slot `t % size` holds the count for slot number `t` (e.g. `int(now // 60)`); `keys`
    remembers which `t` that is, so a slot left over from an earlier lap is stale.
    """

    __slots__ = ("counts", "keys", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.keys = [-1] * size
        self.counts = [0] * size

    def add(self, t: int, n: int = 1) -> None:
        i = t % self.size
        key = self.keys[i]
        if key == t:
            self.counts[i] += n
        elif key < t:  # stale: reset lazily
            self.keys[i] = t
            self.counts[i] = n
        # key > t: a record stamped more than a lap before the newest (the clock stepped
        # back); it belongs to no slot still shown, so it is not counted here.

    def series(self, now_t: int) -> tuple[int, ...]:
        """The counts of slots `now_t - size + 1` .. `now_t`, oldest first."""
        keys, counts, size = self.keys, self.counts, self.size
        return tuple(counts[t % size] if keys[t % size] == t else 0
                     for t in range(now_t - size + 1, now_t + 1))


def exchange_host(exchange: Exchange) -> str | None:
    """The lower-cased host an exchange was for, from its URL (absolute, or ``host:port``
    for CONNECT); None when there is none (no request read, or an unparseable target)."""
    url = exchange.url
    if not url or url == "-":
        return None
    if "://" not in url:  # host:port (CONNECT) or [v6]:port; urlsplit needs the // form
        url = "//" + url
    try:
        host = urlsplit(url).hostname  # lower-cased, brackets of an IPv6 literal removed
    except ValueError:  # e.g. an unbalanced "[" from a malformed target
        return None
    return host or None


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Every figure the status page and /metrics show, as of `taken_at`.

    Attributes:
        taken_at: wall-clock time of the snapshot.
        started: wall-clock time the proxy started.
        uptime_seconds: taken_at - started (never negative).
        requests: exchanges finished (requests and tunnels).
        allowed: verdict ``allow``.
        blocked: verdict ``deny``.
        auth_failures: verdict ``auth`` (407 sent).
        errors: status >= 500, or verdict ``upstream-error``.
        bytes_up: bytes received from clients, over all exchanges.
        bytes_down: bytes sent to clients, over all exchanges.
        open_tunnels: CONNECT tunnels open now.
        requests_last_minute: exchanges finished in the last 60 s.
        requests_per_second: their rate, over the last 60 s (or the uptime, if shorter).
        allowed_per_minute, blocked_per_minute: the last 60 minutes, oldest first, the
            current (partial) minute last.
        top_blocked_hosts, top_clients, top_categories: up to 10 (name, count), largest
            first; clients count every exchange, hosts and categories blocked ones.
        blocked_by_category: every category's blocked count, largest first (for /metrics,
            where a series must not vanish when it leaves the top 10).
        workers: how many worker processes these figures add up (1 without --workers).
    """

    taken_at: float
    started: float
    uptime_seconds: float
    requests: int
    allowed: int
    blocked: int
    auth_failures: int
    errors: int
    bytes_up: int
    bytes_down: int
    open_tunnels: int
    requests_last_minute: int
    requests_per_second: float
    allowed_per_minute: tuple[int, ...]
    blocked_per_minute: tuple[int, ...]
    top_blocked_hosts: Top
    top_clients: Top
    top_categories: Top
    blocked_by_category: Top
    workers: int = 1


class Stats:
    """The running figures of one proxy process; see the module comment for the costs."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.requests = 0
        self.allowed = 0
        self.blocked = 0
        self.auth_failures = 0
        self.errors = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.open_tunnels = 0
        self._allowed_minutes = _Ring(MINUTES)
        self._blocked_minutes = _Ring(MINUTES)
        self._request_seconds = _Ring(SECONDS)
        self._categories: Counter[str] = Counter()
        self._blocked_hosts = _BoundedCounter()
        self._clients = _BoundedCounter()

    def record(self, exchange: Exchange, now: float) -> None:
        """Count one finished exchange.

        Args:
            exchange: the finished request or tunnel.
            now: wall-clock `time.time()` at which it finished (which slot it counts in).
        """
        self.requests += 1
        self.bytes_up += exchange.bytes_up
        self.bytes_down += exchange.bytes_down
        self._request_seconds.add(int(now))
        self._clients.add(exchange.client)
        verdict = exchange.verdict
        if verdict == "allow":
            self.allowed += 1
            self._allowed_minutes.add(int(now // 60))
        elif verdict == "deny":
            self.blocked += 1
            self._blocked_minutes.add(int(now // 60))
            self._categories[exchange.category or NO_CATEGORY] += 1
            host = exchange_host(exchange)
            if host is not None:
                self._blocked_hosts.add(host)
        elif verdict == "auth":
            self.auth_failures += 1
        if exchange.status >= 500 or verdict == "upstream-error":
            self.errors += 1

    def tunnel_opened(self) -> None:
        """A CONNECT tunnel started relaying."""
        self.open_tunnels += 1

    def tunnel_closed(self) -> None:
        """A tunnel counted by `tunnel_opened` ended."""
        self.open_tunnels = max(0, self.open_tunnels - 1)

    def counters(self) -> tuple[int, ...]:
        """The running totals, in `COUNTERS` order."""
        return tuple(getattr(self, name) for name in COUNTERS)

    def carry_on(self, previous: StatsSnapshot | None, totals: Sequence[int] | None = None) -> None:
        """Continue from the worker this one replaces: its last published figures and,
        when known, its exact totals at the end (`COUNTERS` order), which take precedence
        over the published ones. The chart and top tables start afresh; blocked-by-category
        counts come from the published figures."""
        if totals is None:
            if previous is None:
                return
            totals = tuple(getattr(previous, name) for name in COUNTERS)
        for name, value in zip(COUNTERS, totals, strict=True):
            setattr(self, name, getattr(self, name) + value)
        if previous is not None:
            self._categories.update(dict(previous.blocked_by_category))

    def snapshot(self, now: float, top: int = TOP) -> StatsSnapshot:
        """Every figure as of `now` (wall-clock `time.time()`), frozen, with `top` rows
        per top-N table."""
        uptime = max(0.0, now - self.started)
        last_minute = sum(self._request_seconds.series(int(now)))
        # Over the window the figures cover: the last 60 s, or the uptime if shorter
        # (at least 1 s, so the first request after start is not a huge rate).
        window = min(float(SECONDS), max(1.0, uptime))
        minute = int(now // 60)
        by_category = tuple(sorted(self._categories.items(), key=lambda item: (-item[1], item[0])))
        return StatsSnapshot(
            taken_at=now,
            started=self.started,
            uptime_seconds=uptime,
            requests=self.requests,
            allowed=self.allowed,
            blocked=self.blocked,
            auth_failures=self.auth_failures,
            errors=self.errors,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            open_tunnels=self.open_tunnels,
            requests_last_minute=last_minute,
            requests_per_second=last_minute / window,
            allowed_per_minute=self._allowed_minutes.series(minute),
            blocked_per_minute=self._blocked_minutes.series(minute),
            top_blocked_hosts=self._blocked_hosts.top(top),
            top_clients=self._clients.top(top),
            top_categories=by_category[:top],
            blocked_by_category=by_category,
        )


_TOTALS = (*COUNTERS, "open_tunnels", "requests_last_minute")
_SERIES = ("allowed_per_minute", "blocked_per_minute")
_TABLES = ("top_blocked_hosts", "top_clients", "top_categories", "blocked_by_category")


def snapshot_to_dict(snapshot: StatsSnapshot) -> dict[str, Any]:
    """`snapshot` as plain JSON-ready values (tables as lists of [name, count])."""
    data: dict[str, Any] = {name: getattr(snapshot, name) for name in
                            ("taken_at", "started", "requests_per_second", "workers", *_TOTALS)}
    for name in _SERIES:
        data[name] = list(getattr(snapshot, name))
    for name in _TABLES:
        data[name] = [[key, count] for key, count in getattr(snapshot, name)]
    return data


def snapshot_from_dict(data: Any) -> StatsSnapshot:
    """The inverse of `snapshot_to_dict`.

    Raises:
        ValueError: `data` is not such a dict (a torn or foreign file).
    """
    fields: dict[str, Any] = {}
    try:
        for name in ("taken_at", "started", "requests_per_second"):
            fields[name] = float(data[name])
        for name in _TOTALS:
            fields[name] = int(data[name])
        for name in _SERIES:
            fields[name] = tuple(int(n) for n in data[name])
            if len(fields[name]) != MINUTES:
                raise ValueError(f"{name} is not {MINUTES} long")
        for name in _TABLES:
            fields[name] = tuple((str(key), int(count)) for key, count in data[name])
        fields["workers"] = int(data.get("workers", 1))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a stats snapshot: {exc!r}") from None
    fields["uptime_seconds"] = max(0.0, fields["taken_at"] - fields["started"])
    return StatsSnapshot(**fields)


def _sum_tables(tables: list[Top], top: int | None) -> Top:
    summed: Counter[str] = Counter()
    for table in tables:
        for key, count in table:
            summed[key] += count
    ordered = tuple(sorted(summed.items(), key=lambda item: (-item[1], item[0])))
    return ordered if top is None else ordered[:top]


def _aligned(series: tuple[int, ...], taken_at: float, minute: int) -> tuple[int, ...]:
    """`series` (ending at `taken_at`'s minute) shifted to end at `minute`."""
    shift = minute - int(taken_at // 60)
    if shift <= 0:
        return series
    return series[shift:] + (0,) * min(shift, len(series))


def merge_snapshots(snapshots: list[StatsSnapshot], now: float) -> StatsSnapshot:
    """The figures of several workers as one: totals, rates and charts added up, top
    tables summed and cut to `TOP`, started at the earliest start.

    Args:
        snapshots: one per worker (at least one), each taken at or before `now`.
        now: the merged snapshot's time.
    """
    started = min(s.started for s in snapshots)
    minute = int(now // 60)
    totals: dict[str, Any] = {name: sum(getattr(s, name) for s in snapshots) for name in _TOTALS}
    series: dict[str, Any] = {name: tuple(map(sum, zip(*(_aligned(getattr(s, name), s.taken_at, minute)
                                         for s in snapshots), strict=True)))
              for name in _SERIES}
    by_category = _sum_tables([s.blocked_by_category for s in snapshots], None)
    return StatsSnapshot(
        taken_at=now,
        started=started,
        uptime_seconds=max(0.0, now - started),
        requests_per_second=sum(s.requests_per_second for s in snapshots),
        top_blocked_hosts=_sum_tables([s.top_blocked_hosts for s in snapshots], TOP),
        top_clients=_sum_tables([s.top_clients for s in snapshots], TOP),
        top_categories=by_category[:TOP],
        blocked_by_category=by_category,
        workers=sum(s.workers for s in snapshots),
        **totals,
        **series,
    )
