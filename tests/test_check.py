"""check.py: `fwdproxy check URL...` and `fwdproxy check --lint`, through check.main(argv).

No test here makes check resolve a name over DNS: every name that can be allowed is
mapped in the test config's `hosts:`, and the rules folders hold no address rules, so a
name denied by name is never resolved.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fwdproxy.check import main

POLICY = """\
timezone: UTC
groups:
  staff: [10.0.1.0/24]
  pupils: [10.0.2.0/23]
policies:
  - name: staff-lunch
    clients: [staff]
    when: {days: mon-fri, hours: "12:00-13:30"}
    deny: [ads]
    default: allow
  - name: staff
    clients: [staff]
    deny: [ads, social]
    default: allow
  - name: pupils
    clients: [pupils]
    deny: ["*"]
    default: allow
"""

HOSTS = {
    "site.example": "198.51.100.7",
    "social.example": "198.51.100.8",
    "work.ads.example": "198.51.100.9",
    "shop.example": "198.51.100.10",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return write(tmp_path / "rules", {
        "deny/ads.txt": "# ads\nads.example\n||tracker.example^\n",
        "deny/social.txt": "social.example\n",
        "deny/paths.txt": "shop.example/private/\n",
        "allow/work.txt": "work.ads.example\n",
        "policy.yaml": POLICY,
    })


@pytest.fixture
def config(tmp_path: Path) -> Path:
    lines = ["hosts:", *(f"  {name}: {address}" for name, address in HOSTS.items())]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def check(capsys: pytest.CaptureFixture[str], rules: Path, config: Path, *args: str) -> tuple[int, list[str]]:
    status, lines, _ = run(capsys, "--rules", str(rules), "--config", str(config), *args)
    return status, lines


# -- URLs -----------------------------------------------------------------------------


def test_denied_url_names_rule_file_line_and_category(capsys: pytest.CaptureFixture[str], rules: Path,
                                                      config: Path) -> None:
    status, lines = check(capsys, rules, config, "http://x.ads.example/banner.js")
    assert status == 1
    assert lines == [
        "DENY  http://x.ads.example/banner.js",
        "    canonical: http://x.ads.example/banner.js",
        "    rule: deny/ads.txt:2 (category ads): ads.example and its subdomains",
    ]


def test_allowed_url_is_resolved_through_hosts(capsys: pytest.CaptureFixture[str], rules: Path,
                                               config: Path) -> None:
    status, lines = check(capsys, rules, config, "https://site.example/")
    assert status == 0
    assert lines == [
        "ALLOW https://site.example/",
        "    canonical: site.example:443 (resolved to 198.51.100.7)",
        "    decided by: default: allowed",
    ]


@pytest.mark.parametrize(("args", "status", "last"), [
    (["--sni", "social.example", "198.51.100.8:443"], 1,
     "    sni: social.example: refused by deny/social.txt:1: blocked (social): "
     "social.example and its subdomains"),
    (["--sni", "site.example", "198.51.100.7:443"], 0,
     "    sni: site.example: allowed by default: allowed"),
    (["--sni", "social.example", "https://site.example/"], 1,
     "    sni: social.example: refused by config:connect_sni.match: the ClientHello names "
     "social.example, not site.example, the CONNECT target (domain fronting)"),
    (["--sni", "Site.Example.", "https://site.example/"], 0,
     "    sni: site.example: the CONNECT name itself"),
    (["--sni", "198.51.100.7", "198.51.100.7:443"], 1,
     "    sni: 198.51.100.7: refused by config:connect_sni.missing: the ClientHello names no "
     "server (no SNI)"),
    (["--sni", "social.example", "site.example:8443"], 0,
     "    sni: social.example: not read (its port is not in connect_sni.ports)"),
    (["--sni=a..b.example", "198.51.100.7:443"], 1,  # judged as the proxy judges such a hello
     "    sni: a..b.example: refused by config:connect_sni.not_tls: the tunnel did not start "
     "with a TLS ClientHello: the ClientHello's server name 'a..b.example' is not valid"),
], ids=["address-denied-name", "address-allowed-name", "fronting", "same-name", "address-as-name",
        "port-not-checked", "not-a-name"])
def test_sni_beside_the_connect_target(capsys: pytest.CaptureFixture[str], rules: Path, config: Path,
                                       args: list[str], status: int, last: str) -> None:
    config.write_text(config.read_text() + "connect_ports: [443, 8443]\n")
    got, lines = check(capsys, rules, config, *args)
    assert (got, lines[-1]) == (status, last)
    assert lines[0].startswith("ALLOW " if status == 0 else "DENY  ")


def test_allow_entry_beats_deny(capsys: pytest.CaptureFixture[str], rules: Path, config: Path) -> None:
    status, lines = check(capsys, rules, config, "http://work.ads.example/")
    assert status == 0
    assert lines[0] == "ALLOW http://work.ads.example/"
    assert lines[2] == "    rule: allow/work.txt:1 (category work): work.ads.example and its subdomains"


def test_canonical_form_is_shown(capsys: pytest.CaptureFixture[str], rules: Path, config: Path) -> None:
    status, lines = check(capsys, rules, config, "http://user@SHOP.Example.:80/x/../private/%61")
    assert status == 1
    assert lines == [
        "DENY  http://user@SHOP.Example.:80/x/../private/%61",
        "    canonical: http://shop.example/private/a",
        "    rule: deny/paths.txt:1 (category paths): URL prefix shop.example/private/",
    ]


def test_url_prefix_applies_to_plain_http_only(capsys: pytest.CaptureFixture[str], rules: Path,
                                               config: Path) -> None:
    status, lines = check(capsys, rules, config, "http://shop.example/public/", "https://shop.example/private/")
    assert status == 0
    assert [line for line in lines if not line.startswith(" ")] == [
        "ALLOW http://shop.example/public/", "ALLOW https://shop.example/private/"]


def test_several_urls_exit_1_when_any_is_denied(capsys: pytest.CaptureFixture[str], rules: Path,
                                                config: Path) -> None:
    status, lines = check(capsys, rules, config, "https://site.example/", "tracker.example:443",
                          "http://[::ffff:198.51.100.7]/")
    assert status == 1
    assert [line for line in lines if not line.startswith(" ")] == [
        "ALLOW https://site.example/", "DENY  tracker.example:443", "ALLOW http://[::ffff:198.51.100.7]/"]
    assert "    rule: deny/ads.txt:3 (category ads): tracker.example and its subdomains" in lines
    assert "    canonical: http://198.51.100.7/ (resolved to 198.51.100.7)" in lines


def test_invalid_url(capsys: pytest.CaptureFixture[str], rules: Path, config: Path) -> None:
    status, lines = check(capsys, rules, config, "http://bad..name/")
    assert status == 1
    assert lines[0] == "INVALID http://bad..name/"


# -- --client and --at ----------------------------------------------------------------

MONDAY_LUNCH = "2024-01-08T12:30+00:00"
MONDAY_AFTERNOON = "2024-01-08T15:00+00:00"


@pytest.mark.parametrize(
    ("client", "at", "url", "first", "detail", "policy"),
    [
        ("10.0.1.5", MONDAY_AFTERNOON, "http://social.example/", "DENY  http://social.example/",
         "    rule: deny/social.txt:1 (category social): social.example and its subdomains", "staff"),
        ("10.0.1.5", MONDAY_LUNCH, "http://social.example/", "ALLOW http://social.example/",
         "    decided by: default: allowed", "staff-lunch"),
        ("10.0.1.5", MONDAY_LUNCH, "http://ads.example/", "DENY  http://ads.example/",
         "    rule: deny/ads.txt:2 (category ads): ads.example and its subdomains", "staff-lunch"),
        ("10.0.2.15", MONDAY_LUNCH, "http://shop.example/private/", "DENY  http://shop.example/private/",
         "    rule: deny/paths.txt:1 (category paths): URL prefix shop.example/private/", "pupils"),
        ("10.0.2.15", MONDAY_LUNCH, "http://work.ads.example/", "ALLOW http://work.ads.example/",
         "    rule: allow/work.txt:1 (category work): work.ads.example and its subdomains", "pupils"),
        ("10.0.9.9", MONDAY_LUNCH, "http://social.example/", "DENY  http://social.example/",
         "    rule: deny/social.txt:1 (category social): social.example and its subdomains", None),
    ],
)
def test_client_and_time_select_the_policy(
        capsys: pytest.CaptureFixture[str], rules: Path, config: Path, client: str, at: str, url: str,
        first: str, detail: str, policy: str | None) -> None:
    status, lines = check(capsys, rules, config, url, "--client", client, "--at", at)
    assert status == (0 if first.startswith("ALLOW") else 1)
    assert lines[0] == first
    assert lines[2] == detail
    if policy is None:
        assert len(lines) == 3
    else:
        assert lines[3] == f"    policy: {policy}"


def test_client_outside_clients_is_refused(capsys: pytest.CaptureFixture[str], rules: Path,
                                           config: Path) -> None:
    status, lines = check(capsys, rules, config, "https://site.example/", "--client", "203.0.113.50")
    assert status == 1
    assert lines[0] == "DENY  https://site.example/"
    assert lines[2].startswith("    decided by: config:clients: ")


@pytest.mark.parametrize("bad", [["--client", "not-an-ip"], ["--at", "yesterday"]])
def test_bad_client_or_time_exits_2(capsys: pytest.CaptureFixture[str], rules: Path, config: Path,
                                    bad: list[str]) -> None:
    status, lines = check(capsys, rules, config, "https://site.example/", *bad)
    assert status == 2
    assert lines == []


# -- usage errors -------------------------------------------------------------------------


def test_no_urls_exits_2(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    status, lines, err = run(capsys, "--rules", str(rules))
    assert status == 2
    assert lines == []
    assert "give URLs" in err


def test_invalid_policy_exits_2_naming_its_line(capsys: pytest.CaptureFixture[str], rules: Path,
                                                config: Path) -> None:
    write(rules, {"policy.yaml": POLICY.replace("deny: [ads, social]", "deny: [ads, nosuch]")})
    status, _, err = run(capsys, "--rules", str(rules), "--config", str(config), "https://site.example/")
    assert status == 2
    assert "policy.yaml:13:" in err


def test_missing_rules_folder_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "--rules", str(tmp_path / "nope"), "https://site.example/")
    assert status == 2
    assert "not a folder" in err


# -- --lint -----------------------------------------------------------------------------


def test_lint_clean_folder_exits_0(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    status, lines, _ = run(capsys, "--rules", str(rules), "--lint")
    assert status == 0
    assert lines == [
        "totals:",
        "    allow work: 1",
        "    deny ads: 2",
        "    deny paths: 1",
        "    deny social: 1",
        "0 errors, 0 duplicates, 0 shadowed",
    ]


def test_lint_malformed_line_exits_1(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    write(rules, {
        "deny/ads.txt": "ads.example\n*bad.example\nads.example\nx.ads.example\n||a.example^$script\n",
    })
    status, lines, _ = run(capsys, "--rules", str(rules), "--lint")
    assert status == 1
    assert lines[0].startswith("error: deny/ads.txt:2: ")
    assert "duplicate: deny/ads.txt:3: ads.example is already listed at deny/ads.txt:1" in lines
    assert ("shadowed: deny/ads.txt:4: x.ads.example is already covered by ads.example "
            "(deny/ads.txt:1)") in lines
    assert "skipped: 1 lines: adblock option $script" in lines
    assert "    deny ads: 3" in lines
    assert lines[-1] == "1 errors, 1 duplicates, 1 shadowed"


def test_lint_warnings_alone_exit_0(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    write(rules, {"deny/ads.txt": "ads.example\nads.example\n"})
    status, lines, _ = run(capsys, "--rules", str(rules), "--lint")
    assert status == 0
    assert lines[-1] == "0 errors, 1 duplicates, 0 shadowed"


def test_lint_reports_an_invalid_policy(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    write(rules, {"policy.yaml": "policies:\n  - name: x\n    clients: [nogroup]\n"})
    status, lines, _ = run(capsys, "--rules", str(rules), "--lint")
    assert status == 1
    assert any(line.startswith("error: ") and "policy.yaml:3:" in line for line in lines)
