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


def open_sent_once(page, conversation, text, attach):
    """Open the conversation; the first time, ask `text` with the two files `attach(page)` adds, and wait for the answer."""
    from tests.browser.test_attachments import READY_CHIPS

    page.goto(f"/chats/{conversation.pk}/")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    if not conversation.messages.exists():
        page.get_by_role("textbox", name="Message").fill(text)
        attach(page)
        expect(page.locator(READY_CHIPS)).to_have_count(2)
        page.get_by_role("textbox", name="Message").press("Enter")
        expect(page.locator(ANSWER).last).not_to_have_attribute("data-status", "streaming")


def shoot(page, name, device, scheme):
    page.wait_for_timeout(300)  # let the drawer slide and fonts settle: a picture, not an assertion
    page.screenshot(path=OUT / f"{name}-{device}-{scheme}.png")


def fake_key(team, fake_url):
    """The team's key to the fake MiMo server, which writes every answer in these pictures."""
    key = ApiKey(team=team, label="MiMo (fake)", base_url=fake_url)
    key.set_secret("sk-screenshots-only")
    key.save()


def signed_in(browser, live_url, device, scheme, user):
    """A new browser context at this size and in this colour scheme, signed in as the user: (context, page)."""
    ctx = browser.new_context(base_url=live_url, locale="en-US", viewport=DEVICES[device], color_scheme=scheme)
    ctx.set_default_timeout(30_000)
    page = ctx.new_page()
    sign_in_as(page, live_url, user)
    return ctx, page


def test_write_screenshots(browser, live_url, alice, bob, acme, fake_url, transactional_db):
    OUT.mkdir(exist_ok=True)
    fake_key(acme, fake_url)

    ctx, page = signed_in(browser, live_url, "desktop", "light", bob)
    chats = {}
    for name, question in FINISHED:
        new_chat(page)
        ask(page, question)
        expect(page.locator(ANSWER).last).not_to_have_attribute("data-status", "streaming")
        chats[name] = page.url
    ctx.close()

    for device in DEVICES:
        for scheme in SCHEMES:
            ctx, page = signed_in(browser, live_url, device, scheme, bob)
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

            ctx, page = signed_in(browser, live_url, device, scheme, alice)
            for name, path in (("keys", f"/teams/{acme.pk}/keys/"), ("limits", f"/teams/{acme.pk}/limits/")):
                page.goto(path)
                expect(page.get_by_role("heading", level=1)).to_be_visible()
                shoot(page, name, device, scheme)
            page.get_by_role("group", name="Storage for attachments, for each member").scroll_into_view_if_needed()
            shoot(page, "limits-storage", device, scheme)
            ctx.close()


def test_write_usage_screenshots(browser, live_url, alice, bob, acme, transactional_db):
    """A team's usage page with image, audio and video tokens beside the prompt tokens:
    `pytest -m screenshots -k usage tests/browser/test_screenshots.py`."""
    from django.utils import timezone

    from tests.chat.test_usage import answer, price

    OUT.mkdir(exist_ok=True)
    price(model="mimo-v2.5")
    today = timezone.now().replace(hour=12)
    answer(bob, acme, today, model="mimo-v2.5", prompt=3400, completion=600, image_tokens=2048)
    answer(bob, acme, today, model="mimo-v2.5", prompt=1800, completion=400, audio_tokens=630)
    answer(alice, acme, today, model="mimo-v2.5", prompt=9000, completion=900, video_tokens=6400)
    answer(alice, acme, today, prompt=1200, completion=300)  # text only
    for device in DEVICES:
        for scheme in SCHEMES:
            ctx, page = signed_in(browser, live_url, device, scheme, alice)
            page.goto(f"/teams/{acme.pk}/usage/")
            expect(page.get_by_role("columnheader", name="of which image tokens").first).to_be_visible()
            page.screenshot(path=OUT / f"usage-media-{device}-{scheme}.png", full_page=True)
            ctx.close()


