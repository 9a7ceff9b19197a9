"""The fake MiMo server behaves as mimo-api.md describes the real one."""

import json

import httpx
import pytest

from chat.mimo.fake import FakeMimo, mask

from .conftest import GOOD_KEY

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
BEARER = {"authorization": f"Bearer {GOOD_KEY}"}


def chat(fake_url, path, body, headers=BEARER, **kwargs):
    return httpx.post(fake_url + path, json=body, headers=headers, timeout=30, **kwargs)


def body(text="hi", **changes):
    return {"model": "mimo-v2.5-pro", "messages": [{"role": "user", "content": text}], "max_tokens": 1000, **changes}


def sse_payloads(raw: bytes) -> list[dict]:
    lines = raw.decode().split("\n")
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


@pytest.mark.parametrize("header", ["authorization", "api-key", "x-api-key"])
def test_each_documented_auth_header_is_accepted(fake_url, header):
    value = f"Bearer {GOOD_KEY}" if header == "authorization" else GOOD_KEY
    assert chat(fake_url, OPENAI, body(), headers={header: value}).status_code == 200
    assert chat(fake_url, ANTHROPIC, body(), headers={header: value}).status_code == 200


def test_token_plan_key_on_the_pay_as_you_go_host_gets_the_documented_401(fake_url):
    response = chat(fake_url, OPENAI, body(), headers={"api-key": "tp-abc"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "Invalid API Key",
            "param": "Please provide valid API Key",
            "code": "401",
            "type": "invalid_key",
        }
    }


async def test_token_plan_host_takes_tp_keys_and_refuses_sk_keys():
    transport = httpx.ASGITransport(app=FakeMimo(host_kind="token_plan"))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        assert (await client.post(OPENAI, json=body(), headers={"api-key": "tp-abc"})).status_code == 200
        assert (await client.post(OPENAI, json=body(), headers={"api-key": "sk-abc"})).status_code == 401


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"temperature": 1.6}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 131073}, "max_tokens"),
        ({"n": 2}, "n must be 1"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "json_schema"),
        ({"model": "gpt-4o"}, "Model"),
        ({"model": "mimo-v2.5-tts"}, "Model"),
        ({"messages": []}, "messages"),
        ({"thinking": {"type": "on"}}, "thinking"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
    ],
)
def test_invalid_openai_requests_get_400_param_incorrect(fake_url, changes, fragment):
    response = chat(fake_url, OPENAI, body(**changes))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Param Incorrect"
    assert fragment in response.json()["error"]["param"]


def test_an_image_for_a_text_only_model_gets_404(fake_url):
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, {"type": "text", "text": "?"}]
    response = chat(fake_url, OPENAI, body(messages=[{"role": "user", "content": content}]))
    assert response.status_code == 404
    assert "image" in response.json()["error"]["param"]


def test_moderation_directive_gets_421_up_front(fake_url):
    response = chat(fake_url, ANTHROPIC, body("[[fake:moderation]]", stream=True))
    assert response.status_code == 421
    assert response.json()["error"]["type"] == "content_filter"


def test_429_comes_with_retry_after(fake_url):
    response = chat(fake_url, OPENAI, body("[[fake:error=429]] [[fake:retry-after=3]]"))
    assert response.status_code == 429 and response.headers["retry-after"] == "3"


