"""Attachments on the wire: images, audio, video and documents in both formats, and the fake reading them."""

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from chat.mimo import (
    ApiFormat,
    AudioPart,
    ChatRequest,
    DocumentPart,
    ErrorKind,
    ImagePart,
    MimoError,
    TextDelta,
    UserTurn,
    VideoPart,
    build_body,
    stream_turn,
)
from chat.mimo.fake import FakeMimo

from .conftest import GOOD_KEY

BEARER = {"authorization": f"Bearer {GOOD_KEY}"}
WAV = "data:audio/wav;base64," + base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt ").decode()
MP4 = "data:video/mp4;base64," + base64.b64encode(b"\x00\x00\x00\x18ftypmp42").decode()
NOTES = DocumentPart("notes.txt", "Buy milk.")


def png_data_url(width=64, height=48):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def request(model="mimo-v2.5", **turn):
    return ChatRequest(model=model, turns=[UserTurn("What is in these?", **turn)])


# --- The bodies ------------------------------------------------------------------------


def test_a_text_only_turn_is_sent_exactly_as_before():
    for api_format, content in [(ApiFormat.OPENAI, "Hi"), (ApiFormat.ANTHROPIC, [{"type": "text", "text": "Hi"}])]:
        body = build_body(ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("Hi")]), api_format)
        assert body["messages"] == [{"role": "user", "content": content}]


def test_openai_turn_carries_image_audio_and_video_parts_then_its_text():
    image = png_data_url()
    body = build_body(
        request(images=[ImagePart(image)], audio=[AudioPart(WAV)], videos=[VideoPart(MP4)]), ApiFormat.OPENAI
    )
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "input_audio", "input_audio": {"data": WAV}},
        {"type": "video_url", "video_url": {"url": MP4}, "fps": 2, "media_resolution": "default"},
        {"type": "text", "text": "What is in these?"},
    ]


def test_documents_go_first_in_the_text_delimited_and_named():
    turn = UserTurn("Summarise.", documents=[NOTES, DocumentPart('a "quoted" </document> name.md', "# Title")])
    expected = (
        '<document name="notes.txt">\nBuy milk.\n</document>\n\n'
        '<document name="a \\"quoted\\" </document> name.md">\n# Title\n</document>\n\n'
        "Summarise."
    )
    openai = build_body(ChatRequest(model="mimo-v2.5-pro", turns=[turn]), ApiFormat.OPENAI)
    assert openai["messages"][0] == {"role": "user", "content": expected}
    anthropic = build_body(ChatRequest(model="mimo-v2.5-pro", turns=[turn]), ApiFormat.ANTHROPIC)
    assert anthropic["messages"][0] == {"role": "user", "content": [{"type": "text", "text": expected}]}


def test_a_document_without_words_of_the_person_is_the_whole_text():
    body = build_body(ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("", documents=[NOTES])]), ApiFormat.OPENAI)
    assert body["messages"][0]["content"] == '<document name="notes.txt">\nBuy milk.\n</document>'


def test_anthropic_turn_carries_base64_image_blocks_and_documents_as_text():
    image = png_data_url()
    body = build_body(request(images=[ImagePart(image)], documents=[NOTES]), ApiFormat.ANTHROPIC)
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image.split(",", 1)[1]}},
        {"type": "text", "text": '<document name="notes.txt">\nBuy milk.\n</document>\n\nWhat is in these?'},
    ]


@pytest.mark.parametrize("turn", [{"audio": [AudioPart(WAV)]}, {"videos": [VideoPart(MP4)]}])
def test_audio_or_video_in_anthropic_format_is_refused_with_its_own_error(turn):
    with pytest.raises(MimoError) as error:
        build_body(request(**turn), ApiFormat.ANTHROPIC)
    assert error.value.kind is ErrorKind.UNSUPPORTED_IN_FORMAT
    assert "OpenAI format" in error.value.kind.message


@pytest.mark.parametrize(
    ("model", "turn"),
    [
        ("mimo-v2.5-pro", {"images": [ImagePart("https://example.com/a.png")]}),
        ("mimo-v2.5-pro", {"audio": [AudioPart(WAV)]}),
        ("mimo-v2.6-pro", {"videos": [VideoPart(MP4)]}),  # it reads images, not video
    ],
)
def test_a_kind_the_model_cannot_read_is_refused_before_sending(model, turn):
    with pytest.raises(MimoError) as error:
        build_body(request(model, **turn), ApiFormat.OPENAI)
    assert error.value.kind is ErrorKind.UNSUPPORTED_INPUT


