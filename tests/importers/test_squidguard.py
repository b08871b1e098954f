"""importers/squidguard: `fwdproxy import squidguard`, judged by `fwdproxy check` on the result.

- Debian's own squidGuard.conf.default (`apt-get install squidguard`), imported as it is,
  with the verdicts its sources, time rule, in-addr and acl mean, written out here.
- The real squidGuard binary, where installed, as the oracle: the same requests are fed
  to squidGuard (as squid's redirector protocol) and to `fwdproxy check` on the imported
  folder, for Debian's example sample.conf and a configuration covering source order, ip
  and user together, acl time blocks without else, pass lists that run out, url and
  expression lists.
- Hand-written configurations for the notes: what is not carried over, with file:line.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from fwdproxy.check import main as check_main
from fwdproxy.importers.command import main as import_main

DEBIAN_CONF = Path("/etc/squidguard/squidGuard.conf.default")
DEBIAN_SAMPLE = Path("/usr/share/doc/squidguard/examples/sample.conf")
SQUIDGUARD = shutil.which("squidGuard")
needs_debian = pytest.mark.skipif(not DEBIAN_CONF.is_file(),
                                  reason="Debian's squidGuard files: apt-get install squidguard")
needs_binary = pytest.mark.skipif(SQUIDGUARD is None,
                                  reason="the squidGuard binary: apt-get install squidguard")
# Names the allowed URLs use, so that check never asks DNS.
HOSTS = {name: "198.51.100.7" for name in [
    "example.com", "www.example.com", "news.example", "casino-royal.example", "good.example",
    "porn.example", "www.porn.example", "bad.example", "mixed.example", "shop.example",
    "web.shop.example", "cams.example", "www.cams.example"]}
HOSTS["shared.example"] = "203.0.113.7"  # resolves to an address a domains file lists


def run_import(capsys: pytest.CaptureFixture[str], conf: Path, out: Path) -> tuple[int, str]:
    status = import_main(["squidguard", str(conf), "--out", str(out)])
    captured = capsys.readouterr()
    return status, captured.err


def verdicts(capsys: pytest.CaptureFixture[str], rules: Path, tmp_path: Path, client: str,
             user: str | None, at: str, urls: list[str]) -> list[str]:
    config = tmp_path / "check.yaml"
    # Clients such as 1.2.3.4 (the sample's admin) are outside the default private ranges.
    config.write_text("clients: [0.0.0.0/0, '::/0']\nhosts:\n"
                      + "".join(f"  {host}: {address}\n" for host, address in HOSTS.items()))
    argv = ["--rules", str(rules), "--config", str(config), "--client", client, "--at", at]
    check_main([*argv, *(["--user", user] if user else []), *urls])
    out = capsys.readouterr().out.splitlines()
    return ["allow" if line.startswith("ALLOW") else "deny"
            for line in out if line.startswith(("ALLOW ", "DENY "))]


# -- Debian's squidGuard.conf.default ------------------------------------------------------

MON_10 = "2026-12-07T10:00"   # a Monday, in workhours (mtwhf 08:00-16:30)
MON_17 = "2026-12-07T17:00"
SAT_10 = "2026-12-12T10:00"

DEBIAN_TABLE = [
    # admin: ip 1.2.3.4/1.2.3.5 *and* user root/foo/bar, within workhours: pass any.
    ("1.2.3.4", "root", MON_10, "http://example.com/", "allow"),
    ("1.2.3.5", "bar", MON_10, "http://1.2.3.4/", "allow"),
    ("1.2.3.4", None, MON_10, "http://example.com/", "deny"),      # no user: default acl
    ("1.2.3.4", "alice", MON_10, "http://example.com/", "deny"),
    ("1.2.3.4", "root", SAT_10, "http://example.com/", "deny"),    # outside: default acl
    # foo-clients within workhours: pass good !in-addr !porn any; else pass any.
    ("172.16.2.50", None, MON_10, "http://example.com/", "allow"),
    ("172.16.2.50", None, MON_10, "http://1.2.3.4/", "deny"),
    ("172.16.2.100", None, MON_10, "http://[2001:db8::1]/", "deny"),
    ("172.16.2.200", None, MON_10, "https://1.2.3.4/", "deny"),    # CONNECT to an address
    ("172.16.2.50", None, MON_17, "http://1.2.3.4/", "allow"),
    ("172.16.2.50", None, SAT_10, "https://1.2.3.4/", "allow"),
    ("172.16.2.31", None, MON_10, "http://example.com/", "deny"),  # before the range: default
    ("172.16.2.101", None, MON_10, "http://example.com/", "deny"),
    # bar-clients: pass local none.  default: pass local none.
    ("172.16.4.10", None, MON_10, "http://example.com/", "deny"),
    ("172.16.4.64", None, MON_10, "http://example.com/", "deny"),
    ("10.9.9.9", None, SAT_10, "https://example.com/", "deny"),
]


@needs_debian
def test_debians_sample_configuration_decides_as_squidguard_means_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "rules"
    status, err = run_import(capsys, DEBIAN_CONF, out)
    assert status == 0, err
    where = str(DEBIAN_CONF)
    # What is not carried over, each with its file:line.
    assert f"{where}:17: time workhours: 'date *-*-01 08:00 - 16:30': only weekly" in err
    assert f"{where}:24: src admin: user names need proxy authentication" in err
    assert f"{where}:80: redirect: %n (the client's name) is its address" in err
    for client, user, at, url, expected in DEBIAN_TABLE:
        assert verdicts(capsys, out, tmp_path, client, user, at, [url]) == [expected], \
            (client, user, at, url)


@needs_debian
def test_debians_redirect_is_carried_over_with_its_fields(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "rules"
    assert run_import(capsys, DEBIAN_CONF, out)[0] == 0
    check_main(["--rules", str(out), "--client", "172.16.4.10", "http://news.example/a?b=1"])
    lines = capsys.readouterr().out.splitlines()
    assert ("    redirected to: http://admin.foo.bar.de/cgi-bin/blocked.cgi?clientaddr=172.16.4.10"
            "&clientname=172.16.4.10&clientuser=&clientgroup=bar-clients&targetgroup="
            "&url=http%3A%2F%2Fnews.example%2Fa%3Fb%3D1") in lines


# -- the squidGuard binary as the oracle -----------------------------------------------------

LISTS = {
    "porn/domains": "porn.example\nsex.example\n203.0.113.7\n",
    "porn/urls": "bad.example/private\nShop.example/Private\n",
    "porn/expressions": "(casino|poker)[-.]\n^cams\\.example/live\n",
    "good/domains": "good.example\nmixed.example\n",
    "adult/domains": "porn.example\n",
    "adult/urls": "news.example/adult\n",
    "adult/expressions": "xxx\n",
}

ORACLE_CONF = """\
dbhome {db}
logdir {log}

