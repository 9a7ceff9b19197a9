"""What one process does for all of its streams: save their progress together, beat, hear Stops."""

import asyncio
import os
import time

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import generation, mimo, processes
from chat.models import Citation, Conversation, Message, ToolCall

pytestmark = pytest.mark.django_db


@pytest.fixture
def streams(bob, acme, acme_key):
    """Two answers streaming in two conversations, each with its generation."""
    running = []
    for _ in range(2):
        conversation = Conversation.objects.create(owner=bob, team=acme)
        message = Message.objects.create(
            conversation=conversation, role="assistant", status="streaming", created_at=timezone.now()
        )
        running.append(generation.Generation(conversation, message, acme_key, ""))
    return running


def test_every_stream_with_news_is_saved_in_one_statement(streams):
    for number, stream in enumerate(streams):
        stream.message.content = f"answer {number}"
        stream.message.reasoning_content = f"thought {number}"
        stream.unsaved = True
    rows = [stream.progress(time.monotonic()) for stream in streams]
    with CaptureQueriesContext(connection) as queries:
        generation.save_progress(rows)
    updates = [query["sql"] for query in queries.captured_queries if "UPDATE" in query["sql"]]
    assert len(updates) == 1 and updates[0].startswith("2 times: UPDATE")  # Django's log of an executemany
    for number, stream in enumerate(streams):
        saved = Message.objects.get(pk=stream.message.pk)
        assert (saved.content, saved.reasoning_content) == (f"answer {number}", f"thought {number}")
        assert saved.heartbeat_at is not None


def test_every_round_asks_with_the_settings_the_answer_started_with_and_the_history_as_it_is(streams):
    """Its message records them (create_turn): a tool round does not change model or prompt halfway
    because the conversation's row changed meanwhile, and no round reads that row again."""
    stream = streams[0]
    conversation = stream.conversation
    conversation.system_prompt, conversation.temperature = "Answer in French.", 0.4
    Message.objects.create(conversation=conversation, role="user", content="Bonjour", created_at=timezone.now())
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt="Changed since", temperature=1.5)
    with CaptureQueriesContext(connection) as queries:
        request = stream.build_request.__wrapped__(stream)  # what runs on the database thread
    assert (request.system, request.temperature) == ("Answer in French.", 0.4)
    assert [turn.text for turn in request.turns] == ["Bonjour"]
    assert not [query for query in queries.captured_queries if 'FROM "chat_conversation"' in query["sql"]]


def test_the_first_token_time_is_saved_with_the_progress_not_on_its_own(streams):
    stream = streams[0]
    with CaptureQueriesContext(connection) as queries:
        stream.mark_first_token()  # the panel folds at once; nothing waits on the database
    assert queries.captured_queries == []
    generation.save_progress([stream.progress(time.monotonic() + generation.HEARTBEAT_INTERVAL)])
    assert Message.objects.get(pk=stream.message.pk).first_token_at == stream.message.first_token_at


def test_a_stream_without_news_is_left_alone_until_its_heartbeat_is_due(streams):
    stream = streams[0]
    now = 1000.0  # a clock reading that adding the interval to does not round below it
    stream.saved_at = now
    assert stream.progress(now) is None
    assert stream.progress(now + generation.HEARTBEAT_INTERVAL) is not None  # the beat
    stream.unsaved = True
    assert stream.progress(now + generation.HEARTBEAT_INTERVAL + 0.1) is not None  # news
    assert stream.progress(now + generation.HEARTBEAT_INTERVAL + 0.2) is None  # saved: nothing new


def test_an_answer_that_finished_meanwhile_keeps_what_finish_saved(streams):
    stream = streams[0]
    stream.message.content = "half an answer"
    stream.unsaved = True
    row = stream.progress(time.monotonic())
    Message.objects.filter(pk=stream.message.pk).update(status="complete", content="the whole answer")
    generation.save_progress([row])
    assert Message.objects.get(pk=stream.message.pk).content == "the whole answer"


def test_a_finished_answer_has_no_progress_to_save(streams):
    stream = streams[0]
    stream.unsaved = True
    stream.message.status = Message.Status.STOPPED
    assert stream.progress(time.monotonic()) is None


def test_a_stop_asked_for_by_another_process_is_found(streams):
    asked, left = streams
    Message.objects.filter(pk=asked.message.pk).update(stop_requested_at=timezone.now())
    assert generation.stops_requested(streams) == {asked.message.pk}


