"""Talking to MiMo over HTTP: one streamed turn, a short answer asked for whole, the model list, and the key check.

Everything here takes its configuration as arguments (`Endpoint`, `Timeouts`,
`RetryPolicy`); nothing reads settings. One `httpx.AsyncClient` is shared per
event loop, which in daphne means per process, so connections are pooled.

Retries: connect failures and 429/500/502/503/504 answers are retried with
exponential backoff and full jitter (429 honours `Retry-After`, capped), but
only before the first event has arrived: once output has reached the caller, a
retry would repeat it. Time-outs: `Timeouts.read` is per socket read, not per
response, so a long silent reasoning phase survives as long as MiMo sends
keep-alive comments at least that often.

The API key goes into one request header and nowhere else: `Endpoint` leaves it
out of its repr, httpx exceptions (which carry the request and its headers) are
turned into `MimoError`s that keep only their message, and every detail text is
scrubbed of the key in case an upstream echoes it.
"""

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .conversation import ChatRequest, UserTurn
from .dialects import StreamDecoder, text_of_whole_answer
from .errors import ErrorKind, MimoError, error_from_response, error_from_stream_payload
from .events import ErrorEvent, Event
from .transport import MimoTransport, environment_proxies
from .wire import ApiFormat, build_body

logger = logging.getLogger(__name__)

OPENAI_CHAT_PATH = "/v1/chat/completions"
ANTHROPIC_MESSAGES_PATH = "/anthropic/v1/messages"
MODELS_PATH = "/v1/models"
# Sent by the official Anthropic SDK; MiMo does not document checking it.
ANTHROPIC_VERSION = "2023-06-01"

