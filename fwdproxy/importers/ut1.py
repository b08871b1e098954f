"""`fwdproxy import ut1`: categories of the UT1 lists (Université Toulouse Capitole).

UT1 publishes ``blacklists.tar.gz`` (https://dsi.ut-capitole.fr/blacklists/): it holds
``blacklists/<category>/{domains,urls,expressions,usage}``, ``blacklists/global_usage``
(per category its ``NAME``, ``DEFAULT_TYPE: black`` or ``white``, ``DESC EN``...) and a
README; some categories are symbolic links to others, old names kept for new ones
(``porn -> adult``, ``ads -> publicite``). A one-category archive (``adult.tar.gz``
holding ``adult/domains``...) reads the same way, and so does a tar of the GitHub mirror,
whose largest lists are split (``domains.0``, ``domains.1``...: they are joined again).

Strategy and invariants:

- tarfile opens the archive whatever its name says (``r:*``: gzip, bzip2, xz or plain
  tar) and extracts nothing itself: only the bytes of regular-file members that are
  chosen lists are copied, to ``work/<category>/<kind>``, names made here. So no member
  name (``..``, absolute) and no link can write outside ``work``; such members are noted.
- Links, symbolic or hard, are followed by name inside the archive, `MAX_LINK_HOPS` at
  most; one that leaves the lists' folder or points at nothing is noted and ignored. A
  linked category is imported under the name it links to (asking for ``porn`` gives
  ``adult``), once however many of its names are asked for.
- Black or white: ``DEFAULT_TYPE`` in global_usage, the category's primary use; else the
  first ``black``/``white`` of its ``usage`` file (which lists every use it may have:
  ``black white`` for webmail); else black, noted. The one policy, for everyone, denies
  the black categories chosen and allows the white ones (allow beats deny), default allow.
- Names asked for that the archive lacks are noted and skipped when at least one asked
  for is known (the import still produces what was meant for those); when none is, a
  `SourceError` names the archive's categories.
- Lists are copied byte for byte (millions of lines are never held in memory); fwdproxy
  reads a category folder as squidGuard does (see rules/README.md).
"""

from __future__ import annotations

import lzma
import posixpath
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fwdproxy.importers.model import CategoryDraft, Imported, Note, PolicyDraft, SourceError, safe_name

LIST_KINDS = ("domains", "urls", "expressions")
# UT1's own links are one hop (porn -> adult); more is a loop or a hostile archive.
MAX_LINK_HOPS = 8
# The GitHub mirror splits files over 50 MB with `split -b 50M -d` (domains.0, domains.1).
_PART = re.compile(r"(domains|urls|expressions)\.(\d+)")
_FIELD = re.compile(r"(NAME|DEFAULT_TYPE|DESC EN)\s*:\s*(.*)")
COLOURS = ("black", "white")
# A usage file is a few words; global_usage about 30 KB. Read no more of either.
_SMALL_FILE = 1 << 20
_CHUNK = 1 << 20  # copy buffer


@dataclass(slots=True)
class _Category:
    path: str  # the member path of its folder, as shown in notes
    files: dict[str, tuple[str, tarfile.TarInfo]] = field(default_factory=dict)  # name → (path, member)
    link: str | None = None  # the category this name is a link to


@dataclass(slots=True)
class _Catalog:
    tar: tarfile.TarFile
    where: str  # the archive's file name, for notes
    members: dict[str, tarfile.TarInfo]  # cleaned path → member
    categories: dict[str, _Category]
    described: dict[str, tuple[str | None, str]]  # global_usage: name → (DEFAULT_TYPE, DESC EN)
    notes: list[Note]


