"""The fake's `clock` directive: text tokens carry the time they were written and their number."""

import re
import time

import httpx

from chat import render
from chat.mimo import ChatRequest, TextDelta, UserTurn, stream_turn

from .conftest import GOOD_KEY

STAMP = re.compile(r"t(\d{13})n(\d+)")


def now_ms():
    return time.time_ns() // 1_000_000


async def text_deltas(endpoint, text, **request):
    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn(text)], **request)
    return [event.text async for event in stream_turn(endpoint, chat) if isinstance(event, TextDelta)]


async def test_every_text_token_carries_its_number_and_a_plausible_time(endpoint):
    before = now_ms()
    deltas = await text_deltas(endpoint, "[[fake:clock]] [[fake:long=100]]", thinking=False)
    after = now_ms()
    stamps = [STAMP.fullmatch(delta.strip()) for delta in deltas]
    assert all(stamps), deltas
    assert [int(stamp[2]) for stamp in stamps] == list(range(1, 101))
    times = [int(stamp[1]) for stamp in stamps]
    assert times == sorted(times)
    assert before <= times[0] and times[-1] <= after


async def test_tokens_are_stamped_as_they_are_written_not_when_the_answer_is_planned(endpoint):
    deltas = await text_deltas(endpoint, "[[fake:clock]] [[fake:long=6]] [[fake:speed=20]]", thinking=False)
    times = [int(STAMP.search(delta)[1]) for delta in deltas]
    # 20 tokens a second: 50 ms between tokens, less a little for timer slack.
    assert all(later - earlier >= 40 for earlier, later in zip(times, times[1:])), times


async def test_reasoning_is_not_stamped(endpoint):
    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("[[fake:clock]] [[fake:long=5]]")], thinking=True)
    events = [event async for event in stream_turn(endpoint, chat)]
    reasoning = "".join(getattr(event, "text", "") for event in events if not isinstance(event, TextDelta))
    assert reasoning and not STAMP.search(reasoning)
    assert len(STAMP.findall("".join(event.text for event in events if isinstance(event, TextDelta)))) == 5


async def test_a_long_answer_keeps_its_paragraphs_and_the_stamps_survive_rendering(endpoint):
    deltas = await text_deltas(endpoint, "[[fake:clock]] [[fake:long=130]]", thinking=False)
    text = "".join(deltas)
    assert text.count("\n\n") == 2  # long=N breaks a paragraph every 60 tokens
    assert STAMP.findall(render.render_markdown(text)) == STAMP.findall(text)


def test_a_non_streamed_answer_is_stamped_too(fake_url):
    body = {"model": "mimo-v2.5-pro", "messages": [{"role": "user", "content": "[[fake:clock]] [[fake:long=3]]"}]}
    before = now_ms()
    response = httpx.post(f"{fake_url}/v1/chat/completions", json=body, headers={"api-key": GOOD_KEY}, timeout=30)
    stamps = STAMP.findall(response.json()["choices"][0]["message"]["content"])
    assert [int(seq) for _, seq in stamps] == [1, 2, 3]
    assert all(before <= int(ms) <= now_ms() for ms, _ in stamps)