# The key check's model: the cheapest current chat model (mimo-api.md §11).
KEY_CHECK_MODEL = "mimo-v2.5"

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_ERROR_BODY = 64 * 1024
# A short answer asked for whole (whole_answer_text): a longer body is cut, and then unreadable.
_MAX_WHOLE_ANSWER = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where a key is used: a stored base URL (the host root) and its format."""

    base_url: str
    api_key: str = field(repr=False)
    api_format: ApiFormat = ApiFormat.OPENAI

    @property
    def root(self) -> str:
        """The host root, also when the stored URL ends in /v1 or /anthropic."""
        root = self.base_url.strip().rstrip("/")
        while root.endswith(("/v1", "/anthropic")):
            root = root.rsplit("/", 1)[0].rstrip("/")
        return root

    @property
    def chat_url(self) -> str:
        path = ANTHROPIC_MESSAGES_PATH if self.api_format is ApiFormat.ANTHROPIC else OPENAI_CHAT_PATH
        return self.root + path

    @property
    def models_url(self) -> str:
        # Only the OpenAI side lists models (the Anthropic side answers 404),
        # and the same key works on both, so both formats use this one.
        return self.root + MODELS_PATH

    def headers(self, *, anthropic: bool | None = None) -> dict[str, str]:
        """Request headers. Never log these or put them in an error."""
        if anthropic is None:
            anthropic = self.api_format is ApiFormat.ANTHROPIC
        # MiMo documents `Authorization: Bearer` for both formats (mimo-api.md
        # §1.1); `x-api-key` only evidently works. Send what is documented.
        headers = {"authorization": f"Bearer {self.api_key}"}
        if anthropic:
            headers["anthropic-version"] = ANTHROPIC_VERSION
        return headers

    def refuse_unusable_key(self) -> None:
        """An empty key, or one with spaces or control characters, fails here.

        Sent as is, it would fail inside httpx with an error that quotes the
        header, key included.
        """
        if not self.api_key or not all("!" <= char <= "~" for char in self.api_key):
            raise MimoError(ErrorKind.AUTH, "the API key is empty or has characters no key has")

    def scrub(self, text: str) -> str:
        return text.replace(self.api_key, "[api key]") if self.api_key else text


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    # The longest silence between two reads, not a limit on the whole answer.
    read: float = 180.0
    write: float = 30.0
    pool: float = 10.0

    def for_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 20.0
    # MiMo's Retry-After is honoured, but never longer than this.
    max_retry_after: float = 60.0
    # Injectable so tests need not really wait.
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        # Full jitter: many browsers retrying at once do not come back in step.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(attempts=1)
KEY_CHECK_TIMEOUTS = Timeouts(connect=10.0, read=30.0, write=10.0, pool=10.0)

_shared: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None


def shared_http_client() -> httpx.AsyncClient:
    """The process's pooled client, made on first use.

    An httpx client's connections belong to the event loop they were opened
    on; a new loop (as in tests, one per test) gets a new client. Its
    transport is aiohttp's under httpx's API (transport.py), which reads a
    stream for far less CPU than httpx's own; behind a proxy from the
    environment, httpx's own transport honours it as before.
    """
    global _shared
    loop = asyncio.get_running_loop()
    if _shared is None or _shared[0] is not loop or _shared[1].is_closed:
        # Each streaming answer holds a connection for its whole length; a
        # low cap would make the answers after it fail with a pool timeout.
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=100)
        client = httpx.AsyncClient(
            transport=None if environment_proxies() else MimoTransport(limits=limits),
            limits=limits,
            timeout=Timeouts().for_httpx(),
            headers={"user-agent": "mimoweb"},
        )
        _shared = (loop, client)
    return _shared[1]


async def close_shared_http_client() -> None:
    global _shared
    if _shared is not None:
        loop, client = _shared
        _shared = None
        if loop is asyncio.get_running_loop():
            await client.aclose()


async def stream_turn(
    endpoint: Endpoint,
    request: ChatRequest,
    *,
    retry: RetryPolicy = RetryPolicy(),
    timeouts: Timeouts = Timeouts(),
    http_client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Event]:
    """Streams one assistant turn as normalised events.

    Nothing is raised for MiMo's or the network's failures: the stream ends
    with one `ErrorEvent` instead, after whatever arrived before it.
    """
    try:
        body = build_body(request, endpoint.api_format)
    except MimoError as error:
        yield ErrorEvent.from_error(error)
        return
    async for event in stream_body(endpoint, body, retry=retry, timeouts=timeouts, http_client=http_client):
        yield event


async def stream_body(
    endpoint: Endpoint,
    body: dict[str, Any],
    *,
    retry: RetryPolicy = RetryPolicy(),
    timeouts: Timeouts = Timeouts(),
    http_client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Event]:
    """Streams a body built elsewhere; `stream_turn` is the usual way in."""
    try:
        endpoint.refuse_unusable_key()
    except MimoError as error:
        yield ErrorEvent.from_error(error)
        return
    content = encode_body(body)
    client = http_client or shared_http_client()
    headers = {**endpoint.headers(), "content-type": "application/json", "accept": "text/event-stream"}
    for attempt in range(1, retry.attempts + 1):
        started = False
        try:
            async with client.stream(
                "POST", endpoint.chat_url, content=content, headers=headers, timeout=timeouts.for_httpx()
            ) as response:
                await _raise_for_failure(response, endpoint)
                decoder = StreamDecoder(endpoint.api_format)
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        started = True
                        yield _scrubbed(event, endpoint)
                    if decoder.finished:
                        return
                for event in decoder.close():
                    yield _scrubbed(event, endpoint)
                return
        except MimoError as error:
            failure, worth_retrying = error, error.status in _RETRIED_STATUSES
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            failure = _transport_failure(error, started, endpoint)
            worth_retrying = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
        if started or not worth_retrying or attempt == retry.attempts:
            logger.info("MiMo turn failed after %d attempt(s): %s", attempt, failure)
            yield ErrorEvent.from_error(failure)
            return
        delay = retry.delay(attempt, failure.retry_after)
        logger.warning(
            "MiMo failed (%s); retrying in %.1f s, attempt %d of %d", failure, delay, attempt + 1, retry.attempts
        )
        await retry.sleep(delay)


async def whole_answer_text(
    endpoint: Endpoint,
    request: ChatRequest,
    *,
    timeouts: Timeouts = Timeouts(),
    http_client: httpx.AsyncClient | None = None,
) -> str:
    """The text of one short assistant turn, asked for whole rather than streamed; raises MimoError.

    For an answer nobody watches arrive (a conversation's title): one JSON body to read
    instead of an event per token. Asked once, without retries.
    """
    endpoint.refuse_unusable_key()
    content = encode_body(build_body(request, endpoint.api_format, stream=False))
    client = http_client or shared_http_client()
    headers = {**endpoint.headers(), "content-type": "application/json"}
    try:
        async with client.stream(
            "POST", endpoint.chat_url, content=content, headers=headers, timeout=timeouts.for_httpx()
        ) as response:
            raw = await _read_capped(response, _MAX_WHOLE_ANSWER)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise _transport_failure(error, False, endpoint) from None
    try:
        if not response.is_success:
            raise _error_of_status(response, raw)
        if error := _error_in_json_200(raw):
            raise error
        return text_of_whole_answer(raw, endpoint.api_format)
    except MimoError as error:
        error.detail = endpoint.scrub(error.detail)
        raise


def encode_body(body: dict[str, Any]) -> bytes:
    # The serialisation the official SDKs use: compact, UTF-8, not ASCII-escaped.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _raise_for_failure(response: httpx.Response, endpoint: Endpoint) -> None:
    is_json = "json" in response.headers.get("content-type", "")
    if response.is_success and not is_json:
        return
    body = await _read_capped(response)
    if response.is_success:
        # A JSON answer to a streaming request: an error in disguise, or a
        # proxy that ignored `stream`. Neither can be streamed.
        error = _error_in_json_200(body) or MimoError(ErrorKind.INVALID_RESPONSE, "a JSON answer instead of a stream")
    else:
        error = _error_of_status(response, body)
    error.detail = endpoint.scrub(error.detail)
    raise error


def _error_of_status(response: httpx.Response, body: bytes) -> MimoError:
    """The error a failing status stands for, with the Retry-After it came with."""
    return error_from_response(response.status_code, body, parse_retry_after(response.headers.get("retry-after")))


def _error_in_json_200(body: bytes) -> MimoError | None:
    """MiMo's `{"error": ...}` sent with a 200, if that is what the body is."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return error_from_stream_payload(payload) if isinstance(payload, dict) and payload.get("error") else None


async def _read_capped(response: httpx.Response, limit: int = _MAX_ERROR_BODY) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[:limit])


