"""gateway/html.py: every link of a page comes out as a gateway link, the rest verbatim.

A table of (page, rewritten page) through the real `LinkRewriter`; the same output for
every split of each input in two (and hypothesis over a realistic page); a page with no
links byte-identical; streaming and the bound on what is held back; hostile markup, read
back with a small model of a browser's tokenizer to check that no link leaves the gateway.
"""

from __future__ import annotations

import ast
import html
import inspect
import itertools
import re
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdproxy.gateway import html as html_module
from fwdproxy.gateway import tags as tags_module
from fwdproxy.gateway.html import HtmlRewriter, rewrite_html
from fwdproxy.gateway.urls import LinkRewriter

PAGE = "https://site.example/dir/page.html"
D = "/browse/https/site.example/dir/"  # the page's directory, in the gateway
S = "/browse/https/site.example/"  # the site's root


def links() -> LinkRewriter:
    return LinkRewriter(PAGE)


def chunked(text: str, cuts: list[int], max_pending: int = 1 << 20) -> str:
    rewriter = HtmlRewriter(links(), max_pending=max_pending)
    bounds = [0, *cuts, len(text)]
    out = "".join(rewriter.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    return out + rewriter.close()


CASES: list[tuple[str, str]] = [
    # one-URL attributes, on any element
    ('<a href="x.html">x</a>', f'<a href="{D}x.html">x</a>'),
    ('<a href="/root">', f'<a href="{S}root">'),
    ('<a href="https://other.example/p?q=1#f">', '<a href="/browse/https/other.example/p?q=1#f">'),
    ('<img src="//cdn.example/i.png">', '<img src="/browse/https/cdn.example/i.png">'),
    ('<a href="javascript:go()">', '<a href="javascript:go()">'),
    ('<a href="#frag">', '<a href="#frag">'),
    ('<a href="">', '<a href="">'),
    ('<form action="post.cgi"><button formaction="/b">',
     f'<form action="{D}post.cgi"><button formaction="{S}b">'),
    ('<video poster="p.jpg" src="v.mp4">', f'<video poster="{D}p.jpg" src="{D}v.mp4">'),
    ('<object data="o.swf" codebase="/cb/">', f'<object data="{D}o.swf" codebase="{S}cb/">'),
    ('<body background="bg.gif">', f'<body background="{D}bg.gif">'),
    ('<blockquote cite="c.html">', f'<blockquote cite="{D}c.html">'),
    ('<img longdesc="l.html" lowsrc="l.gif">', f'<img longdesc="{D}l.html" lowsrc="{D}l.gif">'),
    ('<html manifest="m.appcache">', f'<html manifest="{D}m.appcache">'),
    ('<x-custom href="any">', f'<x-custom href="{D}any">'),
    # case, quoting, escaping, duplicates, booleans, self-closing
    ('<A HREF="x">', f'<A HREF="{D}x">'),
    ("<IMG SRC=i.png ALT='a'>", f'<IMG SRC="{D}i.png" ALT="a">'),
    ("<a href='x' title=\"it's\">", f'<a href="{D}x" title="it&#x27;s">'),
    ('<a href="?a=1&amp;b=2">', f'<a href="{D}page.html?a=1&amp;b=2">'),
    ('<a href="?a=1&copy=2&b=&quot;">', f'<a href="{D}page.html?a=1&amp;copy=2&amp;b=&quot;">'),
    ('<a href="x&#39;y">', f'<a href="{D}x&#x27;y">'),
    ('<a title="caf&eacute; &hellip;" href=x>', f'<a title="caf&#xE9; &#x2026;" href="{D}x">'),
    ('<a href="a" href="b">', f'<a href="{D}a" href="{D}b">'),
    ('<input type=image src=i.png disabled>', f'<input type="image" src="{D}i.png" disabled>'),
    ('<img src="i.png"/>', f'<img src="{D}i.png"/>'),
    ('<img src=i.png />', f'<img src="{D}i.png"/>'),
    ('<br/><hr />', '<br/><hr />'),
    ('<svg><use xlink:href="sprite.svg#i"/></svg>', f'<svg><use xlink:href="{D}sprite.svg#i"/></svg>'),
    ('<svg><use xlink:href="#local"/></svg>', '<svg><use xlink:href="#local"/></svg>'),
    # srcset and ping
    ('<img srcset="a.png 1x, b.png 2x">', f'<img srcset="{D}a.png 1x, {D}b.png 2x">'),
    ('<img srcset="a.png">', f'<img srcset="{D}a.png">'),
    ('<img srcset="a,b.png 100w,c.png 200w">', f'<img srcset="{D}a,b.png 100w,{D}c.png 200w">'),
    ('<img srcset="a.png,, b.png">', f'<img srcset="{D}a.png,, {D}b.png">'),
    ('<img srcset="a.png (x,y) 1x, data:image/gif;base64,R0lG 2x">',
     f'<img srcset="{D}a.png (x,y) 1x, data:image/gif;base64,R0lG 2x">'),
    ('<link rel=preload imagesrcset="w.png 480w">', f'<link rel="preload" imagesrcset="{D}w.png 480w">'),
    ('<a ping="/p1  https://t.example/p2" href=x>',
     f'<a ping="{S}p1  /browse/https/t.example/p2" href="{D}x">'),
    # style attributes
    ('<div style="background:url(bg.png)">', f'<div style="background:url(&quot;{D}bg.png&quot;)">'),
    ("<div style='color:red'>", "<div style='color:red'>"),
    # meta refresh
    ('<meta http-equiv="refresh" content="5; url=next.html">',
     f'<meta http-equiv="refresh" content="5; url={D}next.html">'),
    ('<META HTTP-EQUIV=Refresh CONTENT="0;URL=\'/n\'">',
     f'<META HTTP-EQUIV="Refresh" CONTENT="0;URL=&#x27;{S}n&#x27;">'),
    ('<meta http-equiv="refresh" content="0;next.html">',
     f'<meta http-equiv="refresh" content="0;{D}next.html">'),
    ('<meta http-equiv="refresh" content="3">', '<meta http-equiv="refresh" content="3">'),
    ('<meta name="x" content="0;url=next.html">', '<meta name="x" content="0;url=next.html">'),
    # base href
    ('<base href="/other/"><a href="y">', f'<base href="{S}other/"><a href="{S}other/y">'),
    ('<base href="https://cdn.example/b/"><base href="/ignored/"><img src=i>',
     '<base href="/browse/https/cdn.example/b/"><base href="/browse/https/cdn.example/ignored/">'
     '<img src="/browse/https/cdn.example/b/i">'),
    ('<base href="http://[bad"><a href=x>', f'<base href="/browse"><a href="{D}x">'),
    # dropped: integrity, CSP meta
    ('<script src="s.js" integrity="sha384-x" crossorigin></script>',
     f'<script src="{D}s.js" crossorigin></script>'),
    ('<link integrity="sha256-x">', '<link>'),
    ('<meta http-equiv="Content-Security-Policy" content="default-src \'self\'"><p>', '<p>'),
    # srcdoc: a page of its own
    ('<iframe srcdoc="<a href=&quot;z&quot;>z</a>"></iframe>',
     f'<iframe srcdoc="&lt;a href=&quot;{D}z&quot;&gt;z&lt;/a&gt;"></iframe>'),
    # <style> and <script>
    ('<style>a{background:url(u.png)} @import "i.css";</style>',
     f'<style>a{{background:url("{D}u.png")}} @import "{D}i.css";</style>'),
    ("<style>/* <a href='x'> */</style><a href=x>", f"<style>/* <a href='x'> */</style><a href=\"{D}x\">"),
    ('<script>var s = "<a href=\'x\'>";</script>', '<script>var s = "<a href=\'x\'>";</script>'),
    ("<SCRIPT>if (a</b) {}</SCRIPT ><a href=x>", f'<SCRIPT>if (a</b) {{}}</SCRIPT ><a href="{D}x">'),
    ('<script>x</script x=">"><a href=x>', f'<script>x</script x=">"><a href="{D}x">'),
    ('<script>x</ script><a href="x"></script>', '<script>x</ script><a href="x"></script>'),
    ('<script/><a href="x"></script>', '<script/><a href="x"></script>'),
    ('<title><a href="x"></title>', '<title><a href="x"></title>'),
    ('<textarea><script></textarea><a href=x>', f'<textarea><script></textarea><a href="{D}x">'),
    # inside svg nothing is raw text: a browser reads markup there; noscript as without JS
    ('<svg><style>a{fill:url(g.svg#g)}</style></svg>',
     f'<svg><style>a{{fill:url("{D}g.svg#g")}}</style></svg>'),
    ('<svg><style><![CDATA[a{fill:url(g.svg)}]]></style></svg>',
     f'<svg><style><![CDATA[a{{fill:url("{D}g.svg")}}]]></style></svg>'),
    ('<svg><script><a href="x"/></script></svg>', f'<svg><script><a href="{D}x"/></script></svg>'),
    ('<noscript><style></noscript><img src=i></style>', '<noscript><style></noscript><img src=i></style>'),
    ('<noscript><img src="i.gif"></noscript><style>b{}</style>',
     f'<noscript><img src="{D}i.gif"></noscript><style>b{{}}</style>'),
    ('<svg><animate attributeName="href" values="a.svg;b.svg"/><set attributeName=href to=c.svg /></svg>',
     f'<svg><animate attributeName="href" values="{D}a.svg;{D}b.svg"/>'
     f'<set attributeName="href" to="{D}c.svg"/></svg>'),
    # comments end where browsers end them
    ('<!-- <a href="x"> --><a href=x>', f'<!-- <a href="x"> --><a href="{D}x">'),
    ('<!--><a href=x>-->', f'<!--><a href="{D}x">-->'),
    ('<!---><a href=x>-->', f'<!---><a href="{D}x">-->'),
    ('<!-- a --!><a href=x>', f'<!-- a --!><a href="{D}x">'),
    ('<!-- a -- ><a href=x>-->', '<!-- a -- ><a href=x>-->'),
    ('</p x="><script>"><a href=x>', f'</p x="><script>"><a href="{D}x">'),
    ('</ p><a href=x></><a href=x>', f'</ p><a href="{D}x"></><a href="{D}x">'),
    ('<![CDATA[ a > <a href=x> ]]>', f'<![CDATA[ a > <a href="{D}x"> ]]>'),
    # start tags are read as browsers read them
    ('<p title="a>b">', '<p title="a>b">'),  # a browser reads it the same way: verbatim
    ('<p x=="a>b">', '<p x=="a>b">'),  # x is '="a' to a browser: the tag ends at "a>"
    ('<p x=\x85"y href=x">', f'<p x="\x85&quot;y" href="{D}x&quot;">'),
    ('<a\x00 href="x">', f'<a\x00 href="{D}x">'),
    ('<a x= "a>b" href=y>', f'<a x="a&gt;b" href="{D}y">'),
    ('<a title="x"href=y/>', f'<a title="x" href="{D}y/">'),
    ('<a href=x / >', f'<a href="{D}x">'),
    # values are decoded where they are read, and all of them when the tag is rebuilt
    ('<a title="a&amp;b&lt;" data-x="&#233;" href=x>',
     f'<a title="a&amp;b&lt;" data-x="&#xE9;" href="{D}x">'),
    ('<p class="a&amp;b" title="&eacute;" data=&copy=1>',
     f'<p class="a&amp;b" title="&#xE9;" data="{D}&amp;copy=1">'),
    ('<a href="#f" title="&eacute;">', '<a href="#f" title="&eacute;">'),
    ('<a href=x title="&amp;" title2>', f'<a href="{D}x" title="&amp;" title2>'),
    ('<img alt=&lt; src="i.png" srcset="j.png 2x" ALT="&#x26;">',
     f'<img alt="&lt;" src="{D}i.png" srcset="{D}j.png 2x" ALT="&amp;">'),
    ('<link integrity="x" title="&amp;">', '<link title="&amp;">'),
    ('<meta http-equiv="&#82;efresh" content="0;url=n.html">',
     f'<meta http-equiv="Refresh" content="0;url={D}n.html">'),
    ('<base href="&#47;b/"><a href=y>', f'<base href="{S}b/"><a href="{S}b/y">'),
    ('<base HREF=/x/ href=/y/><a href=z>', f'<base HREF="{S}x/" href="{S}y/"><a href="{S}x/z">'),
    ('<base href href=/y/><a href=z>', f'<base href href="{S}y/"><a href="{D}z">'),
    ('<svg><set attributeName="hr&#101;f" to="c.svg"/></svg>',
     f'<svg><set attributeName="href" to="{D}c.svg"/></svg>'),
    # end tags, plain and not
    ('<b>x</B ><a href=x></a/></a\nb><a href=x>', f'<b>x</B ><a href="{D}x"></a/></a\nb><a href="{D}x">'),
    ('<script>a</SCRIPT><a href=x>', f'<script>a</SCRIPT><a href="{D}x">'),
    ('<style>a{background:url(u)}</style\n><a href=x>',
     f'<style>a{{background:url("{D}u")}}</style\n><a href="{D}x">'),
    ('<style>a{background:url(u)}</Style><a href=x>',
     f'<style>a{{background:url("{D}u")}}</Style><a href="{D}x">'),
    ('<svg><style>a{}</style></svg><style>b{background:url(u)}</style>',
     f'<svg><style>a{{}}</style></svg><style>b{{background:url("{D}u")}}</style>'),
    ('<math></math></math><style>b{background:url(u)}</style>',
     f'<math></math></math><style>b{{background:url("{D}u")}}</style>'),
]


@pytest.mark.parametrize(("page", "expected"), CASES)
def test_rewrite(page: str, expected: str) -> None:
    assert rewrite_html(page, links()) == expected


@pytest.mark.parametrize("page", [page for page, _ in CASES])
def test_every_split_in_two_gives_the_same_output(page: str) -> None:
    whole = rewrite_html(page, links())
    for cut in range(len(page) + 1):
        assert chunked(page, [cut]) == whole, cut


VERBATIM = """<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN">
<?xml-stylesheet x?>
<HTML Lang=en><Head>
<META charset="latin-1"><TITLE>T &amp; t &lt;here&gt;</TITLE>
<!-- a comment with <tags> and -- dashes --><!----><!-->
</head>
<body   class = 'a b'  data-x=1 hidden>
<p id=p1 >AT&T &amp &copy &#39; &#x27; &#X27; &notit; &unknown; & &# &#; caf\xe9 \x00 a < b > c</p>
<![CDATA[ raw <stuff> ]]><!bogus comment><? pi ?></ p></>
<br/><br /><img alt="x" width=1/>
<table border=1><tr><td colspan="2"   >cell</td ></tr></table>
<script type="text/javascript">if (a < b && c > d) { s = "</div>"; }</script>
<style>p > a { color: red }</style>
<textarea>a &lt; <b></textarea><svg viewBox="0 0 1 1"><circle r="1"/></svg>
</body></html>
"""


def test_a_page_without_links_comes_out_byte_identical() -> None:
    assert rewrite_html(VERBATIM, links()) == VERBATIM
    assert chunked(VERBATIM, list(range(1, len(VERBATIM)))) == VERBATIM


REALISTIC = (VERBATIM.replace("</body></html>\n", "") + """
<link rel="stylesheet" href="/css/site.css" integrity="sha384-abc" crossorigin="anonymous">
<link rel="icon" href="//static.example/fav.ico"><base href="/dir/sub/">
<meta http-equiv="refresh" content="30; URL='/reload?x=1&amp;y=2'">
<style>
  @import url("print.css") print;
  body { background: #fff url('img/bg.png') no-repeat; }
  .logo::after { content: "<a href='x'>"; }
</style>
<nav><ul>
""" + "".join(f'  <li><a href="page{i}.html?q={i}&amp;r=&eacute;" title="Page {i} &gt; more"'
              f' ping="/track?{i}">Page {i}</a> <img src="/img/{i}.png" alt="">'
              f' <img srcset="s{i}.png 1x, s{i}@2x.png 2x" style="border:url(b{i}.png)"></li>\n'
              for i in range(40)) + """</ul></nav>
<!-- <a href="commented.html"> -->
<form action="/search" method=get><input name=q><button formaction=go>Go</button></form>
<iframe srcdoc="<p>Hi <a href='in.html'>in</a></p>" src="frame.html"></iframe>
<svg><use xlink:href="/sprites.svg#x"></use><style>.s{fill:url(#g)}</style></svg>
<script>document.write("<a href='x'>" + 1 < 2);</script>
<noscript><img src="/pixel.gif"></noscript>
<p>The end &mdash; &#8212; &amp; AT&T</p>
</body></html>
""")


def test_realistic_page() -> None:
    out = rewrite_html(REALISTIC, links())
    assert len(REALISTIC) > 5000
    assert 'integrity' not in out
    assert f'href="{S}dir/sub/page3.html?q=3&amp;r=&#xE9;"' in out
    assert f'ping="{S}track?3"' in out
    assert '<script>document.write("<a href=\'x\'>" + 1 < 2);</script>' in out
    assert f'@import url("{S}dir/sub/print.css") print;' in out
    assert f'srcdoc="&lt;p&gt;Hi &lt;a href=&quot;{S}dir/sub/in.html&quot;&gt;in' in out
    assert '<!-- <a href="commented.html"> -->' in out
    assert '<p>The end &mdash; &#8212; &amp; AT&T</p>' in out
    assert_no_link_leaves(out, "static.example")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REALISTIC)), max_size=30))
