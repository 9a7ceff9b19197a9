"""Search across a member's own chats, in the database's own full-text index (SQLite FTS5, PostgreSQL)."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import search
from chat.models import Attachment, Conversation, Message, SearchEntry, ToolCall
from chat.search import WORD, QueryError, fold, fts5_query, parse_query, snippet, tsquery, word_spans

WEATHER = "今天天气很好，我们去公园散步吧。"


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Bob's plans")


def say(conversation, content, *, role="assistant", **fields):
    """A finished message, saved as the app saves one (the signals index it)."""
    return Message.objects.create(conversation=conversation, role=role, content=content, **fields)


def find(client, user, **params):
    client.force_login(user)
    response = client.get("/chats/search/", params)
    assert response.status_code == 200
    return response.text


def found_ids(client, user, q, **filters):
    """The message ids of the results (None for a title), in order."""
    form = search.SearchForm(user, {"q": q, **filters})
    assert form.is_valid(), form.errors
    return [hit["message_id"] for hit in form.hits()]


# --- What is found -----------------------------------------------------------------


def sent_with_document(conversation, content, *documents):
    """A question with documents attached, linked after it is saved and then indexed, as sending does
    (each way of linking them is pinned where it is: test_sending_attachments, test_transfer_files)."""
    question = say(conversation, content, role="user")
    attached = [
        Attachment.objects.create(
            owner=conversation.owner, conversation=conversation, message=question, kind="document",
            name=name, content_type="text/plain; charset=utf-8", size=len(text.encode()), sha256="0" * 64, text=text,
        )
        for name, text in documents
    ]
    search.index_attachments(question, attached)
    return question


@pytest.mark.parametrize("query", ["quarterly revenue", "收入", "季度收入增长"])
def test_a_document_is_found_by_its_text_in_english_and_chinese(client, bob, conversation, query):
    question = sent_with_document(
        conversation, "What does this say?", ("report.txt", "Quarterly revenue rose."), ("报告.txt", "第三季度收入增长了百分之十。")
    )
    assert found_ids(client, bob, query) == [question.pk]


def test_a_document_result_shows_a_snippet_of_its_text_and_says_it_is_a_file(client, bob, conversation):
    sent_with_document(conversation, "Read it", ("notes.txt", "Nothing here."), ("report.txt", "The <b>pipeline</b> grew fast."))
    page = find(client, bob, q="pipeline")
    assert "Attached file" in page
    assert "&lt;b&gt;<mark>pipeline</mark>&lt;/b&gt; grew fast" in page


def test_indexing_a_messages_documents_reads_none_from_the_database_again(bob, conversation):
    question = sent_with_document(conversation, "Read it", ("plan.md", "Migrate the warehouse"))
    attached = list(question.attachments.all())
    with CaptureQueriesContext(connection) as queries:
        search.index_attachments(question, attached)  # the sending code holds them already
    assert not [query for query in queries if query["sql"].startswith("SELECT")]


def test_editing_the_message_keeps_its_documents_found(client, bob, conversation):
    question = sent_with_document(conversation, "Read it", ("plan.md", "Migrate the warehouse"))
    question.content = "Read it, please"
    question.save()
    assert found_ids(client, bob, "warehouse") == [question.pk]
    assert found_ids(client, bob, "please") == [question.pk]


def test_nobody_else_finds_a_members_documents(client, alice, charlie, bob, conversation):
    sent_with_document(conversation, "Read it", ("plan.md", "Migrate the warehouse"))
    for other in (alice, charlie):
        assert found_ids(client, other, "warehouse") == []
    assert len(found_ids(client, bob, "warehouse")) == 1


def test_rebuilding_the_index_finds_documents_too(client, bob, conversation):
    question = sent_with_document(conversation, "Read it", ("plan.md", "Migrate the warehouse"))
    call_command("rebuild_search_index", stdout=StringIO())
    assert found_ids(client, bob, "warehouse") == [question.pk]



def test_an_english_word_finds_the_message_highlighted_with_a_link_to_it(client, bob, conversation):
    message = say(conversation, "Use Python's csv module to read the file.")
    page = find(client, bob, q="python")
    assert "<mark>Python</mark>" in page
    assert f'href="/chats/{conversation.pk}/?message={message.pk}#message-{message.pk}"' in page
    assert "Bob&#x27;s plans" in page


def test_a_word_is_found_by_its_beginning_and_every_term_must_be_there(client, bob, conversation):
    message = say(conversation, "Python is a programming language.")
    assert found_ids(client, bob, "pyth") == [message.pk]
    assert found_ids(client, bob, "python language") == [message.pk]
    assert found_ids(client, bob, "python rust") == []
    assert found_ids(client, bob, "ython") == []  # the middle of a word is not a word


def test_case_accents_and_full_width_letters_do_not_matter(client, bob, conversation):
    message = say(conversation, "Un café à Paris avec ＭｉＭｏ.")
    assert found_ids(client, bob, "CAFE") == [message.pk]
    assert found_ids(client, bob, "mimo") == [message.pk]


@pytest.mark.parametrize("query", ["天", "天气", "天气很", "公园散步"])
def test_chinese_of_one_two_and_more_characters_is_found_mid_sentence(client, bob, conversation, query):
    message = say(conversation, WEATHER)
    assert found_ids(client, bob, query) == [message.pk]


def test_chinese_characters_must_be_adjacent_and_in_order(client, bob, conversation):
    say(conversation, WEATHER)
    assert found_ids(client, bob, "气天") == []
    assert found_ids(client, bob, "天好") == []
    assert found_ids(client, bob, "雨") == []


def test_a_chinese_match_is_highlighted_whole(client, bob, conversation):
    say(conversation, WEATHER)
    assert "今天<mark>天气</mark>很好" in find(client, bob, q="天气")


def test_chinese_mixed_with_english_words(client, bob, conversation):
    message = say(conversation, "用Python写一个爬虫，抓取天气预报。")
    assert found_ids(client, bob, "python 爬虫") == [message.pk]
    assert found_ids(client, bob, "写一个") == [message.pk]


def test_questions_reasoning_and_titles_are_searched(client, bob, conversation):
    question = say(conversation, "How tall is the Eiffel tower?", role="user")
    answer = say(conversation, "About 330 metres.", reasoning_content="The user asks about a Parisian landmark.")
    conversation.title = "Landmarks of Paris"
    conversation.save()
    assert found_ids(client, bob, "eiffel") == [question.pk]
    assert found_ids(client, bob, "landmark") == [answer.pk, None]  # a title dates from its conversation
    page = find(client, bob, q="parisian")
    assert "MiMo’s thinking" in page
    assert f'href="/chats/{conversation.pk}/?message={answer.pk}#message-{answer.pk}"' in page


def test_a_title_result_links_to_the_conversation(client, bob, conversation):
    page = find(client, bob, q="plans")
    assert f'href="/chats/{conversation.pk}/"' in page
    assert "Bob&#x27;s <mark>plans</mark>" in page


def test_results_come_newest_first(client, bob, conversation):
    older = say(conversation, "kettle one", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    newer = say(conversation, "kettle two", created_at=datetime(2026, 6, 1, tzinfo=UTC))
    assert found_ids(client, bob, "kettle") == [newer.pk, older.pk]


def test_a_long_text_is_found_once_wherever_the_match_is(client, bob, conversation):
    words = [f"filler{i}" for i in range(3000)]
    words[2500] = "needle"
    message = say(conversation, " ".join(words))
    assert found_ids(client, bob, "needle") == [message.pk]
    assert found_ids(client, bob, "filler2499 needle filler2501") == [message.pk]
    assert "<mark>needle</mark>" in find(client, bob, q="needle")


def test_a_phrase_across_the_seam_of_two_pieces_is_found(client, bob, conversation):
    words = [f"w{i}" for i in range(search.CHUNK_WORDS + 50)]
    message = say(conversation, " ".join(words))
    seam = " ".join(words[search.CHUNK_WORDS - 5 : search.CHUNK_WORDS + 5])
    assert found_ids(client, bob, seam.replace(" ", "")) == []  # joined: not a word of the text
    assert SearchEntry.objects.filter(message=message).count() == 2
    # A term is a phrase of the words it folds to: "w995-w996-…" is one term of ten words.
    assert found_ids(client, bob, seam.replace(" ", "-")) == [message.pk]


def test_a_long_chinese_text_is_found_at_its_end(client, bob, conversation):
    """A PostgreSQL tsvector keeps 255 positions of a word at most, none past 16,383: pieces keep phrases findable."""
    message = say(conversation, "我们今天讨论的是天气的问题。" * 1500 + "最后：明天下雨的可能性。")
    assert found_ids(client, bob, "下雨的可能") == [message.pk]
    assert found_ids(client, bob, "问题最后") == [message.pk]


# --- Hostile and unusable queries -----------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ['"python', 'python"', "python*", "-python", "python -csv", "(python", "python)", "csv:module", "AND python",
     "NOT python", "python^", "{python}", "'python'", "python\\", "python %", "python_", "* python", "python +csv"],
)
def test_fts_syntax_in_a_query_is_plain_text(client, bob, conversation, query):
    message = say(conversation, "Use Python's csv module, and not the other one.")
    assert found_ids(client, bob, query) == [message.pk]
    assert "<mark>" in find(client, bob, q=query)


@pytest.mark.parametrize(
    "query",
    ['"" AND ""', "NEAR(python csv)", "python'; DROP TABLE chat_message; --", "a OR b", "x:* & y", "python \\\"x"],
)
def test_a_hostile_query_finds_nothing_and_breaks_nothing(client, bob, conversation, query):
    say(conversation, "Use Python's csv module.")
    page = find(client, bob, q=query)
    assert "search-result-list" not in page
    assert Message.objects.count() == 1


def test_operator_words_are_searched_as_words(client, bob, conversation):
    near = say(conversation, "The shop is near the station.")
    say(conversation, "Nothing here, or there.")
    assert found_ids(client, bob, "NEAR") == [near.pk]
    assert found_ids(client, bob, "shop AND") == []
    assert found_ids(client, bob, "NEAR(shop station)") == []


@pytest.mark.parametrize(
    "query, error",
    [
        ("", "Type a word to search for."),
        ("   ", "Type a word to search for."),
        ("!!! ??? *", "Type a word to search for."),
        ("a", "Type at least two letters or digits, or one Chinese or Japanese character."),
        ("x", "Type at least two letters or digits, or one Chinese or Japanese character."),
        ("a" * 101, "Ensure this value has at most 100 characters (it has 101)."),
    ],
)
def test_an_empty_or_too_short_query_gets_a_clear_message(client, bob, conversation, query, error):
    say(conversation, "a x")
    page = find(client, bob, q=query)
    assert error in page
    assert "search-result-list" not in page


def test_the_page_opens_with_no_message_and_no_results(client, bob, conversation):
    page = find(client, bob)
    assert 'name="q"' in page
    assert "Type a word" not in page
    assert "search-result-list" not in page and "Nothing found" not in page


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("aZ9 _-½ﬁÉé℃天气Ｗ"), max_size=60))
def test_ascii_words_take_the_short_way_to_the_same_folded_words(text):
    """Every word folded on its own, as before the ASCII shortcut: indexed texts and queries still agree."""
    folded_one_by_one = [
        (word, match.start(), match.end()) for match in WORD.finditer(text) for word in WORD.findall(fold(match.group()))
    ]
    assert list(word_spans(text)) == folded_one_by_one


def test_query_parsing_leaves_only_words():
    terms = parse_query('"Hello" NEAR(x*y) -天气: ')
    assert terms == [("hello",), ("near", "x", "y"), ("天", "气")]
    assert fts5_query(terms) == '"hello" * AND "near x y" * AND "天 气" *'
    assert tsquery(terms) == "'hello':* & 'near' <-> 'x' <-> 'y':* & '天' <-> '气':*"
    with pytest.raises(QueryError):
        parse_query("* - ()")


# --- Snippets ---------------------------------------------------------------------------


def test_snippets_escape_the_text_and_mark_only_the_matches(client, bob, conversation):
    say(conversation, '<script>alert("x")</script> python <img src=x onerror=alert(1)> & more')
    page = find(client, bob, q="python")
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; <mark>python</mark> &lt;img src=x onerror=alert(1)&gt; &amp; more" in page


def test_a_query_that_is_markup_is_escaped_too(client, bob, conversation):
    say(conversation, "The <bold> tag makes text bold.")
    page = find(client, bob, q="<bold>")
    assert "The &lt;<mark>bold</mark>&gt; tag" in page
    assert "<bold>" not in page


def test_a_snippet_is_an_excerpt_around_the_first_match():
    text = "Lorem ipsum dolor sit amet. " * 40 + "The answer is forty two. " + "Consectetur adipiscing elit. " * 40
    pieces = snippet(text, parse_query("forty"))
    assert pieces[0] == ("…", False) and pieces[-1] == ("…", False)
    assert ("forty", True) in pieces
    excerpt = "".join(piece for piece, _ in pieces)
    assert "The answer is forty two." in excerpt
    assert len(excerpt) <= search.SNIPPET_LENGTH + 2
    assert "\n" not in excerpt


def test_a_snippet_marks_every_term_in_the_excerpt():
    pieces = snippet("Red apples and green apples,\n\nand red pears.", parse_query("apple red"))
    assert pieces == [
        ("Red", True), (" ", False), ("apples", True), (" and green ", False), ("apples", True),
        (", and ", False), ("red", True), (" pears.", False),
    ]


ANSWER_IN_MARKDOWN = """# Opening **hours**

