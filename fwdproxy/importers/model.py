"""What an importer produces: the rules folder and policy.yaml to write, as plain values.

Pure: no file is opened here. A category names the files it is made of, copied from the
source (`CategoryDraft.copies`) or generated (`CategoryDraft.lines`); `render_policy_yaml`
writes the policies in the format `policy.policyfile` reads, with a comment naming where
each came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fwdproxy.errors import ConfigError
from fwdproxy.policy.policies import Action

if TYPE_CHECKING:
    from pathlib import PurePath


class SourceError(ConfigError):
    """The source cannot be read at all (missing file, not a configuration)."""


# A category becomes a folder name under deny/ and a name in policy.yaml: keep it to
# characters that are safe in both (squidGuard and e2guardian names already are).
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """`name` as a file and category name: other characters become ``-``."""
    cleaned = _SAFE_NAME.sub("-", name).strip("-.")
    return cleaned or "unnamed"


@dataclass(frozen=True, slots=True)
class Note:
    """Something of the source that the import did not carry over (or carried over with a
    difference the reader must know about).

    Attributes:
        where: ``file:line`` (or just the file) in the source.
        message: what it was and what the import did instead.
    """

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class CategoryDraft:
    """One category of the rules folder.

    Attributes:
        name: the category name (`safe_name` of the source's name).
        origin: ``file:line`` where the source defines it.
        copies: (file name under ``deny/``, source file) pairs copied byte for byte, e.g.
            ``("adult/domains", Path("/var/lib/squidguard/db/adult/domains"))``.
        lines: (file name under ``deny/``) → lines to write, for generated files.
    """

    name: str
    origin: str
    copies: list[tuple[str, PurePath]] = field(default_factory=list)
    lines: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.copies and not any(self.lines.values())


@dataclass(slots=True)
class Window:
    """A time window as policy.yaml writes it: ``days`` (``mon-fri``, ``*``) and ``hours``
    (``HH:MM-HH:MM``)."""

    days: str = "*"
    hours: str = "00:00-24:00"


@dataclass(slots=True)
class PolicyDraft:
    """One policy of policy.yaml; see `policy.policies` for what each field means.

    ``clients`` holds group names, addresses or CIDRs and ``user:NAME`` entries; empty
    means every client. ``users``, when not empty, must match too (policy.yaml's
    ``users``). ``origin`` is the ``file:line`` it was made from.
    """

    name: str
    origin: str
    clients: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    when: list[Window] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    default: Action = "allow"
    redirect: str | None = None


@dataclass(slots=True)
class Imported:
    """Everything an importer read, ready for `writer.write_folder`.

    Attributes:
        source: what was imported (shown in policy.yaml's header).
        categories: category name → its files; all are written under ``deny/`` and take
            effect only where a policy names them (in ``deny`` or ``allow``).
        groups: group name → members (addresses, CIDRs, ``user:NAME``) and origin.
        policies: in order; the first that matches a request applies.
        notes: what was not carried over, in source order, each once (a dict used as an
            ordered set: a source with thousands of bad lines must not cost n² to note).
    """

    source: str
    categories: dict[str, CategoryDraft] = field(default_factory=dict)
    groups: dict[str, tuple[list[str], str]] = field(default_factory=dict)
    policies: list[PolicyDraft] = field(default_factory=list)
    notes: dict[Note, None] = field(default_factory=dict)

    def note(self, where: str, message: str) -> None:
        """Add a note, once: a construct read for several policies is noted once."""
        self.notes[Note(where, message)] = None

    @property
    def usable(self) -> bool:
        """Did the import produce anything that decides a request?"""
        return bool(self.policies) or any(not c.empty for c in self.categories.values())


def _quoted(value: str) -> str:
    # JSON strings are YAML flow scalars: always quoted, so "on", "12:00" or "*" stay text.
    return json.dumps(value, ensure_ascii=False)


def _flow(values: list[str]) -> str:
    return "[" + ", ".join(_quoted(v) for v in values) + "]"


def render_policy_yaml(imported: Imported) -> str:
    """policy.yaml for `imported`, each group and policy preceded by its source line."""
    out = [f"# Imported by `fwdproxy import` from {imported.source}.",
           "# Ordered: the first policy whose clients and time window match a request applies.",
           "# Allow beats deny within a policy. See README.md of fwdproxy's rules folder."]
    if imported.groups:
        out.append("groups:")
        for name, (members, origin) in imported.groups.items():
            out.append(f"  # {origin}")
            out.append(f"  {_quoted(name)}: {_flow(members)}")
    out.append("policies:")
    if not imported.policies:
        out[-1] = "policies: []"
    for policy in imported.policies:
        out.append(f"  # {policy.origin}")
        out.append(f"  - name: {_quoted(policy.name)}")
        if policy.clients:
            out.append(f"    clients: {_flow(policy.clients)}")
        if policy.users:
            out.append(f"    users: {_flow(policy.users)}")
        if policy.when:
            windows = ", ".join(f"{{days: {_quoted(w.days)}, hours: {_quoted(w.hours)}}}"
                                for w in policy.when)
            out.append(f"    when: [{windows}]")
        if policy.deny:
            out.append(f"    deny: {_flow(policy.deny)}")
        if policy.allow:
            out.append(f"    allow: {_flow(policy.allow)}")
        out.append(f"    default: {policy.default}")
        if policy.redirect is not None:
            out.append(f"    redirect: {_quoted(policy.redirect)}")
    return "\n".join(out) + "\n"
