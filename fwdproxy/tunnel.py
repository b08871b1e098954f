"""Raw byte relay for CONNECT tunnels and switched protocols (WebSocket).

Strategy: two pumps in one nursery, one per direction. A pump that meets EOF half-closes
the other side (send_eof) and ends; the relay ends when both pumps have ended, or when no
byte has moved either way for `idle_timeout` seconds (one cancel scope whose deadline
every chunk pushes forward), or when either side fails, which ends both. Bytes a parser
already read past the head (h11's trailing_data) are sent first, so none are lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from fwdproxy.h11_stream import RECEIVE_SIZE

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@dataclass
class RelayResult:
    """What a relay moved and how it ended."""

    bytes_up: int = 0     # client → destination
    bytes_down: int = 0   # destination → client
    ended: str = "closed"  # closed | idle | reset


async def relay(
    client: trio.abc.HalfCloseableStream | trio.abc.Stream,
    upstream: trio.abc.HalfCloseableStream | trio.abc.Stream,
    *,
    client_initial: bytes = b"",
    upstream_initial: bytes = b"",
    idle_timeout: float,
) -> RelayResult:
    """Relay bytes both ways until both directions reach EOF, idle time-out or an error.

    Args:
        client: the client's stream.
        upstream: the destination's stream.
        client_initial: bytes from the client already read, to send upstream first.
        upstream_initial: bytes from the destination already read, to send to the client.
        idle_timeout: seconds without traffic either way after which the relay ends.
    """
    result = RelayResult()
    scope = trio.CancelScope(deadline=trio.current_time() + idle_timeout)

    async def pump(source: trio.abc.Stream, sink: trio.abc.Stream, initial: bytes, up: bool) -> None:
        def count(n: int) -> None:
            if up:
                result.bytes_up += n
            else:
                result.bytes_down += n
            scope.deadline = trio.current_time() + idle_timeout

        try:
            if initial:
                await sink.send_all(initial)
                count(len(initial))
            while True:
                data = await source.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                await sink.send_all(data)
                count(len(data))
            if isinstance(sink, trio.abc.HalfCloseableStream):
                await sink.send_eof()
            else:
                scope.cancel()  # no half-close possible: EOF on one side ends the relay
        except _TRANSPORT_ERRORS:
            result.ended = "reset"
            scope.cancel()

    with scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, upstream, client_initial, True)
            nursery.start_soon(pump, upstream, client, upstream_initial, False)
    if scope.cancelled_caught and result.ended != "reset":
        result.ended = "idle" if trio.current_time() >= scope.deadline else "closed"
    return result
