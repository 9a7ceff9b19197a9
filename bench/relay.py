"""The floor under the app: an ASGI app that relays MiMo's stream to a websocket and does nothing else.

`stream_bench.py --app relay` serves this under daphne, with the same flags,
in place of mimoweb, and times it with the same browsers. It reads the answer
the way the app does (`chat.mimo.stream_turn` on chat.mimo's shared client:
the same transport, parser and decoder) and sends what arrived, HTML-escaped,
at the app's top frame rate (20 a second), then one frame that ends the
answer. No Django, no Channels, no rendering, no database, no channel layer:
what one daphne process costs to read N streams and write their frames is the
floor under anything the app can do, and its largest N with p99 ≤ 250 ms is
the most that one process could carry. See bench/README.md.
"""

import asyncio
import html
import json
import os

from chat import mimo

# The app's frame interval when the process is not busy (chat/generation.py); another with
# MIMOWEB_RELAY_FRAME_SECONDS, such as 0.1 to match the app's when it is.
FRAME_SECONDS = float(os.environ.get("MIMOWEB_RELAY_FRAME_SECONDS", "0.05"))
MODEL = "mimo-v2.5-pro"


def endpoint():
    return mimo.Endpoint(os.environ["MIMOWEB_RELAY_UPSTREAM"], "sk-bench-key")


async def relay(text, send):
    """Streams one answer to one socket: escaped deltas at most every FRAME_SECONDS, then the end."""
    request = mimo.ChatRequest(model=MODEL, turns=[mimo.UserTurn(text)], thinking=False)
    pending, answer = [], []
    ended = asyncio.Event()

    async def flush():
        delta = "".join(pending)
        pending.clear()
        answer.append(delta)
        await send({"type": "websocket.send", "text": f'<div hx-swap-oob="beforeend:#tail">{html.escape(delta)}</div>'})

    async def frames():
        while not ended.is_set():
            await asyncio.sleep(FRAME_SECONDS)
            if pending:
                await flush()

    sender = asyncio.create_task(frames())
    status = "complete"
    async for event in mimo.stream_turn(endpoint(), request):
        if isinstance(event, mimo.TextDelta):
            pending.append(event.text)
        elif isinstance(event, mimo.ErrorEvent):
            status = "error"
    ended.set()
    await sender
    if pending:
        await flush()
    # What stream_bench.py takes for the end of an answer, as the app's last frame says it.
    article = f'<article class="message message-assistant" data-status="{status}">{html.escape("".join(answer))}</article>'
    await send({"type": "websocket.send", "text": article})


async def application(scope, receive, send):
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    answers = set()
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            asked = json.loads(message["text"])
            if asked.get("action") == "send":
                answers.add(task := asyncio.create_task(relay(asked["text"], send)))
                task.add_done_callback(answers.discard)
        elif message["type"] == "websocket.disconnect":
            for task in answers:
                task.cancel()
            return
