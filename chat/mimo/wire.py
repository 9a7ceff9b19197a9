"""One normalised request in, the exact JSON body of either MiMo format out.

`build_body(request, ApiFormat.OPENAI)` is the body for `POST /v1/chat/completions`,
`ApiFormat.ANTHROPIC` the one for `POST /anthropic/v1/messages`. Both always
carry the thinking switch, a sampling setup within MiMo's documented ranges and
an output budget, so no MiMo default is left to chance.

The reasoning pass-back rule (mimo-api.md §4.3) lives here and nowhere else:
every assistant turn goes back with its reasoning exactly as received; an
assistant turn with tool calls but no reasoning gets a single space, because
MiMo rejects a tool-call history without reasoning when thinking is on, and
whether it takes "" is UNKNOWN. We send it whether or not thinking is on now:
whether the rule applies to turns made with thinking off is UNKNOWN, and the
field is harmless where it is not needed.
"""

import json
from enum import StrEnum
from typing import Any

from . import catalogue
from .conversation import AssistantTurn, ChatRequest, DocumentPart, FunctionTool, ImagePart, ToolResult, UserTurn
from .errors import ErrorKind, MimoError

REASONING_PLACEHOLDER = " "

TEMPERATURE_RANGE = (0.0, 1.5)
TOP_P_RANGE = (0.01, 1.0)
MAX_STOP_SEQUENCES = 4


class ApiFormat(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def build_body(request: ChatRequest, api_format: ApiFormat, *, stream: bool = True) -> dict[str, Any]:
    if api_format is ApiFormat.ANTHROPIC:
        return anthropic_body(request, stream=stream)
    return openai_body(request, stream=stream)


def openai_body(request: ChatRequest, *, stream: bool = True) -> dict[str, Any]:
    model = catalogue.get_model(request.model)
    _refuse_inputs_the_model_cannot_read(request, model)
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for turn in request.turns:
        messages.append(_openai_message(turn))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": _output_budget(request, model),
        **_sampling(request, model),
        "thinking": _thinking(request, model),
        "stream": stream,
    }
    if request.stop:
        body["stop"] = list(request.stop[:MAX_STOP_SEQUENCES])
    tools = [_openai_function_tool(tool) for tool in request.tools]
    # Web search is offered only on some models; elsewhere the tool is left
    # out rather than failing the whole turn (the UI hides the switch anyway).
    if request.web_search is not None and model.web_search:
        tools.append(_openai_web_search_tool(request))
    if tools:
        body["tools"] = tools
        # "auto" is the only choice MiMo honours (mimo-api.md §5.1).
        body["tool_choice"] = "auto"
    return body


def anthropic_body(request: ChatRequest, *, stream: bool = True) -> dict[str, Any]:
    model = catalogue.get_model(request.model)
    _refuse_inputs_the_model_cannot_read(request, model)
    _refuse_audio_and_video_in_anthropic_format(request)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": _output_budget(request, model),
        "messages": _anthropic_messages(request),
        **_sampling(request, model),
        "thinking": _thinking(request, model),
        "stream": stream,
    }
    if request.system:
        body["system"] = request.system
    if request.stop:
        body["stop_sequences"] = list(request.stop[:MAX_STOP_SEQUENCES])
    # No web search here: MiMo offers it in OpenAI format only (mimo-api.md §8).
    if request.tools:
        body["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": dict(tool.parameters)}
            for tool in request.tools
        ]
        body["tool_choice"] = {"type": "auto"}
    return body


def reasoning_to_replay(turn: AssistantTurn) -> str | None:
    """The reasoning an assistant turn goes back with, or None for none (§4.3)."""
    if turn.reasoning:
        return turn.reasoning
    if turn.tool_calls:
        return REASONING_PLACEHOLDER
    return None


def _refuse_inputs_the_model_cannot_read(request: ChatRequest, model: catalogue.Model) -> None:
    # MiMo answers 404 for this; saying so before sending saves a round trip
    # and gives the same kind of error.
    for kind in ("image", "audio", "video"):
        if kind not in model.input_modalities and any(_media_of(turn, kind) for turn in request.turns):
            raise MimoError(ErrorKind.UNSUPPORTED_INPUT, f"{request.model} does not read {kind} input")


def _refuse_audio_and_video_in_anthropic_format(request: ChatRequest) -> None:
    # The Anthropic format has no block for them (mimo-api.md §6.1); dropping them silently would
    # answer a question about a recording nobody sent.
    if any(_media_of(turn, "audio") or _media_of(turn, "video") for turn in request.turns):
        raise MimoError(ErrorKind.UNSUPPORTED_IN_FORMAT, "audio and video go only in OpenAI format")


def _media_of(turn: object, kind: str) -> bool:
    if not isinstance(turn, UserTurn):
        return False
    return bool({"image": turn.images, "audio": turn.audio, "video": turn.videos}[kind])


