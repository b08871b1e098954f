"""A small sampling profiler for fwdproxy (`scripts/bench --profile`): where a request's CPU goes.

Run as the proxy's entry point, in place of `python -m fwdproxy`:

    python scripts/benchlib/profiler.py --out FILE [--interval-ms 1] -- <fwdproxy arguments>

It imports `fwdproxy.cli` and calls its `main()` with the arguments after `--`, after
arming `setitimer(ITIMER_PROF)`: the kernel sends SIGPROF each time the process has used
`interval` of CPU (user + system), and the handler looks at the interrupted Python stack
and counts one sample for the stage it belongs to. The kernel checks CPU timers at its
tick, so samples come at most once per tick (every 4 ms at HZ=250, whatever shorter
interval is asked for); each sample is therefore weighted by the CPU the process used
since the previous one (CLOCK_PROCESS_CPUTIME_ID, read in the handler), and the stages'
shares are shares of that sampled CPU. No dependency beyond the standard library.

SIGUSR2 writes the counts so far to FILE as JSON (a snapshot: the bench takes one before
and one after each measured round and uses the difference); the last counts
are written again when `main()` returns (fwdproxy's own SIGTERM/SIGINT shutdown), and at
interpreter exit. The JSON holds the samples by stage and by stage and innermost function,
the process's CPU time (getrusage: user, system), the main thread's CPU time, the sample
interval and the time spent in the sample handler itself.

How a sample is attributed: the stack is walked from the innermost frame outwards, and
only fwdproxy's own frames decide (the parser, trio and the standard library below them
count for the fwdproxy frame that called them), so the rules keep working when the HTTP
parser under `proxy/h11_stream.py`'s `H11Stream` changes. The first fwdproxy frame, from
the innermost, whose rule names a stage decides; frames of `proxy/fdio`, `proxy/framing`,
`proxy/headers`, `errors`, the parser's own modules (`proxy/llhttp_conn`, `llhttp_heads`),
comprehensions and any module not named below have no stage of their own and leave it to
their callers (a stack with no deciding frame goes to "other"). The rules:

  accept        server.py (the accept loop, run_handler), connection.handle (including
                its closing of the client socket: "accept + close" in the table),
                ClientConnection.__init__ and read_proxy_header, proxy/proxyproto, the
                client-side H11Stream's __init__
  client head   the client-side H11Stream (`role` h11.SERVER): next_event, _receive, prime
                and the head check (the reads, the parser and framing's strict check of
                the request head; also the request's end, and the CONNECT's), unless a
                request body is being pumped; ClientConnection.run (the request loop),
                _wait_for_request, _serve (reading the head's fields),
                _wait_for_body_start; H11Stream.start_next_cycle on the client side;
                the fast lane's read_head, plain_request and serve (proxy/fastlane: its
                other steps count where the slow path's counterparts do: _upstream under
                pool/connect, _origin_head, _exchange_bytes and _read_more under origin head,
                plain_response and _answer under response head, _exchange under log)
  policy        fwdproxy/policy/*, auth, proxy/target (parse_target), ClientConnection.
                _dispatch and _address_verdict_denial, proxy/decisions (the checks by
                name and by address), the fast lane's FastLane._route,
                resolver.LocalAddresses (is this address ours?), ownpages.names_us/
                host_header_names_us (is the request for the proxy?),
                admission.authenticate
  pool/connect  proxy/upstream (connect, the pool's take/put/reaper, closing origin
                connections), proxy/parent, resolver.resolve, ClientConnection._open,
                _vetted_addresses, _forward (taking and returning pooled connections) and
                _tunnel (opening the tunnel's destination); the origin-side H11Stream's
                __init__ and start_next_cycle; the closing of a tunnel's origin socket in
                _relay_tunnel
  origin head   forward.forward (the request head for the origin, hop-by-hop headers,
                Via), the origin-side H11Stream (`role` h11.CLIENT): sending the request
                (and a bodiless request's end), and receiving and parsing until the
                response head has arrived (forward._ResponseRelay.head_sent still False)
  body relay    the origin-side H11Stream once the response head is in (the body's
                events), forward._ResponseRelay handling a Data or EndOfMessage event and
                a client write that carries no response head, forward._pump_request_body
                (request bodies: the client-side reads there count here too),
                proxy/tunnel (CONNECT tunnels and upgrades, both directions),
                ClientConnection._relay_tunnel
  response head forward._ResponseRelay handling a Response or 1xx event (the client's
                headers, their serialisation), and every client-side write whose bytes
                start with a status line; for a small response that one write carries the
                head, the body and the end together (one send), so its cost is counted
                here, not under body relay; also the 200 of a CONNECT
  log           accesslog, logwriter (formatting, buffering, flushing; the flush task),
                ClientConnection._exchange, context.ServerContext.finish itself
  statistics    stats, sharedstats, the server's publishing task
  trio scheduling  samples with no fwdproxy frame above trio's run loop (the frames below
                it, trio.run's callers, do not count): epoll, the run queue, resuming
                tasks. Work that trio does inside a stage's call (a checkpoint, a cancel
                scope, registering a wait) counts for that stage
  other         error pages and the proxy's own pages (proxy/replies, site/,
                ownpages.serve_own_page, ClientConnection._refuse/_send_error), the
                configuration, the command line, and samples in no known place
  profiler      the profiler's own cost: the time measured inside the sample handler, and
                samples in trio's wake-up task (entry queue), which drains the byte that
                every signal with a Python handler writes to trio's wakeup socket (during
                a measured round only the profiler's signals arrive)

The budget (`budget`, `budget_table`) spreads the CPU the process used (getrusage deltas
between two snapshots) over the stages by their shares of the sampled CPU, so the rows add
up to the measured CPU per request exactly; the sampled total (the CPU the samples in the
window stand for) is shown beside it as a check: it differs from the measured CPU by the
edges of the window only (the CPU between its last sample and the snapshot).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("accept", "client head", "policy", "pool/connect", "origin head", "body relay",
          "response head", "log", "statistics", "trio scheduling", "other", "profiler")
LABELS = {
    "accept": "accept + close (of the client connection)",
    "pool/connect": "pool/connect (and closing origin connections)",
    "response head": "response head (with the write of a small body)",
    "profiler": "profiler (its handler, and trio's wake-ups for its signals)",
}

# --- the rules ---------------------------------------------------------------------------

_DEFER = "defer"  # a fwdproxy frame with no stage of its own: its caller decides
_FOREIGN = "foreign"  # not fwdproxy's code
_TRIO = "trio"  # trio's code (foreign)
_TRIO_WAKEUP = "trio-wakeup"  # trio's entry-queue task: woken by every signal
_TRIO_LOOP = "trio-loop"  # trio's run loop: the frames below it are the host (cli.main), not a task
_PROFILER = "profiler"  # this file

# (frame, the fwdproxy frames from the innermost, its index there, a socket is being closed)
Special = Callable[[types.FrameType, list[tuple[types.FrameType, Any]], int, bool], str | None]
Rule = str | Special

ROOMS: dict[str, str] = {
    "accesslog": "log", "logwriter": "log", "stats": "statistics", "sharedstats": "statistics",
    "auth": "policy", "proxy/target": "policy", "proxy/upstream": "pool/connect",
    "proxy/parent": "pool/connect", "proxy/tunnel": "body relay", "proxy/replies": "other",
    "proxy/proxyproto": "accept", "server": "accept", "proxy/fdio": _DEFER,
    "proxy/framing": _DEFER, "proxy/headers": _DEFER, "errors": _DEFER,
    "proxy/llhttp_conn": _DEFER, "proxy/llhttp_heads": _DEFER, "cli": "other", "workers": "other",
    "check": "other", "proxy/context": "other",
}
FOLDERS: dict[str, str] = {"policy/": "policy", "site/": "other", "config/": "other"}
FUNCTIONS: dict[tuple[str, str], str] = {
    ("server", "serve"): "other",
    ("server", "_Server.flush_log"): "log",
    ("server", "_Server.publish_stats"): "statistics",
    ("server", "_Server.watch_rules"): "other",
    ("proxy/context", "ServerContext.finish"): "log",
    ("proxy/resolver", "resolve"): "pool/connect",
    ("proxy/resolver", "LocalAddresses.__call__"): "policy",
    ("proxy/resolver", "LocalAddresses.__init__"): "policy",
    ("proxy/ownpages", "names_us"): "policy",
    ("proxy/ownpages", "host_header_names_us"): "policy",
    ("proxy/ownpages", "Reached.address"): "policy",
    ("proxy/admission", "read_proxy_header"): "accept",
    ("proxy/admission", "authenticate"): "policy",
    ("proxy/h11_stream", "checked_headers"): _DEFER,
    ("proxy/h11_stream", "_time_limit"): _DEFER,
    ("proxy/connection", "handle"): "accept",
    ("proxy/connection", "_address_of"): "accept",
    ("proxy/connection", "ClientConnection.__init__"): "accept",
    ("proxy/connection", "ClientConnection.read_proxy_header"): "accept",
    ("proxy/connection", "ClientConnection.run"): "client head",
    ("proxy/connection", "ClientConnection._wait_for_request"): "client head",
    ("proxy/connection", "ClientConnection._serve"): "client head",
    ("proxy/connection", "ClientConnection._wait_for_body_start"): "client head",
    ("proxy/connection", "ClientConnection._exchange"): "log",
    ("proxy/connection", "ClientConnection._dispatch"): "policy",
    ("proxy/decisions", "request_facts"): "policy",
    ("proxy/decisions", "address_verdict"): "policy",
    ("proxy/connection", "ClientConnection._address_verdict_denial"): "policy",
    ("proxy/connection", "ClientConnection._vetted_addresses"): "pool/connect",
    ("proxy/connection", "ClientConnection._open"): "pool/connect",
    ("proxy/connection", "ClientConnection._forward"): "pool/connect",
    ("proxy/connection", "ClientConnection._tunnel"): "pool/connect",
    ("proxy/connection", "ClientConnection._refuse"): "other",
    ("proxy/connection", "ClientConnection._send_error"): "other",
    ("proxy/connection", "ClientConnection._error_body"): "other",
    ("proxy/connection", "ClientConnection._serve_own_page"): "other",
    ("proxy/fastlane", "plain_request"): "client head",
    ("proxy/fastlane", "FastLane.__init__"): "accept",
    ("proxy/fastlane", "FastLane.read_head"): "client head",
    ("proxy/fastlane", "FastLane.serve"): "client head",
    ("proxy/fastlane", "FastLane._hand_back"): "client head",
    ("proxy/fastlane", "FastLane._route"): "policy",
    ("proxy/fastlane", "FastLane._upstream"): "pool/connect",
    ("proxy/fastlane", "FastLane.take_resumed"): "pool/connect",
    ("proxy/fastlane", "FastLane.close_resumed"): "pool/connect",
    ("proxy/fastlane", "_origin_head"): "origin head",
    ("proxy/fastlane", "FastLane._exchange_bytes"): "origin head",
    ("proxy/fastlane", "FastLane._read_more"): "origin head",
    ("proxy/fastlane", "plain_response"): "response head",
    ("proxy/fastlane", "FastLane._answer"): "response head",
    ("proxy/fastlane", "FastLane._exchange"): "log",
    ("proxy/forward", "forward"): "origin head",
    ("proxy/forward", "has_body"): "origin head",
    ("proxy/forward", "_ResponseRelay.__init__"): "origin head",
    ("proxy/forward", "_pump_request_body"): "body relay",
}
CLASSES: dict[tuple[str, str], str] = {  # every method of a class, unless FUNCTIONS names it
    ("proxy/decisions", "Decision"): "policy",
    ("proxy/fastlane", "FastRequest"): "client head",
    ("proxy/fastlane", "_Route"): "policy",
    ("proxy/fastlane", "Resumed"): "pool/connect",
    ("proxy/fastlane", "Reply"): "response head",
    ("proxy/connection", "_Tunnel"): "pool/connect",
    ("proxy/forward", "ForwardSettings"): "other",
}
HEAD_EVENTS = ("Response", "InformationalResponse")


def _role_is_client_side(stream: Any) -> bool:
    """The H11Stream facing a client has role h11.SERVER (a sentinel class named SERVER)."""
    role = getattr(stream, "role", None)
    return getattr(role, "__name__", str(role)) == "SERVER"


def _starts_with_status_line(data: Any) -> bool:
    try:
        return bytes(data[:5]) == b"HTTP/"
    except (TypeError, ValueError):
        return False


def _outer_names(fw: list[tuple[types.FrameType, Any]], index: int) -> list[str]:
    return [frame.f_code.co_qualname for frame, _ in fw[index + 1:]]


def _relay_head_sent(fw: list[tuple[types.FrameType, Any]], index: int) -> bool | None:
    """head_sent of the nearest outer forward._ResponseRelay frame, None if there is none."""
    for frame, _ in fw[index + 1:]:
        if frame.f_code.co_qualname.startswith("_ResponseRelay."):
            return bool(getattr(frame.f_locals.get("self"), "head_sent", False))
    return None


ERROR_PAGES = ("ClientConnection._refuse", "ClientConnection._send_error", "send_error",
               "send_raw_error", "serve_own_page", "ClientConnection._serve_own_page")


def _h11_stream(frame: types.FrameType, fw: list[tuple[types.FrameType, Any]], index: int,
                closing: bool) -> str | None:
    """H11Stream's methods: the side (its role) and what the callers are doing decide."""
    me = frame.f_locals.get("self")
    if me is None:
        return None
    if index + 1 < len(fw):  # the outermost of consecutive frames on the same stream decides
        outer = fw[index + 1][0]
        if outer.f_code.co_qualname.startswith("H11Stream.") and outer.f_locals.get("self") is me:
            return None
    name = frame.f_code.co_name
    outer_names = _outer_names(fw, index)
    pumping = "_pump_request_body" in outer_names
    if _role_is_client_side(me):
        if name in ("send", "send_raw"):
            if any(n in ERROR_PAGES for n in outer_names):
                return "other"
            if name == "send":
                head = type(frame.f_locals.get("event")).__name__ in HEAD_EVENTS
            else:
                head = _starts_with_status_line(frame.f_locals.get("data"))
            return "response head" if head else "body relay"
        if name == "__init__":
            return "accept"
        if pumping:
            return "body relay"
        if any(n in ERROR_PAGES for n in outer_names):
            return "other"
        return "client head"
    if name in ("__init__", "start_next_cycle"):
        return "pool/connect"
    if name in ("send", "send_raw"):
        return "body relay" if pumping else "origin head"
    return "body relay" if _relay_head_sent(fw, index) else "origin head"


