"""gateway/css.py: every URL a style sheet loads comes out as a gateway link.

A table of (sheet, rewritten sheet) with a stand-in `rewrite` that prefixes "/browse/X/",
then the same rewriting for every split of each input into chunks (and hypothesis over
CSS-ish text), the bound on what is held back, and a realistic sheet through the real
`LinkRewriter`.
"""

from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdproxy.gateway import css as css_module
from fwdproxy.gateway.css import CssRewriter, rewrite_css
from fwdproxy.gateway.urls import LinkRewriter


def fake(url: str) -> str:
    """Like LinkRewriter.url: what fetches nothing (data:, #frag, empty) stays as it is."""
    if url == "" or url.startswith(("data:", "#")):
        return url
    return "/browse/X/" + url


def chunked(text: str, cuts: list[int], max_token: int = 65536) -> str:
    rewriter = CssRewriter(fake, max_token=max_token)
    bounds = [0, *cuts, len(text)]
    return "".join(rewriter.feed(text[a:b]) for a, b in itertools.pairwise(bounds)) + rewriter.close()


X = "/browse/X/"
CASES: list[tuple[str, str, str]] = [
    # url(): every spelling
    ("plain", "a{background:url(a.png)}", f'a{{background:url("{X}a.png")}}'),
    ("double quotes, spaces", 'b{background: url( "a.png" )}', f'b{{background: url("{X}a.png")}}'),
    ("single quotes", "url('a.png')", f'url("{X}a.png")'),
    ("upper case", "URL(a.png)", f'url("{X}a.png")'),
    ("mixed case quoted", "Url( 'a.png' )", f'url("{X}a.png")'),
    ("newline and tab inside", "url(\n\ta.png\n)", f'url("{X}a.png")'),
    ("two on a line", "url(a) url('b')", f'url("{X}a") url("{X}b")'),
    ("style attribute", "background: url(a.png); color: red", f'background: url("{X}a.png"); color: red'),
    ("CDO and CDC", "<!--url(a.png)-->", f'<!--url("{X}a.png")-->'),
    ("after a dot", ".url(a.png)", f'.url("{X}a.png")'),
    # escapes are decoded before rewrite, and the output is escaped again
    ("escaped paren", r"url(a\)b.png)", f'url("{X}a)b.png")'),
    ("hex escapes", r"url(\28 x\29.png)", f'url("{X}(x).png")'),
    ("hex escape, 6 digits", r"url(\000041.png)", f'url("{X}A.png")'),
    ("escaped quote in string", r'url("a\"b.png")', f'url("{X}a\\"b.png")'),
    ("backslash comes back escaped", r'url("a\\b")', f'url("{X}a\\\\b")'),
    ("newline comes back as \\a", r'url("a\a b")', f'url("{X}a\\a b")'),
    ("escaped newline in a string", 'url("a\\\nb")', f'url("{X}ab")'),
    ("escaped name", r"\75 rl(a.png)", f'url("{X}a.png")'),
    ("escaped letter in name", r"u\rl(a.png)", f'url("{X}a.png")'),
    # not URLs
    ("comment", "/* url(a.png) */ p{}", "/* url(a.png) */ p{}"),
    ("comment with @import", '/* @import "a.css"; */', '/* @import "a.css"; */'),
    ("string", 'p::before{content:"url(a.png)"}', 'p::before{content:"url(a.png)"}'),
    ("single-quoted string", "p{content:'url(a.png)'}", "p{content:'url(a.png)'}"),
    ("escaped quote in a string", r'p{content:"\" url(a.png) \""}', r'p{content:"\" url(a.png) \""}'),
    ("name ending in url", "myurl(a.png)", "myurl(a.png)"),
    ("hyphenated name", "x-url(a.png) -url(a) --url(a)", "x-url(a.png) -url(a) --url(a)"),
    ("hash", "#url(a.png)", "#url(a.png)"),
    ("at-keyword", "@url(a.png)", "@url(a.png)"),
    ("dimension", "1url(a.png)", "1url(a.png)"),
    ("@charset", '@charset "utf-8";', '@charset "utf-8";'),
    ("@namespace", '@namespace svg "http://www.w3.org/2000/svg";',
     '@namespace svg "http://www.w3.org/2000/svg";'),
    ("font format and local()", 'src: local("Sans"), url(a.woff) format("woff")',
     f'src: local("Sans"), url("{X}a.woff") format("woff")'),
    # @import
    ("@import string", '@import "a.css";', f'@import "{X}a.css";'),
    ("@import single quotes, media", "@import 'a.css' screen;", f'@import "{X}a.css" screen;'),
    ("@IMPORT", '@IMPORT "a.css";', f'@IMPORT "{X}a.css";'),
    ("@import url()", "@import url(a.css);", f'@import url("{X}a.css");'),
    ("@import url() quoted, media", '@import url("a.css") print;', f'@import url("{X}a.css") print;'),
    ("@import, comment, string", '@import /* c */ "a.css";', f'@import /* c */ "{X}a.css";'),
    ("@import, escaped", r'@\69mport "a.css";', f'@\\69mport "{X}a.css";'),
    ("only the first string", '@import "a.css" "b";', f'@import "{X}a.css" "b";'),
    # image-set
    ("image-set", 'image-set("a.png" 1x, "b.png" 2x)', f'image-set("{X}a.png" 1x, "{X}b.png" 2x)'),
    ("-webkit-image-set", "-webkit-image-set('a.png' 1x, url(b.png) 2x)",
     f'-webkit-image-set("{X}a.png" 1x, url("{X}b.png") 2x)'),
    ("IMAGE-SET", 'IMAGE-SET("a.png" 1x)', f'IMAGE-SET("{X}a.png" 1x)'),
    ("type() inside image-set", 'image-set("a.png" type("image/png") 1x, "b.png" 2x)',
     f'image-set("{X}a.png" type("image/png") 1x, "{X}b.png" 2x)'),
    ("after image-set", 'image-set("a.png" 1x) "b"', f'image-set("{X}a.png" 1x) "b"'),
    # left alone: what fetches nothing
    ("data:", "url(data:image/png;base64,iVBOR==)", "url(data:image/png;base64,iVBOR==)"),
    ("data: quoted", 'url("data:image/svg+xml;utf8,<svg></svg>")',
     'url("data:image/svg+xml;utf8,<svg></svg>")'),
    ("data: with quotes inside (a bad url)", "url(data:image/svg+xml;utf8,<svg a='b'/>)",
     "url(data:image/svg+xml;utf8,<svg a='b'/>)"),
    ("fragment", "filter: url(#shadow)", "filter: url(#shadow)"),
    ("empty", "url()", "url()"),
    ("empty with spaces", "url( )", "url( )"),
    ("empty string", 'url("")', 'url("")'),
    # bad URLs load nothing, and become the gateway's own page
    ("space inside", "url(a b.png)", 'url("/browse")'),
    ("quote inside", 'url(a"b)', 'url("/browse")'),
    ("escaped newline inside", "url(a\\\nb)", 'url("/browse")'),
    ("bad url ends at the first )", 'url(a b) "x" url(c)', f'url("/browse") "x" url("{X}c")'),
    # unterminated at the end of the input
    ("unterminated url(", "url(a.png", f'url("{X}a.png")'),
    ("unterminated url(, spaces", "url( a.png ", f'url("{X}a.png")'),
    ("unterminated quoted url(", 'url("a.png', f'url("{X}a.png")'),
    ("unterminated url( after string", "url( 'a.png'", f'url("{X}a.png")'),
    ("unterminated @import", '@import "a.css', f'@import "{X}a.css"'),
    ("unterminated image-set", 'image-set("a.png" 1x', f'image-set("{X}a.png" 1x'),
    ("unterminated comment", "/* url(a.png)", "/* url(a.png)"),
    ("unterminated string", 'p{content:"url(a.png)', 'p{content:"url(a.png)'),
    ("unterminated data:", "url(data:abc", "url(data:abc"),
    ("url( alone", "url(", "url("),
    ("trailing backslash", "url(a\\", f'url("{X}a\\fffd ")'),
    # The sheet is Latin-1 read bytes: a decoded character past U+00FF is escaped again.
    ("escape past latin-1", "url(\\20AC.png)", f'url("{X}\\20ac .png")'),
    ("newline ends a string", 'p{content:"url(a.png)\nurl(b)', f'p{{content:"url(a.png)\nurl("{X}b")'),
    # nesting
    ("nested functions",
     "background:image-set(url(a.png) 1x, \"b.png\" 2x), linear-gradient(rgba(0,0,0,.5), red)",
     f'background:image-set(url("{X}a.png") 1x, "{X}b.png" 2x), linear-gradient(rgba(0,0,0,.5), red)'),
    ("calc", "width:calc((1px + 2px) * 3)", "width:calc((1px + 2px) * 3)"),
    ("cross-fade", 'cross-fade(url(a.png) 50%, url("b.png"))',
     f'cross-fade(url("{X}a.png") 50%, url("{X}b.png"))'),
    ("string after a nested function", 'image-set(type("x") "a.png")', f'image-set(type("x") "{X}a.png")'),
    ("url() modifiers", 'url("a.png" crossorigin(anonymous))', f'url("{X}a.png" crossorigin(anonymous))'),
    ("} inside a function", 'image-set("a" } "b")', f'image-set("{X}a" }} "{X}b")'),
]


