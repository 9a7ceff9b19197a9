"""mimoweb's client for the Xiaomi MiMo API; no Django here, everything is an argument.

Stream a turn:

    endpoint = Endpoint(base_url, api_key, ApiFormat.OPENAI)
    request = ChatRequest(model="mimo-v2.5-pro", system="...", turns=[UserTurn("Hi")])
    accumulator = Accumulator()
    async for event in stream_turn(endpoint, request):
        accumulator.add(event)   # and show the deltas
    turn = accumulator.turn()    # store it; it goes back into the next request

Ask for a short answer whole, not streamed (a title): `await whole_answer_text(endpoint,
request)` returns its text or raises `MimoError`.

Check a key: `await check_key(endpoint)` returns a `KeyCheck`.

Where mimo-api.md says UNKNOWN, the tolerant choice, and where it is made:
- Reasoning pass-back (wire): replay the exact string; " " for a tool-call turn
  with none; sent whether or not thinking is on now.
- `stream_options` is not sent: the usage chunk comes without it (wire).
- `max_tokens` is always sent in Anthropic format; `anthropic-version` too (client).
- Mid-stream errors, keep-alives, `ping`, unknown events, citation chunk shape:
  all read or skipped without failing (dialects).
- Retry-After: honoured when present (seconds or HTTP date), capped; otherwise
  backoff with jitter (client).
- The key check is a 1-token chat request, not `GET /v1/models`, whose auth
  check is UNKNOWN and which has no Anthropic twin (client).
- 404 means "cannot read this input" only when its words say "support" (errors);
  an unknown status of 4xx is bad_request, of 5xx server_error.
- v2.6 and ultraspeed figures are third-party or assumed; a model only
  `/v1/models` knows gets conservative defaults (catalogue).
"""

from .catalogue import (
    CHAT_MODELS,
    DEFAULT_MODEL,
    INLINE_MEDIA_BYTES,
    MAX_IMAGE_PIXELS,
    MOST_OUTPUT_TOKENS,
    Model,
    get_model,
    models_from_ids,
)
from .client import (
    NO_RETRY,
    Endpoint,
    KeyCheck,
    RetryPolicy,
    Timeouts,
    check_key,
    close_shared_http_client,
    list_models,
    shared_http_client,
    stream_body,
    stream_turn,
    whole_answer_text,
)
from .conversation import (
    AssistantTurn,
    AudioPart,
    ChatRequest,
    DocumentPart,
    FunctionTool,
    ImagePart,
    ToolCall,
    ToolResult,
    Turn,
    UserTurn,
    VideoPart,
    WebSearch,
)
from .dialects import StreamDecoder
from .errors import ErrorKind, MimoError, gettext_noop
from .events import (
    Accumulator,
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
from .wire import ApiFormat, build_body

__all__ = [
    "CHAT_MODELS",
    "INLINE_MEDIA_BYTES",
    "MAX_IMAGE_PIXELS",
    "MOST_OUTPUT_TOKENS",
    "DEFAULT_MODEL",
    "NO_RETRY",
    "Accumulator",
    "ApiFormat",
    "AssistantTurn",
    "AudioPart",
    "ChatRequest",
    "Citation",
    "Citations",
    "DocumentPart",
    "Endpoint",
    "ErrorEvent",
    "ErrorKind",
    "Event",
    "Finish",
    "FinishReason",
    "FunctionTool",
    "ImagePart",
    "KeyCheck",
    "MimoError",
    "Model",
    "ReasoningDelta",
    "RetryPolicy",
    "SignatureDelta",
    "StreamDecoder",
    "TextDelta",
    "Timeouts",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolResult",
    "Turn",
    "Usage",
    "UserTurn",
    "VideoPart",
    "WebSearch",
    "build_body",
    "check_key",
    "close_shared_http_client",
    "get_model",
    "gettext_noop",
    "list_models",
    "models_from_ids",
    "shared_http_client",
    "stream_body",
    "stream_turn",
    "whole_answer_text",
]
