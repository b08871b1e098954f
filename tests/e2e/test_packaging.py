"""The wheel behaves like the checkout: built, installed into a fresh venv, and run from an
unrelated folder, it finds its bundled rules (package data) and so denies cloud metadata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Building and installing (with the dependencies from the package index) takes seconds;
# anything past this is a hang.
INSTALL_TIMEOUT = 600


def _run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv holding only the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT], work)
    assert built.returncode == 0, built.stderr
    [wheel] = (work / "dist").glob("fwdproxy-*.whl")
    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", venv], work)
    assert made.returncode == 0, made.stderr
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                wheel], work)
    assert pip.returncode == 0, pip.stderr
    return venv / "bin"


def test_installed_wheel_denies_cloud_metadata_from_another_folder(installed: Path, tmp_path: Path) -> None:
    result = _run([installed / "fwdproxy", "check", "http://metadata.google.internal/"], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # 1: something was denied
    assert result.stdout.startswith("DENY  http://metadata.google.internal/"), result.stdout
    assert "deny/cloud-metadata.txt:" in result.stdout


def test_installed_wheel_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """The rules it found are the wheel's own copy, inside the venv, not this checkout's."""
    code = "import fwdproxy.config as c; print(c.BUNDLED_RULES)"
    result = _run([installed / "python", "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    rules = Path(result.stdout.strip())
    assert rules.is_relative_to(installed.parent) and (rules / "deny" / "cloud-metadata.txt").is_file()