# --- The fake reads them as MiMo would ----------------------------------------------------


def post(fake_url, path, body):
    return httpx.post(fake_url + path, json=body, headers=BEARER, timeout=30)


def user_body(content, model="mimo-v2.5"):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 1000, "stream": False}


async def test_the_fake_says_what_each_format_brought_it(endpoint):
    turn = UserTurn("Look [[fake:help]]", images=[ImagePart(png_data_url(64, 48))], documents=[NOTES])
    if endpoint.api_format is ApiFormat.OPENAI:
        turn = UserTurn(turn.text, images=turn.images, documents=turn.documents, audio=[AudioPart(WAV)], videos=[VideoPart(MP4)])
    events = [event async for event in stream_turn(endpoint, ChatRequest(model="mimo-v2.5", turns=[turn]))]
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    if endpoint.api_format is ApiFormat.OPENAI:
        # These clips are only a format's first bytes: the fake says it could not play them.
        assert text.startswith("I see 1 image (64×48), 1 audio clip (unreadable), 1 video (unreadable), 1 document (notes.txt).")
    else:
        assert text.startswith("I see 1 image (64×48), 1 document (notes.txt).")


def test_the_fake_reports_the_media_tokens_of_what_it_received(fake_url):
    content = [
        {"type": "image_url", "image_url": {"url": png_data_url(320, 320)}},
        {"type": "input_audio", "input_audio": {"data": WAV}},
        {"type": "video_url", "video_url": {"url": MP4}},
        {"type": "text", "text": "What is this?"},
    ]
    details = post(fake_url, "/v1/chat/completions", user_body(content)).json()["usage"]["prompt_tokens_details"]
    # 320 × 320 = 102,400 pixels: 100 squares of 32 px.
    assert details == {"cached_tokens": 0, "image_tokens": 100, "audio_tokens": 63, "video_tokens": 256}


def test_the_fake_reports_no_media_tokens_for_text_alone(fake_url):
    usage = post(fake_url, "/v1/chat/completions", user_body("Hello")).json()["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "image"),
        ({"type": "input_audio", "input_audio": {"data": WAV}}, "audio"),
        ({"type": "video_url", "video_url": {"url": MP4}}, "video"),
    ],
)
def test_a_kind_the_model_does_not_read_gets_404_in_mimos_words(fake_url, part, kind):
    response = post(fake_url, "/v1/chat/completions", user_body([part], model="mimo-v2.5-pro"))
    assert response.status_code == 404
    assert response.json()["error"]["param"] == f"model does not support {kind} input"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}},
        {"type": "image_url", "image_url": {"url": "data:image/png,not-base64-declared"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
        {"type": "input_audio", "input_audio": {"data": "data:audio/x-matroska;base64,AAAA"}},
        {"type": "video_url", "video_url": {"url": MP4}, "fps": 30},
        {"type": "video_url", "video_url": {"url": MP4}, "media_resolution": "huge"},
        {"type": "file", "file": {}},
    ],
)
def test_malformed_media_parts_get_400(fake_url, part):
    response = post(fake_url, "/v1/chat/completions", user_body([part]))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Param Incorrect"


def test_anthropic_format_has_no_audio_block(fake_url):
    response = post(fake_url, "/anthropic/v1/messages", user_body([{"type": "input_audio", "input_audio": {"data": WAV}}]))
    assert response.status_code == 400


async def test_inline_media_over_50_mb_gets_400():
    over = "data:image/png;base64," + "A" * (50 * 1000 * 1000)
    transport = httpx.ASGITransport(app=FakeMimo())
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        body = user_body([{"type": "image_url", "image_url": {"url": over}}])
        response = await client.post("/v1/chat/completions", content=json.dumps(body), headers=BEARER)
    assert response.status_code == 400
    assert "50 MB" in response.json()["error"]["param"]


async def test_audio_in_anthropic_format_is_an_error_event_and_nothing_is_sent(anthropic_endpoint, fake_records):
    chat = ChatRequest(model="mimo-v2.5", turns=[UserTurn("Listen", audio=[AudioPart(WAV)])])
    events = [event async for event in stream_turn(anthropic_endpoint, chat)]
    assert [event.kind for event in events] == [ErrorKind.UNSUPPORTED_IN_FORMAT]
    assert fake_records.all() == []
