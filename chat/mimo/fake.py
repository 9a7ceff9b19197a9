"""A fake MiMo API, for tests and the offline demo: `daphne chat.mimo.fake:application`.

It speaks both formats as mimo-api.md describes them, awkward parts included:
`POST /v1/chat/completions`, `POST /anthropic/v1/messages` (streaming or not)
and `GET /v1/models`, with MiMo's authentication, validation and error bodies.

Keys (any of `Authorization: Bearer`, `api-key`, `x-api-key`):
  - the pay-as-you-go host accepts keys starting with `sk-`, the Token Plan host
    keys starting with `tp-`; the other prefix, or no key, gets 401;
  - a key containing `invalid` or `revoked` gets 401, `nofunds` 402, `blocked` 403.
  So `sk-test-1234` works, `sk-revoked-1234` and `tp-1234` (on pay-as-you-go) do not.

What it answers is chosen by directives in the last message the person typed
(the last user message that is not only tool results), written `[[fake:NAME]]`
or `[[fake:NAME=VALUE]]`, several allowed:
  (none)            a short answer, after some reasoning when thinking is on
  help              lists these directives
  markdown          reasoning, then headings, a table, code and maths
  long=N            an answer of N tokens (default 1000)
  code=N / table=N / list=N   an answer that is one N-line Python code block,
                    an N-row table, or an N-item list without blank lines
                    (default 50 each), after a line of prose
  tool / tools=N    one / N parallel calls of the tools the request offered,
                    arguments split over many chunks (if none were offered,
                    says so in text); rounds=R asks for R rounds of tool calls
                    before the final answer (default 1)
  search            web-search citations (OpenAI format, web_search tool sent)
  html              output full of <script>, on*= and javascript: payloads
  cut[=N]           the stream ends after N tokens without its terminator
  mid-error[=S]     an error event after some tokens (S: 500, 503, 429...)
  error=S           HTTP status S before any output (400 401 402 403 404 421
                    429 500 503); error-times=N fails only the first N requests
                    with the same text; retry-after=SECONDS for 429 (default 1);
                    error-body=mimo|data|anthropic picks the body shape
  moderation        421 up front;  filter  finish `content_filter` mid-answer
  repetition        finish `repetition_truncation`
  slow-start[=S]    S seconds of silence with keep-alive comments (default 10)
  keepalive=S       seconds between keep-alive comments (0: none)
  pings             Anthropic `ping` events; keep-alives between tokens too
  speed=N           N tokens per second for this answer (0: no pause)
  clock             every word of the answer's text becomes `t<unix ms>n<seq>`
                    (its whitespace kept; with long=N, N of them, numbered from 1),
                    the time taken as the token is written, so a reader can
                    measure what lies between it and us; reasoning is left as is

Attachments: image, audio and video parts are checked as mimo-api.md §5.3 and §6.1 describe
(part shapes, formats, `data:{MIME};base64,` URLs, the 50 MB inline limit; 404 "model does not
support image input", or audio or video, for a model without it; no audio or video blocks in
Anthropic format), and an answer to a message that carried some begins by saying what it saw:
"I see 2 images (640×480, by URL), 1 audio clip (2.0 s), 1 video (4.0 s), 1 document (notes.txt)."

Environment (read by `application`):
  MIMOWEB_FAKE_HOST_KIND            payg (default) or token_plan
  MIMOWEB_FAKE_TOKENS_PER_SECOND    default 30; 0 streams without pauses
  MIMOWEB_FAKE_KEEPALIVE_SECONDS    default 1
  MIMOWEB_FAKE_EXTRA_MODELS         comma-separated ids added to the model list

Every request is recorded (key masked to its last four) in `FakeMimo.requests`,
and over HTTP at `GET /_fake/requests`; `DELETE /_fake/requests` forgets them
and the `error-times` counts. Requests with the same JSON body get the same
answer, byte for byte but for the `created` time and `clock` stamps (ids come from a
hash of the body).

Choices where MiMo's behaviour is UNKNOWN: reasoning counts as not passed back
when it is absent, null or ""; unknown models and TTS/ASR models get 400; the
402, 500 and 503 bodies are made up in MiMo's shape; mid-stream errors use
MiMo's `{"error": ...}` chunk (OpenAI) and Anthropic's `event: error`.
"""

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import av
from PIL import Image

from . import catalogue

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/anthropic/v1/messages"
MODELS_PATH = "/v1/models"
RECORD_PATH = "/_fake/requests"

NON_CHAT_MODELS = (
    "mimo-v2.5-tts",
    "mimo-v2.5-tts-voiceclone",
    "mimo-v2.5-tts-voicedesign",
    "mimo-v2-tts",
    "mimo-v2.5-asr",
)

PASSBACK_ERROR = {
    "error": {
        "code": "400",
        "message": "Param Incorrect",
        "param": "The reasoning_content in the thinking mode must be passed back to the API.",
        "type": "",
    }
}

DIRECTIVE = re.compile(r"\[\[fake:([a-z-]+)(?:=([^\]]*))?\]\]")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOKEN = re.compile(r"\S+\s*|\s+")
# What a `clock` answer carries until the moment each token is written: the
# same width as a stamp (Unix milliseconds have 13 digits until 2286).
CLOCK_MARK = "t" + "0" * 13 + "n"

ERROR_BODIES: dict[int, dict[str, str]] = {
    400: {"code": "400", "message": "Param Incorrect", "param": "[[fake:error=400]]", "type": "Bad Request"},
    401: {"message": "Invalid API Key", "param": "Please provide valid API Key", "code": "401", "type": "invalid_key"},
    402: {"code": "402", "message": "Insufficient account balance", "param": "", "type": "insufficient_balance"},
    403: {"code": "403", "message": "Illegal access", "type": "illegal_access"},
    404: {"code": "404", "message": "Not Found", "param": "", "type": ""},
    421: {
        "code": "421",
        "message": "Moderation Block",
        "param": "The request was rejected because it was considered high risk",
        "type": "content_filter",
    },
    429: {"code": "429", "message": "Too many requests", "type": "limitation"},
    500: {"code": "500", "message": "Internal Server Error", "param": "", "type": "server_error"},
    503: {"code": "503", "message": "Service Unavailable", "param": "The server is overloaded", "type": "overloaded"},
}

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    421: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}

