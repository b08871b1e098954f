"""Listeners, accept loops, the handler nursery, and graceful shutdown.

Strategy: every listener is opened before anything is served, so a port in use fails
start-up as a whole (`ConfigError`). Each accepted connection runs as one task in the
handler nursery; a bug in one connection is logged and closes that connection only. On
shutdown the accept loops stop, idle keep-alive connections close, requests in flight get
`timeouts.shutdown_grace` seconds, and whatever is left is then cancelled.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.config import Config, Listen, LoadedRules, load_rules, rules_fingerprint
from fwdproxy.errors import ConfigError, ServiceUnavailable
from fwdproxy.logwriter import AccessLog
from fwdproxy.policy.names import IPAddress, socket_address
from fwdproxy.policy.rulefiles import release_freed_memory
from fwdproxy.proxy.connection import handle
from fwdproxy.proxy.context import ServerContext, own_host_names
from fwdproxy.proxy.ownpages import Reached
from fwdproxy.proxy.replies import close_gracefully, raw_error_response
from fwdproxy.proxy.upstream import Pool
from fwdproxy.sharedstats import PUBLISH_INTERVAL, SharedStats
from fwdproxy.stats import PUBLISHED_TOP

# Accept errors that mean "out of a resource for now": back off briefly and go on, as
# trio.serve_listeners does, rather than spin or die.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_BACKOFF = 0.1
# Connections accepted per wake-up at most; after a full burst the loop lets the others run.
_ACCEPT_BURST = 64
# Accept errors of one connection only (reset, refused by a firewall): it is skipped, as
# trio's SocketListener skips them.
_SKIPPED_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET,
                   errno.ETIMEDOUT, errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTDOWN,
                   errno.EHOSTUNREACH, errno.ENOPROTOOPT, errno.EOPNOTSUPP}
# Problems in rule files printed after a reload; `fwdproxy check --lint` lists them all.
MAX_REPORTED_PROBLEMS = 50
# How often the access-log buffer is written out.
LOG_FLUSH_INTERVAL = 1.0


def report_rules(loaded: LoadedRules, what: str = "") -> None:
    """Say on stderr what was loaded and which lines were skipped, with file:line."""
    print(f"fwdproxy: {what}{loaded.summary}", file=sys.stderr, flush=True)
    for problem in loaded.errors[:MAX_REPORTED_PROBLEMS]:
        print(f"fwdproxy: skipped {problem}", file=sys.stderr)
    if len(loaded.errors) > MAX_REPORTED_PROBLEMS:
        print(f"fwdproxy: ... and {len(loaded.errors) - MAX_REPORTED_PROBLEMS} more "
              "(fwdproxy check --lint lists them all)", file=sys.stderr, flush=True)


def _watched(config: Config) -> tuple[Path, ...]:
    """Files outside the rules folder that reload with it."""
    return (config.auth.htpasswd,) if config.auth is not None else ()


def _load_or_keep(config: Config) -> LoadedRules | None:
    """The rules folder read anew, or None (said on stderr) when it fails to load and the
    rules in force must stay. Blocking: call it in a thread from trio."""
    try:
        return load_rules(config.rules, config.auth)
    except ConfigError as exc:
        print(f"fwdproxy: reload failed, keeping the rules in force: {exc}",
              file=sys.stderr, flush=True)
        return None


def refreshed_rules(config: Config, loaded: LoadedRules) -> LoadedRules:
    """`loaded`, or the rules folder read anew when one of its files (or the htpasswd
    file) changed since `loaded` was read. A folder that fails to load keeps `loaded`.
    Blocking: call it in a thread from trio."""
    if rules_fingerprint(config.rules, _watched(config)) == loaded.fingerprint:
        return loaded
    fresh = _load_or_keep(config)
    if fresh is None:
        return loaded
    report_rules(fresh, "reloaded ")
    return fresh


@dataclass(frozen=True, slots=True)
class Bound:
    """One bound listening socket: its address (None for a wildcard) and port."""

    address: IPAddress | None
    port: int

    def __str__(self) -> str:
        if self.address is None:
            return f"*:{self.port}"
        return f"[{self.address}]:{self.port}" if self.address.version == 6 else f"{self.address}:{self.port}"


class Listeners(list[trio.SocketListener]):
    """Bound listeners, and which of them expect a PROXY protocol header first."""

    def __init__(self) -> None:
        super().__init__()
        self.proxy_protocol: list[bool] = []


async def open_listeners(listen: tuple[Listen, ...]) -> Listeners:
    """Bind every configured address, or none.

    Raises:
        ConfigError: naming the address that could not be bound and why.
    """
    listeners = Listeners()
    try:
        for item in listen:
            try:
                opened = await trio.open_tcp_listeners(item.port, host=item.host)
                listeners.extend(opened)
                listeners.proxy_protocol.extend([item.proxy_protocol] * len(opened))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if exc.errno == errno.EADDRINUSE:
                    reason = "address already in use"
                raise ConfigError(f"cannot listen on {item}: {reason}") from None
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


def _accept_pending(raw: socket.socket) -> list[tuple[socket.socket, Any]]:
    """The connections waiting on a listening socket (up to a burst), with their peers.

    Raises:
        OSError: out of a resource (EMFILE...) before anything was accepted; when some
            were accepted already, those are returned and the error comes again next time.
    """
    accepted: list[tuple[socket.socket, Any]] = []
    while len(accepted) < _ACCEPT_BURST:
        try:
            accepted.append(raw.accept())
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno in _SKIPPED_ERRNOS:
                continue
            if accepted:
                break
            raise
    return accepted


def _bound(listener: trio.SocketListener) -> Bound:
    host, port = listener.socket.getsockname()[:2]
    address = socket_address(host)
    return Bound(None if address.is_unspecified else address, int(port))


@dataclass(frozen=True, slots=True)
class Running:
    """What `serve` reports once it accepts connections."""

    bound: list[Bound]
    context: ServerContext


async def serve(
    config: Config,
    *,
    shutdown: trio.Event,
    listeners: Listeners | None = None,
    loaded: LoadedRules | None = None,
    clock: Callable[[], datetime] | None = None,
    shared: SharedStats | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the proxy until `shutdown` is set, then drain and return.

    Reports the bound addresses (and the shared context) through `task_status` once it
    accepts connections.

    Args:
        config: the configuration.
        shutdown: set it to stop accepting, drain and return.
        listeners: already opened listeners (see `open_listeners`); opened here when None.
        loaded: the rules folder as read by `config.load_rules`; read here when None.
        clock: the time policy.yaml windows are checked against (default: the real time).
        shared: with --workers, where this worker publishes its figures and reads the
            others' (see `sharedstats`).

    Raises:
        ConfigError: a listening address could not be bound (nothing was started).
    """
    if loaded is None:
        loaded = load_rules(config.rules, config.auth)
    if listeners is None:
        listeners = await open_listeners(config.listen)
    bound = [_bound(listener) for listener in listeners]
    ctx = _context(config, loaded, bound, clock, shared)
    server = _Server(ctx)
    try:
        async with trio.open_nursery() as system:
            system.start_soon(ctx.pool.run)
            system.start_soon(server.flush_log)
            if shared is not None:
                system.start_soon(server.publish_stats, shared)
            if config.rules is not None or config.auth is not None:
                system.start_soon(server.watch_rules)
            async with trio.open_nursery() as handlers:
                async with trio.open_nursery() as acceptors:
                    for each in zip(listeners, listeners.proxy_protocol, bound, strict=True):
                        acceptors.start_soon(server.accept_loop, *each, handlers)
                    task_status.started(Running(bound, ctx))
                    await shutdown.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    await listener.aclose()
                ctx.begin_drain()
                handlers.cancel_scope.deadline = trio.current_time() + config.timeouts.shutdown_grace
            system.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()
        ctx.log.close()