def _clean(name: str) -> str | None:
    """A member name without ``./`` and empty parts; None when it is absolute or climbs."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return None
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return None if ".." in parts else "/".join(parts)


def _under(root: str, path: str) -> str | None:
    if not root:
        return path
    return path[len(root) + 1:] if path.startswith(root + "/") else None


def _root(members: dict[str, tarfile.TarInfo]) -> str:
    """The lists' folder: where global_usage is, else the parent of the category folders."""
    usage = [p for p, m in members.items() if posixpath.basename(p) == "global_usage" and m.isfile()]
    folders = usage or [posixpath.dirname(p) for p in members
                        if posixpath.basename(p) in (*LIST_KINDS, "usage")
                        or _PART.fullmatch(posixpath.basename(p))]
    parents = [posixpath.dirname(p) for p in folders]
    return min(parents, key=lambda p: (p.count("/") if p else -1, p)) if parents else ""


def _link_target(path: str, member: tarfile.TarInfo) -> str | None:
    """Where a link member points, as a cleaned archive path (None: outside the archive)."""
    if member.islnk():  # hard links name their target from the archive's top
        return _clean(member.linkname)
    if member.linkname.startswith("/"):
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
    return None if target == ".." or target.startswith("../") else _clean(target)


def _index(tar: tarfile.TarFile, where: str) -> _Catalog:
    catalog = _Catalog(tar, where, {}, {}, {}, [])
    for member in tar.getmembers():
        path = _clean(member.name)
        if path is None:
            catalog.notes.append(Note(f"{where}:{member.name}",
                                      "named outside the archive (absolute or with ..): ignored"))
        elif path:
            catalog.members[path] = member
    root = _root(catalog.members)
    links: dict[str, tuple[str, str | None]] = {}
    for path, member in catalog.members.items():
        relative = _under(root, path)
        parts = relative.split("/") if relative else []
        if len(parts) == 1 and member.isdir():
            catalog.categories.setdefault(parts[0], _Category(path))
        elif len(parts) == 1 and (member.issym() or member.islnk()):
            target = _link_target(path, member)
            links[parts[0]] = (path, _under(root, target) if target is not None else None)
        elif len(parts) == 2:
            folder = catalog.categories.setdefault(parts[0], _Category(posixpath.dirname(path)))
            folder.files[parts[1]] = (path, member)
        elif len(parts) == 1 and parts[0] == "global_usage" and member.isfile():
            catalog.described = _global_usage(_small(tar, member))
    # A folder is a category when it holds a list or a usage file (not docs/, say).
    catalog.categories = {name: c for name, c in catalog.categories.items()
                          if any(f in (*LIST_KINDS, "usage") or _PART.fullmatch(f) for f in c.files)}
    # Links may chain (a -> porn -> adult): register them all, then keep those that end
    # at a category folder.
    for name, (path, target) in links.items():
        if name not in catalog.categories and target and "/" not in target:
            catalog.categories[name] = _Category(path, link=target)
    for name, (path, _) in links.items():
        category = catalog.categories.get(name)
        if category is not None and category.link is None:
            continue  # a folder of that name as well: the folder wins
        if category is not None and _resolve(catalog, name) is not None:
            continue
        catalog.categories.pop(name, None)
        catalog.notes.append(Note(f"{where}:{path}", f"a link to {catalog.members[path].linkname!r}, "
                                  "which is no category folder of the archive: ignored"))
    return catalog


