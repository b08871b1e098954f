"""The command line: the options (argparse, and --help's description), the order of a run
(start the origin and the targets, run the workloads, report), and main."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .gateway import fetch_main, origin_main
from .machine import checkout, cpu_busy, machine, tool_version
from .origin import _origin_main, correctness_guard, start_origin
from .peers import CEILINGS, PEERS, Target, h11_cost, start_fwdproxy, start_peer, start_reference
from .processes import ROOT, Processes, log, tree_rss_kib
from .report import PROFILED_NAME, report, write_json
from .workloads import PROFILED, WORKLOADS, Bench

# scripts/bench --help prints this (it was bench.py's docstring).
DESCRIPTION = """Benchmark of fwdproxy against a direct connection and, with --peers, other proxies.

Everything runs on loopback (127.0.0.1), and every process started here is ended here,
by its pid. The set-up:
  - an origin: nginx when installed (one worker, access log off), else a small built-in
    Python asyncio server; it listens on three ports: A (plain: /1k, /big, /who ->
    "origin-a"), B (plain: /who -> "origin-b") and T (TLS, for tunnels: /1k, /big), with
    a certificate for 127.0.0.1 made with trustme (or `openssl req` when trustme is
    missing);
  - fwdproxy from this checkout (`python -m fwdproxy --config ...`, empty rules folder,
    access log to a file, loopback destinations allowed, CONNECT to any port);
  - with --peers: tinyproxy, squid (no cache) and privoxy when installed, each with a
    minimal equivalent configuration (127.0.0.1 clients, CONNECT to the origin ports, no
    caching, one access-log line per request to a file); and the Python proxies found on
    PATH (mitmproxy's mitmdump, proxy.py's `proxy`, pproxy; e.g. `pipx install
    mitmproxy proxy.py pproxy`), as plain forward proxies with their defaults (mitmdump
    passes CONNECT tunnels through untouched, --ignore-hosts '.*').
On a machine with two or more cores the proxies run on the first core, and the origin,
wrk, curl and this script on the last one (taskset / sched_setaffinity).

Before any timing, each proxy passes a correctness guard: on ONE kept-alive connection,
`GET http://127.0.0.1:A/who` then `GET http://127.0.0.1:B/who`; the second answer must
be "origin-b" (a proxy that relays later requests to the first origin is flagged).

Workloads (figures are medians of interleaved rounds: round 1 runs every target in turn,
then round 2 ..., so that drift of the machine hits all targets alike):
  W1 small GET (1 KiB), keep-alive, 50 connections, wrk --latency, absolute-form request
     lines through proxies (a Lua script sets wrk.path): requests/s, p50, p99;
  W2 a new connection per request (wrk -H "Connection: close", 20 connections): requests/s.
     A Lua response hook counts the responses that carry "Connection: close"; wrk
     reconnects after each of those, so closes == responses shows it really reconnected;
  W3 one large download through a CONNECT tunnel with curl, over TLS and plain HTTP
     inside the tunnel: MB/s (10^6 bytes/s, curl's speed_download);
  W4 many idle CONNECT tunnels to the plain origin: all must open; resident memory of the
     proxy (its process and its children) before and after, in KiB per tunnel; a sample
     of tunnels must still carry a GET at the end. Runs first, on fresh proxies;
  W5 a synthetic 1,000,000-domain hosts list (bench_rules.synthetic_domains, fixed seed):
     start-up time, resident memory against the bare proxy, W1 with the list against W1
     without it (interleaved), asking for the origin by a host name (W5_HOST, mapped to
     127.0.0.1 by the proxies' `hosts:`) so that every request is looked up in the list
     (an address literal is matched against address rules only);
  W6 HTTPS as offices use it: per iteration a NEW connection to the proxy, `CONNECT
     127.0.0.1:T`, a full TLS handshake with the origin through the tunnel (certificate
     checked; no session is offered back, so none is resumed, as a new browser connection
     mostly does), one GET /1k, the whole response read, close; direct: the same client
     straight to port T (no CONNECT). 20 clients (threads with blocking ssl sockets) in 4
     processes on the load core; W2's rounds: connections/s, p50/p99 of the set-up (TCP
     connect + CONNECT + handshake) and of the whole iteration, the clients' CPU and how
     busy the load core and the proxies' core were (a load core near 100% busy means the
     clients and the origin, not the proxy, set the pace). The --ceilings forwarders have
     no CONNECT and are skipped;
  W7 memory flat: one long W1 run while the proxy's resident memory is sampled;
  W8 the web gateway: a 100 MiB download and a 20 MiB HTML page through /browse/ of a
     fwdproxy of its own with `gateway: true`, against the same files direct, W3's rounds
     interleaved (no warm-up but one small page). Its own origin (a small threaded Python
     server with sendfile, on the load core) serves a sparse 100 MiB
     application/octet-stream file and a generated page (fixed seed; links, images with
     srcset, <style> with url(), style attributes, text, comments, a few scripts); the
     client is curl -o /dev/null (else a small Python client). Median time and MiB/s per
     fetch each way; the proxy's VmRSS read at 20 Hz during each fetch and its VmHWM at
     the end: peak minus idle (after the small page) must stay under 50 MiB; every byte
     of the download must arrive, and a last fetch of the page through the gateway is kept
     and checked: as many /browse/ links as URLs written, none left pointing out. Peers
     have no gateway and are not run.
