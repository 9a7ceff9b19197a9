"""The official openai and anthropic SDKs and our parser read the fake server the same way.

Each scenario is requested twice with the same JSON body, once by our client
and once by the SDK; the fake answers the same body with the same bytes (bar
the `created` time), so both sides read the same stream and must agree on the
final text, reasoning, tool calls, citations, usage and finish.
"""

import inspect
import json
from dataclasses import dataclass, field

import anthropic
import openai
import pytest

from chat.mimo import (
    NO_RETRY,
    Accumulator,
    ApiFormat,
    ChatRequest,
    FunctionTool,
    UserTurn,
    WebSearch,
    build_body,
    stream_turn,
)

from .conftest import GOOD_KEY

WEATHER = FunctionTool(
    "get_weather",
    "Weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = FunctionTool(
    "get_time",
    "Time in a zone.",
    {
        "type": "object",
        "properties": {"zone": {"type": "string", "enum": ["UTC", "CST"]}, "precise": {"type": "boolean"}},
    },
)

# name: (message, request options, what the reading must show, so that the
# comparison below is never between two empty readings)
SCENARIOS = {
    "plain": ("Hello, who are you?", {}, lambda r: r.text and r.reasoning and r.finish in ("stop", "end_turn")),
    "thinking-off": ("Hello", {"thinking": False}, lambda r: r.text and not r.reasoning),
    "markdown": ("[[fake:markdown]]", {}, lambda r: "| Model |" in r.text and "```python" in r.text),
    "long": ("[[fake:long=600]]", {}, lambda r: r.completion_tokens > 600),
    "one-tool-call": ("[[fake:tool]]", {"tools": [WEATHER]}, lambda r: len(r.tool_calls) == 1),
    "parallel-tool-calls": ("[[fake:tools=3]]", {"tools": [WEATHER, CLOCK]}, lambda r: len(r.tool_calls) == 3),
    "tool-asked-none-offered": ("[[fake:tool]]", {}, lambda r: "offered no tools" in r.text and not r.tool_calls),
    "web-search": (
        "[[fake:search]]",
        {"web_search": WebSearch()},
        lambda r: len(r.citations) == 2 or "not switched on" in r.text,
    ),
    "html-payloads": ("[[fake:html]]", {}, lambda r: "<script>" in r.text and "javascript:" in r.text),
    "stream-cut": ("[[fake:cut=12]]", {}, lambda r: r.reasoning and r.finish is None),
    "mid-stream-error": ("[[fake:mid-error=503]]", {}, lambda r: r.failed and r.reasoning),
    "slow-start": ("[[fake:slow-start=0.6]] [[fake:keepalive=0.1]] [[fake:pings]]", {}, lambda r: r.text),
    "content-filter": ("[[fake:filter]]", {}, lambda r: r.finish == "content_filter"),
    "repetition": ("[[fake:repetition]]", {}, lambda r: r.finish == "repetition_truncation"),
    "pings-and-keep-alives": ("[[fake:pings]] [[fake:long=40]]", {}, lambda r: r.text),
    "error-429-before-output": ("[[fake:error=429]]", {}, lambda r: r.status == 429 and not r.text),
    "moderation-up-front": ("[[fake:moderation]]", {}, lambda r: r.status == 421),
    "output-budget": ("[[fake:long=300]]", {"max_output_tokens": 40}, lambda r: r.finish in ("length", "max_tokens")),
}


@dataclass
class Reading:
    text: str = ""
    reasoning: str = ""
    tool_calls: list = field(default_factory=list)  # (id, name, arguments as an object)
    citations: list = field(default_factory=list)  # urls
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    web_searches: int | None = None
    finish: str | None = None
    failed: bool = False
    status: int | None = None


def split_for_sdk(body, create):
    """Fields `create()` knows go as arguments; the rest (MiMo's) as extra_body."""
    known = inspect.signature(create).parameters
    arguments = {name: value for name, value in body.items() if name in known and name != "stream"}
    extra = {name: value for name, value in body.items() if name not in known and name != "stream"}
    return arguments, extra