def _response_relay(frame: types.FrameType, fw: list[tuple[types.FrameType, Any]], index: int,
                    closing: bool) -> str | None:
    """forward._ResponseRelay: by the event in hand, or by the bytes being written."""
    name = frame.f_code.co_name
    local = frame.f_locals
    relay = local.get("self")
    if name in ("run", "_queue"):
        kind = type(local.get("event")).__name__
        if kind in HEAD_EVENTS:
            return "response head"
        if kind in ("Data", "EndOfMessage"):
            return "body relay"
    elif name == "_flush":
        data = local.get("data", getattr(relay, "pending", b""))
        return "response head" if _starts_with_status_line(data) else "body relay"
    return "body relay" if getattr(relay, "head_sent", False) else "origin head"


def _relay_tunnel(frame: types.FrameType, fw: list[tuple[types.FrameType, Any]], index: int,
                  closing: bool) -> str | None:
    return "pool/connect" if closing else "body relay"


SPECIALS: dict[tuple[str, str], Special] = {
    ("proxy/connection", "ClientConnection._relay_tunnel"): _relay_tunnel,
}
SPECIAL_CLASSES: dict[tuple[str, str], Special] = {
    ("proxy/h11_stream", "H11Stream"): _h11_stream,
    ("proxy/forward", "_ResponseRelay"): _response_relay,
}
# trio functions that close a socket (seen below the deciding frame: a close is under way).
CLOSING = ("SocketStream.aclose", "_SocketType.close", "SocketType.close")


