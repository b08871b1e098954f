"""--workers: a supervisor and N worker processes on the same port (SO_REUSEPORT), driven
as a user drives them: `python -m fwdproxy --config F --workers 2`, real sockets, signals
sent to the supervisor's pid.

What is checked: new connections are served by either worker and the figures on /metrics
and the status page add up both; a killed worker is restarted (and its totals carried on);
SIGHUP under load fails no request and reaches every worker; SIGUSR1 makes every worker
reopen the access log without losing a line; SIGTERM and SIGINT stop gracefully (a second
one at once); workers leave when their supervisor is killed; configuration errors exit 2,
a worker that cannot start exits 1, and nothing is left behind.

The workers are known by the pids the supervisor prints ("worker 0 (pid N) ready"); only
those and the supervisor the test started are ever signalled. Orphaned workers may stay
zombies where process 1 does not reap, so "gone" means no such pid or a zombie.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.e2e.conftest import (
    FILE_BODY,
    FILE_NAME,
    STARTUP_TIMEOUT,
    Origin,
    ProxyProcess,
    StartProxy,
    base_config,
    client_env,
    run,
)
from tests.e2e.conftest import (
    fetch_through as fetch,
)

pytestmark = pytest.mark.e2e

T = TypeVar("T")

WORKERS = 2
REQUEST_TIMEOUT = 10.0
# The workers publish their figures every second; /metrics adds up the others' last ones.
FIGURES_TIMEOUT = 10.0
# A killed worker is restarted at once (the first time); a fork and a listen.
RESTART_TIMEOUT = 15.0
# Reloading a handful of rule lines takes milliseconds; this only fails a stuck reload.
RELOAD_TIMEOUT = 10.0
# Every access-log line is written out within a second of its request.
LOG_TIMEOUT = 5.0
# A worker whose supervisor is gone notices at once (end-of-file on its lifeline pipe).
ORPHAN_TIMEOUT = 15.0
# A command that fails at start-up does so in well under a second.
FAILURE_TIMEOUT = 15.0
POLL = 0.02

# Matched anywhere in stderr, not per line: two processes' lines can run into one (see
# test_each_stderr_line_is_written_whole).
READY = re.compile(r"fwdproxy: worker (\d+) \(pid (\d+)\) ready")
RELOADED = "fwdproxy: reloaded rules from "
FINISHING = "fwdproxy: SIGTERM: finishing requests in flight"
# "/" and /metrics show the status figures to these clients only; the e2e config has none.
ADMIN = {"admin_clients": ["127.0.0.0/8"]}


# -- helpers -----------------------------------------------------------------------------


def start_workers(start_proxy: StartProxy, overrides: dict[str, Any] | None = None,
                  workers: int = WORKERS) -> ProxyProcess:
    """A supervisor with `workers` workers, once it printed its "listening on" line."""
    proxy = start_proxy(overrides, args=["--workers", str(workers)])
    listening = proxy.wait_for_stderr(r"^fwdproxy \S+ listening on .* \((\d+) workers\)",
                                      timeout=1)
    assert int(listening.group(1)) == workers, listening.group(0)
    assert sorted(ready_pids(proxy)) == list(range(workers)), proxy.stderr
    return proxy


def ready_pids(proxy: ProxyProcess) -> dict[int, int]:
    """Each worker's pid, from its latest "ready" line."""
    return {int(m.group(1)): int(m.group(2)) for m in READY.finditer(proxy.stderr)}


