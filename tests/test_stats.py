"""stats.py: Stats.record/snapshot with injected time: totals, the minute ring (across an
hour boundary and after long idle gaps), requests per second, bounded top-N, tunnels."""

from __future__ import annotations

import dataclasses

import pytest

from fwdproxy.accesslog import Exchange
from fwdproxy.stats import MAX_KEYS, MINUTES, NO_CATEGORY, Stats, exchange_host

# 2024-01-01 00:00:00 UTC: a whole hour, so minute 0 of the ring is minute 0 of an hour.
T0 = 1_704_067_200.0


def ex(verdict: str = "allow", *, url: str = "http://example.com/", status: int = 200,
       client: str = "10.0.0.1", category: str | None = None, up: int = 0,
       down: int = 0, method: str = "GET") -> Exchange:
    return Exchange(client=client, started=T0, method=method, url=url, status=status,
                    bytes_up=up, bytes_down=down, verdict=verdict, category=category)


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        pytest.param(ex("allow", up=100, down=2000), dict(requests=1, allowed=1, bytes_up=100,
                                                          bytes_down=2000), id="allow"),
        pytest.param(ex("deny", status=403, category="ads"), dict(requests=1, blocked=1),
                     id="deny"),
        pytest.param(ex("auth", status=407), dict(requests=1, auth_failures=1), id="auth"),
        pytest.param(ex("upstream-error", status=502), dict(requests=1, errors=1),
                     id="upstream-error"),
        pytest.param(ex("allow", status=503), dict(requests=1, allowed=1, errors=1),
                     id="origin-5xx"),
        pytest.param(ex("upstream-error", status=0), dict(requests=1, errors=1),
                     id="upstream-error-unanswered"),
        pytest.param(ex("bad-request", status=400), dict(requests=1), id="bad-request"),
        pytest.param(ex("own-page", status=200), dict(requests=1), id="own-page"),
    ],
)
def test_totals(exchange: Exchange, expected: dict[str, int]) -> None:
    stats = Stats(started=T0)
    stats.record(exchange, T0 + 5)
    snap = stats.snapshot(T0 + 5)
    figures = {name: getattr(snap, name) for name in
               ("requests", "allowed", "blocked", "auth_failures", "errors", "bytes_up",
                "bytes_down")}
    assert figures == {name: expected.get(name, 0) for name in figures}


def test_snapshot_of_nothing() -> None:
    snap = Stats(started=T0).snapshot(T0 + 90)
    assert snap.uptime_seconds == 90
    assert snap.requests == snap.open_tunnels == snap.requests_last_minute == 0
    assert snap.requests_per_second == 0
    assert snap.allowed_per_minute == snap.blocked_per_minute == (0,) * MINUTES
    assert snap.top_blocked_hosts == snap.top_clients == snap.top_categories == ()
    assert snap.blocked_by_category == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.requests = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://Example.COM/path?q=1", "example.com"),
        ("http://user:pw@example.com:8080/", "example.com"),
        ("Example.com:443", "example.com"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("http://[::1]:80/", "::1"),
        ("10.1.2.3:8443", "10.1.2.3"),
        ("-", None),
        ("", None),
        ("http://[::1/", None),
        ("/just/a/path", None),
    ],
)
def test_exchange_host(url: str, host: str | None) -> None:
    assert exchange_host(ex(url=url)) == host


def test_minute_series_is_oldest_first_with_the_current_minute_last() -> None:
    stats = Stats(started=T0)
    now = T0 + 59 * 60 + 30  # minute 59 of the first hour
    stats.record(ex("allow"), now)
    stats.record(ex("allow"), now)
    stats.record(ex("deny"), now - 60)          # the minute before
    stats.record(ex("allow"), now - 59 * 60)    # 59 minutes ago: the oldest shown
    snap = stats.snapshot(now)
    assert len(snap.allowed_per_minute) == len(snap.blocked_per_minute) == MINUTES
    assert snap.allowed_per_minute[-1] == 2
    assert snap.allowed_per_minute[0] == 1
    assert snap.blocked_per_minute[-2] == 1
    assert sum(snap.allowed_per_minute) == 3 and sum(snap.blocked_per_minute) == 1


