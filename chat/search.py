"""Search across a member's own chats: titles, messages, MiMo's thinking and the text of attached documents.

The database does the searching, with its own full-text index: FTS5 on SQLite,
`to_tsvector` and a GIN index on PostgreSQL (migration 0005). This module
decides what both of them read, so that they find the same rows.

Both read `SearchEntry.text`: the words of a piece of text, folded (lower case,
accents dropped, full-width letters made narrow) and joined by single spaces,
with every Chinese or Japanese character a word of its own. Those languages put
no spaces between words and neither database can split them; searched as a
phrase, single characters find a word of any length anywhere in a sentence
(天气 becomes "天 气", which …今天天气很好… contains). The query goes through the
same folding, and each of its space-separated terms is searched as a phrase whose
last word may be the start of a longer one, so typing "pyth" finds "python".
Every term must be found. Nothing the member types is ever FTS syntax: quotes,
`*`, `-`, `NEAR`, `:` and brackets are separators or plain words.

Snippets are cut in Python, not by either database, so they look the same on
both: from the text as Markdown shows it (no `**`, backticks or link syntax), and
everything but the `<mark>`s is escaped by the template.
"""

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django import forms
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, Max, Min, OuterRef
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models import Attachment, Conversation, Message, SearchEntry, ToolCall

# Chinese, Japanese kana and CJK compatibility characters: one word each. (Korean puts spaces between words.)
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
CJK_CHARACTER = re.compile(rf"[{CJK}]")
WORD = re.compile(rf"[{CJK}]|(?:(?![{CJK}])[^\W_])+")
MAX_QUERY_LENGTH = 100
# Long texts are indexed in pieces of CHUNK_WORDS words, each overlapping the next by
# more words than a query can have, so a phrase is always whole in one piece. Why pieces:
# a PostgreSQL tsvector keeps at most 255 positions of a word and none past 16,383, so
# in a long answer or reasoning (的 repeats thousands of times) phrases would go unfound.
CHUNK_WORDS = 1000
CHUNK_OVERLAP = MAX_QUERY_LENGTH
# A snippet: about this many characters, starting a little before the first match.
SNIPPET_LENGTH = 200
SNIPPET_BEFORE = 50


# --- Words ---------------------------------------------------------------------------


