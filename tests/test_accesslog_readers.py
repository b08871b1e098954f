"""Log lines with a tunnel's server name (connect_sni), as real log readers take them:
calamaris reads the squid format, GoAccess the combined one (Debian packages; .ci/run
installs both). Neither may count such a line as invalid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fwdproxy.accesslog import Exchange, format_record

START = 1764064800.0  # 2025-11-25 10:00:00 UTC


def exchanges() -> list[Exchange]:
    common = {"method": "CONNECT", "status": 200, "bytes_up": 600, "bytes_down": 4096,
              "upstream_address": "192.0.2.20", "user_agent": "curl/8.5"}
    return [
        Exchange(client="10.0.0.5", started=START, url="192.0.2.20:443", sni="www.example.org",
                 verdict="allow", **common),  # type: ignore[arg-type]
        Exchange(client="10.0.0.5", started=START + 1, url="192.0.2.20:443", sni="denied.example",
                 verdict="deny", source="deny/bad.txt:3", **common),  # type: ignore[arg-type]
        Exchange(client="10.0.0.6", started=START + 2, url="www.example.org:443", verdict="allow",
                 **common),  # type: ignore[arg-type]
        Exchange(client="10.0.0.6", started=START + 3, method="GET", url="http://a.example/",
                 status=200, bytes_down=900, verdict="allow", upstream_address="192.0.2.9"),
    ]


def write(tmp_path: Path, fmt: str) -> Path:
    path = tmp_path / f"access.{fmt}.log"
    path.write_text("".join(format_record(e, e.started + 0.5, fmt) + "\n" for e in exchanges()))
    return path


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package '{name}'; .ci/run installs it)")
    return path


def test_calamaris_reads_every_squid_line(tmp_path: Path) -> None:
    log = write(tmp_path, "squid").read_text()
    assert "CONNECT denied.example:443" in log and "TCP_DENIED/200" in log
    result = subprocess.run([tool("calamaris"), "-a", "-n", "-f", "squid"], input=log,
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
    assert result.returncode == 0, result.stderr
    assert "invalid lines:" in result.stdout
    invalid = next(line for line in result.stdout.splitlines() if line.startswith("invalid lines:"))
    assert invalid.split()[-1] == "0", invalid


def test_goaccess_reads_every_combined_line(tmp_path: Path) -> None:
    log = write(tmp_path, "combined")
    assert '"sni=denied.example"' in log.read_text()
    out = tmp_path / "report.json"
    result = subprocess.run([tool("goaccess"), str(log), "--log-format=COMBINED", "-o", str(out)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
    assert result.returncode == 0, result.stderr
    general = json.loads(out.read_text())["general"]
    assert (general["total_requests"], general["valid_requests"], general["failed_requests"]) == (4, 4, 0)
