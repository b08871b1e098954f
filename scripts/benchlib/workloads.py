"""The workloads: W1..W8 and the --workers sweep, as the methods of Bench (the run)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

from bench_rules import LOOKED_UP_HOST as W5_HOST  # the list is consulted for it
from bench_rules import synthetic_domains, write_hosts_list

from .gateway import run_w8
from .httpsload import HttpsLoad
from .measurement import Measurer, median, parse_wrk, summarize_cpu
from .origin import HttpConn, correctness_guard, get_request, open_tunnel
from .peers import Target, start_fwdproxy
from .processes import ALL_CPUS, Processes, clean_env, core_busy, core_times, log, pinned, tree_rss_kib

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")
PROFILED = ("W1", "W2", "W6")  # the workloads --profile can run
W6_CLIENTS, W6_PROCESSES = 20, 4  # W6: concurrent clients, spread over this many processes
W6_FIGURES = ("cps", "setup_p50_ms", "setup_p99_ms", "total_p50_ms", "total_p99_ms", "connect_p50_ms",
              "connect_p99_ms", "client_cpu_cores", "load_core_busy", "proxy_core_busy")


class Bench(Measurer):
    """The run: settings, processes, origin, targets, and what each workload found."""

    def __init__(self, args: argparse.Namespace, work: Path, procs: Processes) -> None:
        super().__init__(args, work, procs)
        self.skipped: dict[str, str] = {}
        self.targets: list[Target] = []
        self.w5_figures: dict[str, Any] = {}
        self.w7_figures: dict[str, Any] = {}
        self.w8_figures: dict[str, Any] = {}
        self.h11_cost_us: float | None = None  # --ceilings: h11's CPU per W1 exchange
        self.sweep: list[Target] = []
        self.sweep_direct: list[float] = []
        self.notes: list[str] = []

    # W1/W2 ------------------------------------------------------------------------------

    def w1(self, targets: list[Target]) -> None:
        self.interleaved_wrk("W1", targets, self.args.rounds, connections=50,
                             seconds=self.args.seconds, close=False)

    def w2(self, targets: list[Target]) -> None:
        self.interleaved_wrk("W2", targets, self.minor_rounds, connections=20,
                             seconds=self.args.seconds, close=True)

    # W3 ---------------------------------------------------------------------------------

    def w3(self, targets: list[Target]) -> None:
        rounds = self.minor_rounds
        keys = (("W3_tls", True), ("W3_plain", False))
        for target in targets:
            for key, tls in keys:
                target.results[key] = {"rounds": []}
                if target.running:  # warm-up, not recorded (page cache, first TLS handshake)
                    self.curl_round(target, tls)
        for number in range(1, rounds + 1):
            for key, tls in keys:
                for target in targets:
                    if not target.running:
                        continue
                    figures = self.curl_round(target, tls)
                    target.results[key]["rounds"].append(figures)
                    log(f"{key} round {number}/{rounds}: {target.name}: "
                        f"{figures.get('mbps', '')} MB/s {figures.get('error', '')}")
        for target in targets:
            for key, _ in keys:
                summary = target.results[key]
                summary["mbps"] = median([r["mbps"] for r in summary["rounds"] if "mbps" in r])
                errors = [r["error"] for r in summary["rounds"] if "error" in r]
                if errors:
                    summary["errors"] = errors

    # W4 ---------------------------------------------------------------------------------

    def w4(self, target: Target) -> None:
        """Many idle tunnels: all must open; KiB of proxy memory per tunnel; a sample still works."""
        assert self.origin is not None and target.proc is not None and target.port is not None
        count, origin_port, pid = self.args.tunnels, self.origin.port_a, target.proc.pid
        for _ in range(10):  # warm-up: the first tunnels' code paths and buffers
            with contextlib.suppress(OSError):
                open_tunnel(target.port, origin_port).close()
        time.sleep(1.0)
        before = tree_rss_kib(pid)
        tunnels: list[HttpConn] = []
        failures: list[str] = []
        deadline = time.monotonic() + 180
        try:
            for index in range(count):
                if time.monotonic() > deadline:
                    failures.append(f"time ran out after {index} tunnels")
                    break
                try:
                    tunnels.append(open_tunnel(target.port, origin_port))
                except (OSError, ValueError, IndexError) as exc:
                    failures.append(f"tunnel {index}: {exc}")
            time.sleep(1.0)
            after = tree_rss_kib(pid)
            step = max(1, len(tunnels) // 20)
            sample = tunnels[::step][:20]
            working = 0
            for conn in sample:
                try:
                    conn.send(get_request(origin_port, "/1k", absolute=False))
                    answer = conn.response()
                    working += answer.status == 200 and len(answer.body) == 1024
                except (OSError, ValueError, IndexError):
                    pass
        finally:
            for conn in tunnels:
                conn.close()
        opened = len(tunnels)
        target.results["W4"] = {
            "tunnels": count, "opened": opened, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_tunnel": round((after - before) / opened, 2) if opened else None,
            "sample_checked": len(sample), "sample_working": working,
            "all_ok": opened == count and working == len(sample),
            "failures": failures[:5], "failure_count": len(failures)}
        log(f"W4 {target.name}: {opened}/{count} tunnels, "
            f"{target.results['W4']['kib_per_tunnel']} KiB each, sample {working}/{len(sample)} working")
        time.sleep(1.0)

    # W5 ---------------------------------------------------------------------------------

    def w5(self, bare: Target) -> None:
        """The big list: start-up, memory against the bare proxy, W1 with it against without."""
        assert bare.port is not None
        count = self.args.domains
        log(f"W5: writing {count:,} synthetic domains")
        big = self.work / "biglist"
        write_hosts_list(big, synthetic_domains(count))
        assert self.origin is not None
        loaded = start_fwdproxy(self.procs, self.work, "fwdproxy-list", big, self.proxy_cpu,
                                tls_port=self.origin.port_tls)
        self.w5_figures = {"domains": count, "startup_bare_s": bare.results.get("startup_s"),
                   "rss_bare_kib": bare.results.get("rss_start_kib")}
        if not loaded.running:
            self.w5_figures["error"] = loaded.status
            log(f"W5: {loaded.status}")
            return
        try:
            self.w5_figures["startup_with_list_s"] = loaded.results["startup_s"]
            self.w5_figures["load_s"] = round(
                loaded.results["startup_s"] - (bare.results.get("startup_s") or 0), 3)
            self.w5_figures["rss_with_list_kib"] = loaded.results["rss_start_kib"]
            self.w5_figures["rss_added_mib"] = round(
                (loaded.results["rss_start_kib"] - (bare.results.get("rss_start_kib") or 0)) / 1024, 1)
            assert self.origin is not None
            loaded.guard = correctness_guard(loaded.port or 0, self.origin)
            self.w5_figures["guard"] = loaded.guard
            if self.wrk is None:
                self.w5_figures["throughput"] = "skipped: wrk not installed"
                return
            without = Target("fwdproxy (no list)", "fwdproxy", port=bare.port, proc=bare.proc)
            self.interleaved_wrk("W1", [without, loaded], self.args.rounds, connections=50,
                                 seconds=self.args.seconds, close=False, host=W5_HOST)
            self.w5_figures["W1_without_list"] = without.results["W1"]
            self.w5_figures["W1_with_list"] = loaded.results["W1"]
            rps_without, rps_with = without.results["W1"]["rps"], loaded.results["W1"]["rps"]
            if rps_without and rps_with:
                self.w5_figures["W1_ratio"] = round(rps_with / rps_without, 3)
        finally:
            if loaded.proc is not None:
                self.procs.stop(loaded.proc)

    # W6 ---------------------------------------------------------------------------------

    def w6(self, targets: list[Target]) -> None:
        """HTTPS as offices use it: per iteration a new connection, CONNECT (not direct), a
        full TLS handshake with the origin, one GET /1k, close; 20 clients, interleaved rounds."""
        assert self.origin is not None
        rounds, seconds = self.minor_rounds, self.args.seconds
        load = HttpsLoad(W6_PROCESSES, W6_CLIENTS)
        try:
            for target in targets:
                target.results["W6"] = {"rounds": []}
                if target.running:  # warm-up, not recorded: the pool's processes, the first handshakes
                    self.https_round(load, target, 1)
            for number in range(1, rounds + 1):
                for target in targets:
                    if not target.running:
                        continue
                    mark = self.cpu_mark(target)
                    figures = self.https_round(load, target, seconds)
                    self.cpu_note(target, mark, figures)
                    target.results["W6"]["rounds"].append(figures)
                    shown = f"{figures['cps']:,.0f} connections/s" if figures.get("cps") else ""
                    log(f"W6 round {number}/{rounds}: {target.name}: {shown} {figures.get('error', '')}")
        finally:
            load.close()
        for target in targets:
            summary = target.results["W6"]
            good = [r for r in summary["rounds"] if "error" not in r]
            for name in W6_FIGURES:
                summary[name] = median([r[name] for r in good if r.get(name) is not None])
            summary["connections"] = sum(r["connections"] for r in good)
            summary["resumed"] = sum(r["resumed"] for r in good)
            summary["failed_connections"] = sum(r["errors"] for r in summary["rounds"])
            summary["tls"] = next((r["tls"] for r in good if r.get("tls")), "")
            errors = [r["error"] for r in summary["rounds"] if "error" in r]
            if errors:
                summary["errors"] = errors
            summarize_cpu(summary, good, "connections")

    def https_round(self, load: HttpsLoad, target: Target, seconds: int) -> dict[str, Any]:
        """One W6 round against `target`, with how busy the load core and the proxies' core were."""
        assert self.origin is not None
        cores = (core_times(self.load_cpu), core_times(self.proxy_cpu))
        try:
            figures = load.round(proxy_port=None if target.kind == "direct" else target.port,
                                 origin_port=self.origin.port_tls, ca=str(self.origin.ca), seconds=seconds)
        except Exception as exc:  # the pool timed out or a client process died
            figures = {"error": f"the W6 clients failed: {type(exc).__name__}: {exc}"}
        figures["load_core_busy"] = core_busy(cores[0], core_times(self.load_cpu))
        figures["proxy_core_busy"] = core_busy(cores[1], core_times(self.proxy_cpu))
        if "client_cpu_s" in figures:
            figures["client_cpu_cores"] = round(figures["client_cpu_s"] / seconds, 3)
        if target.proc is not None and not target.proc.alive():
            figures["error"] = f"{target.name} exited: {target.proc.tail(5)}"
        return figures

    # W7 ---------------------------------------------------------------------------------

    def w7(self, target: Target) -> None:
        """One long W1 run, sampling the proxy's resident memory; then 2 s idle, once more."""
        assert self.origin is not None and self.wrk is not None and target.proc is not None
        seconds = self.args.soak_seconds
        interval = max(1.0, seconds / 20)
        warmup = seconds * 0.2
        script = self.lua_dir / "soak.lua"
        script.write_text(f'wrk.path = "http://127.0.0.1:{self.origin.port_a}/1k"\n'
                          f'wrk.headers["Host"] = "127.0.0.1:{self.origin.port_a}"\n')
        command = pinned(self.load_cpu, [self.wrk, "-t1", "-c50", f"-d{seconds}s", "--latency",
                                         "--timeout", "5s", "-s", str(script),
                                         f"http://127.0.0.1:{target.port}/"])
        log(f"W7: {seconds} s of W1 through {target.name}, memory sampled every {interval:g} s")
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=clean_env()) as wrk:
            try:
                while (elapsed := time.monotonic() - started) < seconds - 0.5 and wrk.poll() is None:
                    time.sleep(min(interval, max(0.05, seconds - 0.5 - elapsed)))
                    samples.append((round(time.monotonic() - started, 1), tree_rss_kib(target.proc.pid)))
                output, _ = wrk.communicate(timeout=seconds + 60)
            except BaseException:
                wrk.kill()
                wrk.wait(timeout=10)
                raise
        time.sleep(2.0)
        idle = tree_rss_kib(target.proc.pid)
        after_warmup = [kib for at, kib in samples if at >= warmup] or [kib for _, kib in samples]
        reference, end = after_warmup[0], samples[-1][1] if samples else 0
        figures = parse_wrk(output)
        self.w7_figures = {"seconds": seconds, "warmup_s": warmup, "samples_kib": samples,
                   "reference_kib": reference, "end_kib": end, "idle_after_2s_kib": idle,
                   "growth_kib": end - reference, "rps": figures.get("rps"),
                   "flat": end <= reference + 5 * 1024 and idle <= end}
        if not figures.get("rps") or figures.get("non_2xx"):
            self.w7_figures["error"] = f"wrk: {output[-400:]}"
        log(f"W7: RSS {reference} KiB after warm-up, {end} KiB at the end, {idle} KiB idle")

    # W8 ---------------------------------------------------------------------------------

    def w8(self) -> None:
        """The web gateway: a 100 MiB download and a ~20 MiB HTML page through /browse/ of a
        fwdproxy of its own (gateway on), against the same files direct (benchlib/gateway.py)."""
        assert self.origin is not None
        self.w8_figures = run_w8(self.procs, self.work, rounds=self.minor_rounds, curl=self.curl,
                                 proxy_cpu=self.proxy_cpu, load_cpu=self.load_cpu,
                                 tls_port=self.origin.port_tls)

    # workers sweep ---------------------------------------------------------------------

    def workers_sweep(self, fwd: Target) -> None:
        """W1 through fwdproxy --workers N for each N, interleaved with direct (for the ratio)
        and with the single-process fwdproxy (what --workers costs or gains)."""
        cores = len(self.cpus)
        single = Target("fwdproxy (no --workers)", "fwdproxy", port=fwd.port, proc=fwd.proc, guard=fwd.guard)
        single.results["workers"] = None
        single.results["pinning"] = f"core {self.proxy_cpu}" if self.proxy_cpu else "all cores"
        self.sweep.append(single)
        for count in self.args.workers:
            if self.load_cpu is not None and cores > count:
                cpu: str | None = ",".join(str(c) for c in self.cpus[:-1])
                pinning = f"core{'s' if cores > 2 else ''} {cpu}"
            else:
                cpu, pinning = None, f"all cores ({ALL_CPUS}), the load generator's too"
            assert self.origin is not None
            target = start_fwdproxy(self.procs, self.work, f"fwdproxy-workers{count}", self.work / "empty",
                                    cpu, tls_port=self.origin.port_tls, workers=count)
            target.name = f"fwdproxy --workers {count}"
            target.results["workers"], target.results["pinning"] = count, pinning
            if target.running:
                assert self.origin is not None and target.port is not None
                target.guard = correctness_guard(target.port, self.origin)
                log(f"guard {target.name}: {target.guard['verdict']}")
            else:
                log(f"{target.name}: {target.status}")
            self.sweep.append(target)
        sweep_direct = Target("direct", "direct")
        try:
            self.interleaved_wrk("W1", [sweep_direct, *self.sweep], self.args.rounds, connections=50,
                                 seconds=self.args.seconds, close=False)
        finally:
            for target in self.sweep[1:]:
                if target.proc is not None:
                    alive = target.proc.alive()
                    target.results["rss_end_kib"] = tree_rss_kib(target.proc.pid) if alive else None
                    self.procs.stop(target.proc)
        self.sweep_direct = [r["rps"] for r in sweep_direct.results["W1"]["rounds"] if "rps" in r]
        base_rps = next((t.results["W1"]["rps"] for t in self.sweep if t.results["workers"] == 1), None)
        if base_rps is None:
            base_rps = single.results["W1"]["rps"]
            self.notes.append("workers sweep: scaling is against the single-process fwdproxy "
                              "(1 was not in --workers)")
        direct_rps = sweep_direct.results["W1"]["rps"]
        for target in self.sweep:
            rps = target.results.get("W1", {}).get("rps")
            target.results["ratio_to_direct"] = round(rps / direct_rps, 3) if rps and direct_rps else None
            target.results["scaling"] = round(rps / base_rps, 3) if rps and base_rps else None

