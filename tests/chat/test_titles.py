"""A new conversation's title: asked of MiMo with a small request, else the first words of its first message."""

import asyncio
import re
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

import chat.routing
from accounts.models import ApiKey
from chat import mimo, titles
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Plan a trip to Paris next spring with museums and good food"


def make_key(team, base_url, secret, api_format="openai"):
    key = ApiKey(team=team, label="fake", base_url=base_url, api_format=api_format)
    key.set_secret(secret)
    key.save()
    return key


@pytest.fixture
def conversation(bob, acme):
    """An untitled conversation after its first exchange."""
    conversation = Conversation.objects.create(owner=bob, team=acme)
    Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    Message.objects.create(conversation=conversation, role="assistant", content="Here is a plan.")
    return conversation


def title_requests(fake_records):
    """What the fake heard that offered no tools: the title requests (answers always offer tools)."""
    return [r for r in fake_records.all() if r["body"] and not r["body"].get("tools")]


@pytest.mark.parametrize("api_format", ["openai", "anthropic"])
async def test_mimo_is_asked_for_a_title_with_a_small_request(conversation, acme, fake_url, fake_records, api_format):
    key = await database_sync_to_async(make_key)(acme, fake_url, "sk-test-title-key", api_format)
    title = await titles.give_title(conversation.pk, key)
    # The fake answers every question the same way; MiMo would answer with a title.
    assert title.startswith("Hello! This is the offline fake MiMo server")
    assert "**" not in title and len(title) <= titles.TITLE_CHARS
    assert (await Conversation.objects.aget(pk=conversation.pk)).title == title
    [request] = fake_records.all()
    body = request["body"]
    assert body["max_completion_tokens" if api_format == "openai" else "max_tokens"] == titles.MAX_OUTPUT_TOKENS
    assert body["thinking"] == {"type": "disabled"}
    assert body["stream"] is False  # nobody watches a title arrive: one body, not an event per token
    assert "tools" not in body
    prompt = body["messages"][-1]["content"]
    prompt = prompt if isinstance(prompt, str) else prompt[0]["text"]
    assert "at most 6 words" in prompt and "language of that message" in prompt
    assert QUESTION in prompt
    await mimo.close_shared_http_client()


async def test_the_first_words_are_the_title_when_mimo_refuses(conversation, acme, fake_url, fake_records):
    key = await database_sync_to_async(make_key)(acme, fake_url, "sk-revoked-title-key")  # the fake answers 401
    title = await titles.give_title(conversation.pk, key)
    assert title == "Plan a trip to Paris next…"
    assert (await Conversation.objects.aget(pk=conversation.pk)).title == title
    assert len(fake_records.all()) == 1  # asked once, no retries
    await mimo.close_shared_http_client()


async def test_the_first_words_are_the_title_when_the_key_cannot_be_used(conversation, acme, fake_url, fake_records, settings):
    key = await database_sync_to_async(make_key)(acme, fake_url, "sk-test-title-key")
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = []  # its base URL is no longer allowed
    assert await titles.give_title(conversation.pk, key) == "Plan a trip to Paris next…"
    assert fake_records.all() == []  # the key went nowhere


async def test_a_title_the_member_gave_is_never_replaced(conversation, acme, fake_url, fake_records):
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="Mine")
    key = await database_sync_to_async(make_key)(acme, fake_url, "sk-test-title-key")
    assert await titles.give_title(conversation.pk, key) is None
    assert (await Conversation.objects.aget(pk=conversation.pk)).title == "Mine"
    assert fake_records.all() == []


def test_titles_are_cleaned_and_kept_short():
    assert titles.clean_title('**"Trip to Paris."**\n\nMore text') == "Trip to Paris"
    assert titles.clean_title("《巴黎春季旅行》。") == "巴黎春季旅行"
    assert titles.clean_title("\n") == ""
    assert len(titles.clean_title("word " * 40)) == titles.TITLE_CHARS
    assert titles.first_words("  Plan a\n trip   to Paris next spring") == "Plan a trip to Paris next…"
    # Chinese has no spaces: the length bounds it.
    assert titles.first_words("请" * 100) == "请" * (titles.TITLE_CHARS - 1) + "…"


# --- Through the socket: the first complete answer names the conversation ----------------


async def frames_until(communicator, pattern, timeout=20):
    while True:
        html = await communicator.receive_from(timeout=timeout)
        if re.search(pattern, html):
            return html


async def test_the_first_complete_answer_names_the_conversation_and_the_page_hears_it(bob, acme, fake_url, fake_records):
    await database_sync_to_async(make_key)(acme, fake_url, "sk-test-title-key")
    conversation = await Conversation.objects.acreate(owner=bob, team=acme)
    communicator = WebsocketCommunicator(URLRouter(chat.routing.websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/")
    communicator.scope["user"] = bob
    assert (await communicator.connect())[0]
    form = {"action": "send", "model": "mimo-v2.5-pro", "thinking": "on", "HEADERS": {}}
    await communicator.send_json_to(form | {"text": QUESTION})
    heading = await frames_until(communicator, 'id="chat-title"')
    assert "Hello! This is the offline fake MiMo server" in heading
    saved = await Conversation.objects.aget(pk=conversation.pk)
    assert saved.title.startswith("Hello! This is the offline fake MiMo server")
    assert (await Message.objects.filter(conversation=conversation, role="assistant").aget()).status == "complete"

    await communicator.send_json_to(form | {"text": "And in summer?"})
    await frames_until(communicator, r'message-assistant" data-status="complete"')
    assert len(title_requests(fake_records)) == 1  # titled once
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_a_burst_of_answers_ending_together_asks_only_a_few_titles_at_once(monkeypatch):
    """Titles beyond TITLES_AT_ONCE wait their turn; every one is still given."""
    in_flight, most, titled = 0, 0, []

    async def slow_title(conversation_id, api_key):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        titled.append(conversation_id)
        return None

    monkeypatch.setattr(titles, "give_title", slow_title)
    answers = [SimpleNamespace(conversation=SimpleNamespace(pk=n, title=""), api_key=None) for n in range(titles.TITLES_AT_ONCE * 3)]
    for answer in answers:
        titles.title_soon(answer)
    await asyncio.gather(*titles._tasks)
    assert most == titles.TITLES_AT_ONCE
    assert sorted(titled) == list(range(len(answers)))
