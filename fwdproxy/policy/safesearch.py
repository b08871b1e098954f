"""Pure: the safe-search mapping (``safesearch.txt``): search and video sites → the
addresses their operators publish for filtered results.

Strategy: one line per site, ``NAME SAFE-NAME``, as DNS filters apply the same mapping
(Google's forcesafesearch.google.com, Bing's strict.bing.com, YouTube's
restrict.youtube.com, DuckDuckGo's safe.duckduckgo.com). A NAME ending in ``.*`` stands
for that name under any public suffix (``www.google.*``: www.google.de, www.google.co.uk),
which the edge checks against the Public Suffix List. The proxy connects to SAFE-NAME's
addresses instead of NAME's and changes nothing else: the Host header and the TLS server
name stay NAME, so certificates still verify (the operators serve NAME's certificate
there; that is what makes the mapping work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fwdproxy.errors import BadRequest
from fwdproxy.policy.names import canonical_host

__all__ = ["SafeSearch", "parse_safe_search"]


@dataclass(frozen=True, slots=True)
class SafeSearch:
    """The mapping; `errors` are the lines that could not be read (``file:line: ...``)."""

    names: dict[str, str] = field(default_factory=dict)  # exact name → safe name
    patterns: tuple[tuple[str, str], ...] = ()  # ("www.google.", safe name) for "www.google.*"
    errors: tuple[str, ...] = ()

    def target(self, host: str, is_public_suffix: Callable[[str], bool]) -> str | None:
        """The safe name to connect to for canonical `host`, or None when it has none."""
        found = self.names.get(host)
        if found is not None:
            return found
        for prefix, safe in self.patterns:
            if host.startswith(prefix) and is_public_suffix(host[len(prefix):]):
                return safe
        return None

    def __bool__(self) -> bool:
        return bool(self.names or self.patterns)


def _name(text: str) -> str:
    host, literal = canonical_host(text)
    if literal is not None:
        raise BadRequest(f"{text!r} is an address, not a name")
    return host


def parse_safe_search(lines: Iterable[str], path: str) -> SafeSearch:
    """Read ``NAME SAFE-NAME`` lines (``#`` starts a comment); bad lines are reported in
    `errors` with their ``path:line`` and skipped."""
    names: dict[str, str] = {}
    patterns: list[tuple[str, str]] = []
    errors: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) != 2:
            errors.append(f"{path}:{number}: expected NAME SAFE-NAME, got {line!r}")
            continue
        name, safe = words
        try:
            safe = _name(safe)
            if name.endswith(".*"):
                patterns.append((_name(name[:-2]) + ".", safe))
            else:
                names[_name(name)] = safe
        except BadRequest as exc:
            errors.append(f"{path}:{number}: {exc.detail}")
    return SafeSearch(names, tuple(patterns), tuple(errors))
