import pytest

from chat.mimo.sse import EventTooLarge, ServerSentEvent, SSEParser


def parse(*chunks: bytes, close: bool = True) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    if close:
        events += parser.close()
    return events


def test_lf_crlf_and_cr_line_ends_all_end_lines():
    for line_end in (b"\n", b"\r\n", b"\r"):
        stream = b"data: one" + line_end + line_end + b"data: two" + line_end + line_end
        assert [event.data for event in parse(stream)] == ["one", "two"]


def test_crlf_split_between_two_chunks_is_one_line_end():
    events = parse(b"data: one\r", b"\n\r", b"\ndata: two\r\n\r\n")
    assert [event.data for event in events] == ["one", "two"]


def test_comment_lines_are_ignored():
    assert parse(b": keep-alive\n\n: ping\ndata: x\n\n") == [ServerSentEvent("x")]


def test_several_data_lines_join_with_newlines():
    assert parse(b"data: a\ndata:b\ndata:  c\n\n") == [ServerSentEvent("a\nb\n c")]


def test_event_field_names_the_event():
    assert parse(b"event: ping\ndata: {}\n\n") == [ServerSentEvent("{}", event="ping")]


def test_event_without_data_is_not_dispatched():
    assert parse(b"event: ping\n\ndata: x\n\n") == [ServerSentEvent("x")]


def test_byte_order_mark_at_the_start_is_skipped_even_when_split():
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [ServerSentEvent("x")]


def test_multibyte_character_split_between_chunks_survives():
    encoded = "data: 你好\n\n".encode()
    assert parse(encoded[:8], encoded[8:]) == [ServerSentEvent("你好")]


def test_last_event_without_blank_line_is_dispatched_on_close():
    assert parse(b"data: [DONE]\n") == [ServerSentEvent("[DONE]")]


def test_half_line_left_at_close_is_dropped():
    assert parse(b'data: {"a":1}\n\ndata: {"cho') == [ServerSentEvent('{"a":1}')]


def test_an_event_larger_than_the_cap_is_refused():
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"x" * 60 + b"\n")
        parser.feed(b"data: " + b"x" * 60 + b"\n")


def test_a_line_larger_than_the_cap_is_refused_before_it_ends():
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"x" * 200)


def test_events_within_the_cap_keep_flowing_after_a_big_one():
    parser = SSEParser(max_event_bytes=100)
    for _ in range(5):
        assert parser.feed(b"data: " + b"x" * 80 + b"\n\n") == [ServerSentEvent("x" * 80)]