The `Louvre` opens at 9, see [its site](https://www.louvre.fr/en "Louvre") and <https://example.com>.

- *Closed* on ~~Monday~~ Tuesday
> 1. __Book__ ahead

| day | hours |
| --- | --- |
| Friday | 9–21 |

```python
opening_hours = {"friday": 21}  # **kept** as code
```
"""


def test_a_snippet_of_markdown_shows_its_text_without_the_syntax(client, bob, conversation):
    say(conversation, ANSWER_IN_MARKDOWN)
    page = find(client, bob, q="louvre")
    snippet_html = page[page.index('class="search-snippet"') :]
    snippet_html = snippet_html[snippet_html.index(">") + 1 : snippet_html.index("</a>")]
    assert snippet_html == (
        "Opening hours The <mark>Louvre</mark> opens at 9, see its site and https://example.com. Closed on Monday "
        "Tuesday 1. Book ahead day hours Friday 9–21 opening_hours = {&quot;friday&quot;: 21} # **kept** as…"
    )


@pytest.mark.parametrize(
    "markdown, text",
    [
        ("**bold** and *em* and ***both***", "bold and em and both"),
        ("中文**加粗**中文", "中文加粗中文"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("\\*not emphasis\\*", "*not emphasis*"),
        ("**bold with *inner* words**", "bold with inner words"),
        ("`**code**` stays", "**code** stays"),
        ("![a chart](chart.png)", "a chart"),
        ("## Heading ##", "Heading"),
        ("> - [x] done", "done"),
        ("***", ""),
        ('<script>alert("x")</script>', '<script>alert("x")</script>'),  # not Markdown: left to the template to escape
    ],
)
def test_markdown_read_as_plain_text(markdown, text):
    plain, offsets = search.plain_text(markdown)
    assert plain == text
    assert [markdown[offset] for offset in offsets] == list(plain)  # each character's place in the Markdown


def test_a_snippet_from_the_second_piece_of_a_long_markdown_text_starts_at_its_match(client, bob, conversation):
    words = [f"**w{i}**" for i in range(search.CHUNK_WORDS + 300)]
    words[search.CHUNK_WORDS + 250] = "**needle**"
    say(conversation, " ".join(words))
    page = find(client, bob, q="needle")
    assert "<mark>needle</mark>" in page and "**" not in page


# --- Only one's own, never the trash ----------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
def test_nobody_else_finds_a_members_messages(client, conversation, who, request):
    say(conversation, "Bob's secret recipe for dumplings 饺子")
    conversation.title = "Dumplings"
    conversation.save()
    other = request.getfixturevalue(who)
    mine = Conversation.objects.create(owner=other, team=other.memberships.first().team, title="Mine")
    own = say(mine, "My own dumplings 饺子")
    for q in ("dumplings", "饺子", "secret recipe"):
        results = find(client, other, q=q).split('id="search-results"')[1]
        assert "secret" not in results and "Bob" not in results
    assert found_ids(client, other, "dumplings") == [own.pk]


def test_a_member_does_not_find_other_members_texts(client, bob, charlie, alice, conversation):
    alices = Conversation.objects.create(owner=alice, team=conversation.team, title="Alice's dumplings")
    say(alices, "Alice's dumplings recipe")
    charlies = Conversation.objects.create(owner=charlie, team=charlie.memberships.first().team, title="x")
    say(charlies, "Charlie's dumplings recipe")
    own = say(conversation, "Bob's dumplings recipe")
    assert found_ids(client, bob, "dumplings") == [own.pk]
    page = find(client, bob, q="dumplings")
    assert "Alice" not in page and "Charlie" not in page


def test_conversations_in_the_trash_are_not_searched(client, bob, conversation):
    say(conversation, "A thing in the trash")
    conversation.deleted_at = timezone.now()
    conversation.save()
    assert found_ids(client, bob, "trash") == []
    conversation.deleted_at = None
    conversation.save()
    assert len(found_ids(client, bob, "trash")) == 1


def test_signed_out_visitor_is_sent_to_sign_in(client, conversation):
    response = client.get("/chats/search/?q=plans")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/sign-in/")


# --- Filters ------------------------------------------------------------------------------


def test_the_model_filter_keeps_conversations_that_model_answered(client, bob, acme, conversation):
    flash = say(conversation, "budget report", model="mimo-v2.5")
    other = Conversation.objects.create(owner=bob, team=acme)
    question = say(other, "budget report please", role="user")
    pro = say(other, "budget report done", model="mimo-v2.5-pro")
    assert found_ids(client, bob, "budget", model="mimo-v2.5") == [flash.pk]
    assert set(found_ids(client, bob, "budget", model="mimo-v2.5-pro")) == {question.pk, pro.pk}
    assert len(found_ids(client, bob, "budget")) == 3


def test_the_model_filter_offers_the_members_models_only(client, bob, charlie, conversation):
    say(conversation, "x", model="mimo-v2.5")
    theirs = Conversation.objects.create(owner=charlie, team=charlie.memberships.first().team)
    say(theirs, "x", model="mimo-v9-secret")
    page = find(client, bob)
    assert '<option value="mimo-v2.5">' in page
    assert "mimo-v9-secret" not in page
    assert "Select a valid choice" in find(client, bob, q="x y", model="mimo-v9-secret")


def test_the_date_filter_keeps_what_was_written_in_the_range(client, bob, conversation):
    january = say(conversation, "invoice", created_at=datetime(2026, 1, 15, 12, tzinfo=UTC))
    march = say(conversation, "invoice", created_at=datetime(2026, 3, 15, 12, tzinfo=UTC))
    assert found_ids(client, bob, "invoice", since="2026-03-01") == [march.pk]
    assert found_ids(client, bob, "invoice", until="2026-01-15") == [january.pk]  # the whole last day
    assert found_ids(client, bob, "invoice", since="2026-01-16", until="2026-03-14") == []
    assert "The start date is after the end date." in find(client, bob, q="invoice", since="2026-03-01", until="2026-01-01")


def test_the_tools_filter_keeps_conversations_that_used_tools(client, bob, acme, conversation):
    calculated = say(conversation, "the sum is 42")
    ToolCall.objects.create(message=calculated, index=0, call_id="c1", name="calculator", status="done")
    plain = Conversation.objects.create(owner=bob, team=acme)
    say(plain, "the sum is 41")
    assert found_ids(client, bob, "sum", tools="on") == [calculated.pk]
    assert len(found_ids(client, bob, "sum")) == 2


# --- The database's own index ------------------------------------------------------------


def test_the_database_full_text_index_does_the_searching(client, bob, conversation):
    say(conversation, "full text")
    client.force_login(bob)
    with CaptureQueriesContext(connection) as queries:
        client.get("/chats/search/", {"q": "text"})
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    if connection.vendor == "postgresql":
        assert "to_tsvector('simple'::regconfig" in sql and "@@ to_tsquery('simple'::regconfig" in sql
    else:
        assert "chat_searchentry_fts MATCH" in sql
    assert " LIKE " not in sql.upper()


def index_matches(query):
    """Rows of the database's own index that match, read past the ORM."""
    terms = parse_query(query)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM chat_searchentry WHERE "
                "to_tsvector('simple'::regconfig, text) @@ to_tsquery('simple'::regconfig, %s)",
                [tsquery(terms)],
            )
        else:
            cursor.execute("SELECT count(*) FROM chat_searchentry_fts WHERE chat_searchentry_fts MATCH %s", [fts5_query(terms)])
        return cursor.fetchone()[0]


