"""What can go wrong talking to MiMo, sorted into a few kinds a person can act on.

Every HTTP status in mimo-api.md §10, MiMo's error body (`{"error": {...}}`,
also `data:`-prefixed), Anthropic's `{"type": "error", "error": {...}}` and
error events in the middle of a stream all end up as one `ErrorKind`. Each kind
has a calm sentence for the person at the keyboard and says whether trying again
can help. The sentences are marked with `gettext_noop` so Django's makemessages
finds them without this library importing Django; the caller shows
`gettext(kind.message)`.
"""

import json
from enum import StrEnum


def gettext_noop(message: str) -> str:
    """Marks a message for translation; Django's caller translates it later."""
    return message


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    UNSUPPORTED_INPUT = "unsupported_input"
    # Audio and video in a request for the Anthropic format, which has no parts for them (mimo-api.md §6.1).
    UNSUPPORTED_IN_FORMAT = "unsupported_in_format"
    MODERATION = "moderation"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    STREAM_CUT = "stream_cut"
    INVALID_RESPONSE = "invalid_response"

    @property
    def message(self) -> str:
        """The untranslated sentence for the user; show it with gettext()."""
        return _MESSAGES[self]

    @property
    def retryable(self) -> bool:
        """Whether the same request, sent again later, may well succeed."""
        return self in _RETRYABLE


_MESSAGES = {
    ErrorKind.BAD_REQUEST: gettext_noop(
        "MiMo could not accept this request. Try a shorter message or different settings."
    ),
    ErrorKind.AUTH: gettext_noop(
        "MiMo did not accept the API key. A team admin should check the key and its base URL."
    ),
    ErrorKind.INSUFFICIENT_BALANCE: gettext_noop(
        "The MiMo account has run out of credit. A team admin needs to top it up."
    ),
    ErrorKind.FORBIDDEN: gettext_noop(
        "MiMo refused access for this key. It may be blocked or not available in this region."
    ),
    ErrorKind.NOT_FOUND: gettext_noop(
        "MiMo could not find this model or address. A team admin should check the base URL."
    ),
    ErrorKind.UNSUPPORTED_INPUT: gettext_noop(
        "This model cannot read this kind of input, such as images. Choose another model or remove it."
    ),
    ErrorKind.UNSUPPORTED_IN_FORMAT: gettext_noop(
        "MiMo takes audio and video only in OpenAI format, and this key uses the Anthropic format. "
        "Remove them, or choose a key in OpenAI format."
    ),
    ErrorKind.MODERATION: gettext_noop("MiMo's content filter blocked this conversation. Try rewording your message."),
    ErrorKind.RATE_LIMITED: gettext_noop(
        "MiMo is receiving too many requests from this account. Try again in a moment."
    ),
    ErrorKind.SERVER_ERROR: gettext_noop("MiMo had a problem on its side. Try again in a moment."),
    ErrorKind.OVERLOADED: gettext_noop("MiMo is busy right now. Try again in a moment."),
    ErrorKind.TIMEOUT: gettext_noop("MiMo took too long to answer. Try again."),
    ErrorKind.CONNECTION: gettext_noop("Could not reach MiMo. Check the network connection and try again."),
    ErrorKind.STREAM_CUT: gettext_noop(
        "The answer stopped before it was finished. What arrived is kept; Retry asks for a new answer from the start."
    ),
    ErrorKind.INVALID_RESPONSE: gettext_noop("MiMo sent an answer that could not be read. Try again."),
}

_RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.OVERLOADED,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.STREAM_CUT,
        ErrorKind.INVALID_RESPONSE,
    }
)


