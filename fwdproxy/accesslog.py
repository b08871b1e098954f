"""The access log: one `Exchange` record per request or tunnel, and the one function that
writes it.

Format, one line each, fields separated by spaces, values without spaces except the last:
``TIME CLIENT METHOD URL STATUS up=BYTES down=BYTES DURATIONms VERDICT SOURCE "DETAIL"``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass
class Exchange:
    """What happened to one request or tunnel, filled in as it goes."""

    client: str
    started: float  # wall-clock time.time()
    method: str = "-"
    url: str = "-"
    status: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    verdict: str = "-"
    source: str = "-"
    detail: str = ""


def format_line(exchange: Exchange, now: float) -> str:
    """The log line for `exchange` (without the newline)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(exchange.started))
    millis = int((exchange.started % 1) * 1000)
    duration = max(0, round((now - exchange.started) * 1000))
    detail = exchange.detail.replace("\\", "\\\\").replace('"', '\\"')
    detail = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in detail)
    url = "".join(c if 32 < ord(c) < 127 else f"%{ord(c):02X}" for c in exchange.url)
    return (
        f"{stamp}.{millis:03d}Z {exchange.client} {exchange.method} {url} "
        f"{exchange.status or '-'} up={exchange.bytes_up} down={exchange.bytes_down} "
        f"{duration}ms {exchange.verdict} {exchange.source} \"{detail}\""
    )


class AccessLog:
    """Writes access-log lines to stderr, or appends them to a file.

    A file is written through a buffer flushed by `flush()`, which the server calls every
    second, so requests do not each pay for a write system call.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._file: TextIO = sys.stderr if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, exchange: Exchange) -> None:
        """Log one finished exchange."""
        # A full disk or a closed stderr must not take the proxy down.
        with contextlib.suppress(OSError, ValueError):
            self._file.write(format_line(exchange, time.time()) + "\n")

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self.path is not None:
            self._file.close()
