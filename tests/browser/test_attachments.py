"""Attachments in real Chromium: an image pasted and a PDF dropped reach the fake MiMo server in either API
format, show as thumbnails and chips in every tab and after a reload; the composer says in words what the
chosen model cannot read, and nothing is sent; files waiting to be sent come back after a reload."""

import base64

import pytest
from playwright.sync_api import expect

from accounts.models import Team
from chat.models import Attachment, Conversation
from tests.browser.test_accessibility import serious_violations
from tests.browser.test_composer import box, last_answer, make_key, open_chat
from tests.chat.test_attachments import image_bytes, pdf_with_text
from tests.chat.test_sending_attachments import WAV

READY_CHIPS = "#composer-attachments [data-attachment][data-kind]"

# A file put in a DataTransfer, as the clipboard or a drag from the desktop holds it.
FILE_IN_TRANSFER = """
([content, name, type]) => {
  const bytes = Uint8Array.from(atob(content), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  return transfer;
}
"""


def paste(page, content, name, content_type):
    transfer = page.evaluate_handle(FILE_IN_TRANSFER, [base64.b64encode(content).decode(), name, content_type])
    page.evaluate(
        """(transfer) => document.getElementById("id_text").dispatchEvent(
             new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }))""",
        transfer,
    )


def drag_over_the_conversation(page, content, name, content_type):
    transfer = page.evaluate_handle(FILE_IN_TRANSFER, [base64.b64encode(content).decode(), name, content_type])
    page.evaluate(
        """(transfer) => document.getElementById("messages").dispatchEvent(
             new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true, cancelable: true }))""",
        transfer,
    )
    return transfer


def drop_on_the_conversation(page, transfer):
    page.evaluate(
        """(transfer) => document.getElementById("messages").dispatchEvent(
             new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }))""",
        transfer,
    )


def shows_the_files(page, question_text):
    question = page.locator("article.message-user", has_text=question_text)
    thumbnail = question.get_by_role("img", name="image.png")
    expect(thumbnail).to_be_visible()
    expect(thumbnail).to_have_js_property("complete", True)
    assert thumbnail.evaluate("image => image.naturalWidth") > 0  # the thumbnail loaded, through the CSP
    link = question.get_by_role("link", name="image.png")  # the thumbnail opens the full image
    assert link.get_attribute("href").startswith("/attachments/") and link.get_attribute("title") == "Open image.png at full size"
    expect(question.get_by_role("link", name="plan.pdf")).to_be_visible()


@pytest.mark.parametrize("api_format", ["openai", "anthropic"])
def test_a_pasted_image_and_a_dropped_pdf_reach_mimo_and_show_in_every_tab(page, live_url, bob, acme, fake_url, api_format):
    make_key(acme, fake_url, api_format=api_format)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Plans", model="mimo-v2.5")
    chat = open_chat(page, live_url, bob, conversation)
    other_tab = open_chat(page.context.new_page(), live_url, bob, conversation)

    box(chat).fill("What are these?")
    paste(chat, image_bytes((64, 48)), "image.png", "image/png")
    transfer = drag_over_the_conversation(chat, pdf_with_text("Grow in Q3"), "plan.pdf", "application/pdf")
    expect(chat.locator("[data-drop-target]")).to_be_visible()
    drop_on_the_conversation(chat, transfer)
    expect(chat.locator("[data-drop-target]")).to_be_hidden()
    expect(chat.locator(READY_CHIPS)).to_have_count(2)
    expect(chat.locator(READY_CHIPS).last).to_contain_text("plan.pdf")
    expect(chat.locator(READY_CHIPS).last).to_contain_text("tokens")
    expect(box(chat)).to_have_value("What are these?")  # the typed text stayed through it all

    box(chat).press("Enter")
    expect(last_answer(chat)).to_contain_text("I see 1 image (64×48), 1 document (plan.pdf).", timeout=30_000)
    expect(chat.locator("#composer-attachments [data-attachment]")).to_have_count(0)  # sent: the chips went
    expect(box(chat)).to_have_value("")
    shows_the_files(chat, "What are these?")
    shows_the_files(other_tab, "What are these?")  # drawn by the socket's frame
    chat.reload()
    shows_the_files(chat, "What are these?")
    expect(chat.locator("#composer-attachments [data-attachment]")).to_have_count(0)