def count(proxy: ProxyProcess, text: str) -> int:
    """How many times `text` is on stderr."""
    return proxy.stderr.count(text)


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               proxy: ProxyProcess | None = None) -> T:
    """Poll `condition` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"; stderr:\n{proxy.stderr}" if proxy is not None else ""
            pytest.fail(f"not within {timeout:g} s: {what}{detail}")
        time.sleep(POLL)


def metrics(port: int) -> dict[str, float]:
    """The unlabelled samples of /metrics, asked of whichever worker accepts."""
    status, body = fetch(port, "/metrics")
    assert status == 200, body[:300]
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def allowed(port: int) -> int:
    return int(metrics(port)["fwdproxy_requests_allowed_total"])


def wait_for_allowed(port: int, expected: int, proxy: ProxyProcess,
                     seen: list[int] | None = None) -> None:
    """Poll /metrics until both workers are counted and the allowed total is `expected`."""
    def done() -> bool:
        sample = metrics(port)
        if seen is not None:
            seen.append(int(sample["fwdproxy_requests_allowed_total"]))
        return (sample["fwdproxy_workers"] == WORKERS
                and sample["fwdproxy_requests_allowed_total"] == expected)

    wait_until(done, FIGURES_TIMEOUT, f"/metrics adds up to {expected} allowed requests", proxy)


def wait_until_published(port: int, expected: int, proxy: ProxyProcess) -> None:
    """Wait until each worker has published figures that include every request so far.

    A scrape adds the accepting worker's live figures to the other's last published ones,
    so it reads the whole total only once the other has published it. Eight scrapes in a
    row on new connections that all read `expected` were (but for a 1/256 chance) served
    by both workers."""
    streak = 0

    def settled() -> bool:
        nonlocal streak
        streak = streak + 1 if allowed(port) == expected else 0
        return streak >= 8

    wait_until(settled, FIGURES_TIMEOUT, f"every worker publishes {expected} allowed", proxy)


def is_gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaps (an orphan, where process 1 does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def processes_with_argument(argument: str) -> list[int]:
    """Live processes (other than this one) whose command line has `argument`; forked
    workers keep their supervisor's command line."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc to look for processes left behind")
    wanted = argument.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in arguments:  # a zombie's command line is empty
            found.append(int(entry.name))
    return found


def kill_leftovers(pids: list[int]) -> None:
    """SIGKILL workers of ours that are still running (after a failed test)."""
    for pid in pids:
        if not is_gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def write_config(tmp_path: Path, name: str, overrides: dict[str, Any] | None = None) -> Path:
    path = tmp_path / f"{name}.yaml"
    data = {**base_config(tmp_path / f"{name}.log"), **(overrides or {})}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def fwdproxy_command(*args: str | Path | int) -> list[str]:
    return [sys.executable, "-m", "fwdproxy", *(str(a) for a in args)]


def log_needles(lines: list[str], needles: list[str]) -> list[str]:
    """The needles found in `lines`, one per line that has it."""
    return [needle for line in lines for needle in needles if needle in line]


# -- serving ---------------------------------------------------------------------------


def test_two_workers_serve_and_add_up_their_figures(start_proxy: StartProxy,
                                                    http_origin: Origin) -> None:
    proxy = start_workers(start_proxy, ADMIN)
    lines = proxy.stderr.splitlines()
    pids = ready_pids(proxy)
    assert len(set(pids.values())) == WORKERS and proxy.proc.pid not in pids.values()
    # The supervisor announces the port once, after every worker is ready.
    listening = next(i for i, line in enumerate(lines) if " listening on " in line)
    assert all(i < listening for i, line in enumerate(lines) if READY.search(line))

    urls = [http_origin.url(f"/{FILE_NAME}?n={i}") for i in range(40)]
    for url in urls:
        assert fetch(proxy.port, url) == (200, FILE_BODY)
    wait_for_allowed(proxy.port, 40, proxy)

    status, page = fetch(proxy.port, "/")
    assert status == 200
    assert "2 workers" in page.decode()
    # Both workers append to the one access-log file; no line is lost or torn.
    needles = [f" GET {url} 200 " for url in urls]
    wait_until(lambda: len(log_needles(proxy.log_lines(), needles)) >= len(needles),
               LOG_TIMEOUT, "every request in the access log", proxy)
    assert sorted(log_needles(proxy.log_lines(), needles)) == sorted(needles)


def test_ipv6_and_ipv4_addresses_are_both_served(start_proxy: StartProxy,
                                                 http_origin: Origin) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    proxy = start_workers(start_proxy, {"listen": ["127.0.0.1:0", "[::1]:0"]})
    listening = proxy.wait_for_stderr(r"listening on 127\.0\.0\.1:(\d+), \[::1\]:(\d+) "
                                      r"\(2 workers\)", timeout=1)
    v6_port = int(listening.group(2))
    assert int(listening.group(1)) == proxy.port != v6_port
    for _ in range(10):
        assert fetch(proxy.port, http_origin.url()) == (200, FILE_BODY)
        assert fetch(v6_port, http_origin.url(), host="::1") == (200, FILE_BODY)


