"""A member finds an old answer through search, in English and in Chinese, and lands on it.

The fake MiMo server's answers are fixed texts, so the old answers are rows made
here; creating them goes through the same signals that index the app's own saves.
"""

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message, ToolCall
from tests.browser.conftest import open_menu, sign_in_as

LONG_AGO = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def old_chats(bob, acme):
    """bob's library: an old trip conversation among others."""
    trip = Conversation.objects.create(owner=bob, team=acme, title="Trip to Paris")
    Message.objects.create(conversation=trip, role="user", content="When does the Louvre open?", created_at=LONG_AGO)
    louvre = Message.objects.create(
        conversation=trip, role="assistant", model="mimo-v2.5", created_at=LONG_AGO,
        content="The **Louvre** opens at 9 am every day except Tuesday.",
    )
    weather = Conversation.objects.create(owner=bob, team=acme, title="北京")
    Message.objects.create(conversation=weather, role="user", content="北京明天怎么样？", created_at=LONG_AGO)
    forecast = Message.objects.create(
        conversation=weather, role="assistant", model="mimo-v2.5", created_at=LONG_AGO,
        content="明天北京天气晴朗，最高气温二十五度，适合出门。",
    )
    ToolCall.objects.create(message=forecast, index=0, call_id="c1", name="get_weather", status="done")
    for i in range(3):
        other = Conversation.objects.create(owner=bob, team=acme, title=f"Other chat {i}")
        Message.objects.create(conversation=other, role="assistant", content=f"Nothing about museums here, part {i}.")
    return {"louvre": louvre, "forecast": forecast}


def landed_on(page, message):
    expect(page).to_have_url(
        re.compile(rf"/chats/{message.conversation_id}/\?message={message.pk}#message-{message.pk}$")
    )
    expect(page.locator(f"#message-{message.pk}")).to_be_visible()


def test_member_finds_an_old_answer_in_english_and_opens_it(page, live_url, bob, old_chats):
    sign_in_as(page, live_url, bob)
    page.goto("/chats/")
    open_menu(page).get_by_role("navigation", name="Main").get_by_role("link", name="Search").click()
    page.wait_for_url("**/chats/search/")  # loaded: htmx listens to the typing only from then on
    page.get_by_role("searchbox", name="Search").fill("louvre open")  # results follow the typing
    results = page.locator("#search-results")
    expect(results).to_contain_text("2 results")
    answer = results.get_by_role("link", name=re.compile("opens at 9 am"))
    expect(answer.locator("mark")).to_have_text(["Louvre", "opens"])
    expect(answer).to_have_text("The Louvre opens at 9 am every day except Tuesday.")  # read, not **Louvre**
    expect(page).to_have_url(re.compile(r"/chats/search/\?q=louvre(\+|%20)open"))
    answer.click()
    landed_on(page, old_chats["louvre"])
    expect(page.locator(f"#message-{old_chats['louvre'].pk}")).to_contain_text("opens at 9 am")


def test_member_finds_an_old_answer_in_chinese_and_opens_it(page, live_url, bob, old_chats):
    bob.language = "zh-hans"
    bob.save()
    sign_in_as(page, live_url, bob)
    page.goto("/chats/search/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    box = page.locator("input[name=q]")
    box.fill("天气")  # two characters, in the middle of a sentence
    results = page.locator("#search-results")
    answer = results.get_by_role("link", name=re.compile("北京天气晴朗"))
    expect(answer.locator("mark")).to_have_text("天气")
    expect(results.locator(".search-result")).to_have_count(1)
    answer.click()
    landed_on(page, old_chats["forecast"])
    expect(page.locator(f"#message-{old_chats['forecast'].pk}")).to_contain_text("最高气温二十五度")


def test_filters_narrow_the_results_as_they_change(page, live_url, bob, acme, old_chats):
    food = Conversation.objects.create(owner=bob, team=acme, title="Food")
    Message.objects.create(conversation=food, role="assistant", content="北京烤鸭很好吃。")
    sign_in_as(page, live_url, bob)
    page.goto("/chats/search/?q=%E5%8C%97%E4%BA%AC")  # 北京: a plain GET shows the results at once
    results = page.locator("#search-results .search-result")
    expect(results).to_have_count(4)  # the weather chat's title, question and answer, and the duck
    page.get_by_label("Only chats that used tools").check()
    expect(results).to_have_count(3)
    page.get_by_label("Until").fill("2026-03-01")
    expect(page.locator("#search-results")).to_contain_text("Nothing found in your chats.")
    page.get_by_label("Until").fill("2026-03-02")
    expect(results).to_have_count(2)  # the question and the answer; the title dates from today
    expect(page).to_have_url(re.compile(r"until=2026-03-02&tools=on"))