def test_openai_stream_has_mimo_shape_usage_chunk_and_done(fake_url):
    raw = chat(fake_url, OPENAI, body(stream=True)).content
    chunks = sse_payloads(raw)
    assert chunks[0]["choices"][0]["delta"] == {
        "content": "",
        "role": "assistant",
        "tool_calls": None,
        "reasoning_content": None,
    }
    assert chunks[1]["choices"][0]["delta"]["reasoning_content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert raw.endswith(b"data: [DONE]\n\n")


def test_mimo_v2_flash_thinks_only_when_asked(fake_url):
    chunks = sse_payloads(chat(fake_url, OPENAI, body(model="mimo-v2-flash", stream=True)).content)
    assert "reasoning_content" not in chunks[0]["choices"][0]["delta"]
    chunks = sse_payloads(
        chat(fake_url, OPENAI, body(model="mimo-v2-flash", stream=True, thinking={"type": "enabled"})).content
    )
    assert "reasoning_content" in chunks[0]["choices"][0]["delta"]


def test_anthropic_stream_has_thinking_at_index_0_with_empty_signature(fake_url):
    raw = chat(fake_url, ANTHROPIC, body(stream=True)).content.decode()
    events = [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: ")]
    assert events[0]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert events[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": ""}} in events
    assert events[-2]["usage"]["input_tokens"] > 0 and events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-1] == {"type": "message_stop"}
    assert "event: message_start\n" in raw


def test_pings_directive_adds_ping_events_and_keep_alives(fake_url):
    raw = chat(fake_url, ANTHROPIC, body("[[fake:pings]] [[fake:long=30]]", stream=True)).content
    assert b"event: ping\n" in raw
    raw = chat(fake_url, OPENAI, body("[[fake:pings]] [[fake:long=30]]", stream=True)).content
    assert b": keep-alive\n\n" in raw


def test_openai_non_streaming_answer_has_the_documented_shape(fake_url):
    answer = chat(fake_url, OPENAI, body()).json()
    assert answer["object"] == "chat.completion"
    message = answer["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] and message["reasoning_content"]
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]


def test_anthropic_non_streaming_answer_puts_text_before_thinking(fake_url):
    answer = chat(fake_url, ANTHROPIC, body()).json()
    assert [block["type"] for block in answer["content"]] == ["text", "thinking"]
    assert answer["content"][1]["signature"] == ""
    assert answer["stop_reason"] == "end_turn" and answer["usage"]["input_tokens"] > 0


def test_tool_directive_without_offered_tools_answers_in_text(fake_url):
    answer = chat(fake_url, OPENAI, body("[[fake:tool]]")).json()
    assert "offered no tools" in answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_tool_directive_calls_only_tools_the_request_offered(fake_url):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["query"],
                },
            },
        }
    ]
    answer = chat(fake_url, OPENAI, body("[[fake:tools=2]]", tools=tools)).json()
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["lookup", "lookup"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"query": "MiMo API", "limit": 3}


def test_search_citations_only_when_the_web_search_tool_was_sent(fake_url):
    without = chat(fake_url, OPENAI, body("[[fake:search]]")).json()
    assert "annotations" not in without["choices"][0]["message"]
    with_tool = chat(fake_url, OPENAI, body("[[fake:search]]", tools=[{"type": "web_search"}])).json()
    assert with_tool["choices"][0]["message"]["annotations"][0]["type"] == "url_citation"
    assert with_tool["usage"]["web_search_usage"]["tool_usage"] == 1


def test_max_tokens_cuts_the_answer_with_finish_length(fake_url):
    answer = chat(
        fake_url, OPENAI, body("[[fake:long=500]]", max_completion_tokens=20, thinking={"type": "disabled"})
    ).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] <= 20


def test_requests_are_recorded_with_the_key_masked(fake_url, fake_records):
    chat(fake_url, OPENAI, body("record me"))
    [recorded] = fake_records.all()
    assert recorded["method"] == "POST" and recorded["path"] == OPENAI
    assert recorded["headers"]["authorization"] == "Bearer ****4321"
    assert recorded["body"]["messages"][0]["content"] == "record me"
    assert GOOD_KEY not in json.dumps(recorded)


def test_deleting_the_records_forgets_them(fake_url, fake_records):
    chat(fake_url, OPENAI, body())
    fake_records.reset()
    assert fake_records.all() == []


async def test_in_process_fake_keeps_raw_body_bytes():
    fake = FakeMimo()
    raw = json.dumps(body("bytes")).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://fake") as client:
        await client.post(OPENAI, content=raw, headers=BEARER)
    assert fake.requests[0].raw_body == raw


def test_mask_keeps_only_the_last_four():
    assert mask("Bearer sk-abcdef123") == "Bearer ****f123"
    assert mask("sk-abcdef123") == "****f123"


def test_identical_requests_get_identical_tool_call_ids(fake_url):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    first, second = (chat(fake_url, OPENAI, body("[[fake:tool]]", tools=tools)).json() for _ in range(2))
    assert first["choices"][0]["message"]["tool_calls"] == second["choices"][0]["message"]["tool_calls"]
