"""The command line: argv → config.load() → trio.run(server.serve); exit codes.

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 2 for a configuration problem
(bad file, unknown key, port in use), with one message naming what is wrong.
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
from pathlib import Path

import trio

from fwdproxy import __version__, config
from fwdproxy.config import load_rules
from fwdproxy.errors import ConfigError
from fwdproxy.server import Running, open_listeners, report_rules, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwdproxy",
        description="A forward proxy for clients: plain HTTP, HTTPS via CONNECT, WebSocket.",
        epilog="Safe defaults: only loopback and private-network clients, CONNECT to port 443 "
        "only, and never to loopback, link-local (cloud metadata) or this machine's addresses. "
        "'fwdproxy check URL...' explains what the rules decide; 'fwdproxy check --lint' "
        "checks the rules folder.",
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


async def run(cfg: config.Config) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; a second signal stops at once."""
    shutdown = trio.Event()
    loaded = load_rules(cfg.rules, cfg.auth)
    # Bound before any task starts, so that a port in use is a plain ConfigError.
    listeners = await open_listeners(cfg.listen)
    report_rules(loaded)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                   signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: trio.TaskStatus[Running]) -> None:
                await serve(cfg, shutdown=shutdown, listeners=listeners, loaded=loaded,
                            task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop waiting for signals

            running: Running = await nursery.start(serve_then_stop)
            where = ", ".join(str(b) for b in running.bound)
            print(f"fwdproxy {__version__} listening on {where}", file=sys.stderr, flush=True)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fwdproxy` command. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        from fwdproxy import check

        return check.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        cfg = config.load(args.config, listen=args.listen, rules=args.rules,
                          access_log=args.access_log, via=args.via)
        _raise_file_limit()
        trio.run(run, cfg)
    except ConfigError as exc:
        print(f"fwdproxy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
