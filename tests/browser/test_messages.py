"""One message in real Chromium: its actions, copying, code blocks, citations, tool rounds, and the read-only pages."""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Membership
from chat import transfer
from chat.models import Conversation, ReviewAccess, Share
from tests.browser.conftest import sign_in_as
from tests.browser.test_chat import ANSWER, chat, last_answer, saved_answer, send  # noqa: F401
from tests.chat.test_transfer import build_conversation
from tests.conftest import make_user


@pytest.fixture
def api_format():
    """MiMo offers web search in the OpenAI format only, and nothing else here depends on the format."""
    return "openai"


def clipboard(page):
    return page.evaluate("navigator.clipboard.readText()")


@pytest.fixture
def chat_with_clipboard(chat, live_url):
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    return chat


def test_copy_puts_the_answers_markdown_source_on_the_clipboard_and_says_so(chat_with_clipboard):
    chat = chat_with_clipboard
    send(chat, "Explain [[fake:markdown]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    button = last_answer(chat).get_by_role("button", name="Copy", exact=True)
    expect(button).to_have_attribute("title", "Copy")
    button.click()
    expect(chat.get_by_role("status").filter(has_text="Copied")).to_have_count(1)
    assert clipboard(chat) == saved_answer().content  # the Markdown, not the rendered text

    chat.locator("article.message-user").get_by_role("button", name="Copy", exact=True).click()
    expect(chat.locator("article.message-user .copied")).to_have_count(1)
    assert clipboard(chat) == "Explain [[fake:markdown]]"


def test_each_code_block_has_its_language_and_a_copy_button_for_the_raw_code(chat_with_clipboard):
    chat = chat_with_clipboard
    send(chat, "Show me [[fake:code=3]] [[fake:speed=60]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    # Streamed: the header came once the block was complete.
    expect(answer.locator(".code-header .code-language")).to_have_text("python")
    answer.get_by_role("button", name="Copy code").click()
    expect(answer.locator(".code-copy.copied")).to_have_count(1)  # written: the clipboard is read after
    code = re.search(r"```python\n(.*?)```", saved_answer().content, re.S).group(1)
    assert clipboard(chat) == code  # the code itself, not the highlighted HTML

    chat.reload()  # from history
    expect(last_answer(chat).locator(".code-header .code-language")).to_have_text("python")
    expect(last_answer(chat).get_by_role("button", name="Copy code")).to_have_count(1)


def test_citation_markers_link_to_their_sources(chat):
    chat.get_by_role("button", name="Model").click()
    chat.get_by_role("radio", name="mimo-v2.5-pro", exact=True).check()
    chat.keyboard.press("Escape")
    chat.get_by_label("Web search").check()
    send(chat, "News? [[fake:search]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    sources = answer.get_by_role("region", name="Sources")
    expect(sources.get_by_role("heading", name="Sources", level=2)).to_be_visible()
    citations = saved_answer().citations.all()
    first = answer.get_by_role("link", name="[1]")
    expect(first).to_have_attribute("href", f"#message-{saved_answer().pk}-source-1")
    expect(first).to_have_attribute("title", citations[0].title)
    first.click()
    expect(sources.locator("li:target")).to_contain_text(citations[0].title)


def test_a_tool_round_and_its_answer_read_as_one_answer_with_one_set_of_actions(chat):
    send(chat, "What time is it? [[fake:tool]] [[fake:rounds=2]]")
    expect(chat.locator(ANSWER)).to_have_count(3, timeout=20_000)
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    answers = chat.locator(ANSWER)
    expect(answers.get_by_role("button", name="Copy", exact=True)).to_have_count(1)
    expect(answers.get_by_role("button", name="Regenerate")).to_have_count(1)
    expect(last_answer(chat).get_by_role("button", name="Regenerate")).to_be_visible()
    chat.reload()
    expect(chat.locator(ANSWER).get_by_role("button", name="Copy", exact=True)).to_have_count(1)


def test_a_streaming_answer_is_busy_until_it_ends_and_the_conversation_is_no_live_region(chat):
    expect(chat.locator("#messages")).not_to_have_attribute("aria-live", re.compile(".*"))
    send(chat, "Write a lot [[fake:long=400]] [[fake:speed=60]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("aria-busy", "true")
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(answer).not_to_have_attribute("aria-busy", re.compile(".*"))


def test_retry_on_a_cut_answer_says_it_starts_over(chat):
    send(chat, "Hello [[fake:long=200]] [[fake:cut=80]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "error", timeout=20_000)
    expect(answer).not_to_contain_text("for the rest")
    expect(answer.get_by_role("button", name="Retry")).to_have_attribute("title", re.compile("new answer from the start"))


def test_the_shared_page_shows_messages_and_no_template_code(page, live_url, bob, acme):
    conversation = build_conversation(bob, acme, title="Quarterly plans")
    share = Share.objects.create(conversation=conversation, created_by=bob, snapshot=share_snapshot(conversation))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    sign_in_as(page, live_url, bob)
    page.goto(f"/shares/{share.pk}/")
    text = page.locator("body").inner_text()
    assert "{#" not in text and "#}" not in text and "{%" not in text
    assert ".." not in page.locator(".shared-note").inner_text()  # no "p.m.." where a time ends a sentence
    answer = page.locator(ANSWER).filter(has_text="It is")
    expect(answer.locator("strong")).to_have_text("noon")
    expect(page.get_by_role("button", name="Regenerate")).to_have_count(0)  # read-only
    answer.get_by_role("button", name="Copy", exact=True).click()
    expect(answer.locator(".copied")).to_have_count(1)
    assert clipboard(page).startswith("It is **noon**.")


def test_the_review_page_names_the_answers_settings_in_words(page, live_url, bob, acme):
    conversation = build_conversation(bob, acme)
    rita = make_user("rita", acme, Membership.Role.REVIEWER)
    ReviewAccess.record(conversation, rita, "Checking an answer")
    sign_in_as(page, live_url, rita)
    page.goto(f"/review/{conversation.pk}/")
    usage = page.locator(".review-usage").first
    expect(usage).to_contain_text("Thinking")
    expect(usage).to_contain_text("on")
    expect(usage).not_to_contain_text("True")
    expect(usage).not_to_contain_text("web_search")


def share_snapshot(conversation):
    return transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk)))


def test_an_answer_that_failed_before_any_text_shows_its_sentence_at_the_top_of_the_card(chat):
    chat.set_viewport_size({"width": 390, "height": 844})
    send(chat, "Hello [[fake:error=402]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "error", timeout=20_000)
    sentence = answer.locator(".explanation")
    expect(sentence).to_contain_text("run out of credit")
    # The card's border and padding, and nothing else, above the sentence: no empty text or tool boxes.
    inset = answer.evaluate("a => a.clientTop + parseFloat(getComputedStyle(a).paddingTop)")
    assert sentence.bounding_box()["y"] - answer.bounding_box()["y"] <= inset + 1


@pytest.mark.parametrize("language", ["zh-hans", "zh-hant"])
def test_an_answers_meta_line_in_chinese_has_no_english_word(page, live_url, bob, acme, language):
    bob.language = language
    bob.save()
    conversation = build_conversation(bob, acme)
    sign_in_as(page, live_url, bob)
    page.goto(f"/chats/{conversation.pk}/")
    lines = page.locator("article.message-assistant .meta").evaluate_all("lines => lines.map(line => line.textContent)")
    assert lines and any(re.search(r"\d", line) for line in lines)
    for line in lines:
        words = re.sub(r"mimo-[\w.-]+", "", line)  # the model's name is a name, in any language
        assert not re.search(r"[A-Za-z]", words), line  # no "tokens", "in", "out", "thinking" or "s"


def test_each_message_action_is_a_quiet_icon_named_with_a_tooltip(chat):
    send(chat, "Hello")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    last_answer(chat).get_by_role("button", name="Regenerate").click()
    expect(last_answer(chat).locator(".version-number")).to_have_text("2/2")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    actions = chat.locator(".message-actions").locator("button, summary").evaluate_all(
        """controls => controls.filter(c => c.checkVisibility()).map(c => [
            c.getAttribute('aria-label'), c.getAttribute('title'), c.classList.contains('icon-button'),
            c.querySelector('.icon') !== null])"""
    )
    names = [name for name, _title, _icon_button, _icon in actions]
    assert names == ["Copy", "Edit", "Copy", "Regenerate", "Previous version", "Next version"]
    for name, title, icon_button, icon in actions:
        assert icon_button and icon, name  # the quiet icon style, not a full-size button
        assert title.startswith(name), (name, title)  # the tooltip says what the icon does
