"""importers/ut1: `fwdproxy import ut1`, judged by `fwdproxy check` on the folder it writes.

The archives are built here with UT1's own layout (as in blacklists.tar.gz and its GitHub
mirror olbat/ut1-blacklists): ``blacklists/<category>/{domains,urls,expressions,usage}``,
``blacklists/global_usage`` with ``DEFAULT_TYPE`` black and white, a README, and a
category that is a symbolic link to another (``porn -> adult``). The verdicts expected
are what UT1's lists mean under squidGuard, written out in the tables.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from fwdproxy.check import main as check_main
from fwdproxy.importers.command import main as import_main
from fwdproxy.importers.model import SourceError
from fwdproxy.importers.ut1 import describe, read

GLOBAL_USAGE = """\
#
#	NAME : name of tar blacklist
#	DEFAULT_TYPE : what is the primary use of this blacklist (can be inverted, i.e. for webmail)
#
NAME:	adult
DEFAULT_TYPE: black
SOURCE: https://squidguard.ut-capitole.fr
DESC EN: Some adult site from erotic to hard pornography.
DESC FR: Des sites adultes allant de l'érotique à la pornographie dure.
NAME EN: Adult (X)

NAME:	gambling
DEFAULT_TYPE: black
DESC EN: Gambling and betting sites

NAME: bank
DEFAULT_TYPE:	white
DESC EN: Online bank