KEEPALIVE = b": keep-alive\n\n"
PING = b'event: ping\ndata: {"type":"ping"}\n\n'

THINKING_TYPES = ("enabled", "disabled")

ANTHROPIC_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def mimo_error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    error = dict(ERROR_BODIES.get(status, ERROR_BODIES[500]), code=str(status))
    if message is not None:
        error["message"] = message
    if param is not None:
        error["param"] = param
    return {"error": error}


def mask(value: str) -> str:
    """A secret as the recording shows it: only its last four characters."""
    prefix = "Bearer " if value.startswith("Bearer ") else ""
    secret = value.removeprefix(prefix)
    return f"{prefix}****{secret[-4:]}"


def tokens_of(text: str) -> list[str]:
    """Text split into word-sized "tokens" that join back to exactly the text."""
    return TOKEN.findall(text)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "raw_body_base64": base64.b64encode(self.raw_body).decode(),
        }


class HTTPFailure(Exception):
    def __init__(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = (), sse_prefixed=False):
        self.status = status
        self.payload = payload
        self.headers = list(headers)
        self.sse_prefixed = sse_prefixed


@dataclass
class Plan:
    """What one answer will say, before it is written in either format."""

    model: str
    thinking: bool
    response_id: str
    reasoning: str = ""
    text: str = ""
    # (id, name, JSON arguments)
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    citations: list[dict[str, str]] = field(default_factory=list)
    finish: str = "stop"
    prompt_tokens: int = 1
    # What MiMo reports of the prompt's media in OpenAI format (prompt_tokens_details), when it received some.
    media_tokens: dict[str, int] = field(default_factory=dict)
    # Effects that only a stream can show.
    silence: float = 0.0
    keepalive: float = 1.0
    pings: bool = False
    cut_after: int | None = None
    error_after: int | None = None
    error_status: int = 500
    speed: float = 0.0

    @property
    def reasoning_tokens(self) -> int:
        return len(tokens_of(self.reasoning))

    @property
    def completion_tokens(self) -> int:
        tool_tokens = sum(len(arguments) // 4 + 1 for _, _, arguments in self.tool_calls)
        return self.reasoning_tokens + len(tokens_of(self.text)) + tool_tokens

    def steps(self) -> list[tuple[Any, ...]]:
        """The answer as a list of token-sized pieces, in the order they stream."""
        steps: list[tuple[Any, ...]] = [("reasoning", piece) for piece in tokens_of(self.reasoning)]
        if self.citations:
            steps.append(("citations", self.citations))
        steps += [("text", piece) for piece in tokens_of(self.text)]
        for index, (_, _, arguments) in enumerate(self.tool_calls):
            steps.append(("tool_start", index))
            # Arguments in many small pieces, as a client must be ready for.
            steps += [("tool_args", index, arguments[i : i + 5]) for i in range(0, len(arguments), 5)]
        return steps


class FakeMimo:
    def __init__(
        self,
        *,
        host_kind: str = "payg",
        tokens_per_second: float = 0.0,
        keepalive_interval: float = 1.0,
        extra_models: Iterable[str] = (),
    ) -> None:
        if host_kind not in ("payg", "token_plan"):
            raise ValueError(f"host_kind must be payg or token_plan, not {host_kind!r}")
        self.host_kind = host_kind
        self.tokens_per_second = tokens_per_second
        self.keepalive_interval = keepalive_interval
        self.extra_models = tuple(extra_models)
        # The latest requests only: a demo left running must not grow without end.
        self.requests: deque[RecordedRequest] = deque(maxlen=1000)
        self._failures: Counter[str] = Counter()

    @classmethod
    def from_environment(cls) -> "FakeMimo":
        extra = os.environ.get("MIMOWEB_FAKE_EXTRA_MODELS", "")
        return cls(
            host_kind=os.environ.get("MIMOWEB_FAKE_HOST_KIND", "payg"),
            tokens_per_second=float(os.environ.get("MIMOWEB_FAKE_TOKENS_PER_SECOND", "30")),
            keepalive_interval=float(os.environ.get("MIMOWEB_FAKE_KEEPALIVE_SECONDS", "1")),
            extra_models=[model.strip() for model in extra.split(",") if model.strip()],
        )

    @property
    def chat_models(self) -> list[str]:
        return [*catalogue.CHAT_MODELS, *self.extra_models]

    def reset(self) -> None:
        self.requests.clear()
        self._failures.clear()

    # ASGI

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            if path == RECORD_PATH:
                await self._serve_records(method, send)
                return
            self._record(method, path, headers, raw)
            if method == "POST" and path in (OPENAI_PATH, ANTHROPIC_PATH):
                await self._serve_chat(path == ANTHROPIC_PATH, headers, raw, receive, send)
            elif method == "GET" and path == MODELS_PATH:
                self._authenticate(headers)
                await _send_json(send, 200, self._model_list())
            else:
                raise HTTPFailure(404, mimo_error(404, param=f"{method} {path} does not exist"))
        except HTTPFailure as failure:
            await _send_failure(send, failure)

    async def _serve_records(self, method: str, send) -> None:
        if method == "DELETE":
            self.reset()
            await _send_json(send, 200, {"deleted": True})
        else:
            await _send_json(send, 200, [request.as_json() for request in self.requests])

    def _record(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        shown = {
            name: mask(value) if name in ("authorization", "api-key", "x-api-key") else value
            for name, value in headers.items()
        }
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(method, path, shown, body, raw))

    def _authenticate(self, headers: dict[str, str]) -> str:
        key = headers.get("x-api-key") or headers.get("api-key") or ""
        authorization = headers.get("authorization", "")
        if not key and authorization.startswith("Bearer "):
            key = authorization.removeprefix("Bearer ").strip()
        prefix = "tp-" if self.host_kind == "token_plan" else "sk-"
        if not key.startswith(prefix) or "invalid" in key or "revoked" in key:
            raise HTTPFailure(401, mimo_error(401))
        if "nofunds" in key:
            raise HTTPFailure(402, mimo_error(402))
        if "blocked" in key:
            raise HTTPFailure(403, mimo_error(403))
        return key

    def _model_list(self) -> dict[str, Any]:
        ids = [*self.chat_models, *NON_CHAT_MODELS]
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "xiaomi"} for model in ids]}

    # Chat

    async def _serve_chat(self, anthropic: bool, headers: dict[str, str], raw: bytes, receive, send) -> None:
        self._authenticate(headers)
        try:
            body = json.loads(raw)
        except ValueError:
            raise HTTPFailure(400, mimo_error(400, param="The request body is not valid JSON")) from None
        if not isinstance(body, dict):
            raise HTTPFailure(400, mimo_error(400, param="The request body must be a JSON object"))
        self._validate(body, anthropic)
        thinking = _thinking_on(body)
        if thinking and _history_lacks_reasoning(body, anthropic):
            raise HTTPFailure(400, PASSBACK_ERROR)
        text = _last_human_text(body, anthropic)
        directives = _directives(text)
        self._fail_if_asked(directives, anthropic, raw_text=text)
        plan = self._plan(body, anthropic, directives, thinking)
        if body.get("stream") is True:
            render = _anthropic_stream(plan) if anthropic else _openai_stream(plan)
            if "clock" in directives:
                render = _clocked(render)
            await _stream(send, receive, render)
        elif plan.error_after is not None:
            raise HTTPFailure(plan.error_status, mimo_error(plan.error_status))
        else:
            if "clock" in directives:
                plan.text = plan.text.replace(CLOCK_MARK, _clock_now())
            await _send_json(send, 200, _anthropic_message(plan) if anthropic else _openai_completion(plan))

    def _validate(self, body: dict[str, Any], anthropic: bool) -> None:
        def bad(param: str) -> HTTPFailure:
            return HTTPFailure(400, mimo_error(400, param=param))

        model = body.get("model")
        if not isinstance(model, str) or model not in self.chat_models:
            raise bad(f"Model {model!r} does not exist or is not a chat model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad("messages must be a non-empty list")
        if not all(isinstance(message, dict) for message in messages):
            raise bad("every message must be an object")
        _check_range(body, "temperature", 0, 1.5, bad)
        _check_range(body, "top_p", 0.01, 1.0, bad)
        _check_range(body, "frequency_penalty", -2, 2, bad)
        _check_range(body, "presence_penalty", -2, 2, bad)
        for name in ("max_tokens", "max_completion_tokens"):
            _check_range(body, name, 1, 131072, bad, integer=True)
        if "stream" in body and not isinstance(body["stream"], bool):
            raise bad("stream must be a boolean")
        thinking = body.get("thinking")
        if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES):
            raise bad("thinking.type must be enabled or disabled")
        stop = body.get("stop_sequences" if anthropic else "stop")
        if isinstance(stop, list) and len(stop) > 4:
            raise bad("At most 4 stop sequences")
        tools = body.get("tools") or []
        if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
            raise bad("tools must be a list of objects")
        for tool in tools:
            name = (tool.get("function") or {}).get("name") if tool.get("type") == "function" else tool.get("name")
            if tool.get("type") != "web_search" and not TOOL_NAME.match(str(name)):
                raise bad(f"Invalid tool name {name!r}")
        if anthropic:
            if any(message.get("role") not in ("user", "assistant") for message in messages):
                raise bad("messages: role must be user or assistant")
        else:
            if isinstance(body.get("n"), int) and body["n"] > 1:
                raise bad("n must be 1")
            if (body.get("response_format") or {}).get("type") == "json_schema":
                raise bad("response_format json_schema is not supported")
            if body.get("reasoning_effort") not in (None, "low", "medium", "high"):
                raise bad("reasoning_effort must be low, medium or high")
        kinds = _media_kinds(messages, anthropic, bad)
        for kind in ("image", "audio", "video"):
            if kind in kinds and kind not in catalogue.get_model(model).input_modalities:
                raise HTTPFailure(404, mimo_error(404, param=f"model does not support {kind} input"))

    def _fail_if_asked(self, directives: dict[str, str], anthropic: bool, raw_text: str) -> None:
        if "moderation" in directives:
            raise HTTPFailure(421, mimo_error(421))
        if "error" not in directives:
            return
        status = _int(directives["error"], 500)
        times = _int(directives.get("error-times", ""), 0)
        key = f"{anthropic}:{raw_text}"
        if times and self._failures[key] >= times:
            return
        self._failures[key] += 1
        headers = []
        if status == 429:
            headers.append(("retry-after", directives.get("retry-after") or "1"))
        shape = directives.get("error-body", "mimo")
        if shape == "anthropic":
            error_type = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
            message = ERROR_BODIES.get(status, ERROR_BODIES[500])["message"]
            payload = {"type": "error", "error": {"type": error_type, "message": message}}
        else:
            payload = mimo_error(status)
        raise HTTPFailure(status, payload, headers, sse_prefixed=shape == "data")

    def _plan(self, body: dict[str, Any], anthropic: bool, directives: dict[str, str], thinking: bool) -> Plan:
        # From the body's content, not its bytes: the same request sent by an
        # SDK with its keys in another order gets the very same answer.
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        digest = hashlib.sha256(canonical).hexdigest()
        plan = Plan(
            model=body["model"],
            thinking=thinking,
            response_id=digest[:32],
            prompt_tokens=max(1, len(canonical) // 4),
            keepalive=_float(directives.get("keepalive", ""), self.keepalive_interval),
            pings="pings" in directives,
            speed=_float(directives.get("speed", ""), self.tokens_per_second),
        )
        if not anthropic:
            plan.media_tokens = _media_tokens(body["messages"])
        _write_answer(plan, body, anthropic, directives, digest)
        if "slow-start" in directives:
            plan.silence = _float(directives["slow-start"], 10.0)
        if "cut" in directives:
            plan.cut_after = _int(directives["cut"], len(plan.steps()) // 2)
        if "mid-error" in directives:
            plan.error_after = len(plan.steps()) // 2
            plan.error_status = _int(directives["mid-error"], 500)
        _apply_output_budget(plan, body)
        return plan


# Writing the answer


def _write_answer(plan: Plan, body: dict[str, Any], anthropic: bool, directives: dict[str, str], digest: str) -> None:
    text = DOCUMENT_BLOCK.sub("", _last_human_text(body, anthropic))
    snippet = DIRECTIVE.sub("", text).strip()[:200] or "(nothing)"
    tools = _offered_tools(body, anthropic)
    rounds_done = _tool_rounds_since_human(body, anthropic)
    wants_tools = "tool" in directives or "tools" in directives
    reasoning = f"The person wrote: “{snippet}”. I am the offline fake, so a short, friendly answer will do."
    if wants_tools and rounds_done < _int(directives.get("rounds", ""), 1):
        if tools:
            count = _int(directives.get("tools", ""), 1)
            chosen = [tools[i % len(tools)] for i in range(count)]
            plan.tool_calls = [
                (_call_id(digest, i), name, json.dumps(_example_arguments(schema), ensure_ascii=False))
                for i, (name, schema) in enumerate(chosen)
            ]
            plan.finish = "tool_calls"
            reasoning = f"I should call {', '.join(name for _, name, _ in plan.tool_calls)} to answer this."
            plan.text = ""
        else:
            plan.text = "I was asked to call a tool, but this request offered no tools, so I can only answer in text."
    elif rounds_done:
        results = _tool_results(body, anthropic)
        reasoning = "The tools have answered; I can now sum up their results."
        plan.text = "Here is what the tools returned:\n\n" + "\n".join(f"- {result[:200]}" for result in results)
    elif "help" in directives:
        plan.text = HELP
    elif "markdown" in directives:
        reasoning = MARKDOWN_REASONING
        plan.text = MARKDOWN
    elif "long" in directives:
        plan.text = _long_text(_int(directives["long"], 1000))
    elif shape := next((name for name in ("code", "table", "list") if name in directives), None):
        plan.text = _block_text(shape, _int(directives[shape], 50))
    elif "search" in directives:
        if not anthropic and any(tool.get("type") == "web_search" for tool in body.get("tools") or []):
            reasoning = "Let me look this up on the web and cite what I find."
            plan.citations = CITATIONS
            plan.text = "According to the first source [1], the answer is 42; the second [2] agrees."
        else:
            plan.text = "Web search was not switched on for this request, so this answer comes from memory."
    elif "html" in directives:
        reasoning = "Testing <script>alert('reasoning')</script> in the reasoning too."
        plan.text = HTML_PAYLOADS
    elif "repetition" in directives:
        plan.text = "Let me explain. " + "This sentence repeats itself. " * 20
        plan.finish = "repetition_truncation"
    elif "filter" in directives:
        plan.text = "I was beginning to answer, and then the output filter stepped in"
        plan.finish = "content_filter"
    else:
        plan.text = (
            f"Hello! This is the offline **fake MiMo** server, answering in "
            f"{'Anthropic' if anthropic else 'OpenAI'} format. You wrote: “{snippet}”.\n\n"
            "Type `[[fake:help]]` to see the scenarios I can play."
        )
    if plan.finish != "tool_calls" and (seen := _what_i_see(body, anthropic)):
        plan.text = f"{seen}\n\n{plan.text}" if plan.text else seen
    if "clock" in directives:
        plan.text = _clock_text(plan.text)
    plan.reasoning = reasoning if plan.thinking else ""


def _call_id(digest: str, index: int) -> str:
    return "call_" + hashlib.sha256(f"{digest}:{index}".encode()).hexdigest()[:24]


def _apply_output_budget(plan: Plan, body: dict[str, Any]) -> None:
    """Cuts the answer at max_tokens / max_completion_tokens, as MiMo does."""
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    if not isinstance(budget, int) or plan.completion_tokens <= budget:
        return
    reasoning = tokens_of(plan.reasoning)
    plan.reasoning = "".join(reasoning[:budget])
    plan.text = "".join(tokens_of(plan.text)[: max(0, budget - len(reasoning))])
    plan.tool_calls = []
    plan.citations = []
    plan.finish = "length"


def _example_arguments(schema: Any) -> Any:
    """Plausible arguments for a JSON schema, so every offered tool can be called."""
    if not isinstance(schema, dict):
        return {}
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    match schema.get("type"):
        case "object":
            return {name: _example_value(name, sub) for name, sub in (schema.get("properties") or {}).items()}
        case "array":
            return [_example_arguments(schema.get("items") or {"type": "string"})]
        case "integer":
            return 3
        case "number":
            return 1.5
        case "boolean":
            return True
        case "string":
            return "example"
    return {}


def _example_value(name: str, schema: Any) -> Any:
    samples = {"city": "Beijing", "location": "Beijing", "query": "MiMo API", "q": "MiMo API", "expression": "6*7"}
    if isinstance(schema, dict) and schema.get("type") == "string" and name in samples and "enum" not in schema:
        return samples[name]
    return _example_arguments(schema)


def _clock_text(text: str) -> str:
    """The same tokens, each word replaced by a clock mark and its number.

    The whitespace stays, so a long answer keeps its paragraphs (and the
    renderer its usual work); plain letters and digits come through markdown
    and HTML escaping unchanged.
    """
    return "".join(f"{CLOCK_MARK}{seq}{piece[len(piece.rstrip()) :]}" for seq, piece in enumerate(tokens_of(text), 1))


def _long_text(count: int) -> str:
    words = "the quick brown fox jumps over a lazy dog while MiMo keeps on talking".split()
    pieces = []
    for i in range(max(1, count)):
        word = words[i % len(words)]
        pieces.append(word + ("\n\n" if i % 60 == 59 else " "))
    return "".join(pieces).rstrip() + "."


def _block_text(shape: str, count: int) -> str:
    """One long block, the kind whose every line a renderer must not redo: code, a table or a list."""
    count = max(1, count)
    if shape == "code":
        lines = [f"def step_{n}(value):\n    return value * {n}  # step {n}\n" for n in range(count)]
        return "Here is the code:\n\n```python\n" + "".join(lines) + "```\n\nThat is all."
    if shape == "table":
        rows = [f"| {n} | **{n * n}** | `{n:x}` |\n" for n in range(count)]
        return "Here is the table:\n\n| n | square | hex |\n|--:|--:|:--|\n" + "".join(rows) + "\nThat is all."
    items = [f"{n}. Item *{n}* of the list, with `code`\n" for n in range(1, count + 1)]
    return "Here is the list:\n\n" + "".join(items) + "\nThat is all."


# Reading the request


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled"):
        return thinking["type"] == "enabled"
    return catalogue.get_model(body["model"]).thinking_default


def _history_lacks_reasoning(body: dict[str, Any], anthropic: bool) -> bool:
    """Whether an assistant turn with tool calls came back without its reasoning (§4.3)."""
    for message in body["messages"]:
        if message.get("role") != "assistant":
            continue
        if anthropic:
            blocks = message.get("content") if isinstance(message.get("content"), list) else []
            has_calls = any(block.get("type") == "tool_use" for block in blocks)
            has_reasoning = any(block.get("type") == "thinking" and block.get("thinking") for block in blocks)
        else:
            has_calls = bool(message.get("tool_calls"))
            has_reasoning = bool(message.get("reasoning_content"))
        if has_calls and not has_reasoning:
            return True
    return False


def _is_human(message: dict[str, Any], anthropic: bool) -> bool:
    if message.get("role") != "user":
        return False
    content = message.get("content")
    if anthropic and isinstance(content, list):
        return any(block.get("type") != "tool_result" for block in content)
    return True


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return "\n".join(texts)
    return ""


def _last_human_text(body: dict[str, Any], anthropic: bool) -> str:
    for message in reversed(body["messages"]):
        if _is_human(message, anthropic):
            return _text_of(message.get("content"))
    return ""


def _directives(text: str) -> dict[str, str]:
    return {name: value or "" for name, value in DIRECTIVE.findall(text)}


def _offered_tools(body: dict[str, Any], anthropic: bool) -> list[tuple[str, Any]]:
    offered = []
    for tool in body.get("tools") or []:
        if anthropic and tool.get("name") and tool.get("type", "custom") == "custom":
            offered.append((tool["name"], tool.get("input_schema") or {}))
        elif not anthropic and tool.get("type") == "function":
            function = tool.get("function") or {}
            offered.append((function.get("name"), function.get("parameters") or {}))
    return offered


def _since_last_human(body: dict[str, Any], anthropic: bool) -> list[dict[str, Any]]:
    messages = body["messages"]
    for position in range(len(messages) - 1, -1, -1):
        if _is_human(messages[position], anthropic):
            return messages[position + 1 :]
    return messages


def _tool_rounds_since_human(body: dict[str, Any], anthropic: bool) -> int:
    rounds = 0
    for message in _since_last_human(body, anthropic):
        if message.get("role") != "assistant":
            continue
        if anthropic:
            content = message.get("content")
            rounds += isinstance(content, list) and any(block.get("type") == "tool_use" for block in content)
        else:
            rounds += bool(message.get("tool_calls"))
    return rounds


def _tool_results(body: dict[str, Any], anthropic: bool) -> list[str]:
    results = []
    for message in _since_last_human(body, anthropic):
        if not anthropic and message.get("role") == "tool":
            results.append(_text_of(message.get("content")))
        elif anthropic and isinstance(message.get("content"), list):
            blocks = message["content"]
            results += [_text_of(block.get("content")) for block in blocks if block.get("type") == "tool_result"]
    return results


def _media_kinds(messages: list[dict[str, Any]], anthropic: bool, bad) -> set[str]:
    """The kinds of media (image, audio, video) the user messages carry, each part checked as MiMo
    documents it (mimo-api.md §5.3, §6.1): its shape, its format, its data URL, the inline limit."""
    kinds = set()
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                raise bad("every content part must be an object")
            kind = _anthropic_media(part, bad) if anthropic else _openai_media(part, bad)
            if kind:
                kinds.add(kind)
    return kinds


# The fake's own token counts for media (mimo-api.md §5.3): an image is a 32-px square a token
# (16-px patches merged 2×2) once its pixels are clamped to MiMo's range; a clip counts as ten
# seconds of audio (≈ 6.25 tokens a second); a video as a flat amount. Tests check they arrive.
FAKE_AUDIO_TOKENS = 63
FAKE_VIDEO_TOKENS = 256


def _media_tokens(messages: list[dict[str, Any]]) -> dict[str, int]:
    """image_tokens, audio_tokens and video_tokens of the user messages' media, as MiMo reports
    them in prompt_tokens_details; nothing when they carry none (MiMo then reports only cached tokens)."""
    counts = {"image_tokens": 0, "audio_tokens": 0, "video_tokens": 0}
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            match part.get("type"):
                case "image_url":
                    width, _, height = _pixel_size(part).partition("×")
                    pixels = int(width) * int(height) if height else 8192
                    counts["image_tokens"] += min(max(pixels, 8192), 8_388_608) // (32 * 32)
                case "input_audio":
                    counts["audio_tokens"] += FAKE_AUDIO_TOKENS
                case "video_url":
                    counts["video_tokens"] += FAKE_VIDEO_TOKENS
    return counts if any(counts.values()) else {}


def _openai_media(part: dict[str, Any], bad) -> str | None:
    match part.get("type"):
        case "text":
            return None
        case "image_url":
            _check_media_url((part.get("image_url") or {}).get("url"), "image", bad)
            return "image"
        case "input_audio":
            _check_media_url((part.get("input_audio") or {}).get("data"), "audio", bad)
            return "audio"
        case "video_url":
            _check_media_url((part.get("video_url") or {}).get("url"), "video", bad)
            _check_range(part, "fps", 0.1, 10, bad)
            if part.get("media_resolution", "default") not in ("default", "max"):
                raise bad("media_resolution must be default or max")
            return "video"
    raise bad(f"Unknown content part type {part.get('type')!r}")


def _anthropic_media(part: dict[str, Any], bad) -> str | None:
    match part.get("type"):
        case "text" | "tool_result":
            return None
        case "image":
            source = part.get("source") or {}
            if source.get("type") == "url":
                _check_media_url(source.get("url"), "image", bad)
            elif source.get("type") == "base64" and source.get("media_type") in MEDIA_TYPES["image"]:
                _check_media_url(f"data:{source['media_type']};base64,{source.get('data')}", "image", bad)
            else:
                raise bad("image source must be base64 (jpeg, png, gif, webp, bmp) or url")
            return "image"
    # No audio or video blocks here (mimo-api.md §6.1).
    raise bad(f"Unknown content block type {part.get('type')!r}")


# The formats MiMo reads (mimo-api.md §5.3), as the MIME types of their data URLs.
MEDIA_TYPES = {
    "image": {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"},
    "audio": {"audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/flac", "audio/mp4", "audio/m4a", "audio/ogg"},
    "video": {"video/mp4", "video/quicktime", "video/x-msvideo", "video/avi", "video/x-ms-wmv"},
}
DATA_URL = re.compile(r"data:([\w/.+-]+);base64,(.*)", re.DOTALL)


def _check_media_url(url: Any, kind: str, bad) -> None:
    if not isinstance(url, str) or not url:
        raise bad(f"{kind}: a URL or a data URL is required")
    if url.startswith("https://") or url.startswith("http://"):
        return
    if len(url) > catalogue.INLINE_MEDIA_BYTES:
        raise bad(f"{kind}: base64 data over 50 MB")
    match = DATA_URL.fullmatch(url)
    if not match or match.group(1) not in MEDIA_TYPES[kind]:
        raise bad(f"{kind}: data URL must be data:{{MIME}};base64,<data> with a supported {kind} format")
    try:
        base64.b64decode(match.group(2), validate=True)
    except ValueError:
        raise bad(f"{kind}: data URL is not valid base64") from None


def _what_i_see(body: dict[str, Any], anthropic: bool) -> str:
    """What the last human message carried, in words: tests check what reached MiMo by this."""
    for message in reversed(body["messages"]):
        if _is_human(message, anthropic):
            break
    else:
        return ""
    content = message.get("content")
    parts = content if isinstance(content, list) else []
    seen = []
    images = [part for part in parts if part.get("type") in ("image", "image_url")]
    if images:
        sizes = ", ".join(_pixel_size(part) for part in images)
        seen.append(f"{_count(len(images), 'image')} ({sizes})")
    if audio := [part for part in parts if part.get("type") == "input_audio"]:
        durations = ", ".join(_duration((part.get("input_audio") or {}).get("data")) for part in audio)
        seen.append(f"{_count(len(audio), 'audio clip')} ({durations})")
    if videos := [part for part in parts if part.get("type") == "video_url"]:
        durations = ", ".join(_duration((part.get("video_url") or {}).get("url")) for part in videos)
        seen.append(f"{_count(len(videos), 'video')} ({durations})")
    documents = DOCUMENT_NAME.findall(_text_of(content))
    if documents:
        seen.append(f"{_count(len(documents), 'document')} ({', '.join(json.loads(name) for name in documents)})")
    return f"I see {', '.join(seen)}." if seen else ""


# The start of a document block in a user turn's text, and a whole one (chat/mimo/wire.py _document_block).
DOCUMENT_NAME = re.compile(r'^<document name=("(?:[^"\\]|\\.)*")>$', re.MULTILINE)
DOCUMENT_BLOCK = re.compile(r'^<document name="(?:[^"\\]|\\.)*">\n.*?\n</document>$\n*', re.MULTILINE | re.DOTALL)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _pixel_size(part: dict[str, Any]) -> str:
    """An inline image's width×height, or "by URL" for one MiMo would fetch."""
    if part.get("type") == "image":
        data = (part.get("source") or {}).get("data")
    else:
        data = DATA_URL.fullmatch(part["image_url"]["url"])
        data = data and data.group(2)
    if not data:
        return "by URL"
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            return f"{image.width}×{image.height}"
    except (OSError, ValueError, Image.DecompressionBombError):
        return "unreadable"


def _duration(data: Any) -> str:
    """An inline clip's length ("2.0 s", read by FFmpeg through PyAV), "by URL" for one MiMo would fetch."""
    if not isinstance(data, str) or data.startswith(("https://", "http://")):
        return "by URL"
    match = DATA_URL.fullmatch(data)
    try:
        with av.open(io.BytesIO(base64.b64decode(match.group(2) if match else data))) as container:
            seconds = container.duration / av.time_base if container.duration else None
    except (av.FFmpegError, ValueError, OSError):
        seconds = None
    return "unreadable" if seconds is None else f"{seconds:.1f} s"


def _check_range(body: dict[str, Any], name: str, low: float, high: float, bad, integer: bool = False) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    wrong_type = not isinstance(value, int) if integer else not isinstance(value, int | float)
    if isinstance(value, bool) or wrong_type or not low <= value <= high:
        raise bad(f"{name} must be between {low} and {high}")


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _float(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        return default


# OpenAI format


def _openai_chunk(plan: Plan, delta: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
    # MiMo sends every delta key in every chunk, null when unused (§9.1).
    full = {"content": None, "role": None, "tool_calls": None}
    if plan.thinking:
        full["reasoning_content"] = None
    full.update(delta or {})
    return _data(_openai_envelope(plan, [{"index": 0, "delta": full, "finish_reason": finish}], None))


def _openai_envelope(plan: Plan, choices: list[Any], usage: Any) -> dict[str, Any]:
    return {
        "id": plan.response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": plan.model,
        "choices": choices,
        "usage": usage,
    }


def _openai_usage(plan: Plan) -> dict[str, Any]:
    usage = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "prompt_tokens_details": {"cached_tokens": 0, **plan.media_tokens},
    }
    if plan.citations:
        usage["web_search_usage"] = {"tool_usage": 1, "page_usage": len(plan.citations)}
    return usage


async def _openai_stream(plan: Plan) -> AsyncIterator[bytes | float]:
    yield _openai_chunk(plan, {"content": "", "role": "assistant"})
    async for item in _silence(plan, KEEPALIVE):
        yield item
    calls = plan.tool_calls
    for count, step in enumerate(plan.steps()):
        if count == plan.cut_after:
            return
        if count == plan.error_after:
            yield _data(mimo_error(plan.error_status))
            return
        match step:
            case ("reasoning", piece):
                yield _openai_chunk(plan, {"reasoning_content": piece})
            case ("citations", citations):
                yield _openai_chunk(plan, {"annotations": citations})
            case ("text", piece):
                yield _openai_chunk(plan, {"content": piece})
            case ("tool_start", index):
                call_id, name, _ = calls[index]
                call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                yield _openai_chunk(plan, {"tool_calls": [call]})
            case ("tool_args", index, piece):
                call = {"index": index, "id": None, "type": "function", "function": {"name": None, "arguments": piece}}
                yield _openai_chunk(plan, {"tool_calls": [call]})
        async for item in _between_tokens(plan, count, KEEPALIVE):
            yield item
    yield _openai_chunk(plan, finish=plan.finish)
    # The usage chunk comes even without stream_options (§9.1).
    yield _data(_openai_envelope(plan, [], _openai_usage(plan)))
    yield b"data: [DONE]\n\n"


def _openai_completion(plan: Plan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text}
    if plan.thinking:
        message["reasoning_content"] = plan.reasoning
    if plan.tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in plan.tool_calls
        ]
    if plan.citations:
        message["annotations"] = plan.citations
        message["error_message"] = None
    return {
        "id": plan.response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [{"index": 0, "finish_reason": plan.finish, "message": message}],
        "usage": _openai_usage(plan),
    }


# Anthropic format


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def _anthropic_stream(plan: Plan) -> AsyncIterator[bytes | float]:
    message = {
        "id": f"msg_{plan.response_id}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # MiMo sends zeros here and the counts in message_delta (§9.2).
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield _event("message_start", {"type": "message_start", "message": message})
    if plan.pings:
        yield PING
    async for item in _silence(plan, PING):
        yield item
    blocks = _AnthropicBlocks(plan)
    for count, step in enumerate(plan.steps()):
        if count == plan.cut_after:
            return
        if count == plan.error_after:
            error_type = ANTHROPIC_ERROR_TYPES.get(plan.error_status, "api_error")
            error = {"type": error_type, "message": "Asked for by [[fake:mid-error]]"}
            yield _event("error", {"type": "error", "error": error})
            return
        for piece in blocks.render(step):
            yield piece
        async for item in _between_tokens(plan, count, PING):
            yield item
    for piece in blocks.close():
        yield piece
    stop_reason = ANTHROPIC_STOP_REASONS.get(plan.finish, plan.finish)
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": plan.completion_tokens},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


class _AnthropicBlocks:
    """Opens and closes content blocks as the pieces of the answer change kind."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.index = -1
        self.current: Any = None

    def render(self, step: tuple[Any, ...]) -> list[bytes]:
        kind = step[0]
        key = ("tool", step[1]) if kind.startswith("tool") else kind
        pieces = [] if key == self.current else [*self.close(), self._open(key)]
        match step:
            case ("reasoning", piece):
                pieces.append(self._delta({"type": "thinking_delta", "thinking": piece}))
            case ("text", piece):
                pieces.append(self._delta({"type": "text_delta", "text": piece}))
            case ("tool_args", _, piece):
                pieces.append(self._delta({"type": "input_json_delta", "partial_json": piece}))
        return pieces

    def _open(self, key: Any) -> bytes:
        self.index += 1
        self.current = key
        if key == "reasoning":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif key == "text":
            block = {"type": "text", "text": ""}
        else:
            call_id, name, _ = self.plan.tool_calls[key[1]]
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return _event("content_block_start", start)

    def close(self) -> list[bytes]:
        if self.current is None:
            return []
        pieces = []
        if self.current == "reasoning":
            # Seen from MiMo: an empty signature just before the block ends (§4.4).
            pieces.append(self._delta({"type": "signature_delta", "signature": ""}))
        pieces.append(_event("content_block_stop", {"type": "content_block_stop", "index": self.index}))
        self.current = None
        return pieces

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})


def _anthropic_message(plan: Plan) -> dict[str, Any]:
    # Text before thinking, as in MiMo's own example (§6.2).
    content: list[dict[str, Any]] = []
    if plan.text:
        content.append({"type": "text", "text": plan.text})
    if plan.thinking:
        content.append({"type": "thinking", "thinking": plan.reasoning, "signature": ""})
    for call_id, name, arguments in plan.tool_calls:
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)})
    return {
        "id": f"msg_{plan.response_id}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": ANTHROPIC_STOP_REASONS.get(plan.finish, plan.finish),
        "usage": {
            "input_tokens": plan.prompt_tokens,
            "output_tokens": plan.completion_tokens,
            "cache_read_input_tokens": 0,
        },
    }


# Pacing


async def _silence(plan: Plan, ping: bytes) -> AsyncIterator[bytes | float]:
    """The slow start: nothing but keep-alive comments for `plan.silence` seconds."""
    waited = 0.0
    while waited < plan.silence:
        pause = min(plan.keepalive or plan.silence, plan.silence - waited)
        yield pause
        waited += pause
        if plan.keepalive:
            yield b": keep-alive\n\n"
            if plan.pings:
                yield ping


def _clock_now() -> str:
    return f"t{time.time_ns() // 1_000_000:013d}n"


async def _clocked(render: AsyncIterator[bytes | float]) -> AsyncIterator[bytes | float]:
    """Stamps the clock marks in each piece just before `_stream` writes it."""
    mark = CLOCK_MARK.encode()
    async for item in render:
        if isinstance(item, bytes) and mark in item:
            item = item.replace(mark, _clock_now().encode())
        yield item


async def _between_tokens(plan: Plan, count: int, ping: bytes) -> AsyncIterator[bytes | float]:
    if plan.speed > 0:
        yield 1.0 / plan.speed
    if plan.pings and count % 10 == 9:
        yield ping


# ASGI plumbing


def _data(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def _read_body(receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return bytes(body)


async def _send_json(send, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await _send_bytes(send, status, body, "application/json", headers)


async def _send_failure(send, failure: HTTPFailure) -> None:
    if failure.sse_prefixed:
        # Seen from MiMo on streaming requests: the error body as one SSE data
        # line, without a space after the colon (§9.1).
        body = b"data:" + json.dumps(failure.payload, ensure_ascii=False).encode()
        await _send_bytes(send, failure.status, body, "text/event-stream", failure.headers)
    else:
        await _send_json(send, failure.status, failure.payload, failure.headers)


async def _send_bytes(
    send, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
) -> None:
    raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.encode(), value.encode()) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(send, receive, render: AsyncIterator[bytes | float]) -> None:
    """Writes an event stream, pausing where the render says, until it ends or the client leaves."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
        }
    )
    gone = asyncio.Event()

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch_disconnect())
    try:
        async for item in render:
            if gone.is_set():
                return
            if isinstance(item, float):
                await asyncio.sleep(item)
            elif item:
                await send({"type": "http.response.body", "body": item, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()


async def _serve_lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# Canned texts

HELP = """The fake MiMo server plays a scenario when your message contains a directive:

| directive | what happens |
|---|---|
| `[[fake:markdown]]` | reasoning, then headings, a table, code and maths |
| `[[fake:long=2000]]` | a long answer of 2000 tokens |
| `[[fake:tool]]`, `[[fake:tools=3]]`, `[[fake:rounds=2]]` | tool calls |
| `[[fake:search]]` | web-search citations |
| `[[fake:html]]` | output full of HTML and script payloads |
| `[[fake:cut]]` | the stream stops half-way |
| `[[fake:mid-error]]` | an error after some output |
| `[[fake:error=429]]` | an error before any output |
| `[[fake:moderation]]`, `[[fake:filter]]` | the content filter, up front or mid-answer |
| `[[fake:repetition]]` | stopped for repeating itself |
| `[[fake:slow-start=10]]` | ten seconds of silence first |
| `[[fake:speed=5]]` | five tokens a second |
"""

MARKDOWN_REASONING = (
    "The person wants to see formatting. I will use a heading, a list, a table, "
    "a code block and some maths, so every part of the renderer gets exercised."
)

MARKDOWN = r"""# A formatted answer

Here is **bold**, *italic*, `inline code` and a [link](https://example.com).

1. First item
2. Second item
   - a nested point

| Model | Context | Thinking |
|---|---:|:---:|
| mimo-v2.5-pro | 1 M | on |
| mimo-v2-flash | 256 K | off |

```python
def fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```

Inline maths $e^{i\pi} + 1 = 0$ and a display formula:

$$\int_0^1 x^2 \, dx = \frac{1}{3}$$

> A quotation, to finish.
"""

HTML_PAYLOADS = """Here are some things a renderer must not run:

<script>alert('xss')</script>
<img src=x onerror="alert('img')">
<a href="javascript:alert('link')">click me</a>
[markdown link](javascript:alert('md'))
[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
<iframe src="https://example.com"></iframe>
<svg onload="alert('svg')"><circle r="5"/></svg>
<style>body { display: none }</style>
<div style="background:url(javascript:alert('css'))">styled</div>
<form action="https://example.com"><input name="q"></form>
&lt;escaped&gt; &amp; "quotes" 'apostrophes'
"""

CITATIONS = [
    {
        "type": "url_citation",
        "url": "https://example.com/mimo",
        "title": "MiMo answers everything",
        "summary": "A page saying the answer is 42.",
        "site_name": "Example",
        "publish_time": "2026-05-01",
        "logo_url": "https://example.com/logo.png",
    },
    {
        "type": "url_citation",
        "url": "https://example.org/second",
        "title": "A second opinion",
        "summary": "It agrees: 42.",
        "site_name": "Example Org",
        "publish_time": "2026-05-02",
        "logo_url": "",
    },
]


application = FakeMimo.from_environment()
