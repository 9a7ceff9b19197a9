"""The normalised conversation: what a caller asks MiMo, whatever the wire format.

The same objects describe history going in and the assistant turn coming back
(the accumulator builds an `AssistantTurn`), so a turn is stored once and
replayed into either format later.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImagePart:
    # An https:// URL MiMo can fetch, or a data:image/...;base64,... URL.
    url: str


@dataclass(frozen=True)
class AudioPart:
    # An https:// URL MiMo can fetch, or a data:audio/...;base64,... URL. OpenAI format only.
    data: str


@dataclass(frozen=True)
class VideoPart:
    # An https:// URL MiMo can fetch, or a data:video/...;base64,... URL. OpenAI format only.
    url: str
    # MiMo's documented defaults (mimo-api.md §5.3): fps in [0.1, 10]; "default" or "max".
    fps: float = 2
    media_resolution: str = "default"


@dataclass(frozen=True)
class DocumentPart:
    """A document's text, sent inside the user turn's text with its file name (MiMo reads no files)."""

    name: str
    text: str


@dataclass(frozen=True)
class UserTurn:
    text: str
    images: Sequence[ImagePart] = ()
    audio: Sequence[AudioPart] = ()
    videos: Sequence[VideoPart] = ()
    documents: Sequence[DocumentPart] = ()


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    # The JSON text exactly as the model wrote it: it is replayed as received,
    # and may not even be valid JSON.
    arguments: str


@dataclass(frozen=True)
class AssistantTurn:
    text: str = ""
    # None when the model sent no reasoning at all; otherwise the exact
    # string, which must go back unchanged (mimo-api.md §4.3).
    reasoning: str | None = None
    # Anthropic format's thinking signature; MiMo sends "" (§4.4).
    signature: str | None = None
    tool_calls: Sequence[ToolCall] = ()


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    content: str
    is_error: bool = False


Turn = UserTurn | AssistantTurn | ToolResult


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str
    # A JSON schema for the arguments object.
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class WebSearch:
    """MiMo's built-in web search tool (mimo-api.md §8), OpenAI format only."""

    force_search: bool = False
    max_keyword: int = 5
    limit: int = 5
    user_location: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    turns: Sequence[Turn]
    system: str = ""
    # None: the model's default (catalogue.Model.thinking_default).
    thinking: bool | None = None
    # None: the model's recommended value (mimo-api.md §3).
    temperature: float | None = None
    top_p: float | None = None
    # None: the model's default output budget. It covers reasoning too.
    max_output_tokens: int | None = None
    stop: Sequence[str] = ()
    tools: Sequence[FunctionTool] = ()
    web_search: WebSearch | None = None