def fold(text):
    """Lower case, no accents, compatibility forms made plain (Ｗ → w, ﬁ → fi, é → e)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def word_spans(text):
    """(folded word, start, end) for every word of `text`, with offsets into `text` itself."""
    for match in WORD.finditer(text):
        word = match.group()
        if word.isascii():  # folded, an ASCII word is itself in lower case, and still one word
            yield word.lower(), match.start(), match.end()
            continue
        for folded in WORD.findall(fold(word)):  # folding may split a word (½ → 1⁄2) or a CJK run
            yield folded, match.start(), match.end()


def words(text):
    """The text as the index reads it."""
    return " ".join(word for word, _start, _end in word_spans(text))


def chunks(text):
    """(start offset, indexed text) for each piece of a text; none for a text without words."""
    spans = list(word_spans(text))
    step = CHUNK_WORDS - CHUNK_OVERLAP
    for first in range(0, max(len(spans) - CHUNK_OVERLAP, 1), step):
        piece = spans[first : first + CHUNK_WORDS]
        if piece:
            yield piece[0][1], " ".join(word for word, _start, _end in piece)


# --- Keeping the index up to date (chat/signals.py calls these) -----------------------


def entries_for(entry_model, text, **fields):
    return [entry_model(start=start, text=indexed, **fields) for start, indexed in chunks(text or "")]


def entries_for_message(entry_model, message_id, conversation_id, content, reasoning, written_at):
    common = {"message_id": message_id, "conversation_id": conversation_id, "written_at": written_at}
    return entries_for(entry_model, content, kind=SearchEntry.Kind.MESSAGE, **common) + entries_for(
        entry_model, reasoning, kind=SearchEntry.Kind.REASONING, **common
    )


def index_message(message, *, new=False):
    """Replace the message's entries: its content and its reasoning, as they are now.

    A `new` message has none to replace: one statement instead of four, at every question sent.
    """
    entries = entries_for_message(
        SearchEntry, message.pk, message.conversation_id, message.content, message.reasoning_content, message.created_at
    )
    if new:
        SearchEntry.objects.bulk_create(entries)
        return
    # Within the save's own transaction when it has one (an answer's end): a failure here fails the
    # save as a whole, so no savepoint of its own (two more statements at every answer's end).
    # Its attached files' entries stay: the files did not change.
    with transaction.atomic(savepoint=False):
        SearchEntry.objects.filter(message_id=message.pk, kind__in=MESSAGE_KINDS).delete()
        SearchEntry.objects.bulk_create(entries)


MESSAGE_KINDS = [SearchEntry.Kind.MESSAGE, SearchEntry.Kind.REASONING]


def attached_text(attachments):
    """The text of a message's attached documents as one, in the order they were attached: what
    their entries index, and what a snippet of theirs is cut from."""
    return "\n\n".join(attachment.text for attachment in attachments if attachment.text)


def index_attachments(message, attachments):
    """Replace the entries of the text of a message's attached documents.

    `attachments`: all of the message's, in the order they were attached. The sending code and an
    import hold them already, so none is read again; a rebuild passes `message.attachments.all()`.

    Not from index_message: a message is saved before its files are linked to it, and looking
    for files at every save would cost every answer a query. Every code that links documents to
    a message calls this once it has: sending and editing a question (generation.attach), an
    import (transfer.save_messages) and a rebuild.
    """
    text = attached_text(attachments)
    with transaction.atomic():
        SearchEntry.objects.filter(message_id=message.pk, kind=SearchEntry.Kind.ATTACHMENT).delete()
        SearchEntry.objects.bulk_create(
            entries_for(
                SearchEntry, text, kind=SearchEntry.Kind.ATTACHMENT, message_id=message.pk,
                conversation_id=message.conversation_id, written_at=message.created_at,
            )
        )


def index_title(conversation):
    with transaction.atomic():
        SearchEntry.objects.filter(conversation_id=conversation.pk, kind=SearchEntry.Kind.TITLE).delete()
        SearchEntry.objects.bulk_create(
            entries_for(
                SearchEntry, conversation.title, kind=SearchEntry.Kind.TITLE, conversation_id=conversation.pk,
                written_at=conversation.created_at,
            )
        )


def index_missing(user):
    """Index what bulk updates wrote, which send no signal; called before a member searches.

    Two writes are bulk updates on purpose: answers whose process died are marked
    `interrupted` (Message.mark_dead), and a new conversation's title is written only
    over a blank one (chat/titles.py). Both are few, and found through indexes.
    """
    cut_short = Message.objects.filter(status=Message.Status.INTERRUPTED, conversation__owner=user).exclude(
        Exists(SearchEntry.objects.filter(message=OuterRef("pk")))
    )
    for message in cut_short:
        index_message(message)
    untitled = SearchEntry.objects.filter(conversation=OuterRef("pk"), kind=SearchEntry.Kind.TITLE)
    for conversation in Conversation.objects.filter(owner=user).exclude(title="").exclude(Exists(untitled)):
        index_title(conversation)


def rebuild_index(models=None):
    """Index every title and finished message anew.

    `models`: the migration's historical (SearchEntry, Conversation, Message); only
    plain field names are used, so this runs against the schema of migration 0005.
    """
    entry_model, conversation_model, message_model = models or (SearchEntry, Conversation, Message)
    entry_model.objects.all().delete()
    batch = []

    def add(entries):
        batch.extend(entries)
        if len(batch) >= 500:
            entry_model.objects.bulk_create(batch)
            batch.clear()

    titled = conversation_model.objects.exclude(title="").values_list("pk", "title", "created_at")
    for conversation_id, title, created_at in titled.iterator():
        add(entries_for(entry_model, title, kind="title", conversation_id=conversation_id, written_at=created_at))
    finished = message_model.objects.exclude(status="streaming").values_list(
        "pk", "conversation_id", "content", "reasoning_content", "created_at"
    )
    for row in finished.iterator():
        add(entries_for_message(entry_model, *row))
    entry_model.objects.bulk_create(batch)
    if models is None:  # the command's; migration 0005's schema has no attachments
        for message in Message.objects.filter(Exists(Attachment.objects.filter(message=OuterRef("pk")).exclude(text=""))):
            index_attachments(message, message.attachments.all())


# --- Queries ---------------------------------------------------------------------------


class QueryError(ValueError):
    pass


def parse_query(query):
    """The query's terms, each a tuple of folded words searched as a phrase."""
    terms = [tuple(word for word, _start, _end in word_spans(piece)) for piece in query.split()]
    terms = [term for term in terms if term]
    if not terms:
        raise QueryError(_("Type a word to search for."))
    # One Chinese character is a word; one letter finds too much to be of use.
    has_cjk = any(CJK_CHARACTER.match(word) for term in terms for word in term)
    if not has_cjk and sum(len(word) for term in terms for word in term) < 2:
        raise QueryError(_("Type at least two letters or digits, or one Chinese or Japanese character."))
    return terms


