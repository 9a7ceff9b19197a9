"""Versions in real Chromium: edit a question, switch with ‹ ›, and go on from the chosen version."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey
from chat.models import Message
from tests.browser.conftest import sign_in_as

ANSWER = "article.message-assistant"


@pytest.fixture
def chat(page, live_url, bob, acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-browser-key")
    key.save()
    sign_in_as(page, live_url, bob)
    page.goto("/chats/")
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    return page


def send(page, text):
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("textbox", name="Message").press("Enter")
    expect(page.locator("article.message-user").last).to_contain_text(text)
    expect(page.locator(ANSWER).last).to_contain_text(text)  # the fake answers quoting the question
    expect(page.locator(ANSWER).last).to_have_attribute("data-status", "complete", timeout=20_000)


def test_edit_switch_and_continue_on_the_chosen_version(chat, fake_records):
    send(chat, "Plan a trip to Kyoto")
    question = chat.locator("article.message-user").first
    question.get_by_label("Edit", exact=True).click()
    question.get_by_role("textbox", name="Edited message").fill("Plan a trip to Osaka")
    question.get_by_role("button", name="Send the edited message").click()
    expect(chat.locator("article.message-user")).to_have_count(1)
    expect(chat.locator("article.message-user")).to_contain_text("Osaka")
    expect(chat.locator(ANSWER).last).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(chat.locator("article.message-user .version-number")).to_have_text("2/2")

    chat.get_by_role("button", name="Previous version").click()
    expect(chat.locator("article.message-user")).to_contain_text("Kyoto")
    expect(chat.locator("article.message-user .version-number")).to_have_text("1/2")
    expect(chat.locator(ANSWER)).to_contain_text("Kyoto")
    chat.get_by_role("button", name="Next version").click()
    expect(chat.locator("article.message-user")).to_contain_text("Osaka")
    chat.get_by_role("button", name="Previous version").click()
    expect(chat.locator("article.message-user")).to_contain_text("Kyoto")

    fake_records.reset()
    send(chat, "And where to eat?")
    answer_request = next(r["body"] for r in reversed(fake_records.all()) if (r["body"] or {}).get("tools"))
    users = [m["content"] for m in answer_request["messages"] if m["role"] == "user"]
    assert users == ["Plan a trip to Kyoto", "And where to eat?"]
    assert not any("Osaka" in str(m.get("content")) for m in answer_request["messages"])

    chat.reload()  # the rows say the same
    expect(chat.locator("article.message-user")).to_have_count(2)
    expect(chat.locator("article.message-user").first).to_contain_text("Kyoto")
    follow_up = Message.objects.get(content="And where to eat?")
    assert follow_up.parent.content.startswith("Hello!") and "Kyoto" in follow_up.parent.content