With --profile W1,W2,W6 (any of them): a profiling run of those workloads through fwdproxy
only: direct, fwdproxy, and a second fwdproxy started under a small sampling profiler
(scripts/benchlib/profiler.py: setitimer(ITIMER_PROF) every 1 ms of CPU, a SIGPROF handler
that walks the interrupted stack; stdlib only), interleaved as usual. Around every measured
round the profiler's counts and the process's CPU (getrusage, user + system) are read, and
the report gets a cost budget per workload: µs of CPU per request by stage, which add up
to the profiled process's CPU divided by the requests served (the sampled total, samples x
1 ms, is shown beside it as a check; the plain fwdproxy's CPU per request from /proc, in the
same rounds, shows what the profiler itself costs). A sample goes to the stage of the
innermost fwdproxy frame that has one (the parser, trio and the stdlib below count for
their fwdproxy caller):
  accept: server.py, connection.handle (with closing the client socket),
     ClientConnection.__init__; client head: the client-side H11Stream (role h11.SERVER:
     reads, parsing, the strict head check), the request loop; policy: policy/*, auth,
     proxy/target, ClientConnection._dispatch/_facts/_address_verdict_denial,
     LocalAddresses, ownpages.names_us; pool/connect: proxy/upstream, parent,
     resolver.resolve, ClientConnection._open/_forward/_tunnel, closing origin sockets;
     origin head: forward.forward (the request head), the origin-side H11Stream (role
     h11.CLIENT) until the response head is in; body relay: the origin side after the
     head, forward._ResponseRelay with Data/EndOfMessage, request-body pumping,
     proxy/tunnel; response head: _ResponseRelay with a Response (the client's headers)
     and each client write that starts with a status line (a small response's head,
     body and end go out in that one write: it counts here); log: accesslog, logwriter,
     ServerContext.finish; statistics: stats, sharedstats; trio scheduling: no fwdproxy
     frame, in trio's run loop; other: error and own pages, config, anything else;
     profiler: its handler's own time and trio's wake-ups for its signals.
--profile cannot be combined with --only, --peers, --ceilings or --workers.
With --workers 1,2: W1 through fwdproxy --workers N for each N (the proxy pinned to the
cores left after the load core when there are more cores than N, else on all cores).
The report is a markdown table (ratios to the direct connection), PASS/FAIL lines for the
issue's targets, and JSON with the machine, the versions and every raw round figure.
Defaults: W1 (and W5's comparison, the sweep) 5 rounds of 10 s, W2, W3, W6 and W8 3 rounds
(W2 and W6 10 s), 256 MiB, 1,000 tunnels, 1,000,000 domains, 60 s for W7 (W8's sizes are the
same with --quick); every wrk and W6 target gets an unrecorded 1 s warm-up first. A full run
with three peers takes about 12 minutes, and --quick about 3 (W8 adds about a minute: the
rewriter sets its pace). The share of CPU that other work used before and after the run is
measured and reported: figures taken on a busy machine are noted as such.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short run: 3 rounds of 3 s, 64 MiB, 200 tunnels, 100,000 domains, 10 s soak")
    parser.add_argument("--only", metavar="W1,W3", help="workloads to run (W1..W8; default all)")
    parser.add_argument("--profile", metavar="W1,W6", default="",
                        help="a profiling run of these workloads (W1, W2, W6) through fwdproxy only, "
                        "one fwdproxy under a sampling profiler: prints the cost budget, µs of CPU "
                        "per request by stage (see above)")
    parser.add_argument("--peers", action="store_true",
                        help="also measure tinyproxy, squid and privoxy, and mitmproxy, proxy.py "
                        "and pproxy when on PATH")
    parser.add_argument("--workers", metavar="1,2", default="",
                        help="worker counts for a W1 sweep through fwdproxy --workers N (default: none)")
    parser.add_argument("--rounds", type=int, help="rounds for W1 and W5 (default 5, quick 3); "
                        "W2, W3, W6 and W8 use at most 3")
    parser.add_argument("--seconds", type=int, help="length of a W1/W2/W6 round (default 10, quick 3)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="where to write the figures (default: bench.json in a new temporary folder)")
    parser.add_argument("--ceilings", action="store_true",
                        help="also run W1 and W2 through two reference forwarders with no proxy logic "
                        "(scripts/bench_ceilings.py: trio alone, trio + h11): what a single "
                        "Python process on this stack can reach at all")
    parser.add_argument("--builtin-origin", action="store_true", help="use the built-in origin even "
                        "when nginx is installed")
    args = parser.parse_args(argv)
    only_given = args.only is not None
    only = [w.strip().upper() for w in (args.only or ",".join(WORKLOADS)).split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        parser.error(f"--only: unknown workload {unknown[0]} (known: {', '.join(WORKLOADS)})")
    args.only = only
    profile = [w.strip().upper() for w in args.profile.split(",") if w.strip()]
    if any(w not in PROFILED for w in profile):
        parser.error(f"--profile: {next(w for w in profile if w not in PROFILED)} cannot be profiled "
                     f"(known: {', '.join(PROFILED)})")
    if profile:
        clash = [flag for flag, used in (("--only", only_given), ("--peers", args.peers),
                                         ("--ceilings", args.ceilings),
                                         ("--workers", bool(args.workers.strip()))) if used]
        if clash:
            parser.error(f"--profile runs fwdproxy alone: it cannot be combined with {clash[0]}")
        args.only = [w for w in WORKLOADS if w in profile]
    args.profile = profile
    try:
        args.workers = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error("--workers: a comma-separated list of worker counts, e.g. 1,2")
    if any(n < 1 for n in args.workers):
        parser.error("--workers: counts must be 1 or more")
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.seconds = args.seconds or (3 if args.quick else 10)
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be 1 or more")
    args.big_mib = 64 if args.quick else 256
    args.tunnels = 200 if args.quick else 1000
    args.domains = 100_000 if args.quick else 1_000_000
    args.soak_seconds = 10 if args.quick else 60
    return args


def raise_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        log(f"open-file limit {want} < {need}: W4 may fail for lack of descriptors here")


@contextlib.contextmanager
def terminated_by_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP end the run through the `finally` clauses, as Ctrl-C does."""
    def leave(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)
    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, work: Path, procs: Processes) -> int:
    started = datetime.datetime.now().astimezone()
    bench = Bench(args, work, procs)
    if bench.load_cpu is not None:
        os.sched_setaffinity(0, {int(bench.load_cpu)})  # this script is a load generator too (W4)
    raise_file_limit(args.tunnels * 2 + 256)
    from fwdproxy import __version__

    info: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "machine": machine(),
        "versions": {name: tool_version(name) for name in ("nginx", "wrk", "curl")},
        "fwdproxy": {"version": __version__, **checkout()}}
    wanted = skip_missing_tools(bench)
    busy = cpu_busy()
    info["machine"]["busy_before_run"] = round(busy, 3)
    if busy > 0.05:
        bench.notes.append(f"the machine was {busy:.0%} busy with other work before the run: "
                           "figures may be disturbed")
        log(f"warning: the machine is {busy:.0%} busy with other work")

    fwd, references = start_targets(bench, info)
    run_workloads(bench, fwd, references, wanted)

    busy = cpu_busy()  # our proxies and origin are idle now
    info["machine"]["busy_after_run"] = round(busy, 3)
    if busy > 0.05:
        bench.notes.append(f"the machine was {busy:.0%} busy with other work after the run")
    text, found = report(bench, started, info)
    print(text, flush=True)
    out = write_json(bench, info, text, found)
    print(f"\nJSON: {out}", flush=True)
    return 0


def skip_missing_tools(bench: Bench) -> list[str]:
    """Note the workloads that cannot run without wrk or curl; the ones left to run."""
    args = bench.args
    if bench.wrk is None:
        for workload in ("W1", "W2", "W7"):
            bench.skipped[workload] = "wrk is not installed (apt-get install wrk)"
        if "W5" in args.only:
            bench.notes.append("W5: throughput with the list skipped: wrk is not installed")
        if args.workers:
            bench.skipped["workers sweep"] = "wrk is not installed"
    if bench.curl is None:
        bench.skipped["W3"] = "curl is not installed"
    wanted = [w for w in args.only if w not in bench.skipped]
    return wanted


def start_targets(bench: Bench, info: dict[str, Any]) -> tuple[Target, list[Target]]:
    """Start the origin, fwdproxy and the peers (--peers; into bench.targets), and the
    reference forwarders (--ceilings; they join bench.targets after W1 and W2)."""
    procs, work, args = bench.procs, bench.work, bench.args
    log(f"pinning: {bench.pinning_text()}")
    bench.origin = start_origin(procs, work, bench.load_cpu, args.big_mib * 2**20, args.builtin_origin)
    log(f"origin: {bench.origin.description}")
    (work / "empty").mkdir()
    fwd = start_fwdproxy(procs, work, "fwdproxy", work / "empty", bench.proxy_cpu,
                         tls_port=bench.origin.port_tls)
    if not fwd.running:
        raise SystemExit(f"fwdproxy did not start: {fwd.status}")
    bench.targets = [Target("direct", "direct"), fwd]
    if args.profile:
        profiled = start_fwdproxy(procs, work, "fwdproxy-profiled", work / "empty", bench.proxy_cpu,
                                  tls_port=bench.origin.port_tls, profile=work / "profile.json")
        profiled.name = PROFILED_NAME
        log(f"{profiled.name}: {profiled.status}")
        bench.targets.append(profiled)
    if args.peers:
        for name in PEERS:
            peer = start_peer(procs, work, name, bench.origin, bench.proxy_cpu)
            log(f"{name}: {peer.status}{' ' + peer.version if peer.running else ''}")
            bench.targets.append(peer)
            info["versions"][name] = peer.version or None
    references: list[Target] = []
    if args.ceilings:
        for name in CEILINGS:
            reference = start_reference(procs, work, name, bench.origin, bench.proxy_cpu)
            log(f"{name}: {reference.status}")
            references.append(reference)
    return fwd, references


def run_workloads(bench: Bench, fwd: Target, references: list[Target], wanted: list[str]) -> None:
    """The guards, then the workloads in their order, stopping each target when it is done."""
    procs, args = bench.procs, bench.args
    assert bench.origin is not None
    proxies = [t for t in bench.targets if t.kind != "direct" and t.running]
    for target in proxies:
        assert target.port is not None
        target.guard = correctness_guard(target.port, bench.origin)
        log(f"guard {target.name}: {target.guard['verdict']}")
    running = [t for t in bench.targets if t.running]

    if "W4" in wanted:
        for target in proxies:
            bench.w4(target)
    live_references = [r for r in references if r.running]
    if "W1" in wanted:
        bench.w1(running + live_references)
    if "W2" in wanted:
        bench.w2(running + live_references)
    if args.ceilings and "W1" in wanted:
        bench.h11_cost_us = h11_cost(bench.origin, bench.proxy_cpu)
        log(f"h11 alone: {bench.h11_cost_us} µs of CPU per W1 exchange")
    bench.targets += references
    for reference in references:  # W1 and W2 only: they are done
        if reference.proc is not None:
            procs.stop(reference.proc)
    if "W3" in wanted:
        bench.w3(running)
    if "W6" in wanted:
        bench.w6(running)
        if references:
            bench.notes.append(f"W6: {' and '.join(r.name for r in references)} skipped: they forward "
                               "plain GETs to one origin and have no CONNECT")
    # Peers are done: stop them so they cost nothing during W5, W7 and the sweep.
    for target in proxies:
        if target.kind == "peer" and target.proc is not None:
            target.results["rss_end_kib"] = tree_rss_kib(target.proc.pid) if target.proc.alive() else None
            procs.stop(target.proc)
    if "W5" in wanted:
        bench.w5(fwd)
    if "W7" in wanted:
        bench.w7(fwd)
    if "W8" in wanted:
        bench.w8()
        if args.peers:
            bench.notes.append("W8: only fwdproxy has a web gateway: the peers were not run")
    if args.workers and "workers sweep" not in bench.skipped:
        bench.workers_sweep(fwd)
    fwd.results["rss_end_kib"] = tree_rss_kib(fwd.proc.pid) if fwd.proc and fwd.proc.alive() else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_origin"]:  # the built-in origin, run in a child process
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_origin_main(json.loads(argv[1])))
        return 0
    if argv[:1] == ["_gateway_origin"]:  # W8's origin, in a child process
        with contextlib.suppress(KeyboardInterrupt):
            origin_main(json.loads(argv[1]))
        return 0
    if argv[:1] == ["_gateway_fetch"]:  # W8's client when curl is missing
        fetch_main(argv[1], argv[2])
        return 0
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="fwdproxy-bench-"))
    work.chmod(0o755)  # nginx workers run as another user and must read the origin's files
    try:
        with terminated_by_signals():
            return run(args, work, procs)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
