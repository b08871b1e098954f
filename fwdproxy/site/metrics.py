"""/metrics: the status figures in the Prometheus text exposition format.

Strategy: no process-global registry and no live metric objects. Each scrape builds a fresh
`CollectorRegistry` holding one collector that turns a `StatsSnapshot` (plus the rule
counts) into metric families, and prometheus_client's own `generate_latest` renders it, so
the escaping of label values and the format's details are the library's. The counters come
from `Stats`' running totals, which only grow for the life of the process, as Prometheus
counters must. Pure apart from the prometheus_client import: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fwdproxy.stats import StatsSnapshot

# The Content-Type to send with `metrics_text`'s body.
METRICS_CONTENT_TYPE: str = CONTENT_TYPE_LATEST


class _SnapshotCollector:
    """Yields the metric families of one snapshot (a prometheus_client Collector)."""

    def __init__(self, snapshot: StatsSnapshot, rules_entries: Mapping[tuple[str, str], int]):
        self.snapshot = snapshot
        self.rules_entries = rules_entries

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        counters = [
            ("requests", "Requests and tunnels finished.", s.requests),
            ("requests_allowed", "Requests allowed by the policy.", s.allowed),
            ("requests_blocked", "Requests denied by the policy.", s.blocked),
            ("auth_failures", "Requests refused for missing or wrong proxy credentials.",
             s.auth_failures),
            ("errors", "Requests answered with a 5xx status or failed upstream.", s.errors),
            ("bytes_up", "Bytes received from clients.", s.bytes_up),
            ("bytes_down", "Bytes sent to clients.", s.bytes_down),
        ]
        for name, doc, value in counters:
            # CounterMetricFamily adds the _total suffix to the sample name.
            yield CounterMetricFamily(f"fwdproxy_{name}", doc, value=value)
        by_category = CounterMetricFamily("fwdproxy_blocked_by_category",
                                          "Requests denied, by the deciding rule's category.",
                                          labels=["category"])
        for category, count in s.blocked_by_category:
            by_category.add_metric([category], count)
        yield by_category
        yield GaugeMetricFamily("fwdproxy_open_tunnels", "CONNECT tunnels open now.",
                                value=s.open_tunnels)
        yield GaugeMetricFamily("fwdproxy_workers", "Worker processes these figures add up.",
                                value=s.workers)
        yield GaugeMetricFamily("fwdproxy_uptime_seconds", "Seconds since the proxy started.",
                                value=s.uptime_seconds)
        yield GaugeMetricFamily("fwdproxy_requests_per_second",
                                "Requests finished per second, over the last minute.",
                                value=s.requests_per_second)
        entries = GaugeMetricFamily("fwdproxy_rule_entries",
                                    "Entries in the loaded rule set, by action and category.",
                                    labels=["action", "category"])
        for (action, category), count in sorted(self.rules_entries.items()):
            entries.add_metric([action, category], count)
        yield entries


def metrics_text(snapshot: StatsSnapshot, *,
                 rules_entries: Mapping[tuple[str, str], int]) -> bytes:
    """The body of /metrics.

    Args:
        snapshot: the figures, from `Stats.snapshot()`.
        rules_entries: `RuleSet.counts` of the loaded rules (empty when there are none).
    Returns:
        Prometheus text exposition, to be sent with `METRICS_CONTENT_TYPE`.
    """
    registry = CollectorRegistry()
    registry.register(_SnapshotCollector(snapshot, rules_entries))
    return generate_latest(registry)
