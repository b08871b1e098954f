"""Entry point of scripts/bench: the benchmark itself is the package scripts/benchlib/
(what it measures and how: benchlib/cli.py's DESCRIPTION, printed by scripts/bench --help)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchlib and bench_rules live here
from benchlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