def _context(config: Config, loaded: LoadedRules, bound: list[Bound],
             clock: Callable[[], datetime] | None, shared: SharedStats | None) -> ServerContext:
    """What every connection of this server shares; a worker that replaces one that died
    carries on its figures."""
    via = config.via_name(bound[0].port)
    policy = config.policy(loaded).with_listeners((b.address, b.port) for b in bound)
    limits = config.limits
    pool = Pool(max_idle=limits.pool_max_idle, max_idle_per_host=limits.pool_max_idle_per_host,
                idle_timeout=limits.pool_idle)
    log = AccessLog(config.access_log, config.access_log_format)
    ctx = ServerContext(config=config, policy=policy, loaded=loaded, pool=pool, log=log, via=via,
                        own_names=own_host_names(via))
    if clock is not None:
        ctx.clock = clock
    if shared is not None:
        ctx.shared = shared
        ctx.stats.started = shared.started
        previous = shared.read(shared.index)
        totals = shared.open_counters()
        if previous is not None or totals is not None:  # this worker replaces one that died
            ctx.stats.carry_on(previous, totals)
    return ctx


class _Server:
    """The server's own tasks: accepting, handling within the connection limit, watching
    the rules, flushing the log and publishing the figures."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.active = 0  # connections being handled

    async def run_handler(self, stream: trio.SocketStream, proxy_protocol: bool,
                          peer: Any, reached: Reached | None) -> None:
        try:  # self.active was counted by the accept loop
            await handle(stream, self.ctx, proxy_protocol=proxy_protocol, peer=peer,
                         reached=reached)
        except Exception:  # a bug must cost one connection, never the proxy
            print("fwdproxy: internal error in a connection handler:", file=sys.stderr)
            traceback.print_exc()
        finally:
            self.active -= 1

    async def refuse_overload(self, stream: trio.SocketStream) -> None:
        limit = self.ctx.config.limits.max_connections
        refusal = ServiceUnavailable(f"the proxy is at its limit of {limit} connections")
        exchange = Exchange(client="-", started=time.time(), status=refusal.status,
                            verdict=refusal.verdict, source="config:limits.max_connections",
                            detail=refusal.detail)
        exchange.answered_by_proxy = True
        try:
            exchange.client = stream.socket.getpeername()[0]
            await stream.send_all(raw_error_response(refusal))
            await close_gracefully(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.aclose()
        finally:
            self.ctx.finish(exchange)

    async def accept_loop(self, listener: trio.SocketListener, proxy_protocol: bool,
                          bound: Bound, handlers: trio.Nursery) -> None:
        """Accept connections, every pending one per wake-up (one wait for a burst of
        them), and start a handler for each; `bound` is the listener's address when it is
        not a wildcard (then no connection needs to ask its socket which one it reached).
        """
        limit = self.ctx.config.limits.max_connections
        sock = listener.socket
        # A second descriptor of the listening socket, for accept() without trio's wrapper
        # (which waits once per connection); it shares the non-blocking file description.
        raw = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        reached = Reached(bound.address, bound.port) if bound.address is not None else None
        try:
            while True:
                try:
                    accepted = _accept_pending(raw)
                except OSError as exc:
                    if exc.errno not in _RESOURCE_ERRNOS:
                        raise
                    print(f"fwdproxy: accept: {exc.strerror}; backing off", file=sys.stderr)
                    await trio.sleep(_ACCEPT_BACKOFF)
                    continue
                for conn, peer in accepted:
                    stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                    if self.active >= limit:
                        handlers.start_soon(self.refuse_overload, stream)
                    else:
                        self.active += 1  # counted now: the rest of the burst sees it
                        handlers.start_soon(self.run_handler, stream, proxy_protocol, peer, reached)
                try:
                    if len(accepted) == _ACCEPT_BURST:
                        await trio.lowlevel.checkpoint()  # a flood must not hold the loop
                    else:
                        await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    return
        finally:
            raw.close()

    async def watch_rules(self) -> None:
        """Reload on request (SIGHUP) or when a rules file changes; the new set is built
        in a worker thread, off the event loop, and swapped in only if it loads."""
        ctx = self.ctx
        config = ctx.config
        root, watched = config.rules, _watched(config)
        seen = ctx.loaded.fingerprint
        # The first check is at once: the files may have changed since they were read
        # (with --workers, the supervisor read them before it forked this worker).
        wait = 0.0
        while True:
            with trio.move_on_after(wait):
                await ctx.reload_requested.wait()
            wait = config.timeouts.rules_poll
            forced = ctx.reload_requested.is_set()
            ctx.reload_requested = trio.Event()
            current = await trio.to_thread.run_sync(rules_fingerprint, root, watched)
            if current == seen and not forced:
                continue
            seen = current  # a broken set is retried when a file changes again
            fresh = await trio.to_thread.run_sync(_load_or_keep, config)
            if fresh is not None:
                seen = fresh.fingerprint
                ctx.swap_rules(fresh)
                del fresh  # requests in flight may still hold the old set; then it goes
                await trio.to_thread.run_sync(release_freed_memory)
                report_rules(ctx.loaded, "reloaded ")
            finished, ctx.reload_finished = ctx.reload_finished, trio.Event()
            finished.set()

    async def flush_log(self) -> None:
        while True:
            await trio.sleep(LOG_FLUSH_INTERVAL)
            self.ctx.log.flush()

    async def publish_stats(self, shared: SharedStats) -> None:
        while True:
            snapshot = self.ctx.stats.snapshot(time.time(), top=PUBLISHED_TOP)
            try:
                await trio.to_thread.run_sync(shared.publish, snapshot)
            except OSError as exc:
                print(f"fwdproxy: cannot share this worker's figures: {exc}", file=sys.stderr)
            await trio.sleep(PUBLISH_INTERVAL)
