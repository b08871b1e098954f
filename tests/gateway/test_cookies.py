"""gateway.cookies: each site's cookies under its own gateway path, nothing else sent."""

from __future__ import annotations

import pytest

from fwdproxy.gateway.cookies import cookies_for_site, set_cookie_for_browser

SITE = "/browse/https/example.org/"


@pytest.mark.parametrize(("value", "path", "expected"), [
    ("sid=abc; Path=/; Domain=.example.org; Secure; HttpOnly; SameSite=Lax", "/login",
     "fwdgw_sid=abc; Path=/browse/https/example.org/; HttpOnly; SameSite=Lax"),
    # Without Secure, browsers refuse SameSite=None and Partitioned: the cookie whole.
    ("t=1; Path=/; Secure; SameSite=None; Partitioned", "/login",
     "fwdgw_t=1; Path=/browse/https/example.org/"),
    ("t=1; samesite = none ; Max-Age=60", "/login",
     "fwdgw_t=1; Path=/browse/https/example.org/; Max-Age=60"),
    ("a=1", "/dir/page?x=1", "fwdgw_a=1; Path=/browse/https/example.org/dir"),
    ("a=1", "/page", "fwdgw_a=1; Path=/browse/https/example.org/"),
    ("a=1; path=/shop/", "/", "fwdgw_a=1; Path=/browse/https/example.org/shop/"),
    ("a=1; Path=relative", "/d/p", "fwdgw_a=1; Path=/browse/https/example.org/d"),
    ("a=; Max-Age=0", "/", "fwdgw_a=; Path=/browse/https/example.org/; Max-Age=0"),
    ("a=1; Expires=Wed, 09 Jun 2021 10:18:14 GMT", "/",
     "fwdgw_a=1; Path=/browse/https/example.org/; Expires=Wed, 09 Jun 2021 10:18:14 GMT"),
    ("__Host-x=1; Secure; Path=/", "/", "fwdgw___Host-x=1; Path=/browse/https/example.org/"),
])
def test_set_cookie(value: str, path: str, expected: str) -> None:
    assert set_cookie_for_browser(value, SITE, path) == expected


@pytest.mark.parametrize("value", ["novalue", "=x", "; Path=/"])
def test_not_a_cookie(value: str) -> None:
    assert set_cookie_for_browser(value, SITE, "/") is None


def test_only_marked_cookies_reach_the_site() -> None:
    sent = ["fwdgw_sid=abc; proxy_session=1; fwdgw_a=1", "other=2; fwdgw_=x"]
    assert cookies_for_site(sent) == "sid=abc; a=1"
    assert cookies_for_site(["session=1"]) is None
    assert cookies_for_site([]) is None
