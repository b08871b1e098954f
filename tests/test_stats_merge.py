"""stats.py, the --workers additions: a snapshot as JSON-ready values and back, the sum of
several workers' snapshots (`merge_snapshots`), `Stats.carry_on` for a restarted worker and
`Stats.snapshot(top=)` for the wide tables workers publish.

Pure: snapshots are built from `Exchange` records with injected times, as in test_stats.py.
Hypothesis checks that splitting exchanges over workers and merging their snapshots gives
the figures one process would have counted.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdproxy.stats import (
    MINUTES,
    PUBLISHED_TOP,
    TOP,
    Stats,
    StatsSnapshot,
    merge_snapshots,
    snapshot_from_dict,
    snapshot_to_dict,
)
from tests.test_stats import T0, ex


def busy_stats(started: float = T0, now: float = T0 + 600) -> Stats:
    """A Stats with a bit of everything: every verdict, categories, hosts, clients, bytes,
    tunnels, and records spread over several minutes."""
    stats = Stats(started=started)
    for i in range(30):
        stats.record(ex("allow", client=f"10.0.0.{i % 7}", up=100 + i, down=1000 * i),
                     now - 60 * (i % 5) - i)
    for i in range(12):
        stats.record(ex("deny", url=f"http://h{i % 4}.example/", status=403,
                        client=f"10.0.1.{i % 3}", category=("ads", "tracking", None)[i % 3]),
                     now - 60 * (i % 3))
    stats.record(ex("auth", status=407), now)
    stats.record(ex("upstream-error", status=502), now)
    stats.record(ex("allow", status=503), now - 1)
    stats.tunnel_opened()
    stats.tunnel_opened()
    return stats


def figures(snapshot: StatsSnapshot) -> dict[str, Any]:
    """Every field but the ones that depend on when the snapshot was taken."""
    data = dataclasses.asdict(snapshot)
    for name in ("taken_at", "uptime_seconds"):
        del data[name]
    return data


# -- to and from plain values ------------------------------------------------------------


def test_round_trip() -> None:
    snap = busy_stats().snapshot(T0 + 600, top=PUBLISHED_TOP)
    assert snap.requests > 0 and snap.top_blocked_hosts and snap.blocked_by_category
    assert snapshot_from_dict(snapshot_to_dict(snap)) == snap


def test_round_trip_through_json() -> None:
    snap = busy_stats().snapshot(T0 + 600.123456, top=PUBLISHED_TOP)
    text = json.dumps(snapshot_to_dict(snap))
    assert snapshot_from_dict(json.loads(text)) == snap


def test_round_trip_keeps_the_worker_count_and_a_merged_snapshot() -> None:
    a = busy_stats().snapshot(T0 + 600)
    merged = merge_snapshots([a, busy_stats(started=T0 + 5).snapshot(T0 + 599)], T0 + 600)
    assert merged.workers == 2
    for snap in (dataclasses.replace(a, workers=7), merged):
        assert snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snap)))) == snap


def test_round_trip_of_an_empty_snapshot() -> None:
    snap = Stats(started=T0).snapshot(T0)
    assert snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snap)))) == snap


def test_dict_is_plain_json_values() -> None:
    data = snapshot_to_dict(busy_stats().snapshot(T0 + 600))
    assert json.loads(json.dumps(data)) == data  # lists, not tuples; no other types
    assert data["top_clients"][0] == [data["top_clients"][0][0], data["top_clients"][0][1]]
    assert len(data["allowed_per_minute"]) == MINUTES


def test_uptime_is_recomputed_from_the_times() -> None:
    data = snapshot_to_dict(Stats(started=T0).snapshot(T0 + 42))
    assert snapshot_from_dict(data).uptime_seconds == 42
    data["started"] = T0 + 100  # a clock that stepped: never a negative uptime
    assert snapshot_from_dict(data).uptime_seconds == 0


def test_a_dict_without_workers_counts_one() -> None:
    data = snapshot_to_dict(dataclasses.replace(busy_stats().snapshot(T0 + 600), workers=3))
    del data["workers"]
    assert snapshot_from_dict(data).workers == 1


def _good() -> dict[str, Any]:
    return snapshot_to_dict(busy_stats().snapshot(T0 + 600))


@pytest.mark.parametrize("data", [None, [], "", "{}", 42, 1.5, [["taken_at", 1.0]], b"x"],
                         ids=repr)
def test_from_dict_refuses_what_is_not_a_dict(data: Any) -> None:
    with pytest.raises(ValueError, match="not a stats snapshot"):
        snapshot_from_dict(data)


@pytest.mark.parametrize("key", sorted(set(_good()) - {"workers"}))
def test_from_dict_refuses_a_missing_key(key: str) -> None:
    data = _good()
    del data[key]
    with pytest.raises(ValueError, match="not a stats snapshot"):
        snapshot_from_dict(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("taken_at", None),
        ("taken_at", "yesterday"),
        ("started", [1]),
        ("requests_per_second", {}),
        ("requests", "many"),
        ("allowed", None),
        ("bytes_up", "1e3"),
        ("open_tunnels", [2]),
        ("workers", "two"),
        ("workers", None),
        ("allowed_per_minute", 5),
        ("allowed_per_minute", None),
        ("allowed_per_minute", ["x"] * MINUTES),
        ("blocked_per_minute", [0] * (MINUTES - 1)),
        ("blocked_per_minute", [0] * (MINUTES + 1)),
        ("blocked_per_minute", []),
        ("top_clients", 5),
        ("top_clients", [["10.0.0.1"]]),
        ("top_clients", [["10.0.0.1", 1, 2]]),
        ("top_clients", [["10.0.0.1", "lots"]]),
        ("top_blocked_hosts", [None]),
        ("top_categories", [5]),
        ("blocked_by_category", {"ads": 3}),  # a dict's keys are strings, not pairs
    ],
)
def test_from_dict_refuses_wrong_types_and_lengths(key: str, value: Any) -> None:
    data = _good()
    data[key] = value
    with pytest.raises(ValueError, match="not a stats snapshot"):
        snapshot_from_dict(data)


# -- merging -----------------------------------------------------------------------------


def test_merge_adds_totals_rates_and_workers() -> None:
    a = busy_stats(started=T0 + 100).snapshot(T0 + 600)
    b = Stats(started=T0 + 50)
    b.record(ex("allow", up=7, down=9), T0 + 590)
    b.record(ex("deny", url="http://b.example/", category="ads"), T0 + 590)
    b.tunnel_opened()
    b_snap = dataclasses.replace(b.snapshot(T0 + 599.5), workers=2)  # itself a merge of two
    merged = merge_snapshots([a, b_snap], T0 + 600)
    for name in ("requests", "allowed", "blocked", "auth_failures", "errors", "bytes_up",
                 "bytes_down", "open_tunnels", "requests_last_minute"):
        assert getattr(merged, name) == getattr(a, name) + getattr(b_snap, name), name
    assert merged.requests_per_second == pytest.approx(a.requests_per_second
                                                       + b_snap.requests_per_second)
    assert merged.workers == 3
    assert merged.open_tunnels == 3
    assert merged.taken_at == T0 + 600
    assert merged.started == T0 + 50  # the earliest
    assert merged.uptime_seconds == 550


def test_merge_sums_top_tables_by_key() -> None:
    a, b = Stats(started=T0), Stats(started=T0)
    for stats, host, n in [(a, "both.example", 3), (a, "only-a.example", 4),
                           (b, "both.example", 2), (b, "only-b.example", 1)]:
        for _ in range(n):
            stats.record(ex("deny", url=f"http://{host}/", client=f"10.0.0.{n}"), T0)
    merged = merge_snapshots([a.snapshot(T0), b.snapshot(T0)], T0)
    assert merged.top_blocked_hosts == (("both.example", 5), ("only-a.example", 4),
                                        ("only-b.example", 1))
    # clients 10.0.0.3 (a) and 10.0.0.2 (b) are different keys; 10.0.0.4 and .1 too
    assert merged.top_clients == (("10.0.0.4", 4), ("10.0.0.3", 3), ("10.0.0.2", 2),
                                  ("10.0.0.1", 1))


def test_merge_cuts_top_tables_to_ten_with_ties_by_name() -> None:
    snaps = []
    for worker in range(3):
        stats = Stats(started=T0)
        for i in range(8):
            stats.record(ex("deny", url=f"http://w{worker}-{i}.example/",
                            client=f"10.{worker}.0.{i}", category=f"c{worker}-{i}"), T0)
        snaps.append(stats.snapshot(T0, top=PUBLISHED_TOP))
    merged = merge_snapshots(snaps, T0)
    expected = tuple((f"w{w}-{i}.example", 1) for w in range(3) for i in range(8))[:TOP]
    assert merged.top_blocked_hosts == expected
    assert len(merged.top_clients) == len(merged.top_categories) == TOP
    assert len(merged.blocked_by_category) == 24  # /metrics keeps every category


def test_a_name_outside_every_workers_top_ten_can_top_the_merge() -> None:
    """What the wide published tables are for: `shared.example` is 11th at both workers,
    yet first once their counts are added."""
    snaps = []
    for worker in range(2):
        stats = Stats(started=T0)
        for i in range(TOP):
            for _ in range(20 + i):
                stats.record(ex("deny", url=f"http://w{worker}-{i}.example/",
                                client=f"10.{worker}.0.{i}", category=f"c{worker}-{i}"), T0)
        for _ in range(19):
            stats.record(ex("deny", url="http://shared.example/", client="10.9.9.9",
                            category="shared"), T0)
        snap = stats.snapshot(T0, top=PUBLISHED_TOP)
        assert ("shared.example", 19) in snap.top_blocked_hosts[TOP:]
        assert ("shared.example", 19) not in stats.snapshot(T0).top_blocked_hosts
        snaps.append(snap)
    merged = merge_snapshots(snaps, T0)
    assert merged.top_blocked_hosts[0] == ("shared.example", 38)
    assert merged.top_clients[0] == ("10.9.9.9", 38)
    assert merged.top_categories[0] == ("shared", 38)
    assert len(merged.top_blocked_hosts) == TOP


def test_merge_takes_top_categories_from_the_summed_categories() -> None:
    a, b = Stats(started=T0), Stats(started=T0)
    # "rare" is last at each worker, but the merged counts put it first.
    for stats, counts in [(a, {"ads": 3, "rare": 2}), (b, {"tracking": 4, "rare": 3})]:
        for category, n in counts.items():
            for _ in range(n):
                stats.record(ex("deny", category=category), T0)
    # A snapshot's top_categories may be cut short; blocked_by_category is the whole count.
    a_snap = dataclasses.replace(a.snapshot(T0), top_categories=(("ads", 3),))
    b_snap = dataclasses.replace(b.snapshot(T0), top_categories=())
    merged = merge_snapshots([a_snap, b_snap], T0)
    assert merged.blocked_by_category == (("rare", 5), ("tracking", 4), ("ads", 3))
    assert merged.top_categories == merged.blocked_by_category


def test_merge_aligns_series_taken_in_different_minutes() -> None:
    now = T0 + 30 * 60 + 5  # 00:30:05
    a, b = Stats(started=T0), Stats(started=T0)
    a.record(ex("allow"), now)               # minute 30
    a.record(ex("allow"), now - 60)          # minute 29
    b.record(ex("allow"), now - 10)          # minute 29, b's current minute when it published
    b.record(ex("allow"), now - 10)
    b.record(ex("allow"), now - 30 * 60)     # minute 0
    b.record(ex("deny"), now - 10)
    b_snap = b.snapshot(now - 6)             # 00:29:59, the minute before
    assert b_snap.allowed_per_minute[-1] == 2
    merged = merge_snapshots([a.snapshot(now), b_snap], now)
    expected_b = (*b_snap.allowed_per_minute[1:], 0)  # shifted left by one, 0 at the end
    assert merged.allowed_per_minute == tuple(
        x + y for x, y in zip(a.snapshot(now).allowed_per_minute, expected_b, strict=True))
    assert merged.allowed_per_minute[-1] == 1
    assert merged.allowed_per_minute[-2] == 1 + 2
    assert merged.allowed_per_minute[-31] == 1  # b's minute 0
    assert merged.blocked_per_minute == (0,) * (MINUTES - 2) + (1, 0)


@pytest.mark.parametrize("minutes_old", [0, 1, 59, 60, 61, 1000])
def test_merge_drops_what_left_the_hour(minutes_old: int) -> None:
    now = T0 + 2 * 3600 + 30
    old = Stats(started=T0)
    old.record(ex("allow"), now - minutes_old * 60)
    merged = merge_snapshots([old.snapshot(now - minutes_old * 60)], now)
    assert len(merged.allowed_per_minute) == MINUTES
    expected = [0] * MINUTES
    if minutes_old < MINUTES:
        expected[MINUTES - 1 - minutes_old] = 1
    assert merged.allowed_per_minute == tuple(expected)


def test_merge_of_one_snapshot_is_that_snapshot() -> None:
    snap = busy_stats().snapshot(T0 + 600)
    assert merge_snapshots([snap], snap.taken_at) == snap


# -- hypothesis: merging the workers' shares gives what one process counts ---------------

_EXCHANGE = st.tuples(
    st.integers(0, 2),                                         # the worker that served it
    st.sampled_from(["allow", "deny", "auth", "upstream-error", "own-page"]),
    st.integers(0, 12),                                        # host
    st.integers(0, 12),                                        # client
    st.sampled_from(["ads", "tracking", "malware", None]),     # category
    st.integers(0, 3599),                                      # second of the hour
    st.integers(0, 5000),                                      # bytes
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_EXCHANGE, max_size=120), st.integers(1, 3))
def test_merged_shares_equal_one_process(records: list[tuple[Any, ...]], workers: int) -> None:
    now = T0 + 3599.5
    whole = Stats(started=T0)
    shares = [Stats(started=T0) for _ in range(workers)]
    for worker, verdict, host, client, category, second, size in sorted(records,
                                                                         key=lambda r: r[5]):
        exchange = ex(verdict, url=f"http://h{host}.example/", client=f"10.0.0.{client}",
                      category=category, status=403 if verdict == "deny" else 200,
                      up=size, down=2 * size)
        whole.record(exchange, T0 + second)
        shares[worker % workers].record(exchange, T0 + second)
    expected = whole.snapshot(now)
    merged = merge_snapshots([s.snapshot(now, top=PUBLISHED_TOP) for s in shares], now)
    assert merged.requests == len(records)
    assert merged.workers == workers
    assert merged.requests_per_second == pytest.approx(expected.requests_per_second)
    assert figures(merged) | {"requests_per_second": 0, "workers": 1} == (
        figures(expected) | {"requests_per_second": 0})


@settings(max_examples=100, deadline=None)
@given(st.lists(_EXCHANGE, max_size=60), st.floats(0, 59.9))
def test_merge_of_one_snapshot_equals_itself_later_in_the_minute(
        records: list[tuple[Any, ...]], later: float) -> None:
    taken_at = T0 + 3600 + 0.05  # the first second of an hour's first minute
    stats = Stats(started=T0)
    for _, verdict, host, client, category, second, size in sorted(records, key=lambda r: r[5]):
        stats.record(ex(verdict, url=f"http://h{host}.example/", client=f"10.0.0.{client}",
                        category=category, up=size), T0 + 1 + second)
    snap = stats.snapshot(taken_at)
    merged = merge_snapshots([snap], taken_at + later)
    assert figures(merged) == figures(snap)
    assert merged.taken_at == taken_at + later
    assert merged.uptime_seconds == pytest.approx(snap.uptime_seconds + later)


# -- a restarted worker ------------------------------------------------------------------


def test_carry_on_continues_the_totals_and_categories() -> None:
    previous = busy_stats(started=T0).snapshot(T0 + 600, top=PUBLISHED_TOP)
    fresh = Stats(started=T0 + 700)
    fresh.carry_on(previous)
    snap = fresh.snapshot(T0 + 700)
    for name in ("requests", "allowed", "blocked", "auth_failures", "errors", "bytes_up",
                 "bytes_down"):
        assert getattr(snap, name) == getattr(previous, name), name
    assert snap.blocked_by_category == previous.blocked_by_category
    assert snap.top_categories == previous.blocked_by_category[:TOP]
    # Not carried: the start, the gauge of open tunnels, the charts, the rates, hosts, clients.
    assert snap.started == T0 + 700
    assert snap.open_tunnels == 0
    assert snap.allowed_per_minute == snap.blocked_per_minute == (0,) * MINUTES
    assert snap.requests_last_minute == 0 and snap.requests_per_second == 0
    assert snap.top_blocked_hosts == snap.top_clients == ()

    fresh.record(ex("deny", url="http://new.example/", category="ads", up=5), T0 + 701)
    fresh.record(ex("allow", down=10), T0 + 701)
    later = fresh.snapshot(T0 + 702)
    assert later.requests == previous.requests + 2
    assert later.blocked == previous.blocked + 1 and later.allowed == previous.allowed + 1
    assert later.bytes_up == previous.bytes_up + 5
    assert later.bytes_down == previous.bytes_down + 10
    assert dict(later.blocked_by_category)["ads"] == dict(previous.blocked_by_category)["ads"] + 1


def test_carry_on_twice_for_a_worker_restarted_twice() -> None:
    first = busy_stats().snapshot(T0 + 600)
    second = Stats(started=T0 + 700)
    second.carry_on(first)
    second.record(ex("allow"), T0 + 701)
    third = Stats(started=T0 + 800)
    third.carry_on(second.snapshot(T0 + 750))
    assert third.snapshot(T0 + 800).requests == first.requests + 1
    assert third.snapshot(T0 + 800).allowed == first.allowed + 1


def test_carry_on_through_the_published_file_format() -> None:
    previous = busy_stats().snapshot(T0 + 600, top=PUBLISHED_TOP)
    fresh = Stats(started=T0 + 700)
    fresh.carry_on(snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(previous)))))
    assert fresh.snapshot(T0 + 700).requests == previous.requests


# -- wide tables -------------------------------------------------------------------------


def test_snapshot_top_gives_up_to_that_many_rows() -> None:
    stats = Stats(started=T0)
    for i in range(150):
        for _ in range(1 + i % 5):
            stats.record(ex("deny", url=f"http://h{i:03}.example/", client=f"10.0.{i}.1",
                            category=f"c{i:03}"), T0)
    wide = stats.snapshot(T0, top=PUBLISHED_TOP)
    assert PUBLISHED_TOP == 100
    for table in (wide.top_blocked_hosts, wide.top_clients, wide.top_categories):
        assert len(table) == 100
        counts = [n for _, n in table]
        assert counts == sorted(counts, reverse=True)
        assert counts[0] == 5
    assert len(wide.blocked_by_category) == 150
    narrow = stats.snapshot(T0)
    assert narrow.top_blocked_hosts == wide.top_blocked_hosts[:TOP]
    assert narrow.top_clients == wide.top_clients[:TOP]
    assert narrow.top_categories == wide.top_categories[:TOP]
    few = Stats(started=T0)
    few.record(ex("deny", url="http://one.example/"), T0)
    assert few.snapshot(T0, top=PUBLISHED_TOP).top_blocked_hosts == (("one.example", 1),)