def test_postgresql_has_the_index_the_query_uses(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chat_searchentry_text_search'")
        (definition,) = cursor.fetchone()
    assert "USING gin (to_tsvector('simple'::regconfig, text))" in definition


# --- Keeping the index up to date ----------------------------------------------------------


def test_a_streaming_answer_is_indexed_when_it_is_saved_finished(client, bob, conversation):
    answer = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="half")
    answer.content = "half an answer about teapots"
    answer.save(update_fields=["content"])
    assert found_ids(client, bob, "teapots") == []
    answer.status = "complete"
    answer.save()
    assert found_ids(client, bob, "teapots") == [answer.pk]


def test_a_users_message_is_indexed_when_created(client, bob, conversation):
    question = say(conversation, "What about walruses?", role="user")
    assert found_ids(client, bob, "walrus") == [question.pk]


def test_an_edited_text_replaces_the_old_one(client, bob, conversation):
    message = say(conversation, "about otters")
    message.content = "about beavers"
    message.save()
    assert found_ids(client, bob, "otters") == []
    assert found_ids(client, bob, "beavers") == [message.pk]
    assert index_matches("otters") == 0


def test_a_saved_field_that_is_not_text_leaves_the_entries_alone(bob, conversation):
    message = say(conversation, "about otters")
    entry = SearchEntry.objects.get(message=message)
    message.visible = False
    message.save(update_fields=["visible"])
    assert SearchEntry.objects.get(message=message).pk == entry.pk


