"""mimo-api.md §4.3: with thinking on, tool-call turns must go back with their reasoning."""

import copy

from chat.mimo import (
    Accumulator,
    ApiFormat,
    AssistantTurn,
    ChatRequest,
    ErrorKind,
    FinishReason,
    FunctionTool,
    ToolCall,
    ToolResult,
    UserTurn,
    build_body,
    stream_body,
    stream_turn,
)

WEATHER = FunctionTool(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
QUESTION = UserTurn("[[fake:tool]] [[fake:rounds=2]] What is the weather in Beijing?")


def request(turns):
    return ChatRequest(model="mimo-v2.5-pro", turns=turns, tools=[WEATHER], thinking=True)


async def one_round(endpoint, turns):
    accumulator = Accumulator()
    async for event in stream_turn(endpoint, request(turns)):
        accumulator.add(event)
    assert accumulator.error is None
    return accumulator


async def three_rounds(endpoint):
    """Question -> tool call -> result -> tool call -> result -> answer."""
    turns = [QUESTION]
    for round_number in (1, 2):
        result = await one_round(endpoint, turns)
        assert result.finish.reason is FinishReason.TOOL_CALLS
        turn = result.turn()
        assert turn.reasoning and len(turn.tool_calls) == 1
        turns += [turn, ToolResult(turn.tool_calls[0].id, f"Sunny, round {round_number}")]
    final = await one_round(endpoint, turns)
    return turns, final


def without_reasoning(body, api_format):
    body = copy.deepcopy(body)
    for message in body["messages"]:
        if message["role"] != "assistant":
            continue
        if api_format is ApiFormat.ANTHROPIC:
            message["content"] = [block for block in message["content"] if block["type"] != "thinking"]
        else:
            message.pop("reasoning_content", None)
    return body


async def test_three_round_tool_conversation_replays_reasoning_exactly(endpoint, fake_records):
    turns, final = await three_rounds(endpoint)
    assert final.finish.reason is FinishReason.STOP
    assert "Sunny, round 1" in final.text and "Sunny, round 2" in final.text
    last_body = fake_records.all()[-1]["body"]
    sent_assistants = [message for message in last_body["messages"] if message["role"] == "assistant"]
    received = [turn.reasoning for turn in turns if isinstance(turn, AssistantTurn)]
    if endpoint.api_format is ApiFormat.ANTHROPIC:
        sent = [message["content"][0]["thinking"] for message in sent_assistants]
        assert all(message["content"][0]["signature"] == "" for message in sent_assistants)
    else:
        sent = [message["reasoning_content"] for message in sent_assistants]
    assert sent == received


async def test_the_fake_rejects_the_same_history_without_reasoning(endpoint):
    turns, _ = await three_rounds(endpoint)
    body = without_reasoning(build_body(request(turns), endpoint.api_format), endpoint.api_format)
    events = [event async for event in stream_body(endpoint, body)]
    assert [event.kind for event in events] == [ErrorKind.BAD_REQUEST]
    assert "reasoning_content in the thinking mode must be passed back" in events[0].detail


async def test_a_tool_turn_that_had_no_reasoning_goes_back_with_a_placeholder_and_is_accepted(endpoint, fake_records):
    call = ToolCall("call_0123456789abcdef01234567", "get_weather", '{"city":"Beijing"}')
    turns = [QUESTION, AssistantTurn(tool_calls=[call]), ToolResult(call.id, "Sunny")]
    result = await one_round(endpoint, turns)
    assert result.finish is not None
    sent = fake_records.all()[-1]["body"]["messages"][1]
    placeholder = (
        sent["content"][0]["thinking"] if endpoint.api_format is ApiFormat.ANTHROPIC else sent["reasoning_content"]
    )
    assert placeholder == " "
