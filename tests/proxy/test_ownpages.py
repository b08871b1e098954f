"""The status page and /metrics through a real proxy: admin clients only, live figures."""

from __future__ import annotations

import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HttpClient

GUARD = 10


async def get(port: int, url: str):
    client = await HttpClient.connect(port)
    try:
        with trio.fail_after(GUARD):
            return await client.get(url)
    finally:
        await client.aclose()


async def test_admin_sees_live_figures(start_proxy, start_http_origin, tmp_path) -> None:
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    (rules / "deny" / "ads.txt").write_text("ads.test\n")
    origin = await start_http_origin()
    proxy = await start_proxy(admin_clients=["127.0.0.0/8"], rules=str(rules),
                              hosts={"origin.test": "127.0.0.1", "ads.test": "127.0.0.1"})
    assert (await get(proxy.port, f"http://origin.test:{origin.port}/"))[0].status_code == 200
    assert (await get(proxy.port, f"http://ads.test:{origin.port}/"))[0].status_code == 403
    await trio.testing.wait_all_tasks_blocked()
    response, page = await get(proxy.port, f"http://127.0.0.1:{proxy.port}/")
    assert response.status_code == 200
    assert b"Allowed vs blocked" in page and b"<svg" in page and b"ads.test" in page
    response, text = await get(proxy.port, f"http://127.0.0.1:{proxy.port}/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    assert families["fwdproxy_requests_blocked"].samples[0].value == 1
    blocked = {s.labels["category"]: s.value for s in families["fwdproxy_blocked_by_category"].samples}
    assert blocked == {"ads": 1}


async def test_others_get_the_info_page_and_no_metrics(start_proxy) -> None:
    proxy = await start_proxy(admin_clients=["10.0.0.0/8"])
    response, page = await get(proxy.port, f"http://127.0.0.1:{proxy.port}/")
    assert response.status_code == 200 and b"Allowed vs blocked" not in page
    response, _ = await get(proxy.port, f"http://127.0.0.1:{proxy.port}/metrics")
    assert response.status_code == 403