def test_write_attachment_screenshots(browser, live_url, bob, acme, fake_url, transactional_db):
    """The composer with files attached (one frozen while it uploads, one refused) and a sent message
    with an image and a PDF: `pytest -m screenshots -k attachment tests/browser/test_screenshots.py`."""
    from chat.models import Attachment, Conversation
    from tests.browser.test_attachments import READY_CHIPS, drag_over_the_conversation, paste
    from tests.chat.test_attachments import image_bytes, pdf_with_text

    OUT.mkdir(exist_ok=True)
    fake_key(acme, fake_url)
    sent = Conversation.objects.create(owner=bob, team=acme, title="Quarterly plan", model="mimo-v2.5")

    def photo():
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (640, 420), "#2f6f8f")
        draw = ImageDraw.Draw(image)
        for step in range(8):
            draw.rectangle([40 + step * 70, 380 - step * 40, 90 + step * 70, 380], fill="#f4b942")
        import io

        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()

    def chart_and_plan(page):
        paste(page, photo(), "sales-chart.png", "image/png")
        page.locator("[data-attach-input]").set_input_files(
            files=[{"name": "quarterly-plan.pdf", "mimeType": "application/pdf", "buffer": pdf_with_text("Grow in Q3")}]
        )

    for device in DEVICES:
        for scheme in SCHEMES:
            ctx, page = signed_in(browser, live_url, device, scheme, bob)
            open_sent_once(page, sent, "What do the chart and the plan say about Q3?", chart_and_plan)
            expect(page.locator(".message-attachments img")).to_have_js_property("complete", True)
            shoot(page, "chat-attachments-sent", device, scheme)

            # A new chat: two files ready, one frozen while it uploads, one refused.
            page.goto("/")
            expect(page.get_by_role("button", name="Send")).to_be_enabled()
            page.get_by_role("textbox", name="Message").fill("Compare these two, please")
            paste(page, photo(), "sales-chart.png", "image/png")
            page.locator("[data-attach-input]").set_input_files(
                files=[
                    {"name": "quarterly-plan.pdf", "mimeType": "application/pdf", "buffer": pdf_with_text("Grow in Q3")},
                    {"name": "logo.svg", "mimeType": "image/svg+xml", "buffer": b"<svg xmlns='http://www.w3.org/2000/svg'/>"},
                ]
            )
            expect(page.locator(READY_CHIPS)).to_have_count(2)
            expect(page.locator("#composer-attachments [data-failed]")).to_have_count(1)
            page.route("**/attachments/", lambda route: None)  # never answered: the upload stays under way
            page.locator("[data-attach-input]").set_input_files(
                files=[{"name": "recording-notes.txt", "mimeType": "text/plain", "buffer": b"x" * 400_000}]
            )
            page.locator("#composer-attachments [data-uploading] progress").evaluate("bar => { bar.value = 40; }")
            shoot(page, "composer-attachments", device, scheme)
            ctx.close()

            # The model cannot read the image: the composer says so.
            ctx, page = signed_in(browser, live_url, device, scheme, bob)
            refused = Conversation.objects.create(owner=bob, team=acme, title="Screenshot", model="mimo-v2.5-pro")
            page.goto(f"/chats/{refused.pk}/")
            expect(page.get_by_role("button", name="Send")).to_be_enabled()
            paste(page, photo(), "sales-chart.png", "image/png")
            expect(page.locator("[data-attachment-cue]")).to_be_visible()
            shoot(page, "composer-attachments-refused", device, scheme)
            drag_over_the_conversation(page, pdf_with_text("Grow in Q3"), "quarterly-plan.pdf", "application/pdf")
            expect(page.locator("[data-drop-target]")).to_be_visible()
            shoot(page, "composer-drop-target", device, scheme)
            ctx.close()
            refused.delete()  # and the next pass's new chat starts without this one's files
            Attachment.objects.filter(message=None).delete()


def test_write_recording_screenshots(browser, live_url, bob, acme, fake_url, transactional_db):
    """The composer while it records a voice message, and a sent question with an audio and a video player:
    `pytest -m screenshots -k recording tests/browser/test_screenshots.py`."""
    from chat.models import Conversation
    from tests.browser.test_attachments import READY_CHIPS
    from tests.chat.test_attachments import encoded_media

    OUT.mkdir(exist_ok=True)
    fake_key(acme, fake_url)
    sent = Conversation.objects.create(owner=bob, team=acme, title="Site visit", model="mimo-v2.5")
    files = [
        {"name": "site-walkthrough.mp4", "mimeType": "video/mp4", "buffer": encoded_media("mp4", "aac", "libx264", seconds=4)},
        {"name": "voice-note.wav", "mimeType": "audio/wav", "buffer": encoded_media("wav", "pcm_s16le", seconds=12)},
    ]

    for device in DEVICES:
        for scheme in SCHEMES:
            ctx, page = signed_in(browser, live_url, device, scheme, bob)
            open_sent_once(
                page, sent, "Here is the walkthrough and my notes: what should we fix first?",
                lambda page: page.locator("[data-attach-input]").set_input_files(files=files),
            )
            for player in page.locator(".message-attachments audio, .message-attachments video").all():
                page.wait_for_function("player => player.readyState >= 2", arg=player.element_handle())  # its first frame, not a spinner
            page.locator("article.message-user").evaluate("question => question.scrollIntoView()")  # the players, not the answer
            page.wait_for_timeout(1200)  # Chromium's loading spinner lingers over a video that has loaded
            shoot(page, "chat-media-sent", device, scheme)

            voice = Conversation.objects.create(owner=bob, team=acme, model="mimo-v2.5")  # the default model takes no audio
            page.goto(f"/chats/{voice.pk}/")
            expect(page.get_by_role("button", name="Send")).to_be_enabled()
            page.get_by_role("textbox", name="Message").fill("Summarise this voice note, please")
            page.get_by_role("button", name="Record", exact=True).click()
            expect(page.get_by_role("button", name="Stop recording")).to_contain_text("0:02")
            shoot(page, "composer-recording", device, scheme)
            page.get_by_role("button", name="Stop recording").click()
            expect(page.locator(READY_CHIPS)).to_have_count(1)
            shoot(page, "composer-recorded", device, scheme)
            ctx.close()
            voice.delete()