class Classifier:
    """Stage of a stack, by the rules above; each code object's rule is worked out once."""

    def __init__(self, package_dir: str, trio_dir: str | None, me: str) -> None:
        self.package_dir = os.path.join(package_dir, "")
        self.trio_dir = os.path.join(trio_dir, "") if trio_dir else None
        self.me = me
        self.rules: dict[types.CodeType, Rule] = {}

    def room(self, filename: str) -> str | None:
        """'proxy/connection' for fwdproxy/proxy/connection.py; None outside fwdproxy."""
        if not filename.startswith(self.package_dir):
            return None
        return filename[len(self.package_dir):].removesuffix(".py")

    def rule_for(self, code: types.CodeType) -> Rule:
        filename = code.co_filename
        if filename == self.me:  # its main() is at the bottom of every stack: only its handlers count
            return _FOREIGN if code.co_name in ("main", "<module>") else _PROFILER
        room = self.room(filename)
        if room is None:
            if self.trio_dir and filename.startswith(self.trio_dir):
                if filename.endswith(("_entry_queue.py", "_wakeup_socketpair.py")):
                    return _TRIO_WAKEUP
                if filename.endswith("_run.py") and code.co_name in ("unrolled_run", "run"):
                    return _TRIO_LOOP
                return _TRIO
            return _FOREIGN
        qualname = code.co_qualname
        if "<" in qualname:  # a comprehension, lambda or nested function: its caller decides
            return _DEFER
        owner = qualname.split(".", 1)[0]
        key = (room, qualname)
        if key in SPECIALS:
            return SPECIALS[key]
        if key in FUNCTIONS:
            return FUNCTIONS[key]
        if (room, owner) in SPECIAL_CLASSES:
            return SPECIAL_CLASSES[(room, owner)]
        if (room, owner) in CLASSES:
            return CLASSES[(room, owner)]
        if room in ROOMS:
            return ROOMS[room]
        for folder, stage in FOLDERS.items():
            if room.startswith(folder):
                return stage
        return _DEFER  # a room not named here: its caller decides

    def classify(self, frame: types.FrameType | None) -> str:
        rules = self.rules
        fw: list[tuple[types.FrameType, Rule]] = []
        trio_seen = wakeup = closing = False
        while frame is not None:
            code = frame.f_code
            rule = rules.get(code)
            if rule is None:
                rule = rules[code] = self.rule_for(code)
            if rule is _FOREIGN:
                pass
            elif rule is _TRIO:
                trio_seen = True
                if not fw and code.co_qualname in CLOSING:
                    closing = True
            elif rule is _TRIO_LOOP:
                trio_seen = True
                break  # below it: trio.run's caller (fwdproxy.cli, this file's main)
            elif rule is _TRIO_WAKEUP:
                wakeup = True
            elif rule is _PROFILER:
                return "profiler"
            else:
                fw.append((frame, rule))
            frame = frame.f_back
        for index, (frame, rule) in enumerate(fw):
            if rule is _DEFER:
                continue
            if isinstance(rule, str):
                return rule
            stage = rule(frame, fw, index, closing)
            if stage is not None:
                return stage
        if fw:
            return "other"
        if wakeup:
            return "profiler"
        return "trio scheduling" if trio_seen else "other"