# -- a worker dies -------------------------------------------------------------------------


def test_a_killed_worker_is_restarted_and_its_totals_carried_on(
        start_proxy: StartProxy, http_origin: Origin) -> None:
    proxy = start_workers(start_proxy, ADMIN)
    pids = ready_pids(proxy)
    url = http_origin.url()
    for _ in range(20):
        assert fetch(proxy.port, url)[0] == 200
    wait_until_published(proxy.port, 20, proxy)

    os.kill(pids[0], signal.SIGKILL)
    proxy.wait_for_stderr(rf"fwdproxy: worker 0 \(pid {pids[0]}\) was killed by SIGKILL; "
                          r"restarting it", RESTART_TIMEOUT)
    new_pid = wait_until(lambda: ready_pids(proxy)[0] != pids[0] and ready_pids(proxy)[0],
                         RESTART_TIMEOUT, "worker 0 ready again", proxy)
    assert new_pid not in pids.values()
    assert ready_pids(proxy)[1] == pids[1]  # the other worker was left alone
    assert is_gone(pids[0])  # and the dead one reaped

    for _ in range(20):
        assert fetch(proxy.port, url) == (200, FILE_BODY)
    seen: list[int] = []
    wait_for_allowed(proxy.port, 40, proxy, seen)
    assert min(seen) >= 20, f"the allowed total went backwards after the restart: {seen}"
    assert "Traceback" not in proxy.stderr


def test_a_killed_workers_counts_are_not_lost(start_proxy: StartProxy,
                                               http_origin: Origin) -> None:
    proxy = start_workers(start_proxy, ADMIN)
    pids = ready_pids(proxy)
    url = http_origin.url()
    served = [0, 0]

    def load(slot: int) -> None:
        for _ in range(75):
            if fetch(proxy.port, url)[0] == 200:
                served[slot] += 1

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(load, slot) for slot in (0, 1)]:
            future.result(timeout=60)
    # Right after the last response, while the workers' last second is still unpublished.
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(ready_pids(proxy).get(i) not in (None, pids[i]) for i in pids),
               RESTART_TIMEOUT, "both workers ready again", proxy)
    assert sum(served) == 150
    # Both restarted workers publish at once; every count is back within a second or two.
    # Two exchanges may still have been unrecorded when the workers died.
    readings: list[int] = []

    def carried_on() -> bool:
        readings.append(allowed(proxy.port))
        return readings[-1] >= sum(served) - 2

    deadline = time.monotonic() + 3.0
    while not carried_on() and time.monotonic() < deadline:
        time.sleep(POLL)
    assert readings[-1] >= sum(served) - 2, (
        f"{sum(served)} requests were served, /metrics counts {readings[-1]} after the restart")


# -- signals ---------------------------------------------------------------------------


def _load(port: int, url: str, keep_alive: bool, done: threading.Event, minimum: int,
          maximum: int, outcomes: list[int | str]) -> None:
    """Requests until `done` is set and at least `minimum` were made (at most `maximum`):
    on one kept-alive connection, or each on a new one. Records statuses or errors."""
    conn: http.client.HTTPConnection | None = None
    deadline = time.monotonic() + 60
    try:
        while len(outcomes) < maximum and time.monotonic() < deadline:
            if len(outcomes) >= minimum and done.is_set():
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
            try:
                conn.request("GET", url)
                response = conn.getresponse()
                body = response.read()
                outcomes.append(response.status if body == FILE_BODY else f"body {body[:80]!r}")
                if response.will_close:
                    outcomes.append("the proxy closed a kept-alive connection")
            except (OSError, http.client.HTTPException) as exc:
                outcomes.append(repr(exc))
            if not keep_alive or outcomes[-1] != 200:
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


