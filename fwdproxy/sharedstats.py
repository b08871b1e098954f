"""The workers' figures, shared through one folder (with --workers).

Strategy: every worker writes its own figures to ``worker-<n>.json`` in a folder the
supervisor made, every `PUBLISH_INTERVAL` seconds, to a temporary name that is then
renamed over the old file, so a reader sees a whole file or the previous one, never half.
A status page or /metrics request lands on any one worker (SO_REUSEPORT picks it); that
worker reads the others' files and adds them to its own live figures
(`stats.merge_snapshots`). The others' charts and tables are thus at most one interval
old; no worker waits for another, and a worker that is gone or restarting still counts
with its last published figures.

The totals are exact, though: each worker also keeps them in ``worker-<n>.counters``, a
small file mapped into memory and rewritten after every exchange (a few hundred
nanoseconds, no system call), and readers take the totals from there. So a worker that is
killed loses none of its counts, and a restarted worker carries on from the exact totals of
the one it replaces (`Stats.carry_on`): the summed counters never go backwards, which
Prometheus would read as a reset.

The JSON files are a few KiB, written once a second per worker off the event loop (the
server calls `publish` and `others` in a thread).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fwdproxy.stats import COUNTERS, Stats, StatsSnapshot, snapshot_from_dict, snapshot_to_dict

# Seconds between two writes of a worker's figures.
PUBLISH_INTERVAL = 1.0
# The totals kept in the mapped file (stats.COUNTERS), as little-endian 64-bit integers.
_LAYOUT = struct.Struct(f"<{len(COUNTERS)}q")


@dataclass(frozen=True, slots=True)
class SharedStats:
    """Worker `index`'s view of the folder where all `workers` publish their figures."""

    folder: Path
    index: int
    workers: int
    started: float  # when the supervisor started: the uptime every worker reports
    _counters: mmap.mmap | None = field(default=None, init=False, repr=False, compare=False)

    def path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.json"

    def _counters_path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.counters"

    def open_counters(self) -> tuple[int, ...] | None:
        """Map this worker's counters file, creating it if need be. Returns the totals a
        predecessor left there (None when there was none)."""
        fd = os.open(self._counters_path(self.index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            previous = os.fstat(fd).st_size >= _LAYOUT.size
            if not previous:
                os.ftruncate(fd, _LAYOUT.size)
            mapped = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        object.__setattr__(self, "_counters", mapped)  # frozen: set once, here
        return _LAYOUT.unpack_from(mapped) if previous else None

    def store(self, stats: Stats) -> None:
        """Write this worker's totals to its mapped file (after every exchange)."""
        if self._counters is not None:
            _LAYOUT.pack_into(self._counters, 0, *stats.counters())

    def _read_counters(self, index: int) -> tuple[int, ...] | None:
        try:
            with self._counters_path(index).open("rb") as f:
                return _LAYOUT.unpack(f.read(_LAYOUT.size))
        except (OSError, struct.error):
            return None

    def publish(self, snapshot: StatsSnapshot) -> None:
        """Replace this worker's file with `snapshot`.

        Raises:
            OSError: the folder is gone or full (the caller reports it and goes on).
        """
        final = self.path(self.index)
        temporary = final.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot_to_dict(snapshot)), encoding="utf-8")
        os.replace(temporary, final)

    def read(self, index: int) -> StatsSnapshot | None:
        """Worker `index`'s last published figures; None when it has published none (or
        the file cannot be read or parsed: figures are best effort, never an error)."""
        try:
            return snapshot_from_dict(json.loads(self.path(index).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def others(self) -> list[StatsSnapshot]:
        """Every other worker's last published figures, with its totals as of now."""
        found: list[StatsSnapshot] = []
        for index in range(self.workers):
            if index == self.index:
                continue
            snapshot = self.read(index)
            if snapshot is None:
                continue
            totals = self._read_counters(index)
            if totals is not None:
                live: dict[str, Any] = dict(zip(COUNTERS, totals, strict=True))
                snapshot = replace(snapshot, **live)
            found.append(snapshot)
        return found
