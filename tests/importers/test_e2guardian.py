"""importers/e2guardian: `fwdproxy import e2guardian`, judged by `fwdproxy check` on the result.

- Debian's /etc/e2guardian (`apt-get install e2guardian`), copied with known entries in
  its lists, a second filter group (chosen by address through the ip auth plugin and by
  user through filtergroupslist, a storyboard blanket block) and a `#time` list; the
  verdicts are written out from e2guardian 5.3's semantics (see importers/e2guardian_lists).
- Hand-written configurations: .Include nesting and #listcategory, e2guardian 4 style
  lists and blanket entries, the block-page redirect, broken lines, and the exit statuses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fwdproxy.check import main as check_main
from fwdproxy.importers.command import main as import_main
from tests.test_check import write

DEBIAN = Path("/etc/e2guardian")
needs_debian = pytest.mark.skipif(not (DEBIAN / "e2guardian.conf").is_file(),
                                  reason="Debian's e2guardian files: apt-get install e2guardian")
# Names the allowed URLs use, so that check never asks DNS.
HOSTS = ["notbadsite.example", "good.badsite.example", "paths.example", "social.example",
         "windowsupdate.microsoft.com", "school.example", "example.org", "www.e2guardian.org",
         "a.example", "b.example", "c.example", "other.example"]
MON_1230 = "2026-12-07T12:30"  # a Monday
MON_1329 = "2026-12-07T13:29"
MON_1330 = "2026-12-07T13:30"
SAT_1230 = "2026-12-12T12:30"


def run_import(capsys: pytest.CaptureFixture[str], source: Path, out: Path) -> tuple[int, str]:
    status = import_main(["e2guardian", str(source), "--out", str(out)])
    return status, capsys.readouterr().err


def check(capsys: pytest.CaptureFixture[str], rules: Path, client: str, url: str,
          user: str | None = None, at: str = MON_1330) -> list[str]:
    """`fwdproxy check` on one URL: its output lines."""
    config = rules.parent / "check.yaml"
    config.write_text("clients: [0.0.0.0/0, '::/0']\nhosts:\n"
                      + "".join(f"  {h}: 198.51.100.7\n" for h in HOSTS))
    argv = ["--rules", str(rules), "--config", str(config), "--client", client, "--at", at]
    check_main([*argv, *(["--user", user] if user else []), url])
    return capsys.readouterr().out.splitlines()


def verdict(capsys: pytest.CaptureFixture[str], rules: Path, client: str, url: str,
            user: str | None = None, at: str = MON_1330) -> str:
    first = check(capsys, rules, client, url, user, at)[0]
    return "allow" if first.startswith("ALLOW") else "deny"


def line_of(path: Path, text: str) -> int:
    """The first line holding `text` that is not a comment."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1)
                if text in line and not line.lstrip().startswith("#"))


# -- Debian's files, with entries of our own ---------------------------------------------------


def debian_copy(tmp_path: Path) -> Path:
    """/etc/e2guardian copied, its absolute paths pointing at the copy, and two groups."""
    src = tmp_path / "e2guardian"
    shutil.copytree(DEBIAN, src, symlinks=True)
    for path in src.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix in ("", ".conf", ".story"):
            text = path.read_text(errors="replace")
            if "/etc/e2guardian" in text:
                path.write_text(text.replace("/etc/e2guardian", str(src)))
    lists = src / "lists"

    def add(name: str, text: str) -> None:
        with (lists / name).open("a") as handle:
            handle.write(text)

    add("bannedsitelist", f"badsite.example\n.Include<{lists}/lunchsites>\n")
    (lists / "lunchsites").write_text('#listcategory: "Lunch"\n#time: 12 0 13 29 01234\n'
                                      "social.example\n")
    add("exceptionsitelist", "good.badsite.example\n")
    add("bannedurllist", "paths.example/private\n")
    add("bannedregexpurllist", "casino\n")
    add("bannedsiteiplist", "203.0.113.0/24\n")
    # Group 2, "pupils": a walled garden (the storyboard's blanket blocks) but for school.
    main = src / "e2guardian.conf"
    text = main.read_text().replace("filtergroups = 1", "filtergroups = 2")
    # The ip plugin first: a client it places is never asked for a user.
    main.write_text(text + f"authplugin = '{src}/authplugins/ip.conf'\n"
                    f"authplugin = '{src}/authplugins/proxy-basic.conf'\n")
    (src / "e2guardianf2.conf").write_text(
        (src / "e2guardianf1.conf").read_text()
        .replace("groupname = 'no_name_group'", "groupname = 'pupils'")
        .replace("examplef1.story", "examplef2.story")
        .replace("lists/exceptionsitelist", "lists/pupilsexceptions"))
    (lists / "pupilsexceptions").write_text("school.example\n")
    (src / "examplef2.story").write_text(
        (src / "examplef1.story").read_text()
        + "function(checkblanketblock)\nif(true,,502) return setblock\n"
        + "function(sslcheckblanketblock)\nif(true,,506) return setblock\n")
    add("authplugins/ipgroups", "10.0.2.0-10.0.2.255 = filter2\n")
    add("filtergroupslist", "alice=filter2\n")
    return src


