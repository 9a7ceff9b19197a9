"""Review in real Chromium: a reviewer opens a member's conversation with a reason, and the member sees it."""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from accounts.models import Membership
from chat.models import Conversation, Message, ReviewAccess, ToolCall
from tests.browser.conftest import open_menu, sign_in_as
from tests.conftest import make_user

REASON = "Checking the answer a customer complained about"


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.fixture
def conversation(bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Refund policy")
    Message.objects.create(conversation=conversation, role="user", content="Can I get a refund after 40 days?")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Refunds are possible for **30 days**.",
        reasoning_content="The policy document says thirty days.",
        prompt_tokens=800,
        completion_tokens=60,
    )
    ToolCall.objects.create(
        message=answer, index=0, call_id="c1", name="policy_lookup", arguments_raw='{"topic": "refunds"}', result="30 days", status="done"
    )
    return conversation


def test_reviewer_opens_a_conversation_with_a_reason_and_its_owner_sees_the_access(page, live_url, rita, bob, conversation):
    sign_in_as(page, live_url, rita)
    page.goto("/home/")
    open_menu(page).get_by_role("navigation", name="Main").get_by_role("link", name="Review").click()
    row = page.get_by_role("row").filter(has_text="Refund policy")
    expect(row).to_contain_text("bob")
    expect(page.get_by_text("40 days")).to_have_count(0)  # the list shows no contents
    row.get_by_role("link", name="Refund policy").click()

    page.get_by_role("textbox", name="Why are you opening this conversation?").fill(REASON)
    page.get_by_role("button", name="Open for review").click()
    expect(page.locator("article.message-user")).to_contain_text("Can I get a refund after 40 days?")
    answer = page.locator("article.message-assistant")
    expect(answer.locator(".answer strong")).to_have_text("30 days")  # rendered Markdown
    answer.locator("details.thinking summary").click()
    expect(answer.get_by_text("The policy document says thirty days.")).to_be_visible()
    expect(answer.get_by_role("region", name="Tool call: policy_lookup")).to_contain_text("refunds")
    expect(page.get_by_role("textbox", name="Message")).to_have_count(0)  # read-only: no composer

    page.context.clear_cookies()
    sign_in_as(page, live_url, bob)
    page.goto("/accounts/preferences/")
    page.get_by_role("link", name="Who read my conversations").click()
    access = page.get_by_role("row").filter(has_text="Refund policy")
    expect(access).to_contain_text("rita")
    expect(access).to_contain_text(REASON)
    expect(access.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d"))
    assert ReviewAccess.objects.get().reviewer == rita


# Any time of day as the page writes it ("1:24 PM", "13:24", "13:24:05"), and any numeric date.
CLOCK = re.compile(r"\d{1,2}:\d\d(?::\d\d)?(?:\s?[AaPp]\.?[Mm]\.?)?")
NUMERIC_DATE = re.compile(r"\b\d{1,4}[/-]\d{1,2}[/-]\d{1,4}\b")


@pytest.mark.parametrize("language, moment", [("en", r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d [AP]M"), ("zh-hans", r"\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d")])
def test_the_review_page_writes_every_date_and_time_in_one_format(page, live_url, rita, conversation, language, moment):
    answer = conversation.messages.get(role="assistant")
    answer.first_token_at = answer.created_at + timedelta(seconds=2)
    answer.finished_at = answer.created_at + timedelta(seconds=5)
    answer.save()
    rita.language = language
    rita.save()
    ReviewAccess.record(conversation, rita, REASON)
    sign_in_as(page, live_url, rita)
    page.goto(f"/review/{conversation.pk}/")
    expect(page.locator("article.message-user")).to_be_visible()
    text = page.locator("main").inner_text()
    clocks = CLOCK.findall(text)
    assert len(clocks) >= 4, text  # started, the reason's time, each message's time
    dates = re.findall(moment, text)
    assert len(dates) == len(clocks), (clocks, dates)  # every time of day is part of a date in the one format
    assert not NUMERIC_DATE.search(text)
    assert ".." not in text
    if language == "en":  # the answer's timing in seconds after its own time
        expect(page.locator(".review-timing").last).to_contain_text("first token after 2.0 s · finished after 5.0 s")