def test_an_image_to_a_model_without_image_input_is_explained_and_nothing_is_sent(page, live_url, bob, acme, fake_url, fake_records):
    make_key(acme, fake_url)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Plans", model="mimo-v2.5-pro")
    chat = open_chat(page, live_url, bob, conversation)
    chat.locator("[data-attach-input]").set_input_files(
        files=[{"name": "chart.png", "mimeType": "image/png", "buffer": image_bytes((40, 30))}]
    )
    expect(chat.locator(READY_CHIPS)).to_have_count(1)
    cue = chat.locator("[data-attachment-cue]")
    expect(cue).to_have_text(
        "mimo-v2.5-pro cannot read images. Choose a model that reads them (the model menu says what each one reads), or remove them."
    )
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()
    assert serious_violations(chat) == []  # the chip, its thumbnail and the cue, read by axe
    box(chat).fill("What does it show?")
    box(chat).press("Enter")
    chat.wait_for_timeout(500)
    assert fake_records.all() == []
    expect(box(chat)).to_have_value("What does it show?")

    chat.get_by_role("button", name="Model").click()
    chat.get_by_role("radio", name="mimo-v2.5", exact=True).check()  # a model that reads images
    expect(cue).to_be_hidden()
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    box(chat).press("Enter")
    expect(last_answer(chat)).to_contain_text("I see 1 image (40×30).", timeout=30_000)


def test_refusals_show_on_the_chip_and_waiting_files_come_back_after_a_reload(page, live_url, bob, acme, fake_url):
    make_key(acme, fake_url)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Plans", model="mimo-v2.5")
    chat = open_chat(page, live_url, bob, conversation)
    chat.locator("[data-attach-input]").set_input_files(
        files=[
            {"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Notes\n\nShip it."},
            {"name": "drawing.svg", "mimeType": "image/svg+xml", "buffer": b"<svg xmlns='http://www.w3.org/2000/svg'/>"},
        ]
    )
    refused = chat.locator("#composer-attachments [data-failed]")
    expect(refused).to_contain_text("drawing.svg is not a kind of file mimoweb takes.")
    expect(chat.locator(READY_CHIPS)).to_have_count(1)
    assert serious_violations(chat) == []
    refused.get_by_role("button", name="Remove drawing.svg").click()
    expect(refused).to_have_count(0)

    chat.reload()
    chip = chat.locator(READY_CHIPS)
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("notes.md")
    assert Attachment.objects.filter(conversation=conversation, message=None).count() == 1
    chip.get_by_role("button", name="Remove notes.md").click()
    expect(chip).to_have_count(0)
    expect(box(chat)).to_be_focused()
    assert not Attachment.objects.filter(conversation=conversation).exists()


def test_the_attach_button_opens_the_file_chooser(page, live_url, bob, acme, fake_url):
    make_key(acme, fake_url)
    chat = open_chat(page, live_url, bob, Conversation.objects.create(owner=bob, team=acme, title="Plans"))
    with chat.expect_file_chooser() as chooser:
        chat.get_by_role("button", name="Attach").click()
    assert chooser.value.is_multiple()
    chooser.value.set_files(files=[{"name": "a.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    expect(chat.locator(READY_CHIPS)).to_contain_text("a.txt")


def test_audio_is_explained_away_as_the_key_turns_to_anthropic_format_and_back(page, live_url, bob, acme, fake_url, fake_records):
    Team.objects.filter(pk=acme.pk).update(members_may_choose_key=True)
    openai = make_key(acme, fake_url, label="OpenAI one")
    make_key(acme, fake_url, label="Anthropic one", api_format="anthropic", secret="sk-test-anthropic-9876")
    Team.objects.filter(pk=acme.pk).update(default_key=openai)
    chat = open_chat(page, live_url, bob, Conversation.objects.create(owner=bob, team=acme, title="Plans", model="mimo-v2.5"))
    chat.locator("[data-attach-input]").set_input_files(files=[{"name": "voice.wav", "mimeType": "audio/wav", "buffer": WAV}])
    expect(chat.locator(READY_CHIPS)).to_have_count(1)
    cue = chat.locator("[data-attachment-cue]")
    expect(cue).to_be_hidden()
    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Key").select_option(label="Anthropic one · 127.0.0.1 · …9876")
    chat.keyboard.press("Escape")
    expect(cue).to_have_text(
        "MiMo takes audio and video only in OpenAI format, and this key uses the Anthropic format. "
        "Remove them, or choose a key in OpenAI format."
    )
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()
    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Key").select_option(label="OpenAI one · 127.0.0.1 · …-key")
    chat.keyboard.press("Escape")
    expect(cue).to_be_hidden()
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    assert fake_records.all() == []
