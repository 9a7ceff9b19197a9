"""chat/message.html: one partial for a message on every page, and the pages it is on."""

import re
from pathlib import Path

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import Membership
from chat import generation, render, transfer
from chat.models import Conversation, Message, ReviewAccess, Share
from chat.views.review import readable_parameters
from tests.chat.test_transfer import build_conversation
from tests.conftest import make_user

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def test_no_template_has_a_comment_django_would_print():
    # {# … #} ends on its own line; over several lines Django shows it as text. {% comment %} is for those.
    unclosed = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in TEMPLATES.rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.sub(r"\{#.*?#\}", "", line).count("{#")
    ]
    assert unclosed == []


def test_the_shared_page_and_the_conversation_page_print_no_template_code(client, bob, acme):
    conversation = build_conversation(bob, acme)
    share = Share.objects.create(conversation=conversation, created_by=bob, snapshot=share_snapshot(conversation))
    client.force_login(bob)
    pages = [client.get(f"/shares/{share.pk}/"), client.get(f"/chats/{conversation.pk}/")]
    for response in pages:
        assert response.status_code == 200
        text = response.content.decode()
        assert "{#" not in text and "#}" not in text


def test_the_shared_page_uses_the_message_partial_read_only(client, bob, acme):
    conversation = build_conversation(bob, acme)
    share = Share.objects.create(conversation=conversation, created_by=bob, snapshot=share_snapshot(conversation))
    client.force_login(bob)
    page = client.get(f"/shares/{share.pk}/").content.decode()
    assert 'class="message-source"' in page and "data-copy-message" in page  # the copy button of the partial
    assert "ws-send" not in page and "message-details" not in page  # nothing that acts on a row


def test_the_review_page_uses_the_message_partial_read_only(client, bob, acme):
    conversation = build_conversation(bob, acme)
    rita = make_user("rita", acme, Membership.Role.REVIEWER)
    ReviewAccess.record(conversation, rita, "Checking an answer")
    client.force_login(rita)
    page = client.get(f"/review/{conversation.pk}/").content.decode()
    # Every message the page shows, each with the partial's copy button (its Markdown source) and nothing that acts.
    assert page.count("<article id=\"message-") == page.count('class="message-source"') == conversation.messages.count()
    assert "ws-send" not in page and "message-details" not in page


def test_a_time_never_ends_a_sentence_on_the_shared_page(client, bob, acme):
    conversation = build_conversation(bob, acme)
    share = Share.objects.create(conversation=conversation, created_by=bob, snapshot=share_snapshot(conversation))
    client.force_login(bob)
    page = client.get(f"/shares/{share.pk}/").content.decode()
    assert "m.." not in page  # "p.m.." where a sentence's full stop follows Django's "p.m."


def test_a_streaming_answer_is_busy_and_a_finished_one_is_not(bob, acme):
    conversation = build_conversation(bob, acme)
    message = Message(pk=1, conversation=conversation, role="assistant", status="streaming", content="Hel")
    assert 'aria-busy="true"' in render_message(message)
    message.status = "complete"
    assert "aria-busy" not in render_message(message)


def test_the_conversation_is_not_one_live_region(client, bob, acme):
    conversation = build_conversation(bob, acme)
    client.force_login(bob)
    page = client.get(f"/chats/{conversation.pk}/").content.decode()
    messages = re.search(r'<section id="messages"[^>]*>', page).group(0)
    assert "aria-live" not in messages


def test_the_meta_line_is_chinese_through_and_through():
    message = Message(
        pk=1, role="assistant", status="complete", content="hi", model="mimo-v2.5-pro", prompt_tokens=10, completion_tokens=5
    )
    for language in ("zh-hans", "zh-hant"):
        with translation.override(language):
            html = render_to_string("chat/message.html#message", {"message": message, "read_only": True})
        meta = re.search(r'<p class="meta">(.*?)</p>', html, re.S).group(1)
        assert "10" in meta and "token" not in meta


def test_review_names_an_answers_settings_in_words():
    assert [(str(label), value) for label, value in readable_parameters({"thinking": True, "web_search": False})] == [
        ("Thinking", "on"),
        ("Web search", "off"),
    ]
    # The sampling the composer records is named as the composer names it.
    assert [(str(label), value) for label, value in readable_parameters({"top_p": 0.9, "max_output_tokens": 4096})] == [
        ("Top p", 0.9),
        ("Maximum output tokens", 4096),
    ]
    with translation.override("zh-hans"):
        assert [(str(label), value) for label, value in readable_parameters({"thinking": True})] == [("深度思考", "开")]


def test_the_review_page_shows_settings_in_words(client, bob, acme):
    conversation = build_conversation(bob, acme)
    rita = make_user("rita", acme, Membership.Role.REVIEWER)
    ReviewAccess.record(conversation, rita, "Checking an answer")
    client.force_login(rita)
    page = client.get(f"/review/{conversation.pk}/").content.decode()
    assert "<dt>Thinking</dt><dd>on</dd>" in page
    assert "<dd>True</dd>" not in page and "<dt>web_search</dt>" not in page
    assert "<dt>Temperature</dt><dd>1.0</dd>" in page


def test_a_code_block_names_its_language_for_its_header():
    assert 'code data-language="python"' in render.render_markdown("```python\nx = 1\n```\n")
    # Only plain names: anything else is left out rather than escaped.
    assert "data-language" not in render.render_markdown('```a"b\nx\n```\n')


def render_message(message):
    return render_to_string("chat/message.html#message", generation.message_context(message, tool_calls=[], citations=[]))


def share_snapshot(conversation):
    return transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk)))
