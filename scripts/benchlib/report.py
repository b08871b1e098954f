"""The report: the markdown table (ratios to the direct connection), the W6, W8 and workers
tables, the PASS/FAIL (and INFO) lines for the issue's targets, and the JSON file."""

# ruff: noqa: RUF001  (the multiplication sign of ratios is meant)
from __future__ import annotations

import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

from .gateway import BOUNDED_MIB, WARMUP_BYTES
from .measurement import median
from .peers import CEILINGS, PYTHON_PEERS, Target
from .profiler import budget_table
from .workloads import W6_CLIENTS, W6_PROCESSES, WORKLOADS, Bench

# The bars of issue 12 where a run has no squid of its own, and its on-the-way targets
# (W1: privoxy's 0.24 of direct there, rounded up).
ISSUE_SQUID_W1, ISSUE_SQUID_W2 = 0.37, 0.45
ON_THE_WAY_W1, ON_THE_WAY_W2 = 0.25, 0.30
PROFILED_NAME = "fwdproxy (profiled)"  # --profile: the fwdproxy under the sampling profiler
SATURATED = 0.95  # a core this busy sets the pace


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value and base else None


def cell(value: float | None, base: float | None, fmt: str = ",.0f") -> str:
    if value is None:
        return "failed"
    r = ratio(value, base)
    return f"{value:{fmt}} (×{r:.2f})" if r is not None else f"{value:{fmt}}"


