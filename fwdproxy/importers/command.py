"""`fwdproxy import squidguard|e2guardian|ut1 SOURCE [--out DIR]`.

Exit status: 0 when a rules folder was written (notes on what was not carried over are
printed, each with its ``file:line``, to standard error), 1 when the source held nothing
usable or could not be read, 2 for a usage error or an output folder that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from fwdproxy.errors import ConfigError
from fwdproxy.importers.model import Imported, SourceError
from fwdproxy.importers.writer import OutputError, check_output, write_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwdproxy import",
        description="Turn another filter's configuration into a fwdproxy rules folder and "
        "policy.yaml that decide the same; print what could not be carried over.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    sg = kinds.add_parser("squidguard", help="a squidGuard.conf and the lists it names")
    sg.add_argument("source", type=Path, metavar="squidGuard.conf")
    e2 = kinds.add_parser("e2guardian", help="an e2guardian configuration folder (/etc/e2guardian)")
    e2.add_argument("source", type=Path, metavar="DIR")
    u = kinds.add_parser("ut1", help="the UT1 blacklists archive (Université Toulouse Capitole)")
    u.add_argument("source", type=Path, metavar="blacklists.tar.gz")
    u.add_argument("--categories", metavar="A,B,...",
                   help="the categories to import (without it: list the archive's categories)")
    for sub in (sg, e2, u):
        sub.add_argument("--out", type=Path, metavar="DIR",
                         help=f"the rules folder to create (default: ./rules-from-{sub.prog.split()[-1]})")
    return parser


def _read(args: argparse.Namespace, work: Path) -> Imported | None:
    # Imported on use: each importer is only loaded for its own kind.
    if args.kind == "squidguard":
        from fwdproxy.importers import squidguard

        return squidguard.read(args.source)
    if args.kind == "e2guardian":
        from fwdproxy.importers import e2guardian

        return e2guardian.read(args.source)
    from fwdproxy.importers import ut1

    if args.categories is None:
        for line in ut1.describe(args.source):
            print(line)
        print("fwdproxy import ut1: choose with --categories A,B,...", file=sys.stderr)
        return None
    wanted = [c.strip() for c in args.categories.split(",") if c.strip()]
    return ut1.read(args.source, wanted, work)


def main(argv: list[str]) -> int:
    """Entry point of ``fwdproxy import``. Returns the exit status."""
    args = build_parser().parse_args(argv)
    out: Path = args.out or Path(f"rules-from-{args.kind}")
    prog = f"fwdproxy import {args.kind}"
    try:
        check_output(out)  # before a long read, not after it
        with tempfile.TemporaryDirectory(prefix="fwdproxy-import-") as work:
            imported = _read(args, Path(work))
            if imported is None:
                return 1
            for note in imported.notes:
                print(f"{prog}: {note}", file=sys.stderr)
            if not imported.usable:
                print(f"{prog}: nothing usable in {args.source}: no folder written",
                      file=sys.stderr)
                return 1
            loaded = write_folder(imported, out)
    except SourceError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OutputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # the folder written does not load: say so, keep it to look at
        print(f"{prog}: error: the folder written does not load: {exc}", file=sys.stderr)
        return 1
    for problem in loaded.errors:
        print(f"{prog}: {out}/{problem}", file=sys.stderr)
    entries = sum(loaded.rules.counts.values()) if loaded.rules is not None else 0
    print(f"wrote {out}: {len(imported.categories)} categories ({entries} entries), "
          f"{len(imported.policies)} policies; {len(imported.notes)} notes and "
          f"{len(loaded.errors)} lines the proxy skips, printed above")
    print(f"check it:  fwdproxy check --rules {out} --lint")
    print(f"use it:    fwdproxy --rules {out}")
    return 0