def test_sighup_under_load_reloads_every_worker_and_fails_no_request(
        start_proxy: StartProxy, http_origin: Origin, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    deny = rules / "deny" / "x.txt"
    deny.write_text("nothing.test\n")
    late = [f"late-{i}.test" for i in range(5)]
    # Only the signal reloads during the test (no polling), so each SIGHUP is one
    # "reloaded" line per worker.
    proxy = start_workers(start_proxy, {
        "rules": str(rules), "timeouts": {"rules_poll": 3600},
        "hosts": {"origin.test": "127.0.0.1", **dict.fromkeys(late, "127.0.0.1")}})
    assert fetch(proxy.port, http_origin.url(host=late[-1]))[0] == 200

    done = threading.Event()
    outcomes: list[list[int | str]] = [[] for _ in range(4)]
    threads = [threading.Thread(
        target=_load, name=f"load-{i}",
        args=(proxy.port, http_origin.url(f"/{FILE_NAME}?t={i}"), i % 2 == 0, done, 60, 1000,
              outcomes[i])) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(len(o) >= 5 for o in outcomes), REQUEST_TIMEOUT,
                   "the load is running", proxy)
        for round_ in range(1, 6):
            deny.write_text("nothing.test\n" + "".join(f"{name}\n" for name in late[:round_]))
            proxy.send_signal(signal.SIGHUP)
            # Both workers read the new file: one more entry than the round before.
            reloaded = re.compile(rf"{RELOADED}{re.escape(str(rules))}: deny x: {round_ + 1}(?!\d)")

            def both_reloaded(pattern: re.Pattern[str] = reloaded) -> bool:
                return len(pattern.findall(proxy.stderr)) == WORKERS

            wait_until(both_reloaded, RELOAD_TIMEOUT, f"both workers reload (SIGHUP #{round_})",
                       proxy)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    for i, thread_outcomes in enumerate(outcomes):
        failures = [o for o in thread_outcomes if o != 200]
        assert not failures, f"load thread {i} ({len(thread_outcomes)} requests): {failures[:5]}"
        assert len(thread_outcomes) >= 60
    assert count(proxy, RELOADED) == WORKERS * 5
    assert count(proxy, "fwdproxy: SIGHUP: reloading the rules in 2 workers") == 5
    # Each new connection lands on either worker: both deny the name added last.
    for _ in range(20):
        assert fetch(proxy.port, http_origin.url(host=late[-1]))[0] == 403


def test_sigusr1_makes_every_worker_reopen_the_access_log(
        start_proxy: StartProxy, http_origin: Origin, tmp_path: Path) -> None:
    proxy = start_workers(start_proxy)
    log = proxy.access_log
    assert log is not None
    made: list[str] = []

    def request(tag: str) -> str:
        url = http_origin.url(f"/{FILE_NAME}?usr1={tag}")
        assert fetch(proxy.port, url)[0] == 200
        needle = f" GET {url} 200 "
        made.append(needle)
        return needle

    before = [request(f"before-{i}") for i in range(10)]
    rotated = tmp_path / "rotated.log"
    log.rename(rotated)
    proxy.send_signal(signal.SIGUSR1)
    wait_until(log.exists, LOG_TIMEOUT, "SIGUSR1 reopens the access log", proxy)

    def lines(path: Path) -> list[str]:
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    # A round of new connections that all log to the new file has reached both workers
    # (but for a 1/512 chance), so both have reopened it.
    deadline = time.monotonic() + 4 * LOG_TIMEOUT
    for round_ in range(100):
        batch = [request(f"after-{round_}-{i}") for i in range(10)]

        def written(batch: list[str] = batch) -> bool:
            return len(log_needles(lines(log) + lines(rotated), batch)) == len(batch)

        wait_until(written, LOG_TIMEOUT, "the round's lines are written out", proxy)
        if len(log_needles(lines(log), batch)) == len(batch):
            break
        assert time.monotonic() < deadline, "a worker keeps logging to the renamed file"

    wait_until(lambda: len(log_needles(lines(log) + lines(rotated), made)) == len(made),
               LOG_TIMEOUT, "every line written out", proxy)
    old, new = log_needles(lines(rotated), made), log_needles(lines(log), made)
    assert sorted(old + new) == sorted(made), "a line was lost or written twice"
    assert set(before) <= set(old)
    assert not set(before) & set(new)


def test_sigterm_lets_requests_in_flight_finish_then_stops_every_worker(
        start_proxy: StartProxy, http_origin: Origin) -> None:
    proxy = start_workers(start_proxy)
    pids = ready_pids(proxy)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch, proxy.port, http_origin.url("/slow"))
        assert http_origin.slow_started.wait(REQUEST_TIMEOUT), "the request never reached the origin"
        proxy.send_signal(signal.SIGTERM)
        proxy.wait_for_stderr(r"fwdproxy: SIGTERM: stopping 2 workers, which finish requests "
                              r"in flight", timeout=10)
        wait_until(lambda: count(proxy, FINISHING) == WORKERS, 10,
                   "both workers are stopping", proxy)
        http_origin.slow_release.set()
        assert pending.result(timeout=REQUEST_TIMEOUT) == (200, b"slow done")
    assert proxy.wait_exit() == 0
    assert proxy.stderr.rstrip().endswith("fwdproxy: all workers have stopped")
    assert "Traceback" not in proxy.stderr
    assert "again: stopping" not in proxy.stderr  # one SIGTERM per worker
    assert all(is_gone(pid) for pid in pids.values())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=REQUEST_TIMEOUT).close()


