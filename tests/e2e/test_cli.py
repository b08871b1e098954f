"""The command-line contract: help and version, exit status 2 with one message for every
configuration error, the safe defaults, and graceful shutdown on SIGINT and SIGTERM."""

from __future__ import annotations

import http.client
import importlib.metadata
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import (
    FILE_NAME,
    Origin,
    ProxyProcess,
    StartProxy,
    fetch_through,
    run,
)

pytestmark = pytest.mark.e2e

# A command that fails at start-up does so in well under a second; one that does not
# fail (a bug) would serve until killed, so its run is cut short here.
STARTUP_FAILURE_TIMEOUT = 15.0
REQUEST_TIMEOUT = 20.0


def fwdproxy(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "fwdproxy", *args], timeout=STARTUP_FAILURE_TIMEOUT,
               cwd=cwd)


def test_help_lists_the_main_options() -> None:
    result = fwdproxy("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--listen", "--config", "--rules"):
        assert option in result.stdout


def test_console_script_reports_the_installed_version() -> None:
    script = Path(sys.executable).parent / "fwdproxy"
    assert script.is_file(), f"no console script next to {sys.executable}"
    result = run([script, "--version"], timeout=STARTUP_FAILURE_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fwdproxy {importlib.metadata.version('fwdproxy')}"


# -- configuration errors: exit 2, one line naming what is wrong, no traceback -------------


def assert_config_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit status 2 and exactly one "fwdproxy: error:" line that contains every name."""
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    message = lines[0]
    assert message.startswith("fwdproxy: error: "), message
    for name in names:
        assert name in message, f"{name!r} not named in {message!r}"
    return message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param('listen: ["127.0.0.1:0"]\nlisten_port: 8080\n', ["'listen_port'"],
                     id="unknown-key"),
        pytest.param("timeouts:\n  header_timeout: 5\n", ["timeouts", "'header_timeout'"],
                     id="unknown-timeouts-key"),
        pytest.param('clients: ["10.0.0.0/33"]\n', ["clients", "10.0.0.0/33"], id="bad-cidr"),
        pytest.param('clients: ["192.168.1.0/24", "not-an-address"]\n',
                     ["clients[1]", "not-an-address"], id="bad-client-address"),
        pytest.param('connect_ports: ["443-80"]\n', ["connect_ports", "443-80"],
                     id="reversed-port-range"),
        pytest.param('connect_ports: [443, "1-70000"]\n', ["connect_ports[1]", "1-70000"],
                     id="port-out-of-range"),
        pytest.param('listen: ["127.0.0.1:0"]\nvia: e2e\n  hosts: x\n',
                     ["{path}:3: not valid YAML"], id="invalid-yaml"),
    ],
)
def test_config_file_error_exits_2_naming_file_and_key(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    path = tmp_path / "fwdproxy.yaml"
    path.write_text(text, encoding="utf-8")
    names = [name.format(path=path) for name in names]
    message = assert_config_error(fwdproxy("--config", path, cwd=tmp_path), *names)
    assert str(path) in message


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "no-such-config.yaml"
    assert_config_error(fwdproxy("--config", path, "--listen", "127.0.0.1:0", cwd=tmp_path),
                        str(path))


def test_missing_rules_folder_exits_2(tmp_path: Path) -> None:
    folder = tmp_path / "no-such-rules"
    assert_config_error(fwdproxy("--rules", folder, "--listen", "127.0.0.1:0", cwd=tmp_path),
                        "rules", str(folder))


def test_listen_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fwdproxy("--listen", f"127.0.0.1:{port}", cwd=tmp_path)
    assert_config_error(result, f"127.0.0.1:{port}", "in use")


# -- running -------------------------------------------------------------------------------


def test_flags_only_use_the_safe_defaults(start_proxy: StartProxy, http_origin: Origin) -> None:
    """No config file: the built-in defaults refuse loopback destinations."""
    proxy = start_proxy(config=False, args=["--listen", "127.0.0.1:0"])
    url = http_origin.url(host="127.0.0.1")
    with requests.Session() as session:
        session.trust_env = False
        session.proxies = {"http": proxy.url}
        response = session.get(url, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 403
    assert response.headers["X-Fwdproxy-Decision"].startswith("deny ")
    assert http_origin.requests == []
    # Without a config the access log goes to stderr.
    proxy.wait_for_stderr(f" GET {url} 403 ", timeout=5)


def test_clients_outside_the_allowed_networks_get_403(
    start_proxy: StartProxy, http_origin: Origin
) -> None:
    proxy = start_proxy({"clients": ["10.0.0.0/8"]})  # not loopback, where the test is
    with requests.Session() as session:
        session.trust_env = False
        session.proxies = {"http": proxy.url}
        response = session.get(http_origin.url(), timeout=REQUEST_TIMEOUT)
    assert response.status_code == 403
    assert "config:clients" in response.text
    assert http_origin.requests == []


def test_flags_override_the_config_file(
    start_proxy: StartProxy, http_origin: Origin, tmp_path: Path
) -> None:
    flag_log = tmp_path / "from-flag.log"
    proxy = start_proxy({"via": "from-file"},
                        args=["--via", "from-flag", "--access-log", str(flag_log)])
    with requests.Session() as session:
        session.trust_env = False
        session.proxies = {"http": proxy.url}
        response = session.get(http_origin.url(), timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Via"] == "1.1 from-flag"
    assert http_origin.requests[0].headers["via"] == "1.1 from-flag"
    proxy.access_log = flag_log  # the file named by the flag, not the config's
    proxy.wait_for_log("GET", http_origin.url(), 200)


def test_own_address_shows_the_info_page(proxy: ProxyProcess) -> None:
    """Opened directly (not as a proxy), the proxy's address explains what it is."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/html")
    assert "fwdproxy" in body
    assert f"127.0.0.1:{proxy.port}" in body


def test_sigint_finishes_the_request_in_flight_then_exits_0(
    start_proxy: StartProxy, http_origin: Origin
) -> None:
    proxy = start_proxy()
    url = http_origin.url("/slow")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch_through, proxy.port, url)
        assert http_origin.slow_started.wait(REQUEST_TIMEOUT), "the request never reached the origin"

        proxy.send_signal(signal.SIGINT)
        proxy.wait_for_stderr(r"fwdproxy: SIGINT: finishing requests in flight", timeout=10)
        http_origin.slow_release.set()

        assert pending.result(timeout=REQUEST_TIMEOUT) == (200, b"slow done")
    assert proxy.wait_exit() == 0
    assert "Traceback" not in proxy.stderr
    assert any(f" GET {url} 200 " in line for line in proxy.log_lines())


