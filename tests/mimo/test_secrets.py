"""The API key goes into one request header and is never seen anywhere else."""

import logging
import traceback

import httpx

from chat.mimo import (
    ApiFormat,
    ChatRequest,
    Endpoint,
    MimoError,
    RetryPolicy,
    Timeouts,
    UserTurn,
    check_key,
    list_models,
    stream_turn,
)

from .test_client import SleepRecorder, unused_port

SECRET = "sk-leakcheck-7f3a9c1e5b2d4680"
REFUSED_SECRET = "sk-revoked-leakcheck-0a1b2c3d"
ALL_SECRETS = (SECRET, REFUSED_SECRET, "leakcheck")


def seen_texts(*objects) -> list[str]:
    texts = []
    for thing in objects:
        texts += [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            texts += traceback.format_exception(thing)
    return texts


async def stream_all(endpoint, text, timeouts=Timeouts()):
    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn(text)])
    return [
        event
        async for event in stream_turn(
            endpoint, chat, retry=RetryPolicy(attempts=2, sleep=SleepRecorder()), timeouts=timeouts
        )
    ]


async def test_the_key_never_appears_in_an_exception_a_log_record_or_a_repr(fake_url, caplog):
    # Django's settings quieten httpx and httpcore; here everything is heard.
    for name in (None, "httpx", "httpcore", "aiohttp", "chat.mimo"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen = []
    unreachable = f"http://127.0.0.1:{unused_port()}"
    for key in (SECRET, REFUSED_SECRET):
        for api_format in ApiFormat:
            for base_url in (fake_url, unreachable):
                endpoint = Endpoint(base_url, key, api_format)
                seen += seen_texts(endpoint)
                for text in ("hi", "[[fake:mid-error]]", "[[fake:error=500]]", "[[fake:cut=3]]"):
                    seen += seen_texts(*await stream_all(endpoint, text))
                seen += seen_texts(await check_key(endpoint))
                try:
                    await list_models(endpoint)
                except MimoError as error:
                    # No httpx exception (which holds the request headers) rides along.
                    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
                    seen += seen_texts(error)
    slow = await stream_all(
        Endpoint(fake_url, SECRET), "[[fake:slow-start=3]] [[fake:keepalive=0]]", Timeouts(read=0.3)
    )
    seen += seen_texts(*slow)
    for record in caplog.records:
        seen.append(record.getMessage())
        if record.exc_info:
            seen += traceback.format_exception(*record.exc_info)
    seen.append(caplog.text)
    assert any("HTTP Request" in text for text in seen), "httpx logging was not captured"
    # httpcore carried the requests until the shared client's transport became
    # aiohttp's (chat/mimo/transport.py), which logs nothing about a request;
    # its loggers are heard above all the same.
    assert not [text for text in seen if any(secret in text for secret in ALL_SECRETS)]


async def test_a_key_echoed_back_by_the_upstream_is_scrubbed_from_the_error():
    def echo(request):
        key = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, json={"error": {"message": f"Invalid API Key {key}", "code": "401"}})

    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
        events = [event async for event in stream_turn(Endpoint("http://x", SECRET), chat, http_client=client)]
        check = await check_key(Endpoint("http://x", SECRET), http_client=client)
    assert SECRET not in repr(events) and "[api key]" in events[0].detail
    assert SECRET not in repr(check)


async def test_a_key_echoed_in_a_mid_stream_error_is_scrubbed():
    def echo(request):
        key = request.headers["authorization"].removeprefix("Bearer ")
        body = f'data: {{"error": {{"message": "bad key {key}", "code": "500"}}}}\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
        events = [event async for event in stream_turn(Endpoint("http://x", SECRET), chat, http_client=client)]
    assert SECRET not in repr(events)
