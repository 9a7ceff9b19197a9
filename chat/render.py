"""Model output to safe HTML: markdown with code and math, sanitised, whole or block by block as it streams."""

import functools
import itertools
import json
import re
from dataclasses import dataclass
from html import escape, unescape
from xml.etree.ElementTree import tostring

import nh3
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from markdown_it.rules_block.table import MAX_AUTOCOMPLETED_CELLS, escapedSplit
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import RegexLexer
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.token import STANDARD_TYPES, Error, Whitespace, _TokenType
from pygments.util import ClassNotFound

# --- Markdown to HTML ---------------------------------------------------------

# Classes, not inline styles: the Content-Security-Policy has no 'unsafe-inline' for styles.
# The <pre> takes the focus, so that a keyboard can scroll a block wider than the page.
CODE_BEFORE = '<div class="highlight"><pre tabindex="0"><span></span><code>'
CODE_AFTER = "</code></pre></div>\n"
# A fence's language, when it is a plain name, rides on the block for its header (static/chat/copy.js).
# Plain names only: nothing to escape, so the streamed block and the sanitised one stay the same bytes.
_LANGUAGE_NAME = re.compile(r"[\w+#.-]{1,40}")


def code_before(language):
    """The opening of a code block, naming its language when that is a plain name."""
    if language and _LANGUAGE_NAME.fullmatch(language):
        return f'<div class="highlight"><pre tabindex="0"><span></span><code data-language="{language}">'
    return CODE_BEFORE


_WHOLE_CODE_FORMATTER = HtmlFormatter(cssclass="highlight", wrapcode=True)
_WHOLE_CODE_BEFORE = '<div class="highlight"><pre><span></span><code>'  # what _WHOLE_CODE_FORMATTER starts with


def highlight_code(code, language):
    """Code as highlighted HTML, line by line; an unknown or missing language is shown as plain text.

    Where a line alone does not lex (a /* comment */ over several lines is one
    regex in most lexers), the code is highlighted whole instead.
    """
    highlighter = CodeHighlighter(language)
    # Each line sanitised on its own, as a streamed block's lines are: the same bytes either way.
    lines = [_sanitizer.clean(highlighter.line(line)) for line in code.splitlines(keepends=True)]
    if highlighter.erred:
        return code_before(language) + highlight(code, highlighter.lexer, _WHOLE_CODE_FORMATTER).removeprefix(_WHOLE_CODE_BEFORE)
    return code_before(language) + "".join(lines) + CODE_AFTER


class CodeHighlighter:
    """Highlights code one line at a time, each line from the state the line before left.

    Line by line, so that a streamed code block highlights each line once as it
    completes, and the block, once closed, is those very lines: nothing is
    highlighted twice. A lexer built on Pygments' RegexLexer (most of them)
    carries its state stack from line to line, so a string or comment over
    several lines is one; any other lexer reads each line afresh. A rule whose
    regex spans lines (Python's docstrings) does not fire: the lines show as
    the string they are.
    """

    def __init__(self, language):
        self.lexer = _lexer_for(language)
        self.stack = ["root"]
        self.erred = False  # a line had text the lexer could not read

    def line(self, text):
        """One line, ending in "\n", as <span>s with Pygments' classes."""
        if type(self.lexer).get_tokens_unprocessed is RegexLexer.get_tokens_unprocessed:
            tokens = _lex_line(self.lexer, text, self.stack)
        else:
            tokens = self.lexer.get_tokens_unprocessed(text)
        tokens = list(tokens)
        self.erred = self.erred or any(token[1] in Error for token in tokens)
        # Neighbours of one class become one span, as with Pygments' formatter.
        runs = itertools.groupby(tokens, key=lambda token: _css_class(token[1]))
        return "".join(_token_html(css_class, "".join(token[2] for token in run)) for css_class, run in runs)


