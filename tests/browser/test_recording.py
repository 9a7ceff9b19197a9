"""Voice messages and players in real Chromium: Record takes a tone from Chromium's fake microphone
(conftest's --use-fake-device-for-media-stream), the recording uploads as any file and reaches the fake
MiMo server; a question's audio and video play in every tab and after a reload. Record is offered only
where the model and the key take audio, and says in words why not, or why the microphone failed."""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Team
from chat.models import Attachment, Conversation
from tests.browser.test_accessibility import serious_violations
from tests.browser.test_attachments import (
    READY_CHIPS,
    drag_over_the_conversation,
    drop_on_the_conversation,
    paste,
    shows_the_files,
)
from tests.browser.test_composer import box, last_answer, make_key, open_chat
from tests.chat.test_attachments import encoded_media, image_bytes, pdf_with_text
from tests.chat.test_sending_attachments import WAV

NO_AUDIO_KEY = (
    "MiMo takes audio only in OpenAI format, and this key uses the Anthropic format: choose a key in OpenAI format to record."
)
NO_AUDIO_MODEL = (
    "mimo-v2.5-pro cannot listen to audio, so a recording cannot go to it. "
    "Choose a model that takes audio (the model menu says what each one reads)."
)


def record_button(page):
    return page.get_by_role("button", name="Record", exact=True)


def record(page, seconds_shown="0:01"):
    """Records from the fake microphone until the button's clock shows `seconds_shown`; the button then stops it."""
    record_button(page).click()
    stop = page.get_by_role("button", name="Stop recording")
    expect(stop).to_have_attribute("data-recording", "")
    expect(stop).to_contain_text(seconds_shown)
    return stop


def player_ready(page, question_text, tag):
    """The question's <audio> or <video>, once it read the file's metadata (through the CSP and byte ranges)."""
    player = page.locator("article.message-user", has_text=question_text).locator(tag)
    expect(player).to_have_attribute("preload", "metadata")
    expect(player).to_have_attribute("controls", "")
    assert player.get_attribute("src").startswith("/attachments/")
    page.wait_for_function("player => player.readyState >= 1 && player.duration > 0", arg=player.element_handle())
    return player


def test_a_recording_from_the_microphone_reaches_mimo_and_plays_in_every_tab(page, live_url, bob, acme, fake_url):
    make_key(acme, fake_url)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Voice", model="mimo-v2.5")
    chat = open_chat(page, live_url, bob, conversation)
    other_tab = open_chat(page.context.new_page(), live_url, bob, conversation)
    expect(record_button(chat)).to_be_enabled()
    expect(record_button(chat)).to_have_attribute("title", re.compile("^Record a voice message"))

    box(chat).fill("What did I say?")
    stop = record(chat)
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()  # the recording is not attached yet
    box(chat).press("Enter")
    expect(chat.locator("[data-attachment-cue]")).to_have_text("Stop the recording first: it is attached when it stops.")
    chat.wait_for_timeout(500)  # about 1.5 s in all
    stop.click()
    expect(record_button(chat)).not_to_have_attribute("data-recording", "")
    chip = chat.locator(READY_CHIPS)
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("recording.mp3")  # Chromium records WebM; the server made it an MP3
    # About 1.5 s of tone, and however long this busy machine took to press Enter and Stop.
    expect(chip.locator(".attachment-duration")).to_have_text(re.compile(r"^0:0[1-6]$"))
    recording = Attachment.objects.get(conversation=conversation)
    assert (recording.kind, recording.content_type) == ("audio", "audio/mpeg") and 1.0 <= recording.duration <= 6.0

    # Escape stops a recording too; this one is removed again.
    record(chat)
    box(chat).press("Escape")
    expect(chat.locator(READY_CHIPS)).to_have_count(2)
    chat.locator(READY_CHIPS).last.get_by_role("button", name="Remove recording.mp3").click()
    expect(chat.locator(READY_CHIPS)).to_have_count(1)

    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    box(chat).press("Enter")
    # The fake MiMo says how long the clip it received plays, as FFmpeg reads it.
    expect(last_answer(chat)).to_contain_text(re.compile(r"I see 1 audio clip \([1-6]\.\d s\)\."), timeout=30_000)
    player = player_ready(chat, "What did I say?", "audio")
    assert player.get_attribute("aria-label") == "recording.mp3"
    ranged = chat.request.get(player.get_attribute("src"), headers={"Range": "bytes=0-99"})
    assert ranged.status == 206 and ranged.headers["content-range"] == f"bytes 0-99/{recording.size}"
    player_ready(other_tab, "What did I say?", "audio")  # drawn by the socket's frame
    chat.reload()
    player_ready(chat, "What did I say?", "audio")
    assert serious_violations(chat) == []


