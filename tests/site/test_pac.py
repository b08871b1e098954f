"""pac.py: the PAC script's text, its validation, and what browsers do with it.

Two kinds of tests. Plain Python checks of the text: the proxies line, the header, ASCII
and JSON escaping, and the ValueError for each kind of bad config value. Then the script is
run in node, next to the standard PAC helper functions as browsers define them
(`PAC_HELPERS_JS`), for a table of hosts and for every boundary of the direct networks;
the DNS helpers there record every call and refuse host names, so a script that would make
the browser resolve a name fails. Node runs as a subprocess with a timeout; without node
those tests are skipped, saying why.
"""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fwdproxy import __version__
from fwdproxy.site.pac import DIRECT_NETWORKS, PAC_CONTENT_TYPE, pac_script

PROXIES = "PROXY a:8080; PROXY b:8080"

# The standard PAC helper functions, defined as browsers do (after Mozilla's
# ascii_pac_utils.js and Chrome's pac_js_library.h), in plain ES5 so that any JavaScript
# engine (node's vm here, a headless browser later) can load it before a PAC script. The DNS
# helpers are stubs: each call is recorded in __pacLookups, and a host name (anything but an
# address literal) makes them throw, because in a browser it would be a lookup per URL.
PAC_HELPERS_JS = r"""
var __pacLookups = [];

function __pacIsIPv4(text) {
  var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (m === null) return false;
  for (var i = 1; i <= 4; i++) if (parseInt(m[i], 10) > 255) return false;
  return true;
}

function __pacIsAddress(text) {
  return __pacIsIPv4(text) || (/^[0-9a-fA-F:.]+$/.test(text) && text.indexOf(":") >= 0);
}

function __pacLookup(kind, host) {
  __pacLookups.push(kind + "(" + host + ")");
  if (!__pacIsAddress(String(host))) {
    throw new Error(kind + " called with a host name: " + host);
  }
}

function dnsResolve(host) { __pacLookup("dnsResolve", host); return String(host); }
function isResolvable(host) { __pacLookup("isResolvable", host); return true; }
function myIpAddress() { __pacLookups.push("myIpAddress()"); return "192.0.2.1"; }

function isPlainHostName(host) { return host.search("(\\.)|:") === -1; }

function dnsDomainIs(host, domain) {
  return host.length >= domain.length &&
         host.substring(host.length - domain.length) === domain;
}

function localHostOrDomainIs(host, hostdom) {
  return host === hostdom || hostdom.lastIndexOf(host + ".", 0) === 0;
}

function dnsDomainLevels(host) { return host.split(".").length - 1; }

function convert_addr(ipchars) {
  var bytes = ipchars.split(".");
  return ((bytes[0] & 0xff) << 24) | ((bytes[1] & 0xff) << 16) |
         ((bytes[2] & 0xff) << 8) | (bytes[3] & 0xff);
}

function isInNet(ipaddr, pattern, maskstr) {
  if (!__pacIsIPv4(pattern) || !__pacIsIPv4(maskstr)) return false;
  if (!__pacIsIPv4(ipaddr)) {
    ipaddr = dnsResolve(ipaddr);
    if (ipaddr === null) return false;
  }
  var mask = convert_addr(maskstr);
  return (convert_addr(ipaddr) & mask) === (convert_addr(pattern) & mask);
}

function shExpMatch(str, pattern) {
  var re = "";
  for (var i = 0; i < pattern.length; i++) {
    var c = pattern.charAt(i);
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if ("\\^$.|+()[]{}/".indexOf(c) >= 0) re += "\\" + c;
    else re += c;
  }
  return new RegExp("^" + re + "$").test(str);
}

function weekdayRange() { return false; }
function dateRange() { return false; }
function timeRange() { return false; }
function alert(message) {}
"""

# argv: helpers file, PAC file, cases file (JSON [[url, host], ...]). Prints one JSON
# result per case: the value returned or the error thrown, and the lookups it made.
NODE_RUNNER_JS = r"""
"use strict";
const fs = require("fs");
const vm = require("vm");
const [helpersPath, pacPath, casesPath] = process.argv.slice(2);
const sandbox = {};
vm.runInNewContext(fs.readFileSync(helpersPath, "utf8"), sandbox, {filename: "pac-helpers.js"});
vm.runInNewContext(fs.readFileSync(pacPath, "utf8"), sandbox, {filename: "proxy.pac"});
const cases = JSON.parse(fs.readFileSync(casesPath, "utf8"));
const results = cases.map(([url, host]) => {
  const before = sandbox.__pacLookups.length;
  let value = null, error = null;
  try {
    value = sandbox.FindProxyForURL(url, host);
  } catch (e) {
    error = String(e);
  }
  return {value, error, lookups: sandbox.__pacLookups.slice(before)};
});
process.stdout.write(JSON.stringify(results));
"""