GROUP1 = "10.0.1.5"
PUPIL = "10.0.2.7"
DEBIAN_TABLE = [
    # bannedsitelist: the domain and its subdomains, HTTP and CONNECT; not a longer name.
    (GROUP1, None, MON_1330, "http://badsite.example/", "deny"),
    (GROUP1, None, MON_1330, "http://www.badsite.example/x", "deny"),
    (GROUP1, None, MON_1330, "https://badsite.example/", "deny"),
    (GROUP1, None, MON_1330, "http://notbadsite.example/", "allow"),
    # exceptionsitelist beats bannedsitelist (Debian's own entry too).
    (GROUP1, None, MON_1330, "http://good.badsite.example/", "allow"),
    (GROUP1, None, MON_1330, "https://good.badsite.example/", "allow"),
    (GROUP1, None, MON_1330, "http://windowsupdate.microsoft.com/", "allow"),
    # bannedurllist: a prefix ending at a separator, plain HTTP only.
    (GROUP1, None, MON_1330, "http://paths.example/private", "deny"),
    (GROUP1, None, MON_1330, "http://paths.example/private/x?y=1", "deny"),
    (GROUP1, None, MON_1330, "http://www.paths.example/PRIVATE/", "deny"),
    (GROUP1, None, MON_1330, "http://paths.example/privateer", "allow"),
    (GROUP1, None, MON_1330, "http://paths.example/public", "allow"),
    (GROUP1, None, MON_1330, "https://paths.example/", "allow"),
    # bannedregexpurllist: Debian's (Variants/AVTest) and ours, over host/path; a CONNECT
    # is searched by its host.
    (GROUP1, None, MON_1330, "http://www.e2guardian.org/Variants/AVTest/eicar.zip", "deny"),
    (GROUP1, None, MON_1330, "http://www.e2guardian.org/", "allow"),
    (GROUP1, None, MON_1330, "http://other.example/casino/", "deny"),
    (GROUP1, None, MON_1330, "https://casino.example/", "deny"),
    (GROUP1, None, MON_1330, "https://other.example/", "allow"),
    # bannedsiteiplist: URLs written with an address in the subnet.
    (GROUP1, None, MON_1330, "http://203.0.113.9/", "deny"),
    (GROUP1, None, MON_1330, "https://203.0.113.200/", "deny"),
    # The included list's #time: 12:00 to 13:29 (included), Monday to Friday.
    (GROUP1, None, MON_1230, "http://social.example/", "deny"),
    (GROUP1, None, MON_1329, "https://social.example/", "deny"),
    (GROUP1, None, MON_1330, "http://social.example/", "allow"),
    (GROUP1, None, SAT_1230, "http://social.example/", "allow"),
    (GROUP1, None, MON_1230, "http://badsite.example/", "deny"),
    # Group 2 by address (ipgroups range): nothing but its exception.
    (PUPIL, None, MON_1330, "http://school.example/", "allow"),
    (PUPIL, None, MON_1330, "https://school.example/", "allow"),
    (PUPIL, None, MON_1330, "http://example.org/", "deny"),
    (PUPIL, None, MON_1330, "https://example.org/", "deny"),
    (PUPIL, None, MON_1330, "http://windowsupdate.microsoft.com/", "deny"),
    # ... and by user (filtergroupslist, after the ip plugin found nothing).
    (GROUP1, "alice", MON_1330, "http://example.org/", "deny"),
    (GROUP1, "alice", MON_1330, "http://school.example/", "allow"),
    (GROUP1, "bob", MON_1330, "http://example.org/", "allow"),
    (GROUP1, "bob", MON_1330, "http://badsite.example/", "deny"),
    (PUPIL, "bob", MON_1330, "http://example.org/", "deny"),  # the ip plugin comes first
]