NAME:   social_networks
DEFAULT_TYPE: black
DESC EN: Social networks
"""

FILES = {
    "blacklists/README": "UT1 blacklists, a test copy\n",
    "blacklists/global_usage": GLOBAL_USAGE,
    "blacklists/adult/domains": "porn.example\n.dotted.example\n203.0.113.7\n",
    "blacklists/adult/urls": "news.example/adult/\nwww.blog.example/porn\n",
    "blacklists/adult/expressions": "(xxx|sex)cams\n^[0-9.]+/search\\?q=\n",
    "blacklists/adult/usage": "black\nadult\nporn\n",
    "blacklists/adult/very_restrictive_expression": "(sex|porn)\n",
    "blacklists/gambling/domains": "casino.example\n",
    "blacklists/gambling/urls": "games.example/poker/\n",
    "blacklists/gambling/usage": "black\n",
    # Not in global_usage: its usage file says white (UT1's own liste_blanche does the same).
    "blacklists/liste_blanche/domains": "good.porn.example\n",
    "blacklists/liste_blanche/usage": "white\n",
    # global_usage says white; usage lists both uses, as UT1's bank does.
    "blacklists/bank/domains": "bank.example\n",
    "blacklists/bank/usage": "white\nblack\n",
    "blacklists/social_networks/domains": "social.example\n",
    "blacklists/social_networks/usage": "black\n",
}
LINKS = {"blacklists/porn": "adult"}

# (name, kind, link target): members a hostile archive adds; none may escape `work`.
HOSTILE: list[tuple[str, bytes, str]] = [
    ("../evil/domains", tarfile.REGTYPE, ""),
    ("/ut1-absolute/domains", tarfile.REGTYPE, ""),
    ("blacklists/adult/../../escaped/domains", tarfile.REGTYPE, ""),
    ("blacklists/etc", tarfile.SYMTYPE, "/etc"),
    ("blacklists/up", tarfile.SYMTYPE, "../../.."),
    ("blacklists/loop", tarfile.SYMTYPE, "loop2"),
    ("blacklists/loop2", tarfile.SYMTYPE, "loop"),
    ("blacklists/hostile/domains", tarfile.SYMTYPE, "/etc/passwd"),
    ("blacklists/hostile/urls", tarfile.SYMTYPE, "../../../../etc/hostname"),
    ("blacklists/hostile/expressions", tarfile.LNKTYPE, "../outside"),
]


def build(path: Path, files: dict[str, str], links: dict[str, str] | None = None,
          mode: str = "w:gz", hostile: bool = False) -> Path:
    """A tar archive of `files` (name → text) and symbolic `links` (name → target)."""
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        folders = sorted({n.rsplit("/", 1)[0] for n in files if "/" in n})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        extra = [(n, tarfile.SYMTYPE, t) for n, t in (links or {}).items()]
        for name, kind, target in extra + (HOSTILE if hostile else []):
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(b"escaped.example\n")
                tar.addfile(info, io.BytesIO(b"escaped.example\n"))
                continue
            info.linkname = target
            tar.addfile(info)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return build(tmp_path / "blacklists.tar.gz", FILES, LINKS)


def run_import(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = import_main(["ut1", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# Every name a URL below uses, so that check never asks DNS (rules with addresses make it
# resolve). 198.51.100.7 is in no list.
HOSTS = {name: "198.51.100.7" for name in [
    "porn.example", "www.porn.example", "notporn.example", "porn.example.org", "a.dotted.example",
    "news.example", "blog.example", "www.blog.example", "site.example", "casino.example",
    "www.casino.example", "games.example", "social.example", "good.porn.example",
    "bad.porn.example", "bank.example", "web.news.example"]}
HOSTS["shared.example"] = "203.0.113.7"  # a name on an address adult/domains lists


def verdicts(capsys: pytest.CaptureFixture[str], rules: Path, tmp_path: Path,
             urls: list[str]) -> list[tuple[str, str | None]]:
    """(allow or deny, the deciding category or None) per URL, as `fwdproxy check` says."""
    config = tmp_path / "check.yaml"
    config.write_text("hosts:\n" + "".join(f"  {h}: {a}\n" for h, a in HOSTS.items()))
    check_main(["--rules", str(rules), "--config", str(config), *urls])
    found: list[tuple[str, str | None]] = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith(("ALLOW ", "DENY ")):
            found.append(("allow" if line.startswith("ALLOW") else "deny", None))
        elif found and (category := re.search(r"\(category ([^)]+)\)", line)):
            found[-1] = (found[-1][0], category.group(1))
    return found


# -- the command as the brief gives it: adult and gambling ------------------------------

CHOSEN_TABLE = [
    ("http://porn.example/", "deny", "adult"),             # a domains entry...
    ("http://www.porn.example/x", "deny", "adult"),        # ...and its subdomains
    ("https://porn.example/", "deny", "adult"),            # a CONNECT to it too
    ("http://notporn.example/", "allow", None),            # a sibling name is not one
    ("http://porn.example.org/", "allow", None),
    ("http://a.dotted.example/", "deny", "adult"),         # ".dotted.example"
    ("http://203.0.113.7/", "deny", "adult"),              # an address in domains...
    ("https://203.0.113.7/", "deny", "adult"),
    ("http://shared.example/", "allow", None),             # ...as written, never resolved
    ("http://news.example/adult/story", "deny", "adult"),  # urls: host/path prefix
    ("http://news.example/", "allow", None),
    ("http://news.example/sport/adult/", "allow", None),   # only under its path
    ("http://news.example/ADULT/x", "deny", "adult"),      # in any case, as squidGuard
    ("http://web.news.example/adult/", "deny", "adult"),   # web., ftp., www2. dropped
    ("https://news.example/", "allow", None),              # a tunnel shows no path
    ("http://blog.example/porn/1", "deny", "adult"),       # www. of a urls line: no matter
    ("http://www.blog.example/porn", "deny", "adult"),
    ("http://site.example/freesexcams", "deny", "adult"),  # expressions: URL regexes
    ("http://site.example/cams", "allow", None),
    ("http://site.example/FreeSexCams", "deny", "adult"),  # ignoring case
    ("http://203.0.113.9/search?q=x", "deny", "adult"),    # ^ anchors at host/path
    ("http://casino.example/", "deny", "gambling"),
    ("https://www.casino.example/", "deny", "gambling"),
    ("http://games.example/poker/table", "deny", "gambling"),
    ("http://games.example/chess/", "allow", None),
    ("http://social.example/", "allow", None),             # a category not chosen
    ("http://good.porn.example/", "deny", "adult"),        # liste_blanche not chosen
    ("http://bank.example/", "allow", None),
]


def test_chosen_categories_decide_as_ut1_means_them(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "rules"
    status, stdout, err = run_import(capsys, str(archive), "--categories", "adult,gambling",
                                     "--out", str(out))
    assert status == 0, err
    assert "wrote" in stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "deny/adult/domains", "deny/adult/expressions", "deny/adult/urls",
        "deny/gambling/domains", "deny/gambling/urls", "policy.yaml"]
    assert (out / "deny/adult/domains").read_text() == FILES["blacklists/adult/domains"]
    assert 'deny: ["adult", "gambling"]' in (out / "policy.yaml").read_text()
    urls = [url for url, _, _ in CHOSEN_TABLE]
    assert verdicts(capsys, out, tmp_path, urls) == [(v, c) for _, v, c in CHOSEN_TABLE]


# -- a link, white lists and an unknown name ---------------------------------------------

WHITE_TABLE = [
    ("http://good.porn.example/", "allow", "liste_blanche"),   # white beats black
    ("https://good.porn.example/", "allow", "liste_blanche"),
    ("http://bad.porn.example/", "deny", "adult"),              # porn is adult
    ("http://bank.example/", "allow", "bank"),                  # white by global_usage
    ("http://casino.example/", "allow", None),                  # gambling not chosen
]


def test_links_white_lists_and_unknown_names(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             archive: Path) -> None:
    out = tmp_path / "rules"
    status, _, err = run_import(capsys, str(archive), "--categories",
                                "porn,liste_blanche,bank,adult,nosuch", "--out", str(out))
    assert status == 0, err
    assert "blacklists/porn: porn is a link to adult: imported as adult" in err
    assert "no category nosuch in the archive: skipped (it has: adult, bank, gambling," in err
    policy = (out / "policy.yaml").read_text()
    assert 'deny: ["adult"]' in policy
    assert 'allow: ["liste_blanche", "bank"]' in policy
    assert "default: allow" in policy and "clients:" not in policy
    urls = [url for url, _, _ in WHITE_TABLE]
    assert verdicts(capsys, out, tmp_path, urls) == [(v, c) for _, v, c in WHITE_TABLE]


def test_read_copies_lists_into_work_and_notes_files_not_imported(
        tmp_path: Path, archive: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    imported = read(archive, ["adult", "porn", "gambling"], work)
    assert list(imported.categories) == ["adult", "gambling"]
    adult = imported.categories["adult"]
    assert adult.origin == "blacklists.tar.gz:blacklists/adult"
    assert [(name, Path(path).relative_to(work).as_posix()) for name, path in adult.copies] == [
        ("adult/domains", "adult/domains"), ("adult/urls", "adult/urls"),
        ("adult/expressions", "adult/expressions")]
    assert Path(adult.copies[2][1]).read_text() == FILES["blacklists/adult/expressions"]
    [policy] = imported.policies
    assert (policy.deny, policy.allow, policy.clients, policy.default) == (
        ["adult", "gambling"], [], [], "allow")
    notes = [str(note) for note in imported.notes]
    assert "blacklists.tar.gz:blacklists/adult/very_restrictive_expression: not a list fwdproxy " \
           "loads (domains, urls, expressions): not imported" in notes


# -- archive forms -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "mode"), [
    ("blacklists.tar.gz", "w:gz"), ("blacklists.tgz", "w:gz"), ("blacklists.tar", "w"),
    ("blacklists.tar.bz2", "w:bz2"),
])
def test_compressed_or_plain_tar(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 name: str, mode: str) -> None:
    archive = build(tmp_path / name, FILES, LINKS, mode)
    out = tmp_path / "rules"
    status, _, err = run_import(capsys, str(archive), "--categories", "gambling", "--out", str(out))
    assert status == 0, err
    assert verdicts(capsys, out, tmp_path, ["http://casino.example/", "http://porn.example/"]) == [
        ("deny", "gambling"), ("allow", None)]


def test_one_category_archive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # UT1 also serves each category alone: adult.tar.gz holds adult/domains, adult/usage...
    archive = build(tmp_path / "adult.tar.gz", {
        "adult/domains": "porn.example\n", "adult/urls": "news.example/adult/\n", "adult/usage": "black\n"})
    out = tmp_path / "rules"
    status, _, err = run_import(capsys, str(archive), "--categories", "adult", "--out", str(out))
    assert status == 0, err
    assert verdicts(capsys, out, tmp_path, ["https://porn.example/", "http://news.example/adult/1"]) == [
        ("deny", "adult"), ("deny", "adult")]


def test_split_lists_of_the_github_mirror_are_joined(tmp_path: Path) -> None:
    # The mirror splits files over 50 MB with `split -b`: the cut falls inside a line.
    archive = build(tmp_path / "mirror.tar.gz", {
        "ut1-blacklists-master/blacklists/global_usage": GLOBAL_USAGE,
        "ut1-blacklists-master/blacklists/adult/domains.1": "mple\nother.example\n",
        "ut1-blacklists-master/blacklists/adult/domains.0": "porn.exa",
    })
    work = tmp_path / "work"
    imported = read(archive, ["adult"], work)
    assert [p.name for p in (work / "adult").iterdir()] == ["domains"]
    assert (work / "adult/domains").read_text() == "porn.example\nother.example\n"
    assert imported.categories["adult"].origin == \
        "mirror.tar.gz:ut1-blacklists-master/blacklists/adult"


# -- hostile archives --------------------------------------------------------------------

def test_hostile_members_write_nothing_outside_work(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    archive = build(tmp_path / "blacklists.tar.gz", FILES, LINKS, hostile=True)
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    imported = read(archive, ["adult", "etc", "up", "loop", "hostile"], work)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["blacklists.tar.gz", "deep/work/adult/domains", "deep/work/adult/expressions",
                       "deep/work/adult/urls"]
    assert list(imported.categories) == ["adult", "hostile"]
    assert imported.categories["hostile"].copies == []
    notes = "\n".join(str(n) for n in imported.notes)
    for member in ("../evil/domains", "/ut1-absolute/domains", "blacklists/adult/../../escaped/domains"):
        assert f"blacklists.tar.gz:{member}: named outside the archive (absolute or with ..): ignored" \
            in notes
    for link, target in (("etc", "/etc"), ("up", "../../.."), ("loop", "loop2")):
        assert f"blacklists/{link}: a link to {target!r}, which is no category folder" in notes
    assert "blacklists/hostile/domains: a link to nothing inside the archive" in notes
    assert "blacklists/hostile/expressions: a link to nothing inside the archive" in notes
    assert "no category etc, up, loop in the archive: skipped" in notes

    out = tmp_path / "rules"
    status, _, err = run_import(capsys, str(archive), "--categories", "adult,hostile", "--out", str(out))
    assert status == 0, err
    assert "root:" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())


# -- listing, and what exits 1 -----------------------------------------------------------

def test_without_categories_lists_them_and_exits_1(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path, archive: Path) -> None:
    status, stdout, err = run_import(capsys, str(archive), "--out", str(tmp_path / "rules"))
    assert status == 1
    assert "choose with --categories" in err
    lines = stdout.splitlines()
    assert lines[0].startswith("blacklists.tar.gz: 6 categories.")
    assert [" ".join(line.split()) for line in lines[1:]] == [
        "adult black Some adult site from erotic to hard pornography.",
        "bank white Online bank",
        "gambling black Gambling and betting sites",
        "liste_blanche white",
        "porn black another name for adult: Some adult site from erotic to hard pornography.",
        "social_networks black Social networks",
    ]
    assert describe(archive) == lines
    assert not (tmp_path / "rules").exists()


@pytest.mark.parametrize("categories", ["nosuch", "nosuch,other", ","])
def test_only_unknown_categories_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        archive: Path, categories: str) -> None:
    status, _, err = run_import(capsys, str(archive), "--categories", categories,
                                "--out", str(tmp_path / "rules"))
    assert status == 1
    assert "it has: adult, bank, gambling, liste_blanche, porn, social_networks" in err
    assert not (tmp_path / "rules").exists()


def test_missing_or_corrupt_archives_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            archive: Path) -> None:
    data = archive.read_bytes()
    cases = {
        "missing.tar.gz": None,
        "garbage.tar.gz": b"this is no archive\n" * 20,
        "empty.tgz": b"",
        "truncated.tar.gz": data[: len(data) // 2],
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        status, _, err = run_import(capsys, str(path), "--categories", "adult",
                                    "--out", str(tmp_path / "rules"))
        assert status == 1, (name, err)
        assert f"fwdproxy import ut1: {path}: " in err, (name, err)
    assert "no such file" in run_import(capsys, str(tmp_path / "missing.tar.gz"))[2]
    no_lists = build(tmp_path / "other.tar.gz", {"docs/readme.txt": "hello\n"})
    with pytest.raises(SourceError, match="no UT1 category folder"):
        describe(no_lists)
    assert not (tmp_path / "rules").exists()
