"""How a socket puts in order the frames another process sends through the channel layer."""

import pytest

from chat.consumers import ConversationConsumer
from chat.generation import Watcher, process_id


@pytest.fixture
def socket(monkeypatch):
    consumer = ConversationConsumer()
    consumer.watcher = Watcher("c0ffee00-0000-0000-0000-000000000000", "en", "")
    consumer.remote_generation, consumer.remote_seq, consumer.remote_waiting = None, None, []
    consumer.snapshots_asked = 0

    async def ask_for_snapshot():
        consumer.snapshots_asked += 1

    monkeypatch.setattr(consumer, "ask_for_snapshot", ask_for_snapshot)
    return consumer


def frame(seq, *, snapshot=False, generation="g1"):
    return {"origin": "elsewhere", "generation": generation, "seq": seq, "snapshot": snapshot, "html": {"en": f"<{seq}>"}}


def delivered(socket):
    out = []
    while not socket.watcher.outbox.empty():
        out.append(socket.watcher.outbox.get_nowait())
    return out


async def test_frames_in_order_are_passed_on(socket):
    for f in (frame(1, snapshot=True), frame(2), frame(3)):
        await socket.generation_frame(f)
    assert delivered(socket) == ["<1>", "<2>", "<3>"]


async def test_a_duplicate_is_dropped(socket):
    for f in (frame(1, snapshot=True), frame(2), frame(2), frame(3)):
        await socket.generation_frame(f)
    assert delivered(socket) == ["<1>", "<2>", "<3>"]


async def test_a_gap_holds_later_frames_and_asks_for_a_snapshot(socket):
    for f in (frame(1, snapshot=True), frame(2), frame(4), frame(5)):
        await socket.generation_frame(f)
    assert delivered(socket) == ["<1>", "<2>"]  # 3 was lost: 4 and 5 wait
    assert socket.snapshots_asked >= 1
    await socket.generation_frame(frame(4, snapshot=True))  # the whole message as of 4
    assert delivered(socket) == ["<4>", "<5>"]


async def test_a_socket_that_joins_mid_answer_waits_for_its_snapshot(socket):
    await socket.generation_frame(frame(7))
    assert delivered(socket) == []
    assert socket.snapshots_asked == 1
    await socket.generation_frame(frame(6, snapshot=True))
    await socket.generation_frame(frame(8))
    assert delivered(socket) == ["<6>", "<7>", "<8>"]


async def test_an_older_snapshot_changes_nothing(socket):
    for f in (frame(1, snapshot=True), frame(2), frame(3), frame(2, snapshot=True), frame(4)):
        await socket.generation_frame(f)
    assert delivered(socket) == ["<1>", "<2>", "<3>", "<4>"]


async def test_the_next_answer_counts_from_one_again(socket):
    for f in (frame(1, snapshot=True), frame(2), frame(1, snapshot=True, generation="g2"), frame(2, generation="g2")):
        await socket.generation_frame(f)
    assert delivered(socket) == ["<1>", "<2>", "<1>", "<2>"]


async def test_the_next_answer_is_followed_even_when_its_first_frame_was_lost(socket):
    for f in (frame(1, snapshot=True), frame(2), frame(2, generation="g2")):
        await socket.generation_frame(f)
    assert delivered(socket) == ["<1>", "<2>"]
    assert socket.snapshots_asked == 2  # for g1's frames, and for g2's
    await socket.generation_frame(frame(3, snapshot=True, generation="g2"))
    assert delivered(socket) == ["<3>"]


async def test_frames_from_this_process_are_ignored(socket):
    await socket.generation_frame(frame(1, snapshot=True) | {"origin": process_id()})
    assert delivered(socket) == []


async def test_a_socket_asks_for_an_answer_it_hears_of_so_that_its_frames_follow(socket):
    await socket.generation_frame(frame(1, snapshot=True))
    assert socket.snapshots_asked == 1
    await socket.generation_frame(frame(2))
    assert socket.snapshots_asked == 1
