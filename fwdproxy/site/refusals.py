"""Pure: each client's (or user's) recent refusals, for the /blocked page.

Strategy: browsers never show the body of a refused CONNECT, and a tunnel refused by its
ClientHello has no page at all; so every refusal by policy is kept here, the last
`PER_PERSON` per client address (per user when proxy authentication named one), for at
most `PEOPLE` of them (the least recently refused forgotten first). The /blocked page
shows the asker their own, and nobody else's. Each worker process keeps its own.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fwdproxy.accesslog import Exchange

__all__ = ["PEOPLE", "PER_PERSON", "RecentRefusals", "Refusal"]

PER_PERSON = 50  # a page's worth: enough for the tunnels one blocked page can open
PEOPLE = 4096  # about 1 MiB at worst; an office of thousands fits


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused request or tunnel, as the /blocked page shows it."""

    at: float  # wall-clock time.time()
    method: str
    target: str  # the URL, or host:port for a CONNECT
    server_name: str | None  # a tunnel's ClientHello name, when one was read
    category: str | None
    source: str  # the rule's file:line, or the setting
    reason: str


Key = tuple[str, str]  # ("user", name) or ("client", address text)


def key_of(client: str, user: str | None) -> Key:
    return ("user", user) if user else ("client", client)


class RecentRefusals:
    """The recent refusals of each client, bounded in count per client and in clients."""

    def __init__(self, per_person: int = PER_PERSON, people: int = PEOPLE) -> None:
        self.per_person = per_person
        self.people = people
        self._kept: OrderedDict[Key, deque[Refusal]] = OrderedDict()

    def note(self, exchange: Exchange) -> None:
        """Keep `exchange` if the policy refused it."""
        if exchange.verdict != "deny":
            return
        key = key_of(exchange.client, exchange.user)
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = deque(maxlen=self.per_person)
            while len(self._kept) > self.people:
                self._kept.popitem(last=False)
        else:
            self._kept.move_to_end(key)
        kept.append(Refusal(exchange.started, exchange.method, exchange.url, exchange.sni,
                            exchange.category, exchange.source, exchange.detail))

    def of(self, client: str, user: str | None) -> list[Refusal]:
        """The refusals of `client` (of `user`, when authenticated), newest first."""
        kept = self._kept.get(key_of(client, user))
        return list(reversed(kept)) if kept is not None else []