def test_a_new_title_replaces_the_old_one(client, bob, conversation):
    conversation.title = "Holiday in Kyoto 京都"
    conversation.save(update_fields=["title"])
    assert found_ids(client, bob, "plans") == []
    assert found_ids(client, bob, "京都") == [None]
    assert found_ids(client, bob, "kyoto") == [None]
    conversation.title = ""
    conversation.save()
    assert found_ids(client, bob, "kyoto") == []


def test_deleted_messages_and_conversations_leave_the_index(client, bob, acme, conversation):
    message = say(conversation, "ephemeral words", reasoning_content="ephemeral thoughts")
    other = Conversation.objects.create(owner=bob, team=acme, title="ephemeral chat")
    say(other, "ephemeral too")
    assert index_matches("ephemeral") == 4
    message.delete()
    assert index_matches("ephemeral") == 2
    other.delete()
    assert index_matches("ephemeral") == 0
    assert found_ids(client, bob, "ephemeral") == []


def test_an_answer_interrupted_by_a_dead_process_is_found(client, bob, conversation):
    answer = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content="cut short about penguins",
        heartbeat_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert Message.objects.mark_dead() == 1  # a bulk update: no signal
    assert found_ids(client, bob, "penguins") == []  # the form alone does not catch up
    assert "<mark>penguins</mark>" in find(client, bob, q="penguins")  # the page does
    assert found_ids(client, bob, "penguins") == [answer.pk]


