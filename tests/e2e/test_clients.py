"""Real clients through fwdproxy: curl, requests, httpx, urllib, git and pip.

Each test points one client at the proxy as its user would (flags, `proxies=`, config),
fetches from the loopback origins as `origin.test`, checks what the client got, and then
finds the visit in the proxy's access log.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import socket
import ssl
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import httpx
import pytest
import requests

from tests.e2e.conftest import (
    CLIENT_TIMEOUT,
    FILE_BODY,
    FILE_NAME,
    Origin,
    ProxyProcess,
    StartProxy,
    client_env,
    require,
    run,
)

pytestmark = pytest.mark.e2e

# Python clients talk to loopback only; anything slower than this is a hang.
REQUEST_TIMEOUT = 10.0


def logged_url(origin: Origin, path: str = f"/{FILE_NAME}") -> tuple[str, str]:
    """The access log's method and URL for a visit to `path` on `origin`: the absolute URL
    for plain HTTP, the CONNECT authority for HTTPS (the path is inside the tunnel)."""
    if origin.scheme == "https":
        return "CONNECT", origin.authority
    return "GET", origin.url(path)


def assert_visit(proxy: ProxyProcess, origin: Origin) -> None:
    """The visit is in the access log; through a tunnel, with the server name its real
    ClientHello sent, read and judged by the proxy (connect_sni)."""
    line = proxy.wait_for_log(*logged_url(origin), 200)
    if origin.scheme == "https":
        assert line.endswith(" sni=origin.test"), line


@pytest.fixture(params=["http", "https"])
def origin(request: pytest.FixtureRequest) -> Origin:
    """The plain origin, then the TLS one (reached through a CONNECT tunnel)."""
    fixture = "http_origin" if request.param == "http" else "tls_origin"
    value: Origin = request.getfixturevalue(fixture)
    return value


# -- curl --------------------------------------------------------------------------------


def curl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run([require("curl"), "-sS", "--max-time", "20", *args])


def curl_bytes(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [require("curl"), "-sS", "--max-time", "20", *(str(a) for a in args)],
        capture_output=True, timeout=CLIENT_TIMEOUT, env=client_env(),
        stdin=subprocess.DEVNULL, check=False,
    )


def test_curl_get(proxy: ProxyProcess, origin: Origin, ca_pem: Path) -> None:
    result = curl_bytes("--cacert", ca_pem, "-x", proxy.url, origin.url())
    assert result.returncode == 0, result.stderr
    assert result.stdout == FILE_BODY
    assert_visit(proxy, origin)


def test_curl_large_downloads_on_one_connection(
    proxy: ProxyProcess, origin: Origin, site: Path, ca_pem: Path
) -> None:
    big = bytes(range(251)) * (6 * 1024 * 1024 // 251)  # 6 MB; 251 is prime: no aligned repeats
    (site / "big.bin").write_bytes(big)
    urls = [origin.url("/big.bin"), origin.url(), origin.url("/big.bin")]
    result = curl_bytes("--cacert", ca_pem, "-x", proxy.url, *urls)
    assert result.returncode == 0, result.stderr
    assert result.stdout == big + FILE_BODY + big
    assert [r.path for r in origin.requests] == ["/big.bin", f"/{FILE_NAME}", "/big.bin"]
    if origin.scheme == "https":
        line = proxy.wait_for_log("CONNECT", origin.authority, 200)
        down = int(line.split(" down=", 1)[1].split(" ", 1)[0])
        assert down > 2 * len(big)  # all three responses went through the one tunnel
    else:
        proxy.wait_for_log("GET", origin.url("/big.bin"), 200)


def test_curl_unreachable_origin_gets_502(proxy: ProxyProcess, ca_pem: Path) -> None:
    with socket.socket() as unused:  # a port nothing listens on once this is closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    plain = curl("--fail", "-x", proxy.url, f"http://origin.test:{port}/")
    assert plain.returncode == 22, plain.stderr
    assert "502" in plain.stderr
    tunnel = curl("--cacert", ca_pem, "-x", proxy.url, f"https://origin.test:{port}/")
    assert tunnel.returncode == 56, tunnel.stderr
    assert "502" in tunnel.stderr
    proxy.wait_for_log("GET", f"http://origin.test:{port}/", 502)
    proxy.wait_for_log("CONNECT", f"origin.test:{port}", 502)


def test_curl_head(proxy: ProxyProcess, http_origin: Origin) -> None:
    result = curl("-I", "-x", proxy.url, http_origin.url())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.lower().splitlines()
    assert lines[0].startswith("http/1.1 200")
    assert f"content-length: {len(FILE_BODY)}" in lines
    assert "via: 1.1 e2e-proxy" in lines
    assert [r.method for r in http_origin.requests] == ["HEAD"]
    proxy.wait_for_log("HEAD", http_origin.url(), 200)


def test_curl_upload_with_expect_100_continue(
    proxy: ProxyProcess, http_origin: Origin, tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024  # above curl's 1 MB threshold for sending Expect: 100-continue
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * (size // 256))
    result = curl("-v", "--expect100-timeout", "15", "-x", proxy.url,
                  "--data-binary", f"@{upload}", http_origin.url("/upload"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"length": size, "expect": "100-continue", "chunked": False}
    # The origin's 100 Continue came back through the proxy (else curl would have waited
    # out --expect100-timeout and sent the body anyway).
    assert "< HTTP/1.1 100 Continue" in result.stderr
    line = proxy.wait_for_log("POST", http_origin.url("/upload"), 200)
    up = int(line.split(" up=", 1)[1].split(" ", 1)[0])
    assert up >= size  # the whole body went up (the request head counts too)


def test_curl_chunked_upload_with_expect_100_continue(
    proxy: ProxyProcess, http_origin: Origin, tmp_path: Path
) -> None:
    """curl sends a chunked upload with Expect: 100-continue; the proxy, which must see the
    first chunk line before the origin sees the head, answers the 100 itself."""
    size = 3 * 1024 * 1024
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * (size // 256))
    result = curl("-v", "--expect100-timeout", "15", "-x", proxy.url, "-H", "Transfer-Encoding: chunked",
                  "-H", "Expect: 100-continue", "--data-binary", f"@{upload}", http_origin.url("/upload"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"length": size, "expect": "100-continue", "chunked": True}
    assert result.stderr.count("< HTTP/1.1 100 Continue") == 1
    proxy.wait_for_log("POST", http_origin.url("/upload"), 200)


def test_requests_chunked_upload(proxy: ProxyProcess, http_origin: Origin) -> None:
    """requests sends a generator body chunked (no Content-Length)."""
    parts = [b"x" * 1000] * 50
    response = requests.post(http_origin.url("/upload"), data=iter(parts),
                             proxies={"http": proxy.url}, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"length": 50_000, "expect": None, "chunked": True}


def test_curl_refused_destinations(
    start_proxy: StartProxy, http_origin: Origin, tls_origin: Origin, ca_pem: Path
) -> None:
    # The safe defaults for destinations (no loopback), and CONNECT to 443 only.
    proxy = start_proxy({"deny_destinations": None, "connect_ports": [443]})

    tunnel = curl("--cacert", ca_pem, "-x", proxy.url, tls_origin.url())
    assert tunnel.returncode == 56, tunnel.stderr  # "CONNECT tunnel failed, response 403"
    assert "403" in tunnel.stderr

    page = curl("-i", "-x", proxy.url, http_origin.url())
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith("HTTP/1.1 403")
    assert "x-fwdproxy-decision: deny" in page.stdout.lower()
    assert "Access denied" in page.stdout

    failed = curl("--fail", "-x", proxy.url, http_origin.url())
    assert failed.returncode == 22, failed.stderr

    assert http_origin.requests == [] and tls_origin.requests == []
    proxy.wait_for_log("CONNECT", tls_origin.authority, 403)
    proxy.wait_for_log("GET", http_origin.url(), 403)


# -- Python clients ------------------------------------------------------------------------


def test_requests(proxy: ProxyProcess, origin: Origin, ca_pem: Path) -> None:
    with requests.Session() as session:
        session.trust_env = False  # only the proxies given here, whatever the environment
        session.proxies = {"http": proxy.url, "https": proxy.url}
        # A tunnel is logged when it ends. urllib3 2 drops its pools on Session.close()
        # without closing their sockets (garbage collection does, eventually), so ask for a
        # connection that ends with this response: the origin answers "Connection: close"
        # and the client closes its socket once the body is read.
        response = session.get(origin.url(), verify=str(ca_pem), timeout=REQUEST_TIMEOUT,
                               headers={"Connection": "close"})
        assert response.status_code == 200
        assert response.content == FILE_BODY
    assert_visit(proxy, origin)


def test_httpx(proxy: ProxyProcess, origin: Origin, client_ssl_context: ssl.SSLContext) -> None:
    with httpx.Client(proxy=proxy.url, verify=client_ssl_context, trust_env=False,
                      timeout=REQUEST_TIMEOUT) as client:
        response = client.get(origin.url())
        assert response.status_code == 200
        assert response.content == FILE_BODY
    assert_visit(proxy, origin)


def test_urllib(proxy: ProxyProcess, origin: Origin, client_ssl_context: ssl.SSLContext) -> None:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": proxy.url, "https": proxy.url}),
        urllib.request.HTTPSHandler(context=client_ssl_context),
    )
    with opener.open(origin.url(), timeout=REQUEST_TIMEOUT) as response:
        assert response.status == 200
        assert response.read() == FILE_BODY
    assert_visit(proxy, origin)


# -- git -----------------------------------------------------------------------------------


def git_env(home: Path) -> dict[str, str]:
    """git without the machine's or user's configuration, and never prompting."""
    return client_env(
        HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
        GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="e2e", GIT_AUTHOR_EMAIL="e2e@origin.test",
        GIT_COMMITTER_NAME="e2e", GIT_COMMITTER_EMAIL="e2e@origin.test",
    )


def git(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = run([require("git"), *args], env=env)
    assert result.returncode == 0, f"git {args}: {result.stderr}"
    return result


def test_git_clone_over_dumb_http(
    proxy: ProxyProcess, http_origin: Origin, site: Path, tmp_path: Path
) -> None:
    env = git_env(tmp_path)
    work = tmp_path / "work"
    git(env, "init", "-q", work)
    (work / "README.txt").write_text("cloned through fwdproxy\n")
    git(env, "-C", work, "add", "README.txt")
    git(env, "-C", work, "commit", "-q", "-m", "first")
    bare = site / "repo.git"
    git(env, "clone", "-q", "--bare", work, bare)
    git(env, "-C", bare, "update-server-info")  # info/refs and objects/info/packs

    dest = tmp_path / "dest"
    url = http_origin.url("/repo.git")
    git(env, "-c", f"http.proxy={proxy.url}", "clone", "-q", url, dest)

    assert (dest / "README.txt").read_text() == "cloned through fwdproxy\n"
    proxy.wait_for_log("GET", f"{url}/info/refs?service=git-upload-pack", 200)


# -- pip -----------------------------------------------------------------------------------

WHEEL = "fwdproxy_e2e_pkg-1.0-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(path: Path) -> None:
    """A minimal pure-Python wheel: one module, METADATA, WHEEL and RECORD (PEP 427)."""
    dist_info = "fwdproxy_e2e_pkg-1.0.dist-info"
    files = {
        "fwdproxy_e2e_pkg.py": b'GREETING = "fetched through fwdproxy"\n',
        f"{dist_info}/METADATA": (b"Metadata-Version: 2.1\nName: fwdproxy-e2e-pkg\n"
                                  b"Version: 1.0\nSummary: fwdproxy end-to-end test package\n"),
        f"{dist_info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: fwdproxy-e2e\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_pip_download(proxy: ProxyProcess, http_origin: Origin, site: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed in this interpreter")
    (site / "files").mkdir()
    wheel = site / "files" / WHEEL
    build_wheel(wheel)
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    project = site / "simple" / "fwdproxy-e2e-pkg"
    project.mkdir(parents=True)
    (site / "simple" / "index.html").write_text(
        '<!DOCTYPE html><html><body><a href="fwdproxy-e2e-pkg/">fwdproxy-e2e-pkg</a>'
        "</body></html>\n")
    (project / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{WHEEL}#sha256={sha256}">{WHEEL}</a>'
        "</body></html>\n")

    out = tmp_path / "downloads"
    env = client_env(PIP_CONFIG_FILE="/dev/null", HOME=str(tmp_path))
    result = run([
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--no-cache-dir", "--index-url", http_origin.url("/simple/"),
        "--trusted-host", "origin.test", "--proxy", proxy.url, "-d", out,
        "fwdproxy-e2e-pkg",
    ], env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / WHEEL).read_bytes() == wheel.read_bytes()
    proxy.wait_for_log("GET", http_origin.url("/simple/fwdproxy-e2e-pkg/"), 200)
    proxy.wait_for_log("GET", http_origin.url(f"/files/{WHEEL}"), 200)
