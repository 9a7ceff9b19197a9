"""The whole day's keyboard path, in real Chromium: sign in, land in a new chat, type, Enter sends,
Escape stops the answer, Ctrl+K finds the conversation again. Each key on its own is pinned by
test_shell.py and test_composer.py; this is the path a member takes through them."""

import re

from playwright.sync_api import expect

from chat.models import Conversation
from tests.browser.test_composer import make_key
from tests.browser.test_sign_in import fill_sign_in
from tests.conftest import PASSWORD


def test_sign_in_type_enter_escape_and_ctrl_k_with_the_keyboard_alone(page, bob, acme, fake_url):
    make_key(acme, fake_url)
    page.goto("/")
    fill_sign_in(page, "bob", PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    box = page.get_by_role("textbox", name="Message")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open

    box.focus()
    page.keyboard.type("Plan the Lisbon offsite [[fake:long=400]] [[fake:speed=40]]")
    page.keyboard.press("Enter")
    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(box).to_have_value("")  # taken by the server
    page.keyboard.press("Escape")
    expect(answer).to_have_attribute("data-status", "stopped")

    page.keyboard.press("Control+k")
    page.keyboard.type("Lisbon")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/chats/search/\?q=Lisbon"))
    conversation = Conversation.objects.get(owner=bob)
    expect(page.get_by_role("main").locator(f"a[href^='/chats/{conversation.pk}/']").first).to_be_visible()
