import email.utils
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from chat.mimo import (
    NO_RETRY,
    Accumulator,
    ApiFormat,
    ChatRequest,
    Endpoint,
    ErrorKind,
    FinishReason,
    ImagePart,
    MimoError,
    RetryPolicy,
    TextDelta,
    Timeouts,
    UserTurn,
    check_key,
    shared_http_client,
    stream_turn,
    whole_answer_text,
)
from chat.mimo.client import parse_retry_after

from .conftest import GOOD_KEY


class SleepRecorder:
    def __init__(self):
        self.delays = []

    async def __call__(self, delay):
        self.delays.append(delay)


async def collect(endpoint, text, *, retry=NO_RETRY, timeouts=Timeouts(), model="mimo-v2.5-pro", **request):
    accumulator = Accumulator()
    chat = ChatRequest(model=model, turns=[UserTurn(text)], **request)
    async for event in stream_turn(endpoint, chat, retry=retry, timeouts=timeouts):
        accumulator.add(event)
    return accumulator


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_plain_message_streams_reasoning_then_answer(endpoint):
    result = await collect(endpoint, "Hello there")
    assert "Hello there" in result.text
    assert result.reasoning.startswith("The person wrote")
    assert result.finish.reason is FinishReason.STOP
    assert result.usage.completion_tokens > 0
    assert result.error is None


async def test_thinking_off_streams_no_reasoning(endpoint):
    result = await collect(endpoint, "Hello", thinking=False)
    assert result.reasoning is None and result.text


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/anthropic", "/anthropic/v1"])
async def test_a_stored_base_url_may_end_in_v1_or_anthropic(fake_url, suffix):
    for api_format in ApiFormat:
        endpoint = Endpoint(fake_url + suffix, GOOD_KEY, api_format)
        assert endpoint.root == fake_url
        assert (await collect(endpoint, "hi")).error is None


def test_both_formats_send_the_documented_bearer_header():
    assert Endpoint("https://x", "sk-1", ApiFormat.OPENAI).headers() == {"authorization": "Bearer sk-1"}
    assert Endpoint("https://x", "sk-1", ApiFormat.ANTHROPIC).headers()["authorization"] == "Bearer sk-1"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.BAD_REQUEST),
        (401, ErrorKind.AUTH),
        (402, ErrorKind.INSUFFICIENT_BALANCE),
        (403, ErrorKind.FORBIDDEN),
        (404, ErrorKind.NOT_FOUND),
        (421, ErrorKind.MODERATION),
        (429, ErrorKind.RATE_LIMITED),
        (500, ErrorKind.SERVER_ERROR),
        (503, ErrorKind.OVERLOADED),
    ],
)
async def test_an_error_before_the_first_token_ends_the_stream_with_its_kind(endpoint, status, kind):
    result = await collect(endpoint, f"[[fake:error={status}]]")
    assert (result.error.kind, result.error.status) == (kind, status)
    assert result.text == "" and result.usage is None


@pytest.mark.parametrize("shape", ["data", "anthropic"])
async def test_sse_prefixed_and_anthropic_shaped_error_bodies_are_read(endpoint, shape):
    result = await collect(endpoint, f"[[fake:error=429]] [[fake:error-body={shape}]]")
    assert result.error.kind is ErrorKind.RATE_LIMITED
    assert result.error.detail == "Too many requests"


@pytest.mark.parametrize(
    "key", ["sk-revoked-0001", "sk-invalid-0002", "tp-token-plan-0003", "", "sk-with\nnewline", "sk-with space"]
)
async def test_a_key_the_server_refuses_is_an_auth_error(fake_url, key):
    result = await collect(Endpoint(fake_url, key), "hi")
    assert result.error.kind is ErrorKind.AUTH


async def test_an_image_for_a_text_only_model_is_refused_before_sending(endpoint, fake_records):
    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("see", images=[ImagePart("https://example.com/a.png")])])
    events = [event async for event in stream_turn(endpoint, chat)]
    assert [event.kind for event in events] == [ErrorKind.UNSUPPORTED_INPUT]
    assert fake_records.all() == []


async def test_a_mid_stream_error_keeps_the_output_before_it_and_is_not_retried(endpoint, fake_records):
    sleep = SleepRecorder()
    result = await collect(endpoint, "[[fake:mid-error=503]]", retry=RetryPolicy(sleep=sleep))
    assert result.error.kind is ErrorKind.OVERLOADED
    assert result.reasoning or result.text
    assert len(fake_records.all()) == 1 and sleep.delays == []


async def test_a_stream_cut_in_the_middle_keeps_what_arrived(endpoint):
    result = await collect(endpoint, "[[fake:cut=20]]")
    assert result.error.kind is ErrorKind.STREAM_CUT
    assert result.finish is None
    assert len((result.reasoning or "") + result.text) > 0


async def test_rate_limit_is_retried_after_the_retry_after_seconds(endpoint, fake_records):
    sleep = SleepRecorder()
    result = await collect(
        endpoint,
        "[[fake:error=429]] [[fake:error-times=2]] [[fake:retry-after=7]]",
        retry=RetryPolicy(attempts=3, sleep=sleep),
    )
    assert result.error is None and result.text
    assert sleep.delays == [7.0, 7.0]
    assert len(fake_records.all()) == 3