def _lex_line(lexer, text, stack):
    """Pygments' RegexLexer.get_tokens_unprocessed over one line, from and to `stack` (changed in place).

    The same loop as Pygments', but it stops at the end of the line instead of
    trying its rules on nothing, which in the whole text would have met the next line.
    """
    tokendefs, position = lexer._tokens, 0
    rules = tokendefs[stack[-1]]
    while position < len(text):
        for match_at, action, new_state in rules:
            if match := match_at(text, position):
                if action is not None:
                    if type(action) is _TokenType:
                        yield position, action, match.group()
                    else:
                        yield from action(lexer, match)
                position = match.end()
                if new_state is not None:
                    _change_state(stack, new_state)
                    rules = tokendefs[stack[-1]]
                break
        else:
            if text[position] == "\n":  # at the end of a line nothing matched: back to the root, as Pygments does
                stack[:] = ["root"]
                rules = tokendefs["root"]
                yield position, Whitespace, "\n"
            else:
                yield position, Error, text[position]
            position += 1


def _change_state(stack, new_state):
    if isinstance(new_state, tuple):
        for state in new_state:
            if state == "#pop":
                if len(stack) > 1:
                    stack.pop()
            elif state == "#push":
                stack.append(stack[-1])
            else:
                stack.append(state)
    elif isinstance(new_state, int):
        del stack[1 if abs(new_state) >= len(stack) else new_state :]
    elif new_state == "#push":
        stack.append(stack[-1])


def _token_html(css_class, value):
    # A newline stays outside the span, as Pygments' formatter keeps it.
    text, newline = (value[:-1], "\n") if value.endswith("\n") else (value, "")
    if not text:
        return newline
    if not css_class:
        return escape(text) + newline
    return f'<span class="{css_class}">{escape(text)}</span>{newline}'


@functools.cache
def _css_class(token_type):
    """Pygments' short class for a token type, or its nearest ancestor's (the sanitiser knows only those)."""
    while token_type not in STANDARD_TYPES:
        token_type = token_type.parent
    return STANDARD_TYPES[token_type]


def _lexer_for(language):
    try:
        return get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()


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
        "code": {"data-language"},
        "pre": {"tabindex"},
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
    """What changed after a delta.

    `final` is HTML to append to the body. The tail (the open last block) is
    either replaced whole (`tail`), or, while an open block streams piece by
    piece (see `_BlockView`), extended: `added` goes where `added_to` says (an
    htmx swap, such as "beforebegin:#<the open element's id>"), parsed inside a
    `container` element, and `open` (the open element itself, with its id)
    replaces the open element. With a view, `open` is given with a whole `tail`
    too, as the part of it that later updates replace.
    """

    final: SafeString
    tail: SafeString | None = None
    added: SafeString = mark_safe("")
    added_to: str = ""
    container: str = ""
    open: SafeString = mark_safe("")


def split_finished_blocks(source, at_end):
    """Split source into the blocks that no later text can change, and the rest.

    A cut goes before a top-level block that follows a blank line and whose first
    line is complete. Whether the block above goes on past a blank line (a loose
    list, indented code) is settled by that one line. Without the blank line, later
    lines could still pull the block back (a table whose delimiter row stops fitting
    is more paragraph), and an incomplete line could still become anything ("1" to
    "1. item"). Fences and $$ formulas are single tokens, so no cut falls inside
    them; a fence that starts a block is a block of its own once its closing line
    is complete, since nothing after that line can change it. A paragraph, table,
    heading or rule is final at the blank line after it: the block after that is
    cut off as soon as its first line has begun. Conservative on purpose: a loose
    list, or text with no blank lines, stays one block until it ends (it streams
    through a `_BlockView` meanwhile). At the end of the text every line counts
    as complete.
    """
    lines = source.split("\n")
    complete_lines = len(lines) if at_end else len(lines) - 1
    starts, above = [], None
    for token in _markdown.parse(source):
        if token.level != 0:
            continue
        if not token.map:
            above = token
            continue
        start, end = token.map
        after_blank = 0 < start and not lines[start - 1].strip(" \t")
        if after_blank and (start < complete_lines or above is not None and above.type in _ENDED_BY_A_BLANK_LINE):
            starts.append(start)
        above = token
        if token.type == "fence" and (start == 0 or starts[-1:] == [start]) and _closes(token, lines, end, complete_lines):
            starts.append(end)
    blocks, offset, line = [], 0, 0
    for start in sorted(set(starts)):
        length = sum(len(text) + 1 for text in lines[line:start])
        blocks.append(source[offset : offset + length])
        offset, line = offset + length, start
    rest = source[offset:]
    if at_end:
        return blocks + [rest], ""
    return blocks, rest


