"""Versions of messages: edit, regenerate (and Retry), `‹ n/m ›`, and what MiMo is sent."""

import re

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

import chat.routing
from accounts.models import ApiKey
from chat import mimo, versions
from chat.models import Conversation, Message

application = URLRouter(chat.routing.websocket_urlpatterns)


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


def add(conversation, role, content="", parent=None, **fields):
    return Message.objects.create(conversation=conversation, role=role, content=content, parent=parent, **fields)


def chain(conversation, *texts, parent=None):
    """Messages each following the one before, alternating user and assistant; returns them."""
    messages = []
    for i, text in enumerate(texts):
        parent = add(conversation, "user" if i % 2 == 0 else "assistant", text, parent)
        messages.append(parent)
    return messages


def shown(conversation):
    return list(conversation.messages.filter(visible=True).values_list("content", flat=True))


def sent_texts(conversation):
    return [getattr(turn, "text", None) for turn in conversation.turns()]


# --- The branch MiMo is sent -------------------------------------------------------


def test_only_the_visible_branch_is_sent_to_mimo(conversation):
    question, _answer = chain(conversation, "first question", "first answer")
    edited = add(conversation, "user", "edited question", question.parent)
    add(conversation, "assistant", "answer to the edit", edited)
    versions.show_branch_of(edited)
    assert sent_texts(conversation) == ["edited question", "answer to the edit"]
    versions.show_branch_of(question)
    assert sent_texts(conversation) == ["first question", "first answer"]


def test_the_rules_for_failed_and_stopped_answers_still_hold_on_a_branch(conversation):
    question, failed = chain(conversation, "hi", "half")
    failed.status = Message.Status.ERROR
    failed.save()
    stopped = add(conversation, "assistant", "kept, the user stopped it", question, status=Message.Status.STOPPED)
    versions.show_branch_of(failed)
    assert sent_texts(conversation) == ["hi"]
    versions.show_branch_of(stopped)
    assert sent_texts(conversation) == ["hi", "kept, the user stopped it"]


# --- Switching, and the descent below the chosen version -----------------------------


def test_switching_shows_the_chosen_version_and_below_it_the_latest_child_at_each_level(conversation):
    question, answer_1 = chain(conversation, "q", "a1")
    older_follow_up, _its_answer = chain(conversation, "q2 on a1", "a2 on a1", parent=answer_1)
    answer_2 = add(conversation, "assistant", "a1 regenerated", question)
    chain(conversation, "q2 on the regenerated one", "its answer", parent=answer_2)
    versions.show_branch_of(answer_2)
    # On a1's branch two follow-ups were asked; the latest one is shown.
    newer_follow_up = add(conversation, "user", "q2 asked again on a1", answer_1, visible=False)
    add(conversation, "assistant", "its answer on a1", newer_follow_up, visible=False)

    versions.show_branch_of(answer_1)
    assert shown(conversation) == ["q", "a1", "q2 asked again on a1", "its answer on a1"]
    assert not Message.objects.get(pk=older_follow_up.pk).visible
    versions.show_branch_of(answer_2)
    assert shown(conversation) == ["q", "a1 regenerated", "q2 on the regenerated one", "its answer"]


def test_versions_are_numbered_by_creation_in_one_query(conversation, django_assert_num_queries):
    question, first = chain(conversation, "q", "a1")
    second = add(conversation, "assistant", "a2", question)
    third = add(conversation, "assistant", "a3", question)
    messages = [Message.objects.get(pk=pk) for pk in (question.pk, first.pk, second.pk, third.pk)]
    with django_assert_num_queries(1):
        versions.number_versions(messages)
    assert [(m.version.number, m.version.count) for m in messages] == [(1, 1), (1, 3), (2, 3), (3, 3)]
    assert (messages[2].version.previous, messages[2].version.next) == (first.pk, third.pk)


def test_tool_rounds_are_a_chain_and_regenerating_the_first_round_replaces_the_whole_answer(conversation):
    question, round_1, round_2 = chain(conversation, "q", "", "")  # roles: user, assistant, user…
    round_2.role = "assistant"
    round_2.save()
    again = add(conversation, "assistant", "answered without tools", question)
    versions.show_branch_of(again)
    assert shown(conversation) == ["q", "answered without tools"]
    versions.show_branch_of(round_1)
    assert shown(conversation) == ["q", "", ""]


# --- The switch view -----------------------------------------------------------------


@pytest.fixture
def two_versions(conversation):
    question, answer = chain(conversation, "first question", "first answer")
    edited = add(conversation, "user", "edited question", None)
    add(conversation, "assistant", "answer to the edit", edited)
    versions.show_branch_of(edited)
    return question, edited