async def test_retry_after_longer_than_the_cap_waits_only_the_cap(endpoint):
    sleep = SleepRecorder()
    policy = RetryPolicy(attempts=2, max_retry_after=30, sleep=sleep)
    result = await collect(
        endpoint, "[[fake:error=429]] [[fake:error-times=1]] [[fake:retry-after=1000]]", retry=policy
    )
    assert result.error is None
    assert sleep.delays == [30]


def test_retry_after_may_be_an_http_date():
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= parse_retry_after(in_a_minute) <= 60
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retried_with_jittered_backoff(endpoint, fake_records, status):
    sleep = SleepRecorder()
    policy = RetryPolicy(attempts=4, base_delay=2.0, max_delay=5.0, sleep=sleep)
    result = await collect(endpoint, f"[[fake:error={status}]] [[fake:error-times=3]]", retry=policy)
    assert result.error is None
    assert len(sleep.delays) == 3
    for attempt, delay in enumerate(sleep.delays, start=1):
        assert 0 <= delay <= min(5.0, 2.0 * 2 ** (attempt - 1))


async def test_retries_give_up_after_the_policy_attempts(endpoint, fake_records):
    result = await collect(endpoint, "[[fake:error=500]]", retry=RetryPolicy(attempts=3, sleep=SleepRecorder()))
    assert result.error.kind is ErrorKind.SERVER_ERROR
    assert len(fake_records.all()) == 3


@pytest.mark.parametrize("status", [400, 401, 402, 403, 421])
async def test_errors_that_retrying_cannot_fix_are_not_retried(endpoint, fake_records, status):
    sleep = SleepRecorder()
    await collect(endpoint, f"[[fake:error={status}]]", retry=RetryPolicy(sleep=sleep))
    assert sleep.delays == [] and len(fake_records.all()) == 1


async def test_a_connect_error_is_retried_then_reported_as_connection():
    sleep = SleepRecorder()
    endpoint = Endpoint(f"http://127.0.0.1:{unused_port()}", GOOD_KEY)
    result = await collect(endpoint, "hi", retry=RetryPolicy(attempts=3, sleep=sleep))
    assert result.error.kind is ErrorKind.CONNECTION
    assert len(sleep.delays) == 2


def mock_transport_client(handler):
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_connect_error_before_any_output_is_retried_and_then_succeeds():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n',
        )

    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
    async with mock_transport_client(handler) as client:
        events = [
            e
            async for e in stream_turn(
                Endpoint("http://x", GOOD_KEY), chat, retry=RetryPolicy(sleep=SleepRecorder()), http_client=client
            )
        ]
    assert events == [TextDelta("ok")] and len(calls) == 2


async def test_a_connection_lost_after_the_first_event_is_a_stream_cut_and_never_retried():
    calls = []

    async def body():
        yield b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        raise httpx.ReadError("connection reset")

    def handler(request):
        calls.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
    async with mock_transport_client(handler) as client:
        events = [
            e
            async for e in stream_turn(
                Endpoint("http://x", GOOD_KEY), chat, retry=RetryPolicy(sleep=SleepRecorder()), http_client=client
            )
        ]
    assert events[0] == TextDelta("Hel")
    assert events[1].kind is ErrorKind.STREAM_CUT
    assert len(calls) == 1


async def test_a_long_silent_start_survives_when_keep_alives_arrive(endpoint):
    # The read time-out is per read: keep-alive comments every 0.2 s reset it.
    result = await collect(endpoint, "[[fake:slow-start=3]] [[fake:keepalive=0.2]]", timeouts=Timeouts(read=1.5))
    assert result.error is None and result.text


async def test_silence_longer_than_the_read_timeout_is_a_timeout(endpoint):
    result = await collect(endpoint, "[[fake:slow-start=5]] [[fake:keepalive=0]]", timeouts=Timeouts(read=0.5))
    assert result.error.kind is ErrorKind.TIMEOUT


async def test_the_pooled_client_is_shared_within_an_event_loop():
    assert shared_http_client() is shared_http_client()


async def test_key_check_sends_one_tiny_non_streaming_request(endpoint, fake_records):
    check = await check_key(endpoint)
    assert check.ok and check.error is None and check.latency >= 0
    [recorded] = fake_records.all()
    body = recorded["body"]
    assert body["stream"] is False
    assert body["thinking"] == {"type": "disabled"}
    assert body["model"] == "mimo-v2.5"
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 1


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("sk-revoked-0001", ErrorKind.AUTH),
        ("tp-some-token-plan-key", ErrorKind.AUTH),
        ("sk-nofunds-0001", ErrorKind.INSUFFICIENT_BALANCE),
        ("sk-blocked-0001", ErrorKind.FORBIDDEN),
    ],
)
async def test_key_check_reports_why_a_key_does_not_work(fake_url, key, kind):
    for api_format in ApiFormat:
        check = await check_key(Endpoint(fake_url, key, api_format))
        assert not check.ok and check.error is kind