def test_sigterm_closes_idle_connections_without_waiting_for_the_grace(
    start_proxy: StartProxy, http_origin: Origin
) -> None:
    proxy = start_proxy({"timeouts": {"shutdown_grace": 60}})
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", http_origin.url(f"/{FILE_NAME}"))
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert not response.will_close  # the connection now idles, kept alive

        proxy.send_signal(signal.SIGTERM)
        # An idle keep-alive connection is no request in flight: the proxy closes it at
        # once instead of waiting out the (60 s) grace period.
        assert proxy.wait_exit(timeout=10) == 0
    finally:
        conn.close()
    proxy.wait_for_stderr(r"fwdproxy: SIGTERM: finishing requests in flight", timeout=1)


def test_second_signal_stops_at_once(start_proxy: StartProxy, http_origin: Origin) -> None:
    proxy = start_proxy({"timeouts": {"shutdown_grace": 60}})
    url = http_origin.url("/slow")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch_through, proxy.port, url)
        assert http_origin.slow_started.wait(REQUEST_TIMEOUT), "the request never reached the origin"
        proxy.send_signal(signal.SIGINT)
        proxy.wait_for_stderr(r"fwdproxy: SIGINT: finishing requests in flight", timeout=10)
        proxy.send_signal(signal.SIGINT)
        # Not the 60 s grace: the second signal cancels the request in flight.
        assert proxy.wait_exit(timeout=10) == 0
        proxy.wait_for_stderr(r"fwdproxy: SIGINT again: stopping now", timeout=1)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            pending.result(timeout=REQUEST_TIMEOUT)
        http_origin.slow_release.set()


def test_sighup_reloads_the_rules(start_proxy: StartProxy, http_origin: Origin,
                                  tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    (rules / "deny" / "ads.txt").write_text("origin.test\n")
    # Polling effectively off: only the signal can make it reload within the test.
    proxy = start_proxy({"rules": str(rules), "timeouts": {"rules_poll": 3600}})
    url = http_origin.url(f"/{FILE_NAME}")
    assert fetch_through(proxy.port, url)[0] == 403
    (rules / "deny" / "ads.txt").write_text("elsewhere.test\n")
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_stderr(r"fwdproxy: reloaded rules from .*deny ads: 1", timeout=20)
    assert fetch_through(proxy.port, url)[0] == 200


def _wait_for_text(path: Path, needle: str, timeout: float = 5.0) -> str:
    """The file's text once it holds `needle`; the proxy writes its log out every second,
    so this polls, bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if needle in text or time.monotonic() >= deadline:
            return text
        time.sleep(0.05)


def test_sigusr1_reopens_the_access_log(start_proxy: StartProxy, http_origin: Origin,
                                        tmp_path: Path) -> None:
    """logrotate's convention: the file is renamed, then SIGUSR1 makes the proxy open a
    new one; the renamed file keeps what was written before."""
    log = tmp_path / "rotating.log"
    proxy = start_proxy({"access_log": {"path": str(log), "format": "squid"}})
    url = http_origin.url(f"/{FILE_NAME}")
    assert fetch_through(proxy.port, url)[0] == 200
    assert " TCP_MISS/200 " in _wait_for_text(log, "TCP_MISS/200")
    rotated = tmp_path / "rotating.log.1"
    log.rename(rotated)
    proxy.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not log.exists() and time.monotonic() < deadline:  # reopening creates the file
        time.sleep(0.02)
    assert log.exists(), "SIGUSR1 did not reopen the access log"
    assert fetch_through(proxy.port, url)[0] == 200
    assert " TCP_MISS/200 " in _wait_for_text(log, "TCP_MISS/200")
    assert len(rotated.read_text().splitlines()) == 1