@pytest.mark.parametrize(("css", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite_css(css: str, expected: str) -> None:
    assert rewrite_css(css, fake) == expected


@pytest.mark.parametrize("css", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_every_split_gives_the_same_output(css: str) -> None:
    whole = rewrite_css(css, fake)
    for cut in range(len(css) + 1):
        assert chunked(css, [cut]) == whole, cut
    rng = random.Random(css)
    for _ in range(40):
        cuts = sorted(rng.randint(0, len(css)) for _ in range(2))
        assert chunked(css, cuts) == whole, cuts
    assert chunked(css, list(range(1, len(css)))) == whole  # a character at a time


def test_rewrite_gets_the_decoded_url() -> None:
    seen: list[str] = []

    def spy(url: str) -> str:
        seen.append(url)
        return url

    css = r'url(\28 x\29) url( "a\"b" ) @import "c\\d"; url() image-set("e\
f" 1x)'
    assert rewrite_css(css, spy) == css  # unchanged results: the tokens as they were
    assert seen == ["(x)", 'a"b', "c\\d", "", "ef"]


def test_rewriter_is_reusable_after_close() -> None:
    rewriter = CssRewriter(fake)
    assert rewriter.feed("url(a") == ""
    assert rewriter.close() == f'url("{X}a")'
    assert rewriter.feed('"url(b)" ') == '"url(b)" '
    assert rewriter.close() == ""


def test_past_the_nesting_bound_every_string_is_a_url() -> None:
    assert rewrite_css("(" * 100 + '"a.png"', fake) == "(" * 100 + '"a.png"'
    assert rewrite_css("(" * 2000 + '"a.png"', fake) == "(" * 2000 + f'"{X}a.png"'


def test_the_module_is_pure() -> None:
    tree = ast.parse(Path(css_module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "dataclasses", "collections.abc", "typing"}, imported


def test_max_token_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CssRewriter(fake, max_token=0)


# -- random CSS-ish text, random chunks ---------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "url(", "URL(", "u\\72l(", "\\75 rl(", "image-set(", "src(", "type(", "(", ")", "[", "]", "{", "}",
    '"', "'", "/*", "*/", "\\", "\\\n", "\\29 ", "\\41", "@import", "@\\69mport", " ", "\n", "\r\n", "\t",
    "a", "x.png", "1", "1e", "+", "-", "--", ".", "#", "@", "<!--", "-->", ";", ":", ",", "data:",
    "http://h/", "%", "e5", "\f", "\x00", "\x01", "é", "1x", "\\\r\n",
    "a" * 300, "1" * 300, "\\61" * 100,  # past the length at which names and numbers stream
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join), st.lists(st.integers(0, 400), max_size=6),
       st.sampled_from([1, 3, 8, 65536]))
def test_chunks_never_change_the_output(css: str, cuts: list[int], max_token: int) -> None:
    rewriter = CssRewriter(fake, max_token=max_token)
    whole = rewriter.feed(css) + rewriter.close()
    assert chunked(css, sorted(c % (len(css) + 1) for c in cuts), max_token=max_token) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_output_loads_only_gateway_urls(css: str) -> None:
    """Rewritten once more, the output offers rewrite nothing but what it made."""
    first = rewrite_css(css, lambda url: "/browse/h/p")
    seen: list[str] = []

    def spy(url: str) -> str:
        seen.append(url)
        return url

    rewrite_css(first, spy)
    assert all(url in ("/browse/h/p", "/browse") for url in seen), seen


# -- the bound ----------------------------------------------------------------------------

def feed_in_chunks(rewriter: CssRewriter, text: str, size: int, max_held: int) -> str:
    out = []
    for start in range(0, len(text), size):
        out.append(rewriter.feed(text[start:start + size]))
        assert len(rewriter._buf) <= max_held
    return "".join(out)


@pytest.mark.parametrize("quote", ["", '"'])
def test_a_long_data_url_streams_through(quote: str) -> None:
    css = f"a{{background:url({quote}data:image/png;base64," + "A" * 5_000_000 + f"{quote})}} b{{}}"
    rewriter = CssRewriter(fake)
    streamed = feed_in_chunks(rewriter, css, 4096, 65536)
    assert len(streamed) > len(css) - 65536  # the output kept flowing
    assert streamed + rewriter.close() == css
    assert rewrite_css(css, fake) == css


@pytest.mark.parametrize(("css", "expected"), [
    ("a{background:url(http://x/" + "a" * 200_000 + ")} b{background:url(c)}",
     f'a{{background:url("/browse")}} b{{background:url("{X}c")}}'),
    ('a{background:url( "http://x/' + "a" * 200_000 + '" )}', 'a{background:url("/browse" )}'),
    ('@import "http://x/' + "a" * 200_000 + '";', '@import url("/browse");'),
    ('image-set("' + "a" * 200_000 + '" 1x, "b" 2x)', f'image-set(url("/browse") 1x, "{X}b" 2x)'),
    ("url(" + " " * 200_000 + "http://x/)", "url(" + " " * 200_000 + '"/browse")'),
    ("url(" + " " * 200_000 + "'http://x/')", "url(" + " " * 200_000 + f'"{X}http://x/")'),
], ids=["url()", "url( string )", "@import", "image-set", "url( spaces url)", "url( spaces string)"])
def test_a_long_url_becomes_the_gateway_page(css: str, expected: str) -> None:
    assert rewrite_css(css, fake) == expected
    rewriter = CssRewriter(fake)
    assert feed_in_chunks(rewriter, css, 1000, 65536) + rewriter.close() == expected


@pytest.mark.parametrize("css", [
    "/*" + "url(x) " * 200_000 + "*/",
    'p{content:"' + "url(x) " * 200_000 + '"}',
    "a" * 1_000_000 + "url(x)",
    "1" * 1_000_000 + "url(x)",
    "1." + "1" * 1_000_000 + "e1url(x)",
    " " * 1_000_000,
])
def test_other_long_tokens_stream_unchanged(css: str) -> None:
    rewriter = CssRewriter(fake, max_token=1000)
    assert feed_in_chunks(rewriter, css, 997, 1000) + rewriter.close() == css


def test_tiny_chunks_stay_within_the_bound() -> None:
    css = "url(http://x/" + "a" * 3000 + ") url(data:" + "b" * 3000 + ") url(c)"
    rewriter = CssRewriter(fake, max_token=500)
    out = feed_in_chunks(rewriter, css, 1, 500) + rewriter.close()
    assert out == 'url("/browse") url(data:' + "b" * 3000 + f') url("{X}c")'
    whole = CssRewriter(fake, max_token=500)
    assert whole.feed(css) + whole.close() == out


# -- a real sheet -------------------------------------------------------------------------

SHEET = """@charset "utf-8";
@import "reset.css";
@import url('//cdn.example/fonts.css') screen;
@font-face {
  font-family: "Site Sans";
  src: url(../fonts/site.woff2) format("woff2"),
       url("https://fonts.example/site.woff?v=2#iefix") format("woff");
}
body { background: #fff url(/img/bg.png) no-repeat; }
.logo { background-image: image-set("logo.png" 1x, "logo@2x.png" 2x); }
.icon { background: url(data:image/gif;base64,R0lGODlhAQABAAAAACw=); }
.svg { filter: url(#blur); }
/* old: url(old.png) */
.q::before { content: "url(not-a-link)"; }
.x { background: URL( "http://other.example:8080/a b.png" ); }
"""

REWRITTEN = """@charset "utf-8";
@import "/browse/https/site.example/css/reset.css";
@import url("/browse/https/cdn.example/fonts.css") screen;
@font-face {
  font-family: "Site Sans";
  src: url("/browse/https/site.example/fonts/site.woff2") format("woff2"),
       url("/browse/https/fonts.example/site.woff?v=2#iefix") format("woff");
}
body { background: #fff url("/browse/https/site.example/img/bg.png") no-repeat; }
.logo { background-image: image-set("/browse/https/site.example/css/logo.png" 1x, \
"/browse/https/site.example/css/logo@2x.png" 2x); }
.icon { background: url(data:image/gif;base64,R0lGODlhAQABAAAAACw=); }
.svg { filter: url(#blur); }
/* old: url(old.png) */
.q::before { content: "url(not-a-link)"; }
.x { background: url("/browse/http/other.example:8080/a b.png"); }
"""


def test_a_real_sheet_through_link_rewriter() -> None:
    links = LinkRewriter("https://site.example/css/main.css")
    assert rewrite_css(SHEET, links.url) == REWRITTEN
    rewriter = CssRewriter(links.url)
    pieces = [rewriter.feed(SHEET[i:i + 7]) for i in range(0, len(SHEET), 7)]
    assert "".join(pieces) + rewriter.close() == REWRITTEN
