"""Long conversations open on their latest messages, load older ones in pages, and cost the same queries as short ones."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import versions
from chat.models import Citation, Conversation, Message, ToolCall


def build(conversation, messages):
    """About `messages` messages as a member makes them: tool rounds, citations, and an edited question now and then.

    Saved in bulk (rows first, then who follows whom), so 2,000 take a moment. Returns the visible branch, oldest first.
    """
    rows, follows, branch = [], [], []  # follows: (index of a row, index of the row it follows)

    def add(role, after, **fields):
        rows.append(Message(conversation=conversation, role=role, created_at=timezone.now(), **fields))
        follows.append((len(rows) - 1, after))
        return len(rows) - 1

    tool_rounds, cited, last = [], [], None
    exchange = 0
    while len(branch) < messages:
        exchange += 1
        if exchange % 7 == 0:  # an earlier version of this question, and its answer, on a branch left behind
            old = add("user", last, content=f"q{exchange} first", visible=False)
            add("assistant", old, content="old answer", visible=False)
        last = add("user", last, content=f"q{exchange}")
        branch.append(last)
        if exchange % 3 == 0:  # a round of tool calls before the answer
            last = add("assistant", last, reasoning_content="use a tool")
            tool_rounds.append(last)
            branch.append(last)
        last = add("assistant", last, content=f"**a{exchange}**", completion_tokens=5, prompt_tokens=7)
        if exchange % 4 == 0:
            cited.append(last)
        branch.append(last)
    Message.objects.bulk_create(rows)
    for index, after in follows:
        rows[index].parent = rows[after] if after is not None else None
    Message.objects.bulk_update(rows, ["parent"], batch_size=500)
    ToolCall.objects.bulk_create(
        ToolCall(message=rows[i], index=0, call_id=f"c{i}", name="calculator", arguments_raw="{}", result="4", status="done")
        for i in tool_rounds
    )
    Citation.objects.bulk_create(Citation(message=rows[i], index=0, url="https://example.com/", title="Example") for i in cited)
    return [rows[i] for i in branch]


@pytest.fixture
def short(bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Short")
    return conversation, build(conversation, 20)


@pytest.fixture
def long(bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Long")
    return conversation, build(conversation, 2000)


def queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured), response.text


def articles(html):
    return re.findall(r'<article id="message-(\d+)"', html)


def test_a_conversation_of_2000_messages_opens_with_as_many_queries_as_one_of_20(client, bob, short, long):
    client.force_login(bob)
    client.get(f"/chats/{short[0].pk}/")  # the session and anything cached on first use
    short_count, _html = queries(client, f"/chats/{short[0].pk}/")
    long_count, html = queries(client, f"/chats/{long[0].pk}/")
    assert long_count == short_count
    shown = articles(html)
    assert shown == [str(m.pk) for m in long[1][-versions.PAGE_MESSAGES :]]  # the latest, oldest first
    assert "data-load-older" in html


def test_loading_an_older_page_costs_the_same_queries_whatever_the_length(client, bob, short, long):
    client.force_login(bob)
    client.get(f"/chats/{short[0].pk}/")
    short_count, _html = queries(client, f"/chats/{short[0].pk}/messages/?before={short[1][10].pk}")
    long_count, html = queries(client, f"/chats/{long[0].pk}/messages/?before={long[1][-50].pk}")
    assert long_count == short_count
    assert articles(html) == [str(m.pk) for m in long[1][-100:-50]]
    assert f"?before={long[1][-100].pk}" in html  # and the next page further up


def test_older_pages_stop_loading_by_themselves_at_the_largest_window(client, bob, long):
    conversation, branch = long
    client.force_login(bob)
    cursor = branch[-50].pk
    html = client.get(f"/chats/{conversation.pk}/messages/?before={cursor}&shown=100").text
    assert "data-load-older" in html
    html = client.get(f"/chats/{conversation.pk}/messages/?before={cursor}&shown={versions.MAX_WINDOW - 50}").text
    assert "data-load-older" not in html
    assert f"?message={branch[-100].pk}#message-{branch[-100].pk}" in html  # a link opens them instead


def test_a_link_to_an_old_message_opens_a_window_around_it(client, bob, long):
    conversation, branch = long
    client.force_login(bob)
    target = branch[1000]
    html = client.get(f"/chats/{conversation.pk}/?message={target.pk}").text
    shown = articles(html)
    assert str(target.pk) in shown and len(shown) <= versions.PAGE_MESSAGES
    assert "data-load-older" in html and "data-load-newer" in html
    newer = client.get(f"/chats/{conversation.pk}/messages/?after={shown[-1]}").text
    assert articles(newer)[0] == str(branch[branch.index(target) + len(shown) - shown.index(str(target.pk))].pk)


def test_the_page_lists_only_the_visible_branch(client, bob, short):
    conversation, branch = short
    client.force_login(bob)
    html = client.get(f"/chats/{conversation.pk}/").text
    assert articles(html) == [str(m.pk) for m in branch]
    assert "old answer" not in html


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
def test_others_cannot_load_pages_of_someone_elses_conversation(client, short, who, request):
    conversation, branch = short
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/chats/{conversation.pk}/messages/?before={branch[-1].pk}").status_code == 404


def test_signed_out_visitor_cannot_load_pages(client, short):
    conversation, branch = short
    response = client.get(f"/chats/{conversation.pk}/messages/?before={branch[-1].pk}")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")


def test_a_page_of_another_conversations_messages_is_404(client, bob, acme, short):
    conversation, branch = short
    own = Conversation.objects.create(owner=bob, team=acme)
    client.force_login(bob)
    assert client.get(f"/chats/{own.pk}/messages/?before={branch[-1].pk}").status_code == 404


def test_an_incomplete_page_link_is_refused_with_a_reason(client, bob, short):
    conversation, _branch = short
    client.force_login(bob)
    response = client.get(f"/chats/{conversation.pk}/messages/?before=abc")
    assert response.status_code == 400
    assert "incomplete" in response.text


@pytest.mark.parametrize("cursor", ["before=99999999999999999999", "after=99999999999999999999", "after=²", "before=٣"])
def test_a_cursor_too_large_or_not_ascii_is_a_404_or_400_not_a_500(client, bob, short, cursor):
    conversation, _branch = short
    client.force_login(bob)
    assert client.get(f"/chats/{conversation.pk}/messages/?{cursor}").status_code in (400, 404)


@pytest.mark.parametrize("message", ["99999999999999999999", "²"])
def test_a_link_to_a_message_id_too_large_or_not_ascii_is_a_404(client, bob, short, message):
    conversation, _branch = short
    client.force_login(bob)
    assert client.get(f"/chats/{conversation.pk}/?message={message}").status_code == 404
