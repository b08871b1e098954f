"""metrics.py: /metrics in Prometheus text format, read back with prometheus_client's own
parser: every family's type, every sample's value and labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fwdproxy.accesslog import Exchange
from fwdproxy.site.metrics import METRICS_CONTENT_TYPE, metrics_text
from fwdproxy.stats import NO_CATEGORY, Stats, StatsSnapshot

T0 = 1_704_067_200.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: bytes) -> tuple[dict[str, str], Samples]:
    """(family name → type, (sample name, sorted labels) → value)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, key
            samples[key] = sample.value
    return types, samples


def busy() -> StatsSnapshot:
    stats = Stats(started=T0)
    now = T0 + 125
    rows = [
        ("allow", 200, None, 10), ("deny", 403, "ads", 3), ("deny", 403, 'we"ird\\cat\n', 1),
        ("deny", 403, None, 2), ("auth", 407, None, 4), ("upstream-error", 502, None, 5),
        ("allow", 503, None, 1),
    ]
    for verdict, status, category, n in rows:
        for _ in range(n):
            stats.record(Exchange(client="10.0.0.1", started=now, url="http://a.example/",
                                  status=status, bytes_up=100, bytes_down=1000,
                                  verdict=verdict, category=category), now)
    stats.tunnel_opened()
    stats.tunnel_opened()
    return stats.snapshot(now)


def test_content_type() -> None:
    assert METRICS_CONTENT_TYPE.startswith("text/plain; version=")


def test_families_and_types() -> None:
    types, _ = parse(metrics_text(busy(), rules_entries={("deny", "ads"): 5}))
    counters = ["requests", "requests_allowed", "requests_blocked", "auth_failures", "errors",
                "bytes_up", "bytes_down", "blocked_by_category"]
    gauges = ["open_tunnels", "workers", "uptime_seconds", "requests_per_second", "rule_entries"]
    assert types == {**{f"fwdproxy_{n}": "counter" for n in counters},
                     **{f"fwdproxy_{n}": "gauge" for n in gauges}}


def test_values_and_labels() -> None:
    entries = {("deny", "ads"): 48_211, ("allow", "work"): 12, ("deny", "malware"): 913}
    _, samples = parse(metrics_text(busy(), rules_entries=entries))
    assert samples == {
        ("fwdproxy_requests_total", ()): 26,
        ("fwdproxy_requests_allowed_total", ()): 11,
        ("fwdproxy_requests_blocked_total", ()): 6,
        ("fwdproxy_auth_failures_total", ()): 4,
        ("fwdproxy_errors_total", ()): 6,
        ("fwdproxy_bytes_up_total", ()): 2600,
        ("fwdproxy_bytes_down_total", ()): 26_000,
        ("fwdproxy_blocked_by_category_total", (("category", "ads"),)): 3,
        ("fwdproxy_blocked_by_category_total", (("category", NO_CATEGORY),)): 2,
        # label escaping is the library's: quotes, backslashes and newlines survive
        ("fwdproxy_blocked_by_category_total", (("category", 'we"ird\\cat\n'),)): 1,
        ("fwdproxy_open_tunnels", ()): 2,
        ("fwdproxy_workers", ()): 1,
        ("fwdproxy_uptime_seconds", ()): 125,
        ("fwdproxy_requests_per_second", ()): pytest.approx(26 / 60),
        ("fwdproxy_rule_entries", (("action", "deny"), ("category", "ads"))): 48_211,
        ("fwdproxy_rule_entries", (("action", "allow"), ("category", "work"))): 12,
        ("fwdproxy_rule_entries", (("action", "deny"), ("category", "malware"))): 913,
    }


def test_fresh_proxy_without_rules() -> None:
    types, samples = parse(metrics_text(Stats(started=T0).snapshot(T0), rules_entries={}))
    assert len(types) == 13  # every family is declared, even with no samples
    assert samples[("fwdproxy_requests_total", ())] == 0
    assert samples[("fwdproxy_uptime_seconds", ())] == 0
    assert not any(name in ("fwdproxy_blocked_by_category_total", "fwdproxy_rule_entries")
                   for name, _ in samples)


def test_categories_beyond_the_top_ten_are_all_exported() -> None:
    stats = Stats(started=T0)
    for i in range(25):
        stats.record(Exchange(client="10.0.0.1", started=T0, url=f"h{i}.example:443",
                              status=403, verdict="deny", category=f"c{i:02}"), T0)
    _, samples = parse(metrics_text(stats.snapshot(T0), rules_entries={}))
    exported = {dict(labels)["category"] for name, labels in samples
                if name == "fwdproxy_blocked_by_category_total"}
    assert exported == {f"c{i:02}" for i in range(25)}


def test_no_global_state_between_calls() -> None:
    first = metrics_text(busy(), rules_entries={("deny", "ads"): 1})
    second = metrics_text(busy(), rules_entries={("deny", "ads"): 1})
    assert first == second  # a fresh registry per call: no duplicate-registration error
    assert b"python_gc" not in first and b"process_" not in first  # no default collectors
