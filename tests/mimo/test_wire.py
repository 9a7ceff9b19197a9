import pytest

from chat.mimo import (
    ApiFormat,
    AssistantTurn,
    ChatRequest,
    ErrorKind,
    FunctionTool,
    ImagePart,
    MimoError,
    ToolCall,
    ToolResult,
    UserTurn,
    WebSearch,
    build_body,
)

WEATHER = FunctionTool(
    "get_weather", "The weather in a city.", {"type": "object", "properties": {"city": {"type": "string"}}}
)
CALL = ToolCall("call_1", "get_weather", '{"city":"Beijing"}')


def request(**changes):
    return ChatRequest(**{"model": "mimo-v2.5-pro", "turns": [UserTurn("Hi")], **changes})


def test_thinking_switch_follows_the_model_default_unless_asked():
    assert build_body(request(), ApiFormat.OPENAI)["thinking"] == {"type": "enabled"}
    assert build_body(request(model="mimo-v2-flash"), ApiFormat.OPENAI)["thinking"] == {"type": "disabled"}
    assert build_body(request(thinking=False), ApiFormat.ANTHROPIC)["thinking"] == {"type": "disabled"}
    assert build_body(request(model="mimo-v2-flash", thinking=True), ApiFormat.ANTHROPIC)["thinking"] == {
        "type": "enabled"
    }


def test_sampling_defaults_to_the_recommended_values():
    body = build_body(request(model="mimo-v2-flash"), ApiFormat.OPENAI)
    assert (body["temperature"], body["top_p"]) == (0.8, 0.95)


def test_sampling_out_of_range_is_clamped_into_range():
    body = build_body(request(temperature=3.0, top_p=0.0), ApiFormat.OPENAI)
    assert (body["temperature"], body["top_p"]) == (1.5, 0.01)
    assert build_body(request(temperature=-1), ApiFormat.ANTHROPIC)["temperature"] == 0.0


def test_output_budget_is_always_sent_and_capped_by_the_model():
    assert build_body(request(model="mimo-v2.5"), ApiFormat.OPENAI)["max_completion_tokens"] == 32768
    assert (
        build_body(request(model="mimo-v2-flash", max_output_tokens=10**6), ApiFormat.ANTHROPIC)["max_tokens"] == 65536
    )
    assert build_body(request(max_output_tokens=100), ApiFormat.ANTHROPIC)["max_tokens"] == 100


def test_both_bodies_ask_for_a_stream():
    for api_format in ApiFormat:
        assert build_body(request(), api_format)["stream"] is True


def test_openai_body_has_system_message_first_and_function_tools_with_auto_choice():
    body = build_body(request(system="Be brief.", tools=[WEATHER]), ApiFormat.OPENAI)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]
    assert body["tool_choice"] == "auto"


def test_no_tools_means_no_tool_choice():
    assert "tool_choice" not in build_body(request(), ApiFormat.OPENAI)
    assert "tool_choice" not in build_body(request(), ApiFormat.ANTHROPIC)


def test_web_search_tool_is_sent_in_openai_format_on_models_that_offer_it():
    body = build_body(request(web_search=WebSearch(force_search=True, limit=3)), ApiFormat.OPENAI)
    assert body["tools"] == [{"type": "web_search", "force_search": True, "max_keyword": 5, "limit": 3}]


def test_web_search_is_left_out_where_mimo_does_not_offer_it():
    assert "tools" not in build_body(request(model="mimo-v2-flash", web_search=WebSearch()), ApiFormat.OPENAI)
    assert "tools" not in build_body(request(web_search=WebSearch()), ApiFormat.ANTHROPIC)


def test_anthropic_body_has_top_level_system_and_custom_tools():
    body = build_body(request(system="Be brief.", tools=[WEATHER], stop=["a", "b", "c", "d", "e"]), ApiFormat.ANTHROPIC)
    assert body["system"] == "Be brief."
    assert body["tools"] == [
        {"name": "get_weather", "description": "The weather in a city.", "input_schema": dict(WEATHER.parameters)}
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["stop_sequences"] == ["a", "b", "c", "d"]


def test_images_go_as_image_parts_for_models_that_read_them():
    image = ImagePart("data:image/png;base64,iVBORw0KGgo=")
    turns = [UserTurn("What is this?", images=[image, ImagePart("https://example.com/cat.jpg")])]
    openai = build_body(request(model="mimo-v2.5", turns=turns), ApiFormat.OPENAI)
    assert openai["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": image.url}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is this?"},
    ]
    anthropic = build_body(request(model="mimo-v2.5", turns=turns), ApiFormat.ANTHROPIC)
    assert anthropic["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is this?"},
    ]