# --- the sampler -------------------------------------------------------------------------


def _leaf_name(code: types.CodeType | None) -> str:
    if code is None:
        return "?"
    path = Path(code.co_filename)
    parts = path.parts
    for package in ("fwdproxy", "h11", "trio", "httptools"):
        if package in parts[:-1]:
            index = len(parts) - 1 - parts[::-1].index(package)
            return ".".join([*parts[index:-1], path.stem]) + ":" + code.co_qualname
    return f"{path.stem}:{code.co_qualname}"


class Sampler:
    """Counts SIGPROF samples by stage, and writes them as JSON when asked."""

    def __init__(self, classifier: Classifier, interval: float, out: Path) -> None:
        self.classifier = classifier
        self.interval = interval
        self.out = out
        self.stages: dict[str, int] = dict.fromkeys(STAGES, 0)
        self.cpu_ns: dict[str, int] = dict.fromkeys(STAGES, 0)  # CPU since the previous sample
        self.leaves: dict[tuple[str, types.CodeType | None], int] = {}
        self.handler_ns = 0
        self.snapshots = 0
        self.started = time.monotonic()
        self.last_cpu_ns = time.process_time_ns()

    def on_sample(self, _signum: int, frame: types.FrameType | None) -> None:
        began = time.perf_counter_ns()
        now = time.process_time_ns()
        stage = self.classifier.classify(frame)
        self.stages[stage] += 1
        self.cpu_ns[stage] += now - self.last_cpu_ns
        self.last_cpu_ns = now
        key = (stage, frame.f_code if frame is not None else None)
        self.leaves[key] = self.leaves.get(key, 0) + 1
        self.handler_ns += time.perf_counter_ns() - began

    def start(self) -> None:
        self.last_cpu_ns = time.process_time_ns()
        signal.signal(signal.SIGPROF, self.on_sample)
        signal.siginterrupt(signal.SIGPROF, False)  # SA_RESTART: no EINTR from our samples
        signal.signal(signal.SIGUSR2, lambda _s, _f: self.write(final=False))
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def state(self, final: bool) -> dict[str, Any]:
        """The counts so far (SIGPROF held off meanwhile: the figures are of one moment)."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF})
        try:
            return self._state(final)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _state(self, final: bool) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        leaves: dict[str, dict[str, int]] = {}
        for (stage, code), count in list(self.leaves.items()):
            names = leaves.setdefault(stage, {})
            name = _leaf_name(code)
            names[name] = names.get(name, 0) + count
        return {
            "pid": os.getpid(), "final": final, "snapshot": self.snapshots,
            "interval_s": self.interval, "wall_s": round(time.monotonic() - self.started, 6),
            "cpu_user_s": usage.ru_utime, "cpu_sys_s": usage.ru_stime,
            "main_thread_cpu_s": time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
            if threading.current_thread() is threading.main_thread() else None,
            "threads": threading.active_count(),
            "handler_s": self.handler_ns / 1e9,
            "samples": sum(self.stages.values()), "stages": dict(self.stages),
            "stage_cpu_s": {stage: ns / 1e9 for stage, ns in self.cpu_ns.items()}, "leaves": leaves,
        }

    def write(self, final: bool) -> None:
        """Write the counts so far to `out` (atomically: a reader never sees half a file)."""
        self.snapshots += 1
        data = self.state(final)
        temporary = self.out.with_name(self.out.name + f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="profiler.py", description="Run fwdproxy under a sampling profiler (see the docstring).")
    parser.add_argument("--out", type=Path, required=True, help="where the counts go (JSON)")
    parser.add_argument("--interval-ms", type=float, default=1.0,
                        help="CPU time between two samples (default 1 ms: in effect, every tick "
                        "of the kernel)")
    parser.add_argument("fwdproxy_args", nargs=argparse.REMAINDER,
                        help="-- and then the arguments for fwdproxy")
    args = parser.parse_args(argv)
    rest = args.fwdproxy_args
    if rest[:1] == ["--"]:
        rest = rest[1:]
    import fwdproxy
    import fwdproxy.cli

    try:
        import trio

        trio_dir: str | None = os.path.dirname(os.path.abspath(trio.__file__))
    except ImportError:
        trio_dir = None
    package_dir = os.path.dirname(os.path.abspath(fwdproxy.__file__))
    sampler = Sampler(Classifier(package_dir, trio_dir, os.path.abspath(__file__)),
                      args.interval_ms / 1000.0, args.out)
    done = False

    def finish() -> None:
        nonlocal done
        if not done:
            done = True
            sampler.stop()
            sampler.write(final=True)

    atexit.register(finish)
    sampler.start()
    try:
        return fwdproxy.cli.main(rest)
    finally:
        finish()


# --- the budget (used by the bench) ------------------------------------------------------


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What happened between two snapshots of one process."""
    leaves: dict[str, dict[str, int]] = {}
    for stage, names in after["leaves"].items():
        old = before["leaves"].get(stage, {})
        moved = {n: c - old.get(n, 0) for n, c in names.items() if c - old.get(n, 0) > 0}
        if moved:
            leaves[stage] = moved
    return {
        "interval_s": after["interval_s"],
        "cpu_s": (after["cpu_user_s"] + after["cpu_sys_s"]) - (before["cpu_user_s"] + before["cpu_sys_s"]),
        "cpu_user_s": after["cpu_user_s"] - before["cpu_user_s"],
        "cpu_sys_s": after["cpu_sys_s"] - before["cpu_sys_s"],
        "handler_s": after["handler_s"] - before["handler_s"],
        "samples": after["samples"] - before["samples"],
        "stages": {s: after["stages"].get(s, 0) - before["stages"].get(s, 0) for s in STAGES},
        "stage_cpu_s": {s: after["stage_cpu_s"].get(s, 0.0) - before["stage_cpu_s"].get(s, 0.0)
                        for s in STAGES},
        "leaves": leaves,
    }