def test_second_sigint_stops_the_workers_at_once(start_proxy: StartProxy,
                                                 http_origin: Origin) -> None:
    proxy = start_workers(start_proxy, {"timeouts": {"shutdown_grace": 60}})
    pids = ready_pids(proxy)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch, proxy.port, http_origin.url("/slow"))
        assert http_origin.slow_started.wait(REQUEST_TIMEOUT), "the request never reached the origin"
        proxy.send_signal(signal.SIGINT)
        # Forwarded as SIGTERM; waiting for both workers to take the first one, so that the
        # second cannot merge with it.
        wait_until(lambda: count(proxy, FINISHING) == WORKERS, 10,
                   "both workers are stopping", proxy)
        proxy.send_signal(signal.SIGINT)
        # Not the 60 s grace: the second signal cancels the request in flight.
        assert proxy.wait_exit(timeout=10) == 0
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            pending.result(timeout=REQUEST_TIMEOUT)
        http_origin.slow_release.set()
    assert "fwdproxy: SIGINT again: stopping the workers now" in proxy.stderr
    assert proxy.stderr.rstrip().endswith("fwdproxy: all workers have stopped")
    assert all(is_gone(pid) for pid in pids.values())


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path,
                                                    http_origin: Origin) -> None:
    config = write_config(tmp_path, "orphans")
    proxy = ProxyProcess(fwdproxy_command("--config", config, "--workers", WORKERS),
                         cwd=tmp_path, access_log=tmp_path / "orphans.log")
    pids: list[int] = []
    try:
        proxy.wait_until_listening()
        pids = list(ready_pids(proxy).values())
        assert len(pids) == WORKERS
        assert fetch(proxy.port, http_origin.url())[0] == 200
        proxy.proc.kill()
        assert proxy.proc.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: all(is_gone(pid) for pid in pids), ORPHAN_TIMEOUT,
                   "the workers leave once their supervisor is gone", proxy)
        for pid in pids:
            assert f"fwdproxy: worker {pid}: the supervisor is gone; stopping" in proxy.stderr
        assert "Traceback" not in proxy.stderr
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=REQUEST_TIMEOUT).close()
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
            proxy.proc.wait(timeout=10)
        kill_leftovers(pids)


