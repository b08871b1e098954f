"""W8, the web gateway: a 100 MiB download and a ~20 MiB HTML page fetched through
``/browse/`` of a fwdproxy with ``gateway: true``, and straight from the origin.

Strategy: the workload has its own origin and its own fwdproxy, so that the proxy's
memory is its own: a small threaded server in a child process (``bench.py
_gateway_origin``, on the load core) answers from files with sendfile(2), so the
origin costs next to nothing: a sparse 100 MiB ``application/octet-stream`` file (zero
pages) and a page written once by `write_page` (fixed seed: the same bytes every run),
shaped for the rewriter: links, images with srcset, ``<style>`` with url(), style
attributes, text, comments, a few scripts. The client is curl (``-o /dev/null``), else
``bench.py _gateway_fetch``, a small streaming Python client; while it runs, the
proxy's VmRSS is read from /proc at about 20 Hz, and VmHWM at the end. Rounds are
interleaved (per round: the download direct, through the gateway, the page direct,
through the gateway). A last, untimed fetch of the page through the gateway is kept
and checked: every URL of the page must come back under ``/browse/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
import socketserver
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .peers import Target, start_fwdproxy
from .processes import ROOT, Proc, Processes, clean_env, cpu_seconds, free_port, log, pinned, wait_ports

BIG_BYTES = 100 * 2**20  # the download: the issue's 100 MiB
PAGE_BYTES = 20 * 2**20  # the page: at least this much HTML (it ends at a whole block)
WARMUP_BYTES = 64 * 2**10  # the unrecorded first page (code paths, the first buffers)
PAGE_SEED = 14  # the issue's number: the page is the same bytes in every run
SAMPLE_INTERVAL = 0.05  # 20 Hz: a 100 MiB relay at ~300 MiB/s still gets ~6 samples
FETCH_TIMEOUT = 600.0  # one fetch; a rewrite slower than 35 KiB/s fails rather than hangs
BOUNDED_MIB = 50  # peak minus idle past this means the memory follows the body's size
BIG, PAGE, SMALL = "/big.bin", "/page.html", "/small.html"
KINDS = {BIG: "application/octet-stream", PAGE: "text/html; charset=utf-8",
         SMALL: "text/html; charset=utf-8"}
# A URL the rewriter left pointing outside the gateway: in an attribute, or url( in CSS.
_LEFT_OUT = re.compile(rb"""(?:=|url\(|,)\s*["']?(?:https?:)?//""", re.I)


# --- the page ---------------------------------------------------------------------------


WORDS = ("gateway", "proxy", "stream", "chunk", "rewrite", "browser", "origin", "memory",
         "bounded", "page", "link", "image", "style", "script", "table", "garden", "river",
         "market", "winter", "summer", "number", "letter", "question", "answer", "history",
         "science", "music", "travel", "café", "naïve", "façade", "résumé", "über", "déjà-vu")


@dataclass(frozen=True)
class Page:
    path: Path
    size: int  # bytes
    urls: int  # the URLs in it that the gateway must turn into /browse/ links


class _PageWriter:
    """Blocks of HTML from one seeded random generator, counting the URLs they hold."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.urls = 0
        self.n = 0

    def words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(low, high)))

    def link(self, url: str) -> str:
        self.urls += 1
        return url

    def head(self) -> str:
        return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>{self.words(3, 6)}</title>\n"
                f'<link rel="stylesheet" href="{self.link("/static/css/site.css?v=14")}">\n'
                f'<link rel="icon" href="{self.link("https://cdn.example.test/favicon.ico")}">\n'
                f'<link rel="preload" as="image" href="{self.link("/img/hero.webp")}">\n'
                "</head>\n<body>\n"
                f'<header><a href="{self.link("/")}" class="logo">Home</a> <a href="#main">skip</a>'
                "</header>\n<main id=\"main\">\n")

    def block(self) -> str:
        self.n += 1
        n, pick = self.n, self.rng.random()
        if n % 400 == 0:
            return self.style(n)
        if n % 3000 == 1500:
            return self.script(n)
        if pick < 0.30:
            return self.paragraph(n)
        if pick < 0.50:
            return self.navigation(n)
        if pick < 0.70:
            return self.figure(n)
        if pick < 0.80:
            return self.card(n)
        if pick < 0.90:
            return self.table(n)
        return f"<!-- block {n}: {self.words(2, 6)} -->\n<p>{self.words(10, 40)}</p>\n"

    def paragraph(self, n: int) -> str:
        inline = (f' <a href="{self.link(f"https://www.example.test/wiki/{self.rng.choice(WORDS)}")}">'
                  f"{self.words(1, 3)}</a>" if self.rng.random() < 0.6 else "")
        return (f"<p>{self.words(20, 60)} <em>{self.words(1, 4)}</em> &amp; <strong>"
                f"{self.words(1, 3)}</strong> &mdash;{inline} {self.words(10, 40)}.</p>\n")

    def navigation(self, n: int) -> str:
        items = []
        for k in range(self.rng.randint(3, 8)):
            url = self.rng.choice((f"/section/{n % 97}/article-{n}-{k}.html?ref=home&amp;pos={k}",
                                   f"../archive/{n}/{k}/", f"https://news.example.test/{n}/{k}",
                                   f"//static.example.test/doc/{n}-{k}.pdf"))
            items.append(f'<li><a href="{self.link(url)}" class="nav">{self.words(1, 4)}</a></li>')
        items.append('<li><a href="mailto:team@example.test">mail</a> '
                     '<a href="javascript:void(0)" onclick="return false">menu</a></li>')
        return f'<nav><ul class="menu menu-{n}">' + "".join(items) + "</ul></nav>\n"

    def figure(self, n: int) -> str:
        src = self.link(f"/img/{n}.jpg")
        srcset = ", ".join(self.link(f"{base}/img/{n}-{w}.jpg") + f" {w}w" for base, w in
                           (("", 480), ("", 960), ("https://cdn.example.test", 1920)))
        return (f'<figure class="photo"><img src="{src}" srcset="{srcset}" '
                f'sizes="(max-width: 600px) 480px, 960px" alt="{self.words(2, 6)}" loading="lazy" '
                f'width="960" height="540"><figcaption>{self.words(4, 12)}</figcaption></figure>\n')

    def card(self, n: int) -> str:
        return (f'<div class="card" style="background-image: url(\'{self.link(f"/img/card-{n}.png")}\')">'
                f'<h3><a href="{self.link(f"/cards/{n}")}">{self.words(2, 5)}</a></h3>'
                f"<p>{self.words(15, 35)}</p></div>\n")

    def table(self, n: int) -> str:
        rows = "".join(f"<tr><td>{n}.{r}</td><td>{self.words(2, 5)}</td><td>{self.rng.randint(1, 9999)}"
                       "</td></tr>" for r in range(self.rng.randint(3, 10)))
        return ('<table class="data"><thead><tr><th>#</th><th>name</th><th>value</th></tr></thead>'
                f"{rows}</table>\n")

    def style(self, n: int) -> str:
        rules = []
        for k in range(self.rng.randint(4, 12)):
            rules.append(f".c{n}-{k} {{ background: #fff url({self.link(f'/img/bg-{n}-{k}.png')}) no-repeat; "
                         "margin: 0 auto; padding: 4px 8px }")
        rules.append(f'.i{n}::before {{ content: ""; background-image: '
                     f'url("{self.link(f"https://cdn.example.test/icons/{n}.svg")}") }}')
        rules.append(f"@font-face {{ font-family: f{n}; src: url({self.link(f'/fonts/f{n}.woff2')}) "
                     'format("woff2") }')
        return "<style>\n/* block " + str(n) + " */\n" + "\n".join(rules) + "\n</style>\n"

    def script(self, n: int) -> str:
        lines = [f"var data{n} = [{', '.join(str(self.rng.randint(0, 999)) for _ in range(40))}];",
                 f"function sum{n}(xs) {{ var t = 0; for (var i = 0; i < xs.length; i++) {{ "
                 "if (xs[i] < 500 && xs[i] > 2) { t += xs[i]; } } return t; }",
                 f"document.title = 'page ' + sum{n}(data{n}) + ' <b>bold</b> </div>';"]
        body = "\n".join(lines * self.rng.randint(20, 60))
        return f"<script>\n{body}\n</script>\n"

    def tail(self) -> str:
        return (f'</main>\n<footer><a href="{self.link("/about")}">about</a> '
                '<a href="#top">top</a></footer>\n</body>\n</html>\n')


def write_page(path: Path, size: int, seed: int = PAGE_SEED) -> Page:
    """An HTML page of at least `size` bytes (UTF-8), the same for the same seed."""
    writer = _PageWriter(seed)
    written = 0
    with path.open("wb") as out:
        parts = [writer.head()]
        while True:
            data = "".join(parts).encode()
            out.write(data)
            written += len(data)
            if written >= size:
                break
            parts = [writer.block() for _ in range(200)]
        data = writer.tail().encode()
        out.write(data)
        written += len(data)
    return Page(path, written, writer.urls)


# --- the origin (a child process) -------------------------------------------------------


def origin_main(spec: dict[str, Any]) -> None:
    """``bench.py _gateway_origin SPEC``: answer GET for spec["files"] (path -> [file,
    content type]) on 127.0.0.1:spec["port"], one request per connection, with sendfile."""
    files = {path: (Path(name), kind) for path, (name, kind) in spec["files"].items()}

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(60)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1 << 16)
                if not chunk or len(head) > 1 << 16:
                    return
                head += chunk
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            entry = files.get(target)
            if entry is None:
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with entry[0].open("rb") as body:
                size = os.fstat(body.fileno()).st_size
                sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {entry[1]}\r\nContent-Length: {size}\r\n"
                             "Connection: close\r\n\r\n".encode())
                if method != "HEAD":
                    sock.sendfile(body)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", int(spec["port"])), Handler) as server:
        server.serve_forever()


# --- the Python client (when curl is missing; a child process too) ----------------------


class _Body:
    """A response body read from a socket as it comes: Content-Length, chunked or close."""

    def __init__(self, sock: socket.socket, buf: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(buf)

    def more(self) -> bool:
        chunk = self.sock.recv(1 << 18)
        self.buf += chunk
        return bool(chunk)

    def take(self, size: int) -> Iterator[bytes]:
        """`size` bytes, as they arrive."""
        while size > 0:
            if not self.buf and not self.more():
                raise ConnectionError("the connection closed inside the body")
            piece = bytes(self.buf[:size])
            del self.buf[:size]
            size -= len(piece)
            yield piece

    def line(self) -> bytes:
        for _ in range(1 << 10):  # a chunk-size line arrives in a few reads at most
            cut = self.buf.find(b"\r\n")
            if cut >= 0:
                text = bytes(self.buf[:cut])
                del self.buf[:cut + 2]
                return text
            if len(self.buf) > 1 << 16 or not self.more():
                break
        raise ConnectionError("bad chunked body")

    def chunked(self) -> Iterator[bytes]:
        while size := int(self.line().split(b";")[0], 16):
            yield from self.take(size)
            self.line()
        while self.line():  # trailers
            pass

    def until_close(self) -> Iterator[bytes]:
        while True:
            if self.buf:
                yield bytes(self.buf)
                self.buf.clear()
            if not self.more():
                return


def fetch_main(url: str, out: str) -> None:
    """``bench.py _gateway_fetch URL OUT``: GET `url` (http://127.0.0.1:PORT/...), the body
    to `out` (/dev/null to discard); prints "status bytes seconds" as curl's -w does."""
    started = time.perf_counter()
    rest = url.removeprefix("http://")
    authority, _, path = rest.partition("/")
    port = int(authority.rpartition(":")[2])
    status, size = 0, 0
    with socket.create_connection(("127.0.0.1", port), timeout=FETCH_TIMEOUT) as sock, \
            open(out, "wb") as sink:
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: fwdproxy-bench\r\n"
                     "Connection: close\r\n\r\n".encode())
        body = _Body(sock, b"")
        for _ in range(1 << 10):
            if b"\r\n\r\n" in body.buf or not body.more():
                break
        head, _, after = bytes(body.buf).partition(b"\r\n\r\n")
        body.buf = bytearray(after)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ")[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        if "chunked" in fields.get("transfer-encoding", "").lower():
            pieces = body.chunked()
        elif "content-length" in fields:
            pieces = body.take(int(fields["content-length"]))
        else:
            pieces = body.until_close()
        for piece in pieces:
            size += len(piece)
            sink.write(piece)
    print(f"{status} {size} {time.perf_counter() - started:.6f}")


# --- the workload -----------------------------------------------------------------------


def proc_status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) of `pid` from /proc/PID/status; {} once it is gone."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


