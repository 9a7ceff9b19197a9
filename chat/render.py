"""Model output to safe HTML: markdown with code and math, sanitised, whole or block by block as it streams."""

import json
from dataclasses import dataclass
from html import unescape
from xml.etree.ElementTree import tostring

import nh3
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# --- Markdown to HTML ---------------------------------------------------------

# Classes, not inline styles: the Content-Security-Policy has no 'unsafe-inline' for styles.
_CODE_FORMATTER = HtmlFormatter(cssclass="highlight", wrapcode=True)


def highlight_code(code, language):
    """Code as Pygments HTML; an unknown or missing language is shown as plain text."""
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(code, lexer, _CODE_FORMATTER)


def latex_to_mathml(latex, display):
    """MathML for a formula, or its source in a <code> when latex2mathml cannot convert it."""
    try:
        return _serialise_mathml(convert_to_element(latex, display=display))
    except Exception:  # latex2mathml raises all sorts of errors (even RecursionError); the answer must still show
        return format_html('<code class="math-error">{}</code>', latex)


def _serialise_mathml(math):
    # latex2mathml's own convert() un-escapes its whole output, so `\text{<b>}` would
    # come out as markup. Serialise the tree ourselves: its texts hold entities such
    # as "&#x0211D;" as literal strings, so decode those and let tostring() escape.
    for element in math.iter():
        element.text = unescape(element.text) if element.text else element.text
        element.tail = unescape(element.tail) if element.tail else element.tail
    del math.attrib["xmlns"]  # implied for <math> in HTML
    return tostring(math, encoding="unicode")


def _render_math(latex, options):
    return latex_to_mathml(latex, "block" if options["display_mode"] else "inline")


def _render_fence(renderer, tokens, index, options, env):
    info = tokens[index].info.strip()
    return highlight_code(tokens[index].content, info.split(maxsplit=1)[0] if info else "")


def _render_indented_code(renderer, tokens, index, options, env):
    return highlight_code(tokens[index].content, "")


def _render_image(renderer, tokens, index, options, env):
    """A link to the image instead of the image, so nothing is fetched until the reader asks.

    The CSP allows images only from our own origin, so the link opens the image in
    a new tab; a script may later swap it for an <img> using its href.
    """
    token = tokens[index]
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    src = token.attrGet("src") or ""
    if not src.lower().startswith(("https://", "http://")):
        return format_html("{}", alt)
    # Translators: the text of a link that stands in for an image from another site.
    label = gettext("Image: %(alt)s — click to open") % {"alt": alt or src}
    return format_html('<a class="remote-image" href="{}">{}</a>', src, label)