def table(bench: Bench) -> str:
    direct = bench.targets[0]
    ran = set(bench.args.only)
    domains = bench.args.domains
    label = f"{domains / 1e6:g}M" if domains >= 1_000_000 else f"{domains // 1000}k"
    header = ["", "W1 req/s (×direct)", "W1 p50/p99 ms", "W2 req/s (×direct)", "W3 TLS MB/s (×direct)",
              "W3 plain MB/s (×direct)", "W4 KiB/tunnel", f"W5 {label} list"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def measured(target: Target, key: str) -> bool:
        return key in target.results

    for target in bench.targets:
        name = target.name
        if target.guard and not target.guard.get("ok"):
            name += f" ⚠ {target.guard.get('verdict')}"
        if not target.running:
            rows.append(f"| {name} | {target.status.splitlines()[0][:120]} |" + " |" * (len(header) - 2))
            continue
        cells = [name]
        if measured(target, "W1"):
            w1 = target.results["W1"]
            cells.append(cell(w1["rps"], direct.results.get("W1", {}).get("rps")))
            cells.append(f"{w1['p50_ms']:.2f} / {w1['p99_ms']:.2f}" if w1.get("p50_ms") is not None
                         and w1.get("p99_ms") is not None else "failed")
        else:
            cells += ["—", "—"]
        if measured(target, "W2"):
            w2 = target.results["W2"]
            text = cell(w2["rps"], direct.results.get("W2", {}).get("rps"))
            if w2.get("rps") and not w2.get("reconnected_every_request"):
                text += f" (keep-alive kept: {w2.get('responses_with_connection_close')} closes)"
            cells.append(text)
        else:
            cells.append("—")
        for key in ("W3_tls", "W3_plain"):
            cells.append(cell(target.results[key]["mbps"], direct.results.get(key, {}).get("mbps"))
                         if measured(target, key) else "—")
        if measured(target, "W4"):
            w4 = target.results["W4"]
            per = w4["kib_per_tunnel"]
            cells.append(f"{per:.1f} ({w4['opened']}/{w4['tunnels']} open"
                         f"{'' if w4['sample_working'] == w4['sample_checked'] else ', sample broken'})"
                         if per is not None else f"failed (0/{w4['tunnels']})")
        else:
            cells.append("—")
        if target.kind == "fwdproxy" and "W5" in ran and bench.w5_figures:
            w5 = bench.w5_figures
            if "error" in w5:
                cells.append("failed")
            else:
                text = f"load {w5['load_s']:.2f} s, +{w5['rss_added_mib']:.0f} MiB"
                if "W1_ratio" in w5:
                    text += f", W1 ×{w5['W1_ratio']:.2f}"
                cells.append(text)
        else:
            cells.append("—" if target.kind != "peer" else "n/a")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _pair(figures: dict[str, Any], name: str) -> str:
    p50, p99 = figures.get(f"{name}_p50_ms"), figures.get(f"{name}_p99_ms")
    return f"{p50:.2f} / {p99:.2f}" if p50 is not None and p99 is not None else "—"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def w6_table(bench: Bench) -> str:
    """W6: connections/s against direct, the set-up and total latencies, and the cores' load."""
    direct_cps = bench.targets[0].results.get("W6", {}).get("cps")
    rows = ["| W6 HTTPS, a new connection each | connections/s (×direct) | set-up p50 / p99 ms | "
            "total p50 / p99 ms | TCP connect p50 / p99 ms | clients' CPU (cores) | load core busy | "
            "proxies' core busy |", "|---|---|---|---|---|---|---|---|"]
    for target in bench.targets:
        if "W6" not in target.results:
            if target.kind == "reference":
                rows.append(f"| {target.name} | skipped: no CONNECT | | | | | | |")
            continue
        w6 = target.results["W6"]
        if not target.running:
            rows.append(f"| {target.name} | {target.status.splitlines()[0][:120]} | | | | | | |")
            continue
        name = target.name
        if target.guard and not target.guard.get("ok"):
            name += f" ⚠ {target.guard.get('verdict')}"
        clients = w6.get("client_cpu_cores")
        rows.append(f"| {name} | {cell(w6.get('cps'), direct_cps)} | {_pair(w6, 'setup')} | "
                    f"{_pair(w6, 'total')} | {_pair(w6, 'connect')} | "
                    f"{'—' if clients is None else format(clients, '.2f')} | "
                    f"{_share(w6.get('load_core_busy'))} | "
                    f"{_share(w6.get('proxy_core_busy')) if target.kind != 'direct' else '—'} |")
    return "\n".join(rows)


def w6_lines(bench: Bench) -> list[str]:
    """What W6's table needs said: TLS, resumption, failures, which core set the pace."""
    lines: list[str] = []
    direct = bench.targets[0].results.get("W6", {})
    ran = [t for t in bench.targets if "W6" in t.results]
    tls = next((t.results["W6"]["tls"] for t in ran if t.results["W6"].get("tls")), "")
    resumed = sum(t.results["W6"].get("resumed", 0) for t in ran)
    lines.append(f"- W6: {W6_CLIENTS} clients in {W6_PROCESSES} processes on core {bench.load_cpu}, "
                 f"{tls or 'TLS'}, a full handshake each time ({resumed} sessions resumed); set-up = TCP "
                 "connect + CONNECT and its 200 + TLS handshake")
    if (direct.get("load_core_busy") or 0) >= SATURATED:
        lines.append(f"- W6 direct: the load core was {direct['load_core_busy']:.0%} busy (clients "
                     f"{direct.get('client_cpu_cores') or 0:.2f} cores, the rest mostly nginx's TLS): "
                     "the clients and the origin set direct's pace, and a proxy whose core is not "
                     "saturated may show ×1 while it still has room")
    for target in bench.targets:
        w6 = target.results.get("W6")
        if not w6 or target.kind == "direct" or not target.running:
            continue
        busy = w6.get("proxy_core_busy")
        if busy is not None and busy < SATURATED and (w6.get("load_core_busy") or 0) >= SATURATED:
            lines.append(f"- W6 {target.name}: its core was {busy:.0%} busy while the load core was "
                         f"{w6['load_core_busy']:.0%}: the load side set the pace")
        failed, done = w6.get("failed_connections", 0), w6.get("connections", 0)
        if failed:
            lines.append(f"- W6 {target.name}: {failed:,} failed connections for {done:,} completed: "
                         + next((r.get("first_error", "") for r in w6["rounds"] if r.get("first_error")), ""))
        for error in w6.get("errors", [])[:1]:
            lines.append(f"- {target.name} W6: {len(w6['errors'])} failed round(s): {error[:200]}")
    return lines


def _mib(kib: float | None, sign: str = "") -> str:
    return "—" if kib is None else f"{kib / 1024:{sign}.1f} MiB"


def _timed(figures: dict[str, Any], base: float | None = None) -> str:
    """A fetch's median seconds and MiB/s (and its ratio to `base`, direct's MiB/s)."""
    if figures["seconds"] is None:
        errors: list[str] = figures["errors"] or ["no round"]
        return f"failed: {errors[0][:100]}"
    r = ratio(figures["mibps"], base)
    shown = "" if r is None else f" ×{r:.2f}" if r >= 0.1 else f" ×{r:.4f}"  # not "x0.00"
    return f"{figures['seconds']:.3f} ({figures['mibps']:,.1f}{shown})"


def w8_table(bench: Bench) -> str:
    """W8: each file direct and through /browse/ (median s and MiB/s), the proxy's CPU and
    memory during the gateway's fetches, and the check of what arrived."""
    w8 = bench.w8_figures
    idle = w8.get("rss_idle_kib")
    rows = ["| W8 web gateway (fwdproxy, gateway on) | direct s (MiB/s) | through /browse/ s "
            "(MiB/s ×direct) | time ×direct | fwdproxy CPU s | fwdproxy peak RSS − idle | arrived |",
            "|---|---|---|---|---|---|---|"]
    for key, what in (("download", "application/octet-stream, relayed"), ("page", "text/html, rewritten")):
        summary = w8[key]
        direct, gateway = summary["direct"], summary["gateway"]
        if key == "download":
            complete = summary["complete"]
            arrived = (f"{summary['bytes']:,} bytes in every round" if complete
                       else f"INCOMPLETE: {', '.join(f'{b:,}' for b in gateway['received_bytes'])} bytes")
        else:
            check = summary["check"]
            arrived = (f"{check['browse_links']:,} /browse/ links for {check['urls_written']:,} URLs, "
                       f"{check['left_pointing_out']} left pointing out; {check['bytes']:,} bytes"
                       if "error" not in check else f"check failed: {check['error'][:100]}")
        peak, cpu, times = gateway["rss_peak_kib"], gateway["proxy_cpu_s"], summary["time_ratio"]
        rows.append(f"| {summary['bytes'] / 2**20:.1f} MiB {what} | {_timed(direct)} | "
                    f"{_timed(gateway, direct['mibps'])} | {'—' if times is None else f'×{times:,.2f}'} | "
                    f"{'—' if cpu is None else format(cpu, '.2f')} | "
                    f"{_mib(peak - idle if peak is not None and idle is not None else None, '+')} | "
                    f"{arrived} |")
    return "\n".join(rows)


def w8_lines(bench: Bench) -> list[str]:
    """W8's memory in full and the rewriter's speed."""
    w8 = bench.w8_figures
    lines = [f"- W8 memory of fwdproxy (gateway on): {_mib(w8.get('rss_fresh_kib'))} fresh, "
             f"{_mib(w8.get('rss_idle_kib'))} idle after a {WARMUP_BYTES // 1024} KiB page (the "
             "reference), peak "
             f"{_mib(w8.get('rss_peak_sampled_kib'))} sampled at 20 Hz, VmHWM {_mib(w8.get('hwm_end_kib'))} "
             f"at the end ({_mib(w8.get('hwm_idle_kib'))} before the rounds), "
             f"{_mib(w8.get('rss_end_kib'))} after: peak − idle {_mib(w8.get('growth_sampled_kib'), '+')} "
             f"sampled, {_mib(w8.get('growth_hwm_kib'), '+')} by VmHWM"]
    page = w8["page"]["gateway"]
    if page["seconds"] and page["proxy_cpu_s"]:
        size = w8["page"]["bytes"] / 2**20
        lines.append(f"- W8 rewrite: {page['mibps']:.1f} MiB/s of HTML through the gateway, "
                     f"{size / page['proxy_cpu_s']:.1f} MiB per second of fwdproxy's CPU "
                     f"({page['proxy_cpu_s']:.2f} s for {size:.1f} MiB)")
    for key in ("download", "page"):
        for via in ("direct", "gateway"):
            errors = w8[key][via]["errors"]
            if errors:
                lines.append(f"- W8 {key} {via}: {len(errors)} failed round(s): {errors[0][:200]}")
    return lines


def budget_sections(bench: Bench) -> list[str]:
    """--profile: the cost budget of each profiled workload, with its checks."""
    by_name = {t.name: t for t in bench.targets}
    profiled, plain = by_name.get(PROFILED_NAME), by_name.get("fwdproxy")
    lines: list[str] = []
    if profiled is None:
        return lines
    units = {"W1": "request", "W2": "request (a new connection each)",
             "W6": "connection (CONNECT, handshake, one GET)"}
    for key in bench.args.profile:
        summary = profiled.results.get(key, {})
        figures = summary.get("budget")
        unit = units[key].split(" ")[0]
        lines.append("")
        if not figures or figures.get("cpu_us_per_request") is None:
            why = "; ".join(summary.get("errors", [])) or "no round"
            lines.append(f"Cost budget {key}: no figures ({why})")
            continue
        rounds = len([r for r in summary["rounds"] if "profile" in r])
        served, cpu_us = figures["requests"], figures["cpu_us_per_request"]
        sampled = figures["sampled_us_per_request"]
        lines += [f"Cost budget {key}: µs of fwdproxy's CPU per {units[key]}, by stage (the profiled "
                  f"fwdproxy, {rounds} rounds, {served:,} served; rows spread the measured CPU by "
                  "the samples' shares):", "", budget_table(figures), ""]
        lines.append(f"- {key} measured: {figures['cpu_s']:.3f} s of CPU (user {figures['cpu_user_s']:.3f}, "
                     f"system {figures['cpu_sys_s']:.3f}; getrusage in the process) / {served:,} = "
                     f"{cpu_us:.1f} µs per {unit}; sampled {sampled:.1f} µs ({sampled / cpu_us:.0%} of it, "
                     f"{figures['samples']:,} samples); the sample handler itself "
                     f"{figures['handler_us_per_request']:.1f} µs")
        proc = sum(r.get("proxy_cpu_proc_s", 0.0) for r in summary["rounds"] if "profile" in r)
        lines.append(f"- {key} the same process's CPU from /proc (10 ms ticks): "
                     f"{proc * 1e6 / served:.1f} µs per {unit}")
        base = plain.results.get(key, {}) if plain is not None else {}
        if base.get("proxy_cpu_us_per_request") and summary.get("proxy_cpu_us_per_request"):
            mine, theirs = summary["proxy_cpu_us_per_request"], base["proxy_cpu_us_per_request"]
            rate = "rps" if key != "W6" else "cps"
            speed = ""
            if base.get(rate) and summary.get(rate):
                speed = f"; throughput ×{summary[rate] / base[rate]:.2f} of the plain fwdproxy's"
            lines.append(f"- {key} fwdproxy without the profiler in the same rounds: {theirs:.1f} µs per "
                         f"{unit} (median of its rounds, /proc), the profiled one {mine:.1f}: the "
                         f"profiler adds {mine / theirs - 1:+.0%}{speed}")
    return lines


def sweep_table(bench: Bench) -> str:
    rows = ["| workers | W1 req/s (×direct) | W1 p50/p99 ms | scaling ×W1(1) | proxy pinning |",
            "|---|---|---|---|---|"]
    direct_rps = median(bench.sweep_direct)
    for target in bench.sweep:
        n = target.results["workers"] or "none (one process)"
        if not target.running:
            rows.append(f"| {n} | failed: {target.status.splitlines()[-1][:150]} | | | |")
            continue
        w1 = target.results.get("W1", {})
        flag = "" if target.guard.get("ok") else f" ⚠ {target.guard.get('verdict')}"
        latency = (f"{w1['p50_ms']:.2f} / {w1['p99_ms']:.2f}" if w1.get("p50_ms") is not None
                   and w1.get("p99_ms") is not None else "—")
        scaling = target.results.get("scaling")
        rows.append(f"| {n}{flag} | {cell(w1.get('rps'), direct_rps)} | {latency} | "
                    f"{'—' if scaling is None else f'{scaling:.2f}'} | {target.results['pinning']} |")
    return "\n".join(rows)


class _Verdicts:
    """The verdicts found so far, and the targets and ratios to direct they are made of."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.found: list[dict[str, Any]] = []
        self.by_name = {t.name: t for t in bench.targets}
        self.fwd, self.direct = self.by_name["fwdproxy"], self.by_name["direct"]
        self.squid = self.by_name.get("squid")
        self.privoxy = self.by_name.get("privoxy")

    def add(self, name: str, ok: bool | None, detail: str, kind: str = "target") -> None:
        self.found.append({"name": name, "ok": ok, "detail": detail, "kind": kind})

    def r(self, target: Target | None, key: str, sub: str = "rps") -> float | None:
        if target is None or not target.running or key not in target.results:
            return None
        return ratio(target.results[key].get(sub), self.direct.results.get(key, {}).get(sub))


def verdicts(bench: Bench) -> list[dict[str, Any]]:
    """The issue's targets, as PASS/FAIL (and INFO) lines."""
    v = _Verdicts(bench)
    _w1_verdicts(v)
    _ceiling_verdicts(v)
    _w2_to_w4_verdicts(v)
    _w6_verdicts(v)
    _w5_w7_verdicts(v)
    _w8_verdicts(v)
    _sweep_verdicts(v)
    return v.found


def _w1_verdicts(v: _Verdicts) -> None:
    """The guard; W1 against squid and privoxy, and against the correct Python peers."""
    add, r, by_name, fwd, squid, privoxy = v.add, v.r, v.by_name, v.fwd, v.squid, v.privoxy
    if fwd.guard:
        add("correctness guard: a later request on a kept-alive connection reaches its own origin",
            bool(fwd.guard.get("ok")), fwd.guard.get("verdict", ""))
    if "W1" in fwd.results:
        mine, theirs = r(fwd, "W1"), r(squid, "W1")
        bar, source = (theirs, "squid in this run") if theirs else (ISSUE_SQUID_W1, "squid in the issue")
        add(f"W1 ≥ {bar:.2f} × direct ({source})", mine is not None and mine >= bar,
            f"fwdproxy ×{mine:.2f}" if mine else "fwdproxy failed")
        measured = r(privoxy, "W1")
        add(f"W1 ≥ {ON_THE_WAY_W1} × direct (on the way, privoxy's in the issue)",
            mine is not None and mine >= ON_THE_WAY_W1,
            (f"fwdproxy ×{mine:.2f}" if mine else "failed")
            + (f"; privoxy in this run ×{measured:.2f}" if measured else ""), kind="info")
    # "Far ahead of every correct Python peer": twice the best W1 of those passing the guard.
    python_peers = [by_name[n] for n in PYTHON_PEERS if n in by_name and by_name[n].running]
    correct = [p for p in python_peers if p.guard.get("ok") and r(p, "W1")]
    if "W1" in fwd.results and correct:
        mine = r(fwd, "W1")
        best = max(correct, key=lambda p: r(p, "W1") or 0.0)
        theirs = r(best, "W1") or 0.0
        add("W1 far ahead of every correct Python peer (≥ 2 × the best)",
            mine is not None and mine >= 2 * theirs,
            f"fwdproxy ×{mine:.2f}; best correct Python peer {best.name} ×{theirs:.2f}" if mine
            else "fwdproxy failed")
    for peer in python_peers:
        if not peer.guard.get("ok"):
            add(f"{peer.name} fails the correctness guard: its figures do not count", None,
                str(peer.guard.get("verdict", "")), kind="info")


def _ceiling_verdicts(v: _Verdicts) -> None:
    """--ceilings: the reference forwarders in W1 and W2, and h11's CPU per exchange."""
    add, r, by_name, bench, fwd, direct, squid = v.add, v.r, v.by_name, v.bench, v.fwd, v.direct, v.squid
    for workload in ("W1", "W2"):
        for name in CEILINGS:
            measured = r(by_name.get(name), workload)
            if measured is not None:
                mine = r(fwd, workload)
                add(f"{workload} ceiling, {name[5:]} without any proxy logic (scripts/bench_ceilings.py)",
                    None, f"×{measured:.2f} of direct; fwdproxy ×{mine:.2f}, "
                    f"{mine / measured:.0%} of this ceiling" if mine else f"×{measured:.2f}", kind="info")
    direct_w1 = direct.results.get("W1", {}).get("rps")
    if bench.h11_cost_us and direct_w1:
        squid_w1 = r(squid, "W1") or ISSUE_SQUID_W1
        most = 1e6 / bench.h11_cost_us
        add("W1 ceiling, h11 alone: its CPU per W1 exchange, in-process with no sockets "
            "(scripts/bench_ceilings.py h11cost)", None,
            f"{bench.h11_cost_us:.0f} µs: one core can do {most:,.0f} exchanges/s of that alone, "
            f"×{most / direct_w1:.2f} of direct; squid's ×{squid_w1:.2f} leaves "
            f"{1e6 / (squid_w1 * direct_w1):.0f} µs per request for everything", kind="info")


def _w2_to_w4_verdicts(v: _Verdicts) -> None:
    """W2 against squid, W3 against direct, W4's memory per tunnel."""
    add, r, fwd, squid = v.add, v.r, v.fwd, v.squid
    if "W2" in fwd.results:
        mine, theirs = r(fwd, "W2"), r(squid, "W2")
        bar, source = (theirs, "squid in this run") if theirs else (ISSUE_SQUID_W2, "squid in the issue")
        add(f"W2 ≥ {bar:.2f} × direct ({source})", mine is not None and mine >= bar,
            f"fwdproxy ×{mine:.2f}" if mine else "fwdproxy failed")
        add(f"W2 ≥ {ON_THE_WAY_W2} × direct (on the way)", mine is not None and mine >= ON_THE_WAY_W2,
            f"fwdproxy ×{mine:.2f}" if mine else "failed", kind="info")
    if "W3_plain" in fwd.results:
        plain, tls = r(fwd, "W3_plain", "mbps"), r(fwd, "W3_tls", "mbps")
        add("W3 plain inside the tunnel ≥ 0.9 × direct", plain is not None and plain >= 0.9,
            f"×{plain:.2f}" if plain else "failed")
        add("W3 TLS ≥ 0.8 × direct (within noise)", tls is not None and tls >= 0.8,
            f"×{tls:.2f}" if tls else "failed")
    if "W4" in fwd.results:
        w4 = fwd.results["W4"]
        per = w4["kib_per_tunnel"]
        add(f"W4 ≤ 12 KiB per idle tunnel, all {w4['tunnels']} open and working",
            per is not None and per <= 12 and w4["all_ok"],
            f"{per} KiB/tunnel, {w4['opened']}/{w4['tunnels']} open, sample "
            f"{w4['sample_working']}/{w4['sample_checked']} working")


def _w6_verdicts(v: _Verdicts) -> None:
    """W6 against squid in this run (and for information when squid did not run W6)."""
    add, r, fwd, squid = v.add, v.r, v.fwd, v.squid
    if "W6" not in fwd.results:
        return
    mine, theirs = r(fwd, "W6", "cps"), r(squid, "W6", "cps")
    shown = f"fwdproxy ×{mine:.2f}" if mine else "fwdproxy failed"
    if theirs:
        add(f"W6 ≥ {theirs:.2f} × direct (squid's ratio in this run)", mine is not None and mine >= theirs,
            shown)
    else:
        add("W6 HTTPS connections/s against direct (squid did not run: --peers)", None, shown, kind="info")


def _w5_w7_verdicts(v: _Verdicts) -> None:
    """W5's load time, memory and throughput with the list; W7's memory flat."""
    add, bench = v.add, v.bench
    if bench.w5_figures and "error" not in bench.w5_figures:
        w5 = bench.w5_figures
        add("W5 list loads in ≤ 3 s", w5["load_s"] <= 3.0,
            f"{w5['load_s']:.2f} s ({w5['startup_with_list_s']:.2f} s start-up against "
            f"{w5['startup_bare_s']:.2f} s bare)")
        add("W5 ≤ 64 MiB on top of the bare proxy", w5["rss_added_mib"] <= 64, f"+{w5['rss_added_mib']} MiB")
        if "W1_ratio" in w5:
            add("W5 W1 with the list ≥ 0.95 × without", w5["W1_ratio"] >= 0.95, f"×{w5['W1_ratio']:.3f}")
    elif bench.w5_figures:
        add("W5", False, bench.w5_figures["error"].splitlines()[0])
    if bench.w7_figures:
        w7 = bench.w7_figures
        add("W7 memory flat: end of run ≤ after warm-up + 5 MiB, and not above it after 2 s idle",
            bool(w7["flat"]) and "error" not in w7,
            f"{w7['reference_kib'] / 1024:.1f} MiB after warm-up, {w7['end_kib'] / 1024:.1f} MiB at the end "
            f"of {w7['seconds']} s, {w7['idle_after_2s_kib'] / 1024:.1f} MiB idle")


def _w8_verdicts(v: _Verdicts) -> None:
    """W8: memory bounded, the download complete, the page rewritten; the speeds (INFO)."""
    add, w8 = v.add, v.bench.w8_figures
    if not w8:
        return
    if "error" in w8:
        add("W8", False, w8["error"].splitlines()[0][:200])
        return
    growth = max(w8["growth_sampled_kib"], w8["growth_hwm_kib"])
    add(f"W8 memory bounded: fwdproxy's peak RSS − idle ≤ {BOUNDED_MIB} MiB through a "
        f"{w8['big_bytes'] / 2**20:.0f} MiB download and a {w8['page_bytes'] / 2**20:.0f} MiB page",
        bool(w8["bounded"]), f"{growth / 1024:+.1f} MiB (sampled {w8['growth_sampled_kib'] / 1024:+.1f}, "
        f"VmHWM {w8['growth_hwm_kib'] / 1024:+.1f})")
    download = w8["download"]
    add("W8 the download arrives whole through the gateway", bool(download["complete"]),
        f"{', '.join(f'{b:,}' for b in download['gateway']['received_bytes']) or 'nothing'} of "
        f"{download['bytes']:,} bytes")
    check = w8["page"]["check"]
    add("W8 the page comes back rewritten: a /browse/ link for every URL written, none pointing out",
        bool(check["ok"]), check.get("error") or f"{check['browse_links']:,} of {check['urls_written']:,}, "
        f"{check['left_pointing_out']} pointing out")
    for key, what in (("download", "download"), ("page", "page (rewritten)")):
        direct, gateway = w8[key]["direct"], w8[key]["gateway"]
        r = ratio(gateway["mibps"], direct["mibps"])
        add(f"W8 {what} through the gateway against direct", None,
            f"{gateway['mibps']} MiB/s against {direct['mibps']} MiB/s" + (f", ×{r:.3g}" if r else ""),
            kind="info")


def _sweep_verdicts(v: _Verdicts) -> None:
    """The workers sweep: scaling against one worker."""
    add, bench = v.add, v.bench
    for target in bench.sweep:
        count = target.results["workers"]
        if count is None:
            continue
        scaling = target.results.get("scaling")
        shown = f"×{scaling:.2f}" if scaling else f"no figure ({target.status.splitlines()[0][:100]})"
        if count == 1:
            continue
        if count <= len(bench.cpus):
            # Near-linear: at least 3/4 of N, while there are cores for the workers (on the
            # smallest machines they share one with the load generator).
            add(f"workers {count}: near-linear scaling, W1(N)/W1(1) ≥ {0.75 * count:.2f}",
                bool(scaling) and scaling >= 0.75 * count, shown)
        else:
            add(f"workers {count}: scaling W1(N)/W1(1), more workers than cores", None, shown,
                kind="info")


def method(bench: Bench) -> str:
    """One line saying how the workloads that ran were measured."""
    a, ran = bench.args, [w for w in bench.args.only if w not in bench.skipped]
    parts = {
        "W1": f"W1: median of {a.rounds} interleaved rounds of {a.seconds} s, 50 connections",
        "W2": f"W2: {bench.minor_rounds} rounds of {a.seconds} s, 20 connections, a new connection "
              "per request",
        "W3": f"W3: {bench.minor_rounds} rounds of {a.big_mib} MiB through a CONNECT tunnel",
        "W4": f"W4: {a.tunnels:,} idle tunnels",
        "W5": f"W5: {a.domains:,} domains, W1 with against without in {a.rounds} rounds",
        "W6": f"W6: {bench.minor_rounds} rounds of {a.seconds} s, {W6_CLIENTS} clients, a new connection, "
              "CONNECT and TLS handshake per GET",
        "W7": f"W7: {a.soak_seconds} s of W1",
        "W8": f"W8: {bench.minor_rounds} rounds of one 100 MiB download and one 20 MiB HTML page, "
              f"direct and through /browse/, {'curl' if bench.curl else 'a Python client'}",
    }
    text = "; ".join(parts[w] for w in WORKLOADS if w in ran)
    return (text or "no workload ran") + "."


def report(bench: Bench, started: datetime.datetime,
           info: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    assert bench.origin is not None
    m = info["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [
        f"fwdproxy {info['fwdproxy']['version']} ({info['fwdproxy']['commit']}"
        f"{', with uncommitted changes' if info['fwdproxy']['uncommitted_changes'] else ''}), "
        f"{started:%Y-%m-%d}: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}; "
        f"{versions}",
        "",
        f"Origin: {bench.origin.description}. Pinning: {bench.pinning_text()}.",
        method(bench),
    ]
    if set(bench.args.only) & {"W1", "W2", "W3", "W4", "W5"}:  # the workloads of the main table
        lines += ["", table(bench)]
    if any("W6" in t.results for t in bench.targets):
        lines += ["", w6_table(bench)]
    if bench.w8_figures and "error" not in bench.w8_figures:
        lines += ["", w8_table(bench)]
    if bench.sweep:
        lines += ["", "Workers (W1 through fwdproxy --workers N; wrk and the origin on core "
                  f"{bench.load_cpu}):", "", sweep_table(bench)]
    for target in bench.targets:
        if target.guard and target.kind != "direct":
            lines.append(f"- guard, {target.name}: {target.guard['verdict']}")
        for key in ("W1", "W2", "W3_tls", "W3_plain"):
            errors = target.results.get(key, {}).get("errors")
            if errors:
                lines.append(f"- {target.name} {key}: {len(errors)} failed round(s): {errors[0][:200]}")
        w2 = target.results.get("W2", {})
        if w2.get("responses_with_connection_close"):
            how = ("yes" if w2.get("reconnected_every_request") else "NO: wrk kept connections alive")
            if target.guard.get("keepalive") is False:
                how += ", the proxy closes every client connection"
            lines.append(f"- W2 {target.name}: a new connection per request: {how} (responses with "
                         f"Connection: close: {w2['responses_with_connection_close']})")
        for key in ("W1", "W2"):
            summary = target.results.get(key, {})
            if summary.get("socket_errors", 0) > 0.01 * max(1, summary.get("requests", 0)):
                why = (" (it closes the connection after each response, so wrk reconnects and counts a "
                       "read error)" if target.guard.get("keepalive") is False else "")
                lines.append(f"- {target.name} {key}: {summary['socket_errors']:,} socket errors for "
                             f"{summary['requests']:,} requests{why}")
    if any("W6" in t.results for t in bench.targets):
        lines += w6_lines(bench)
    if bench.w8_figures and "error" not in bench.w8_figures:
        lines += w8_lines(bench)
    for workload, reason in bench.skipped.items():
        lines.append(f"- {workload} skipped: {reason}")
    lines += [f"- {note}" for note in bench.notes]
    lines += budget_sections(bench)
    found = verdicts(bench)
    lines.append("")
    for v in found:
        word = "INFO" if v["ok"] is None else ("PASS" if v["ok"] else "FAIL")
        if v["kind"] == "info" and v["ok"] is not None:
            word = f"INFO ({'PASS' if v['ok'] else 'FAIL'})"
        lines.append(f"{word} {v['name']}: {v['detail']}")
    return "\n".join(lines), found


def write_json(bench: Bench, info: dict[str, Any], text: str, found: list[dict[str, Any]]) -> Path:
    """Every figure of the run, to --json (default: bench.json in a new temporary folder)."""
    assert bench.origin is not None
    args = bench.args
    out = args.json or Path(tempfile.mkdtemp(prefix="fwdproxy-bench-results-")) / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        **info, "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "origin": {"kind": bench.origin.kind, "description": bench.origin.description,
                   "ports": {"a": bench.origin.port_a, "b": bench.origin.port_b,
                             "tls": bench.origin.port_tls}},
        "pinning": {"text": bench.pinning_text(), "proxy_cpu": bench.proxy_cpu, "load_cpu": bench.load_cpu},
        "skipped": bench.skipped, "notes": bench.notes,
        "targets": {t.name: t.as_json() for t in bench.targets},
        "W5": bench.w5_figures, "W7": bench.w7_figures, "W8": bench.w8_figures,
        "h11_us_per_exchange": bench.h11_cost_us,
        "profile": {key: t.results.get(key, {}).get("budget") for t in bench.targets
                    if t.name == PROFILED_NAME for key in args.profile},
        "workers_sweep": {"direct_rounds_rps": bench.sweep_direct,
                          "runs": {t.name: t.as_json() for t in bench.sweep}},
        "verdicts": found, "report_markdown": text,
    }
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return out
