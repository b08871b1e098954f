import trio, h11
from tests.conftest import HttpClient

async def test_504(start_origin, start_proxy, autojump_clock):
    async def silent(stream):
        await stream.receive_some(65536)
        await trio.sleep_forever()
    port = await start_origin(silent)
    proxy = await start_proxy(timeouts={"upstream_read": 5})
    client = await HttpClient.connect(proxy.port)
    response, body = await client.get(f"http://origin.test:{port}/slow")
    print(response, body)
    assert response.status_code == 504

async def test_early(start_origin, proxy):
    async def short(stream):
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    port = await start_origin(short)
    client = await HttpClient.connect(proxy.port)
    response, body = await client.get(f"http://origin.test:{port}/short")
    print(response, body)