class GatewayRun:
    """W8's origin, its fwdproxy, the client, and the figures of each fetch."""

    def __init__(self, procs: Processes, work: Path, *, curl: str | None, proxy_cpu: str | None,
                 load_cpu: str | None) -> None:
        self.procs, self.curl = procs, curl
        self.proxy_cpu, self.load_cpu = proxy_cpu, load_cpu
        self.folder = work / "gateway"
        self.folder.mkdir()
        self.origin_port = 0
        self.origin: Proc | None = None
        self.proxy: Target | None = None
        self.page = Page(self.folder / "page.html", 0, 0)  # written by start()

    def start(self, work: Path, tls_port: int) -> str | None:
        """Write the files, start the origin and fwdproxy; None, or what failed."""
        with (self.folder / "big.bin").open("wb") as big:  # sparse: zero pages, no disk reads
            big.truncate(BIG_BYTES)
        started = time.perf_counter()
        self.page = write_page(self.folder / "page.html", PAGE_BYTES)
        write_page(self.folder / "small.html", WARMUP_BYTES, seed=PAGE_SEED + 1)
        log(f"W8: page of {self.page.size / 2**20:.1f} MiB with {self.page.urls:,} URLs written in "
            f"{time.perf_counter() - started:.1f} s")
        self.origin_port = free_port()
        spec = {"port": self.origin_port,
                "files": {path: [str(self.folder / path[1:]), kind] for path, kind in KINDS.items()}}
        command = [sys.executable, str(ROOT / "scripts" / "bench.py"), "_gateway_origin", json.dumps(spec)]
        self.origin = self.procs.start("gateway origin", pinned(self.load_cpu, command),
                                       self.folder / "origin-stderr.log")
        if not wait_ports(self.origin, [self.origin_port]):
            return f"the W8 origin did not start: {self.origin.tail(8)}"
        self.proxy = start_fwdproxy(self.procs, work, "fwdproxy-gateway", work / "empty", self.proxy_cpu,
                                    tls_port=tls_port, gateway=True)
        if not self.proxy.running:
            return f"fwdproxy with the gateway on: {self.proxy.status}"
        return None

    def url(self, path: str, via_gateway: bool) -> str:
        if not via_gateway:
            return f"http://127.0.0.1:{self.origin_port}{path}"
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.port}/browse/http/127.0.0.1:{self.origin_port}{path}"

    def fetch(self, path: str, via_gateway: bool, out: str = "/dev/null") -> dict[str, Any]:
        """One GET, the body to `out`; while it runs, the proxy's VmRSS at ~20 Hz (and its CPU)."""
        assert self.proxy is not None and self.proxy.proc is not None
        pid = self.proxy.proc.pid
        url = self.url(path, via_gateway)
        if self.curl is not None:
            command = [self.curl, "-sS", "--noproxy", "*", "--max-time", f"{FETCH_TIMEOUT:g}", "-o", out,
                       "-w", "%{http_code} %{size_download} %{time_total}", url]
        else:
            command = [sys.executable, str(ROOT / "scripts" / "bench.py"), "_gateway_fetch", url, out]
        peak, samples = 0, 0
        cpu_before = cpu_seconds(pid)
        deadline = time.monotonic() + FETCH_TIMEOUT + 30
        with subprocess.Popen(pinned(self.load_cpu, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=clean_env()) as client:
            try:
                while client.poll() is None and time.monotonic() < deadline:
                    rss = proc_status_kib(pid).get("VmRSS", 0)
                    peak, samples = max(peak, rss), samples + 1
                    time.sleep(SAMPLE_INTERVAL)
                if client.poll() is None:
                    client.kill()
                    client.wait(timeout=10)
                    return {"rss_peak_kib": peak, "rss_samples": samples,
                            "error": f"the client did not finish in {FETCH_TIMEOUT + 30:g} s"}
                output, errors = client.communicate(timeout=30)  # it has exited: only the pipes left
            except BaseException:
                client.kill()
                client.wait(timeout=10)
                raise
        cpu_after = cpu_seconds(pid)
        figures: dict[str, Any] = {"rss_peak_kib": peak, "rss_samples": samples}
        if via_gateway and cpu_before is not None and cpu_after is not None:
            figures["proxy_cpu_s"] = round(cpu_after - cpu_before, 3)
        try:
            code, size, seconds = output.split()
            figures.update(status=int(code), bytes=int(size), seconds=float(seconds))
        except ValueError:
            figures["error"] = f"client: {output.strip()} {errors.strip()[:300]}"
            return figures
        if figures["status"] != 200:
            figures["error"] = f"HTTP {figures['status']}"
        if not self.proxy.proc.alive():
            figures["error"] = f"fwdproxy exited: {self.proxy.proc.tail(5)}"
        return figures

    def stop(self) -> None:
        """End W8's fwdproxy and origin (they cost nothing to the workloads after it)."""
        for proc in (self.proxy.proc if self.proxy is not None else None, self.origin):
            if proc is not None:
                self.procs.stop(proc)


def run_w8(procs: Processes, work: Path, *, rounds: int, curl: str | None, proxy_cpu: str | None,
           load_cpu: str | None, tls_port: int) -> dict[str, Any]:
    """W8 (see the module's docstring): the figures, or {"error": ...}."""
    run = GatewayRun(procs, work, curl=curl, proxy_cpu=proxy_cpu, load_cpu=load_cpu)
    figures: dict[str, Any] = {"rounds_wanted": rounds, "client": "curl" if curl else "python",
                               "big_bytes": BIG_BYTES}
    try:
        problem = run.start(work, tls_port)
        figures.update(page_bytes=run.page.size, page_urls=run.page.urls)
        if problem is not None:
            figures["error"] = problem
            log(f"W8: {problem}")
            return figures
        _measure(run, rounds, figures)
    finally:
        run.stop()
    return figures


def _measure(run: GatewayRun, rounds: int, figures: dict[str, Any]) -> None:
    assert run.proxy is not None and run.proxy.proc is not None
    pid = run.proxy.proc.pid
    figures["rss_fresh_kib"] = proc_status_kib(pid).get("VmRSS")
    warm = run.folder / "small-received.html"
    first = run.fetch(SMALL, True, str(warm))  # warm-up, not recorded
    if "error" in first or not warm.exists() or b"/browse/" not in warm.read_bytes():
        figures["error"] = f"the gateway's first page: {first.get('error', 'not rewritten')}"
        log(f"W8: {figures['error']}")
        return
    time.sleep(0.5)
    status = proc_status_kib(pid)
    figures["rss_idle_kib"], figures["hwm_idle_kib"] = status.get("VmRSS"), status.get("VmHWM")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        path: {"direct": [], "gateway": []} for path in (BIG, PAGE)}
    for number in range(1, rounds + 1):
        for path in (BIG, PAGE):
            for via in ("direct", "gateway"):
                one = run.fetch(path, via == "gateway")
                results[path][via].append(one)
                log(f"W8 round {number}/{rounds}: {path} {via}: "
                    + (f"{one['seconds']:.3f} s, {one['bytes']:,} bytes" if "seconds" in one else "")
                    + (f", proxy peak RSS {one['rss_peak_kib'] / 1024:.1f} MiB" if via == "gateway" else "")
                    + f" {one.get('error', '')}")
    kept = run.folder / "page-received.html"
    check = run.fetch(PAGE, True, str(kept))
    status = proc_status_kib(pid)
    figures["rss_end_kib"], figures["hwm_end_kib"] = status.get("VmRSS"), status.get("VmHWM")
    figures["rounds"] = {path[1:]: by_via for path, by_via in results.items()}
    figures["download"] = _summary(results[BIG], BIG_BYTES, relayed=True)
    figures["page"] = _summary(results[PAGE], figures["page_bytes"], relayed=False)
    figures["page"]["check"] = _page_check(kept, check, figures["page_urls"])
    kept.unlink(missing_ok=True)
    peaks = [r["rss_peak_kib"] for by_via in results.values() for r in by_via["gateway"]]
    peaks.append(check["rss_peak_kib"])
    idle = figures["rss_idle_kib"] or 0
    figures["rss_peak_sampled_kib"] = max(peaks)
    figures["growth_sampled_kib"] = max(peaks) - idle
    figures["growth_hwm_kib"] = (figures["hwm_end_kib"] or 0) - idle
    figures["bounded"] = max(figures["growth_sampled_kib"], figures["growth_hwm_kib"]) <= BOUNDED_MIB * 1024
    log(f"W8: proxy RSS idle {idle / 1024:.1f} MiB, peak {max(peaks) / 1024:.1f} MiB sampled, "
        f"VmHWM {(figures['hwm_end_kib'] or 0) / 1024:.1f} MiB")


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _summary(by_via: dict[str, list[dict[str, Any]]], size: int, *, relayed: bool) -> dict[str, Any]:
    """Median seconds and MiB/s each way, the gateway's time against direct; `relayed`: the
    gateway passes the body as it is, so every round must bring all `size` bytes."""
    summary: dict[str, Any] = {"bytes": size}
    for via, rounds in by_via.items():
        good = [r for r in rounds if "error" not in r]
        seconds = _median([r["seconds"] for r in good])
        summary[via] = {
            "seconds": seconds, "mibps": round(size / 2**20 / seconds, 1) if seconds else None,
            "received_bytes": sorted({r["bytes"] for r in good}),
            "errors": [r["error"] for r in rounds if "error" in r]}
        if via == "gateway":
            summary[via]["proxy_cpu_s"] = _median([r["proxy_cpu_s"] for r in good if "proxy_cpu_s" in r])
            summary[via]["rss_peak_kib"] = max((r["rss_peak_kib"] for r in rounds), default=None)
    direct, gateway = summary["direct"]["seconds"], summary["gateway"]["seconds"]
    summary["time_ratio"] = round(gateway / direct, 2) if direct and gateway else None
    summary["direct_complete"] = summary["direct"]["received_bytes"] == [size]
    if relayed:
        summary["complete"] = (bool(by_via["gateway"]) and not summary["gateway"]["errors"]
                               and all(r["bytes"] == size for r in by_via["gateway"]))
    return summary


def _page_check(kept: Path, fetched: dict[str, Any], expected: int) -> dict[str, Any]:
    """The kept page: how many /browse/ links it has against the URLs written, and how many
    URLs still point outside the gateway."""
    if "error" in fetched or not kept.exists():
        return {"ok": False, "error": fetched.get("error", "no page kept")}
    body = kept.read_bytes()
    found, left = body.count(b"/browse/"), len(_LEFT_OUT.findall(body))
    return {"ok": found == expected and left == 0, "bytes": len(body), "browse_links": found,
            "urls_written": expected, "left_pointing_out": left}
