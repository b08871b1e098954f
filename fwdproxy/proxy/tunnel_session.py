"""One answered CONNECT: its ClientHello read and judged, then the relay, then the log line.

Strategy: after the 200, `run_tunnel` first vets the tunnel when ``connect_sni`` applies
to its port: it reads the client's first bytes until they hold a whole ClientHello (or
rule one out), within `limits.client_hello_bytes` and `timeouts.client_hello`;
`policy.sni.judge_hello` settles what the settings decide, and a server name left to
judge goes through the host rules (and the address rules, for the address the tunnel is
open to) like the name of any CONNECT. A refusal gets a TLS access_denied alert, so a
browser or curl says why the handshake failed, and the tunnel closes before a byte
reaches the origin. Otherwise the bytes read are relayed first, unchanged, and the relay
(`tunnel.relay`) runs until the tunnel ends; its exchange is logged once, at the end.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import trio

from fwdproxy.accesslog import Exchange
from fwdproxy.config import SniSettings
from fwdproxy.errors import BadRequest
from fwdproxy.policy import Policy, RequestFacts, Verdict
from fwdproxy.policy.names import IPAddress, canonical_host
from fwdproxy.policy.sni import HelloSeen, judge_hello
from fwdproxy.proxy import fdio
from fwdproxy.proxy.clienthello import NEED_MORE, ClientHello, NotClientHello, read_client_hello
from fwdproxy.proxy.context import ServerContext
from fwdproxy.proxy.decisions import address_verdict
from fwdproxy.proxy.tunnel import relay

__all__ = ["OpenTunnel", "SniTarget", "hello_seen", "judge", "run_tunnel", "same_site"]

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
# TLS alert record, fatal (2) access_denied (49), as a server sends it before any key
# exchange (RFC 8446 §6): curl prints "tlsv1 alert access denied".
_ACCESS_DENIED = b"\x15\x03\x03\x00\x02\x02\x31"


@dataclass(frozen=True, slots=True)
class SniTarget:
    """What a tunnel's ClientHello is judged against: the CONNECT as it was decided."""

    settings: SniSettings
    policy: Policy
    facts: RequestFacts
    address: IPAddress | None  # the address the tunnel is open to (None: through a parent)


@functools.cache
def _registrable_domains() -> object:
    # Loaded on first use only: `match: site` is opt-in, and the list takes ~60 ms to read.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def same_site(one: str, other: str) -> bool:
    """Are two host names of one registrable domain (Public Suffix List, private
    section included: two github.io users are two sites)?"""
    psl = _registrable_domains()
    mine = psl.privatesuffix(one)  # type: ignore[attr-defined]
    return mine is not None and mine == psl.privatesuffix(other)  # type: ignore[attr-defined]


def hello_seen(server_name: str | None, *, ech: bool = False) -> HelloSeen:
    """What a ClientHello naming `server_name` shows the policy: the canonical name (none
    for an address, which RFC 6066 §3 never allows there), or why the name is not one."""
    if server_name is None:
        return HelloSeen(None, ech=ech)
    try:
        name, literal = canonical_host(server_name)
    except BadRequest:
        return HelloSeen(problem=f"the ClientHello's server name {server_name!r} is not valid")
    return HelloSeen(None if literal is not None else name, ech=ech)


def judge(settings: SniSettings, seen: HelloSeen, facts: RequestFacts) -> Verdict | str | None:
    """`policy.sni.judge_hello` with the ``connect_sni`` settings, for the CONNECT `facts`."""
    return judge_hello(seen, target_host=facts.host, target_is_ip=facts.ip is not None,
                       match=settings.match, missing=settings.missing,
                       not_tls=settings.not_tls, ech=settings.ech, same_site=same_site)


async def read_hello(sock: trio.socket.SocketType, early: bytes, *, limit: int,
                     timeout: float) -> tuple[bytes, HelloSeen | None]:
    """The client's first bytes, from `early` on, up to a whole ClientHello, and what they
    show; None for the latter when the client closed (or failed) before."""
    data = early
    while True:
        try:
            found = read_client_hello(data)
        except NotClientHello as exc:
            return data, HelloSeen(problem=exc.reason)
        if found is not NEED_MORE:
            assert isinstance(found, ClientHello)
            return data, hello_seen(found.server_name, ech=found.ech)
        if len(data) >= limit:
            return data, HelloSeen(problem=f"no whole ClientHello within {limit} bytes")
        try:
            chunk = fdio.read_some(fdio.live_fd(sock))
            if chunk is None:
                with trio.move_on_after(timeout):
                    await trio.lowlevel.wait_readable(sock)
                    chunk = fdio.read_some(fdio.live_fd(sock))
                if chunk is None:
                    return data, HelloSeen(problem=f"no whole ClientHello within {timeout:g} s")
        except _TRANSPORT_ERRORS:
            return data, None
        if not chunk:
            return data, None
        data += chunk