@needs_debian
def test_debians_files_decide_as_e2guardian_means_them(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    src = debian_copy(tmp_path)
    out = tmp_path / "rules"
    status, err = run_import(capsys, src, out)
    assert status == 0, err
    assert "lines the proxy skips" not in err
    f1 = src / "e2guardianf1.conf"
    for construct, what in [("bannedphraselist =", "phrase list"),
                            ("weightedphraselist =", "weighted phrase list"),
                            ("bannedextensionlist", "file extension list"),
                            ("bannedmimetypelist", "MIME type list"),
                            ("searchregexplist", "search term extraction")]:
        assert f"{f1}:{line_of(f1, construct)}: " in err, construct
        assert what in err
    for client, user, at, url, expected in DEBIAN_TABLE:
        assert verdict(capsys, out, client, url, user, at) == expected, (client, user, at, url)


@needs_debian
def test_debians_categories_are_the_listcategory_names(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    src = debian_copy(tmp_path)
    out = tmp_path / "rules"
    assert run_import(capsys, src, out)[0] == 0
    lines = check(capsys, out, GROUP1, "http://badsite.example/")
    assert any("(category Banned Sites)" in line for line in lines), lines
    lines = check(capsys, out, GROUP1, "http://social.example/", at=MON_1230)
    assert any("(category Lunch)" in line for line in lines), lines
    # The folder stands alone: nothing in it points back at the source.
    shutil.rmtree(src)
    assert verdict(capsys, out, GROUP1, "http://social.example/", at=MON_1230) == "deny"
    assert not any(".Include" in p.read_text() for p in out.rglob("*") if p.is_file())


# -- hand-written configurations ---------------------------------------------------------------


def config(root: Path, f1: str, lists: dict[str, str], main: str = "filtergroups = 1\n") -> Path:
    return write(root, {"e2guardian.conf": main, "e2guardianf1.conf": f1,
                        **{f"lists/{name}": text for name, text in lists.items()}})


def test_includes_nest_and_carry_their_own_category(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    src = config(tmp_path / "src", "sitelist = 'name=banned,path=lists/top'\n", {
        "top": '#listcategory: "Top"\na.example\n.Include<lists/mid>\n.Include<lists/gone>\n',
        "mid": "b.example\n.Include<lists/leaf>\n",
        "leaf": '#listcategory: "Leaf"\nc.example\n',
    })
    out = tmp_path / "rules"
    status, err = run_import(capsys, src, out)
    assert status == 0, err
    assert f"{src}/lists/top:4: .Include<lists/gone>: no such file" in err
    shutil.rmtree(src)
    for url, category in [("http://a.example/", "Top"), ("https://b.example/", "Top"),
                          ("http://c.example/", "Leaf")]:
        lines = check(capsys, out, GROUP1, url)
        assert lines[0].startswith("DENY") and f"(category {category})" in lines[2], lines


def test_e2guardian4_lists_blanket_block_and_entries_that_match_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = config(tmp_path / "src", "bannedsitelist = 'lists/banned'\n"
                 "exceptionsitelist = 'lists/exceptions'\n", {
                     "banned": "**\n.example.com\nlocalhost\n",
                     "exceptions": "a.example\n",
                 })
    out = tmp_path / "rules"
    status, err = run_import(capsys, src, out)
    assert status == 0, err
    banned = src / "lists/banned"
    assert f"{banned}:2: 1 entries start with '.' but are no top-level domain" in err
    assert f"{banned}:3: 1 entries have no dot" in err
    assert verdict(capsys, out, GROUP1, "http://other.example/") == "deny"    # ** : plain HTTP
    assert verdict(capsys, out, GROUP1, "https://other.example/") == "allow"  # not **s
    assert verdict(capsys, out, GROUP1, "http://a.example/") == "allow"


def test_redirect_and_broken_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = config(tmp_path / "src", "reportinglevel = 2\n"
                 "accessdeniedaddress = 'http://blocked.example/cgi-bin/e2g.pl'\n"
                 "nonstandarddelimiter = off\n"
                 "sitelist = 'name=banned,path=lists/banned'\n"
                 "sslmitm = on\n", {
                     "banned": "#time: 25 0 26 0 0123\nbad.example\n",
                     "ipgroups": "10.0.0.0/8 = filter7\n",
                 }, main="filtergroups = 1\nauthplugin = 'ip.conf'\n")
    (src / "ip.conf").write_text("plugname = 'ip'\nipgroups = 'lists/ipgroups'\n")
    out = tmp_path / "rules"
    status, err = run_import(capsys, src, out)
    assert status == 0, err
    assert f"{src}/lists/banned:1: bad time limit" in err
    assert f"{src}/lists/ipgroups:1: not 'ADDRESS|SUBNET|RANGE = filterN'" in err
    assert f"{src}/e2guardianf1.conf:5: sslmitm = on" in err
    lines = check(capsys, out, GROUP1, "http://bad.example/a?b=1")
    assert ("    redirected to: http://blocked.example/cgi-bin/e2g.pl?DENIEDURL="
            "http%3A%2F%2Fbad.example%2Fa%3Fb%3D1&IP=10.0.1.5&USER=&FILTERGROUP=filter1"
            "&CATEGORIES=banned&REASON=deny%2Fbanned.txt%3A2") in lines, lines


def test_exit_status_for_nothing_usable_and_unreadable_sources(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = config(tmp_path / "empty", "groupname = 'nothing'\n", {})
    assert run_import(capsys, empty, tmp_path / "out1") == (
        1, f"fwdproxy import e2guardian: nothing usable in {empty}: no folder written\n")
    status, err = run_import(capsys, tmp_path / "missing", tmp_path / "out2")
    assert status == 1 and "no such folder" in err
    (tmp_path / "notconf").mkdir()
    status, err = run_import(capsys, tmp_path / "notconf", tmp_path / "out3")
    assert status == 1 and "no e2guardian.conf" in err
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out3").exists()