def test_minute_ring_across_an_hour_boundary() -> None:
    stats = Stats(started=T0)
    # one allowed request per minute from 00:30 to 01:29, plus a blocked one at 00:45
    for minute in range(30, 90):
        stats.record(ex("allow"), T0 + minute * 60 + 1)
    stats.record(ex("deny"), T0 + 45 * 60)
    snap = stats.snapshot(T0 + 89 * 60 + 59)   # 01:29:59: the window is 00:30 .. 01:29
    assert snap.allowed_per_minute == (1,) * 60
    assert snap.blocked_per_minute == (0,) * 15 + (1,) + (0,) * 44
    # ten minutes later, 00:30 .. 00:39 have left the window and the slots they used
    # (now 01:30 .. 01:39) read as zero until written again
    snap = stats.snapshot(T0 + 99 * 60)
    assert snap.allowed_per_minute == (1,) * 50 + (0,) * 10
    assert snap.blocked_per_minute == (0,) * 5 + (1,) + (0,) * 54
    # a write into a stale slot resets it rather than adding to the old lap's count
    stats.record(ex("allow"), T0 + 99 * 60)
    assert stats.snapshot(T0 + 99 * 60).allowed_per_minute[-1] == 1


@pytest.mark.parametrize("gap_minutes", [60, 61, 119, 60 * 24 * 365])
def test_minute_ring_after_a_long_idle_gap(gap_minutes: int) -> None:
    stats = Stats(started=T0)
    for minute in range(60):
        stats.record(ex("allow"), T0 + minute * 60)
        stats.record(ex("deny"), T0 + minute * 60)
    later = T0 + 59 * 60 + gap_minutes * 60
    snap = stats.snapshot(later)
    assert snap.allowed_per_minute == snap.blocked_per_minute == (0,) * 60
    assert snap.requests_last_minute == 0 and snap.requests_per_second == 0
    assert snap.allowed == snap.blocked == 60  # the totals are kept
    stats.record(ex("allow"), later)
    assert stats.snapshot(later).allowed_per_minute == (0,) * 59 + (1,)


def test_a_record_stamped_more_than_an_hour_back_does_not_clobber_the_ring() -> None:
    stats = Stats(started=T0)
    stats.record(ex("allow"), T0 + 3600)
    stats.record(ex("allow"), T0)  # same slot, one lap earlier (the clock stepped back)
    snap = stats.snapshot(T0 + 3600)
    assert snap.allowed_per_minute[-1] == 1
    assert snap.allowed == 2


@pytest.mark.parametrize(
    ("started", "stamps", "now", "last_minute", "rate"),
    [
        pytest.param(T0 - 3600, [T0 + i for i in range(120)], T0 + 119.5, 60, 1.0,
                     id="steady-1-per-second"),
        pytest.param(T0 - 3600, [T0] * 30, T0 + 59.9, 30, 0.5, id="burst-inside-window"),
        pytest.param(T0 - 3600, [T0] * 30, T0 + 60, 0, 0.0, id="burst-left-window"),
        pytest.param(T0, [T0 + 1] * 20, T0 + 10, 20, 2.0, id="young-process-uses-uptime"),
        pytest.param(T0, [T0], T0 + 0.2, 1, 1.0, id="first-second-counts-as-one"),
    ],
)
def test_requests_per_second(started: float, stamps: list[float], now: float,
                             last_minute: int, rate: float) -> None:
    stats = Stats(started=started)
    for stamp in stamps:
        stats.record(ex("own-page"), stamp)
    snap = stats.snapshot(now)
    assert snap.requests_last_minute == last_minute
    assert snap.requests_per_second == pytest.approx(rate)


