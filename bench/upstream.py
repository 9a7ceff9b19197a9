"""A MiMo stand-in for the benches that is never the limit: raw asyncio on uvloop, one timer per phase bucket.

    .venv/bin/python bench/upstream.py --port 8001

It answers `POST /v1/chat/completions` as MiMo does in OpenAI format
(mimo-api.md §9.1): with `stream: true`, `data: {...}` chunks whose
`choices[0].delta.content` carry the text, a chunk with the finish reason, a
usage chunk with no choices, then `data: [DONE]`, over HTTP/1.1 chunked
encoding on keep-alive connections; without `stream`, one JSON completion.
`GET /v1/models` lists one model. Any `Authorization: Bearer` or `api-key` key
is accepted; none gets 401. Nothing else of MiMo is imitated: that is what
`chat.mimo.fake` is for. This one exists because the fake (a daphne app that
sleeps once per token per stream) saturates its own core near 200 streams.

What it answers is chosen by a directive in the last user message:

    [[bench:case=code tokens=600 rate=100 per=2]]

  case    prose (default): sentences of 12 tokens, paragraphs of `per` (60)
                           tokens with a blank line between them;
          code:  one ```python fenced block, a line per `per` (2) tokens,
                 `    value_<stamp> = compute(<stamp>)`;
          table: a markdown table, a row per `per` (2) tokens, one per cell;
          list:  `- item …` items of `per` (30) tokens, no blank lines.
  tokens  how many text chunks (default 100); max_completion_tokens or
          max_tokens cut it short with finish reason "length", as MiMo does.
  rate    chunks per second (default 50); 0 sends them all at once.
  per     as above, per case.

Every text chunk carries exactly one clock token, `t<unix ms>n<seq>` (the
bench's STAMP), the time taken just before the chunk is written, so a reader
can time every chunk. The text is fixed by the directive but for the stamps:
`skeleton_text()` gives it with each stamp written `n<seq>`, which is what
bench/stream_bench.py's `skeleton()` makes of a saved answer.

Pacing: streams are grouped by rate and by the phase of their start within
one tick (PHASES buckets per rate); each bucket is one task that wakes once a
tick and writes to each of its streams every chunk that has come due, in one
write. A thousand streams cost a thousand writes per tick and no timers of
their own, and the buckets' phases spread the writes over the tick.
"""

import argparse
import asyncio
import functools
import hashlib
import json
import math
import re
import signal
import sys
import time
from dataclasses import dataclass

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
MODEL = "mimo-v2.5-pro"

CASES = ("prose", "code", "table", "list")
DEFAULT_PER = {"prose": 60, "code": 2, "table": 2, "list": 30}
DIRECTIVE = re.compile(r"\[\[bench:([^\]]*)\]\]")

# Buckets per rate, and the shortest tick: above 200 chunks a second a tick
# writes several chunks to each stream instead of waking more often.
PHASES = 4
SHORTEST_TICK = 0.005


# --- What an answer says ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    case: str = "prose"
    tokens: int = 100
    rate: float = 50
    per: int = 0  # 0: the case's default

    @property
    def group(self):
        return self.per or DEFAULT_PER[self.case]


def directive(case="prose", tokens=100, rate=50, per=0):
    """The text that asks for an answer, for a user message."""
    text = f"[[bench:case={case} tokens={tokens} rate={rate:g}"
    return text + (f" per={per}]]" if per else "]]")


def parse(text):
    """The answer a user message asks for; malformed values fall back to the defaults."""
    match = DIRECTIVE.search(text or "")
    fields = dict(part.split("=", 1) for part in match[1].split() if "=" in part) if match else {}
    answer = Answer()
    case = fields.get("case", answer.case)
    try:
        return Answer(
            case=case if case in CASES else answer.case,
            tokens=max(1, int(fields.get("tokens", answer.tokens))),
            rate=max(0.0, float(fields.get("rate", answer.rate))),
            per=max(0, int(fields.get("per", 0))),
        )
    except ValueError:
        return answer


@functools.lru_cache(maxsize=64)
def pieces(answer):
    """(before, after) of every chunk's stamp: the chunk is before + stamp + after."""
    count, group = answer.tokens, answer.group
    built = [_piece(answer.case, i, group) for i in range(count)]
    # The answer ends without trailing whitespace (and with its fence closed),
    # so what is saved is exactly what was sent.
    before, after = built[-1]
    position = count - 1
    match answer.case:
        case "prose":
            after = "."
        case "code":
            first_of_line = position % group == 0
            after = (" = compute()" if first_of_line else ")") + "\n```"
        case "table":
            after = " |"
        case "list":
            after = ""
    built[-1] = (before, after)
    if answer.case == "code":
        built[0] = ("```python\ndef bench():\n" + built[0][0], built[0][1])
    if answer.case == "table":
        header = "| " + " | ".join(f"c{column}" for column in range(1, group + 1)) + " |\n" + "|---" * group + "|\n"
        built[0] = (header + built[0][0], built[0][1])
    return tuple(built)