def fts5_query(terms):
    """`"天 气" * AND "python" *`: each term a phrase, its last word a prefix. Words hold no quotes."""
    return " AND ".join('"{}" *'.format(" ".join(term)) for term in terms)


def tsquery(terms):
    """`'天' <-> '气':* & 'python':*`, the same search for PostgreSQL's to_tsquery."""
    return " & ".join(" <-> ".join(f"'{word}'" for word in term) + ":*" for term in terms)


def matching(terms):
    """A filter for the entries that contain every term, in the database's own full-text index."""
    if connection.vendor == "postgresql":
        sql = """to_tsvector('simple'::regconfig, "chat_searchentry"."text") @@ to_tsquery('simple'::regconfig, %s)"""
        return RawSQL(sql, [tsquery(terms)], output_field=BooleanField())
    sql = """"chat_searchentry"."id" IN (SELECT rowid FROM chat_searchentry_fts WHERE chat_searchentry_fts MATCH %s)"""
    return RawSQL(sql, [fts5_query(terms)], output_field=BooleanField())


def start_of_day(day):
    return timezone.make_aware(datetime.combine(day, time.min))


class SearchForm(forms.Form):
    """The search box and its filters, read from the query string."""

    q = forms.CharField(
        label=_("Search"),
        max_length=MAX_QUERY_LENGTH,
        error_messages={"required": _("Type a word to search for.")},
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off", "autofocus": True}),
    )
    model = forms.ChoiceField(label=_("Model"), required=False)
    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    tools = forms.BooleanField(label=_("Only chats that used tools"), required=False)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        used = Message.objects.filter(conversation__owner=user).exclude(model="")
        models = used.order_by("model").values_list("model", flat=True).distinct()
        self.fields["model"].choices = [("", _("Any model"))] + [(model, model) for model in models]

    def clean_q(self):
        try:
            return parse_query(self.cleaned_data["q"])
        except QueryError as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data

    def hits(self):
        """One row per matching title, message or reasoning (a long text matches once), newest first.

        Only the member's own conversations, never the trash: the owner is named
        here, not through `visible_to`, so that nothing anyone else may see is searched.
        """
        data = self.cleaned_data
        entries = SearchEntry.objects.filter(
            matching(data["q"]), conversation__owner=self.user, conversation__deleted_at__isnull=True
        )
        if data["model"]:
            entries = entries.filter(Exists(Message.objects.filter(conversation=OuterRef("conversation"), model=data["model"])))
        if data["since"]:
            entries = entries.filter(written_at__gte=start_of_day(data["since"]))
        if data["until"]:
            entries = entries.filter(written_at__lt=start_of_day(data["until"] + timedelta(days=1)))
        if data["tools"]:
            entries = entries.filter(Exists(ToolCall.objects.filter(message__conversation=OuterRef("conversation"))))
        return (
            entries.values("conversation_id", "message_id", "kind")
            .annotate(entry_id=Min("id"), latest=Max("written_at"))
            .order_by("-latest", "-entry_id")
        )


