"""What every client connection shares: built once by the server, passed down explicitly.

Strategy: one `ServerContext` per server (per worker) holds the configuration, the policy
in force, the loaded rules, the origin pool, the access log and the figures; a reload swaps
the rules in one synchronous step. Nothing here waits on the network.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.auth import CredentialCache, FailureThrottle
from fwdproxy.config import Config, LoadedRules
from fwdproxy.logwriter import AccessLog
from fwdproxy.policy import Policy
from fwdproxy.proxy.forward import ForwardSettings
from fwdproxy.proxy.resolver import LocalAddresses
from fwdproxy.proxy.upstream import Pool
from fwdproxy.sharedstats import SharedStats
from fwdproxy.site.refusals import RecentRefusals
from fwdproxy.stats import PUBLISHED_TOP, Stats, StatsSnapshot, merge_snapshots

__all__ = ["ServerContext", "own_host_names"]


@dataclass
class ServerContext:
    """What every connection shares: built once by the server, passed down explicitly."""

    config: Config
    policy: Policy
    loaded: LoadedRules
    pool: Pool
    log: AccessLog
    via: str
    own_names: frozenset[str]
    local_addresses: LocalAddresses = field(default_factory=LocalAddresses)
    draining: bool = False
    idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    reload_requested: trio.Event = field(default_factory=trio.Event)
    # Set when a reload attempt (successful or not) ends; replaced by a fresh one.
    reload_finished: trio.Event = field(default_factory=trio.Event)
    # The time policy windows are checked against (tests inject a fixed one).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    credentials: CredentialCache = field(default_factory=CredentialCache)
    stats: Stats = field(default_factory=lambda: Stats(started=time.time()))
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    # With --workers: the other workers' figures, added to ours on the status page.
    shared: SharedStats | None = None
    # Each client's recent refusals, for its /blocked page.
    refusals: RecentRefusals = field(default_factory=RecentRefusals)

    # The fast lane's decided URLs, by (client, listener, target): see proxy/fastlane.
    fast_routes: dict[tuple[object, ...], object] = field(default_factory=dict)
    # The fast lane's parsed request heads, by their bytes (the limits are fixed at start).
    fast_heads: dict[bytes, object] = field(default_factory=dict)

    forward_settings: ForwardSettings = field(init=False)

    def __post_init__(self) -> None:
        timeouts = self.config.timeouts
        self.forward_settings = ForwardSettings(self.via, timeouts.upstream_read,
                                                timeouts.client_idle, timeouts.tunnel_idle)

    def finish(self, exchange: Exchange) -> None:
        """An exchange is over: log it and count it."""
        self.log.write(exchange)
        self.stats.record(exchange, time.time())
        if exchange.verdict == "deny":
            self.refusals.note(exchange)
        if self.shared is not None:
            self.shared.store(self.stats)

    async def figures(self) -> StatsSnapshot:
        """The figures for the status page and /metrics: this process's, plus the other
        workers' last published ones when there are workers."""
        now = time.time()
        if self.shared is None:
            return self.stats.snapshot(now)
        others = await trio.to_thread.run_sync(self.shared.others)
        return merge_snapshots([self.stats.snapshot(now, top=PUBLISHED_TOP), *others], now)

    def request_reload(self) -> None:
        """Reload the rules folder now (SIGHUP), whether or not a file changed."""
        self.reload_requested.set()

    def swap_rules(self, loaded: LoadedRules) -> None:
        """Put a freshly loaded rule set in force. One synchronous step: a request sees
        the old set or the new one, never a mix; requests in flight keep theirs."""
        self.policy = self.policy.with_rules(loaded.rules, loaded.policies)
        self.loaded = loaded
        self.fast_routes.clear()  # they hold the old policy (and its rules) alive
        self.credentials.clear()  # a changed password must not stay accepted

    def begin_drain(self) -> None:
        """Stop taking new requests: idle keep-alive connections close now."""
        self.draining = True
        for scope in self.idle_scopes:
            scope.cancel()


def own_host_names(via: str) -> frozenset[str]:
    """Names that mean this proxy in a Host header: localhost, the host's names, Via's."""
    # No getfqdn(): it may wait on DNS, and start-up must not.
    names = {"localhost", socket.gethostname().lower()}
    names.add(via.rsplit(":", 1)[0].lower())
    return frozenset(n.rstrip(".") for n in names if n)