def test_any_chunking_of_a_realistic_page(cuts: list[int]) -> None:
    assert chunked(REALISTIC, sorted(cuts)) == rewrite_html(REALISTIC, links())


def test_one_character_chunks() -> None:
    assert chunked(REALISTIC, list(range(1, len(REALISTIC)))) == rewrite_html(REALISTIC, links())


# -- streaming and the bound -----------------------------------------------------------

MIB = 1 << 20
CHUNK = 64 * 1024


def streamed(parts: list[str], lag: int) -> str:
    """Feeds `parts`; every output so far must lag the input by at most `lag` chars."""
    rewriter = HtmlRewriter(links())
    fed = written = 0
    out: list[str] = []
    for part in parts:
        fed += len(part)
        out.append(rewriter.feed(part))
        written += len(out[-1])
        assert written >= fed - lag
    out.append(rewriter.close())
    return "".join(out)


def chunks(text: str) -> list[str]:
    return [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]


def test_a_large_inline_script_streams() -> None:
    line = "if (a < b) { s = '</scr' + 'ipt>'; } // <a href='x'>\n"
    page = "<script>" + line * (5 * MIB // len(line)) + "</script>"
    assert streamed(chunks(page), lag=64) == page


def test_a_large_text_node_streams() -> None:
    page = "<p>" + "lorem &amp; ipsum &copy dolor AT&T sit; " * (5 * MIB // 40) + "</p>"
    assert streamed(chunks(page), lag=64) == page


def test_a_large_style_element_streams() -> None:
    page = "<style>" + "p > a { color: red }\n" * (MIB // 21) + "</style>"
    assert streamed(chunks(page), lag=4096) == page


def test_a_large_page_of_markup_streams() -> None:
    unit = ('<div class="row"><p>Some text, <b>bold</b> &amp; <i>more</i> text: a sentence or two'
            ' of ordinary prose, as pages have between their tags, long enough to be read.</p>'
            '<a href="/x?a=1&amp;b=2">link</a><!-- c --></div>\n')
    page = unit * (20 * MIB // len(unit))
    rewriter = HtmlRewriter(links())
    units_out = 0
    for index, part in enumerate(chunks(page)):
        units_out += rewriter.feed(part).count("</div>")
        assert units_out >= (index + 1) * CHUNK // len(unit) - 1
    units_out += rewriter.close().count("</div>")
    assert units_out == len(page) // len(unit)


def test_an_unclosed_comment_past_the_bound_is_shown_as_text() -> None:
    page = "<p>a</p><!-- " + "x" * 3000 + '<a href="http://evil.example/">' + "y" * 3000
    out = chunked(page, list(range(100, len(page), 100)), max_pending=1000)
    assert out.startswith("<p>a</p>&lt;!-- xxx")
    assert "<!--" not in out
    assert "evil.example" not in out.replace("/browse/http/evil.example", "")
    assert_no_link_leaves(out)


def test_an_unclosed_tag_past_the_bound_is_shown_as_text() -> None:
    page = '<img alt="' + "<a href='http://evil.example/'>" * 100 + "rest"
    out = chunked(page, list(range(50, len(page), 50)), max_pending=1000)
    assert out.startswith('&lt;img alt="&lt;a href=')
    assert_no_link_leaves(out)


def test_what_is_held_back_stays_bounded() -> None:
    rewriter = HtmlRewriter(links(), max_pending=10_000)
    out = [rewriter.feed("<!--")]
    for _ in range(1000):
        out.append(rewriter.feed("x" * 1000))
        assert len(rewriter._parser.rawdata) + rewriter._parser._held_size <= 11_000
    out.append(rewriter.close())
    assert "".join(out) == "&lt;!--" + "x" * 1_000_000


def test_a_long_run_after_an_ampersand_streams() -> None:
    page = "<p>a&b" + "c" * (3 * MIB) + " d&#x" + "y" * MIB + "</p>"
    assert streamed(chunks(page), lag=128) == page


def test_a_large_attribute_within_the_bound_is_rewritten() -> None:
    value = "data:image/png;base64," + "A" * (MIB // 2)
    page = f'<img src="{value}" alt=x><img src=i.png>'
    expected = f'<img src="{value}" alt=x><img src="{D}i.png">'
    assert chunked(page, list(range(CHUNK, len(page), CHUNK))) == expected


# -- end of input and hostile markup ---------------------------------------------------

@pytest.mark.parametrize(("page", "expected"), [
    ('<a href=">', ""),  # an unfinished start tag at the end is dropped, as browsers do
    ('<p>a<a href="http://evil.example/', "<p>a"),
    ("<p>a<b", "<p>a"),
    ("</", "</"),
    ("<", "<"),
    ("<!", "<!"),
    ("<!-", "<!-"),
    ("<!-- a <a href=x> b", "<!-- a <a href=x> b"),  # a comment to the end: hidden
    ("</p", "</p"),
    ("&", "&"),
    ("&am", "&am"),
    ("&#", "&#"),
    ("&#x1", "&#x1"),
    ("<script>a</script", "<script>a</script"),
    ("<style>a{b:url(x", f'<style>a{{b:url("{D}x")'),
    ("<![CDATA[x", "<![CDATA[x"),
    ("<?pi", "<?pi"),
    ("\x00<\x00>\x00", "\x00<\x00>\x00"),
    ("<![ x <a href=y>", "<![ x <a href=y>"),
    ("<![foo[ x ]]> <a href=y>", f'<![foo[ x ]]> <a href="{D}y">'),
    ("<a href='x", ""),
])
def test_end_of_input(page: str, expected: str) -> None:
    assert rewrite_html(page, links()) == expected


def test_srcdoc_nesting_is_bounded() -> None:
    page = "<a href=x>"
    for _ in range(20):
        page = f'<iframe srcdoc="{html.escape(page)}"></iframe>'
    out = rewrite_html(page, links())
    for _ in range(8):  # the first 8 levels are pages of their own, the 9th is empty
        assert out.startswith('<iframe srcdoc="')
        out = html.unescape(out[len('<iframe srcdoc="'):-len('"></iframe>')])
    assert out == '<iframe srcdoc=""></iframe>'


def test_the_output_is_latin1_even_when_css_decodes_an_escape() -> None:
    out = rewrite_html('<style>a{background:url(\\20AC.png)}</style><p style="b:url(\\20AC)">', links())
    assert max(map(ord, out)) <= 0xFF
    assert f'url("{D}\\20ac .png")' in out
    assert f'url(&quot;{D}\\20ac &quot;)' in out


def test_feed_after_close_is_an_error() -> None:
    rewriter = HtmlRewriter(links())
    rewriter.close()
    with pytest.raises(ValueError):
        rewriter.feed("x")


# A small model of a browser's tokenizer (HTML content, no tree building): which start
# tags, with which attributes, a browser finds in the output.
RAW_TEXT = ("script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes")
LINK_ATTRS = {"href", "src", "action", "formaction", "poster", "data", "background", "cite",
              "longdesc", "lowsrc", "manifest", "codebase", "xlink:href", "ping", "srcset",
              "imagesrcset", "style"}
SINGLE_LINK_ATTRS = LINK_ATTRS - {"ping", "srcset", "imagesrcset", "style"}
WS = "\t\n\f\r "


def browser_tag(doc: str, pos: int) -> tuple[str, list[tuple[str, str]], int] | None:
    """The tag that starts at doc[pos] ("<" or "</"): name, attributes, end; None at EOF."""
    start = pos = pos + (2 if doc.startswith("</", pos) else 1)
    while pos < len(doc) and doc[pos] not in WS + "/>":
        pos += 1
    name = doc[start:pos].lower()
    attrs: list[tuple[str, str]] = []
    while True:
        while pos < len(doc) and doc[pos] in WS + "/":
            pos += 1
        if pos >= len(doc):
            return None
        if doc[pos] == ">":
            return name, attrs, pos + 1
        attr_start = pos
        pos += 1
        while pos < len(doc) and doc[pos] not in WS + "/>=":
            pos += 1
        attr = doc[attr_start:pos].lower()
        while pos < len(doc) and doc[pos] in WS:
            pos += 1
        value = ""
        if doc.startswith("=", pos):
            pos += 1
            while pos < len(doc) and doc[pos] in WS:
                pos += 1
            if doc[pos:pos + 1] in ("'", '"'):
                close = doc.find(doc[pos], pos + 1)
                if close < 0:
                    return None
                value, pos = doc[pos + 1:close], close + 1
            else:
                value_start = pos
                while pos < len(doc) and doc[pos] not in WS + ">":
                    pos += 1
                value = doc[value_start:pos]
        attrs.append((attr, html.unescape(value)))


def browser_start_tags(doc: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Without JavaScript (<noscript> holds markup); <svg> and <math> counted, not built."""
    tags: list[tuple[str, list[tuple[str, str]]]] = []
    pos, foreign = 0, {"svg": 0, "math": 0}
    while (pos := doc.find("<", pos)) >= 0:
        following = doc[pos + 1:pos + 2]
        if doc.startswith("<!--", pos):
            if doc.startswith(">", pos + 4) or doc.startswith("->", pos + 4):
                pos += 5 if doc.startswith(">", pos + 4) else 6
                continue
            match = re.compile("--!?>").search(doc, pos + 4)
            if match is None:
                return tags
            pos = match.end()
        elif following in "!?" or (following == "/" and not re.match("[A-Za-z>]", doc[pos + 2:pos + 3])):
            end = doc.find(">", pos + 2)
            if end < 0:
                return tags
            pos = end + 1
        elif re.match("/?[A-Za-z]", doc[pos + 1:pos + 3]) or doc.startswith("</>", pos):
            tag = browser_tag(doc, pos) if not doc.startswith("</>", pos) else ("", [], pos + 3)
            if tag is None:
                return tags
            name, attrs, pos = tag
            closing = doc[pos - 2] == "/"
            if following == "/" and name in foreign:
                foreign[name] = max(foreign[name] - 1, 0)
            if following != "/" and name:
                tags.append((name, attrs))
                if name in foreign and not closing:
                    foreign[name] += 1
                if name in RAW_TEXT and not any(foreign.values()):
                    match = re.compile(f"</{name}[{WS}/>]", re.I).search(doc, pos)
                    if match is None:
                        return tags
                    pos = match.start()
        else:
            pos += 1
    return tags


def leaves(value: str, host: str) -> bool:
    absolute = LinkRewriter(PAGE).absolute(value)
    return absolute is not None and urlsplit(absolute).hostname == host


def assert_no_link_leaves(doc: str, host: str = "evil.example") -> None:
    for name, attrs in browser_start_tags(doc):
        refresh = name == "meta" and ("http-equiv", "refresh") in [(a, v.lower()) for a, v in attrs]
        for attr, value in attrs:
            if attr in SINGLE_LINK_ATTRS:
                assert not leaves(value, host), (name, attr, value)
            elif attr in LINK_ATTRS or (refresh and attr == "content"):  # lists, CSS: each piece
                pieces = re.split("[\t\n\f\r ,;'\"()=]+", value)
                assert not any(leaves(piece, host) for piece in pieces), (name, attr, value)
            if name == "iframe" and attr == "srcdoc":
                assert_no_link_leaves(value, host)


@pytest.mark.parametrize("page", [
    '<a href="http://evil.example/">', "<!--><img src=//evil.example/>",
    "<title></title x><a href=//evil.example/>",
    "<iframe srcdoc='<a href=//evil.example/>'>", '<meta http-equiv=Refresh content="0;url=//evil.example/">',
    "<a href=\\\\evil.example\\>", '<p x=\x85"a href=//evil.example/">',
])
def test_the_browser_model_finds_links_out(page: str) -> None:
    with pytest.raises(AssertionError):
        assert_no_link_leaves(page)
    assert_no_link_leaves(rewrite_html(page, links()))


EVIL = ['<a href="http://evil.example/">', "<a href='//evil.example/'>", "<IMG SRC=HTTP://evil.example/i>",
        '<img srcset="a.png 1x, //evil.example/b 2x">', '<p style="background:url(//evil.example/c)">',
        '<meta http-equiv=refresh content="0;url=//evil.example/">', "<a\thref=\\\\evil.example\\>",
        "<a ping='/x //evil.example/p'>", "<form action=//evil.example/f>"]
MARKUP = ["<!--", "-->", "--!>", "<!-->", "-- >", "<script>", "</script>", "</script x>", "</ script>",
          "<script/>", "<style>", "</style>", "<title>", "</title>", "<textarea>", "</textarea>",
          "<iframe>", "</iframe>", "<svg>", "</svg>", "<math>", "</math>", "<noscript>", "</noscript>",
          "<![CDATA[", "]]>", "<!", "<?", "</", "<", ">", "/>", '"', "'", "=", "==", " ", "\n",
          '<a title="', "<a title='", "<p x=", "<p x=\x85", "\x00", "\x0b", "\x85", "\xa0", "&", "&#",
          "&amp", "&lt;", '<iframe srcdoc="', "&quot;", '<base href="http://[">', "<a", "</a>",
          "<!doctype html>", "<plaintext>", "<xmp>", "</xmp>", "<noembed>", "</noembed>", "x",
          '</p x="', "</a x='", "</>", "</ p>"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(EVIL + MARKUP), max_size=25), st.data())
def test_hostile_markup_never_lets_a_link_out(pieces: list[str], data: st.DataObject) -> None:
    page = "".join(pieces)
    out = rewrite_html(page, links())
    assert_no_link_leaves(out)
    assert max(map(ord, out), default=0) <= 0xFF
    cuts = data.draw(st.lists(st.integers(0, len(page)), max_size=4))
    assert chunked(page, sorted(cuts)) == out


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=300))
def test_any_latin1_text_is_handled(page: str) -> None:
    out = rewrite_html(page, links())
    assert max(map(ord, out), default=0) <= 0xFF
    assert_no_link_leaves(out)


@pytest.mark.parametrize("page", [
    '<a href=">', "</", "<!", "\x00" * 10, "<a " + '"' * 50, "<![", "<![ ", "<![if x]>", "<!---->-->",
    "<a b=='c>d'>", "<svg></svg></svg></math></noscript>", "&#" * 100, "&" + "a" * 100,
    "<style>" + "(" * 5000 + "</style>", "<a " + "x=1 " * 5000 + ">",
])
def test_hostile_inputs_do_not_raise(page: str) -> None:
    for cuts in ([], list(range(1, len(page)))):
        assert max(map(ord, chunked(page, cuts)), default=0) <= 0xFF


TAG_ALPHABET = ["a", "b", "=", '"', "'", " ", "\t", "\n", "\f", "\r", "/", ">", "<", "&", "\x0b",
                "\xa0", "\x85", "-", "\xe9", "\x00"]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(["", "<a", "x", "</"]), st.lists(st.sampled_from(TAG_ALPHABET), max_size=16))
def test_a_tag_read_in_one_match_is_read_as_step_by_step(before: str, chars: list[str]) -> None:
    text = before + "".join(chars)
    assert tags_module.scan_tag(text, len(before)) == tags_module._scan(text, len(before))


def test_every_attribute_the_rewriter_reads_is_decoded() -> None:
    # Only the attributes in _READ are decoded for every tag: `_attr` must test no other.
    tree = ast.parse(textwrap.dedent(inspect.getsource(html_module._Tokenizer._attr)))
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "key":
            for side in node.comparators:
                if isinstance(side, ast.Name):
                    read |= getattr(html_module, side.id)
                else:
                    value = ast.literal_eval(side)
                    read |= set(value) if isinstance(value, tuple) else {value}
    assert {"href", "srcset", "ping", "style", "content", "srcdoc", "to", "values"} <= read
    assert read <= html_module._READ


def test_the_module_stays_pure() -> None:
    tree = ast.parse(Path(html_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "html", "re", "dataclasses", "collections", "typing", "fwdproxy"}
