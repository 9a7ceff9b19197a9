"""The bodies we build are accepted by the official SDKs' create() and reach MiMo unchanged.

Each body goes to the fake server twice over HTTP: from our client, and from
the SDK's `create()` (fields the SDK knows as arguments, MiMo's own fields as
`extra_body`). Both arrive as the same JSON. The raw bytes are equal too
except for the order of the top-level keys: both serialise compactly as UTF-8
without ASCII escapes, but the SDKs write their known arguments first in
their own order and `extra_body` last. MiMo parses JSON, so order is moot.
"""

import base64
import json

import anthropic
import openai
import pytest

from chat.mimo import (
    ApiFormat,
    AssistantTurn,
    ChatRequest,
    DocumentPart,
    ImagePart,
    ToolCall,
    ToolResult,
    UserTurn,
    WebSearch,
    build_body,
    stream_turn,
)

from .conftest import GOOD_KEY
from .test_differential import WEATHER, split_for_sdk

CALL = ToolCall("call_0123456789abcdef01234567", "get_weather", '{"city":"北京"}')

REQUESTS = {
    "system-and-stop": ChatRequest(
        model="mimo-v2.5-pro", system="Answer briefly.", turns=[UserTurn("Hi")], stop=["END"], temperature=0.7
    ),
    "tool-history": ChatRequest(
        model="mimo-v2.5-pro",
        tools=[WEATHER],
        turns=[
            UserTurn("Weather in 北京? 🌤"),
            AssistantTurn(text="Checking.", reasoning="I need the tool.\n", tool_calls=[CALL]),
            ToolResult(CALL.id, "Sunny, 25°C"),
            AssistantTurn(text="It is sunny.", reasoning="Done."),
            UserTurn("Thanks!"),
        ],
    ),
    "images": ChatRequest(
        model="mimo-v2.5",
        turns=[
            UserTurn(
                "What is this?",
                images=[ImagePart("data:image/png;base64,iVBORw0KGgo="), ImagePart("https://example.com/a.jpg")],
            )
        ],
    ),
    "image-and-document": ChatRequest(
        model="mimo-v2.5",
        turns=[
            UserTurn(
                "Compare them.",
                images=[ImagePart("data:image/png;base64,iVBORw0KGgo=")],
                documents=[DocumentPart("notes.md", "# Notes\n\n- 北京")],
            )
        ],
    ),
    "web-search": ChatRequest(
        model="mimo-v2.5-pro", turns=[UserTurn("News?")], web_search=WebSearch(force_search=True)
    ),
    "thinking-off-flash": ChatRequest(model="mimo-v2-flash", turns=[UserTurn("Hi")], max_output_tokens=50),
}


async def send_with_sdk(fake_url, api_format, body):
    if api_format is ApiFormat.OPENAI:
        client = openai.AsyncOpenAI(base_url=fake_url + "/v1", api_key=GOOD_KEY, max_retries=0)
        arguments, extra = split_for_sdk(body, client.chat.completions.create)
        async for _ in await client.chat.completions.create(**arguments, stream=True, extra_body=extra):
            pass
    else:
        client = anthropic.AsyncAnthropic(base_url=fake_url + "/anthropic", api_key=GOOD_KEY, max_retries=0)
        arguments, extra = split_for_sdk(body, client.messages.create)
        async for _ in await client.messages.create(**arguments, stream=True, extra_body=extra):
            pass
    await client.close()


@pytest.mark.parametrize("name", REQUESTS)
async def test_sdk_create_accepts_our_body_and_sends_the_same_json(endpoint, fake_url, fake_records, name):
    chat = REQUESTS[name]
    body = build_body(chat, endpoint.api_format)
    events = [event async for event in stream_turn(endpoint, chat)]
    assert events, "the fake answered nothing"
    await send_with_sdk(fake_url, endpoint.api_format, body)
    ours, sdk = fake_records.all()
    assert ours["body"] == sdk["body"] == body
    ours_raw, sdk_raw = (base64.b64decode(recorded["raw_body_base64"]) for recorded in (ours, sdk))
    # Same bytes but for the order of the top-level keys.
    assert len(ours_raw) == len(sdk_raw)
    assert canonical(ours_raw) == canonical(sdk_raw)


def canonical(raw: bytes) -> bytes:
    return json.dumps(json.loads(raw), sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