# -- start-up failures -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "x", "257", "-1"])
def test_bad_worker_count_exits_2(tmp_path: Path, value: str) -> None:
    result = run(fwdproxy_command("--listen", "127.0.0.1:0", "--workers", value),
                 timeout=FAILURE_TIMEOUT, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fwdproxy: error: command line: workers: "), lines[0]
    assert repr(value) in lines[0]


def test_port_in_use_exits_2_and_leaves_nothing_behind(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run(fwdproxy_command("--listen", address, "--workers", WORKERS,
                                      "--rules", rules), timeout=FAILURE_TIMEOUT, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"fwdproxy: error: cannot listen on {address}: address already in use"]
        assert processes_with_argument(address) == []
        # The port is still ours alone.
        with socket.create_connection(("127.0.0.1", taken.getsockname()[1]),
                                      timeout=REQUEST_TIMEOUT):
            accepted, _ = taken.accept()
            accepted.close()


def test_a_worker_that_cannot_start_stops_everything_with_exit_1(tmp_path: Path) -> None:
    """A worker opens the access log itself; one in a missing folder fails every worker
    during start-up, which the supervisor reports and exits 1 for."""
    access_log = tmp_path / "no-such-folder" / "access.log"
    result = run(fwdproxy_command("--listen", "127.0.0.1:0", "--workers", WORKERS,
                                  "--access-log", access_log),
                 timeout=FAILURE_TIMEOUT, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert re.search(r"fwdproxy: worker \d exited with status \d+ during start-up; stopping",
                     result.stderr), result.stderr
    assert " listening on " not in result.stderr
    assert processes_with_argument(str(access_log)) == []


def test_a_second_workers_proxy_on_the_same_port_exits_2(
        start_proxy: StartProxy, tmp_path: Path) -> None:
    first = start_workers(start_proxy)
    address = f"127.0.0.1:{first.port}"
    rules = tmp_path / "second-rules"
    rules.mkdir()
    second = ProxyProcess(fwdproxy_command("--listen", address, "--workers", WORKERS,
                                           "--rules", rules),
                          cwd=tmp_path, access_log=None)
    try:
        second.wait_for_stderr(r" listening on |^fwdproxy: error: ", STARTUP_TIMEOUT)
        code = second.wait_exit()
    finally:
        if second.proc.poll() is None:
            second.stop()
    assert " listening on " not in second.stderr, f"a second proxy serves {address} too"
    assert code == 2
    assert f"cannot listen on {address}: address already in use" in second.stderr


def test_a_restarted_worker_serves_the_reloaded_rules_from_the_start(
        start_proxy: StartProxy, http_origin: Origin, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "deny").mkdir(parents=True)
    deny = rules / "deny" / "big.txt"
    # Large enough that a reload takes a while (as a real blocklist's does).
    deny.write_text("".join(f"h{i}.example\n" for i in range(100_000)))
    proxy = start_workers(start_proxy, {
        "rules": str(rules), "timeouts": {"rules_poll": 3600},
        "hosts": {"origin.test": "127.0.0.1", "late.test": "127.0.0.1"}})
    url = http_origin.url(host="late.test")
    assert fetch(proxy.port, url)[0] == 200
    with deny.open("a") as file:
        file.write("late.test\n")
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: count(proxy, RELOADED) >= WORKERS, RELOAD_TIMEOUT + 20,
               "both workers reload", proxy)
    assert [fetch(proxy.port, url)[0] for _ in range(10)] == [403] * 10

    pids = ready_pids(proxy)
    os.kill(pids[0], signal.SIGKILL)
    wait_until(lambda: ready_pids(proxy)[0] != pids[0], RESTART_TIMEOUT,
               "worker 0 ready again", proxy)
    statuses = [fetch(proxy.port, url)[0] for _ in range(20)]
    assert statuses == [403] * 20, f"late.test after the restart: {statuses}"


def test_each_stderr_line_is_written_whole(tmp_path: Path) -> None:
    """Lines from several processes on one stderr stay apart only if each is written by
    one write() (up to PIPE_BUF bytes, atomic on a pipe). A datagram socket as stderr
    keeps each write() apart, so the test sees how the lines are written, not by chance."""
    rules = tmp_path / "rules"
    rules.mkdir()
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with reader, writer:
        proc = subprocess.Popen(
            fwdproxy_command("--listen", "127.0.0.1:0", "--workers", WORKERS, "--rules", rules),
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=writer.fileno(), env=client_env())
        writes: list[bytes] = []

        def read_until(text: bytes) -> None:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while text not in b"".join(writes):
                reader.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    writes.append(reader.recv(1 << 16))
                except TimeoutError:
                    pytest.fail(f"no {text!r} on stderr; got {writes}")

        stopped = False
        try:
            read_until(b" listening on ")
            proc.send_signal(signal.SIGTERM)
            read_until(b"all workers have stopped")
            stopped = True
        finally:
            # Only when the test failed before the supervisor stopped: a SIGTERM while it
            # exits (the interpreter restores default handlers as it finalises) kills it.
            if not stopped and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise
    assert code == 0
    torn = [chunk for chunk in writes if not chunk.endswith(b"\n")]
    assert not torn, f"{len(torn)} of {len(writes)} writes are not whole lines: {writes[:6]}"