def test_top_tables() -> None:
    stats = Stats(started=T0)
    for host, n, category in [("ads.example", 5, "ads"), ("track.example", 3, "tracking"),
                              ("evil.example", 3, "malware"), ("x.example", 1, None)]:
        for _ in range(n):
            stats.record(ex("deny", url=f"http://{host.upper()}/p", status=403, client="10.0.0.9",
                            category=category), T0)
    stats.record(ex("deny", method="CONNECT", url="ads.example:443", category="ads"), T0)
    stats.record(ex("allow", url="http://ok.example/", client="10.0.0.2"), T0)
    stats.record(ex("deny", url="-", category="ads"), T0)  # no host: counted, not by host
    snap = stats.snapshot(T0)
    assert snap.top_blocked_hosts == (("ads.example", 6), ("evil.example", 3),
                                      ("track.example", 3), ("x.example", 1))
    assert snap.top_categories == (("ads", 7), ("malware", 3), ("tracking", 3),
                                   (NO_CATEGORY, 1))
    assert snap.blocked_by_category == snap.top_categories
    assert snap.top_clients == (("10.0.0.9", 12), ("10.0.0.1", 2), ("10.0.0.2", 1))


def test_top_tables_show_ten_rows_and_metrics_keep_every_category() -> None:
    stats = Stats(started=T0)
    for i in range(15):
        for _ in range(i + 1):
            stats.record(ex("deny", url=f"h{i}.example:443", client=f"10.0.0.{i}",
                            category=f"c{i}"), T0)
    snap = stats.snapshot(T0)
    for table in (snap.top_blocked_hosts, snap.top_clients, snap.top_categories):
        assert len(table) == 10
        assert [n for _, n in table] == list(range(15, 5, -1))
    assert len(snap.blocked_by_category) == 15


def test_top_n_memory_is_bounded_and_heavy_hitters_survive() -> None:
    stats = Stats(started=T0)
    for _ in range(50):
        stats.record(ex("deny", url="heavy.example:443", client="10.9.9.9"), T0)
    for i in range(10 * MAX_KEYS):  # a scan through ten thousand one-off names
        stats.record(ex("deny", url=f"n{i}.example:443", client=f"10.{i >> 8 & 255}.{i & 255}.1"),
                     T0)
        assert len(stats._blocked_hosts.counts) <= MAX_KEYS
        assert len(stats._clients.counts) <= MAX_KEYS
    snap = stats.snapshot(T0)
    assert snap.top_blocked_hosts[0] == ("heavy.example", 50)
    assert snap.top_clients[0] == ("10.9.9.9", 50)
    assert snap.blocked == 50 + 10 * MAX_KEYS


def test_pruning_drops_the_smallest_half() -> None:
    stats = Stats(started=T0)
    for i in range(MAX_KEYS):  # full: the first half seen once, the second half twice
        for _ in range(2 if i >= MAX_KEYS // 2 else 1):
            stats.record(ex("deny", url=f"h{i}.example:443"), T0)
    assert len(stats._blocked_hosts.counts) == MAX_KEYS
    stats.record(ex("deny", url="new.example:443"), T0)
    counts = stats._blocked_hosts.counts
    assert len(counts) == MAX_KEYS // 2 + 1
    assert counts["new.example"] == 1
    assert all(n == 2 for host, n in counts.items() if host != "new.example")


def test_tunnels_gauge() -> None:
    stats = Stats(started=T0)
    for _ in range(3):
        stats.tunnel_opened()
    stats.tunnel_closed()
    assert stats.snapshot(T0).open_tunnels == 2
    for _ in range(5):  # an unmatched close never drives the gauge negative
        stats.tunnel_closed()
    assert stats.snapshot(T0).open_tunnels == 0
    stats.tunnel_opened()
    assert stats.snapshot(T0).open_tunnels == 1


def test_snapshot_is_a_copy() -> None:
    stats = Stats(started=T0)
    stats.record(ex("deny", category="ads"), T0)
    before = stats.snapshot(T0)
    stats.record(ex("deny", category="ads"), T0)
    assert before.blocked == 1 and before.top_categories == (("ads", 1),)
    assert before.blocked_per_minute[-1] == 1
