"""fdio and H11Stream's descriptor path, over real socket pairs.

The in-memory tests (test_h11_stream.py) take H11Stream's generic path; every plain socket
takes this one: reads and writes that complete at once never enter trio, so what matters
here is what happens when they cannot (waits, time limits), when the socket is closed or
reset, and that a peer that never makes us wait cannot keep the other tasks from running.
"""

from __future__ import annotations

import socket

import h11
import pytest
import trio
import trio.testing

from fwdproxy.errors import ConnectionLost
from fwdproxy.proxy import fdio
from fwdproxy.proxy.h11_stream import H11Stream

MAX_HEAD = 65_536


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_live_fd_of_a_closed_socket_raises() -> None:
    a, b = trio.socket.socketpair()
    assert fdio.live_fd(a) == a.fileno() >= 0
    a.close()
    b.close()
    with pytest.raises(fdio.Closed):
        fdio.live_fd(a)


async def test_read_some_and_write_all() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        assert fdio.read_some(b.fileno()) is None  # nothing yet, and no wait
        payload = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
        received = bytearray()

        async def reader() -> None:
            while len(received) < len(payload):
                data = fdio.read_some(b.fileno())
                if data is None:
                    await trio.lowlevel.wait_readable(b)
                else:
                    received.extend(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await fdio.write_all(a.fileno(), payload)
        assert received == payload
        a.shutdown(socket.SHUT_WR)
        assert fdio.read_some(b.fileno()) == b""  # EOF


async def exchange(http: H11Stream, peer: trio.SocketStream) -> h11.Response:
    """Send a GET from `http` (client role) and read the response head."""
    await http.send(h11.Request(method="GET", target="/", headers=[("Host", "o")]))
    await http.send(h11.EndOfMessage())
    response = await http.next_event()
    assert isinstance(response, h11.Response)
    return response


async def test_request_and_response_over_a_socket_pair() -> None:
    ours, origin = socket_pair()
    http = H11Stream(ours, h11.CLIENT, max_head_bytes=MAX_HEAD)
    await origin.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    response = await exchange(http, origin)
    assert response.status_code == 200
    assert (await http.next_event()).data == b"ok"
    assert type(await http.next_event()) is h11.EndOfMessage
    assert await origin.receive_some(4096) == b"GET / HTTP/1.1\r\nHost: o\r\n\r\n"
    assert (http.bytes_sent, http.bytes_received) == (27, 40)


class _Steps(trio.abc.Instrument):
    """Counts the scheduling steps of one task: each ends where it gives the others a turn."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task, self.count = task, 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


async def test_a_peer_that_never_makes_us_wait_does_not_hold_the_process() -> None:
    """A body already buffered in full is read without a single wait; each read still
    ends the task's step (a checkpoint), so the other tasks get their turns meanwhile."""
    a, b = socket.socketpair()
    body = b"x" * 100_000
    a.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    ours = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    http = H11Stream(ours, h11.CLIENT, max_head_bytes=MAX_HEAD)
    http.conn.send(h11.Request(method="GET", target="/", headers=[("Host", "o")]))
    http.conn.send(h11.EndOfMessage())
    steps = _Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        assert type(await http.next_event()) is h11.Response
        start, seen = steps.count, []
        while type(event := await http.next_event()) is not h11.EndOfMessage:
            if type(event) is h11.Data:
                seen.append(len(event.data))
        end = steps.count
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert sum(seen) == len(body)
    assert len(seen) >= 2, seen  # the head's read, then at least one more
    assert end - start >= len(seen) - 1
    a.close()


async def test_silence_limits_a_wait_for_bytes(autojump_clock: trio.testing.MockClock) -> None:
    ours, _origin = socket_pair()
    http = H11Stream(ours, h11.CLIENT, max_head_bytes=MAX_HEAD)
    await http.send(h11.Request(method="GET", target="/", headers=[("Host", "o")]))
    await http.send(h11.EndOfMessage())
    before = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await http.next_event(silence=30)
    assert trio.current_time() - before == pytest.approx(30)


async def test_silence_limits_a_wait_to_send(autojump_clock: trio.testing.MockClock) -> None:
    """A peer that reads nothing: once the socket buffers are full, the send waits, and
    gives up after `silence` seconds."""
    ours, _client = socket_pair()
    http = H11Stream(ours, h11.SERVER, max_head_bytes=MAX_HEAD)
    with pytest.raises(trio.TooSlowError):
        await http.send_raw(b"x" * (16 << 20), silence=60)
    assert http.bytes_sent == 0


async def test_send_and_receive_on_a_closed_stream_raise_connection_lost() -> None:
    """The descriptor is looked up at each call: after close, a call fails instead of
    reaching whatever socket has reused the number since."""
    ours, peer = socket_pair()
    http = H11Stream(ours, h11.SERVER, max_head_bytes=MAX_HEAD)
    number = ours.socket.fileno()
    await ours.aclose()
    reused, other = trio.socket.socketpair()  # likely takes the freed descriptor number
    with reused, other:
        with pytest.raises(ConnectionLost):
            await http.send_raw(b"for the closed connection only")
        with pytest.raises(ConnectionLost):
            await http.next_event()
        if reused.fileno() == number:
            assert fdio.read_some(other.fileno()) is None  # nothing reached the new socket
    await peer.aclose()


async def test_a_reset_peer_is_connection_lost() -> None:
    a, b = socket.socketpair()
    ours = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    http = H11Stream(ours, h11.SERVER, max_head_bytes=MAX_HEAD)
    b.close()
    with pytest.raises(ConnectionLost):
        await http.send_raw(b"x" * 1000)
    assert http.conn.our_state is h11.ERROR  # h11 was told (send_failed)


async def test_eof_reaches_h11() -> None:
    ours, peer = socket_pair()
    http = H11Stream(ours, h11.SERVER, max_head_bytes=MAX_HEAD)
    await peer.send_eof()
    assert type(await http.next_event()) is h11.ConnectionClosed