def test_images_for_a_text_only_model_are_refused_as_unsupported_input():
    with pytest.raises(MimoError) as error:
        build_body(request(turns=[UserTurn("x", images=[ImagePart("https://example.com/a.png")])]), ApiFormat.OPENAI)
    assert error.value.kind is ErrorKind.UNSUPPORTED_INPUT


TOOL_HISTORY = [
    UserTurn("Weather?"),
    AssistantTurn(text="", reasoning="I need the weather tool.", tool_calls=[CALL]),
    ToolResult("call_1", "Sunny"),
    AssistantTurn(text="", reasoning=None, tool_calls=[ToolCall("call_2", "get_weather", '{"city":"Paris"}')]),
    ToolResult("call_2", "Rain"),
    AssistantTurn(text="Sunny in Beijing, rain in Paris.", reasoning="Both answered."),
    AssistantTurn(text="No reasoning here."),
    UserTurn("Thanks"),
]


def test_openai_replays_reasoning_exactly_and_a_space_when_none_was_received():
    assistants = [
        m for m in build_body(request(turns=TOOL_HISTORY), ApiFormat.OPENAI)["messages"] if m["role"] == "assistant"
    ]
    assert [m.get("reasoning_content") for m in assistants] == ["I need the weather tool.", " ", "Both answered.", None]
    assert assistants[0]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Beijing"}'}}
    ]


def test_passback_rule_applies_even_with_thinking_off_now():
    body = build_body(request(turns=TOOL_HISTORY, thinking=False), ApiFormat.OPENAI)
    assert body["messages"][1]["reasoning_content"] == "I need the weather tool."


def test_anthropic_replays_thinking_blocks_with_their_signature():
    turns = [
        UserTurn("Weather?"),
        AssistantTurn(reasoning="Let me check.", signature="sig", tool_calls=[CALL]),
        ToolResult("call_1", "Sunny"),
    ]
    messages = build_body(request(turns=turns), ApiFormat.ANTHROPIC)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Let me check.", "signature": "sig"},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Beijing"}},
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny", "is_error": False}],
    }


def test_anthropic_thinking_placeholder_is_a_space_with_empty_signature():
    turns = [UserTurn("Weather?"), AssistantTurn(tool_calls=[CALL]), ToolResult("call_1", "Sunny")]
    blocks = build_body(request(turns=turns), ApiFormat.ANTHROPIC)["messages"][1]["content"]
    assert blocks[0] == {"type": "thinking", "thinking": " ", "signature": ""}


def test_anthropic_tool_results_and_a_following_user_turn_share_one_user_message():
    turns = [
        UserTurn("Weather?"),
        AssistantTurn(reasoning="r", tool_calls=[CALL]),
        ToolResult("call_1", "Sunny", is_error=True),
        UserTurn("And tomorrow?"),
    ]
    messages = build_body(request(turns=turns), ApiFormat.ANTHROPIC)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [block["type"] for block in messages[2]["content"]] == ["tool_result", "text"]
    assert messages[2]["content"][0]["is_error"] is True


def test_anthropic_tool_arguments_that_are_not_an_object_become_an_empty_input():
    turns = [
        UserTurn("x"),
        AssistantTurn(reasoning="r", tool_calls=[ToolCall("c", "f", "{broken")]),
        ToolResult("c", "?"),
    ]
    assert build_body(request(turns=turns), ApiFormat.ANTHROPIC)["messages"][1]["content"][1]["input"] == {}


def test_anthropic_empty_assistant_turn_still_has_content():
    turns = [UserTurn("x"), AssistantTurn(), UserTurn("y")]
    assert build_body(request(turns=turns), ApiFormat.ANTHROPIC)["messages"][1]["content"] == [
        {"type": "text", "text": " "}
    ]
