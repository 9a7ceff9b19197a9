"""Export and import in real Chromium: a conversation that used tools and thinking comes back whole."""

import json

import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey
from chat import transfer
from chat.models import Conversation
from tests.browser.conftest import sign_in_as
from tests.chat.test_transfer import without_ids

ANSWER = "article.message-assistant"


@pytest.fixture
def chat(page, live_url, bob, acme, fake_url):
    """bob, signed in, on a new conversation whose team key points at the fake server."""
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-browser-key")
    key.save()
    sign_in_as(page, live_url, bob)
    page.goto("/chats/")
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open
    return page


def download(page, link_name):
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name, exact=True).click()
    return info.value


def rows(conversation):
    """Everything saved of a conversation, with ids replaced by positions."""
    messages = list(conversation.messages.all())
    position = {message.pk: number for number, message in enumerate(messages)}
    return [
        {
            **{name: getattr(message, name) for name in transfer.MESSAGE_FIELDS},
            "parent": position.get(message.parent_id),
            "api_key": message.api_key_id,
            "tool_calls": list(message.tool_calls.values(*transfer.TOOL_CALL_FIELDS)),
            "citations": list(message.citations.values(*transfer.CITATION_FIELDS)),
        }
        for message in messages
    ]


def test_a_conversation_with_tools_and_thinking_is_exported_and_imported_with_nothing_lost(chat, tmp_path):
    expect(chat.get_by_label("Thinking")).to_be_checked()
    chat.get_by_role("textbox", name="Message").fill("What time is it? [[fake:tool]] [[fake:rounds=2]]")
    chat.get_by_role("textbox", name="Message").press("Enter")
    expect(chat.locator(ANSWER)).to_have_count(3, timeout=20_000)
    expect(chat.locator(ANSWER).last).to_have_attribute("data-status", "complete", timeout=20_000)
    # The title is asked of MiMo after the answer: the export must carry it, so wait for it.
    expect(chat.get_by_role("heading", level=1)).not_to_have_text("New chat", timeout=20_000)
    original = Conversation.objects.get()
    assert original.title
    assert original.messages.filter(reasoning_content__gt="").exists()
    assert original.messages.filter(tool_calls__isnull=False).count() == 2

    chat.reload()
    markdown = download(chat, "Export as Markdown")
    assert markdown.suggested_filename.endswith(".md")
    text = open(markdown.path(), encoding="utf-8").read()
    assert "**Tool call: current_time**" in text and "<summary>Thinking</summary>" in text

    exported = download(chat, "Export as JSON")
    assert exported.suggested_filename.endswith(".json")
    saved = tmp_path / "export.json"
    exported.save_as(saved)

    chat.goto("/chats/")
    chat.get_by_role("link", name="Import", exact=True).click()
    chat.get_by_label("Export file (.json or .zip)").set_input_files(saved)
    chat.get_by_role("button", name="Import").click()
    expect(chat.get_by_text("Imported 1 conversation.")).to_be_visible()
    imported = Conversation.objects.exclude(pk=original.pk).get()
    assert chat.url.endswith(f"/chats/{imported.pk}/")
    expect(chat.get_by_role("region", name="Tool call: current_time")).to_have_count(2)
    expect(chat.locator(ANSWER).first.locator("details.thinking")).to_be_attached()

    assert rows(imported) == rows(original)
    assert (imported.owner, imported.team, imported.created_at) == (original.owner, original.team, original.created_at)
    assert imported.title == original.title and imported.system_prompt == original.system_prompt
    again = download(chat, "Export as JSON")
    assert without_ids(json.load(open(again.path(), encoding="utf-8"))) == without_ids(json.load(open(saved, encoding="utf-8")))


def test_a_file_that_is_not_an_export_is_explained_and_nothing_is_imported(chat, tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('{"format": "something else"}')
    chat.goto("/chats/import/")
    chat.get_by_label("Export file (.json or .zip)").set_input_files(bad)
    chat.get_by_role("button", name="Import").click()
    expect(chat.get_by_role("alert")).to_contain_text("This is not a conversation export from mimoweb.")
    assert Conversation.objects.count() == 1  # the one the fixture opened
