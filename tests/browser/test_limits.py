"""Budgets in real Chromium: the member's meter and 80 % warning by the composer, then the refusal at 100 %."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import ApiKey, Team
from chat.models import Conversation, Message
from tests.browser.conftest import sign_in_as

ANSWER = "article.message-assistant"


def past_answer(conversation, tokens):
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        model="mimo-v2.5-pro",
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        created_at=timezone.now(),
    )


@pytest.fixture
def budgeted_chat(page, live_url, alice, bob, acme, fake_url):
    """bob on a titled conversation (so no title request follows), his team's budget 85 % used."""
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-browser-key")
    key.save()
    Team.objects.filter(pk=acme.pk).update(monthly_token_limit=100_000)
    earlier = Conversation.objects.create(owner=bob, team=acme, title="Earlier")
    past_answer(earlier, 85_000)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Plans")
    sign_in_as(page, live_url, bob)
    page.goto(f"/chats/{conversation.pk}/")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open
    return page, earlier


def send(page, text):
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("textbox", name="Message").press("Enter")


def test_member_is_warned_at_80_percent_then_refused_at_100_and_nothing_is_sent(budgeted_chat, fake_records):
    page, earlier = budgeted_chat
    meter_area = page.locator("#usage-meter")
    expect(meter_area.get_by_role("meter", name="Tokens this month")).to_have_attribute("value", "85000")
    expect(meter_area).to_contain_text("85,000 of 100,000 tokens this month")
    expect(meter_area.get_by_role("status")).to_have_text(
        "Acme has used 85% of its monthly budget: 85,000 of 100,000 tokens."
    )

    send(page, "Hello [[fake:long=200]]")  # the warning does not stop the send
    answer = page.locator(ANSWER).last
    expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    sent = len(fake_records.all())
    assert sent == 1
    used = 85_000 + sum(
        m.prompt_tokens + m.completion_tokens for m in Message.objects.filter(conversation__title="Plans", role="assistant")
    )
    expect(meter_area).to_contain_text(f"{used:,} of 100,000 tokens this month")  # refreshed after the answer

    past_answer(earlier, 20_000)  # the budget is used up
    send(page, "And another thing")
    notice = meter_area.get_by_role("status")  # the meters' one warning becomes the refusal: said once
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text("Acme has used up its monthly budget:")
    expect(notice).to_contain_text("Ask alice, a team admin of Acme, to raise it.")
    expect(page.get_by_role("textbox", name="Message")).to_have_value("And another thing")
    expect(page.locator(ANSWER)).to_have_count(1)
    assert len(fake_records.all()) == sent  # nothing more reached MiMo
    assert Message.objects.filter(conversation__title="Plans").count() == 2  # the first question and its answer