def _transport_failure(error: Exception, started: bool, endpoint: Endpoint) -> MimoError:
    """A MimoError for an httpx failure, keeping its words but not its request."""
    detail = endpoint.scrub(f"{type(error).__name__}: {error}")
    if isinstance(error, httpx.ConnectTimeout | httpx.ConnectError):
        kind = ErrorKind.CONNECTION
    elif isinstance(error, httpx.TimeoutException):
        kind = ErrorKind.TIMEOUT
    elif started:
        kind = ErrorKind.STREAM_CUT
    else:
        kind = ErrorKind.CONNECTION
    return MimoError(kind, detail)


def _scrubbed(event: Event, endpoint: Endpoint) -> Event:
    if isinstance(event, ErrorEvent) and endpoint.api_key in event.detail:
        return ErrorEvent(event.kind, endpoint.scrub(event.detail), event.status, event.retry_after)
    return event


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


async def list_models(
    endpoint: Endpoint, *, timeouts: Timeouts = KEY_CHECK_TIMEOUTS, http_client: httpx.AsyncClient | None = None
) -> list[str]:
    """The model ids MiMo's `GET /v1/models` lists; raises MimoError."""
    endpoint.refuse_unusable_key()
    client = http_client or shared_http_client()
    try:
        response = await client.get(
            endpoint.models_url, headers=endpoint.headers(anthropic=False), timeout=timeouts.for_httpx()
        )
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise _transport_failure(error, False, endpoint) from None
    if not response.is_success:
        error = error_from_response(response.status_code, response.content)
        error.detail = endpoint.scrub(error.detail)
        raise error
    try:
        return [str(item["id"]) for item in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise MimoError(ErrorKind.INVALID_RESPONSE, "unreadable model list") from None


@dataclass(frozen=True)
class KeyCheck:
    ok: bool
    # Seconds from sending the request to its answer.
    latency: float
    error: ErrorKind | None = None
    detail: str = ""
    status: int | None = None


async def check_key(
    endpoint: Endpoint,
    *,
    model: str = KEY_CHECK_MODEL,
    timeouts: Timeouts = KEY_CHECK_TIMEOUTS,
    http_client: httpx.AsyncClient | None = None,
) -> KeyCheck:
    """Whether the key works with its base URL and format, by the smallest real request.

    One non-streaming, non-thinking chat request for at most one output token
    to the cheapest model. `GET /v1/models` would cost nothing, but whether MiMo
    checks the key there is UNKNOWN and it does not exist in Anthropic format;
    the chat request goes through the very URL, format and auth header that
    conversations will use, for a few tokens' cost.
    """
    try:
        endpoint.refuse_unusable_key()
    except MimoError as error:
        return KeyCheck(False, 0.0, error.kind, error.detail)
    request = ChatRequest(model=model, turns=[UserTurn("ping")], thinking=False, max_output_tokens=1)
    body = build_body(request, endpoint.api_format, stream=False)
    client = http_client or shared_http_client()
    headers = {**endpoint.headers(), "content-type": "application/json"}
    started = time.monotonic()
    try:
        response = await client.post(
            endpoint.chat_url, content=encode_body(body), headers=headers, timeout=timeouts.for_httpx()
        )
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        failure = _transport_failure(error, False, endpoint)
        return KeyCheck(False, time.monotonic() - started, failure.kind, failure.detail)
    latency = time.monotonic() - started
    if not response.is_success:
        failure = error_from_response(response.status_code, response.content)
        return KeyCheck(False, latency, failure.kind, endpoint.scrub(failure.detail), response.status_code)
    return KeyCheck(True, latency, status=response.status_code)
