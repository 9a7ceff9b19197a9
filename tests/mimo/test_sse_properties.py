"""Property: however the bytes of a recorded stream are split into chunks, the same events come out."""

from itertools import pairwise

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.mimo import ApiFormat, ChatRequest, FunctionTool, StreamDecoder, UserTurn, WebSearch, build_body

from .conftest import GOOD_KEY

TOOLS = [FunctionTool("get_weather", "Weather.", {"type": "object", "properties": {"city": {"type": "string"}}})]
MESSAGES = [
    "Hello 你好 👋",
    "[[fake:markdown]] [[fake:pings]]",
    "[[fake:tools=2]]",
    "[[fake:search]]",
    "[[fake:html]]",
    "[[fake:cut=9]]",
    "[[fake:mid-error=503]]",
    "[[fake:slow-start=0.3]] [[fake:keepalive=0.1]] [[fake:pings]]",
]


@pytest.fixture(scope="module")
def recorded_streams(fake_url):
    """Raw response bytes from the fake server, for every message in both formats."""
    streams = []
    for api_format in ApiFormat:
        path = "/anthropic/v1/messages" if api_format is ApiFormat.ANTHROPIC else "/v1/chat/completions"
        for text in MESSAGES:
            body = build_body(
                ChatRequest(model="mimo-v2.5", turns=[UserTurn(text)], tools=TOOLS, web_search=WebSearch()), api_format
            )
            response = httpx.post(
                fake_url + path, json=body, headers={"authorization": f"Bearer {GOOD_KEY}"}, timeout=30
            )
            streams.append((api_format, response.content))
    return streams


def decode(api_format, chunks):
    decoder = StreamDecoder(api_format)
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(raw)]
    return [raw[start:end] for start, end in pairwise(points)]


# The same examples on every run: a failure here always reproduces.
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_random_chunk_boundaries_give_the_same_events(recorded_streams, data):
    api_format, raw = data.draw(st.sampled_from(recorded_streams))
    if data.draw(st.booleans()):
        # JSON data never holds a raw newline, so every "\n" is a line end.
        raw = raw.replace(b"\n", b"\r\n")
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=60))
    assert decode(api_format, split_at(raw, cuts)) == decode(api_format, [raw])


def test_recorded_streams_decode_into_events(recorded_streams):
    for api_format, raw in recorded_streams:
        assert decode(api_format, [raw]), raw[:200]


def test_crlf_stream_reads_like_the_lf_one(recorded_streams):
    for api_format, raw in recorded_streams:
        assert decode(api_format, [raw.replace(b"\n", b"\r\n")]) == decode(api_format, [raw])
        assert decode(api_format, [raw.replace(b"\n", b"\r")]) == decode(api_format, [raw])
