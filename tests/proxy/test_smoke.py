from tests.conftest import HttpClient


async def test_get_through_proxy(start_http_origin, proxy):
    origin = await start_http_origin()
    client = await HttpClient.connect(proxy.port)
    response, body = await client.get(f"http://origin.test:{origin.port}/a?b=1")
    assert response.status_code == 200
    assert body == b"hello from origin: /a?b=1"
    response, body = await client.get(f"http://origin.test:{origin.port}/second")
    assert body == b"hello from origin: /second"
    assert origin.connections == 1
    assert origin.requests[0].header(b"via") is not None
    await client.aclose()