class MimoError(Exception):
    """One failure, of one kind; `detail` is for logs and developers, never the key."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.kind.value}{status}{detail}"

    def __repr__(self) -> str:
        return f"MimoError({self.kind.value!r}, {self.detail!r}, status={self.status!r})"


# MiMo's own `type` values (mimo-api.md §10) and Anthropic's (§13).
_KIND_BY_TYPE = {
    "invalid_key": ErrorKind.AUTH,
    "illegal_access": ErrorKind.FORBIDDEN,
    "content_filter": ErrorKind.MODERATION,
    "limitation": ErrorKind.RATE_LIMITED,
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.FORBIDDEN,
    "billing_error": ErrorKind.INSUFFICIENT_BALANCE,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "api_error": ErrorKind.SERVER_ERROR,
    "overloaded_error": ErrorKind.OVERLOADED,
}


def kind_for_status(status: int, detail: str = "") -> ErrorKind:
    """The kind an HTTP status means, per mimo-api.md §10."""
    match status:
        case 401:
            return ErrorKind.AUTH
        case 402:
            return ErrorKind.INSUFFICIENT_BALANCE
        case 403:
            return ErrorKind.FORBIDDEN
        case 404:
            # The same status means "no such endpoint" and "model does not
            # support image input"; only the words tell them apart.
            if "support" in detail.lower():
                return ErrorKind.UNSUPPORTED_INPUT
            return ErrorKind.NOT_FOUND
        case 408:
            return ErrorKind.TIMEOUT
        case 421:
            return ErrorKind.MODERATION
        case 429:
            return ErrorKind.RATE_LIMITED
        case 503 | 529:
            return ErrorKind.OVERLOADED
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    if status < 400:
        # A redirect: the base URL points somewhere that is not MiMo's API.
        return ErrorKind.NOT_FOUND
    return ErrorKind.BAD_REQUEST


def parse_error_body(raw: bytes | str) -> tuple[str, str]:
    """(type, human-readable detail) from any error body MiMo or a proxy sends.

    Accepts plain JSON, a `data:`-prefixed JSON line, MiMo's `{"error": {...}}`,
    Anthropic's `{"type": "error", "error": {...}}`, a bare `{"type", "message"}`
    (seen on Token Plan 402s) and, failing all that, text.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    payload = _json_from_body(text)
    if payload is None:
        return "", text.strip()[:500]
    return error_type_and_detail(payload)


def _json_from_body(text: str) -> object:
    text = text.strip()
    if text.startswith("data:"):
        text = text.removeprefix("data:").strip()
    try:
        return json.loads(text)
    except ValueError:
        return None


def error_type_and_detail(payload: object) -> tuple[str, str]:
    """(type, detail) from a decoded error payload of any known shape."""
    if not isinstance(payload, dict):
        return "", str(payload)[:500]
    error = payload.get("error", payload)
    if isinstance(error, str):
        return str(payload.get("type") or ""), error
    if not isinstance(error, dict):
        return "", ""
    error_type = str(error.get("type") or "")
    parts = [str(error[name]) for name in ("message", "param") if error.get(name)]
    return error_type, ": ".join(parts)


def error_code(payload: object) -> int | None:
    """MiMo's `error.code` is a string such as "429"; the status it names, if any."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return None
    try:
        return int(payload["error"].get("code"))
    except (TypeError, ValueError):
        return None


def error_from_response(status: int, body: bytes, retry_after: float | None = None) -> MimoError:
    """The error an HTTP response with a failing status stands for."""
    error_type, detail = parse_error_body(body)
    kind = kind_for_status(status, detail)
    # A proxy has been seen relaying the 421 moderation block as a 400.
    if kind is ErrorKind.BAD_REQUEST and error_type == "content_filter":
        kind = ErrorKind.MODERATION
    return MimoError(kind, detail, status=status, retry_after=retry_after)


def error_from_stream_payload(payload: object) -> MimoError:
    """The error an error event inside a 200 stream stands for."""
    error_type, detail = error_type_and_detail(payload)
    code = error_code(payload)
    if error_type in _KIND_BY_TYPE:
        kind = _KIND_BY_TYPE[error_type]
    elif code is not None:
        kind = kind_for_status(code, detail)
    else:
        kind = ErrorKind.SERVER_ERROR
    return MimoError(kind, detail, status=code)
