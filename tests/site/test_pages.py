"""pages.py: the proxy's own HTML escapes every value that came from a request."""

from __future__ import annotations

from html import escape

import pytest

from fwdproxy import __version__
from fwdproxy.site.pages import error_page, info_page

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "</code></p><h1>pwned</h1>",
    "a&b",
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["detail", "host", "source"])
def test_error_page_escapes_request_values(field: str, value: str) -> None:
    values = {"detail": "plain detail", "host": "example.com", "source": "config:clients"}
    values[field] = value
    page = error_page(403, "Access denied", values["detail"], host=values["host"],
                      source=values["source"]).decode()
    assert value not in page
    assert escape(value, quote=True) in page
    assert "<script" not in page and "<img" not in page and "<h1>pwned" not in page


def test_error_page_escapes_the_title() -> None:
    page = error_page(400, "<b>Bad</b>", "x").decode()
    assert "<b>Bad</b>" not in page
    assert "400 &lt;b&gt;Bad&lt;/b&gt;" in page


def test_error_page_content() -> None:
    page = error_page(403, "Access denied", "CONNECT to port 22 is not allowed",
                      host="example.com:22", source="config:connect_ports")
    text = page.decode()
    assert page.startswith(b"<!DOCTYPE html>")
    assert "<title>403 Access denied</title>" in text
    assert "CONNECT to port 22 is not allowed" in text
    assert "<code>example.com:22</code>" in text
    assert "<code>config:connect_ports</code>" in text
    assert __version__ in text
    assert '<meta charset="utf-8">' in text


def test_error_page_without_host_or_source() -> None:
    text = error_page(502, "Bad gateway", "could not connect").decode()
    assert "Destination" not in text
    assert "Decided by" not in text


def test_error_page_is_utf8() -> None:
    page = error_page(400, "Bad request", "caf\u00e9 \u2603", host="b\u00fccher.example")
    assert "caf\u00e9 \u2603" in page.decode("utf-8")


@pytest.mark.parametrize("address", ["127.0.0.1:8080", "[::1]:3128", "proxy.example:8080"])
def test_info_page_mentions_the_address(address: str) -> None:
    text = info_page(address).decode()
    assert f"<code>{address}</code>" in text
    assert f"curl -x http://{address} " in text
    assert f"http_proxy=http://{address}" in text
    assert "forward proxy" in text


def test_info_page_escapes_the_address() -> None:
    text = info_page("<script>x</script>:8080").decode()
    assert "<script>" not in text
    assert "&lt;script&gt;x&lt;/script&gt;:8080" in text
