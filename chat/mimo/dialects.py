"""Both SSE dialects, OpenAI chunks and Anthropic events, read into the same events.

`StreamDecoder(api_format)` is fed the response bytes chunk by chunk and
returns normalised events; `close()` at the end of the body adds a `stream_cut`
error when the terminator (`data: [DONE]`, `message_stop`) never came. Once an
error or the terminator has been seen, the rest of the body is ignored.

Tolerated on purpose: keep-alive comments, `ping` and unknown events or delta
types, an empty `signature_delta`, a usage chunk with empty `choices`, `null`
for every unused delta key, and tool-call fragments of one or many pieces.
Web-search citations are read from `delta.annotations` in whichever chunk they
come (their exact streaming shape is UNKNOWN). Error chunks mid-stream
(UNKNOWN whether MiMo sends them) are read in MiMo's `{"error": ...}` shape and
as Anthropic's `event: error`.
"""

import json
from typing import Any

from .errors import ErrorKind, MimoError, error_from_stream_payload
from .events import (
    Citation,
    Citations,
    ErrorEvent,
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, ServerSentEvent, SSEParser
from .wire import ApiFormat

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "max_tokens": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "tool_use": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "refusal": FinishReason.CONTENT_FILTER,
    "repetition_truncation": FinishReason.REPETITION_TRUNCATION,
}


def finish_event(raw: str) -> Finish:
    return Finish(_FINISH_REASONS.get(raw, FinishReason.OTHER), raw)


