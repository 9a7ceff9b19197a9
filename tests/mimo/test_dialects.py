import json

import pytest

from chat.mimo import (
    Accumulator,
    ApiFormat,
    Citations,
    ErrorEvent,
    ErrorKind,
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamDecoder,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)


def openai_chunk(delta=None, finish=None, usage=None, choices=True):
    full = {"content": None, "role": None, "tool_calls": None, "reasoning_content": None, **(delta or {})}
    chunk = {
        "id": "abc",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "mimo-v2.5-pro",
        "choices": [{"index": 0, "delta": full, "finish_reason": finish}] if choices else [],
        "usage": usage,
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def anthropic_event(payload):
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def decode(api_format, *chunks):
    decoder = StreamDecoder(api_format)
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def accumulate(events):
    accumulator = Accumulator()
    for event in events:
        accumulator.add(event)
    return accumulator


DONE = b"data: [DONE]\n\n"
USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 300,
    "total_tokens": 320,
    "completion_tokens_details": {"reasoning_tokens": 250},
    "prompt_tokens_details": {"cached_tokens": 5},
    "web_search_usage": {"tool_usage": 1, "page_usage": 5},
}


def test_openai_reasoning_comes_before_text_and_usage_chunk_has_empty_choices():
    events = decode(
        ApiFormat.OPENAI,
        openai_chunk({"content": "", "role": "assistant"}),
        openai_chunk({"reasoning_content": "Let me"}),
        openai_chunk({"reasoning_content": " think"}),
        openai_chunk({"content": "Hello"}),
        openai_chunk(finish="stop"),
        openai_chunk(usage=USAGE, choices=False),
        DONE,
    )
    assert events == [
        ReasoningDelta("Let me"),
        ReasoningDelta(" think"),
        TextDelta("Hello"),
        Finish(FinishReason.STOP, "stop"),
        Usage(20, 300, 250, 5, 1, 5),
    ]


def test_openai_usage_carries_the_prompts_media_tokens_when_mimo_reports_them():
    details = {"cached_tokens": 0, "image_tokens": 1024, "audio_tokens": 63, "video_tokens": 0}
    usage = {**USAGE, "prompt_tokens_details": details}
    events = decode(ApiFormat.OPENAI, openai_chunk(finish="stop"), openai_chunk(usage=usage, choices=False), DONE)
    assert (events[-1].image_tokens, events[-1].audio_tokens, events[-1].video_tokens) == (1024, 63, 0)


@pytest.mark.parametrize("details", [{}, {"image_tokens": "many", "audio_tokens": -1, "video_tokens": True}])
def test_media_tokens_mimo_does_not_report_or_garbles_are_none(details):
    usage = {**USAGE, "prompt_tokens_details": details}
    events = decode(ApiFormat.OPENAI, openai_chunk(finish="stop"), openai_chunk(usage=usage, choices=False), DONE)
    assert (events[-1].image_tokens, events[-1].audio_tokens, events[-1].video_tokens) == (None, None, None)


def test_tool_call_arguments_split_over_chunks_are_joined():
    def call(index, arguments, call_id=None, name=None):
        return {
            "tool_calls": [
                {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
        }

    events = decode(
        ApiFormat.OPENAI,
        openai_chunk(call(0, "", "call_a", "get_weather")),
        openai_chunk(call(1, "", "call_b", "get_time")),
        # Parallel calls whose fragments interleave: only `index` tells them apart.
        openai_chunk(call(0, '{"city":')),
        openai_chunk(call(1, '{"zone":"UTC"}')),
        openai_chunk(call(0, '"Beijing"}')),
        openai_chunk(finish="tool_calls"),
        DONE,
    )
    assert events[:2] == [ToolCallStart(0, "call_a", "get_weather"), ToolCallStart(1, "call_b", "get_time")]
    assert events[-3:] == [ToolCallEnd(0), ToolCallEnd(1), Finish(FinishReason.TOOL_CALLS, "tool_calls")]
    assert accumulate(events).turn().tool_calls == (
        ToolCall("call_a", "get_weather", '{"city":"Beijing"}'),
        ToolCall("call_b", "get_time", '{"zone":"UTC"}'),
    )


def test_tool_call_arguments_in_one_fragment_are_taken_whole():
    chunk = {
        "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ]
    }
    events = decode(ApiFormat.OPENAI, openai_chunk(chunk), openai_chunk(finish="tool_calls"), DONE)
    assert accumulate(events).turn().tool_calls == (ToolCall("call_a", "f", '{"a":1}'),)


def test_web_search_annotations_become_citations():
    annotation = {
        "type": "url_citation",
        "url": "https://a.example",
        "title": "A",
        "summary": "s",
        "site_name": "x",
        "publish_time": "t",
        "logo_url": "",
    }
    events = decode(ApiFormat.OPENAI, openai_chunk({"annotations": [annotation, {"type": "other"}]}), DONE)
    assert isinstance(events[0], Citations)
    assert [citation.url for citation in events[0].citations] == ["https://a.example"]


def test_openai_finish_reasons_include_mimo_specific_ones():
    for raw, reason in [
        ("length", FinishReason.LENGTH),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("repetition_truncation", FinishReason.REPETITION_TRUNCATION),
        ("something_new", FinishReason.OTHER),
    ]:
        assert decode(ApiFormat.OPENAI, openai_chunk(finish=raw), DONE) == [Finish(reason, raw)]


def test_openai_error_chunk_mid_stream_ends_it_with_what_came_before_kept():
    error = b'data: {"error":{"code":"503","message":"busy","type":""}}\n\n'
    events = decode(ApiFormat.OPENAI, openai_chunk({"content": "Hel"}), error, openai_chunk({"content": "lo"}), DONE)
    assert events == [TextDelta("Hel"), ErrorEvent(ErrorKind.OVERLOADED, "busy", 503)]


def test_stream_without_terminator_is_a_stream_cut_keeping_what_arrived():
    events = decode(ApiFormat.OPENAI, openai_chunk({"content": "Hel"}), openai_chunk({"content": "lo"})[:30])
    assert events[0] == TextDelta("Hel")
    assert events[-1].kind is ErrorKind.STREAM_CUT
    assert accumulate(events).text == "Hel"


def test_finish_without_done_is_still_a_stream_cut():
    events = decode(ApiFormat.OPENAI, openai_chunk({"content": "Hi"}), openai_chunk(finish="stop"))
    assert events[-1].kind is ErrorKind.STREAM_CUT


def test_broken_json_is_an_invalid_response():
    events = decode(ApiFormat.OPENAI, b"data: {not json\n\n", DONE)
    assert [event.kind for event in events] == [ErrorKind.INVALID_RESPONSE]


def test_an_oversized_event_is_an_invalid_response_not_a_memory_leak():
    decoder = StreamDecoder(ApiFormat.OPENAI, max_event_bytes=1000)
    events = decoder.feed(b"data: " + b"x" * 5000)
    assert [event.kind for event in events] == [ErrorKind.INVALID_RESPONSE]
    assert decoder.close() == []


def test_crlf_and_comment_lines_in_openai_stream_are_tolerated():
    stream = b": keep-alive\r\n\r\n" + openai_chunk({"content": "Hi"}).replace(b"\n", b"\r\n") + DONE
    assert decode(ApiFormat.OPENAI, stream) == [TextDelta("Hi")]


ANTHROPIC_STREAM = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "mimo-v2.5-pro",
            "content": [],
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    },
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": ""}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "future_delta", "x": 1}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "some_future_event"},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use"},
        "usage": {"input_tokens": 55, "output_tokens": 143},
    },
    {"type": "message_stop"},
]


