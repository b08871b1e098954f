"""`fwdproxy check --lint`: duplicates and entries shadowed by broader ones.

Strategy: the proxy's own index keeps no host names (that is what keeps it small), so
linting loads the lists once more through `LintBuilder`, which also remembers each domain
entry's name and source, and compares them. It costs memory in proportion to the lists,
which is fine for a command run by hand. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fwdproxy.policy.index import Action, RuleSetBuilder
from fwdproxy.policy.rules import DOMAIN_AND_SUBDOMAINS


@dataclass
class LintFindings:
    """Warnings about entries that do nothing (the errors are the rule set's own)."""

    duplicates: list[str] = field(default_factory=list)
    shadowed: list[str] = field(default_factory=list)


class LintBuilder(RuleSetBuilder):
    """A `RuleSetBuilder` that also remembers every domain entry by name."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[Action, str, int, str]] = []  # action, host, mode, source

    def domain(self, host: str, mode: int, line: int, *, allow: bool = False) -> None:
        super().domain(host, mode, line, allow=allow)
        listed = self._file
        action: Action = "allow" if allow or (listed is not None and listed.action == "allow") else "deny"
        path = listed.path if listed is not None else "?"
        self.entries.append((action, host, mode, f"{path}:{line}"))

    def domains(self, hosts: list[str], lines: list[int]) -> None:
        for host, line in zip(hosts, lines, strict=True):
            self.domain(host, DOMAIN_AND_SUBDOMAINS, line)

    def findings(self) -> LintFindings:
        """Same entry listed twice (in the same action), or covered by a broader entry."""
        found = LintFindings()
        first: dict[tuple[Action, str, int], str] = {}
        wide: dict[tuple[Action, str], str] = {}
        for action, host, mode, source in self.entries:
            key = (action, host, mode)
            if key in first:
                shown = host if mode == DOMAIN_AND_SUBDOMAINS else f"*.{host}"
                found.duplicates.append(f"{source}: {shown} is already listed at {first[key]}")
                continue
            first[key] = source
            if mode == DOMAIN_AND_SUBDOMAINS:
                wide.setdefault((action, host), source)
        for action, host, mode, source in self.entries:
            parent = host if mode != DOMAIN_AND_SUBDOMAINS else _parent(host)
            while parent:
                covering = wide.get((action, parent))
                if covering is not None and covering != source:
                    shown = host if mode == DOMAIN_AND_SUBDOMAINS else f"*.{host}"
                    found.shadowed.append(
                        f"{source}: {shown} is already covered by {parent} ({covering})")
                    break
                parent = _parent(parent)
        return found


def _parent(host: str) -> str:
    dot = host.find(".")
    return host[dot + 1:] if dot != -1 else ""