time never {
	weekly a 00:00 - 00:01
}

src first {
	ip 10.0.0.0/8
}
src second {
	ip 10.1.0.0/16
	user alice
}
src both {
	ip 192.168.1.0-192.168.1.127
	user bob carol
}
src dozing {
	ip 172.20.0.0/16
	within never
}
src timed {
	ip 172.21.0.0/16
}
src lists {
	ip 172.22.0.0/16
}

dest porn {
	domainlist porn/domains
	urllist porn/urls
	expressionlist porn/expressions
}
dest good {
	domainlist good/domains
}

acl {
	second {
		pass none
		redirect http://second.example/
	}
	first {
		pass good !porn !in-addr any
		redirect http://first.example/?u=%u
	}
	both {
		pass good none
	}
	dozing {
		pass none
	}
	timed within never {
		pass none
	}
	lists {
		pass !porn
	}
	default {
		pass !porn good none
		redirect 302:http://default.example/%t/%u
	}
}
"""

ORACLE_CLIENTS = [("10.1.2.3", None), ("10.1.2.3", "alice"), ("10.200.0.1", None),
                  ("192.168.1.5", "bob"), ("192.168.1.5", None), ("192.168.1.200", "carol"),
                  ("172.20.1.1", None), ("172.21.1.1", None), ("172.22.1.1", None),
                  ("203.0.113.9", None), ("203.0.113.9", "bob")]
ORACLE_URLS = ["http://example.com/", "http://porn.example/x", "http://www.porn.example/",
               "http://good.example/", "http://mixed.example/", "http://bad.example/private/a",
               "http://bad.example/public", "http://casino-royal.example/", "http://1.2.3.4/",
               "https://porn.example/", "https://1.2.3.4/", "https://example.com/",
               "http://news.example/adult/x", "http://news.example/xxx",
               # how squidGuard reads its lists: an address as written, never resolved;
               # urls in any case and after web., ftp., www2.; expressions over host/path
               "http://203.0.113.7/a", "https://203.0.113.7/", "http://shared.example/",
               "http://shop.example/PRIVATE/x", "http://web.shop.example/private",
               "http://cams.example/Live/1", "http://www.cams.example/live"]


def squidguard_verdicts(conf: Path, clients: list[tuple[str, str | None]],
                        urls: list[str]) -> list[str]:
    """What squidGuard answers squid for each request: a rewrite is a block."""
    lines = []
    for client, user in clients:
        for url in urls:
            connect = url.startswith("https://")
            target = url.removeprefix("https://").rstrip("/") + ":443" if connect else url
            lines.append(f"{target} {client}/- {user or '-'} {'CONNECT' if connect else 'GET'}\n")
    assert SQUIDGUARD is not None
    answer = subprocess.run([SQUIDGUARD, "-c", str(conf)], input="".join(lines),
                            capture_output=True, text=True, timeout=60, check=True)
    replies = answer.stdout.splitlines()
    assert len(replies) == len(lines), answer.stderr
    return ["deny" if reply.startswith("OK") else "allow" for reply in replies]


def oracle_setup(tmp_path: Path, conf_text: str) -> Path:
    db, log = tmp_path / "db", tmp_path / "log"
    for name, text in LISTS.items():
        (db / name).parent.mkdir(parents=True, exist_ok=True)
        (db / name).write_text(text)
    log.mkdir()
    conf = tmp_path / "squidGuard.conf"
    conf.write_text(conf_text.replace("{db}", str(db)).replace("{log}", str(log)))
    return conf


def compare(capsys: pytest.CaptureFixture[str], tmp_path: Path, conf: Path,
            clients: list[tuple[str, str | None]] = ORACLE_CLIENTS) -> None:
    out = tmp_path / "rules"
    status, err = run_import(capsys, conf, out)
    assert status == 0, err
    # squidGuard decides at its own now: ask again should the minute turn meanwhile.
    for _ in range(2):
        now = datetime.now().strftime("%Y-%m-%dT%H:%M")
        expected = squidguard_verdicts(conf, clients, ORACLE_URLS)
        if datetime.now().strftime("%Y-%m-%dT%H:%M") == now:
            break
    got = []
    for client, user in clients:
        got.extend(verdicts(capsys, out, tmp_path, client, user, now, ORACLE_URLS))
    cases = [(c, u, url) for c, u in clients for url in ORACLE_URLS]
    differ = [(case, e, g) for case, e, g in zip(cases, expected, got, strict=True) if e != g]
    assert not differ, differ
    assert "deny" in got and "allow" in got  # the table exercises both answers


@needs_binary
def test_verdicts_equal_squidguards_own(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    compare(capsys, tmp_path, oracle_setup(tmp_path, ORACLE_CONF))


@needs_binary
@pytest.mark.skipif(not DEBIAN_SAMPLE.is_file(), reason="squidguard's examples (apt-get install squidguard)")
def test_debians_example_conf_verdicts_equal_squidguards_own(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    text = DEBIAN_SAMPLE.read_text()
    text = text.replace("dbhome /var/lib/squidguard/db", "dbhome {db}").replace(
        "logdir /var/log/squidguard", "logdir {log}").replace("dest/adult/", "adult/")
    # squidGuard 1.6 refuses the example's own rew block (a syntax error at its first
    # s@...@ line) and then passes everything: leave rewriting out of the comparison.
    start = text.index("rew dmz {")
    text = text[:start] + text[text.index("}", start) + 1:]
    text = text.replace("rewrite\t dmz\n", "")
    # Its date rule (the 1st of each month) is not carried over (noted; see the test of
    # Debian's squidGuard.conf.default): left out so that the comparison holds any day.
    text = text.replace("\tdate *-*-01  08:00 - 16:30\n", "")
    assert "{db}" in text and "{log}" in text and "dmz" not in text and "date" not in text
    clients = [("1.2.3.4", "root"), ("1.2.3.5", None), ("172.16.2.50", None),
               ("172.16.2.150", None), ("172.16.4.5", None), ("10.0.0.1", None)]
    compare(capsys, tmp_path, oracle_setup(tmp_path, text), clients)


# -- notes and failures ------------------------------------------------------------------------

def test_what_is_not_carried_over_is_named_with_its_line(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    conf = tmp_path / "sg.conf"
    conf.write_text("\n".join([
        "dbhome /nonexistent-db",                        # 1
        "rew dmz {",                                     # 2
        "	s@://admin/@://admin.example/@i",             # 3
        "}",                                             # 4
        "src lab {",                                     # 5
        "	ip 10.5.0.0/16 10.6.0.300",                  # 6
        "	domain lab.example",                         # 7
        "}",                                             # 8
        "dest ads {",                                    # 9
        "	domainlist ads/domains",                     # 10
        "}",                                             # 11
        "acl {",                                         # 12
        "	lab {",                                      # 13
        "		pass good !ads any porn",                # 14
        "		rewrite dmz",                            # 15
        "	}",                                          # 16
        "	default {",                                  # 17
        "		pass !ads all",                          # 18
        "		redirect http://block.example/%p",       # 19
        "	}",                                          # 20
        "}",                                             # 21
    ]) + "\n")
    status, err = run_import(capsys, conf, tmp_path / "out")
    assert status == 0, err
    for fragment in [":2: rew dmz: URL rewriting is not carried over",
                     ":6: '10.6.0.300' is not an address, network or range: skipped",
                     ":7: src lab: 'domain' is not carried over",
                     ":10: dest ads: /nonexistent-db/ads/domains: no such file",
                     ":14: pass: unknown class 'good': skipped",
                     ":14: pass: porn after any is never reached",
                     ":15: acl lab: 'rewrite' is not carried over",
                     ":19: redirect: %p is left empty"]:
        assert f"{conf}{fragment}" in err, fragment
    policy = (tmp_path / "out" / "policy.yaml").read_text()
    assert '"lab": ["10.5.0.0/16"]' in policy


@pytest.mark.parametrize(("text", "message"), [
    (None, "cannot read"),
    ("# only comments\ndbhome /x\n", "not a squidGuard configuration"),
    ("src a {\n\tip 10.0.0.0/8\n}\n", "no acl block"),
    ("\x00\x9f{garbage\xff}\n" * 50, "not a squidGuard configuration"),
])
def test_nothing_usable_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                text: str | None, message: str) -> None:
    conf = tmp_path / "squidGuard.conf"
    if text is not None:
        conf.write_text(text)
    status, err = run_import(capsys, conf, tmp_path / "out")
    assert status == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_never_written_into(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    conf = tmp_path / "sg.conf"
    conf.write_text("acl {\n\tdefault {\n\t\tpass none\n\t}\n}\n")
    out = tmp_path / "rules"
    out.mkdir()
    (out / "mine.txt").write_text("keep\n")
    status, err = run_import(capsys, conf, out)
    assert status == 2 and "is not empty" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