# --- Results and their snippets --------------------------------------------------------


@dataclass
class Result:
    entry: SearchEntry
    snippet: list  # (text, matched) pieces, escaped by the template

    @property
    def url(self):
        """The message in its conversation: the page opens a window around ?message= (see #message-<id>)."""
        url = reverse("conversation", args=[self.entry.conversation_id])
        if self.entry.message_id is None:
            return url
        return f"{url}?message={self.entry.message_id}#message-{self.entry.message_id}"


def results(hits, terms):
    """The page's hits as Results, in the hits' order."""
    entries = SearchEntry.objects.select_related("conversation", "message").in_bulk([hit["entry_id"] for hit in hits])
    found = []
    for hit in hits:
        entry = entries[hit["entry_id"]]
        text, offsets = plain_text(original_text(entry))
        # The entry's start is an offset into the Markdown: its place in the plain text is the first character from there on.
        found.append(Result(entry, snippet(text, terms, bisect_left(offsets, entry.start))))
    return found



def original_text(entry):
    if entry.kind == SearchEntry.Kind.TITLE:
        return entry.conversation.title
    if entry.kind == SearchEntry.Kind.REASONING:
        return entry.message.reasoning_content or ""
    if entry.kind == SearchEntry.Kind.ATTACHMENT:
        return attached_text(entry.message.attachments.all())
    return entry.message.content


def term_at(spans, index, term):
    """Whether the term's words start at spans[index]; the last word may be the start of a longer one."""
    if index + len(term) > len(spans):
        return False
    *whole, last = term
    return all(spans[index + i][0] == word for i, word in enumerate(whole)) and spans[index + len(whole)][0].startswith(last)


def matches(spans, terms, begin=0):
    """(start, end) character ranges of every term found from spans[begin] on, in order."""
    for index in range(begin, len(spans)):
        for term in terms:
            if term_at(spans, index, term):
                yield spans[index][1], spans[index + len(term) - 1][2]


def snippet(text, terms, start=0):
    """An excerpt around the first match at or after `start`, as (text, matched) pieces.

    Whitespace is collapsed; an excerpt that does not reach an end of the text says so with "…".
    """
    spans = list(word_spans(text))
    begin = next((i for i, span in enumerate(spans) if span[1] >= start), len(spans))
    first = next(matches(spans, terms, begin), None)
    left = max(0, (first[0] if first else start) - SNIPPET_BEFORE)
    if left > 0:  # begin at a word, not inside one, when a space is near
        space = text.find(" ", left, left + 20)
        left = space + 1 if space != -1 else left
    right = min(len(text), left + SNIPPET_LENGTH)
    if right < len(text):
        space = text.rfind(" ", right - 20, right)
        right = space if space > left else right
    pieces = [("…", False)] if left > 0 else []
    position = left
    for match_start, match_end in matches(spans, terms, next((i for i, s in enumerate(spans) if s[1] >= left), 0)):
        if match_end > right:
            break
        if match_start < position:  # overlaps the previous match
            continue
        pieces += [(text[position:match_start], False), (text[match_start:match_end], True)]
        position = match_end
    pieces.append((text[position:right], False))
    if right < len(text):
        pieces.append(("…", False))
    return [(re.sub(r"\s+", " ", piece), matched) for piece, matched in pieces if piece]


# --- Markdown read as plain text, for snippets ------------------------------------------
#
# A snippet is a line of text, not a rendered answer: `**bold**`, backticks, `# ` and link
# syntax would show as written. What is left is the words, still escaped by the template.
# Each step keeps, with every character it leaves, that character's offset in the original
# text, so an entry's start (an offset into the Markdown) still finds its place.