def _piece(case, index, group):
    position, last = index % group, index % group == group - 1
    match case:
        case "prose":
            if last:
                return "", ".\n\n"
            return "", ". " if index % 12 == 11 else " "
        case "code":
            if group == 1:
                return "    value_", " = compute()\n"
            if position == 0:
                return "    value_", " = compute("
            return "", ")\n" if last else ", "
        case "table":
            return ("| " if position == 0 else ""), (" |\n" if last else " | ")
        case "list":
            return ("- item " if position == 0 else ""), ("\n" if last else " ")


def stamp(seq, ms):
    return f"t{ms:013d}n{seq}"


def skeleton_text(answer, tokens=None):
    """The answer's text with each stamp written n<seq>: what every saved answer must come to."""
    chosen = pieces(answer)[: tokens or answer.tokens]
    return "".join(f"{before}n{seq}{after}" for seq, (before, after) in enumerate(chosen, 1))


def full_text(answer, ms):
    return "".join(f"{before}{stamp(seq, ms)}{after}" for seq, (before, after) in enumerate(pieces(answer), 1))


@functools.lru_cache(maxsize=64)
def wire_pieces(answer):
    """Each chunk's content as JSON string text, around the 13 digits of its time."""
    def escape(text):
        return json.dumps(text, ensure_ascii=False)[1:-1]

    return tuple(
        (escape(before) + "t", f"n{seq}" + escape(after)) for seq, (before, after) in enumerate(pieces(answer), 1)
    )


# --- One streamed answer ------------------------------------------------------------------


def chunked(data):
    return b"%x\r\n%b\r\n" % (len(data), data)