# Blocks that a blank line ends whatever comes next: unlike a list or indented code, which
# the next line can carry on past it, these are final before the next line is complete.
_ENDED_BY_A_BLANK_LINE = {"paragraph_close", "table_close", "heading_close", "hr"}


def _closes(fence, lines, end, complete_lines):
    """Whether a fence that starts a block has a complete closing line: then the block after it starts a new one."""
    last = end - 1
    return (
        fence.map[0] < last < complete_lines
        and end < len(lines)
        and _closing_fence(fence.markup).fullmatch(lines[last]) is not None
    )


def _closing_fence(opening):
    """The line that closes a fence opened with `opening` (``` or ~~~, or longer), as CommonMark has it."""
    return re.compile(" {0,3}" + re.escape(opening[0]) + "{" + str(len(opening)) + ",}[ \t]*")


# How an open block streams. Rendering the open block whole on every frame costs its
# size: 105 ms a frame for a 600-line code block. A view instead renders each complete
# line, row, item or stretch once, as it completes, and only the open one on every
# frame. Once the block is final, a code block, table or list is assembled from those
# pieces where they are what rendering it whole gives (each view's final_block says
# when); otherwise, and for a paragraph, it is rendered whole, once. Either way the
# body holds exactly what render_markdown gives. Each view is a function of the text
# alone, so a page that renders the saved text mid-stream shows what the stream showed.

_FENCE_OPENER = re.compile(r"( {0,3})(?:(`{3,})([^`]*)|(~{3,})(.*))")
_LIST_ITEM = re.compile(r"( {0,3})([-+*]|\d{1,9}[.)])(?:[ \t]|$)")


def _render_if(source, shape):
    """Sanitised HTML of source if its tokens have the expected shape (a predicate), else None."""
    env = {}
    tokens = _markdown.parse(source, env)
    if not shape([token.type for token in tokens if token.level == 0], tokens):
        return None
    return _sanitizer.clean(_markdown.renderer.render(tokens, _markdown.options, env))


def _one_table_row(top, tokens):
    # The head row and one body row, in one table: the line did not end the table.
    return top == ["table_open", "table_close"] and sum(token.type == "tr_open" for token in tokens) == 2


def _one_list_item(top, tokens):
    return (
        top in (["bullet_list_open", "bullet_list_close"], ["ordered_list_open", "ordered_list_close"])
        and sum(token.type == "list_item_open" and token.level == 1 for token in tokens) == 1
    )


class _BlockView:
    """The open block as `before`, the items so far, the open element and `after`.

    `add_line` takes each complete line and returns the HTML it adds ("" for
    none yet), or None when the block no longer fits the view: it is then
    rendered whole on every frame, as any other block. `open_element` is the
    open item as HTML whose first tag is `tag`. The tail is `before`, the
    items, `between`, the open element and `after`; what is added goes where
    `added_to` says, parsed inside a `container`.
    """

    tag = container = before = between = after = ""
    added_to = "beforebegin:#{id}"

    def add_line(self, line):
        raise NotImplementedError

    def add_partial(self, partial_line):
        """What the line not yet complete adds already: "" for most views, None as for add_line."""
        return ""

    def open_element(self, partial_line):
        raise NotImplementedError

    def final_block(self, source, items):
        """render_block(source) for the finished block, from the pieces rendered already; None to render it whole."""
        return None


