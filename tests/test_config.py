"""config.py: the safe defaults, every key of the YAML file, flags, and the errors.

Config files are written to tmp_path; every error must be a ConfigError whose message
names the file and the key (or line) at fault.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fwdproxy import config
from fwdproxy.config import Config, GatewaySettings, Limits, Listen, SniSettings, Timeouts
from fwdproxy.errors import ConfigError
from fwdproxy.policy import PortRange

ip = ipaddress.ip_address


def write(tmp_path: Path, text: str, name: str = "fwdproxy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def covers(networks: tuple[Any, ...], address: str) -> bool:
    a = ip(address)
    return any(a.version == n.version and a in n for n in networks)


# -- defaults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.254", True),
        ("192.168.0.10", True),
        ("fd00::1", True),
        ("fe80::1", True),
        ("8.8.8.8", False),
        ("172.32.0.1", False),
        ("100.64.0.1", False),
        ("2001:db8::1", False),
    ],
)
def test_default_clients_are_loopback_and_private(address: str, allowed: bool) -> None:
    assert covers(config.defaults().clients, address) is allowed


def test_default_connect_ports_are_443_only() -> None:
    assert config.defaults().connect_ports == (PortRange(443, 443),)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.1.2.3", "::1", "169.254.169.254", "0.0.0.0", "::", "224.0.0.1",
     "239.255.255.250", "ff02::1", "fe80::1", "255.255.255.255", "100.100.100.200",
     "fd00:ec2::254"],
)
def test_default_deny_destinations(address: str) -> None:
    assert covers(config.defaults().deny_destinations, address)


@pytest.mark.parametrize("address", ["93.184.216.34", "10.0.0.1", "2606:2800:220:1::1"])
def test_default_deny_destinations_leave_the_internet(address: str) -> None:
    assert not covers(config.defaults().deny_destinations, address)


def test_defaults_deny_local_and_listen() -> None:
    defaults = config.defaults()
    assert defaults.deny_local is True
    assert defaults.listen == (Listen(None, 8080),)
    assert defaults.hosts == {}
    assert defaults.rules == config.BUNDLED_RULES  # the shipped, documented examples
    assert (defaults.via, defaults.access_log) == (None, None)
    assert defaults.timeouts == Timeouts()
    assert defaults.limits == Limits()


def test_load_without_a_file_is_the_defaults() -> None:
    assert config.load() == config.defaults()


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "")) == config.defaults()
    assert config.load(write(tmp_path, "# only a comment\n")) == config.defaults()


def test_default_policy_refuses_loopback_literals() -> None:
    from fwdproxy.policy import RequestFacts

    policy = config.defaults().policy()
    facts = RequestFacts(client=ip("127.0.0.1"), method="GET", scheme="http",
                         host="169.254.169.254", port=80, ip=ip("169.254.169.254"))
    verdict = policy.decide(facts)
    assert (verdict.allowed, verdict.source) == (False, "config:deny_destinations")
    assert policy.deny_local is True


# -- every key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [
        ("8080", (Listen(None, 8080),)),
        ('"8080"', (Listen(None, 8080),)),
        ('"127.0.0.1:8080"', (Listen("127.0.0.1", 8080),)),
        ('"[::1]:8080"', (Listen("::1", 8080),)),
        ('"*:8080"', (Listen(None, 8080),)),
        ('"localhost:3128"', (Listen("localhost", 3128),)),
        ('"127.0.0.1:0"', (Listen("127.0.0.1", 0),)),
        ('["127.0.0.1:8080", "[::1]:8080", 3128]',
         (Listen("127.0.0.1", 8080), Listen("::1", 8080), Listen(None, 3128))),
    ],
)
def test_listen_forms(tmp_path: Path, yaml_value: str, expected: tuple[Listen, ...]) -> None:
    assert config.load(write(tmp_path, f"listen: {yaml_value}\n")).listen == expected


@pytest.mark.parametrize(
    ("listen", "text"),
    [(Listen(None, 8080), "*:8080"), (Listen("127.0.0.1", 80), "127.0.0.1:80"),
     (Listen("::1", 80), "[::1]:80")],
)
def test_listen_str(listen: Listen, text: str) -> None:
    assert str(listen) == text


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [
        ("443", (PortRange(443, 443),)),
        ("[443, 8443]", (PortRange(443, 443), PortRange(8443, 8443))),
        ('["8000-8999"]', (PortRange(8000, 8999),)),
        ('[443, "10000-10100", " 22 "]',
         (PortRange(443, 443), PortRange(10000, 10100), PortRange(22, 22))),
        ('["1-65535"]', (PortRange(1, 65535),)),
        ("[]", ()),
    ],
)
def test_connect_ports(tmp_path: Path, yaml_value: str, expected: tuple[PortRange, ...]) -> None:
    loaded = config.load(write(tmp_path, f"connect_ports: {yaml_value}\n"))
    assert loaded.connect_ports == expected


def test_every_key(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    path = write(tmp_path, f"""\
        listen: ["127.0.0.1:3128", "[::1]:3128"]
        rules: {rules}
        clients: [10.0.0.0/8, "2001:db8::/32", 192.168.1.7]
        connect_ports: [443, "8000-8100"]
        deny_destinations: [local, 169.254.169.254, "fd00::/8"]
        hosts:
          origin.test: 127.0.0.1
          Multi.TEST: [10.0.0.1, "::1", "::ffff:10.0.0.2"]
        via: edge-proxy
        access_log: {tmp_path / "access.log"}
        timeouts:
          header: 5
          keepalive: 30
          connect: 2.5
          dns: 1
          upstream_read: 60
          tunnel_idle: 120
          shutdown_grace: 3
        limits:
          max_connections: 100
          max_head_bytes: 16384
          pool_max_idle: 8
          pool_max_idle_per_host: 2
          pool_idle: 5.5
        """)
    loaded = config.load(path)
    assert loaded == Config(
        listen=(Listen("127.0.0.1", 3128), Listen("::1", 3128)),
        rules=rules,
        clients=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"),
                 ipaddress.ip_network("192.168.1.7/32")),
        connect_ports=(PortRange(443, 443), PortRange(8000, 8100)),
        deny_destinations=(ipaddress.ip_network("169.254.169.254/32"),
                           ipaddress.ip_network("fd00::/8")),
        deny_local=True,
        hosts={"origin.test": (ip("127.0.0.1"),),
               "multi.test": (ip("10.0.0.1"), ip("::1"), ip("10.0.0.2"))},
        via="edge-proxy",
        access_log=tmp_path / "access.log",
        timeouts=Timeouts(header=5, keepalive=30, connect=2.5, dns=1, upstream_read=60,
                          tunnel_idle=120, shutdown_grace=3),
        limits=Limits(max_connections=100, max_head_bytes=16384, pool_max_idle=8,
                      pool_max_idle_per_host=2, pool_idle=5.5),
    )
    assert isinstance(loaded.limits.max_connections, int)


@pytest.mark.parametrize(("text", "limit"), [
    ("limits:\n  max_request_body: 1048576\n", 1048576),
    ("limits:\n  max_request_body: null\n", None),
    ("limits:\n  max_connections: 7\n", None),
])
def test_max_request_body(tmp_path: Path, text: str, limit: int | None) -> None:
    loaded = config.load(write(tmp_path, text))
    assert loaded.limits.max_request_body == limit
    assert limit is None or isinstance(loaded.limits.max_request_body, int)


def test_partial_sections_keep_the_other_defaults(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, "timeouts:\n  dns: 3\nlimits:\n  max_connections: 7\n"))
    assert loaded.timeouts == Timeouts(dns=3)
    assert loaded.limits == Limits(max_connections=7)
    assert loaded.clients == config.defaults().clients


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [
        ("127.0.0.1", (ip("127.0.0.1"),)),
        ('"::1"', (ip("::1"),)),
        ("[10.0.0.1, 10.0.0.2]", (ip("10.0.0.1"), ip("10.0.0.2"))),
        ('"::ffff:10.0.0.1"', (ip("10.0.0.1"),)),  # mapped addresses become IPv4
    ],
)
def test_hosts_one_address_or_a_list(tmp_path: Path, yaml_value: str,
                                     expected: tuple[Any, ...]) -> None:
    loaded = config.load(write(tmp_path, f"hosts:\n  origin.test: {yaml_value}\n"))
    assert loaded.hosts == {"origin.test": expected}


def test_hosts_names_are_canonical(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, "hosts:\n  BÜCHER.Example.: 10.0.0.1\n"))
    assert loaded.hosts == {"xn--bcher-kva.example": (ip("10.0.0.1"),)}


def test_ipv4_mapped_networks_become_ipv4(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, 'clients: ["::ffff:10.0.0.0/104"]\n'))
    assert loaded.clients == (ipaddress.ip_network("10.0.0.0/8"),)


def test_network_with_host_bits_is_accepted(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, "clients: [10.1.2.3/8]\n"))
    assert loaded.clients == (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("yaml_value", "networks", "deny_local"),
    [
        ("[]", (), False),
        ("[10.0.0.0/8]", (ipaddress.ip_network("10.0.0.0/8"),), False),
        ("10.0.0.0/8", (ipaddress.ip_network("10.0.0.0/8"),), False),
        ("[local]", (), True),
        ("[LOCAL, 127.0.0.1]", (ipaddress.ip_network("127.0.0.1/32"),), True),
    ],
)
def test_deny_destinations_replaces_the_default(tmp_path: Path, yaml_value: str,
                                                networks: tuple[Any, ...],
                                                deny_local: bool) -> None:
    loaded = config.load(write(tmp_path, f"deny_destinations: {yaml_value}\n"))
    assert loaded.deny_destinations == networks
    assert loaded.deny_local is deny_local


# -- flags -----------------------------------------------------------------------------


def test_flags_override_the_file(tmp_path: Path) -> None:
    rules = tmp_path / "flag-rules"
    rules.mkdir()
    path = write(tmp_path, f"""\
        listen: "127.0.0.1:3128"
        rules: {tmp_path}
        via: from-file
        access_log: {tmp_path / "file.log"}
        connect_ports: [443, 8443]
        """)
    loaded = config.load(path, listen=["[::1]:9000", "9001"], rules=rules,
                         access_log=tmp_path / "flag.log", via="from-flag")
    assert loaded.listen == (Listen("::1", 9000), Listen(None, 9001))
    assert loaded.rules == rules
    assert loaded.access_log == tmp_path / "flag.log"
    assert loaded.via == "from-flag"
    assert loaded.connect_ports == (PortRange(443, 443), PortRange(8443, 8443))  # from the file


def test_flags_without_a_file(tmp_path: Path) -> None:
    loaded = config.load(listen=["127.0.0.1:0"], via="v")
    assert loaded.listen == (Listen("127.0.0.1", 0),)
    assert loaded.via == "v"
    assert loaded.deny_destinations == config.defaults().deny_destinations


def test_bad_flag_names_the_command_line() -> None:
    with pytest.raises(ConfigError, match=r"command line.*listen"):
        config.load(listen=["nope"])
    with pytest.raises(ConfigError, match=r"command line.*via"):
        config.load(via="two words")


@pytest.mark.parametrize("via", ["two words", "a,b", "tab\there", "nul\x00", "del\x7f", "bell\x07",
                                 "caf\u00e9", "cr\rlf"])
def test_via_must_be_one_visible_ascii_token(via: str) -> None:
    # Via goes out with every message without h11 checking it again (checked_headers).
    with pytest.raises(ConfigError, match="visible ASCII"):
        config.load(via=via)


def test_default_via_name_is_a_token_whatever_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "odd host,name\x01")
    assert config.defaults().via_name(3128) == "odd-host-name-:3128"


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("timeouts:\n  nope: 1\n", "nope"),
        ("limits:\n  max_sockets: 1\n", "max_sockets"),
        ("clients: [10.0.0.0/33]\n", "clients"),
        ("clients: [not-a-network]\n", "clients"),
        ("deny_destinations: [10.0.0.0/8, 300.0.0.0/8]\n", "deny_destinations"),
        ('connect_ports: ["10-5"]\n', "connect_ports"),
        ('connect_ports: ["a-b"]\n', "connect_ports"),
        ("connect_ports: [0]\n", "connect_ports"),
        ("connect_ports: [65536]\n", "connect_ports"),
        ('connect_ports: ["443, 8443"]\n', "connect_ports"),
        ("connect_ports: 1.5\n", "connect_ports"),
        ('listen: "host:port"\n', "listen"),
        ('listen: "127.0.0.1:65536"\n', "listen"),
        ('listen: "127.0.0.1"\n', "listen"),
        ('listen: "::1:8080"\n', "listen"),
        ('listen: "[::1]"\n', "listen"),
        ("listen: []\n", "listen"),
        ("listen:\n", "listen"),
        ("timeouts:\n  connect: -1\n", "timeouts.connect"),
        ("timeouts:\n  connect: 0\n", "timeouts.connect"),
        ("timeouts:\n  dns: .nan\n", "timeouts.dns"),
        ("timeouts:\n  dns: .inf\n", "timeouts.dns"),
        ("timeouts:\n  dns: true\n", "timeouts.dns"),
        ('timeouts:\n  dns: "5"\n', "timeouts.dns"),
        ("timeouts: 5\n", "timeouts"),
        ("limits:\n  max_connections: 1.5\n", "limits.max_connections"),
        ("limits:\n  max_head_bytes: -1\n", "limits.max_head_bytes"),
        ("limits:\n  max_head_bytes: null\n", "limits.max_head_bytes"),
        ("limits:\n  max_request_body: 1.5\n", "limits.max_request_body"),
        ("limits:\n  max_request_body: 0\n", "limits.max_request_body"),
        ('limits:\n  max_request_body: "10M"\n', "limits.max_request_body"),
        ("hosts:\n  origin.test: nope\n", "origin.test"),
        ("hosts:\n  origin.test: []\n", "origin.test"),
        ("hosts:\n  bad host!: 10.0.0.1\n", "bad host!"),
        ("hosts: [origin.test]\n", "hosts"),
        ('via: "two words"\n', "via"),
        ('via: "a,b"\n', "via"),
        ('via: "bücher"\n', "via"),
        ("safe_search: maybe\n", "safe_search"),
        ("connect_sni: strict\n", "connect_sni.mode"),
        ("connect_sni:\n  match: fuzzy\n", "connect_sni.match"),
        ("connect_sni:\n  missing: maybe\n", "connect_sni.missing"),
        ("connect_sni:\n  not_tls: drop\n", "connect_sni.not_tls"),
        ("connect_sni:\n  ech: inner\n", "connect_sni.ech"),
        ('connect_sni:\n  ports: ["9-1"]\n', "connect_sni.ports"),
        ("connect_sni:\n  sni: yes\n", "sni"),
        ("timeouts:\n  client_hello: 0\n", "timeouts.client_hello"),
        ("limits:\n  client_hello_bytes: 1.5\n", "limits.client_hello_bytes"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


@pytest.mark.parametrize(("text", "expected"), [
    ("", SniSettings()),
    ("connect_sni: log\n", SniSettings(mode="log")),
    ("connect_sni: off\n", SniSettings(mode="off")),  # YAML reads a bare off as false
    ("connect_sni:\n  mode: off\n", SniSettings(mode="off")),
    ("connect_sni:\n  match: site\n  ports: [443, \"8443-8444\"]\n  missing: allow\n"
     "  not_tls: allow\n  ech: refuse\n",
     SniSettings(match="site", ports=(PortRange(443, 443), PortRange(8443, 8444)), missing="allow",
                 not_tls="allow", ech="refuse")),
])
def test_connect_sni(tmp_path: Path, text: str, expected: SniSettings) -> None:
    settings = config.load(write(tmp_path, text)).connect_sni
    assert settings == expected
    assert settings.applies(443) is (settings.mode != "off")
    assert not settings.applies(22)


@pytest.mark.parametrize(("text", "expected"), [
    ("", GatewaySettings()),
    ("gateway: true\n", GatewaySettings(enabled=True)),
    ("gateway: false\n", GatewaySettings(enabled=False)),
    ("gateway:\n  sandbox: false\n", GatewaySettings(enabled=True, sandbox=False)),
    ("gateway:\n  enabled: false\n  sandbox: false\n", GatewaySettings(enabled=False, sandbox=False)),
])
def test_gateway(tmp_path: Path, text: str, expected: GatewaySettings) -> None:
    assert config.load(write(tmp_path, text)).gateway == expected


def test_gateway_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert config.load(write(tmp_path, f"gateway: {{ca_file: {ca}}}\n")).gateway.ca_file == ca


@pytest.mark.parametrize(("text", "key"), [
    ("gateway: yes please\n", "gateway.enabled"),
    ("gateway:\n  sandbox: 1\n", "gateway.sandbox"),
    ("gateway:\n  ca_file: /nonexistent/ca.pem\n", "gateway.ca_file"),
    ("gateway:\n  colour: blue\n", "colour"),
])
def test_gateway_errors(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config.load(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="top level must be a mapping") as info:
        config.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("listen: 8080\nclients: [a\n  b: c\n", 3),
        ("a: b\n  c: d\n", 2),
        ("listen:\t8080\n", 1),
        ("via: x\n\n\nhosts: {a: [}\n", 4),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}:{line}:")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        config.load(path)
    assert str(path) in str(info.value)


def test_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        config.load(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"via: caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        config.load(path)
    assert str(path) in str(info.value)


def test_rules_folder_from_flag_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rules"
    with pytest.raises(ConfigError, match="rules") as info:
        config.load(rules=missing)
    assert str(missing) in str(info.value)


def test_rules_must_be_a_folder_not_a_file(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "rules.txt"
    not_a_folder.write_text("example.com\n")
    with pytest.raises(ConfigError, match="rules"):
        config.load(rules=not_a_folder)


def test_rules_folder_from_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rules"
    path = write(tmp_path, f"rules: {missing}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert str(missing) in message and "rules" in message
    assert str(path) in message


def test_unknown_keys_of_mixed_types(tmp_path: Path) -> None:
    path = write(tmp_path, "1: a\nfoo: b\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(path) in str(info.value)


def test_unknown_key_message_lists_the_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "listne: 8080\n")
    with pytest.raises(ConfigError, match="listne") as info:
        config.load(path)
    assert "listen" in str(info.value)


# -- workers ---------------------------------------------------------------------------


def test_workers_default_is_one_process(tmp_path: Path) -> None:
    assert config.defaults().workers == 0
    assert config.load(write(tmp_path, "via: x\n")).workers == 0


@pytest.mark.parametrize(("yaml_value", "expected"),
                         [("2", 2), ("1", 1), ('"3"', 3), ("256", 256), ("0x10", 16)])
def test_workers_number(tmp_path: Path, yaml_value: str, expected: int) -> None:
    assert config.load(write(tmp_path, f"workers: {yaml_value}\n")).workers == expected


@pytest.mark.parametrize("yaml_value", ["auto", "AUTO", '" auto "'])
def test_workers_auto_is_one_per_usable_core(tmp_path: Path, yaml_value: str) -> None:
    workers = config.load(write(tmp_path, f"workers: {yaml_value}\n")).workers
    assert workers >= 1
    if hasattr(os, "sched_getaffinity"):
        assert workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("yaml_value", ["0", "-1", "257", "many", "true", "false", "1.5", "2.0",
                                        '""', "[2]", "{n: 2}", '"2 workers"', '"+2"', "null"])
def test_workers_invalid_values_name_file_and_key(tmp_path: Path, yaml_value: str) -> None:
    path = write(tmp_path, f"workers: {yaml_value}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "workers" in message


def test_workers_from_the_command_line_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 2\n")
    assert config.load(path, workers="3").workers == 3
    assert config.load(path).workers == 2
    assert config.load(workers="auto").workers >= 1
    assert config.load(workers="1").workers == 1


@pytest.mark.parametrize("value", ["0", "x", "-2", "257", ""])
def test_bad_workers_flag_names_the_command_line(value: str) -> None:
    with pytest.raises(ConfigError, match=r"command line.*workers"):
        config.load(workers=value)


@pytest.mark.parametrize("value", ["²", "①"])
def test_workers_superscript_digit_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"command line.*workers"):
        config.load(workers=value)


@pytest.mark.parametrize("text", ["80²", "①", "٣١٢٨"])
def test_listen_port_in_other_scripts_digits_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="is not \\[HOST:\\]PORT"):
        config.parse_listen(text, "listen")


@pytest.mark.parametrize("name", ["auto", "h11", "httptools"])
def test_http_parser(tmp_path: Path, name: str) -> None:
    assert config.load(write(tmp_path, f"http_parser: {name}\n")).http_parser == name
    assert config.defaults().http_parser == "auto"


def test_unknown_http_parser_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"http_parser.*'picohttp' is not one of auto, h11, httptools"):
        config.load(write(tmp_path, "http_parser: picohttp\n"))