def _table_alignment_as_class(state):
    """Turn markdown-it's style="text-align:…" on table cells into class="align-…" (CSP again)."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and (style := token.attrGet("style")):
            del token.attrs["style"]
            token.attrSet("class", "align-" + str(style).removeprefix("text-align:"))


def _build_markdown():
    markdown = (
        MarkdownIt("commonmark", {"html": False})
        .enable(["table", "strikethrough"])
        # A definition may come after the links that use it, which would make
        # block-by-block rendering differ from the whole. They show as written.
        .disable("reference")
        .use(tasklists_plugin)
        # Pandoc's rule ("$5 and $10" is money, not math); blank lines end a formula,
        # as in LaTeX, so a formula never spans the blank lines that separate blocks.
        .use(
            dollarmath_plugin,
            allow_labels=False,
            allow_space=False,
            allow_digits=False,
            allow_blank_lines=False,
            renderer=_render_math,
        )
    )
    markdown.core.ruler.push("table_alignment_as_class", _table_alignment_as_class)
    markdown.add_render_rule("fence", _render_fence)
    markdown.add_render_rule("code_block", _render_indented_code)
    markdown.add_render_rule("image", _render_image)
    return markdown


_markdown = _build_markdown()


# --- Sanitising ---------------------------------------------------------------

# Exactly what the renderer above produces; anything else in its output came from
# the model by a path we did not foresee, and is dropped.
_HTML_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr", "br",
    "ul", "ol", "li", "input", "table", "thead", "tbody", "tr", "th", "td",
    "pre", "code", "span", "div", "em", "strong", "s", "del", "a",
}  # fmt: skip
# MathML Core plus <menclose>, without <maction>, <semantics> and <annotation-xml>
# (the last can hold HTML).
_MATHML_TAGS = {
    "math", "menclose", "merror", "mfrac", "mi", "mmultiscripts", "mn", "mo", "mover",
    "mpadded", "mphantom", "mprescripts", "mroot", "mrow", "ms", "mspace", "msqrt",
    "mstyle", "msub", "msubsup", "msup", "mtable", "mtd", "mtext", "mtr", "munder",
    "munderover", "none",
}  # fmt: skip
# Layout attributes latex2mathml writes. Not href (\href), class (\class), style (\style).
_MATHML_ATTRIBUTES = {
    "display", "mathvariant", "mathsize", "mathcolor", "mathbackground", "displaystyle",
    "scriptlevel", "accent", "accentunder", "fence", "form", "separator", "stretchy",
    "symmetric", "largeop", "movablelimits", "lspace", "rspace", "minsize", "maxsize",
    "linethickness", "notation", "width", "height", "depth", "voffset", "linebreak",
    "columnalign", "rowalign", "columnlines", "rowlines", "columnspacing", "rowspacing", "frame",
}  # fmt: skip
_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}

_sanitizer = nh3.Cleaner(
    tags=_HTML_TAGS | _MATHML_TAGS,
    attributes={
        "a": {"href", "title"},
        "ol": {"start"},
        **{tag: _MATHML_ATTRIBUTES for tag in _MATHML_TAGS},
    },
    tag_attribute_values={"input": {"checked": {"checked", ""}}},
    # A checkbox is all an <input> may ever be, and never one the reader can tick.
    set_tag_attribute_values={"a": {"target": "_blank"}, "input": {"type": "checkbox", "disabled": "disabled"}},
    link_rel="noopener noreferrer nofollow",
    url_schemes={"http", "https", "mailto"},
    # A relative link would point into this site, which the model has no business doing.
    url_relative="deny",
    allowed_classes={
        "div": {"highlight", "math", "block"},
        "span": {"math", "inline"} | {name for name in STANDARD_TYPES.values() if name},
        "code": {"math-error"},
        "a": {"remote-image"},
        "th": _ALIGN_CLASSES,
        "td": _ALIGN_CLASSES,
        "ul": {"contains-task-list"},
        "ol": {"contains-task-list"},
        "li": {"task-list-item"},
        "input": {"task-list-item-checkbox"},
    },
)


def markdown_to_html(source):
    """Markdown as sanitised HTML."""
    return _sanitizer.clean(_markdown.render(source))


def render_block(source):
    """One block of markdown as sanitised HTML in its own <div class="md-block">, or "" if it shows nothing."""
    html = markdown_to_html(source)
    if not html.strip():
        return mark_safe("")
    return format_html('<div class="md-block">{}</div>', mark_safe(html))


# --- Whole texts and streams --------------------------------------------------


@dataclass(frozen=True)
class Update:
    """What changed after a delta: HTML to append to the body, HTML to replace the tail with."""

    final: SafeString
    tail: SafeString


def split_finished_blocks(source, at_end):
    """Split source into the blocks that no later text can change, and the rest.

    A cut goes before a top-level block that follows a blank line and whose first
    line is complete. Whether the block above goes on past a blank line (a loose
    list, indented code) is settled by that one line. Without the blank line, later
    lines could still pull the block back (a table whose delimiter row stops fitting
    is more paragraph), and an incomplete line could still become anything ("1" to
    "1. item"). Fences and $$ formulas are single tokens, so no cut falls inside
    them. Conservative on purpose: a loose list, or text with no blank lines, stays
    one block and is re-rendered in full until it ends. At the end of the text every
    line counts as complete.
    """
    lines = source.split("\n")
    complete_lines = len(lines) if at_end else len(lines) - 1
    starts = [
        token.map[0]
        for token in _markdown.parse(source)
        if token.level == 0
        and token.map
        and 0 < token.map[0] < complete_lines
        and not lines[token.map[0] - 1].strip(" \t")
    ]
    blocks, offset, line = [], 0, 0
    for start in starts:
        length = sum(len(text) + 1 for text in lines[line:start])
        blocks.append(source[offset : offset + length])
        offset, line = offset + length, start
    rest = source[offset:]
    if at_end:
        return blocks + [rest], ""
    return blocks, rest


class IncrementalRenderer:
    """Renders a streamed answer so each update costs about the size of its last block.

    Blocks that can no longer change are rendered once and handed out to be
    appended; the unfinished last block is rendered again on every update. The
    blocks handed out, followed by those from finish(), are exactly
    render_markdown() of the whole text, and a fresh renderer fed a partial text at
    once gives the same body and tail as one that got it piece by piece.
    """

    def __init__(self):
        self._rest = ""  # text after the last finished block
        self._held_carriage_return = False

    def feed(self, delta):
        delta = self._normalise_newlines(delta)
        self._rest += delta
        if "\n" not in delta:
            # A block ends only at a completed line, and none was completed:
            # skip looking for finished blocks, the costlier half of an update.
            return Update(final=mark_safe(""), tail=render_block(self._rest))
        return self._update(at_end=False)

    def finish(self):
        """Hand out the last blocks once the answer is complete; the tail is then empty."""
        if self._held_carriage_return:
            self._rest += "\n"
            self._held_carriage_return = False
        return self._update(at_end=True)

    def _normalise_newlines(self, delta):
        # A "\r\n" may arrive split over two deltas; hold a trailing "\r" back until
        # we know, so that it does not become two line breaks.
        if self._held_carriage_return:
            delta = "\r" + delta
        self._held_carriage_return = delta.endswith("\r")
        if self._held_carriage_return:
            delta = delta[:-1]
        return delta.replace("\r\n", "\n").replace("\r", "\n")

    def _update(self, at_end):
        finished, self._rest = split_finished_blocks(self._rest, at_end)
        final = "".join(render_block(block) for block in finished)
        return Update(final=mark_safe(final), tail=render_block(self._rest))


def render_markdown(text):
    """A whole markdown text (a saved message) as sanitised HTML, the same as it was streamed."""
    renderer = IncrementalRenderer()
    return mark_safe(renderer.feed(text).final + renderer.finish().final)


def render_plain(text):
    """Text that is not markdown, such as tool arguments and results: escaped, JSON pretty-printed."""
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pass
    return format_html('<pre class="plain-text">{}</pre>', text)