@dataclass(frozen=True)
class Outcome:
    value: str | None
    error: str | None
    lookups: list[str]


def evaluate(directory: Path, pac: str, cases: list[tuple[str, str]]) -> list[Outcome]:
    """Run FindProxyForURL(url, host) for each case in node; one outcome per case."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so the generated PAC cannot be evaluated")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pac-helpers.js").write_text(PAC_HELPERS_JS, encoding="utf-8")
    (directory / "runner.js").write_text(NODE_RUNNER_JS, encoding="utf-8")
    (directory / "proxy.pac").write_text(pac, encoding="utf-8")
    (directory / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    result = subprocess.run(
        [node, str(directory / "runner.js"), str(directory / "pac-helpers.js"),
         str(directory / "proxy.pac"), str(directory / "cases.json")],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    outcomes = [Outcome(**item) for item in json.loads(result.stdout)]
    assert len(outcomes) == len(cases)
    return outcomes


# -- the text ----------------------------------------------------------------------------


def proxies_line(script: str) -> str:
    [line] = [line for line in script.splitlines() if line.startswith("var fwdproxyProxies = ")]
    return line


def test_content_type() -> None:
    assert PAC_CONTENT_TYPE == "application/x-ns-proxy-autoconfig"


@pytest.mark.parametrize(
    ("proxies", "expected"),
    [
        (["a:8080", "b:8080"], PROXIES),
        (["127.0.0.1:3128"], "PROXY 127.0.0.1:3128"),
        (["Proxy1.Example.:3128", "[2001:DB8:0::1]:3128", "192.0.2.7:80"],
         "PROXY proxy1.example:3128; PROXY [2001:db8::1]:3128; PROXY 192.0.2.7:80"),
        (["prøxy.example:3128"], "PROXY xn--prxy-hra.example:3128"),
        (["localhost:65535"], "PROXY localhost:65535"),
    ],
)
def test_proxies_line_lists_proxies_in_order_without_direct(proxies: list[str],
                                                            expected: str) -> None:
    script = pac_script(proxies=proxies, direct_domains=[])
    assert proxies_line(script) == f"var fwdproxyProxies = {json.dumps(expected)};"


def test_direct_domains_line_is_normalised_json() -> None:
    script = pac_script(proxies=["a:8080"], direct_domains=[
        "corp.example", ".Other.Example", "corp.example.", "Bücher.example", "_srv.example"])
    assert ('var fwdproxyDirectDomains = ["corp.example", "other.example", '
            '"xn--bcher-kva.example", "_srv.example"];') in script.splitlines()


def test_header_says_generated_and_what_it_does() -> None:
    script = pac_script(proxies=["a:8080"], direct_domains=[])
    assert script.startswith(f"// Proxy auto-config generated by fwdproxy {__version__};")
    header = script.split("\n\n", 1)[0]
    assert all(line.startswith("// ") for line in header.splitlines())
    assert "no DIRECT fallback" in header and "DIRECT: plain host names" in header


def test_script_is_ascii_deterministic_and_resolves_nothing() -> None:
    script = pac_script(proxies=["a:8080"], direct_domains=["bücher.example"])
    assert script.isascii()
    assert script == pac_script(proxies=["a:8080"], direct_domains=["bücher.example"])
    for helper in ("dnsResolve", "isResolvable", "myIpAddress", "dnsDomainIs",
                   "isPlainHostName", "shExpMatch"):
        assert helper not in script
    # the only DIRECT returned is the direct branch; the proxies string never holds one
    assert script.count('"DIRECT"') == 1
    assert "DIRECT" not in proxies_line(script)


def test_sequences_of_any_kind_are_accepted() -> None:
    assert pac_script(proxies=("a:8080", "b:8080"), direct_domains=()) == pac_script(
        proxies=["a:8080", "b:8080"], direct_domains=[])


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "message"),
    [
        pytest.param([], "at least one proxy", id="none"),
        pytest.param("a:8080", "lists of strings", id="one-string"),
        pytest.param(["a"], r"proxies\[0\]: 'a' is not host:port", id="no-port"),
        pytest.param(["a:"], "is not host:port", id="empty-port"),
        pytest.param([":8080"], "is not a host name", id="no-host"),
        pytest.param(["a:0"], "port must be 1 to 65535", id="port-0"),
        pytest.param(["a:65536"], "port must be 1 to 65535", id="port-too-big"),
        pytest.param(["a:08080"], "port must be 1 to 65535", id="port-leading-zero"),
        pytest.param(["a:-1"], "is not host:port", id="port-negative"),
        pytest.param(["http://a:8080"], "without a scheme", id="scheme"),
        pytest.param(["2001:db8::1:8080"], "in brackets", id="ipv6-no-brackets"),
        pytest.param(["[2001:db8::zz]:8080"], "invalid IPv6", id="ipv6-bad"),
        pytest.param(["[fe80::1%eth0]:8080"], "zone", id="ipv6-zone"),
        pytest.param(["[::]:3128"], "wildcard", id="ipv6-unspecified"),
        pytest.param(["0.0.0.0:3128"], "wildcard", id="ipv4-unspecified"),
        pytest.param(["256.1.1.1:80"], "invalid IPv4", id="ipv4-bad"),
        pytest.param(["010.1.1.1:80"], "invalid IPv4", id="ipv4-leading-zero"),
        pytest.param(['a"b:8080'], "is not a host name", id="quote"),
        pytest.param(["a'b:8080"], "is not a host name", id="single-quote"),
        pytest.param(["a b:8080"], "is not a host name", id="space"),
        pytest.param(["a/b:8080"], "is not a host name", id="slash"),
        pytest.param(["a:8080; DIRECT"], "is not host:port", id="directive-injection"),
        pytest.param(["a:8080\n"], "is not host:port", id="newline"),
        pytest.param(["a\\b:8080"], "is not a host name", id="backslash"),
        pytest.param(["a:8080", "A:8080"], r"proxies\[1\]: 'A:8080' is already listed",
                     id="duplicate"),
        pytest.param([8080], "expected a string", id="not-a-string"),
    ],
)
def test_bad_proxies_raise_value_error(proxies: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pac_script(proxies=proxies, direct_domains=[])


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        pytest.param('corp".example', "is not a host name", id="double-quote"),
        pytest.param("corp'.example", "is not a host name", id="single-quote"),
        pytest.param("corp example", "is not a host name", id="space"),
        pytest.param("corp/example", "is not a host name", id="slash"),
        pytest.param("corp\\example", "is not a host name", id="backslash"),
        pytest.param("</script>", "is not a host name", id="markup"),
        pytest.param("corp.example\u2028", "is not a host name", id="line-separator"),
        pytest.param("corp.example\n", "is not a host name", id="newline"),
        pytest.param("“corp”.example", "is not a host name", id="curly-quotes"),
        pytest.param("*.corp.example", "without '\\*.'; its subdomains are included",
                     id="wildcard"),
        pytest.param("10.0.0.1", "is an IP address", id="ipv4"),
        pytest.param("[::1]", "is an IP address", id="ipv6"),
        pytest.param("10.0.0.0/8", "is not a host name", id="cidr"),
        pytest.param("corp.123", "ends in a number", id="numeric-tld"),
        pytest.param("corp.0x1f", "ends in a number", id="hex-tld"),
        pytest.param("", "is not a host name", id="empty"),
        pytest.param(".", "is not a host name", id="dot"),
        pytest.param("a..b", "is not a host name", id="empty-label"),
        pytest.param("corp.example..", "is not a host name", id="two-trailing-dots"),
        pytest.param("-corp.example", "is not a host name", id="leading-hyphen"),
        pytest.param("x" * 64 + ".example", "is not a host name", id="long-label"),
        pytest.param(".".join(["a" * 60] * 5), "is not a host name", id="long-name"),
    ],
)
def test_bad_direct_domains_raise_value_error(domain: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"direct_domains\[1\]: .*" + message):
        pac_script(proxies=["a:8080"], direct_domains=["ok.example", domain])


def test_direct_domains_as_one_string_is_refused() -> None:
    with pytest.raises(ValueError, match="lists of strings"):
        pac_script(proxies=["a:8080"], direct_domains="corp.example")


# -- evaluated in node -------------------------------------------------------------------

DIRECT = "DIRECT"

TABLE: list[tuple[str, str]] = [
    # public names: the proxies in order, and nothing else
    ("example.com", PROXIES),
    ("www.example.org", PROXIES),
    ("WWW.EXAMPLE.COM", PROXIES),
    ("example.com.", PROXIES),
    # direct domains and their subdomains, on a label boundary, in any case
    ("corp.example", DIRECT),
    ("x.corp.example", DIRECT),
    ("a.b.corp.example", DIRECT),
    ("CORP.EXAMPLE", DIRECT),
    ("X.Corp.Example", DIRECT),
    ("corp.example.", DIRECT),
    ("notcorp.example", PROXIES),
    ("NotCorp.Example", PROXIES),
    ("corp.example.evil.test", PROXIES),
    # plain names and localhost
    ("intranet", DIRECT),
    ("INTRANET", DIRECT),
    ("intranet.", DIRECT),
    ("localhost", DIRECT),
    ("LocalHost", DIRECT),
    ("app.localhost", DIRECT),
    ("localhost.example", PROXIES),
    # IPv4 literals
    ("127.0.0.1", DIRECT),
    ("127.255.255.254", DIRECT),
    ("10.1.2.3", DIRECT),
    ("192.168.0.5", DIRECT),
    ("172.16.3.4", DIRECT),
    ("172.31.255.255", DIRECT),
    ("172.32.0.1", PROXIES),
    ("172.15.255.255", PROXIES),
    ("192.169.0.1", PROXIES),
    ("11.0.0.1", PROXIES),
    ("8.8.8.8", PROXIES),
    ("169.254.169.254", DIRECT),
    ("127.0.0.1.", DIRECT),
    # names that only look like addresses: compared as names, never resolved
    ("10.0.0.1.example.com", PROXIES),
    ("127.0.0.1.nip.io", PROXIES),
    ("010.0.0.1", PROXIES),
    ("999.1.1.1", PROXIES),
    # IPv6 literals, with and without brackets, in any case
    ("[::1]", DIRECT),
    ("::1", DIRECT),
    ("0:0:0:0:0:0:0:1", DIRECT),
    ("fd00::1", DIRECT),
    ("[fd00::1]", DIRECT),
    ("FD00::1", DIRECT),
    ("fc00::", DIRECT),
    ("fe80::1", DIRECT),
    ("[FE80::1]", DIRECT),
    ("fe80::1%eth0", DIRECT),
    ("febf:ffff::1", DIRECT),
    ("fec0::1", PROXIES),
    ("2001:db8::1", PROXIES),
    ("[2001:db8::1]", PROXIES),
    ("::", PROXIES),
    ("::2", PROXIES),
    ("::ffff:10.0.0.1", DIRECT),
    ("::ffff:a00:1", DIRECT),
    ("[::ffff:7f00:1]", DIRECT),
    ("::ffff:8.8.8.8", PROXIES),
    ("::ffff:808:808", PROXIES),
    # not addresses at all
    ("1:2:3", PROXIES),
    (":::", PROXIES),
    ("fd00::1::2", PROXIES),
    ("1:2:3:4:5:6:7:8:9", PROXIES),
]


@pytest.fixture(scope="module")
def table_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    pac = pac_script(proxies=["a:8080", "b:8080"], direct_domains=["corp.example"])
    cases = [(f"https://{host}/path?q=1", host) for host, _ in TABLE]
    outcomes = evaluate(tmp_path_factory.mktemp("pac-table"), pac, cases)
    return dict(zip([host for host, _ in TABLE], outcomes, strict=True))


@pytest.mark.parametrize(("host", "expected"), TABLE, ids=[host for host, _ in TABLE])
def test_find_proxy_for_url(table_outcomes: dict[str, Outcome], host: str,
                            expected: str) -> None:
    outcome = table_outcomes[host]
    assert outcome == Outcome(expected, None, [])


def test_no_case_looks_anything_up(table_outcomes: dict[str, Outcome]) -> None:
    assert [o.lookups for o in table_outcomes.values() if o.lookups] == []


def test_own_address_alone(tmp_path: Path) -> None:
    pac = pac_script(proxies=["192.0.2.10:3128"], direct_domains=[])
    outcomes = evaluate(tmp_path, pac, [("http://example.com/", "example.com"),
                                        ("http://corp.example/", "corp.example"),
                                        ("http://10.0.0.1/", "10.0.0.1")])
    assert [o.value for o in outcomes] == ["PROXY 192.0.2.10:3128"] * 2 + [DIRECT]


def test_international_direct_domain_matches_the_punycode_host(tmp_path: Path) -> None:
    pac = pac_script(proxies=["a:8080"], direct_domains=["Bücher.example"])
    hosts = ["xn--bcher-kva.example", "shop.xn--bcher-kva.example", "buecher.example"]
    outcomes = evaluate(tmp_path, pac, [(f"http://{h}/", h) for h in hosts])
    assert [o.value for o in outcomes] == [DIRECT, DIRECT, "PROXY a:8080"]


def _host_spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    if address.version == 4:
        return [str(address)]
    spellings = [address.compressed, address.exploded, f"[{address.compressed}]",
                 address.compressed.upper()]
    mapped = address.ipv4_mapped
    if mapped is not None:
        spellings.append(f"::ffff:{mapped}")
    return spellings


def _is_direct(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in DIRECT_NETWORKS if net.version == address.version)


def test_address_literals_agree_with_python_ipaddress(tmp_path: Path) -> None:
    """Every edge of every direct network, and random addresses, decide as ipaddress does."""
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for net in DIRECT_NETWORKS:
        first, last = net.network_address, net.broadcast_address
        addresses += [first, last, first + 1, last - 1]
        if int(first) > 0:
            addresses.append(first - 1)
        if int(last) < (1 << net.max_prefixlen) - 1:
            addresses.append(last + 1)
    rng = random.Random(20240607)  # fixed: a failure must reproduce
    addresses += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(400)]
    addresses += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(200)]
    # random addresses in the IPv6 direct ranges and mapped IPv4, so both sides are covered
    for prefix, bits in ((0xfc00, 7), (0xfe80, 10)):
        for _ in range(50):
            addresses.append(ipaddress.IPv6Address(
                (prefix << 112) | rng.getrandbits(128 - bits)))
    v4 = [a for a in addresses if a.version == 4]
    addresses += [ipaddress.IPv6Address((0xFFFF << 32) | int(a)) for a in v4]

    cases = [(spelling, _is_direct(a)) for a in addresses for spelling in _host_spellings(a)]
    pac = pac_script(proxies=["a:8080"], direct_domains=[])
    outcomes = evaluate(tmp_path, pac, [(f"http://{host}/", host) for host, _ in cases])
    wrong = [
        (host, outcome) for (host, direct), outcome in zip(cases, outcomes, strict=True)
        if outcome != Outcome(DIRECT if direct else "PROXY a:8080", None, [])
    ]
    assert wrong == []


def test_harness_catches_a_script_that_resolves_names(tmp_path: Path) -> None:
    """The lookup check can fail: the usual hand-written PAC resolves every host."""
    naive = """
    function FindProxyForURL(url, host) {
      if (isPlainHostName(host) || dnsDomainIs(host, "corp.example")) return "DIRECT";
      if (isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";
      return "PROXY a:8080; DIRECT";
    }
    """
    outcomes = evaluate(tmp_path, naive, [("http://10.0.0.1/", "10.0.0.1"),
                                          ("http://notcorp.example/", "notcorp.example"),
                                          ("http://example.com/", "example.com")])
    assert outcomes[0] == Outcome(DIRECT, None, [])
    # dnsDomainIs matches "notcorp.example" too: the trap pac.py avoids
    assert outcomes[1] == Outcome(DIRECT, None, [])
    assert outcomes[2].value is None
    assert outcomes[2].error == "Error: dnsResolve called with a host name: example.com"
    assert outcomes[2].lookups == ["dnsResolve(example.com)"]


def test_harness_helpers_behave_as_in_browsers(tmp_path: Path) -> None:
    probe = """
    function FindProxyForURL(url, host) {
      return JSON.stringify([
        isPlainHostName("intranet"), isPlainHostName("a.b"), isPlainHostName("::1"),
        dnsDomainIs("www.corp.example", ".corp.example"),
        localHostOrDomainIs("www", "www.corp.example"),
        localHostOrDomainIs("www.corp.example", "www.corp.example"),
        localHostOrDomainIs("ww", "www.corp.example"),
        dnsDomainLevels("a.b.c"), dnsDomainLevels("a"),
        shExpMatch("http://x.corp.example/a", "*.corp.example/*"),
        shExpMatch("http://xcorp.example/a", "*.corp.example/*"),
        shExpMatch("a+b", "a+?"), shExpMatch("ab", "a+?"),
        isInNet("172.20.1.1", "172.16.0.0", "255.240.0.0"),
        isInNet("172.32.0.1", "172.16.0.0", "255.240.0.0"),
        dnsResolve("192.0.2.1"), myIpAddress(),
        weekdayRange("MON", "FRI"), dateRange(1), timeRange(0, 24)
      ]);
    }
    """
    [outcome] = evaluate(tmp_path, probe, [("http://x/", "x")])
    assert outcome.error is None and outcome.value is not None
    assert json.loads(outcome.value) == [
        True, False, False, True, True, True, False, 2, 0, True, False, True, False,
        True, False, "192.0.2.1", "192.0.2.1", False, False, False,
    ]
    assert outcome.lookups == ["dnsResolve(192.0.2.1)", "myIpAddress()"]
