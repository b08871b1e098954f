"""The configuration's values: frozen dataclasses with the built-in (safe) defaults.

Each constant says where its number comes from; `Config` is what the rest of the proxy is
handed, once, at start-up.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fwdproxy.policy import Policy, PortRange
from fwdproxy.policy.engine import IPNetwork
from fwdproxy.policy.names import IPAddress
from fwdproxy.proxy.headers import is_via_token

if TYPE_CHECKING:
    from fwdproxy.config import LoadedRules

DEFAULT_PORT = 8080

DEFAULT_CLIENTS = (
    "127.0.0.0/8", "::1/128",
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "fc00::/7", "fe80::/10",
)
# "local" stands for every address of this machine, whatever its interfaces are.
DEFAULT_DENY_DESTINATIONS = (
    "local",
    "127.0.0.0/8", "::1/128",                       # loopback
    "0.0.0.0/8", "::/128",                          # "this host", unspecified
    "169.254.0.0/16", "fe80::/10",                  # link-local, incl. 169.254.169.254
    "fd00:ec2::254/128", "100.100.100.200/32",      # AWS IPv6 and Alibaba metadata
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32",  # multicast, broadcast
)
DEFAULT_CONNECT_PORTS = (443,)
# The rules folder shipped with fwdproxy (documented examples and the cloud-metadata safety
# list), used when none is given: package data, so an installed wheel has it as a checkout
# does (the checkout's top-level rules/ is a link to it).
BUNDLED_RULES = Path(str(resources.files("fwdproxy").joinpath("rules")))
BLOCK_TEMPLATE = "blockpage.html"
SAFE_SEARCH_FILE = "safesearch.txt"
POLICY_FILE = "policy.yaml"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every network wait's deadline, in seconds."""

    # Whole request head from a new connection; nginx and Apache use 60 s, 30 s is the
    # most the issue allows, and 20 s still serves a person on a slow mobile link.
    header: float = 20.0
    # A kept-alive client connection waiting for its next request (nginx: 75 s).
    keepalive: float = 60.0
    # TCP connect to an origin, over all its addresses (curl's default is 300, browsers ~30).
    connect: float = 15.0
    # A DNS lookup (glibc's default: 5 s per try, 2 tries).
    dns: float = 10.0
    # Silence from an origin while a response is due or streaming (Squid's read_timeout
    # is 15 min; 5 min lets long polls through while freeing a dead origin's slot).
    upstream_read: float = 300.0
    # A client that sends no request-body bytes, or reads no response bytes, for this long
    # while a request is under way (nginx: client_body_timeout and send_timeout, 60 s).
    client_idle: float = 60.0
    # A tunnel with no bytes either way (Squid: 15 min for read_timeout on tunnels).
    tunnel_idle: float = 900.0
    # From a tunnel's 200 to the whole TLS ClientHello (connect_sni): a client sends it
    # at once, so this only bounds one that sends nothing, or too little.
    client_hello: float = 10.0
    # After SIGTERM/SIGINT, how long requests in flight may take to finish.
    shutdown_grace: float = 10.0
    # How often the rules folder is checked for changed files (a stat per file).
    rules_poll: float = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes and counts that bound what clients and origins can make us hold."""

    # Concurrent client connections; past it a new client gets 503 at once.
    max_connections: int = 10_000
    # Request head (request line + headers); Squid's request_header_max_size is 64 KB.
    max_head_bytes: int = 65_536
    # Request body; None accepts any length a 64-bit parser can hold (Squid's
    # request_body_max_size is unlimited by default too). Larger gets 413.
    max_request_body: int | None = None
    # Idle upstream connections kept for reuse, in all and per scheme/host/port.
    pool_max_idle: int = 1024
    pool_max_idle_per_host: int = 256
    # How long an idle upstream connection is kept (origins often close at 60 s or less).
    pool_idle: float = 30.0
    # The most a tunnel's first bytes are read for a whole ClientHello (connect_sni): two
    # full TLS records; real ones take 0.5 to 2 KiB, post-quantum key shares included.
    client_hello_bytes: int = 32_768


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``auth:``: proxy authentication against an htpasswd file."""

    htpasswd: Path
    realm: str = "fwdproxy"
    exempt: tuple[IPNetwork, ...] = ()  # clients that need no password


@dataclass(frozen=True, slots=True)
class PacSettings:
    """``pac:``: what /proxy.pac and /wpad.dat tell browsers."""

    proxies: tuple[str, ...] = ()         # in failover order; empty: this proxy itself
    direct_domains: tuple[str, ...] = ()  # reached without the proxy, with subdomains


@dataclass(frozen=True, slots=True)
class ParentProxy:
    """``upstream:``: a parent proxy that every request goes through, but `direct` ones."""

    host: str                        # canonical host or address text
    port: int
    authorization: bytes | None      # the Proxy-Authorization value for the parent
    direct: tuple[str, ...] = ()     # domains (and their subdomains) reached directly

    def carries(self, host: str) -> bool:
        """Does a request for canonical `host` go through the parent?"""
        return not any(host == d or host.endswith("." + d) for d in self.direct)


