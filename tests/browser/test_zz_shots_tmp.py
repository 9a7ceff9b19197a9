import pytest
from playwright.sync_api import expect

from chat import transfer
from chat.models import Conversation, Share
from tests.browser.conftest import sign_in_as
from tests.browser.test_chat import ANSWER, chat, last_answer, send  # noqa: F401
from tests.chat.test_transfer import build_conversation

OUT = "/tmp/shots-messages"


@pytest.fixture
def api_format():
    return "openai"


def shoot(page, name, locator=None):
    for width in (390, 1366):
        for scheme in ("light", "dark"):
            page.set_viewport_size({"width": width, "height": 900})
            page.emulate_media(color_scheme=scheme)
            if locator is not None:
                locator.scroll_into_view_if_needed()
            page.screenshot(path=f"{OUT}/{name}-{width}-{scheme}.png", full_page=True)
            if name == "chat":
                answers = page.locator(ANSWER)
                answers.nth(0).screenshot(path=f"{OUT}/code-{width}-{scheme}.png")
                answers.nth(1).screenshot(path=f"{OUT}/search-{width}-{scheme}.png")
                top, bottom = answers.nth(2).bounding_box(), answers.nth(4).bounding_box()
                scroll = page.evaluate("window.scrollY")
                top["y"] += scroll
                bottom["y"] += scroll
                page.screenshot(path=f"{OUT}/tools-{width}-{scheme}.png", full_page=True, clip={"x": 0, "y": top["y"] - 90, "width": width, "height": min(1400, bottom["y"] + bottom["height"] - top["y"] + 100)})


def test_shots(chat, live_url, bob, acme):
    send(chat, "Show me code [[fake:code=4]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    chat.get_by_text("Settings").click()
    chat.get_by_label("Model").select_option("mimo-v2.5-pro")
    chat.get_by_label("Web search").check()
    chat.get_by_text("Settings").click()
    send(chat, "News? [[fake:search]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    send(chat, "What time is it? [[fake:tool]] [[fake:rounds=2]]")
    expect(chat.locator(ANSWER)).to_have_count(5, timeout=20_000)
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    last_answer(chat).get_by_role("button", name="Regenerate").focus()
    shoot(chat, "chat")
    conversation = build_conversation(bob, acme, title="Quarterly plans")
    share = Share.objects.create(conversation=conversation, created_by=bob, snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk))))
    chat.goto(f"/shares/{share.pk}/")
    shoot(chat, "shared")