async def test_key_check_against_an_unreachable_url_is_a_connection_error():
    check = await check_key(Endpoint(f"http://127.0.0.1:{unused_port()}", GOOD_KEY))
    assert check.error is ErrorKind.CONNECTION


async def whole(endpoint, text, **request):
    return await whole_answer_text(endpoint, ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn(text)], **request))


@pytest.mark.parametrize("thinking", [False, True])
async def test_a_whole_answer_is_its_text_without_its_reasoning_from_one_request_not_streamed(
    endpoint, fake_records, thinking
):
    text = await whole(endpoint, "Hello there", thinking=thinking, max_output_tokens=30)
    assert text.startswith("Hello! This is the offline **fake MiMo** server")
    assert "The person wrote" not in text  # the fake's reasoning
    [recorded] = fake_records.all()
    assert recorded["body"]["stream"] is False


@pytest.mark.parametrize(
    ("directive", "kind", "status"),
    [
        ("[[fake:error=429]]", ErrorKind.RATE_LIMITED, 429),
        ("[[fake:error=500]]", ErrorKind.SERVER_ERROR, 500),
        ("[[fake:error=429]] [[fake:error-body=anthropic]]", ErrorKind.RATE_LIMITED, 429),
        ("[[fake:moderation]]", ErrorKind.MODERATION, 421),
    ],
)
async def test_a_whole_answer_refused_raises_its_kind_after_one_request(
    endpoint, fake_records, directive, kind, status
):
    with pytest.raises(MimoError) as refused:
        await whole(endpoint, directive)
    assert (refused.value.kind, refused.value.status) == (kind, status)
    assert len(fake_records.all()) == 1  # no retries


@pytest.mark.parametrize("key", ["sk-revoked-0001", "", "sk-with space"])
async def test_a_whole_answer_with_a_key_that_cannot_be_used_is_an_auth_error(fake_url, key):
    with pytest.raises(MimoError) as refused:
        await whole(Endpoint(fake_url, key), "hi")
    assert refused.value.kind is ErrorKind.AUTH


async def test_a_whole_answer_from_an_unreachable_url_is_a_connection_error():
    with pytest.raises(MimoError) as refused:
        await whole(Endpoint(f"http://127.0.0.1:{unused_port()}", GOOD_KEY), "hi")
    assert refused.value.kind is ErrorKind.CONNECTION


@pytest.mark.parametrize(
    ("api_format", "body", "answer"),
    [
        (ApiFormat.OPENAI, {"choices": [{"message": {"role": "assistant", "content": "Trip"}}]}, "Trip"),
        (ApiFormat.OPENAI, {"choices": [{"message": {"role": "assistant", "content": None}}]}, ""),
        # Anthropic format: the text blocks, whichever side of the thinking block they come.
        (
            ApiFormat.ANTHROPIC,
            {"content": [{"type": "text", "text": "Trip "}, {"type": "thinking", "thinking": "Hmm", "signature": ""},
                         {"type": "text", "text": "to Paris"}]},
            "Trip to Paris",
        ),
        (ApiFormat.OPENAI, {"error": {"code": "401", "message": "Invalid API Key"}}, ErrorKind.AUTH),
        (ApiFormat.OPENAI, {"choices": []}, ErrorKind.INVALID_RESPONSE),
        (ApiFormat.ANTHROPIC, {"content": "Trip to Paris"}, ErrorKind.INVALID_RESPONSE),
        (ApiFormat.OPENAI, "not json at all", ErrorKind.INVALID_RESPONSE),
        (ApiFormat.OPENAI, "x" * 200_000, ErrorKind.INVALID_RESPONSE),  # cut at 64 KB, then unreadable
    ],
)
async def test_a_whole_answer_body_is_read_as_its_format_says_or_is_an_error(api_format, body, answer):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=content))
    async with httpx.AsyncClient(transport=transport) as client:
        request = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
        asked = whole_answer_text(Endpoint("http://mimo.test", GOOD_KEY, api_format), request, http_client=client)
        if isinstance(answer, ErrorKind):
            with pytest.raises(MimoError) as refused:
                await asked
            assert refused.value.kind is answer
        else:
            assert await asked == answer


async def test_a_whole_answer_error_that_echoes_the_key_does_not_carry_it():
    echo = {"error": {"code": "400", "message": f"Bad request for key {GOOD_KEY}"}}
    transport = httpx.MockTransport(lambda request: httpx.Response(400, json=echo))
    async with httpx.AsyncClient(transport=transport) as client:
        request = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
        with pytest.raises(MimoError) as refused:
            await whole_answer_text(Endpoint("http://mimo.test", GOOD_KEY), request, http_client=client)
    assert GOOD_KEY not in refused.value.detail and GOOD_KEY not in repr(refused.value)
    assert "[api key]" in refused.value.detail


def test_the_library_imports_no_django():
    code = "import sys, chat.mimo, chat.mimo.fake; sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=".").returncode == 0
