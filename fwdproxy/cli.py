"""The command line: argv → config.load() → trio.run(server.serve); exit codes.

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 2 for a configuration problem
(bad file, unknown key, port in use), with one message naming what is wrong.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from fwdproxy import __version__, config
from fwdproxy.config import load_rules
from fwdproxy.errors import ConfigError
from fwdproxy.server import Running, open_listeners, refreshed_rules, report_rules, serve
from fwdproxy.workers import WorkerSetup, open_reserved, supervise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwdproxy",
        description="A forward proxy for clients: plain HTTP, HTTPS via CONNECT, WebSocket.",
        epilog="Safe defaults: only loopback and private-network clients, CONNECT to port 443 "
        "only, and never to loopback, link-local (cloud metadata) or this machine's addresses. "
        "'fwdproxy check URL...' explains what the rules decide; 'fwdproxy check --lint' "
        "checks the rules folder; 'fwdproxy import squidguard|e2guardian|ut1 ...' turns "
        "another filter's configuration into a rules folder.",
    )
    parser.add_argument("--listen", action="append", metavar="[HOST:]PORT",
                        help="address to listen on; repeatable. '8080' listens on every "
                        "interface, '127.0.0.1:8080' or '[::1]:8080' on one (default: 8080)")
    parser.add_argument("--config", type=Path, metavar="FILE.yaml", help="YAML configuration file")
    parser.add_argument("--rules", type=Path, metavar="DIR", help="folder of allow/deny rule files")
    parser.add_argument("--access-log", type=Path, metavar="FILE",
                        help="append access-log lines to FILE (default: standard error)")
    parser.add_argument("--via", metavar="NAME",
                        help="name in our Via header (default: host name and port)")
    parser.add_argument("--workers", metavar="N|auto",
                        help="run N worker processes sharing the listening addresses, under a "
                        "supervisor that restarts them; 'auto': one per core (default: one "
                        "process, no supervisor)")
    parser.add_argument("--version", action="version", version=f"fwdproxy {__version__}")
    return parser


def _raise_file_limit() -> None:
    """Every connection costs two descriptors; the usual soft limit of 1024 is too few."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass


async def run(cfg: config.Config, worker: WorkerSetup | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; a second signal stops at once.

    As a worker (`worker` given), serve on the supervisor's addresses with the rules it
    read, stop on SIGTERM only, and also when the supervisor is gone.
    """
    shutdown = trio.Event()
    if worker is None:
        loaded = load_rules(cfg.rules, cfg.auth)
        # Bound before any task starts, so that a port in use is a plain ConfigError.
        listeners = await open_listeners(cfg.listen)
        report_rules(loaded)
    else:
        loaded = worker.loaded
        if worker.restarted:  # start from the rules as they are now, not as they were
            loaded = await trio.to_thread.run_sync(refreshed_rules, cfg, loaded)
        listeners = await open_reserved(worker.reservations)
    stops = (signal.SIGINT, signal.SIGTERM) if worker is None else (signal.SIGTERM,)
    with trio.open_signal_receiver(*stops, signal.SIGHUP, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: trio.TaskStatus[Running]) -> None:
                await serve(cfg, shutdown=shutdown, listeners=listeners, loaded=loaded,
                            shared=worker.shared if worker is not None else None,
                            task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop waiting for signals

            running: Running = await nursery.start(serve_then_stop)
            if worker is None:
                where = ", ".join(str(b) for b in running.bound)
                print(f"fwdproxy {__version__} listening on {where}", file=sys.stderr, flush=True)
            else:
                nursery.start_soon(_stop_when_orphaned, worker.lifeline, shutdown)
                worker.report_ready()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGUSR1:  # logrotate moved the file: open it anew
                    running.context.log.reopen()
                    continue
                if signum == signal.SIGHUP:
                    print("fwdproxy: SIGHUP: reloading the rules", file=sys.stderr, flush=True)
                    running.context.request_reload()
                    continue
                if shutdown.is_set():
                    print(f"fwdproxy: {name} again: stopping now", file=sys.stderr, flush=True)
                    nursery.cancel_scope.cancel()
                    break
                print(f"fwdproxy: {name}: finishing requests in flight (up to "
                      f"{cfg.timeouts.shutdown_grace:g} s; signal again to stop now)",
                      file=sys.stderr, flush=True)
                shutdown.set()


async def _stop_when_orphaned(lifeline: int, shutdown: trio.Event) -> None:
    """The lifeline pipe reads end-of-file once no supervisor holds its write end."""
    await trio.lowlevel.wait_readable(lifeline)
    if not shutdown.is_set():
        print(f"fwdproxy: worker {os.getpid()}: the supervisor is gone; stopping",
              file=sys.stderr, flush=True)
        shutdown.set()


def _run_worker(cfg: config.Config) -> Callable[[WorkerSetup], int]:
    def run_worker(setup: WorkerSetup) -> int:
        trio.run(run, cfg, setup)
        return 0
    return run_worker


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fwdproxy` command. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if isinstance(sys.stderr, io.TextIOWrapper):
        # One write() per line: Python's stderr writes a line's text and its newline
        # separately, and the lines of workers sharing stderr would run into each other.
        sys.stderr.reconfigure(line_buffering=True, write_through=False)
    if argv[:1] == ["check"]:
        from fwdproxy import check

        return check.main(argv[1:])
    if argv[:1] == ["import"]:
        from fwdproxy.importers import command

        return command.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        cfg = config.load(args.config, listen=args.listen, rules=args.rules,
                          access_log=args.access_log, via=args.via, workers=args.workers)
        _raise_file_limit()
        if cfg.workers:
            return supervise(cfg, _run_worker(cfg))
        trio.run(run, cfg)
    except ConfigError as exc:
        print(f"fwdproxy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