class _CodeView(_BlockView):
    """An open fenced code block: each complete line is highlighted once, as it completes.

    Once the fence closes, the block is those lines (see CodeHighlighter): it
    is checked against the parser, not highlighted again.
    """

    tag, container = "span", "code"
    after = CODE_AFTER + "</div>"

    def __init__(self, opener):
        indent, backticks, backtick_info, tildes, tilde_info = opener.groups()
        fence = backticks or tildes
        info = (backtick_info if backticks else tilde_info).strip()
        self.indent = len(indent)
        self.closing = _closing_fence(fence)
        self.language = info.split(maxsplit=1)[0] if info else ""
        self.before = '<div class="md-block">' + code_before(self.language)
        self.highlighter = CodeHighlighter(self.language)
        self.content = []  # the lines as the parser will see them
        self.closed = False

    def add_line(self, line):
        if self.closing.fullmatch(line):
            self.closed = True
            return ""
        content = self._content(line) + "\n"
        self.content.append(content)
        return _sanitizer.clean(self.highlighter.line(content))

    def open_element(self, partial_line):
        return format_html("<span>{}</span>", self._content(partial_line))

    def final_block(self, source, items):
        """The closed block as render_block() gives it, from the lines highlighted already; None if they differ."""
        if self.highlighter.erred:
            return None  # highlighted whole, as highlight_code() does
        tokens = [token for token in _markdown.parse(source) if token.level == 0]
        if len(tokens) != 1 or tokens[0].type != "fence" or tokens[0].content != "".join(self.content):
            return None
        info = tokens[0].info.strip()
        if (info.split(maxsplit=1)[0] if info else "") != self.language:
            return None
        return mark_safe(self.before + "".join(items) + self.after)

    def _content(self, line):
        # As CommonMark: a fence indented by n spaces takes up to n spaces off each line.
        return line[min(self.indent, len(line) - len(line.lstrip(" "))) :]


class _TableView(_BlockView):
    """An open table: each complete row is rendered once, under the same header.

    The open row has a <tbody> of its own, after the rows': an htmx frame is
    parsed as a <template>'s content, where a <tr> at the top would get a
    <tbody> without an id around it. Once finished, the table is its head and
    rows: in markdown-it each row is parsed on its own, but for a cap on the
    empty cells it fills in, which is counted here as there.
    """

    tag = container = "tbody"
    added_to = "beforeend:#{id}-rows"
    between, after = "</tbody>", "</table>\n</div>"

    def __init__(self, head_html, head, open_id):
        self.head, self.head_html = head, head_html
        self.before = (
            '<div class="md-block">' + head_html.removesuffix("</table>\n") + format_html('<tbody id="{}-rows">', open_id)
        )
        self.columns = len(_cells(head.split("\n", 1)[0]))
        self.rows = []  # the rows' lines
        self.filled_in = 0  # markdown-it's count of the empty cells it adds
        self.ended = False  # a blank line ended the table; what follows is the next block

    def add_line(self, line):
        if self.ended or not line.strip():
            self.ended = True
            return ""
        row = self._row(line)
        if row is not None:
            self.rows.append(line)
            self.filled_in += self.columns - len(_cells(line))
        return row

    def open_element(self, partial_line):
        row = self._row(partial_line) if partial_line.strip() and not self.ended else ""
        return "<tbody>" + (row or "") + "</tbody>"

    def final_block(self, source, items):
        table = self.head + "".join(row + "\n" for row in self.rows)
        if not source.startswith(table) or source[len(table) :].strip() or self.filled_in > MAX_AUTOCOMPLETED_CELLS:
            return None
        if not items:
            return mark_safe('<div class="md-block">' + self.head_html + "</div>")
        body = "<tbody>\n" + "".join(items) + "</tbody>\n</table>\n"
        return mark_safe('<div class="md-block">' + self.head_html.removesuffix("</table>\n") + body + "</div>")

    def _row(self, line):
        # With the header, so that the cells and their alignment are what the whole table gets.
        html = _render_if(self.head + line + "\n", _one_table_row)
        if html is None:
            return None  # not a row: the table ends here
        return html[html.index("<tbody>\n") + len("<tbody>\n") : -len("</tbody>\n</table>\n")]


