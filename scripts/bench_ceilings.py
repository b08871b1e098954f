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
    h11cost ORIGIN_PORT            no sockets in the timing: fetch one W1 response from the
                                   origin, then time h11's share of one W1 exchange in a
                                   loop (the request and the response, each parsed on one
                                   side and written on the other, as `h11` above does) and
                                   print {"us_per_exchange": ...} as JSON. No h11-based
                                   proxy can spend less CPU per request than this.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import sys
import time

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


def request_bytes(origin: h11.Connection, request: h11.Request, prefix: bytes) -> bytes:
    """A bodiless request in origin form, as `origin` writes it."""
    target = request.target.removeprefix(prefix) or b"/"
    return (origin.send(h11.Request(method=request.method, target=target, headers=request.headers))
            + origin.send(h11.EndOfMessage()))


def client_bytes(downstream: h11.Connection, event: object) -> bytes:
    """One response event from the origin, as `downstream` writes it to the client."""
    if isinstance(event, h11.Response):
        return downstream.send(h11.Response(status_code=event.status_code, reason=event.reason,
                                            headers=event.headers))
    if isinstance(event, h11.Data):
        return downstream.send(h11.Data(data=event.data))
    if isinstance(event, h11.EndOfMessage):
        return downstream.send(h11.EndOfMessage())
    raise AssertionError(event)


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
            await upstream.send_all(request_bytes(origin, request, prefix))
            out = b""
            while True:
                event = await _next(origin, upstream)
                out += client_bytes(downstream, event)
                if isinstance(event, h11.EndOfMessage):
                    break
            await client.send_all(out)
            downstream.start_next_cycle()
            origin.start_next_cycle()


def h11_exchange(downstream: h11.Connection, origin: h11.Connection, request: bytes,
                 response: bytes, prefix: bytes) -> None:
    """h11's work for one proxied exchange on kept-alive connections, as with_h11() does
    it, minus the sockets."""
    downstream.receive_data(request)
    head = downstream.next_event()
    assert isinstance(head, h11.Request)
    assert isinstance(downstream.next_event(), h11.EndOfMessage)
    request_bytes(origin, head, prefix)
    origin.receive_data(response)
    while True:
        event = origin.next_event()
        client_bytes(downstream, event)
        if isinstance(event, h11.EndOfMessage):
            break
    downstream.start_next_cycle()
    origin.start_next_cycle()


def h11_cost(origin_port: int, batches: int = 7, per_batch: int = 2000) -> float:
    """Median µs of CPU per W1 exchange spent in h11 (see the module docstring)."""
    with socket.create_connection(("127.0.0.1", origin_port), timeout=10) as sock:
        sock.sendall(b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    # As the origin answers a kept-alive request (W1 is keep-alive).
    response = response.replace(b"Connection: close\r\n", b"Connection: keep-alive\r\n")
    prefix = f"http://127.0.0.1:{origin_port}".encode()
    request = prefix.join([b"GET ", b"/1k HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % origin_port])
    downstream, origin = h11.Connection(h11.SERVER), h11.Connection(h11.CLIENT)
    for _ in range(per_batch):  # warm-up
        h11_exchange(downstream, origin, request, response, prefix)
    times = []
    for _ in range(batches):
        start = time.process_time()
        for _ in range(per_batch):
            h11_exchange(downstream, origin, request, response, prefix)
        times.append((time.process_time() - start) / per_batch * 1e6)
    return statistics.median(times)


async def main(mode: str, origin_port: int, port: int) -> None:
    handler = relay if mode == "relay" else with_h11

    async def serve_one(client: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                                 h11.ProtocolError):
            await handler(client, origin_port)

    await trio.serve_tcp(serve_one, port, host="127.0.0.1")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "h11cost":
        print(json.dumps({"us_per_exchange": round(h11_cost(int(sys.argv[2])), 1)}))
    elif len(sys.argv) == 4 and sys.argv[1] in ("relay", "h11"):
        trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit("usage: bench_ceilings.py relay|h11 ORIGIN_PORT LISTEN_PORT\n"
                         "       bench_ceilings.py h11cost ORIGIN_PORT")
