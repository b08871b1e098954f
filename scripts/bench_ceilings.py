"""Reference "proxies" for `scripts/bench --ceilings`: how fast trio and h11 go on their own.

Neither is a proxy anyone should run: each forwards the benchmark's W1 and W2 requests
(small GETs in absolute form) to one fixed origin and nothing else, with no policy, no
logging, no timeouts and no error handling. Each client connection gets its own upstream
connection (no pool: under W2, one per request, which fwdproxy's pool avoids). They answer one question with a
measurement: what share of the direct connection's throughput can a single Python process
built on trio (and on trio with h11) reach at all on this machine? fwdproxy does what they
do and much more per request, so their figures bound its own.

    relay ORIGIN_PORT LISTEN_PORT  trio only: one upstream connection per client; each
                                   read from the client is sent upstream with the request
                                   line's "http://host:port" removed, and one read of the
                                   answer goes back (a W1 response fits in one read)
    h11 ORIGIN_PORT LISTEN_PORT    trio and h11 on both sides, as a proxy uses them:
                                   parse the request, send it on, parse the response,
                                   send it back
"""

from __future__ import annotations

import contextlib
import sys

import h11
import trio

RECEIVE_SIZE = 65_536


async def relay(client: trio.SocketStream, origin_port: int) -> None:
    prefix = f"http://127.0.0.1:{origin_port}".encode()
    async with await trio.open_tcp_stream("127.0.0.1", origin_port) as upstream:
        while data := await client.receive_some(RECEIVE_SIZE):
            await upstream.send_all(data.replace(prefix, b"", 1))
            await client.send_all(await upstream.receive_some(RECEIVE_SIZE))


async def _next(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await stream.receive_some(RECEIVE_SIZE))
    return event


async def with_h11(client: trio.SocketStream, origin_port: int) -> None:
    prefix = f"http://127.0.0.1:{origin_port}".encode()
    downstream = h11.Connection(h11.SERVER)
    async with await trio.open_tcp_stream("127.0.0.1", origin_port) as upstream:
        origin = h11.Connection(h11.CLIENT)
        while True:
            request = await _next(downstream, client)
            if not isinstance(request, h11.Request):
                return
            await _next(downstream, client)  # EndOfMessage of a bodiless GET
            target = request.target.removeprefix(prefix) or b"/"
            await upstream.send_all(
                origin.send(h11.Request(method=request.method, target=target, headers=request.headers))
                + origin.send(h11.EndOfMessage()))
            out = b""
            while True:
                event = await _next(origin, upstream)
                if isinstance(event, h11.Response):
                    out += downstream.send(h11.Response(status_code=event.status_code,
                                                        reason=event.reason, headers=event.headers))
                elif isinstance(event, h11.Data):
                    out += downstream.send(h11.Data(data=event.data))
                elif isinstance(event, h11.EndOfMessage):
                    out += downstream.send(h11.EndOfMessage())
                    break
            await client.send_all(out)
            downstream.start_next_cycle()
            origin.start_next_cycle()


async def main(mode: str, origin_port: int, port: int) -> None:
    handler = relay if mode == "relay" else with_h11

    async def serve_one(client: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                                 h11.ProtocolError):
            await handler(client, origin_port)

    await trio.serve_tcp(serve_one, port, host="127.0.0.1")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("relay", "h11"):
        raise SystemExit("usage: bench_ceilings.py relay|h11 ORIGIN_PORT LISTEN_PORT")
    trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
