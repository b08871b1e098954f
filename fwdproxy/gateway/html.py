"""HTML pages with every link they hold turned into a gateway link.

Strategy: the standard library's incremental tokenizer, `html.parser.HTMLParser`, reads
the page as it streams: no regular expression over a whole page can follow comments,
quoted attributes and raw-text elements. Every token goes out verbatim, copied from the
parser's own buffer; only a start tag with something to rewrite is rebuilt from its
attributes: the URL attributes of any element (``href``, ``src``, ``srcset``, ``ping``,
``xlink:href``...), ``style`` attributes and ``<style>`` elements (`css`), ``<meta
http-equiv=refresh>``, ``<base href>`` (which also moves the base) and ``<iframe
srcdoc>`` (a page of its own). ``integrity`` is dropped, as the gateway changes the bytes
it vouches for, and so is ``<meta http-equiv=content-security-policy>``: its sources name
the site's origins, which the gateway's links no longer match. Scripts pass unchanged.

Where HTMLParser reads markup otherwise than browsers, the browsers' reading wins, since
a browser must never find a tag that we did not see: start tags are read by the HTML
standard's tokenizer rules (HTMLParser splits attributes at Unicode spaces, and ends some
tags at one ">" or another depending on where the input was cut); comments end at
``<!-->`` and ``--!>``; raw text (``<script>``, ``<title>``...) ends only at a real end
tag; inside ``<svg>`` and ``<math>``, where a browser reads markup, nothing is raw text.
``<noscript>`` is read as markup, as a browser without JavaScript reads it (with
JavaScript on, the page's own scripts run unrewritten anyway). Memory is bounded: what
is held unparsed (an unclosed comment or tag) past ``max_pending`` characters goes out
HTML-escaped, as text, and parsing goes on.

Text is the page's bytes decoded as Latin-1 (`urls`), and so is the output: a character
reference decoded in a rebuilt attribute is written back as a reference.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from fwdproxy.gateway import tags
from fwdproxy.gateway.css import CssRewriter, rewrite_css
from fwdproxy.gateway.tags import Attrs
from fwdproxy.gateway.urls import PREFIX, LinkRewriter

__all__ = ["HtmlRewriter", "rewrite_html"]

# Attributes whose value is one URL, on any element.
_LINKS = frozenset({"href", "src", "action", "formaction", "poster", "data", "background",
                    "cite", "longdesc", "lowsrc", "manifest", "codebase", "xlink:href"})
_SRCSETS = frozenset({"srcset", "imagesrcset"})
# Every attribute whose value `_rewrite_attrs` reads (the others go out as they came,
# unless the tag is rebuilt): only these are decoded for every tag.
_READ = _LINKS | _SRCSETS | {"ping", "style", "content", "srcdoc", "to", "from", "by", "values",
                             "http-equiv", "attributename"}
# Tags whose attributes steer the others (see `_rewrite_attrs`).
_STEERING = frozenset({"meta", "base", "animate", "set"})
# Elements whose content a browser reads as raw text, up to their end tag.
_RAW = frozenset({"script", "style", "title", "textarea", "xmp", "iframe", "noembed",
                  "noframes"})
# Foreign content, where <script>, <style>, <title>... hold markup: nothing is raw there.
# (Counted, not built as a tree: past a breakout tag or in <foreignObject> a browser may
# read HTML where this reads markup.)
_OPAQUE = ("svg", "math")
_MAX_SRCDOC_DEPTH = 8  # deeper nested srcdoc pages become empty ones
_RESCAN = 1024  # an unfinished construct longer than this is retried once input doubles

_TAG_OPEN = re.compile("</?[A-Za-z]")
_PLAIN_END_TAG = re.compile("</([A-Za-z][^\t\n\f\r />]*+)>")  # what scan_tag reads as such
_COMMENT_END = re.compile("--!?>")
_CHARREF_SO_FAR = re.compile("&#(?:[0-9]*|[xX][0-9a-fA-F]*)")


def rewrite_html(text: str, links: LinkRewriter) -> str:
    """`text`, a whole HTML document, rewritten as `HtmlRewriter` does."""
    return _rewrite_document(text, links, 1 << 20, 0)


class HtmlRewriter:
    """Rewrites an HTML page that comes in chunks (see the module's docstring).

    Holds back only what HTMLParser cannot parse yet (a tag, comment or character
    reference cut by the chunk's end), at most about `max_pending` characters; the output
    of the chunks joined is `rewrite_html` of the whole (unless that bound was hit).
    """

    def __init__(self, links: LinkRewriter, *, max_pending: int = 1 << 20) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be positive")
        self._parser = _Tokenizer(links, max_pending, 0)
        self._closed = False

    def feed(self, text: str) -> str:
        """Take the next chunk; return the output that is final so far."""
        if self._closed:
            raise ValueError("feed() after close()")
        self._parser.push(text)
        return self._parser.take()

    def close(self) -> str:
        """The rest of the output: the page has ended."""
        if not self._closed:
            self._closed = True
            self._parser.finish()
        return self._parser.take()


def _rewrite_document(text: str, links: LinkRewriter, max_pending: int, depth: int) -> str:
    parser = _Tokenizer(links, max_pending, depth)
    parser.push(text)
    parser.finish()
    return parser.take()


class _Tokenizer(HTMLParser):
    """HTMLParser whose every consumed region is written out as it was, or as a handler
    replaced it: goahead() reports each region through updatepos(i, j) right after the
    handler for it has run, so handlers only set `_replacement` when they change a token.
    """

    def __init__(self, links: LinkRewriter, max_pending: int, depth: int) -> None:
        self.links = links
        self.max_pending = max_pending
        self.depth = depth
        self.out: list[str] = []
        self._replacement: str | None = None  # the current token's new text
        self._data_token = False  # the current token is text (it goes to CSS in a style)
        self._held: list[str] = []  # input not given to the parser yet (see push)
        self._held_size = 0
        self._in_style = False
        self._css: CssRewriter | None = None
        self._opaque = dict.fromkeys(_OPAQUE, 0)
        self._base_set = False
        super().__init__(convert_charrefs=False)

    # -- input and output -------------------------------------------------------------

    def push(self, text: str) -> None:
        self._held.append(text)
        self._held_size += len(text)
        pending = len(self.rawdata)
        # A long unfinished construct is parsed again from its start at every feed:
        # waiting until the input has doubled keeps small chunks from costing O(n^2).
        if pending > _RESCAN and self._held_size < pending <= self.max_pending - self._held_size:
            return
        self._pump()
        if len(self.rawdata) > self.max_pending:
            # Fail safe: what cannot be parsed within the bound is shown as text, so that
            # no tag inside it can reach the browser unrewritten.
            pending_text, self.rawdata = self.rawdata, ""
            self._emit_data(html.escape(pending_text, quote=False))

    def finish(self) -> None:
        self._pump()
        rest, self.rawdata = self.rawdata, ""
        if self.cdata_elem is not None:
            self._emit_data(rest)  # raw text to the end ("</script" unfinished is text)
            rest = ""
        self._close_css()
        # What is left is one construct that the end of the page cuts (a comment, an end
        # tag...), which the browser ends in the same place: it goes out as it is. An
        # unfinished start tag is dropped instead, as browsers drop it.
        if not _TAG_OPEN.match(rest) or rest.startswith("</"):
            self.out.append(rest)

    def take(self) -> str:
        text, self.out = "".join(self.out), []
        return text

    def _pump(self) -> None:
        self.rawdata += "".join(self._held)
        self._held.clear()
        self._held_size = 0
        while True:
            before = len(self.rawdata)
            self.goahead(False)
            self._unstick()
            if not self.rawdata or len(self.rawdata) >= before:
                return

    def _unstick(self) -> None:
        """Pass on what HTMLParser holds back for no reason: raw text (it waits for the
        end tag before handing any of it over), a "&#" that can never become a character
        reference (it waits for a ";") and an "&" before a run of letters longer than any
        entity name (it waits for the run's end)."""
        raw = self.rawdata
        if self.cdata_elem is not None:
            if self.interesting.match(raw):
                return  # an end tag waiting for its ">"
            cut = raw.rfind("<")  # an end tag can only start at the last "<"
            cut = len(raw) if cut < 0 else cut
        elif raw[:1] == "&" and (len(raw) > 64 or (raw.startswith("&#")
                                                   and not _CHARREF_SO_FAR.fullmatch(raw))):
            cut = 1  # text, the way it is written out anyway
        else:
            return
        if cut:
            self.handle_data(raw[:cut])
            self.updatepos(0, cut)
            self.rawdata = raw[cut:]

    def _emit_data(self, text: str) -> None:
        self.out.append(self._css_feed(text) if self._in_style else text)

    def _css_feed(self, text: str) -> str:
        if self._css is None:
            self._css = CssRewriter(self._url)
        return self._css.feed(text)

    def _close_css(self) -> None:
        if self._css is not None:
            self.out.append(self._css.close())
            self._css = None

    def _url(self, ref: str) -> str:
        try:
            return self.links.url(ref)
        except ValueError:  # a URL that cannot be read links to nothing outside
            return PREFIX

    # -- HTMLParser hooks -------------------------------------------------------------

    def updatepos(self, i: int, j: int) -> int:
        # Not the base class's: nothing here reads getpos(), so the line and column it
        # would count (a str.count per token) are not kept.
        if i < j:
            if not self._data_token and self._css is not None:
                self._close_css()  # a tag or comment inside a style ends a CSS run
            text = self._replacement
            self.out.append(self.rawdata[i:j] if text is None else text)
        self._replacement = None
        self._data_token = False
        return j

    def handle_data(self, data: str) -> None:
        self._data_token = True
        if self._in_style:
            self._replacement = self._css_feed(data)

    def parse_starttag(self, i: int) -> int:
        # Where a start tag ends and what its attributes are, read by browser rules:
        # HTMLParser's own reading differs ("<a x=\x85"..." is split at a Unicode space,
        # "<a x== "a>b">" ends at one ">" or the other as the input is cut), and the
        # browser must never find in a tag copied verbatim a link that we did not see.
        scanned = tags.scan_tag(self.rawdata, i + 1) if self.rawdata.find(">", i) > 0 else None
        if scanned is None:
            return -1  # the tag goes on past what has come so far
        name, attrs, closing, end = scanned
        self._start(name, attrs, closing)
        return end

    def parse_endtag(self, i: int) -> int:
        # By browser rules too: "</>" is nothing, "</" and no letter a bogus comment up to
        # ">", and an end tag ends at a ">" outside quoted attributes (</a x=">">), like a
        # start tag; HTMLParser ends it at the first ">", and then might take as raw text
        # what a browser reads as markup (</a x="><script>">).
        raw = self.rawdata
        plain = _PLAIN_END_TAG.match(raw, i)  # "</p>": the common case, in one match
        if plain is not None:
            name, end = plain.group(1), plain.end()
        elif not _TAG_OPEN.match(raw, i):
            if raw.startswith(">", i + 2):
                return i + 3
            gt = raw.find(">", i + 2)
            return -1 if gt < 0 else gt + 1
        else:
            scanned = tags.scan_tag(raw, i + 2) if raw.find(">", i) > 0 else None
            if scanned is None:
                return -1
            name, end = scanned[0], scanned[3]
        self._end_tag(name)
        return end

    def _end_tag(self, name: str) -> None:
        # In raw text, goahead() calls parse_endtag only at "</script" + a delimiter.
        name = self.cdata_elem or name.lower()
        self.clear_cdata_mode()
        if name == "style" or name in _OPAQUE:
            self._in_style = False
        if name in _OPAQUE and self._opaque[name]:
            self._opaque[name] -= 1

    def parse_comment(self, i: int, report: bool = True) -> int:
        # As browsers end comments: "<!-->" and "<!--->" are whole, "--!>" closes too.
        raw = self.rawdata
        if raw.startswith(">", i + 4):
            return i + 5
        if raw.startswith("->", i + 4):
            return i + 6
        match = _COMMENT_END.search(raw, i + 4)
        return -1 if match is None else match.end()

    def parse_html_declaration(self, i: int) -> int:
        # Doctypes, "<![CDATA[" and bogus comments all end at the first ">" in HTML
        # content; in SVG a CDATA section runs to "]]>", but ending it earlier only
        # parses more as markup. (The standard one raises on "<![x".)
        raw = self.rawdata
        if raw.startswith("<!--", i):
            return self.parse_comment(i)
        if len(raw) - i < 4 and "<!--".startswith(raw[i:]):
            return -1
        gt = raw.find(">", i + 2)
        if gt < 0:
            return -1
        if self._in_style and raw.startswith("<![CDATA[", i):
            section = raw[i:gt + 1]
            end = -3 if section.endswith("]]>") else -1
            css = rewrite_css(section[9:end], self._url)
            self._replacement = section[:9] + css + section[end:]
        return gt + 1

    # -- start tags -------------------------------------------------------------------

    def _start(self, name: str, attrs: Attrs, closing: bool) -> None:
        tag = name.lower()
        new, changed = self._rewrite_attrs(tag, attrs) if attrs else (attrs, False)
        if new is None:
            self._replacement = ""
        elif changed:
            self._replacement = tags.build_tag(name, new, closing)
        if any(self._opaque.values()):
            self._in_style = self._in_style or (tag == "style" and not closing)
        elif tag in _RAW:  # a self-closing slash does not stop raw text in HTML
            self._enter_raw(tag)
            self._in_style = tag == "style"
        if tag in _OPAQUE and not closing:
            self._opaque[tag] += 1

    def _enter_raw(self, elem: str) -> None:
        super().set_cdata_mode(elem)
        # Raw text ends at "</elem" and a space, "/" or ">", as in browsers (3.11's
        # HTMLParser wants "</elem>", and takes "</ elem>").
        self.interesting = re.compile(f"</{elem}(?=[\t\n\f\r />])", re.I | re.A)

    def _rewrite_attrs(self, tag: str, attrs: Attrs) -> tuple[Attrs | None, bool]:
        """The new attributes (None: drop the tag) and whether any changed. `attrs` are
        raw: a value is decoded when it is read, the others only if the tag is rebuilt
        (a tag that does not change goes out as it came)."""
        equiv, animated = self._steering(tag, attrs) if tag in _STEERING else ("", False)
        if equiv == "content-security-policy":
            return None, True
        new: Attrs = []
        undecoded: list[int] = []  # where `new` holds a value as it was written
        changed = False
        for name, raw in attrs:
            key = name.lower()
            if key == "integrity":
                changed = True
                continue
            if raw is None or key not in _READ:  # `_attr` would return it as it is
                if raw is not None and "&" in raw:
                    undecoded.append(len(new))
                new.append((name, raw))
                continue
            value = tags.decode_attr(raw)
            result = self._attr(tag, key, value, equiv == "refresh", animated)
            changed = changed or result != value
            new.append((name, result))
        if changed:
            for index in undecoded:
                attr, raw = new[index]
                new[index] = (attr, None if raw is None else tags.decode_attr(raw))
        return new, changed

    def _steering(self, tag: str, attrs: Attrs) -> tuple[str, bool]:
        """A <meta>'s http-equiv and whether an <animate> or <set> animates a link;
        the first <base href> moves the base."""
        first: dict[str, str | None] = {}
        for name, raw in attrs:
            key = name.lower()
            if key in ("http-equiv", "href", "attributename") and key not in first:
                first[key] = None if raw is None else tags.decode_attr(raw)  # as browsers
        equiv = (first.get("http-equiv") or "").strip().lower() if tag == "meta" else ""
        if equiv == "content-security-policy":
            return equiv, False
        href = first.get("href")
        if tag == "base" and href is not None and not self._base_set:
            self._base_set = True  # only the first <base href> counts
            self.links.set_base(href)
        animated = tag in ("animate", "set") and \
            (first.get("attributename") or "").strip().lower() in ("href", "xlink:href")
        return equiv, animated

    def _attr(self, tag: str, key: str, value: str, refresh: bool, animated: bool) -> str:
        if key in _LINKS:
            return self._url(value)
        if key in _SRCSETS:
            return tags.rewrite_srcset(value, self._url)
        if key == "ping":
            return tags.TOKEN.sub(lambda m: self._url(m.group()), value)
        if key == "style":
            return rewrite_css(value, self._url)
        if key == "content" and refresh:
            return tags.rewrite_refresh(value, self._url)
        if key == "srcdoc" and tag == "iframe":
            if self.depth >= _MAX_SRCDOC_DEPTH:
                return ""
            return _rewrite_document(value, LinkRewriter(self.links.base_url),
                                     self.max_pending, self.depth + 1)
        if animated and key in ("to", "from", "by"):  # <set attributeName=href to=...>
            return self._url(value)
        if animated and key == "values":
            return ";".join(self._url(part) for part in value.split(";"))
        return value
