"""fwdproxy behind the real HAProxy (TCP mode, send-proxy-v2, health checks on /healthz):
the client address fwdproxy logs and decides on is the real client's, not HAProxy's."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import FILE_NAME, Origin, StartProxy, client_env, require, run

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # waiting on another process to bind, bounded by the deadline
    pytest.fail("haproxy did not start listening")


def test_behind_haproxy_with_proxy_protocol(start_proxy: StartProxy, http_origin: Origin,
                                            tmp_path: Path) -> None:
    haproxy = require("haproxy")
    curl = require("curl")
    proxy = start_proxy({
        "listen": [{"address": "127.0.0.1:0", "proxy_protocol": True}],
        "trusted_proxies": ["127.0.0.1/32"],
        "access_log": {"path": str(tmp_path / "access.json"), "format": "json"},
    })
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend proxy
    bind 127.0.0.1:{front}
    default_backend fwdproxy
backend fwdproxy
    option httpchk GET /healthz
    http-check expect status 200
    server node1 127.0.0.1:{proxy.port} send-proxy-v2 check check-send-proxy inter 1s
""")
    checked = run([haproxy, "-c", "-f", config])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=client_env())
    try:
        wait_until_listening(front, process)
        # The client comes from 127.0.0.2; HAProxy reaches fwdproxy from 127.0.0.1.
        result = run([curl, "-sS", "--interface", "127.0.0.2", "-x", f"http://127.0.0.1:{front}",
                      http_origin.url(f"/{FILE_NAME}"), "-o", str(tmp_path / "got")])
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "got").read_bytes().startswith(b"hello from the e2e origin")
        log = tmp_path / "access.json"
        deadline = time.monotonic() + 5
        records: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            records = [json.loads(line) for line in
                       (log.read_text().splitlines() if log.exists() else [])]
            if any(r["url"] == http_origin.url(f"/{FILE_NAME}") for r in records):
                break
            time.sleep(0.05)  # the proxy writes its log out every second
        [record] = [r for r in records if r["url"] == http_origin.url(f"/{FILE_NAME}")]
        assert (record["client"], record["status"]) == ("127.0.0.2", 200)
    finally:
        process.terminate()
        process.wait(timeout=10)