@pytest.mark.django_db(transaction=True)
async def test_a_generation_ends_when_its_sender_to_other_processes_is_cancelled_with_it(bob, acme, acme_key, monkeypatch):
    """As when the process shuts down: every task is cancelled at once, and the answer must still end, stopped."""
    from asyncio import CancelledError, Event, Queue, all_tasks, create_task, current_task, gather, sleep, wait_for

    from channels.db import database_sync_to_async

    async def answers_forever(self):
        await Event().wait()

    async def sends_nothing(self):
        await Event().wait()  # never drains the outbox

    monkeypatch.setattr(generation.Generation, "answer", answers_forever)
    monkeypatch.setattr(generation.Generation, "serve_other_processes", sends_nothing)
    conversation = await database_sync_to_async(Conversation.objects.create)(owner=bob, team=acme)
    message = await database_sync_to_async(Message.objects.create)(
        conversation=conversation, role="assistant", status="streaming", created_at=timezone.now()
    )
    stream = generation.Generation(conversation, message, acme_key, "")
    stream.remote_outbox = Queue()
    stream.task = create_task(stream.run())
    await sleep(0.05)
    tasks = [task for task in all_tasks() if task is not current_task()]
    for task in tasks:
        task.cancel()
    await wait_for(gather(*tasks, return_exceptions=True), timeout=10)  # no hang
    saved = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert saved.status == "stopped"


def test_frames_come_less_often_as_the_process_fills_its_core_and_least_often_from_half_a_core():
    intervals = [generation.frame_interval_for(busy) for busy in (0.0, 0.25, 0.4, 0.5, 1.5)]
    assert intervals[:2] == [generation.FRAME_INTERVAL] * 2
    assert intervals[1] < intervals[2] < intervals[3]
    assert intervals[3:] == [generation.BUSIEST_FRAME_INTERVAL] * 2


async def test_a_stream_waits_the_current_frame_interval_between_frames(streams, monkeypatch):
    stream = streams[0]
    stream.last_frame = time.monotonic()
    monkeypatch.setattr(generation, "frame_interval", generation.BUSIEST_FRAME_INTERVAL)
    stream.schedule_frame()
    waits = stream.frame_scheduled.when() - asyncio.get_running_loop().time()
    stream.frame_scheduled.cancel()
    assert generation.FRAME_INTERVAL < waits <= generation.BUSIEST_FRAME_INTERVAL


async def test_text_joins_the_message_once_a_save_not_once_a_token(streams, monkeypatch):
    stream = streams[0]
    stream.message.first_token_at = timezone.now()
    monkeypatch.setattr(stream, "schedule_frame", lambda: None)
    for piece in ["a", "b", "c"]:
        stream.apply(mimo.ReasoningDelta(piece))
        stream.apply(mimo.TextDelta(piece))
    assert (stream.message.content, stream.message.reasoning_content) == ("", None)  # a string grows by copying
    content, reasoning, *_ = stream.progress(time.monotonic())
    assert (content, reasoning) == ("abc", "abc")


def test_frames_go_to_other_processes_once_a_socket_there_watches(streams):
    stream = streams[0]
    stream.remote_outbox = asyncio.Queue()  # as with the Redis channel layer
    stream.publish(None, None, html="<delta>")
    stream.publish(None, None, html="<snapshot>", snapshot=True)
    assert [item[1] for item in drain(stream.remote_outbox)] == ["<snapshot>"]
    stream.watched_elsewhere = True  # a socket elsewhere asked for a snapshot
    stream.publish(None, None, html="<delta>")
    assert [item[1] for item in drain(stream.remote_outbox)] == ["<delta>"]


def drain(queue):
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


# --- When the database refuses a save (SQLite's lock held past its busy timeout) -------


def refused_the_first(times, save):
    """A save that the database refuses `times` times, as SQLite does when another writer holds its lock."""
    refusals = []

    def refusing(*args, **kwargs):
        if len(refusals) < times:
            refusals.append(1)
            raise OperationalError("database is locked")
        return save(*args, **kwargs)

    return refusing


@pytest.fixture
def no_pauses(monkeypatch):
    monkeypatch.setattr(generation, "FINAL_SAVE_DELAYS", (0, 0), raising=False)
    monkeypatch.setattr(generation, "SAVE_LATER_INTERVAL", 0, raising=False)
    monkeypatch.setattr(generation, "FLUSH_INTERVAL", 0.01)