SNI_MODES = ("enforce", "log", "off")
SNI_MATCHES = ("exact", "site")
SNI_OUTCOMES = ("refuse", "allow")
SNI_ECH = ("outer", "refuse")


@dataclass(frozen=True, slots=True)
class SniSettings:
    """``connect_sni:``: what the TLS ClientHello that starts a CONNECT tunnel must name.

    Attributes:
        mode: ``enforce`` refuses what the rules refuse; ``log`` only logs what it would
            refuse; ``off`` reads nothing (the tunnel is judged by its CONNECT line alone).
        match: ``exact``: a tunnel to a name must send that name; ``site``: any name of the
            same registrable domain (Public Suffix List) will do, judged by the rules too.
        ports: tunnels to these ports must start with a ClientHello; others are not read.
        missing: a ClientHello without a server name: ``refuse`` or ``allow``.
        not_tls: anything but a ClientHello (or none within the time and byte limits).
        ech: Encrypted Client Hello: ``outer`` judges the outer (public) name it shows;
            ``refuse`` refuses it. Chromium sends an ECH extension on every connection (a
            decoy with the real name outside), so ``refuse`` stops it too.
    """

    mode: str = "enforce"
    match: str = "exact"
    ports: tuple[PortRange, ...] = (PortRange(443, 443),)
    missing: str = "refuse"
    not_tls: str = "refuse"
    ech: str = "outer"

    def applies(self, port: int) -> bool:
        """Is a tunnel to `port` read for its ClientHello?"""
        return self.mode != "off" and any(port in r for r in self.ports)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``gateway:``: the web gateway (``/browse/``), for browsers without proxy settings.

    Attributes:
        enabled: serve ``/browse/`` (off by default: it is a second way in).
        sandbox: proxied documents get a CSP sandbox: their scripts run in an opaque
            origin and cannot reach the proxy's other pages or another site's.
        ca_file: certificates to verify https sites with, instead of the system's store.
    """

    enabled: bool = False
    sandbox: bool = True
    ca_file: Path | None = None


LOG_FORMATS = ("fwdproxy", "squid", "combined", "json")


@dataclass(frozen=True, slots=True)
class Listen:
    """One listening address; host None binds every interface (IPv4 and IPv6)."""

    host: str | None
    port: int
    proxy_protocol: bool = False  # expects HAProxy's PROXY header from trusted_proxies

    def __str__(self) -> str:
        if self.host is None:
            return f"*:{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration, passed down explicitly (no globals)."""

    listen: tuple[Listen, ...] = (Listen(None, DEFAULT_PORT),)
    rules: Path | None = BUNDLED_RULES if BUNDLED_RULES.is_dir() else None
    contact: str = "your network administrator"
    clients: tuple[IPNetwork, ...] = ()
    connect_ports: tuple[PortRange, ...] = ()
    deny_destinations: tuple[IPNetwork, ...] = ()
    deny_local: bool = True
    hosts: Mapping[str, tuple[IPAddress, ...]] = field(default_factory=dict)
    via: str | None = None
    access_log: Path | None = None
    access_log_format: str = "fwdproxy"
    auth: AuthSettings | None = None
    pac: PacSettings = PacSettings()
    trusted_proxies: tuple[IPNetwork, ...] = ()  # may send PROXY protocol headers
    admin_clients: tuple[IPNetwork, ...] = (  # see the status page and /metrics
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    upstream: ParentProxy | None = None
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    workers: int = 0  # worker processes under a supervisor; 0: serve in this one process
    http_parser: str = "auto"  # auto (httptools when installed), h11 or httptools
    fast_path: bool = True  # plain GETs relayed as bytes (with httptools; see proxy/fastlane)
    connect_sni: SniSettings = SniSettings()
    safe_search: bool = False  # connect to the safe-search addresses (rules/safesearch.txt)
    gateway: GatewaySettings = GatewaySettings()

    def via_name(self, bound_port: int) -> str:
        """Our Via name: configured, or host name and port (unique per node in a chain)."""
        if self.via:
            return self.via
        host = "".join(c if is_via_token(c) else "-" for c in socket.gethostname())
        return f"{host}:{bound_port}"

    def policy(self, loaded: LoadedRules | None = None) -> Policy:
        """The pure policy for this configuration and rule set (listeners are added once
        bound)."""
        return Policy(
            clients=self.clients,
            connect_ports=self.connect_ports,
            deny_destinations=self.deny_destinations,
            deny_local=self.deny_local,
            rules=loaded.rules if loaded is not None else None,
            policies=loaded.policies if loaded is not None else None,
            safe_search=self.safe_search,
        )
