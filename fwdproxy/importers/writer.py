"""Writing an `Imported` out as a rules folder, then loading it back as the proxy would."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from fwdproxy.config import LoadedRules, load_rules
from fwdproxy.config.settings import POLICY_FILE
from fwdproxy.errors import ConfigError
from fwdproxy.importers.model import Imported, render_policy_yaml


class OutputError(ConfigError):
    """The output folder cannot be written (it exists and is not empty, or an OS error)."""


def _inside(out: Path, relative: str) -> Path:
    # Names come from the source's category names (already made safe) and fixed file
    # names, but a folder written outside --out would be a bad surprise: refuse it.
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or relative.startswith("/"):
        raise OutputError(f"refusing to write {relative!r} outside the output folder")
    return out.joinpath(*parts)


def check_output(out: Path) -> None:
    """Refuse an `out` that exists and is not an empty folder: nothing of the user's is
    overwritten or mixed with imported files. Checked before reading, and again on writing."""
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder")
        if any(out.iterdir()):
            raise OutputError(f"{out} exists and is not empty; give a new folder with --out")


def prepare(out: Path) -> None:
    """Create `out` (see `check_output`)."""
    check_output(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None


def write_folder(imported: Imported, out: Path) -> LoadedRules:
    """Write `imported` under `out` (``deny/``, ``policy.yaml``) and load it back.

    Returns:
        the folder as the proxy loads it; its ``errors`` are the lines it would report
        (``file:line: message``).

    Raises:
        OutputError: `out` cannot be used or written.
        ConfigError: the written policy.yaml does not load (a bug of the importer: it is
            reported rather than left for the proxy's start-up to find).
    """
    prepare(out)
    try:
        for category in imported.categories.values():
            generated = category.lines
            if category.empty:
                # Still a category, so that the policies naming it load (squidGuard's
                # sample configuration has such empty classes).
                generated = {f"{category.name}.txt": [f"# {category.origin}: no entries in the source"]}
            for relative, source in category.copies:
                target = _inside(out / "deny", relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            for relative, lines in generated.items():
                target = _inside(out / "deny", relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        (out / POLICY_FILE).write_text(render_policy_yaml(imported), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write into {out}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}") from None
    return load_rules(out)