def _cells(line):
    """The cells of a table line, as markdown-it counts them."""
    cells = escapedSplit(line.strip())
    if cells and cells[0] == "":
        cells.pop(0)
    if cells and cells[-1] == "":
        cells.pop()
    return cells


class _ListView(_BlockView):
    """An open tight list: each item is rendered once the next one starts.

    An item starts with its marker and some text, before its line is complete:
    a list item is often one long line, which should not wait for its end.
    Once finished, the list is its items, each rendered on its own as in
    markdown-it; a blank line followed by more of the list would make it loose,
    which changes every item, so the view gives up there.
    """

    tag = "li"

    def __init__(self, first_line, item, html):
        """`html`: the first line rendered alone, which starts the list."""
        self.indent, self.marker = item[1], self._marker(item)
        self.first_marker = item[1] + item[2] + " "
        self.lines = [first_line]  # the open item's
        self.source = [first_line]  # every line of the list
        self.started = False  # the open item was started by a line not yet complete
        self.ended = False  # a blank line came: the list ends unless it goes on, loose
        self.opening = html[: html.index(">\n") + 2]
        self.container = "ul" if self.opening.startswith("<ul") else "ol"
        self.closing = f"</{self.container}>\n"
        self.before = '<div class="md-block">' + self.opening
        self.after = self.closing + "</div>"

    def add_line(self, line):
        if not line.strip(" \t"):
            self.ended = True
            return ""
        if self.ended:
            # After a blank line, more of the list (indented, or an item) makes it loose;
            # anything else is the next block.
            return None if line[:1] in " \t" or _LIST_ITEM.match(line) else ""
        self.source.append(line)
        if self.started:
            self.lines, self.started = [line], False
            return ""
        if self._starts_item(line):
            html, self.lines = self._item(self.lines), [line]
            return html
        self.lines.append(line)
        return ""

    def add_partial(self, partial_line):
        if self.started or self.ended or not self._starts_item(partial_line, with_text=True):
            return ""
        html, self.lines, self.started = self._item(self.lines), [], True
        return html

    def open_element(self, partial_line):
        # Until a new item has text, the open one is shown without the line that starts it.
        if self.ended:
            partial_line = ""
        return (partial_line and self._item(self.lines + [partial_line])) or self._item(self.lines) or "<li></li>"

    def final_block(self, source, items):
        text = "".join(line + "\n" for line in self.source)
        last = self._item(self.lines)
        if not source.startswith(text) or source[len(text) :].strip() or last is None:
            return None
        items = [*items, last]
        opening = self.opening
        if any(item.startswith('<li class="task-list-item"') for item in items):
            # A list with a task item in it is marked as such: the opening of one that has.
            html = markdown_to_html(self.first_marker + "[ ] task\n")
            opening = html[: html.index(">\n") + 2]
        return mark_safe('<div class="md-block">' + opening + "".join(items) + self.closing + "</div>")

    def _starts_item(self, line, with_text=False):
        item = _LIST_ITEM.match(line)
        return (
            item is not None
            and item[1] == self.indent
            and self._marker(item) == self.marker
            and (not with_text or line[item.end() :].strip(" \t") != "")
        )

    @staticmethod
    def _marker(item):
        # Bullets must match; numbers may differ, their delimiter ("." or ")") may not.
        return item[2][-1] if item[2][-1] in ".)" else item[2]

    def _item(self, lines):
        html = _render_if("\n".join(lines) + "\n", _one_list_item)
        return None if html is None else html[html.index(">\n") + 2 : -len(self.closing)]


