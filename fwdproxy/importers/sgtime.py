"""Time rules as sets of minutes of the week, and back to the day-and-hours windows of
policy.yaml (so squidGuard's ``within``, ``outside`` and ``else``, and e2guardian's
nested ``#time`` limits, become plain set operations); squidGuard's ``weekly`` rules read."""

from __future__ import annotations

import re

from fwdproxy.importers.model import Window
from fwdproxy.policy.policies import DAY_NAMES

Minutes = frozenset[int]  # minutes since Monday 00:00, 0 .. 10079
_DAY = 24 * 60
WEEK: Minutes = frozenset(range(7 * _DAY))

# squidGuard's letters (s = sun ... a = sat) and names, to Monday = 0.
_LETTERS = {"m": 0, "t": 1, "w": 2, "h": 3, "f": 4, "a": 5, "s": 6}
_NAMES = {name: index for index, name in enumerate(
    ("mondays", "tuesdays", "wednesdays", "thursdays", "fridays", "saturdays", "sundays"))}
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


def _days(spec: str) -> set[int] | None:
    if spec == "*":
        return set(range(7))
    if spec.lower() in _NAMES:
        return {_NAMES[spec.lower()]}
    if spec and all(c in _LETTERS for c in spec):
        return {_LETTERS[c] for c in spec}
    return None


def week_minutes(days: set[int], start: int, end: int) -> Minutes:
    """The minutes from `start` up to `end` (minutes since midnight) of each of `days`
    (0 = Monday); an `end` not after `start` gives nothing (no crossing midnight)."""
    return frozenset(minute for day in days
                     for minute in range(day * _DAY + start, day * _DAY + max(start, end)))


def parse_weekly(words: list[str]) -> Minutes | str:
    """``weekly DAYS [HH:MM-HH:MM ...]`` (the words after ``weekly``) → its minutes, or
    why it cannot be read."""
    if not words:
        return "weekly without days"
    days = _days(words[0])
    if days is None:
        return f"{words[0]!r} is not days (letters smtwhfa, a day name such as fridays, or *)"
    rest = " ".join(words[1:])
    spans: list[tuple[int, int]] = []
    for match in _RANGE.finditer(rest):
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            return f"{match.group(0)!r} is not a time range"
        spans.append((h1 * 60 + m1, h2 * 60 + m2))
    if _RANGE.sub("", rest).strip():
        return f"{rest!r} is not time ranges HH:MM-HH:MM"
    # squidGuard's ranges do not cross midnight
    return frozenset().union(*(week_minutes(days, start, end) for start, end in spans or [(0, _DAY)]))


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def windows_of(minutes: Minutes) -> list[Window]:
    """policy.yaml windows covering exactly `minutes`; [] (always) for the whole week.
    Days with the same hours share one window."""
    if minutes >= WEEK:
        return []
    spans: dict[tuple[int, int], list[int]] = {}
    for day in range(7):
        start = None
        for minute in range(_DAY + 1):
            inside = minute < _DAY and day * _DAY + minute in minutes
            if inside and start is None:
                start = minute
            elif not inside and start is not None:
                spans.setdefault((start, minute), []).append(day)
                start = None
    return [Window(",".join(DAY_NAMES[d] for d in days) if len(days) < 7 else "*",
                   f"{_clock(start)}-{_clock(end)}")
            for (start, end), days in sorted(spans.items(), key=lambda item: (item[1], item[0]))]