def test_anthropic_stream_reads_into_the_same_events():
    events = decode(ApiFormat.ANTHROPIC, *map(anthropic_event, ANTHROPIC_STREAM))
    assert events == [
        ReasoningDelta("The user"),
        TextDelta("Hello"),
        ToolCallStart(0, "call_1", "f"),
        ToolCallDelta(0, '{"a":'),
        ToolCallDelta(0, "1}"),
        ToolCallEnd(0),
        Finish(FinishReason.TOOL_CALLS, "tool_use"),
        # MiMo puts the input tokens here, not in message_start.
        Usage(prompt_tokens=55, completion_tokens=143),
    ]


def test_anthropic_turn_keeps_reasoning_and_the_empty_signature():
    turn = accumulate(decode(ApiFormat.ANTHROPIC, *map(anthropic_event, ANTHROPIC_STREAM))).turn()
    assert turn.reasoning == "The user"
    assert turn.signature is None  # an empty signature_delta adds nothing
    assert turn.tool_calls == (ToolCall("call_1", "f", '{"a":1}'),)


def test_anthropic_input_tokens_from_message_start_are_kept_when_delta_lacks_them():
    start = dict(
        ANTHROPIC_STREAM[0],
        message=dict(ANTHROPIC_STREAM[0]["message"], usage={"input_tokens": 25, "output_tokens": 1}),
    )
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}
    events = decode(ApiFormat.ANTHROPIC, *map(anthropic_event, [start, delta, {"type": "message_stop"}]))
    assert events[-1] == Usage(prompt_tokens=25, completion_tokens=15)


def test_anthropic_stop_reasons_map_to_finish_reasons():
    for raw, reason in [
        ("end_turn", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("stop_sequence", FinishReason.STOP),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("repetition_truncation", FinishReason.REPETITION_TRUNCATION),
    ]:
        delta = {"type": "message_delta", "delta": {"stop_reason": raw}, "usage": {"output_tokens": 1}}
        events = decode(ApiFormat.ANTHROPIC, anthropic_event(delta), anthropic_event({"type": "message_stop"}))
        assert events[0] == Finish(reason, raw)


def test_anthropic_error_event_mid_stream_ends_it():
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    events = decode(ApiFormat.ANTHROPIC, anthropic_event(text), error, anthropic_event(text))
    assert events == [TextDelta("Hi"), ErrorEvent(ErrorKind.OVERLOADED, "Overloaded")]


def test_anthropic_mimo_shaped_error_event_is_read_too():
    error = b'event: error\ndata: {"error":{"code":"500","message":"Internal","type":""}}\n\n'
    assert decode(ApiFormat.ANTHROPIC, error)[0].kind is ErrorKind.SERVER_ERROR


def test_anthropic_stream_without_message_stop_is_a_stream_cut():
    events = decode(ApiFormat.ANTHROPIC, *map(anthropic_event, ANTHROPIC_STREAM[:8]))
    assert events[-1].kind is ErrorKind.STREAM_CUT
    assert accumulate(events).text == "Hello"


def test_accumulator_leaves_a_half_received_tool_call_out_of_the_turn():
    accumulator = accumulate(
        [
            ToolCallStart(0, "a", "f"),
            ToolCallDelta(0, "{}"),
            ToolCallEnd(0),
            ToolCallStart(1, "b", "g"),
            ToolCallDelta(1, '{"x"'),
        ]
    )
    assert accumulator.turn().tool_calls == (ToolCall("a", "f", "{}"),)
    assert len(accumulator.tool_calls) == 2


def test_accumulator_tells_no_reasoning_from_empty_reasoning():
    assert accumulate([TextDelta("x")]).turn().reasoning is None