def _small(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    handle = tar.extractfile(member)
    return handle.read(_SMALL_FILE).decode("utf-8", "replace") if handle is not None else ""


def _global_usage(text: str) -> dict[str, tuple[str | None, str]]:
    """global_usage's blocks: ``NAME: adult`` opens one, its ``DEFAULT_TYPE`` and
    ``DESC EN`` follow (``#`` lines are the file's own header)."""
    found: dict[str, tuple[str | None, str]] = {}
    name: str | None = None
    for line in text.splitlines():
        match = _FIELD.match(line.strip())
        if match is None:
            continue
        key, value = match.group(1), match.group(2).strip()
        if key == "NAME":
            name = value
            found.setdefault(name, (None, ""))
        elif name is not None:
            colour, description = found[name]
            if key == "DEFAULT_TYPE":
                found[name] = (value.lower() if value.lower() in COLOURS else None, description)
            else:
                found[name] = (colour, value)
    return found


@contextmanager
def _catalog(archive: Path) -> Iterator[_Catalog]:
    """The archive's catalogue, with every way of failing to read it as a SourceError."""
    if not archive.is_file():
        raise SourceError(f"{archive}: {'not a file' if archive.exists() else 'no such file'}")
    try:
        with tarfile.open(archive, "r:*") as tar:
            catalog = _index(tar, archive.name)
            if not catalog.categories:
                raise SourceError(f"{archive}: no UT1 category folder (NAME/domains, NAME/urls) in it")
            yield catalog
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        # "r:*" reports one line per method it tried: say it once.
        why = "not a tar archive (plain, gzip, bzip2 or xz)" if "\n" in str(exc) else str(exc)
        raise SourceError(f"{archive}: cannot read the archive: {why}") from None
    except OSError as exc:  # a gzip/bzip2 stream that is broken, or work/ not writable
        raise SourceError(f"{archive}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}") from None


def _resolve(catalog: _Catalog, name: str) -> str | None:
    """The category folder `name` stands for, following links; None for a loop."""
    for _ in range(MAX_LINK_HOPS):
        category = catalog.categories.get(name)
        if category is None:
            return None
        if category.link is None:
            return name
        name = category.link
    return None


def _regular(catalog: _Catalog, path: str, member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """The regular-file member a file member stands for, following links inside the archive."""
    for _ in range(MAX_LINK_HOPS):
        if member.isfile():
            return member
        if not (member.issym() or member.islnk()):
            return None  # a folder, device or fifo: nothing to copy
        target = _link_target(path, member)
        if target is None or target not in catalog.members:
            return None
        path, member = target, catalog.members[target]
    return None


def _colour(catalog: _Catalog, name: str) -> tuple[str, str | None]:
    """(black or white, why it was guessed or None)."""
    colour = catalog.described.get(name, (None, ""))[0]
    if colour is not None:
        return colour, None
    usage = catalog.categories[name].files.get("usage")
    member = _regular(catalog, *usage) if usage is not None else None
    if member is not None:
        words = [w.lower() for line in _small(catalog.tar, member).splitlines()
                 if not line.lstrip().startswith("#") for w in line.split()]
        colour = next((w for w in words if w in COLOURS), None)
        if colour is not None:
            return colour, None
    return "black", "no DEFAULT_TYPE in global_usage and no black/white in its usage file: taken as black"


def describe(archive: Path) -> list[str]:
    """One line per category of `archive`: its name, black or white, and UT1's English
    description (or the category it is another name for).

    Raises:
        SourceError: the archive is missing or cannot be read.
    """
    with _catalog(archive) as catalog:
        lines = [f"{archive.name}: {len(catalog.categories)} categories. Black ones are denied "
                 "when chosen, white ones allowed (beating the black ones):"]
        for name in sorted(catalog.categories):
            target = _resolve(catalog, name)
            if target is None:
                continue
            colour, _ = _colour(catalog, target)
            text = catalog.described.get(target, (None, ""))[1]
            if target != name:
                text = f"another name for {target}" + (f": {text}" if text else "")
            lines.append(f"  {name:<26} {colour:<5}  {text}".rstrip())
    return lines


def _choose(catalog: _Catalog, wanted: list[str], imported: Imported) -> list[str]:
    """The category folders asked for, in order and once each. Raises SourceError."""
    chosen: list[str] = []
    unknown: list[str] = []
    for asked in wanted:
        name = asked if asked in catalog.categories else asked.lower()
        target = _resolve(catalog, name)
        if target is None:
            unknown.append(asked)
            continue
        if target != name:
            imported.note(f"{catalog.where}:{catalog.categories[name].path}",
                          f"{name} is a link to {target}: imported as {target}")
        if target not in chosen:
            chosen.append(target)
    known = ", ".join(sorted(catalog.categories))
    if not chosen:
        asked_for = ", ".join(unknown) or "(none given)"
        raise SourceError(f"{catalog.where}: no category {asked_for} in it; it has: {known}")
    if unknown:
        imported.note(catalog.where, f"no category {', '.join(unknown)} in the archive: skipped "
                                     f"(it has: {known})")
    return chosen


_Jobs = list[tuple[tarfile.TarInfo, Path]]  # (member, where its bytes go)
_Joins = list[tuple[Path, list[Path]]]  # (list, the split pieces it is joined from)


def _pieces(category: _Category, kind: str) -> list[str]:
    """The file names a list is made of: itself, or the mirror's pieces in their order."""
    if kind in category.files:
        return [kind]
    split = [(int(m.group(2)), name) for name in category.files
             if (m := _PART.fullmatch(name)) is not None and m.group(1) == kind]
    return [name for _, name in sorted(split)]


def _plan(catalog: _Catalog, name: str, draft: CategoryDraft, work: Path,
          imported: Imported) -> tuple[_Jobs, _Joins]:
    """What to copy for one category, adding the copies to `draft`."""
    jobs: _Jobs = []
    joins: _Joins = []
    category = catalog.categories[name]
    used = {"usage"}
    for kind in LIST_KINDS:
        pieces = _pieces(category, kind)
        used.update(pieces)
        destination = work / draft.name / kind
        found: list[Path] = []
        for piece in pieces:
            path, member = category.files[piece]
            regular = _regular(catalog, path, member)
            if regular is None:
                imported.note(f"{catalog.where}:{path}", "a link to nothing inside the archive, "
                                                         "or no file: not imported")
                continue
            found.append(destination if len(pieces) == 1 else destination.with_name(piece))
            jobs.append((regular, found[-1]))
        if found:
            draft.copies.append((f"{draft.name}/{kind}", destination))
            if len(pieces) > 1:
                joins.append((destination, found))
    for file_name in sorted(set(category.files) - used):
        imported.note(f"{catalog.where}:{category.files[file_name][0]}",
                      "not a list fwdproxy loads (domains, urls, expressions): not imported")
    return jobs, joins


def _extract(tar: tarfile.TarFile, jobs: _Jobs, joins: _Joins) -> None:
    # In archive order: a .tar.gz is read forward once, never rewound per member.
    for member, target in sorted(jobs, key=lambda job: job[0].offset):
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        with target.open("wb") as sink:
            if source is not None:
                shutil.copyfileobj(source, sink, _CHUNK)
    for destination, pieces in joins:  # the mirror's split pieces, joined back in order
        with destination.open("wb") as sink:
            for piece in pieces:
                with piece.open("rb") as source:
                    shutil.copyfileobj(source, sink, _CHUNK)
                piece.unlink()


def read(archive: Path, categories: list[str], work: Path) -> Imported:
    """Copy the lists of the chosen `categories` of a UT1 archive into `work` and describe
    the rules folder they make: one category each, and one policy for every client that
    denies the black ones, allows the white ones and allows everything else.

    Args:
        archive: ``blacklists.tar.gz`` (or ``.tgz``, ``.tar``, a one-category archive).
        categories: UT1 names, as in ``describe``; a link's name gives its target.
        work: an empty folder that outlives the returned value (the copies point into it).

    Returns:
        the import, with notes on names and files skipped.

    Raises:
        SourceError: the archive cannot be read, or holds none of `categories`.
    """
    imported = Imported(source=f"the UT1 lists {archive}")
    policy = PolicyDraft(name="ut1", origin=f"{archive.name}: --categories {','.join(categories)}")
    with _catalog(archive) as catalog:
        imported.notes.update(dict.fromkeys(catalog.notes))
        jobs: _Jobs = []
        joins: _Joins = []
        for name in _choose(catalog, categories, imported):
            colour, guessed = _colour(catalog, name)
            draft = CategoryDraft(safe_name(name), f"{catalog.where}:{catalog.categories[name].path}")
            if guessed is not None:
                imported.note(draft.origin, guessed)
            planned, joined = _plan(catalog, name, draft, work, imported)
            jobs += planned
            joins += joined
            if not draft.copies:
                imported.note(draft.origin, "no domains, urls or expressions file: an empty category")
            imported.categories[draft.name] = draft
            (policy.deny if colour == "black" else policy.allow).append(draft.name)
        _extract(catalog.tar, jobs, joins)
    imported.policies.append(policy)
    return imported
