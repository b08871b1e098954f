"""The targets measured: fwdproxy from this checkout, the peer proxies (tinyproxy, squid,
privoxy, mitmproxy, proxy.py, pproxy: found on PATH, configured, started) and the
reference forwarders of scripts/bench_ceilings.py (--ceilings)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_rules import LOOKED_UP_HOST as W5_HOST  # the list is consulted for it

from .machine import tool_version
from .origin import Origin
from .processes import (
    ROOT,
    START_TIMEOUT,
    Proc,
    Processes,
    clean_env,
    free_port,
    log,
    pinned,
    tree_rss_kib,
    wait_ports,
    which,
)


@dataclass
class Target:
    """One column of measurements: direct, fwdproxy, a peer, or a proxy of W5/the sweep."""

    name: str
    kind: str  # "direct", "fwdproxy", "peer" or "reference" (--ceilings)
    version: str = ""
    proc: Proc | None = None
    port: int | None = None
    status: str = "ok"  # or "not installed", "failed to start: ..."
    guard: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    config: str = ""
    profile: Path | None = None  # --profile: where its sampling profiler writes (profiler.py)

    @property
    def running(self) -> bool:
        return self.status == "ok"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "version": self.version, "status": self.status}
        if self.guard:
            data["guard"] = self.guard
        if self.config:
            data["config"] = self.config
        data.update(self.results)
        return data


def fwdproxy_config(folder: Path, rules: Path, name: str, tls_port: int, *, gateway: bool = False) -> Path:
    """The bench's fwdproxy configuration; tunnels to `tls_port` (the TLS origin) have
    their ClientHello checked, as tunnels to 443 have by default. `gateway`: the web
    gateway on (W8; loopback sites are allowed, as for every target here)."""
    path = folder / f"{name}.yaml"
    path.write_text(
        'listen: ["127.0.0.1:0"]\n'
        f"rules: {rules}\n"
        f"access_log: {folder / (name + '-access.log')}\n"
        "deny_destinations: []\n"
        'connect_ports: ["1-65535"]\n'
        "clients: [127.0.0.0/8]\n"
        "timeouts: {rules_poll: 3600, keepalive: 300}\n"
        f"hosts: {{{W5_HOST}: 127.0.0.1}}\n"
        f"connect_sni: {{ports: [{tls_port}]}}\n"
        + ("gateway: {enabled: true}\n" if gateway else ""))
    return path


def start_fwdproxy(procs: Processes, work: Path, name: str, rules: Path, cpu: str | None, *,
                   tls_port: int, workers: int | None = None, profile: Path | None = None,
                   gateway: bool = False) -> Target:
    """fwdproxy from this checkout; the Target says "failed ..." with its stderr if it did not start.
    With `profile`, under the sampling profiler (profiler.py), which writes its counts there;
    with `gateway`, its web gateway on (/browse/, W8)."""
    config = fwdproxy_config(work, rules, name, tls_port, gateway=gateway)
    command = [sys.executable, "-m", "fwdproxy", "--config", str(config)]
    if profile is not None:
        command[1:3] = [str(ROOT / "scripts" / "benchlib" / "profiler.py"), "--out", str(profile), "--"]
    if workers is not None:
        command += ["--workers", str(workers)]
    from fwdproxy import __version__

    target = Target(name, "fwdproxy", version=__version__, config=config.read_text(), profile=profile)
    proc = procs.start(name, pinned(cpu, command), work / f"{name}-stderr.log", cwd=ROOT, watch_stderr=True)
    target.proc = proc
    if not proc.wait_listening(START_TIMEOUT) or proc.listen_match is None:
        code = proc.popen.poll()
        target.status = f"failed to start (exit status {code}): {proc.tail(8)}"
        procs.stop(proc)
        return target
    target.port = int(proc.listen_match.group(1))
    target.results["startup_s"] = round(proc.ready_after or 0.0, 3)
    time.sleep(0.3)  # settle before the first memory figure
    target.results["rss_start_kib"] = tree_rss_kib(proc.pid)
    return target


SQUID_CONF = """\
http_port 127.0.0.1:{port}
visible_hostname fwdproxy-bench
pid_filename {dir}/squid.pid
cache_log {dir}/cache.log
access_log stdio:{dir}/access.log
cache_store_log none
cache deny all
cache_mem 0 MB
coredump_dir {dir}
pinger_enable off
max_filedescriptors 16384
shutdown_lifetime 1 seconds
acl bench_clients src 127.0.0.0/8
acl bench_connect_ports port {ports}
acl CONNECT method CONNECT
http_access deny CONNECT !bench_connect_ports
http_access allow bench_clients
http_access deny all
"""

TINYPROXY_CONF = """\
Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 4096
Allow 127.0.0.1
{connect_ports}
LogFile "{dir}/tinyproxy.log"
LogLevel Connect
PidFile "{dir}/tinyproxy.pid"
"""

PRIVOXY_CONF = """\
confdir {dir}
logdir {dir}
logfile privoxy.log
debug 1
actionsfile bench.action
listen-address 127.0.0.1:{port}
enable-remote-toggle 0
enable-edit-actions 0
keep-alive-timeout 300
socket-timeout 300
max-client-connections 4096
"""
PRIVOXY_ACTIONS = "{ +limit-connect{1-} }\n/\n"  # privoxy's own default: CONNECT to 443 only

PEERS = ("tinyproxy", "squid", "privoxy", "mitmproxy", "proxy.py", "pproxy")
PYTHON_PEERS = ("mitmproxy", "proxy.py", "pproxy")
PEER_BINARIES = {"mitmproxy": "mitmdump", "proxy.py": "proxy"}  # else the peer's own name


def start_peer(procs: Processes, work: Path, name: str, origin: Origin, cpu: str | None) -> Target:
    """A peer proxy in the foreground, with a minimal configuration; "not installed" if absent."""
    binary = which(PEER_BINARIES.get(name, name))
    if binary is None:
        return Target(name, "peer", status="not installed")
    target = Target(name, "peer", version=tool_version(PEER_BINARIES.get(name, name)) or "?")
    folder = work / name
    folder.mkdir()
    folder.chmod(0o777)  # squid and tinyproxy may drop to another user, and log here
    port = free_port()
    ports = [origin.port_a, origin.port_b, origin.port_tls]
    conf = folder / f"{name}.conf"
    if name == "squid":
        text = SQUID_CONF.format(port=port, dir=folder, ports=" ".join(map(str, ports)))
        command = [binary, "-N", "-f", str(conf)]
    elif name == "tinyproxy":
        text = TINYPROXY_CONF.format(port=port, dir=folder,
                                     connect_ports="\n".join(f"ConnectPort {p}" for p in ports))
        command = [binary, "-d", "-c", str(conf)]
    elif name == "privoxy":
        text = PRIVOXY_CONF.format(port=port, dir=folder)
        (folder / "bench.action").write_text(PRIVOXY_ACTIONS)
        command = [binary, "--no-daemon", str(conf)]
    else:  # the Python peers take their settings on the command line
        command = {
            "mitmproxy": [binary, "--listen-host", "127.0.0.1", "--listen-port", str(port), "-q",
                          "--ignore-hosts", ".*", "--set", "stream_large_bodies=1m",
                          "--set", f"confdir={folder}"],
            "proxy.py": [binary, "--hostname", "127.0.0.1", "--port", str(port),
                         "--log-level", "ERROR"],
            "pproxy": [binary, "-l", f"http://127.0.0.1:{port}"],
        }[name]
        text = " ".join(command[1:])
    conf.write_text(text)
    target.config = text
    proc = procs.start(name, pinned(cpu, command), folder / "stderr.log")
    if _started(procs, target, proc, port):
        time.sleep(0.3)
        target.results["rss_start_kib"] = tree_rss_kib(proc.pid)
    return target


def _started(procs: Processes, target: Target, proc: Proc, port: int) -> bool:
    """Wait for `proc` to accept on `port`: the target gets its port, or says why not."""
    target.proc = proc
    if not wait_ports(proc, [port]):
        target.status = f"failed to start (exit status {proc.popen.poll()}): {proc.tail(8)}"
        procs.stop(proc)
        return False
    target.port = port
    return True


CEILINGS = {"ref: trio relay": "relay", "ref: trio + h11": "h11"}


def start_reference(procs: Processes, work: Path, name: str, origin: Origin, cpu: str | None) -> Target:
    """One of scripts/bench_ceilings.py's forwarders, for W1 and W2 (see --ceilings)."""
    target = Target(name, "reference", version="scripts/bench_ceilings.py")
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts" / "bench_ceilings.py"), CEILINGS[name],
               str(origin.port_a), str(port)]
    _started(procs, target, procs.start(name, pinned(cpu, command), work / f"{CEILINGS[name]}-stderr.log"),
             port)
    return target


def h11_cost(origin: Origin, cpu: str | None) -> float | None:
    """scripts/bench_ceilings.py h11cost on the proxies' core: µs of CPU that h11 alone
    spends on one W1 exchange; None if it failed."""
    command = [sys.executable, str(ROOT / "scripts" / "bench_ceilings.py"), "h11cost", str(origin.port_a)]
    try:
        done = subprocess.run(pinned(cpu, command), capture_output=True, text=True, timeout=120,
                              env=clean_env())
        return float(json.loads(done.stdout)["us_per_exchange"])
    except (subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        log(f"h11 alone: failed: {exc}")
        return None