def user_text(turn: UserTurn) -> str:
    """The user turn's text, after its documents, each delimited and named (MiMo reads no files).

    Documents come first and the question last, as one reads a letter's enclosures before its
    request. A turn without documents is its text, unchanged.
    """
    if not turn.documents:
        return turn.text
    blocks = [_document_block(document) for document in turn.documents]
    return "\n\n".join([*blocks, turn.text] if turn.text else blocks)


def _document_block(document: DocumentPart) -> str:
    # The name is quoted as JSON, so no name can close the tag early.
    return f"<document name={json.dumps(document.name, ensure_ascii=False)}>\n{document.text}\n</document>"


def _output_budget(request: ChatRequest, model: catalogue.Model) -> int:
    wanted = request.max_output_tokens or model.default_output_tokens
    return max(1, min(wanted, model.max_output_tokens))


def _sampling(request: ChatRequest, model: catalogue.Model) -> dict[str, float]:
    # Clamped rather than refused: a value out of range is a setting slid too
    # far, and the nearest allowed value is what the person meant.
    temperature = request.temperature if request.temperature is not None else model.temperature
    top_p = request.top_p if request.top_p is not None else model.top_p
    return {"temperature": _clamp(temperature, *TEMPERATURE_RANGE), "top_p": _clamp(top_p, *TOP_P_RANGE)}


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _thinking(request: ChatRequest, model: catalogue.Model) -> dict[str, str]:
    enabled = model.thinking_default if request.thinking is None else request.thinking
    return {"type": "enabled" if enabled else "disabled"}


def _openai_message(turn: UserTurn | AssistantTurn | ToolResult) -> dict[str, Any]:
    match turn:
        case UserTurn(images=(), audio=(), videos=()):
            return {"role": "user", "content": user_text(turn)}
        case UserTurn():
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": image.url}} for image in turn.images
            ]
            parts += [{"type": "input_audio", "input_audio": {"data": audio.data}} for audio in turn.audio]
            parts += [
                {"type": "video_url", "video_url": {"url": video.url}, "fps": video.fps, "media_resolution": video.media_resolution}
                for video in turn.videos
            ]
            if text := user_text(turn):
                parts.append({"type": "text", "text": text})
            return {"role": "user", "content": parts}
        case AssistantTurn():
            message: dict[str, Any] = {"role": "assistant", "content": turn.text}
            reasoning = reasoning_to_replay(turn)
            if reasoning is not None:
                message["reasoning_content"] = reasoning
            if turn.tool_calls:
                message["tool_calls"] = [
                    {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                    for call in turn.tool_calls
                ]
            return message
        case ToolResult():
            return {"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content}
    raise TypeError(f"not a turn: {turn!r}")


def _openai_function_tool(tool: FunctionTool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)},
    }


def _openai_web_search_tool(request: ChatRequest) -> dict[str, Any]:
    search = request.web_search
    tool: dict[str, Any] = {
        "type": "web_search",
        "force_search": search.force_search,
        "max_keyword": search.max_keyword,
        "limit": search.limit,
    }
    if search.user_location is not None:
        tool["user_location"] = dict(search.user_location)
    return tool


def _anthropic_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Turns as Anthropic messages: consecutive user-side turns share one message.

    Anthropic wants user and assistant to alternate, and tool results to sit
    in the user message right after the tool calls.
    """
    messages: list[dict[str, Any]] = []
    for turn in request.turns:
        role = "assistant" if isinstance(turn, AssistantTurn) else "user"
        blocks = _anthropic_blocks(turn)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _anthropic_blocks(turn: UserTurn | AssistantTurn | ToolResult) -> list[dict[str, Any]]:
    match turn:
        case UserTurn():
            blocks = [_anthropic_image(image) for image in turn.images]
            text = user_text(turn)
            if text or not blocks:
                blocks.append({"type": "text", "text": text})
            return blocks
        case AssistantTurn():
            return _anthropic_assistant_blocks(turn)
        case ToolResult():
            return [
                {
                    "type": "tool_result",
                    "tool_use_id": turn.tool_call_id,
                    "content": turn.content,
                    "is_error": turn.is_error,
                }
            ]
    raise TypeError(f"not a turn: {turn!r}")


def _anthropic_assistant_blocks(turn: AssistantTurn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    reasoning = reasoning_to_replay(turn)
    if reasoning is not None:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": turn.signature or ""})
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)})
    if not blocks:
        # An assistant message needs some content; a turn that produced
        # nothing (stopped at once) goes back as a single space.
        blocks.append({"type": "text", "text": " "})
    return blocks


def _tool_input(arguments: str) -> dict[str, Any]:
    """Anthropic format wants the arguments as an object, not as text."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        # The model wrote broken JSON. MiMo needs an object; our own history
        # still has the text as it was written.
        return {}
    return value if isinstance(value, dict) else {}


def _anthropic_image(image: ImagePart) -> dict[str, Any]:
    if image.url.startswith("data:"):
        header, _, data = image.url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0]
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": image.url}}