def _verdict(ctx: ServerContext, target: SniTarget, seen: HelloSeen) -> Verdict | None:
    """The verdict on the tunnel's ClientHello; None when nothing is left to judge."""
    judged = judge(target.settings, seen, target.facts)
    if not isinstance(judged, str):
        return judged
    named = dataclasses.replace(target.facts, host=judged, ip=None)
    verdict = target.policy.decide(named)
    if not verdict.final and target.address is not None:  # a parent's address is not the name's
        verdict = address_verdict(ctx, target.policy, named, verdict, target.address)
    return verdict


@dataclass(slots=True)
class OpenTunnel:
    """A CONNECT that was answered 200, waiting to be relayed."""

    stream: trio.SocketStream  # to the destination (or the parent proxy)
    early: bytes  # client bytes h11 read past the CONNECT head
    from_parent: bytes  # destination bytes a parent proxy sent past its 200
    exchange: Exchange
    sni: SniTarget | None  # what its ClientHello is judged against (connect_sni applies)


async def run_tunnel(ctx: ServerContext, client: trio.SocketStream, tunnel: OpenTunnel) -> None:
    """Vet the tunnel's ClientHello (when connect_sni applies), relay it until it ends,
    then log its exchange."""
    exchange = tunnel.exchange
    ctx.stats.tunnel_opened()
    try:
        initial, counted = tunnel.early, len(tunnel.early)  # h11 counted the early bytes
        if tunnel.sni is not None:
            vetted = await _vet(ctx, client.socket, tunnel.early, tunnel.sni, exchange)
            tunnel.sni = None  # an idle tunnel need not hold the policy and the facts
            if vetted is None:
                return
            # Sent here, not handed to relay(): its frames would hold the hello for as
            # long as the tunnel is open (a KiB or two per idle tunnel).
            try:
                await fdio.write_all(fdio.live_fd(tunnel.stream.socket), vetted)
            except _TRANSPORT_ERRORS:
                exchange.detail = "tunnel reset"
                return
            exchange.bytes_up += len(vetted) - counted
            initial, counted, vetted = b"", 0, b""
        note = exchange.detail
        result = await relay(client, tunnel.stream, client_initial=initial,
                             upstream_initial=tunnel.from_parent,
                             idle_timeout=ctx.config.timeouts.tunnel_idle)
        exchange.bytes_up += result.bytes_up - counted
        exchange.bytes_down += result.bytes_down
        exchange.detail = f"tunnel {result.ended}" + (f"; {note}" if note else "")
    finally:
        ctx.stats.tunnel_closed()
        tunnel.stream.socket.close()  # aclose() without its checkpoint: this cannot block
        ctx.finish(exchange)


async def _vet(ctx: ServerContext, sock: trio.socket.SocketType, early: bytes,
               target: SniTarget, exchange: Exchange) -> bytes | None:
    """Read and judge the tunnel's ClientHello; the client bytes to relay first, or None
    when the tunnel must close (refused, or the client left first). The exchange is
    told the server name and, for a refusal, the verdict and the bytes read."""
    data, seen = await read_hello(sock, early, limit=ctx.config.limits.client_hello_bytes,
                                  timeout=ctx.config.timeouts.client_hello)
    if seen is None:
        exchange.bytes_up += len(data) - len(early)
        exchange.detail = "tunnel closed by the client before its ClientHello"
        return None
    exchange.sni = seen.server_name
    verdict = _verdict(ctx, target, seen)
    if verdict is None or verdict.allowed:
        if verdict is not None and verdict.source.startswith("config:"):
            exchange.detail = verdict.reason  # allowed by a setting: say which
        return data
    if target.settings.mode == "log":
        exchange.detail = f"connect_sni (log only) would refuse: {verdict.reason} ({verdict.source})"
        return data
    exchange.bytes_up += len(data) - len(early)
    exchange.verdict, exchange.source, exchange.category = "deny", verdict.source, verdict.category
    exchange.detail = f"tunnel refused: {verdict.reason}"
    if seen.problem is None:
        try:
            await fdio.write_all(fdio.live_fd(sock), _ACCESS_DENIED)
            exchange.bytes_down += len(_ACCESS_DENIED)
        except _TRANSPORT_ERRORS:
            pass
    return None
