"""How figures are taken: wrk runs (W1, W2, W5, the sweep) and curl downloads (W3), in
interleaved rounds over the targets, parsed, and summed up as medians."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from .origin import Origin
from .peers import Target
from .processes import Processes, clean_env, cpu_seconds, log, pinned, which
from .profiler import add, budget, difference


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --- load generators -------------------------------------------------------------------


COUNT_CLOSES_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) responses = 0; closes = 0 end
function response(status, headers, body)
  responses = responses + 1
  for name, value in pairs(headers) do
    if string.lower(name) == "connection" and string.find(string.lower(value), "close") then
      closes = closes + 1
      break
    end
  end
end
function done(summary, latency, requests)
  local r, c = 0, 0
  for _, t in ipairs(threads) do r = r + t:get("responses"); c = c + t:get("closes") end
  io.write(string.format("bench-closes %d %d\\n", r, c))
end
"""

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms), request count, errors from wrk's --latency output."""
    figures: dict[str, Any] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        figures["rps"] = float(match.group(1))
    if match := re.search(r"(\d+) requests in", output):
        figures["requests"] = int(match.group(1))
    for pct in ("50", "99"):
        if match := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M):
            figures[f"p{pct}_ms"] = round(float(match.group(1)) * UNITS_MS[match.group(2)], 3)
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        figures["non_2xx"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        figures["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                            map(int, match.groups()), strict=True))
    if match := re.search(r"bench-closes (\d+) (\d+)", output):
        figures["responses"], figures["closes"] = int(match.group(1)), int(match.group(2))
    return figures


def profile_snapshot(pid: int, path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the profiler in `pid` for its counts so far (SIGUSR2) and read them from `path`."""
    def read() -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    previous = read()
    seen = previous["snapshot"] if previous else 0
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = read()
        if data is not None and data["snapshot"] > seen:
            return data
        time.sleep(0.01)
    raise RuntimeError(f"the profiler in pid {pid} wrote no counts to {path} within {timeout:g} s")


def summarize_cpu(summary: dict[str, Any], rounds: list[dict[str, Any]], served: str) -> None:
    """--profile: the proxy's CPU per request over `rounds` (and the profiler's budget)."""
    measured = [r for r in rounds if "proxy_cpu_s" in r and r.get(served)]
    if not measured:
        return
    count = sum(int(r[served]) for r in measured)
    for r in measured:
        r["proxy_cpu_us_per_request"] = round(r["proxy_cpu_s"] * 1e6 / int(r[served]), 1)
    summary["proxy_cpu_s"] = round(sum(r["proxy_cpu_s"] for r in measured), 3)
    # the median of the rounds, as for the other figures (the budget below pools them)
    summary["proxy_cpu_us_per_request"] = median([r["proxy_cpu_us_per_request"] for r in measured])
    summary["requests_measured"] = count
    counts = None
    for r in measured:
        if "profile" in r:
            counts = add(counts, r["profile"])
    if counts is not None:
        summary["budget"] = budget(counts, count)


class Measurer:
    """The settings of a run, its cores and load generators, and the wrk and curl rounds
    that the workloads (workloads.Bench) are made of."""

    def __init__(self, args: argparse.Namespace, work: Path, procs: Processes) -> None:
        self.args = args
        self.work = work
        self.procs = procs
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = cpus
        self.proxy_cpu: str | None = str(cpus[0]) if len(cpus) >= 2 else None
        self.load_cpu: str | None = str(cpus[-1]) if len(cpus) >= 2 else None
        self.wrk = which("wrk")
        self.curl = which("curl")
        self.origin: Origin | None = None
        self.lua_dir = work / "lua"
        self.lua_dir.mkdir()

    @property
    def minor_rounds(self) -> int:
        """Rounds for W2 and W3 (W1 and W5 use --rounds)."""
        return max(1, min(int(self.args.rounds), 3))

    def pinning_text(self) -> str:
        if self.proxy_cpu is None:
            return "no pinning (fewer than 2 cores)"
        return (f"proxies on core {self.proxy_cpu}; origin, wrk, curl and the W4 client on core "
                f"{self.load_cpu} (taskset)")

    # --profile: the proxy's CPU, and the profiler's counts, around each measured round ----

    def cpu_mark(self, target: Target) -> dict[str, Any] | None:
        """Before a measured round (--profile, fwdproxy only): its CPU so far, and the counts."""
        if not self.args.profile or target.kind != "fwdproxy" or target.proc is None:
            return None
        mark: dict[str, Any] = {"cpu_s": cpu_seconds(target.proc.pid)}
        if target.profile is not None:
            mark["profile"] = profile_snapshot(target.proc.pid, target.profile)
        return mark

    def cpu_note(self, target: Target, mark: dict[str, Any] | None, figures: dict[str, Any]) -> None:
        """After the round: the CPU it cost the proxy (/proc), and the profiler's counts for it."""
        if mark is None or target.proc is None or not target.proc.alive():
            return
        time.sleep(0.3)  # the proxy closes the round's last connections
        cpu = cpu_seconds(target.proc.pid)
        if cpu is not None and mark["cpu_s"] is not None:
            figures["proxy_cpu_s"] = figures["proxy_cpu_proc_s"] = round(cpu - mark["cpu_s"], 3)
        if target.profile is not None:
            after = profile_snapshot(target.proc.pid, target.profile)
            figures["profile"] = difference(mark["profile"], after)
            # getrusage, read inside the process, is finer than /proc's clock ticks (10 ms)
            figures["proxy_cpu_s"] = round(figures["profile"]["cpu_s"], 4)

    # W1/W2 (and W5, the sweep): wrk -----------------------------------------------------

    def wrk_round(self, target: Target, *, connections: int, seconds: int, close: bool,
                  host: str = "127.0.0.1") -> dict[str, Any]:
        """One wrk run against `target` (through a proxy: for http://`host`:PORT/1k);
        {"error": ...} when it failed."""
        assert self.origin is not None and self.wrk is not None
        origin_port = self.origin.port_a
        if target.kind == "direct":
            url, path = f"http://127.0.0.1:{origin_port}/1k", "/1k"
        else:
            url, path = f"http://127.0.0.1:{target.port}/", f"http://{host}:{origin_port}/1k"
        script = self.lua_dir / f"{'close' if close else 'keep'}-{target.kind}-{host}.lua"
        text = f'wrk.path = "{path}"\nwrk.headers["Host"] = "{host}:{origin_port}"\n'
        if close:
            text += 'wrk.headers["Connection"] = "close"\n' + COUNT_CLOSES_LUA
        script.write_text(text)
        command = pinned(self.load_cpu, [self.wrk, "-t1", f"-c{connections}", f"-d{seconds}s",
                                         "--latency", "--timeout", "5s", "-s", str(script), url])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                                  env=clean_env())
        except subprocess.TimeoutExpired:
            return {"error": "wrk did not finish in time"}
        figures = parse_wrk(done.stdout)
        if not figures.get("rps") or figures.get("non_2xx"):
            figures["error"] = (f"wrk: {figures.get('non_2xx', 0)} non-2xx responses"
                                if figures.get("non_2xx") else "wrk: no requests completed")
            figures["output"] = (done.stdout + done.stderr)[-800:]
        if target.proc is not None and not target.proc.alive():
            figures["error"] = f"{target.name} exited: {target.proc.tail(5)}"
        return figures

    def interleaved_wrk(self, key: str, targets: list[Target], rounds: int, *, connections: int,
                        seconds: int, close: bool, host: str = "127.0.0.1") -> None:
        """A 1 s warm-up each, then `rounds` rounds over `targets` in turn; raw rounds and
        medians into results[key]."""
        for target in targets:
            target.results[key] = {"rounds": []}
            if target.running:  # warm-up, not recorded: pools, caches, the first connections
                self.wrk_round(target, connections=connections, seconds=1, close=close, host=host)
        for number in range(1, rounds + 1):
            for target in targets:
                if not target.running:
                    continue
                mark = self.cpu_mark(target)
                figures = self.wrk_round(target, connections=connections, seconds=seconds, close=close,
                                         host=host)
                self.cpu_note(target, mark, figures)
                target.results[key]["rounds"].append(figures)
                shown = f"{figures['rps']:,.0f} req/s" if "rps" in figures else ""
                log(f"{key} round {number}/{rounds}: {target.name}: {shown} {figures.get('error', '')}")
        for target in targets:
            summary = target.results[key]
            good = [r for r in summary["rounds"] if "error" not in r]
            summary["rps"] = median([r["rps"] for r in good])
            for pct in ("p50_ms", "p99_ms"):
                summary[pct] = median([r[pct] for r in good if pct in r])
            errors = [r["error"] for r in summary["rounds"] if "error" in r]
            if errors:
                summary["errors"] = errors
            requests = sum(r.get("requests", 0) for r in good)
            socket_errors = sum(sum(r.get("socket_errors", {}).values()) for r in good)
            summary["socket_errors"], summary["requests"] = socket_errors, requests
            summarize_cpu(summary, good, "requests")
            if close and good:
                responses = sum(r.get("responses", 0) for r in good)
                closes = sum(r.get("closes", 0) for r in good)
                summary["responses_with_connection_close"] = f"{closes}/{responses}"
                # wrk reconnects after a response with "Connection: close", and after a
                # proxy closes the connection (the guard saw whether this one does).
                summary["reconnected_every_request"] = (
                    (responses > 0 and closes >= responses * 0.999) or target.guard.get("keepalive") is False)

    # W3: curl ---------------------------------------------------------------------------

    def curl_round(self, target: Target, tls: bool) -> dict[str, Any]:
        assert self.origin is not None and self.curl is not None
        origin = self.origin
        # TLS by the name localhost (so a server name is sent, for a proxy to judge),
        # connected to 127.0.0.1 (through a proxy: CONNECT 127.0.0.1:T).
        url = (f"https://localhost:{origin.port_tls}/big" if tls else f"http://127.0.0.1:{origin.port_a}/big")
        command = [self.curl, "-sS", "-o", "/dev/null", "--max-time", "300", "--cacert", str(origin.ca),
                   "--connect-to", f"localhost:{origin.port_tls}:127.0.0.1:{origin.port_tls}",
                   "-w", "%{http_code} %{size_download} %{speed_download}"]
        if target.kind == "direct":
            command += ["--noproxy", "*"]
        else:
            command += ["--proxy", f"http://127.0.0.1:{target.port}"]
            if not tls:
                command.append("--proxytunnel")
        try:
            done = subprocess.run(pinned(self.load_cpu, [*command, url]), capture_output=True,
                                  text=True, timeout=330, env=clean_env())
        except subprocess.TimeoutExpired:
            return {"error": "curl did not finish in time"}
        try:
            code, size, speed = done.stdout.split()
            if int(code) != 200 or int(size) != origin.big_bytes:
                raise ValueError
        except ValueError:
            return {"error": f"curl: {done.stdout.strip()} {done.stderr.strip()[:300]}"}
        return {"mbps": round(float(speed) / 1e6, 1)}