def test_switching_re_renders_the_list_with_the_chosen_version(client, bob, conversation, two_versions):
    question, edited = two_versions
    client.force_login(bob)
    page = client.get(f"/chats/{conversation.pk}/").text
    assert "edited question" in page and "first question" not in page
    assert re.search(r'class="version-number">2/2<', page)

    response = client.post(f"/chats/{conversation.pk}/messages/{question.pk}/show/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="messages"')
    assert "first answer" in response.text and "edited question" not in response.text
    assert shown(conversation) == ["first question", "first answer"]
    assert "first question" in client.get(f"/chats/{conversation.pk}/").text  # a reload shows it too


def test_switching_is_refused_while_an_answer_streams_and_changes_nothing(client, bob, conversation, two_versions):
    question, edited = two_versions
    add(conversation, "assistant", "", Message.objects.get(content="answer to the edit"), status="streaming")
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/messages/{question.pk}/show/", headers={"HX-Request": "true"})
    assert "MiMo is still answering" in response.text
    assert response["HX-Retarget"] == "#notice"
    assert "first question" not in shown(conversation)


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
def test_others_cannot_switch_versions(client, conversation, two_versions, who, request):
    question, _edited = two_versions
    client.force_login(request.getfixturevalue(who))
    assert client.post(f"/chats/{conversation.pk}/messages/{question.pk}/show/").status_code == 404
    assert "first question" not in shown(conversation)


def test_signed_out_visitor_cannot_switch_versions(client, conversation, two_versions):
    question, _edited = two_versions
    response = client.post(f"/chats/{conversation.pk}/messages/{question.pk}/show/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")
    assert "first question" not in shown(conversation)


def test_a_message_of_another_conversation_cannot_be_shown_through_ones_own(client, bob, acme, conversation, two_versions):
    question, _edited = two_versions
    own = Conversation.objects.create(owner=bob, team=acme)
    client.force_login(bob)
    assert client.post(f"/chats/{own.pk}/messages/{question.pk}/show/").status_code == 404
    assert "first question" not in shown(conversation)


def test_switching_needs_post(client, bob, conversation, two_versions):
    question, _edited = two_versions
    client.force_login(bob)
    assert client.get(f"/chats/{conversation.pk}/messages/{question.pk}/show/").status_code == 405


def test_a_link_to_a_message_on_a_hidden_branch_shows_its_branch(client, bob, conversation, two_versions):
    question, _edited = two_versions
    client.force_login(bob)
    page = client.get(f"/chats/{conversation.pk}/?message={question.pk}").text
    assert f'id="message-{question.pk}"' in page
    assert shown(conversation) == ["first question", "first answer"]


def test_a_link_to_a_message_that_is_not_in_the_conversation_is_404(client, bob, conversation, two_versions):
    client.force_login(bob)
    assert client.get(f"/chats/{conversation.pk}/?message=999999").status_code == 404
    assert client.get(f"/chats/{conversation.pk}/?message=abc").status_code == 404


# --- Edit, regenerate and Retry over the socket ---------------------------------------


@pytest.fixture
def fake_conversation(bob, acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-versions-key")
    key.save()
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


async def connect(user, conversation_id):
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/")
    communicator.scope["user"] = user
    connected, _code = await communicator.connect()
    assert connected
    return communicator


async def until_finished(communicator):
    while True:
        html = await communicator.receive_from(timeout=20)
        if re.search(r'message-assistant" data-status="(complete|stopped|error)"', html) and 'data-status="streaming"' not in html:
            return html


def send_form(text):
    return {"action": "send", "text": text, "model": "mimo-v2.5-pro", "thinking": "on", "HEADERS": {}}


def answer_requests(fake_records):
    return [r["body"] for r in fake_records.all() if (r["body"] or {}).get("tools")]


def user_texts(body):
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


@database_sync_to_async
def rows(conversation):
    return list(conversation.messages.order_by("id").values_list("role", "content", "visible", "parent_id", "status"))


@pytest.mark.django_db(transaction=True)
async def test_editing_a_question_keeps_the_old_one_as_a_version_and_answers_the_new_one(
    fake_conversation, bob, fake_records
):
    communicator = await connect(bob, fake_conversation.pk)
    await communicator.send_json_to(send_form("first question"))
    await until_finished(communicator)
    question = await fake_conversation.messages.aget(role="user")
    await communicator.send_json_to({"action": "edit", "message_id": question.pk, "text": "edited question", "HEADERS": {}})
    frame = await communicator.receive_from(timeout=10)
    assert frame.lstrip().startswith('<section id="messages"')  # the whole list: the branch changed
    assert "edited question" in frame and "first question" not in frame
    await until_finished(communicator)

    saved = await rows(fake_conversation)
    assert [(role, content, visible) for role, content, visible, _p, _s in saved][::2] == [
        ("user", "first question", False),
        ("user", "edited question", True),
    ]
    assert saved[2][3] is None  # the edit follows what the original followed: nothing
    assert saved[3][3] == (await fake_conversation.messages.aget(content="edited question")).pk
    assert user_texts(answer_requests(fake_records)[-1]) == ["edited question"]
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_regenerating_an_answer_adds_a_version_and_sends_only_the_question(fake_conversation, bob, fake_records):
    communicator = await connect(bob, fake_conversation.pk)
    await communicator.send_json_to(send_form("a question"))
    await until_finished(communicator)
    answer = await fake_conversation.messages.aget(role="assistant")
    await communicator.send_json_to({"action": "regenerate", "message_id": answer.pk, "HEADERS": {}})
    finished = await until_finished(communicator)
    assert "2/2" in finished

    new = await fake_conversation.messages.filter(role="assistant").order_by("-id").afirst()
    await answer.arefresh_from_db()
    assert (new.parent_id, new.visible, answer.visible) == (answer.parent_id, True, False)
    body = answer_requests(fake_records)[-1]
    assert [m["role"] for m in body["messages"] if m["role"] != "system"] == ["user"]
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_retry_of_a_failed_answer_is_a_new_version_of_it(fake_conversation, bob, fake_records):
    communicator = await connect(bob, fake_conversation.pk)
    await communicator.send_json_to(send_form("Hi [[fake:error=402]] [[fake:error-times=1]]"))
    await until_finished(communicator)
    failed = await fake_conversation.messages.aget(role="assistant")
    await communicator.send_json_to({"action": "retry", "message_id": failed.pk, "HEADERS": {}})
    await until_finished(communicator)
    saved = await rows(fake_conversation)
    question_pk = (await fake_conversation.messages.aget(role="user")).pk
    assert [(role, visible, parent, status) for role, _c, visible, parent, status in saved] == [
        ("user", True, None, "complete"),
        ("assistant", False, question_pk, "error"),
        ("assistant", True, question_pk, "complete"),
    ]
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_tool_rounds_follow_each_other(fake_conversation, bob):
    communicator = await connect(bob, fake_conversation.pk)
    await communicator.send_json_to(send_form("Compute [[fake:tool]] [[fake:rounds=2]]"))
    for _ in range(3):
        await until_finished(communicator)
    saved = await database_sync_to_async(list)(fake_conversation.messages.order_by("id"))
    assert [m.parent_id for m in saved] == [None, saved[0].pk, saved[1].pk, saved[2].pk]
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_edit_and_regenerate_are_refused_while_an_answer_streams(fake_conversation, bob):
    communicator = await connect(bob, fake_conversation.pk)
    await communicator.send_json_to(send_form("Slowly [[fake:long=2000]] [[fake:speed=50]]"))
    await communicator.receive_from(timeout=10)
    question = await fake_conversation.messages.aget(role="user")
    answer = await fake_conversation.messages.aget(role="assistant")
    before = await rows(fake_conversation)
    for action in (
        {"action": "edit", "message_id": question.pk, "text": "changed", "HEADERS": {}},
        {"action": "regenerate", "message_id": answer.pk, "HEADERS": {}},
    ):
        await communicator.send_json_to(action)
        while "still answering" not in await communicator.receive_from(timeout=10):
            pass
    after = await rows(fake_conversation)
    assert [row[:4] for row in after] == [row[:4] for row in before]
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    await until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_edit_and_regenerate_of_someone_elses_messages_change_nothing(
    fake_conversation, bob, alice, acme, charlie, globex
):
    question = await Message.objects.acreate(conversation=fake_conversation, role="user", content="bob's")
    answer = await Message.objects.acreate(conversation=fake_conversation, role="assistant", content="x", parent=question)
    # A teammate and another team's member, each on a conversation of their own, name bob's messages.
    for outsider, team in ((alice, acme), (charlie, globex)):
        own = await Conversation.objects.acreate(owner=outsider, team=team)
        communicator = await connect(outsider, own.pk)
        await communicator.send_json_to({"action": "edit", "message_id": question.pk, "text": "mine now", "HEADERS": {}})
        await communicator.send_json_to({"action": "regenerate", "message_id": answer.pk, "HEADERS": {}})
        await communicator.send_json_to({"action": "retry", "message_id": answer.pk, "HEADERS": {}})
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
    assert await rows(fake_conversation) == [
        ("user", "bob's", True, None, "complete"),
        ("assistant", "x", True, question.pk, "complete"),
    ]


@pytest.mark.django_db(transaction=True)
async def test_an_empty_edit_gets_a_notice_and_changes_nothing(fake_conversation, bob):
    question = await Message.objects.acreate(conversation=fake_conversation, role="user", content="q")
    communicator = await connect(bob, fake_conversation.pk)
    await communicator.send_json_to({"action": "edit", "message_id": question.pk, "text": "  ", "HEADERS": {}})
    assert "This field is required" in await communicator.receive_from(timeout=5)
    assert await fake_conversation.messages.acount() == 1
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_another_tab_sees_a_switch_at_once(fake_conversation, bob):
    question = await Message.objects.acreate(conversation=fake_conversation, role="user", content="first", visible=False)
    await Message.objects.acreate(conversation=fake_conversation, role="user", content="second")
    communicator = await connect(bob, fake_conversation.pk)

    def switch():
        client = Client()
        client.force_login(bob)
        return client.post(f"/chats/{fake_conversation.pk}/messages/{question.pk}/show/", headers={"HX-Request": "true"})

    assert (await database_sync_to_async(switch)()).status_code == 200
    frame = await communicator.receive_from(timeout=5)
    assert frame.lstrip().startswith('<section id="messages"')
    assert "first" in frame and "second" not in frame
    await communicator.disconnect()
