"""The normalised stream events, the same for both wire formats, and their accumulator.

A turn streams as reasoning and text deltas, tool calls (start, argument
fragments, end, by `index`: the call's position in this turn, 0, 1, ...),
citations, usage, a finish and, when something went wrong, one `ErrorEvent`
that ends the stream. `Accumulator` turns them into the final `AssistantTurn`
and keeps everything that arrived before an error.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from .conversation import AssistantTurn, ToolCall
from .errors import ErrorKind, MimoError


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    # MiMo's own: the output was cut because it kept repeating itself.
    REPETITION_TRUNCATION = "repetition_truncation"
    OTHER = "other"


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class SignatureDelta:
    """Part of an Anthropic thinking signature, kept to be sent back unchanged."""

    text: str


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    arguments: str


@dataclass(frozen=True)
class ToolCallEnd:
    index: int


@dataclass(frozen=True)
class Citation:
    url: str
    title: str = ""
    summary: str = ""
    site_name: str = ""
    publish_time: str = ""
    logo_url: str = ""


@dataclass(frozen=True)
class Citations:
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # None when the format does not say: Anthropic format counts reasoning
    # inside output tokens without a separate figure.
    reasoning_tokens: int | None = None
    cached_tokens: int = 0
    web_search_calls: int = 0
    web_search_pages: int = 0
    # Of the prompt, the tokens of its images, audio and video (OpenAI format's prompt_tokens_details);
    # None when MiMo does not say, as in Anthropic format.
    image_tokens: int | None = None
    audio_tokens: int | None = None
    video_tokens: int | None = None


@dataclass(frozen=True)
class Finish:
    reason: FinishReason
    # The reason as MiMo wrote it ("end_turn", "tool_calls", ...).
    raw: str = ""


@dataclass(frozen=True)
class ErrorEvent:
    kind: ErrorKind
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None

    @classmethod
    def from_error(cls, error: MimoError) -> "ErrorEvent":
        return cls(error.kind, error.detail, error.status, error.retry_after)


Event = (
    ReasoningDelta
    | SignatureDelta
    | TextDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | Citations
    | Usage
    | Finish
    | ErrorEvent
)


@dataclass
class _PendingCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)
    ended: bool = False


class Accumulator:
    """Collects a turn's events; `turn()` is the assistant turn so far."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] | None = None
        self._signature: list[str] | None = None
        self._calls: dict[int, _PendingCall] = {}
        self.citations: list[Citation] = []
        self.usage: Usage | None = None
        self.finish: Finish | None = None
        self.error: ErrorEvent | None = None

    def add(self, event: Event) -> None:
        match event:  # the text first: most events are text
            case TextDelta(text=text):
                self._text.append(text)
            case ReasoningDelta(text=text):
                if self._reasoning is None:
                    self._reasoning = []
                self._reasoning.append(text)
            case SignatureDelta(text=text):
                if self._signature is None:
                    self._signature = []
                self._signature.append(text)
            case ToolCallStart(index=index, id=call_id, name=name):
                self._calls[index] = _PendingCall(call_id, name)
            case ToolCallDelta(index=index, arguments=arguments):
                self._calls.setdefault(index, _PendingCall("", "")).arguments.append(arguments)
            case ToolCallEnd(index=index):
                if index in self._calls:
                    self._calls[index].ended = True
            case Citations(citations=citations):
                self.citations.extend(citations)
            case Usage():
                self.usage = event
            case Finish():
                self.finish = event
            case ErrorEvent():
                self.error = event

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str | None:
        return None if self._reasoning is None else "".join(self._reasoning)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every call started so far, complete or not, in index order."""
        return tuple(ToolCall(call.id, call.name, "".join(call.arguments)) for _, call in sorted(self._calls.items()))

    @property
    def complete_tool_calls(self) -> tuple[ToolCall, ...]:
        """Only the calls whose end arrived: the ones safe to run."""
        return tuple(
            ToolCall(call.id, call.name, "".join(call.arguments))
            for _, call in sorted(self._calls.items())
            if call.ended
        )

    def turn(self) -> AssistantTurn:
        """The turn as it goes into history: a call cut off half-way is left out,
        since it can neither run nor be answered with a result."""
        return AssistantTurn(
            text=self.text,
            reasoning=self.reasoning,
            signature=None if self._signature is None else "".join(self._signature),
            tool_calls=self.complete_tool_calls,
        )