async def read_ours(endpoint, chat) -> Reading:
    accumulator = Accumulator()
    async for event in stream_turn(endpoint, chat, retry=NO_RETRY):
        accumulator.add(event)
    reading = Reading(
        text=accumulator.text,
        reasoning=accumulator.reasoning or "",
        tool_calls=[(call.id, call.name, json.loads(call.arguments)) for call in accumulator.tool_calls],
        citations=[citation.url for citation in accumulator.citations],
        finish=accumulator.finish.raw if accumulator.finish else None,
        failed=accumulator.error is not None,
        status=accumulator.error.status if accumulator.error else None,
    )
    if accumulator.usage:
        usage = accumulator.usage
        reading.prompt_tokens, reading.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        if endpoint.api_format is ApiFormat.OPENAI:
            reading.reasoning_tokens, reading.web_searches = usage.reasoning_tokens, usage.web_search_calls
    return reading


async def read_openai_sdk(base_url, body) -> Reading:
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=GOOD_KEY, max_retries=0)
    arguments, extra = split_for_sdk(body, client.chat.completions.create)
    reading, calls = Reading(), {}
    try:
        stream = await client.chat.completions.create(**arguments, stream=True, extra_body=extra)
        async for chunk in stream:
            for choice in chunk.choices:
                delta = choice.delta
                reading.text += delta.content or ""
                # MiMo's own fields are not in the SDK's types: they land in model_extra.
                reading.reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
                reading.citations += [item["url"] for item in (delta.model_extra or {}).get("annotations") or []]
                for call in delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] = call.id or entry["id"]
                    entry["name"] = (call.function.name if call.function else None) or entry["name"]
                    entry["arguments"] += (call.function.arguments if call.function else None) or ""
                reading.finish = choice.finish_reason or reading.finish
            if chunk.usage:
                reading.prompt_tokens = chunk.usage.prompt_tokens
                reading.completion_tokens = chunk.usage.completion_tokens
                reading.reasoning_tokens = chunk.usage.completion_tokens_details.reasoning_tokens
                reading.web_searches = (chunk.usage.model_extra.get("web_search_usage") or {}).get("tool_usage", 0)
    except openai.APIStatusError as error:
        reading.failed, reading.status = True, error.status_code
    except openai.APIError as error:
        # An error chunk inside a 200 stream: MiMo's `code` names the status.
        reading.failed, reading.status = True, int(error.body["code"])
    finally:
        await client.close()
    reading.tool_calls = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    return reading


async def read_anthropic_sdk(base_url, body) -> Reading:
    client = anthropic.AsyncAnthropic(base_url=base_url + "/anthropic", api_key=GOOD_KEY, max_retries=0)
    arguments, extra = split_for_sdk(body, client.messages.stream)
    reading, message = Reading(), None
    manager = client.messages.stream(**arguments, extra_body=extra)
    try:
        async with manager as stream:
            try:
                async for _ in stream:
                    pass
            finally:
                message = stream.current_message_snapshot
    except anthropic.APIStatusError as error:
        reading.failed = True
        # A failure before the stream started has the HTTP status; an error
        # event inside a 200 stream does not.
        reading.status = error.status_code if message is None else None
    finally:
        await client.close()
    if message is not None:
        for block in message.content:
            if block.type == "text":
                reading.text += block.text
            elif block.type == "thinking":
                reading.reasoning += block.thinking
            elif block.type == "tool_use":
                reading.tool_calls.append((block.id, block.name, block.input))
        reading.finish = message.stop_reason
        if message.usage.output_tokens:
            reading.prompt_tokens, reading.completion_tokens = message.usage.input_tokens, message.usage.output_tokens
    return reading


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_sdk_and_our_parser_agree_on_every_scenario(endpoint, fake_url, scenario):
    text, options, shows_its_scenario = SCENARIOS[scenario]
    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn(text)], **options)
    body = build_body(chat, endpoint.api_format)
    ours = await read_ours(endpoint, chat)
    if endpoint.api_format is ApiFormat.OPENAI:
        theirs = await read_openai_sdk(fake_url, body)
    else:
        theirs = await read_anthropic_sdk(fake_url, body)
    if scenario == "stream-cut":
        # The SDKs end a cut stream quietly; we report it, keeping the same text.
        assert (ours.failed, theirs.failed) == (True, False)
        ours.failed = False
    assert ours == theirs
    assert shows_its_scenario(ours)