def add(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    """Two differences (two rounds) added up."""
    if total is None:
        return json.loads(json.dumps(part))  # type: ignore[no-any-return]
    for key in ("cpu_s", "cpu_user_s", "cpu_sys_s", "handler_s", "samples"):
        total[key] += part[key]
    for stage in STAGES:
        total["stages"][stage] += part["stages"][stage]
        total["stage_cpu_s"][stage] += part["stage_cpu_s"][stage]
    for stage, names in part["leaves"].items():
        mine = total["leaves"].setdefault(stage, {})
        for name, count in names.items():
            mine[name] = mine.get(name, 0) + count
    return total


def budget(counts: dict[str, Any], requests: int) -> dict[str, Any]:
    """µs of CPU per request by stage: the measured CPU spread by the stages' shares of the
    sampled CPU (the handler's own measured time goes to "profiler" first), so that the rows
    add up to it."""
    samples = counts["samples"]
    sampled_s = sum(counts["stage_cpu_s"].values())
    cpu_us = counts["cpu_s"] * 1e6 / requests if requests else None
    handler_us = counts["handler_s"] * 1e6 / requests if requests else None
    rows: list[dict[str, Any]] = []
    if cpu_us is not None and handler_us is not None and sampled_s > 0:
        spread = max(cpu_us - handler_us, 0.0)
        for stage in STAGES:
            n = counts["stages"][stage]
            us = spread * counts["stage_cpu_s"][stage] / sampled_s
            if stage == "profiler":
                us += handler_us
            top = sorted(counts["leaves"].get(stage, {}).items(), key=lambda item: -item[1])[:3]
            rows.append({"stage": stage, "label": LABELS.get(stage, stage), "samples": n,
                         "us_per_request": round(us, 2), "share": round(us / cpu_us, 4),
                         "top_innermost": [{"code": name, "share_of_stage": round(c / n, 3)}
                                           for name, c in top if n]})
    return {
        "requests": requests, "samples": samples, "interval_ms": counts["interval_s"] * 1000,
        "mean_period_ms": round(sampled_s * 1000 / samples, 3) if samples else None,
        "cpu_s": round(counts["cpu_s"], 4), "cpu_user_s": round(counts["cpu_user_s"], 4),
        "cpu_sys_s": round(counts["cpu_sys_s"], 4), "sampled_cpu_s": round(sampled_s, 4),
        "cpu_us_per_request": round(cpu_us, 2) if cpu_us is not None else None,
        "sampled_us_per_request": round(sampled_s * 1e6 / requests, 2) if requests else None,
        "handler_us_per_request": round(handler_us, 2) if handler_us is not None else None,
        "stages": rows,
    }


def budget_table(figures: dict[str, Any]) -> str:
    """The budget as a markdown table: stage, µs of CPU per request, share, innermost code."""
    rows = ["| stage | µs CPU/request | share | samples | busiest innermost code (share of the stage's "
            "samples) |",
            "|---|---:|---:|---:|---|"]
    for row in figures["stages"]:
        top = ", ".join(f"{t['code']} {t['share_of_stage']:.0%}" for t in row["top_innermost"][:2])
        rows.append(f"| {row['label']} | {row['us_per_request']:.1f} | {row['share']:.1%} | "
                    f"{row['samples']:,} | {top} |")
    rows.append(f"| **total = the process's CPU (user+sys) / requests served** | "
                f"**{figures['cpu_us_per_request']:.1f}** | 100% | {figures['samples']:,} | "
                f"sampled: {figures['sampled_us_per_request']:.1f} µs/request (the CPU the samples "
                f"stand for, one per {figures['mean_period_ms']:.1f} ms of CPU on average) |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