class Stream:
    """One answer being written to one connection; its bucket calls `advance` every tick."""

    def __init__(self, transport, answer, budget, thinking, response_id):
        self.transport = transport
        self.answer = answer
        self.total = min(answer.tokens, budget or answer.tokens)
        self.wire = wire_pieces(answer)
        self.sent = 0
        self.done = asyncio.get_running_loop().create_future()
        envelope = json.dumps(
            {"id": response_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL},
            separators=(",", ":"),
        )[:-1]
        self.head = f'data: {envelope},"choices":[{{"index":0,"delta":{{"content":"'
        empty_keys = ',"role":null,"tool_calls":null' + (',"reasoning_content":null' if thinking else "")
        self.tail = f'"{empty_keys}}},"finish_reason":null}}],"usage":null}}\n\n'
        finish = "stop" if self.total == answer.tokens else "length"
        usage = {
            "prompt_tokens": 20,
            "completion_tokens": self.total,
            "total_tokens": 20 + self.total,
            "completion_tokens_details": {"reasoning_tokens": 0},
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        null_delta = '{"content":null,"role":null,"tool_calls":null' + (
            ',"reasoning_content":null}' if thinking else "}"
        )
        self.ending = (
            f'data: {envelope},"choices":[{{"index":0,"delta":{null_delta},"finish_reason":"{finish}"}}],'
            f'"usage":null}}\n\n'
            f'data: {envelope},"choices":[],"usage":{json.dumps(usage, separators=(",", ":"))}}}\n\n'
            "data: [DONE]\n\n"
        )
        first = '{"content":"","role":"assistant","tool_calls":null' + (
            ',"reasoning_content":null}' if thinking else "}"
        )
        transport.write(chunked(f'data: {envelope},"choices":[{{"index":0,"delta":{first},"finish_reason":null}}],'
                                f'"usage":null}}\n\n'.encode()))  # fmt: skip

    def advance(self, due):
        """Writes the chunks up to number `due`; True once the answer is over (or its reader gone)."""
        if self.transport.is_closing():
            self.end()
            return True
        due = min(due, self.total)
        if due <= self.sent:
            return False
        # Stamped here, just before the write: a reader's lag is measured from this moment.
        ms = f"{time.time_ns() // 1_000_000:013d}"
        head, tail = self.head, self.tail
        parts = [f"{head}{before}{ms}{after}{tail}" for before, after in self.wire[self.sent : due]]
        self.sent = due
        finished = due == self.total
        if finished:
            parts.append(self.ending)
        self.transport.write(chunked("".join(parts).encode()) + (b"0\r\n\r\n" if finished else b""))
        if finished:
            self.end()
        return finished

    def end(self):
        if not self.done.done():
            self.done.set_result(None)


class Pacer:
    """The buckets: one task per (rate, phase) writing to its streams once a tick."""

    def __init__(self):
        self.buckets = {}  # (rate, phase) → {stream: first tick number}
        self.streams_served = 0

    def add(self, stream):
        self.streams_served += 1
        rate = stream.answer.rate
        if rate <= 0:
            stream.advance(stream.total)
            return
        period = max(1 / rate, SHORTEST_TICK)
        # Slots are period / PHASES apart; slot s belongs to phase s % PHASES, so
        # a stream waits at most a quarter tick for its first chunk.
        slot = math.floor(asyncio.get_running_loop().time() / (period / PHASES)) + 1
        key = (rate, slot % PHASES)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = {}
            asyncio.get_running_loop().create_task(self.tick(key, period, slot // PHASES))
        bucket[stream] = slot // PHASES

    async def tick(self, key, period, tick):
        rate, phase = key
        offset = phase * period / PHASES
        per_tick = rate * period  # 1, unless the tick was made longer than 1 / rate
        loop = asyncio.get_running_loop()
        bucket = self.buckets[key]
        while bucket:
            await asyncio.sleep(max(0.0, tick * period + offset - loop.time()))
            # Late (a busy machine): catch up in this one write rather than tick after tick.
            tick = max(tick, math.floor((loop.time() - offset) / period))
            for stream, first in list(bucket.items()):
                if stream.advance(math.floor((tick - first + 1) * per_tick + 1e-9)):
                    del bucket[stream]
            tick += 1
        del self.buckets[key]


# --- HTTP/1.1, by hand --------------------------------------------------------------------


def response_head(status, content_type, extra=""):
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
    return f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n{extra}".encode()


def json_response(status, payload):
    body = json.dumps(payload, ensure_ascii=False).encode()
    return response_head(status, "application/json", f"content-length: {len(body)}\r\n\r\n") + body


def error_response(status, message):
    return json_response(status, {"error": {"code": str(status), "message": message, "param": "", "type": ""}})


def last_user_text(messages):
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content if isinstance(content, str) else ""
    return ""


class Upstream:
    def __init__(self):
        self.pacer = Pacer()
        self.requests = 0

    async def serve(self, reader, writer):
        """One connection: requests one after the other (keep-alive), until the client closes it."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
                await self.respond(writer, method, target.split("?", 1)[0], headers, body)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # the client went away, or spoke something else than HTTP/1.1: drop it
        finally:
            writer.close()

    async def respond(self, writer, method, path, headers, body):
        self.requests += 1
        authorization = headers.get("authorization", "")
        key = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        if not (key or headers.get("api-key") or headers.get("x-api-key")):
            writer.write(error_response(401, "Invalid API Key"))
        elif method == "GET" and path == MODELS_PATH:
            writer.write(json_response(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}))
        elif method == "POST" and path == CHAT_PATH:
            try:
                request = json.loads(body)
                messages = request["messages"]
            except (ValueError, KeyError, TypeError):
                writer.write(error_response(400, "Param Incorrect"))
                return
            answer = parse(last_user_text(messages))
            budget = request.get("max_completion_tokens") or request.get("max_tokens")
            budget = budget if isinstance(budget, int) and budget > 0 else None
            thinking = (request.get("thinking") or {}).get("type") == "enabled"
            response_id = hashlib.md5(body).hexdigest()
            if request.get("stream") is True:
                writer.write(response_head(200, "text/event-stream", "transfer-encoding: chunked\r\n\r\n"))
                stream = Stream(writer.transport, answer, budget, thinking, response_id)
                self.pacer.add(stream)
                await stream.done
            else:
                writer.write(json_response(200, completion(answer, budget, response_id)))
        else:
            writer.write(error_response(404, "Not Found"))


def completion(answer, budget, response_id):
    total = min(answer.tokens, budget or answer.tokens)
    ms = time.time_ns() // 1_000_000
    text = "".join(f"{b}{stamp(seq, ms)}{a}" for seq, (b, a) in enumerate(pieces(answer)[:total], 1))
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop" if total == answer.tokens else "length",
                "message": {"role": "assistant", "content": text},
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": total, "total_tokens": 20 + total},
    }


async def main_async(host, port):
    upstream = Upstream()
    # A deep backlog: hundreds of readers connect at the same moment.
    server = await asyncio.start_server(upstream.serve, host, port, backlog=4096, limit=2**20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"bench upstream listening on {host}:{port} ({type(loop).__module__})", flush=True)
    async with server:
        await stop.wait()
    print(f"bench upstream: {upstream.requests} requests, {upstream.pacer.streams_served} streams", file=sys.stderr)


def run(coroutine):
    """On uvloop when it is installed; plain asyncio otherwise, with a warning."""
    try:
        import uvloop
    except ImportError:
        print("warning: uvloop is not installed; the bench upstream runs on plain asyncio", file=sys.stderr)
        return asyncio.run(coroutine)
    return asyncio.run(coroutine, loop_factory=uvloop.new_event_loop)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    run(main_async(args.host, args.port))


if __name__ == "__main__":
    main()
