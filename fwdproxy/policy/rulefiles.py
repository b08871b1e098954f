"""Reading a rules folder from disk into a `RuleSet` (the file-reading half of the config
room: config.py calls it at start-up and on reload, nothing else reads rule files).

Layout (see rules/README.md):

    allow/*.txt                       always allowed (exceptions); beat every deny entry
    deny/*.txt                        blocked; the file name (without .txt) is the category
    deny/<category>/domains, urls, expressions    UT1/SquidGuard category folders
    policy.yaml                       optional ordered policies per group of clients
    blockpage.html                    optional block-page template

Strategy: files are read line by line (a million-line list is never held as one string)
and fed to the pure parser; a file that cannot be read or decoded is reported and the rest
still loads. e2guardian ``.Include<path>`` lines pull in another file under the same
category, relative to the including file, at most `MAX_INCLUDE_DEPTH` deep.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

from fwdproxy.policy.index import Action, RuleSet, RuleSetBuilder
from fwdproxy.policy.rules import Kind, parse_lines

# e2guardian lists include each other a level or two deep; more is a loop or a mistake.
MAX_INCLUDE_DEPTH = 8
# UT1/SquidGuard category folder files and what they hold; others ("usage") are prose.
CATEGORY_FILES: dict[str, Kind] = {"domains": "domains", "urls": "urls", "expressions": "expressions"}


def list_kind(name: str) -> Kind:
    """``*.regex``, ``*.regex.txt`` and Pi-hole's ``regex.list`` hold host regexes."""
    lowered = name.lower()
    if lowered.endswith((".regex", ".regex.txt")) or lowered == "regex.list":
        return "hostregex"
    return "list"


def category_of(name: str) -> str:
    """``ads.txt`` → ``ads``; ``malware.regex.txt`` → ``malware``; ``hosts`` → ``hosts``."""
    stem = name
    for suffix in (".txt", ".list", ".hosts", ".conf", ".regex"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or name




def _visible(entries: list[Path]) -> list[Path]:
    return sorted(e for e in entries
                  if not e.name.startswith(".") and not e.name.lower().startswith("readme"))


class _Loader:
    def __init__(self, root: Path, builder: RuleSetBuilder) -> None:
        self.root = root
        self.builder = builder

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def load_file(self, path: Path, category: str, action: Action, kind: Kind, depth: int = 0) -> None:
        shown = self.relative(path)
        self.builder.begin_file(shown, category, action)
        self.builder.includes = []
        try:
            # errors="replace": a stray Latin-1 byte spoils one line (reported by the
            # parser as an invalid entry), not the whole file.
            with path.open(encoding="utf-8", errors="replace", newline=None) as handle:
                parse_lines(handle, self.builder, kind)
        except OSError as exc:
            self.builder.file_error(shown, f"cannot read: {exc.strerror or exc}")
            return
        includes, self.builder.includes = self.builder.includes, []
        for target, line in includes:
            included = (path.parent / target).resolve() if not Path(target).is_absolute() else Path(target)
            if depth >= MAX_INCLUDE_DEPTH:
                self.builder.file_error(f"{shown}:{line}", f".Include nested deeper than {MAX_INCLUDE_DEPTH}")
            elif not included.is_file():
                self.builder.file_error(f"{shown}:{line}", f".Include<{target}>: no such file")
            else:
                self.load_file(included, category, action, list_kind(included.name), depth + 1)

    def load_action(self, action: Action) -> None:
        folder = self.root / action
        if not folder.is_dir():
            return
        for entry in _visible(list(folder.iterdir())):
            if entry.is_dir():
                for name, kind in CATEGORY_FILES.items():
                    if (entry / name).is_file():
                        self.load_file(entry / name, entry.name, action, kind)
            elif entry.is_file():
                self.load_file(entry, category_of(entry.name), action, list_kind(entry.name))


def load_rule_files(root: Path, builder: RuleSetBuilder | None = None) -> RuleSet:
    """Every allow/ and deny/ list under `root`, indexed. Never raises for bad content:
    problems are in the result's `errors` as ``path:line: message``.

    Args:
        root: the rules folder.
        builder: what collects the entries (`lint.LintBuilder` also keeps names).
    """
    loader = _Loader(root, builder or RuleSetBuilder())
    loader.load_action("allow")
    loader.load_action("deny")
    return loader.builder.build()


def release_freed_memory() -> None:
    """Hand memory freed by a replaced rule set back to the system.

    A reload builds the new set in a worker thread, whose allocations glibc serves from a
    per-thread arena that it does not shrink by itself: without this, resident memory
    stayed 30-45 MiB higher after each reload of a million-entry list. Measured with
    scripts/bench-rules. A no-op where the C library has no malloc_trim.
    """
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library (glibc)
    except (OSError, AttributeError):
        return
    trim(0)
