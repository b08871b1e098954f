"""policy/sni.py: what the connect_sni settings decide about a ClientHello on their own.

Rows: what the hello showed, the CONNECT target, the settings → a verdict (allowed or
refused, by its source), the name the host rules must judge, or None (nothing left).
"""

from __future__ import annotations

from typing import Any

import pytest

from fwdproxy.policy.engine import Verdict
from fwdproxy.policy.sni import HelloSeen, judge_hello

DEFAULTS = {"match": "exact", "missing": "refuse", "not_tls": "refuse", "ech": "outer"}


def same_site(one: str, other: str) -> bool:  # a stand-in for the Public Suffix List
    return one.split(".", 1)[-1] == other.split(".", 1)[-1]


def judge(seen: HelloSeen, target: str = "www.site.test", *, ip: bool = False,
          **settings: Any) -> Verdict | str | None:
    return judge_hello(seen, target_host=target, target_is_ip=ip, same_site=same_site,
                       **{**DEFAULTS, **settings})


def outcome(result: Verdict | str | None) -> object:
    if isinstance(result, Verdict):
        return ("allow" if result.allowed else "refuse", result.source)
    return result


@pytest.mark.parametrize(("seen", "target", "ip", "settings", "expected"), [
    (HelloSeen("www.site.test"), "www.site.test", False, {}, None),
    (HelloSeen("denied.test"), "203.0.113.7", True, {}, "denied.test"),
    (HelloSeen("www.site.test"), "203.0.113.7", True, {}, "www.site.test"),
    (HelloSeen("other.test"), "www.site.test", False, {}, ("refuse", "config:connect_sni.match")),
    (HelloSeen("api.site.test"), "www.site.test", False, {}, ("refuse", "config:connect_sni.match")),
    (HelloSeen("api.site.test"), "www.site.test", False, {"match": "site"}, "api.site.test"),
    (HelloSeen("other.test"), "www.site.test", False, {"match": "site"},
     ("refuse", "config:connect_sni.match")),
    (HelloSeen(None), "www.site.test", False, {}, ("refuse", "config:connect_sni.missing")),
    (HelloSeen(None), "203.0.113.7", True, {}, ("refuse", "config:connect_sni.missing")),
    (HelloSeen(None), "203.0.113.7", True, {"missing": "allow"}, ("allow", "config:connect_sni.missing")),
    (HelloSeen(problem="plain text"), "www.site.test", False, {},
     ("refuse", "config:connect_sni.not_tls")),
    (HelloSeen(problem="plain text"), "www.site.test", False, {"not_tls": "allow"},
     ("allow", "config:connect_sni.not_tls")),
    (HelloSeen("www.site.test", ech=True), "www.site.test", False, {}, None),
    (HelloSeen("public.cdn.test", ech=True), "www.site.test", False, {}, "public.cdn.test"),
    (HelloSeen("www.site.test", ech=True), "www.site.test", False, {"ech": "refuse"},
     ("refuse", "config:connect_sni.ech")),
    (HelloSeen(None, ech=True), "www.site.test", False, {"ech": "refuse"},
     ("refuse", "config:connect_sni.ech")),
], ids=["same-name", "address-target-name-judged", "address-target-allowed-name-judged",
        "fronting", "sibling-under-exact", "sibling-under-site", "stranger-under-site",
        "no-sni", "no-sni-address", "no-sni-allowed", "not-tls", "not-tls-allowed",
        "grease-ech-same-name", "real-ech-outer-name-judged", "ech-refused", "ech-refused-first"])
def test_judge_hello(seen: HelloSeen, target: str, ip: bool, settings: dict[str, Any],
                     expected: object) -> None:
    assert outcome(judge(seen, target, ip=ip, **settings)) == expected


def test_every_refusal_says_why() -> None:
    fronting = judge(HelloSeen("other.test"))
    assert isinstance(fronting, Verdict)
    assert "other.test" in fronting.reason and "www.site.test" in fronting.reason
    not_tls = judge(HelloSeen(problem="plain text ('GET / HTTP/1.1'...), not TLS"))
    assert isinstance(not_tls, Verdict) and "plain text" in not_tls.reason