@pytest.mark.django_db(transaction=True)
async def test_a_refused_final_save_is_tried_again_until_the_answer_is_saved_with_its_usage(streams, no_pauses, monkeypatch, caplog):
    stream = streams[0]
    stream.new_text = ["the whole answer"]
    stream.apply_usage(mimo.Usage(prompt_tokens=120, completion_tokens=40))
    # More refusals than quick tries: the answer waits in memory, with one line in the log.
    monkeypatch.setattr(Message, "save", refused_the_first(4, Message.save))
    await stream.finish(Message.Status.COMPLETE, finish_reason="stop")
    saved = await Message.objects.aget(pk=stream.message.pk)
    assert (saved.status, saved.content, saved.prompt_tokens, saved.completion_tokens) == ("complete", "the whole answer", 120, 40)
    assert [record.levelname for record in caplog.records] == ["WARNING", "WARNING"]  # refused, then saved late
    assert "refused by the database (database is locked)" in caplog.records[0].getMessage()


@pytest.mark.django_db(transaction=True)
async def test_tool_calls_and_sources_of_a_refused_final_save_are_created_by_the_next_try(streams, no_pauses, monkeypatch):
    stream = streams[0]
    stream.tool_calls = {0: ToolCall(message=stream.message, index=0, call_id="call_1", name="calculator", status="done")}
    stream.citations = [Citation(message=stream.message, index=0, url="https://example.com/")]
    # The tool call is written, then the sources are refused: the whole try is rolled back.
    monkeypatch.setattr(Citation.objects, "bulk_create", refused_the_first(1, Citation.objects.bulk_create))
    await stream.finish(Message.Status.COMPLETE, finish_reason="stop")
    assert await ToolCall.objects.filter(message=stream.message).acount() == 1
    assert await Citation.objects.filter(message=stream.message).acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_the_progress_task_starts_again_after_a_refused_save_and_says_so_in_one_line(streams, no_pauses, monkeypatch, caplog):
    stream = streams[0]
    monkeypatch.setitem(generation._generations, stream.watch_key, stream)
    monkeypatch.setattr(generation, "save_progress", refused_the_first(1, generation.save_progress))
    monkeypatch.setattr(generation, "_tender", None)
    stream.new_text, stream.unsaved = ["what arrived"], True
    generation.keep_tending()
    try:
        for _ in range(500):  # what the refused save held is written by the next pass
            if (await Message.objects.aget(pk=stream.message.pk)).content == "what arrived":
                break
            await asyncio.sleep(0.01)
        assert (await Message.objects.aget(pk=stream.message.pk)).content == "what arrived"
        assert not generation._tender.done()
        assert [record.getMessage() for record in caplog.records] == [
            "Saving the streams' progress failed and starts again: OperationalError: database is locked"
        ]
    finally:
        generation._tender.cancel()


@pytest.mark.django_db(transaction=True)  # it closes its connection, which a test's transaction would not survive
def test_a_starting_process_marks_at_once_the_streams_its_dead_predecessor_left(bob, acme, caplog):
    # The predecessor had our pid, as a container's daphne is pid 1 after every restart.
    predecessor = f"{processes.own_pid_space()}:{os.getpid()}:0badc0de"
    conversation = Conversation.objects.create(owner=bob, team=acme)
    orphan = Message.objects.create(
        conversation=conversation, role="assistant", content="half", status="streaming",
        heartbeat_at=timezone.now(), process=predecessor,
    )
    generation.mark_dead_at_start()
    orphan.refresh_from_db()
    assert (orphan.status, orphan.content) == ("interrupted", "half")
    assert "Marked 1 answers left streaming by a process that is gone" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_database_not_reachable_at_start_leaves_the_streams_to_the_sweeps(monkeypatch, caplog):
    def refused(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(Message.objects, "mark_dead", refused)
    generation.mark_dead_at_start()
    assert "Could not mark the answers a process that is gone left streaming: connection refused" in caplog.text


def test_an_answers_end_writes_what_it_set_and_leaves_what_another_writer_changed(streams):
    stream = streams[0]
    message = stream.message
    # Meanwhile another process was asked to stop it, and the branch shown changed.
    Message.objects.filter(pk=message.pk).update(stop_requested_at=timezone.now(), visible=False)
    stream.new_text = ["The whole answer."]
    stream.take_text()
    message.status, message.finish_reason, message.prompt_tokens = "complete", "stop", 12
    stream.save_finished_in_one_transaction()
    saved = Message.objects.get(pk=message.pk)
    assert (saved.content, saved.status, saved.finish_reason, saved.prompt_tokens) == ("The whole answer.", "complete", "stop", 12)
    assert saved.stop_requested_at is not None and saved.visible is False