def text_of_whole_answer(raw: bytes, api_format: ApiFormat) -> str:
    """The text of an answer that came whole, not streamed (mimo-api.md §5.4, §6.2); raises MimoError.

    OpenAI format: `choices[0].message.content`; Anthropic format: its `text` blocks, joined
    (a `thinking` block may come before or after them).
    """
    try:
        payload = json.loads(raw)
        if api_format is ApiFormat.ANTHROPIC:
            return "".join(block["text"] for block in payload["content"] if block.get("type") == "text")
        return payload["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise MimoError(ErrorKind.INVALID_RESPONSE, "an answer without its text") from None


class StreamDecoder:
    """Response bytes in, normalised events out, for one streamed turn."""

    def __init__(self, api_format: ApiFormat, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEParser(max_event_bytes)
        self._dialect = AnthropicDialect() if api_format is ApiFormat.ANTHROPIC else OpenAIDialect()
        self._over = False

    @property
    def finished(self) -> bool:
        """True once the terminator or an error has been read."""
        return self._over

    def feed(self, chunk: bytes) -> list[Event]:
        if self._over:
            return []
        try:
            sse_events = self._sse.feed(chunk)
        except EventTooLarge as error:
            return self._end_with(ErrorEvent(ErrorKind.INVALID_RESPONSE, str(error)))
        return self._read(sse_events)

    def close(self) -> list[Event]:
        if self._over:
            return []
        events = self._read(self._sse.close())
        if not self._over:
            events += self._end_with(ErrorEvent(ErrorKind.STREAM_CUT, "the stream ended before its terminator"))
        return events

    def _read(self, sse_events: list[ServerSentEvent]) -> list[Event]:
        events: list[Event] = []
        for sse in sse_events:
            if self._over:
                break
            try:
                new, self._over = self._dialect.read(sse)
            except (ValueError, TypeError, AttributeError, KeyError) as error:
                # Broken JSON, or JSON of an unexpected shape.
                new, self._over = [ErrorEvent(ErrorKind.INVALID_RESPONSE, f"unreadable event: {error}")], True
            events += new
        return events

    def _end_with(self, event: ErrorEvent) -> list[Event]:
        self._over = True
        return [event]


def _error_event(payload: object) -> ErrorEvent:
    return ErrorEvent.from_error(error_from_stream_payload(payload))


class OpenAIDialect:
    """Chat completion chunks (mimo-api.md §9.1)."""

    def __init__(self) -> None:
        self._open_calls: list[int] = []
        self._started_calls: set[int] = set()

    def read(self, sse: ServerSentEvent) -> tuple[list[Event], bool]:
        """(events, whether the stream is over) for one server-sent event."""
        if sse.data.strip() == "[DONE]":
            return self._end_open_calls(), True
        chunk = json.loads(sse.data)
        if not isinstance(chunk, dict):
            raise ValueError("a chunk is not an object")
        if chunk.get("error"):
            return [_error_event(chunk)], True
        events: list[Event] = []
        for choice in chunk.get("choices") or []:
            # MiMo never sends n > 1; other choices would be other answers.
            if choice.get("index", 0) == 0:
                events += self._read_choice(choice)
        if isinstance(chunk.get("usage"), dict):
            events.append(openai_usage(chunk["usage"]))
        return events, False

    def _read_choice(self, choice: dict[str, Any]) -> list[Event]:
        delta = choice.get("delta") or {}
        events: list[Event] = []
        if delta.get("annotations"):
            events.append(citations_from(delta["annotations"]))
        if delta.get("reasoning_content"):
            events.append(ReasoningDelta(delta["reasoning_content"]))
        if delta.get("content"):
            events.append(TextDelta(delta["content"]))
        for position, call in enumerate(delta.get("tool_calls") or []):
            events += self._read_tool_call(position, call)
        if choice.get("finish_reason"):
            events += self._end_open_calls()
            events.append(finish_event(choice["finish_reason"]))
        return events

    def _read_tool_call(self, position: int, call: dict[str, Any]) -> list[Event]:
        index = call.get("index")
        if not isinstance(index, int):
            index = position
        function = call.get("function") or {}
        events: list[Event] = []
        if index not in self._started_calls:
            self._started_calls.add(index)
            self._open_calls.append(index)
            events.append(ToolCallStart(index, call.get("id") or "", function.get("name") or ""))
        if function.get("arguments"):
            events.append(ToolCallDelta(index, function["arguments"]))
        return events

    def _end_open_calls(self) -> list[Event]:
        events: list[Event] = [ToolCallEnd(index) for index in self._open_calls]
        self._open_calls = []
        return events


def openai_usage(usage: dict[str, Any]) -> Usage:
    completion_details = usage.get("completion_tokens_details") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    web_search = usage.get("web_search_usage") or {}
    return Usage(
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens"),
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        image_tokens=a_count(prompt_details.get("image_tokens")),
        audio_tokens=a_count(prompt_details.get("audio_tokens")),
        video_tokens=a_count(prompt_details.get("video_tokens")),
        web_search_calls=web_search.get("tool_usage") or 0,
        web_search_pages=web_search.get("page_usage") or 0,
    )


def a_count(value):
    """A token count MiMo reported, or None when it reported none (or something that is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def citations_from(annotations: list[dict[str, Any]]) -> Citations:
    return Citations(
        tuple(
            Citation(
                url=str(item.get("url") or ""),
                title=str(item.get("title") or ""),
                summary=str(item.get("summary") or ""),
                site_name=str(item.get("site_name") or ""),
                publish_time=str(item.get("publish_time") or ""),
                logo_url=str(item.get("logo_url") or ""),
            )
            for item in annotations
            if isinstance(item, dict) and item.get("url")
        )
    )


class AnthropicDialect:
    """Messages stream events (mimo-api.md §9.2, §13)."""

    def __init__(self) -> None:
        # Content block index -> tool call index (0, 1, ... within the turn).
        self._call_index: dict[int, int] = {}
        self._prompt_tokens = 0
        self._cached_tokens = 0

    def read(self, sse: ServerSentEvent) -> tuple[list[Event], bool]:
        payload = json.loads(sse.data) if sse.data.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("an event is not an object")
        kind = payload.get("type") or sse.event
        if kind == "error" or sse.event == "error" or "error" in payload:
            return [_error_event(payload)], True
        match kind:
            case "message_start":
                self._remember_start_usage(payload.get("message") or {})
                return [], False
            case "content_block_start":
                return self._start_block(payload["index"], payload.get("content_block") or {}), False
            case "content_block_delta":
                return self._read_delta(payload["index"], payload.get("delta") or {}), False
            case "content_block_stop":
                index = payload["index"]
                if index in self._call_index:
                    return [ToolCallEnd(self._call_index[index])], False
                return [], False
            case "message_delta":
                return self._read_message_delta(payload), False
            case "message_stop":
                return [], True
        # ping, and whatever Anthropic or MiMo add later.
        return [], False

    def _remember_start_usage(self, message: dict[str, Any]) -> None:
        # MiMo sends zeros here and the real counts in message_delta; Anthropic
        # itself puts input tokens here. Keep them in case message_delta won't.
        usage = message.get("usage") or {}
        self._prompt_tokens = usage.get("input_tokens") or 0
        self._cached_tokens = usage.get("cache_read_input_tokens") or 0

    def _start_block(self, index: int, block: dict[str, Any]) -> list[Event]:
        match block.get("type"):
            case "thinking":
                events: list[Event] = []
                if block.get("thinking"):
                    events.append(ReasoningDelta(block["thinking"]))
                if block.get("signature"):
                    events.append(SignatureDelta(block["signature"]))
                return events
            case "text":
                return [TextDelta(block["text"])] if block.get("text") else []
            case "tool_use":
                call_index = len(self._call_index)
                self._call_index[index] = call_index
                events = [ToolCallStart(call_index, block.get("id") or "", block.get("name") or "")]
                # The standard start carries `input: {}` and the arguments
                # follow as deltas; a start with the input filled in is kept.
                if block.get("input"):
                    events.append(ToolCallDelta(call_index, json.dumps(block["input"], ensure_ascii=False)))
                return events
        return []

    def _read_delta(self, index: int, delta: dict[str, Any]) -> list[Event]:
        match delta.get("type"):
            case "thinking_delta" if delta.get("thinking"):
                return [ReasoningDelta(delta["thinking"])]
            case "signature_delta" if delta.get("signature"):
                return [SignatureDelta(delta["signature"])]
            case "text_delta" if delta.get("text"):
                return [TextDelta(delta["text"])]
            case "input_json_delta" if delta.get("partial_json") and index in self._call_index:
                return [ToolCallDelta(self._call_index[index], delta["partial_json"])]
        return []

    def _read_message_delta(self, payload: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        stop_reason = (payload.get("delta") or {}).get("stop_reason")
        if stop_reason:
            events.append(finish_event(stop_reason))
        usage = payload.get("usage")
        if isinstance(usage, dict):
            # Counts here are totals so far, not increments (§13).
            events.append(
                Usage(
                    prompt_tokens=usage.get("input_tokens") or self._prompt_tokens,
                    completion_tokens=usage.get("output_tokens") or 0,
                    cached_tokens=usage.get("cache_read_input_tokens") or self._cached_tokens,
                )
            )
        return events
