"""`make screenshots`: the main screens, light and dark, on a phone and a desktop, as PNGs in screenshots/.

Not part of the suite (marked `screenshots`, which pytest.ini leaves out): it asserts only that each
screen opened; the pictures are for people to look at. Answers come from the fake MiMo server, as in
the chat tests. screenshots/ is ignored by git; README shows three copies kept under docs/.
"""

from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from accounts.models import ApiKey
from tests.browser.conftest import sign_in_as

pytestmark = pytest.mark.screenshots

OUT = Path(settings.BASE_DIR) / "screenshots"
DEVICES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1366, "height": 860}}
SCHEMES = ["light", "dark"]
ANSWER = "article.message-assistant"

# One finished conversation per kind of answer: (screen name, what bob asks).
FINISHED = [
    ("chat-code", "A small sorting function in Python, please [[fake:code=24]]"),
    ("chat-tool", "What time is it in Beijing? [[fake:tool]]"),
    ("chat-error", "Hello [[fake:error=402]]"),
]


def new_chat(page):
    page.goto("/")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open


def ask(page, text):
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("textbox", name="Message").press("Enter")


def shoot(page, name, device, scheme):
    page.wait_for_timeout(300)  # let the drawer slide and fonts settle: a picture, not an assertion
    page.screenshot(path=OUT / f"{name}-{device}-{scheme}.png")


def test_write_screenshots(browser, live_url, alice, bob, acme, fake_url, transactional_db):
    OUT.mkdir(exist_ok=True)
    key = ApiKey(team=acme, label="MiMo (fake)", base_url=fake_url)
    key.set_secret("sk-screenshots-only")
    key.save()

    def context(device, scheme, user):
        ctx = browser.new_context(base_url=live_url, locale="en-US", viewport=DEVICES[device], color_scheme=scheme)
        ctx.set_default_timeout(30_000)
        page = ctx.new_page()
        sign_in_as(page, live_url, user)
        return ctx, page

    ctx, page = context("desktop", "light", bob)
    chats = {}
    for name, question in FINISHED:
        new_chat(page)
        ask(page, question)
        expect(page.locator(ANSWER).last).not_to_have_attribute("data-status", "streaming")
        chats[name] = page.url
    ctx.close()

    for device in DEVICES:
        for scheme in SCHEMES:
            ctx, page = context(device, scheme, bob)
            new_chat(page)
            ask(page, "Explain how a hash map works [[fake:markdown]] [[fake:speed=6]]")
            expect(page.locator(f"{ANSWER} .reasoning")).not_to_be_empty()
            shoot(page, "chat-streaming", device, scheme)
            for name, url in chats.items():
                page.goto(url)
                expect(page.locator(ANSWER).last).to_be_visible()
                shoot(page, name, device, scheme)
            if device == "phone":
                page.get_by_role("button", name="Chats").click()
                expect(page.get_by_role("navigation", name="Your chats")).to_be_visible()
                shoot(page, "sidebar", device, scheme)
            page.goto("/usage/")
            shoot(page, "usage", device, scheme)
            ctx.close()

            ctx, page = context(device, scheme, alice)
            for name, path in (("keys", f"/teams/{acme.pk}/keys/"), ("limits", f"/teams/{acme.pk}/limits/")):
                page.goto(path)
                expect(page.get_by_role("heading", level=1)).to_be_visible()
                shoot(page, name, device, scheme)
            ctx.close()