FENCE = re.compile(r"^ {0,3}(?:```|~~~)")
# Lines that are all syntax: the rule under a table's head, a thematic break.
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
# What starts a line: a quote's `>`s, a heading's `#`s, a bullet and a task's box (a list's numbers stay).
LINE_START = re.compile(r"^ {0,3}(?:>[ \t]?)*(?:#{1,6}(?:[ \t]+|$)|[-*+][ \t]+(?:\[[ xX]\][ \t]+)?)?", re.M)
HEADING_END = re.compile(r"[ \t]+#+[ \t]*$", re.M)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](url), ![alt](url), [text][reference]: the text stays.
LINK = re.compile(r"!?\[([^\]\n]*)\](?:\([^)\n]*\)|\[[^\]\n]*\])")
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
# Paired markers around text that starts and ends with a non-space: **strong**, *em*, ~~struck~~ (inside a word
# too, as in 中文**加粗**); __strong__ and _em_ only outside one (snake_case stays). A backslash makes a marker text.
STARS = re.compile(r"(?<![*~\\])(\*\*\*|\*\*|\*|~~)(?=[^\s*~])(.+?)(?<=[^\s*~\\])\1(?![*~])")
UNDERSCORES = re.compile(r"(?<![\w\\])(__|_)(?=[^\s_])(.+?)(?<=[^\s_\\])\1(?!\w)")
ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
WHOLE_LINE = re.compile(r".+")


def keep_groups(pattern, text, offsets, keep=()):
    """`text` with each match of `pattern` replaced by its groups numbered in `keep`, and the offsets of what is left."""
    kept, kept_offsets, position = [], [], 0
    for match in pattern.finditer(text):
        kept.append(text[position : match.start()])
        kept_offsets += offsets[position : match.start()]
        for group in keep:
            start, end = match.span(group)
            kept.append(text[start:end])
            kept_offsets += offsets[start:end]
        position = match.end()
    kept.append(text[position:])
    kept_offsets += offsets[position:]
    return "".join(kept), kept_offsets


def plain_inline(text, offsets):
    """A line without its inline syntax; the text of a code span stays as it is written."""
    kept, kept_offsets, position = "", [], 0
    for code in [*INLINE_CODE.finditer(text), None]:
        end = code.start() if code else len(text)
        words, word_offsets = text[position:end], offsets[position:end]
        words, word_offsets = keep_groups(LINK, words, word_offsets, keep=[1])
        words, word_offsets = keep_groups(AUTOLINK, words, word_offsets, keep=[1])
        for _nesting in range(2):  # *emphasis* inside **strong**
            words, word_offsets = keep_groups(STARS, words, word_offsets, keep=[2])
            words, word_offsets = keep_groups(UNDERSCORES, words, word_offsets, keep=[2])
        words, word_offsets = keep_groups(ESCAPED, words, word_offsets, keep=[1])
        kept += words
        kept_offsets += word_offsets
        if code:
            kept += code.group(2)
            kept_offsets += offsets[code.start(2) : code.end(2)]
            position = code.end()
    return kept, kept_offsets


def plain_text(markdown):
    """The text that Markdown shows, and the offset in `markdown` of each of its characters."""
    kept, kept_offsets, in_code_block, position = "", [], False, 0
    for line in markdown.splitlines(keepends=True):
        offsets = list(range(position, position + len(line)))
        position += len(line)
        if FENCE.match(line):  # the fence and its language go; the code between fences stays as written
            in_code_block = not in_code_block
            line, offsets = keep_groups(WHOLE_LINE, line, offsets)
        elif in_code_block:
            pass
        elif TABLE_RULE.match(line) or THEMATIC_BREAK.match(line):
            line, offsets = keep_groups(WHOLE_LINE, line, offsets)
        else:
            if line.lstrip(" >").startswith("#"):
                line, offsets = keep_groups(HEADING_END, line, offsets)
            line, offsets = keep_groups(LINE_START, line, offsets)
            if line.lstrip().startswith("|"):  # a table's row: its cells side by side
                line = line.replace("|", " ")
            line, offsets = plain_inline(line, offsets)
        kept += line
        kept_offsets += offsets
    return kept, kept_offsets