def test_a_pasted_image_a_dropped_pdf_and_a_recording_go_in_one_message_and_show_in_every_tab(
    page, live_url, bob, acme, fake_url
):
    make_key(acme, fake_url)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="All three", model="mimo-v2.5")
    chat = open_chat(page, live_url, bob, conversation)
    other_tab = open_chat(page.context.new_page(), live_url, bob, conversation)
    box(chat).fill("What are these?")
    paste(chat, image_bytes((64, 48)), "image.png", "image/png")
    drop_on_the_conversation(chat, drag_over_the_conversation(chat, pdf_with_text("Grow in Q3"), "plan.pdf", "application/pdf"))
    record(chat).click()
    expect(chat.locator(READY_CHIPS)).to_have_count(3)
    box(chat).press("Enter")
    answer = last_answer(chat)
    expect(answer).to_contain_text("1 image (64×48)", timeout=30_000)  # the fake names what reached it
    expect(answer).to_contain_text("1 audio clip")
    expect(answer).to_contain_text("1 document (plan.pdf)")
    for tab in (chat, other_tab):  # the other tab draws the question from the socket's frame
        shows_the_files(tab, "What are these?")
        player_ready(tab, "What are these?", "audio")
    chat.reload()
    shows_the_files(chat, "What are these?")
    player_ready(chat, "What are these?", "audio")


def test_a_sent_video_and_audio_file_play_in_the_message(page, live_url, bob, acme, fake_url):
    make_key(acme, fake_url)
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Clips", model="mimo-v2.5")
    chat = open_chat(page, live_url, bob, conversation)
    chat.locator("[data-attach-input]").set_input_files(
        files=[
            {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": encoded_media("mp4", "aac", "libx264", seconds=2)},
            {"name": "voice.wav", "mimeType": "audio/wav", "buffer": WAV},
        ]
    )
    expect(chat.locator(READY_CHIPS)).to_have_count(2)
    expect(chat.locator(READY_CHIPS, has_text="clip.mp4").locator(".attachment-duration")).to_have_text("0:02")
    box(chat).fill("Watch this")
    box(chat).press("Enter")
    expect(last_answer(chat)).to_contain_text("I see 1 audio clip (0.2 s), 1 video (2.0 s).", timeout=30_000)
    video = player_ready(chat, "Watch this", "video")
    assert video.get_attribute("aria-label") == "clip.mp4" and video.get_attribute("poster") is None
    assert video.bounding_box()["width"] <= 320
    player_ready(chat, "Watch this", "audio")
    expect(chat.locator("article.message-user figcaption", has_text="clip.mp4")).to_have_text(re.compile(r"clip\.mp4\s+0:02"))
    assert serious_violations(chat) == []


def test_record_says_why_it_is_not_offered_for_an_anthropic_key_or_a_model_without_audio(page, live_url, bob, acme, fake_url):
    Team.objects.filter(pk=acme.pk).update(members_may_choose_key=True)
    make_key(acme, fake_url, label="Anthropic one", api_format="anthropic", secret="sk-test-anthropic-9876")
    make_key(acme, fake_url, label="OpenAI one")
    chat = open_chat(page, live_url, bob, Conversation.objects.create(owner=bob, team=acme, title="Voice", model="mimo-v2.5"))
    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Key").select_option(label="Anthropic one · 127.0.0.1 · …9876")
    chat.keyboard.press("Escape")
    record = record_button(chat)
    expect(record).to_be_disabled()
    expect(record).to_have_attribute("title", NO_AUDIO_KEY)
    expect(record).to_have_accessible_description(NO_AUDIO_KEY)
    cue = chat.locator("[data-record-cue]")
    expect(cue).to_be_hidden()
    record.click(force=True)  # pressed all the same: it says why, and records nothing
    expect(cue).to_be_visible()
    expect(cue).to_have_text(NO_AUDIO_KEY)
    expect(record).not_to_have_attribute("data-recording", "")
    assert serious_violations(chat) == []

    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Key").select_option(label="OpenAI one · 127.0.0.1 · …-key")
    chat.keyboard.press("Escape")
    expect(record).to_be_enabled()
    expect(cue).to_be_hidden()
    chat.get_by_role("button", name="Model").click()
    chat.get_by_role("radio", name="mimo-v2.5-pro", exact=True).check()
    chat.keyboard.press("Escape")
    expect(record).to_be_disabled()
    expect(record).to_have_accessible_description(NO_AUDIO_MODEL)


@pytest.mark.parametrize(
    ("browser_lacks", "script", "sentence"),
    [
        (
            "the microphone's permission",
            "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));",
            "The browser did not let mimoweb use the microphone. Allow it in the site’s settings (beside the address), then press Record again.",
        ),
        ("a microphone", "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('none', 'NotFoundError'));",
         "No microphone was found. Connect one, then press Record again."),
        ("MediaRecorder", "delete window.MediaRecorder;", "This browser cannot record sound. Attach an audio file instead."),
    ],
)
def test_without_a_microphone_or_a_recorder_record_says_so_and_the_rest_works(page, live_url, bob, acme, fake_url, browser_lacks, script, sentence):
    page.add_init_script(script)
    make_key(acme, fake_url)
    chat = open_chat(page, live_url, bob, Conversation.objects.create(owner=bob, team=acme, title="Voice", model="mimo-v2.5"))
    record_button(chat).click(force=True)
    expect(chat.locator("[data-record-cue]")).to_have_text(sentence)
    expect(record_button(chat)).not_to_have_attribute("data-recording", "")
    chat.locator("[data-attach-input]").set_input_files(files=[{"name": "voice.wav", "mimeType": "audio/wav", "buffer": WAV}])
    expect(chat.locator(READY_CHIPS)).to_have_count(1)
    box(chat).fill("Listen")
    box(chat).press("Enter")
    expect(last_answer(chat)).to_contain_text("I see 1 audio clip (0.2 s).", timeout=30_000)
