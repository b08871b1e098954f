"""What a run records about where it ran: tool versions, the machine, how busy it was with
other work, and the commit measured."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from .processes import ROOT, which

VERSION_COMMANDS = {
    "nginx": (["-v"], r"nginx/(\S+)"),
    "wrk": (["-v"], r"wrk (\S+)"),
    "curl": (["--version"], r"curl (\S+)"),
    "squid": (["-v"], r"Version (\S+)"),
    "tinyproxy": (["-v"], r"tinyproxy (\S+)"),
    "privoxy": (["--version"], r"version (\S+)"),
    "mitmdump": (["--version"], r"Mitmproxy: (\S+)"),
    "proxy": (["--version"], r"^(\d\S*)"),
    "pproxy": (["--version"], r"pproxy (\S+)"),
    "openssl": (["version"], r"OpenSSL (\S+)"),
}


def tool_version(name: str) -> str | None:
    binary = which(name)
    if binary is None:
        return None
    args, pattern = VERSION_COMMANDS[name]
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "?"


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def cpu_busy(seconds: float = 2.0) -> float:
    """Share (0..1) of all cores' time spent busy over `seconds`, from /proc/stat: run
    before anything is started here, it shows other work that would disturb the figures."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    total_before, idle_before = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total > 0 else 0.0


def checkout() -> dict[str, Any]:
    """The commit measured (read-only git commands), and whether the tree had changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or "?",
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}