class _ParagraphView(_BlockView):
    """An open paragraph: its text is rendered a stretch at a time, each stretch once.

    A stretch ends at a space after at least SEGMENT characters, where nothing
    in it is left open: markdown-it's own inline rendering of the stretch shows no
    delimiter it could not pair (`*`, `_`, `~`, a backtick, `[`, `$`), so no
    later text can pair with it, and it renders the same alone as in the
    paragraph. Where a stretch stays open, the next try is further on, so the
    tries cost about the paragraph's length. Only the stretch after the last
    one is rendered again on every update. The finished paragraph is rendered
    whole, once: a later line can still make it a heading or a table.
    """

    tag = container = "span"
    before = '<div class="md-block"><p>'
    after = "</p>\n</div>"

    def __init__(self):
        self.text = ""  # the complete lines, each with its "\n"
        self.cut = 0  # where the text not yet in a stretch starts
        self.next_try = SEGMENT  # where the next stretch may end, at the earliest
        self.ended = False  # a blank line ended the paragraph

    def add_line(self, line):
        if self.ended or not line.strip():
            self.ended = True
            return ""
        if self.text and _render_if("x\n" + line + "\n", _one_paragraph) is None:
            return None  # the line starts another block, or turns the paragraph into one
        self.text += line + "\n"
        return self._stretches(self.text)

    def add_partial(self, partial_line):
        return "" if self.ended else self._stretches(self.text + partial_line)

    def open_element(self, partial_line):
        rest = (self.text + ("" if self.ended else partial_line))[self.cut :]
        return "<span>" + _render_inline(rest.strip())[0] + "</span>"

    def _stretches(self, known):
        html = []
        while (space := _STRETCH_END.search(known, self.next_try)) is not None:
            end = space.start()
            stretch, open_delimiters = _render_inline(known[self.cut : end])
            if open_delimiters:
                self.next_try = end + max(SEGMENT, (end - self.cut) // 2)
                continue
            html.append(stretch + " ")
            self.cut = end + 1
            self.next_try = self.cut + SEGMENT
        return "".join(html)


SEGMENT = 80  # characters, at the least, in a stretch of an open paragraph
_PARAGRAPH_START = re.compile(r"(?:\*\*|__|[*_`\[\"'(])?[^\W\d_]")
_STRETCH_END = re.compile(r"(?<=\S) (?=\S)")
_UNPAIRED = re.compile(r"[*_`\[$~]")
# What markdown-it's inline rules and nh3 give back unchanged: no character that starts
# a rule (emphasis, code, links, maths, strikethrough, escapes, entities, line breaks),
# none that HTML escapes, no control character, no-break space, byte order mark,
# surrogate or noncharacter (tests/chat/test_render.py compares the two).
_AS_IS = re.compile(r"[^\x00-\x1f\x7f-\xa0&<>\"\\`*_\[\]!$~\ud800-\udfff\ufdd0-\ufdef\ufeff\ufffe\uffff]*")


def _one_paragraph(top, tokens):
    return top == ["paragraph_open", "paragraph_close"]


def _render_inline(text):
    """Text inside a paragraph as sanitised HTML, and whether it leaves a delimiter unpaired.

    Inline rules only: a stretch of a paragraph is inline text whatever it
    starts with ("- " there is no list), and it costs a third of a whole parse.
    Delimiters markdown-it paired became tags; what it could not pair is left
    in the text. Text with nothing in it that the parser or the sanitiser would
    change renders as itself, for much less (most frames of prose are such text).
    """
    if _AS_IS.fullmatch(text):
        return text, False
    env = {}
    tokens = _markdown.parseInline(text, env)
    unpaired = any(child.type == "text" and _UNPAIRED.search(child.content) for child in tokens[0].children)
    return _sanitizer.clean(_markdown.renderer.render(tokens, _markdown.options, env)), unpaired


def _view_for(block, open_id):
    """The view for the open block, and how many of its lines it took to decide.

    (None, n) when the block has no view; (..., 0) when it is too early to say:
    its first characters decide a paragraph, its complete lines anything else.
    """
    first_line, newline, _ = block.partition("\n")
    if _PARAGRAPH_START.match(first_line):
        return _ParagraphView(), 0
    if not newline:
        return ..., 0
    lines = block.split("\n")
    if opener := _FENCE_OPENER.fullmatch(lines[0]):
        return _CodeView(opener), 1
    if item := _LIST_ITEM.match(lines[0]):
        html = markdown_to_html(lines[0] + "\n")
        return (_ListView(lines[0], item, html) if html.startswith(("<ul", "<ol")) else None), 1
    if "|" in lines[0]:
        if len(lines) < 3:
            return ..., 0  # a table needs its delimiter row, not complete yet
        head = lines[0] + "\n" + lines[1] + "\n"
        html = markdown_to_html(head)
        is_table = html.startswith("<table>") and html.endswith("</thead>\n</table>\n")
        return (_TableView(html, head, open_id) if is_table else None), 2
    return None, 1


class IncrementalRenderer:
    """Renders a streamed answer so that each update costs about the size of the new text.

    Blocks that can no longer change are rendered once and handed out to be
    appended. The unfinished last block streams through a view where it has one
    (code, tables, tight lists, paragraphs: each line, row, item or stretch
    rendered once), else it is rendered again on every update. The blocks handed out, followed by those from
    finish(), are exactly render_markdown() of the whole text, and a fresh
    renderer fed a partial text at once gives the same body and tail as one that
    got it piece by piece.

    `open_id` is the id of a view's open element, which updates replace.
    """

    def __init__(self, open_id=""):
        self.open_id = open_id
        self._id_attribute = format_html(' id="{}"', open_id)  # once: every update's open element carries it
        self._rest = ""  # text after the last finished block
        self._held_carriage_return = False
        # The blank-line rule of split_finished_blocks, looked for in new lines only.
        self._scanned = 0  # where in _rest the first line not yet looked at starts
        self._last_line_blank = False
        self._tried_after_blank = -1  # where the last line begun after a blank one starts
        # The open block's view: None until its first lines decide, False when it has none.
        self._view = None
        self._viewed = 0  # where in _rest the first line the view has not had starts
        self._items = []  # what the view gave so far
        self._added = []  # ... of which the last update has not handed out yet
        self._shown = None  # the view the last update's tail showed
        self._generic_tail = mark_safe("")

    def feed(self, delta):
        delta = self._normalise_newlines(delta)
        self._rest += delta
        final = self._take_finished_blocks() if "\n" in delta else []
        if self._line_begun_after_blank():
            final += self._split_off_finished_blocks()
        self._read_open_line()
        return self._update(final)

    def finish(self):
        """Hand out the last blocks once the answer is complete; the tail is then empty."""
        self._held_carriage_return = False
        if self._rest and not self._rest.endswith("\n"):
            self._rest += "\n"  # at the end every line is complete
        final = self._take_finished_blocks()
        if self._rest:  # one block is left: what ends a block (a line after it) never came
            final.append(self._final_block(self._rest))
        self._cut(len(self._rest))
        self._generic_tail = mark_safe("")
        return Update(final=mark_safe("".join(final)), tail=mark_safe(""))

    @property
    def tail(self):
        """The whole tail as it stands, for a snapshot."""
        if not self._view:
            return self._generic_tail
        view = self._view
        return mark_safe(view.before + "".join(self._items) + view.between + self._open_element() + view.after)

    def _normalise_newlines(self, delta):
        # A "\r\n" may arrive split over two deltas; hold a trailing "\r" back until
        # we know, so that it does not become two line breaks.
        if self._held_carriage_return:
            delta = "\r" + delta
        self._held_carriage_return = delta.endswith("\r")
        if self._held_carriage_return:
            delta = delta[:-1]
        return delta.replace("\r\n", "\n").replace("\r", "\n")

    def _take_finished_blocks(self):
        final = []
        while True:
            self._read_complete_lines()
            if isinstance(self._view, _CodeView) and self._view.closed:
                # Nothing after its closing line can change a fence: it is final at once.
                final.append(self._final_block(self._rest[: self._viewed]))
                self._cut(self._viewed)
                continue
            # Blank lines inside an open fence end nothing.
            if not isinstance(self._view, _CodeView) and self._complete_line_after_blank():
                if blocks := self._split_off_finished_blocks():
                    final.extend(blocks)
                    continue
            return final

    def _split_off_finished_blocks(self):
        blocks, rest = split_finished_blocks(self._rest, at_end=False)
        if not blocks:
            return []
        final = [self._final_block(blocks[0]), *(render_block(block) for block in blocks[1:])]
        self._cut(len(self._rest) - len(rest))
        self._read_complete_lines()
        return final

    def _line_begun_after_blank(self):
        """Whether a line has just begun after a blank one: a paragraph or table above is then final."""
        start = self._rest.rfind("\n") + 1
        if isinstance(self._view, _CodeView) or not self._last_line_blank or start in (0, self._tried_after_blank):
            return False  # (in an open fence, blank lines are not looked for: the fence ends nothing)
        if not self._rest[start:].strip():
            return False
        self._tried_after_blank = start  # once for each such line, not on every update while it grows
        return True

    def _final_block(self, source):
        """The open block, now finished: from its view's pieces where they are the same, else rendered whole."""
        return (self._view and self._view.final_block(source, self._items)) or render_block(source)

    def _complete_line_after_blank(self):
        """Whether a line completed since the last look follows a blank one: only there can a block end."""
        end = self._rest.rfind("\n")
        found = False
        if end >= self._scanned:
            for line in self._rest[self._scanned : end].split("\n"):
                found = found or self._last_line_blank
                self._last_line_blank = not line.strip(" \t")
            self._scanned = end + 1
        return found

    def _read_complete_lines(self):
        """Give the view the lines completed since; choose it once the block's first lines are there."""
        end = self._rest.rfind("\n")
        if self._view is False or end < self._viewed:
            return
        if self._view is None and not self._choose_view(self._rest[: end + 1]) or not self._view:
            return
        for line in self._rest[self._viewed : end].split("\n") if end >= self._viewed else ():
            if not self._take_view_output(self._view.add_line(line)):
                return
            self._viewed += len(line) + 1
            if isinstance(self._view, _CodeView) and self._view.closed:
                return

    def _read_open_line(self):
        if self._view is None and "\n" not in self._rest:
            self._choose_view(self._rest)
        if self._view:
            self._take_view_output(self._view.add_partial(self._rest[self._viewed :]))

    def _choose_view(self, block):
        """Set the open block's view if its first lines or characters decide it; returns whether they did."""
        view, lines = _view_for(block, self.open_id)
        if view is ...:
            return False
        self._view = view or False
        for _ in range(lines if view else 0):
            self._viewed = self._rest.index("\n", self._viewed) + 1
        return True

    def _take_view_output(self, html):
        """Keep what the view gave; returns False when the block left the view (it is then rendered whole)."""
        if html is None:
            self._view, self._items, self._added = False, [], []
            return False
        if html:
            self._items.append(html)
            self._added.append(html)
        return True

    def _cut(self, length):
        """The first `length` characters of the rest are final: start on the next block."""
        self._rest = self._rest[length:]
        self._tried_after_blank = -1
        if self._scanned < length:
            self._scanned, self._last_line_blank = 0, False
        else:
            self._scanned -= length
        self._view, self._viewed, self._items, self._added = None, 0, [], []

    def _open_element(self):
        tag = "<" + self._view.tag
        html = self._view.open_element(self._rest[self._viewed :])
        return tag + self._id_attribute + html.removeprefix(tag)

    def _update(self, final):
        final = mark_safe("".join(final))
        if self._view and self._view is self._shown:
            added, self._added = mark_safe("".join(self._added)), []
            return Update(
                final=final,
                added=added,
                added_to=self._view.added_to.format(id=self.open_id),
                container=self._view.container,
                open=mark_safe(self._open_element()),
            )
        self._added = []
        self._shown = self._view or None
        if not self._view:
            self._generic_tail = render_block(self._rest)
            return Update(final=final, tail=self._generic_tail)
        return Update(final=final, tail=self.tail, open=mark_safe(self._open_element()))


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