def test_a_title_written_by_a_bulk_update_is_found(client, bob, conversation):
    """chat/titles.py writes a new conversation's title with an update, over a blank one only."""
    untitled = Conversation.objects.create(owner=bob, team=conversation.team)
    Conversation.objects.filter(pk=untitled.pk, title="").update(title="Named by MiMo")
    assert found_ids(client, bob, "named") == []  # the form alone does not catch up
    assert f'href="/chats/{untitled.pk}/"' in find(client, bob, q="named")  # the page does
    assert found_ids(client, bob, "named") == [None]


def test_rebuilding_the_index_finds_rows_written_without_signals(client, bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme)
    Conversation.objects.filter(pk=conversation.pk).update(title="Imported chat")
    Message.objects.bulk_create([Message(conversation=conversation, role="user", content="imported question")])
    assert found_ids(client, bob, "imported") == []
    call_command("rebuild_search_index", stdout=StringIO())
    assert found_ids(client, bob, "imported") == [Message.objects.get().pk, None]


# --- Pages and htmx ---------------------------------------------------------------------------


def test_htmx_gets_the_results_alone_and_more_pages_as_items(client, bob, conversation):
    for i in range(25):
        say(conversation, f"lantern number {i}", created_at=datetime(2026, 1, 1, 0, i, tzinfo=UTC))
    client.force_login(bob)
    first = client.get("/chats/search/", {"q": "lantern"}, headers={"HX-Request": "true"}).text
    assert "<html" not in first
    assert first.strip().startswith('<section id="search-results"')
    assert "25 results" in first
    assert first.count('class="search-result"') == 20
    assert 'hx-get="?q=lantern&amp;page=2"' in first
    more = client.get("/chats/search/", {"q": "lantern", "page": "2"}, headers={"HX-Request": "true"}).text
    assert more.count('class="search-result"') == 5
    assert "</mark> number 0</a>" in more
    assert "search-results" not in more and "page=3" not in more
    whole = client.get("/chats/search/", {"q": "lantern", "page": "2"}).text
    assert "<html" in whole and whole.count('class="search-result"') == 5


def test_nothing_found_says_so(client, bob, conversation):
    assert "Nothing found in your chats." in find(client, bob, q="zebra")


# --- The migration -----------------------------------------------------------------------------


def test_the_migration_indexes_what_was_written_before_it(transactional_db, client, bob, acme):
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("chat", "0004_initial_prices")], [("chat", "0005_search")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps  # historical models send no signals the index hears
    conversation = old.get_model("chat", "Conversation").objects.create(owner_id=bob.pk, team_id=acme.pk, title="Old times")
    old.get_model("chat", "Message").objects.create(conversation_id=conversation.pk, role="user", content="An old 问题")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    # The rest of the suite needs the latest schema back, whatever the assertions say.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert found_ids(client, bob, "old") == [Message.objects.get().pk, None]
    assert found_ids(client, bob, "问题") == [Message.objects.get().pk]


def test_a_new_message_is_indexed_with_one_statement(conversation):
    with CaptureQueriesContext(connection) as queries:
        message = say(conversation, "a new question about pythons", role="user")  # an answer also counts its usage
    assert [query["sql"].split()[0] for query in queries] == ["INSERT", "INSERT"]  # the message, its entry
    assert SearchEntry.objects.filter(message=message).count() == 1
