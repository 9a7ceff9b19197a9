"""The Django admin shows no conversation's contents: a superuser reads them only through Review."""

from decimal import Decimal

import pytest
from django.contrib import admin
from django.utils import timezone

from chat.models import Citation, Conversation, Message, Price, ReviewAccess, Share, ShareOpening, ToolCall

QUESTION = "secret-question-about-the-merger"
ANSWER = "secret-answer-about-the-merger"
REASONING = "secret-reasoning-about-the-merger"
TOOL_ARGUMENTS = '{"query": "secret-tool-arguments"}'
TOOL_RESULT = "secret-tool-result"
CITATION = "https://example.com/secret-citation"
CONTENTS = [QUESTION, ANSWER, REASONING, "secret-tool-arguments", TOOL_RESULT, "secret-citation"]


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def conversation(bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Merger", system_prompt="Be brief")
    Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    answer = Message.objects.create(conversation=conversation, role="assistant", content=ANSWER, reasoning_content=REASONING)
    ToolCall.objects.create(
        message=answer, index=0, call_id="c1", name="web", arguments_raw=TOOL_ARGUMENTS, result=TOOL_RESULT, status="done"
    )
    Citation.objects.create(message=answer, index=0, url=CITATION, title="Source")
    return conversation


@pytest.fixture
def access(conversation, root):
    return ReviewAccess.record(conversation, root, "Checking the merger complaint")


def test_message_contents_are_not_registered_in_the_admin():
    for model in (Conversation, Message, ToolCall, Citation, Share, ShareOpening):
        assert not admin.site.is_registered(model), model
    assert admin.site.is_registered(Price)
    assert admin.site.is_registered(ReviewAccess)


def test_no_admin_page_shows_a_conversations_contents(admin_client, conversation, access, bob, acme):
    urls = [
        "/admin/",
        "/admin/chat/",
        "/admin/chat/price/",
        "/admin/chat/reviewaccess/",
        f"/admin/chat/reviewaccess/{access.pk}/change/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{bob.pk}/change/",
        f"/admin/accounts/user/{bob.pk}/delete/",  # lists what deleting bob would take with him
        f"/admin/accounts/team/{acme.pk}/change/",
        f"/admin/accounts/team/{acme.pk}/delete/",
        "/admin/accounts/membership/",
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        for text in CONTENTS:
            assert text not in response.text, (url, text)


def test_review_accesses_are_shown_but_cannot_be_added_changed_or_deleted(admin_client, access):
    page = admin_client.get(f"/admin/chat/reviewaccess/{access.pk}/change/").text
    assert "Checking the merger complaint" in page
    assert 'name="_save"' not in page
    assert admin_client.get("/admin/chat/reviewaccess/add/").status_code == 403
    admin_client.post(f"/admin/chat/reviewaccess/{access.pk}/change/", {"reason": "Rewritten"})
    assert admin_client.get(f"/admin/chat/reviewaccess/{access.pk}/delete/").status_code == 403
    admin_client.post(f"/admin/chat/reviewaccess/{access.pk}/delete/", {"post": "yes"})
    admin_client.post("/admin/chat/reviewaccess/", {"action": "delete_selected", "_selected_action": [access.pk], "post": "yes"})
    access.refresh_from_db()
    assert access.reason == "Checking the merger complaint"


def test_superuser_adds_a_price(admin_client, db):
    response = admin_client.post(
        "/admin/chat/price/add/",
        {
            "model": "mimo-v9",
            "valid_from_0": "2026-12-01",
            "valid_from_1": "00:00:00",
            "currency": "USD",
            "input_per_million": "0.5",
            "cached_input_per_million": "0.05",
            "output_per_million": "2",
            "web_search_per_thousand": "0",
        },
    )
    assert response.status_code == 302, response.text
    price = Price.objects.get(model="mimo-v9")
    assert price.output_per_million == Decimal("2")
    assert price.valid_from.date().isoformat() == "2026-12-01"


def test_team_admin_who_is_not_staff_cannot_see_review_accesses_in_the_admin(client, alice, access):
    client.force_login(alice)
    response = client.get("/admin/chat/reviewaccess/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_prices_list_is_readable(admin_client, db):
    Price.objects.create(
        model="mimo-v8",
        valid_from=timezone.now(),
        input_per_million=1,
        cached_input_per_million=Decimal("0.1"),
        output_per_million=3,
    )
    assert "mimo-v8" in admin_client.get("/admin/chat/price/").text
