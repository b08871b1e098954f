"""The proxy's own HTML: error pages, the page at its own address and /blocked.

Every value that came from a request (host, URL, detail text) is HTML-escaped here, once.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from string import Template
from typing import TYPE_CHECKING

from fwdproxy import __version__

if TYPE_CHECKING:
    from fwdproxy.site.refusals import Refusal

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;"
    "color:#222}h1{font-size:1.4em}code,pre{background:#f3f3f3;padding:.1em .3em}"
    "footer{margin-top:2em;color:#777;font-size:.85em}"
)


def _page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n"
        f"<footer>fwdproxy {escape(__version__)}</footer>\n</body></html>\n"
    ).encode()


def error_page(status: int, title: str, detail: str, *, host: str | None = None,
               source: str | None = None) -> bytes:
    """An HTML error page.

    Args:
        status: the HTTP status shown in the heading.
        title: short reason ("Bad gateway").
        detail: one sentence on what went wrong.
        host: the destination concerned, if any.
        source: the rule or setting that decided, for denials.
    """
    rows = [f"<p>{escape(detail)}</p>"]
    if host:
        rows.append(f"<p>Destination: <code>{escape(host)}</code></p>")
    if source:
        rows.append(f"<p>Decided by: <code>{escape(source)}</code></p>")
    return _page(f"{status} {title}", "\n".join(rows))


def info_page(proxy_address: str) -> bytes:
    """The page served at the proxy's own address: what this is and how to use it."""
    address = escape(proxy_address)
    body = f"""<p>This is <b>fwdproxy</b>, a forward proxy. It is not a web site: point your
browser or tools at it as their HTTP and HTTPS proxy.</p>
<h2>Browsers</h2>
<p>Proxy settings: HTTP proxy <code>{address}</code>, and use the same proxy for HTTPS.</p>
<h2>Command line</h2>
<pre>curl -x http://{address} https://example.org/
export http_proxy=http://{address} https_proxy=http://{address}
git config --global http.proxy http://{address}
pip install --proxy http://{address} PACKAGE</pre>
<h2>Something blocked?</h2>
<p><a href="/blocked">Recently blocked for you</a> lists what this proxy refused for your
computer, with the rule that decided: browsers show no page for a blocked HTTPS site.</p>"""
    return _page("fwdproxy", body)


def gateway_page() -> bytes:
    """/browse: the web gateway's form, and what it cannot do."""
    body = """<p>Type an address to visit it through this proxy, without changing your
browser's settings. Pages come through the proxy's rules: what it blocks stays blocked.</p>
<form method="get" action="/browse"><input name="url" size="60" autofocus
placeholder="https://example.org/"> <button>Go</button></form>
<h2>What to expect</h2>
<ul><li>Links, images, style sheets, forms and cookies are rewritten so that they stay
inside the gateway; each site's cookies are kept apart from the others'.</li>
<li><b>JavaScript is passed through unchanged</b>: addresses a script builds itself are
not rewritten, so script-heavy sites may break or fetch things directly.</li>
<li>Every site shares this proxy's address, so the browser cannot keep sites apart as
it normally does; pages are sandboxed to limit what one site's scripts can reach.</li></ul>"""
    return _page("fwdproxy web gateway", body)


def blocked_page(refusals: Sequence[Refusal], *, who: str, contact: str) -> bytes:
    """/blocked: what the proxy recently refused for `who` (a computer's address, or a
    user), newest first, each with the rule that decided; nobody else's."""
    if refusals:
        rows = ["<table><tr><th>Time (UTC)</th><th>Address</th><th>Category</th><th>Rule</th>"
                "<th>Why</th></tr>"]
        for refusal in refusals:
            stamp = datetime.fromtimestamp(refusal.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            address = refusal.target if refusal.method != "CONNECT" else f"https://{refusal.target}"
            if refusal.server_name is not None:
                address += f" (asked for {refusal.server_name})"
            rows.append(f"<tr><td>{stamp}</td><td><code>{escape(address)}</code></td>"
                        f"<td>{escape(refusal.category or '-')}</td><td><code>{escape(refusal.source)}</code>"
                        f"</td><td>{escape(refusal.reason)}</td></tr>")
        rows.append("</table>")
        listing = "\n".join(rows)
    else:
        listing = "<p>Nothing was blocked for you recently.</p>"
    body = f"""<p>What this proxy refused recently for <b>{escape(who)}</b>, newest first. A
browser shows no page for a blocked HTTPS site (only a connection error): it is listed
here. If you need one of these for your work, contact {escape(contact)} and quote its
rule.</p>
{listing}"""
    return _page("Recently blocked for you", body)


# $-placeholders a site's own rules/blockpage.html may use; every value is HTML-escaped.
BLOCK_FIELDS = ("url", "category", "rule", "source", "client", "time", "contact", "policy", "reason")

DEFAULT_BLOCK_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Blocked: $url</title>
<style>""" + _STYLE + """ dt{font-weight:bold;margin-top:.6em}</style></head>
<body>
<h1>This page is blocked</h1>
<p>$reason</p>
<dl>
<dt>Address</dt><dd><code>$url</code></dd>
<dt>Category</dt><dd>$category</dd>
<dt>Rule</dt><dd><code>$source</code> ($rule)</dd>
<dt>Policy</dt><dd>$policy</dd>
<dt>Your computer</dt><dd>$client</dd>
<dt>Time</dt><dd>$time</dd>
</dl>
<p>If you need this page for your work, contact $contact and quote the rule above.</p>
<footer>fwdproxy</footer>
</body></html>
"""


def block_page(template: str | None, fields: dict[str, str]) -> bytes:
    """The page a blocked user sees, from a site's template or the built-in one.

    Args:
        template: text with ``$url``, ``$category``, ``$rule``, ``$source``, ``$client``,
            ``$time``, ``$contact``, ``$policy`` and ``$reason`` placeholders; unknown
            placeholders are left as they are.
        fields: the values, unescaped; each is HTML-escaped here.
    """
    values = {name: escape(fields.get(name) or "-") for name in BLOCK_FIELDS}
    return Template(template or DEFAULT_BLOCK_TEMPLATE).safe_substitute(values).encode()
