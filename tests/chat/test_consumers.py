"""The conversation socket, driven with Channels' WebsocketCommunicator against the fake MiMo server."""

import asyncio
import re
import subprocess
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

import chat.routing
from accounts.models import ApiKey
from chat import generation, mimo, processes
from chat.consumers import socket_language
from chat.models import Conversation, Message
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(chat.routing.websocket_urlpatterns)


@pytest.fixture
def conversation(bob, acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-consumer-key")
    key.save()
    # Titled, so no title request (chat/titles.py) follows the answers these tests read back.
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


async def connect(user, conversation_id):
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


def send_form(text, **fields):
    return {"action": "send", "text": text, "model": "mimo-v2.5-pro", "thinking": "on", **fields, "HEADERS": {}}


async def frames_until_finished(communicator, timeout=20):
    frames = []
    while True:
        html = await communicator.receive_from(timeout=timeout)
        frames.append(html)
        if re.search(r'class="message message-assistant" data-status="(complete|stopped|error)"', html):
            return frames


async def latest_answer(conversation):
    return await Message.objects.filter(conversation=conversation, role="assistant").order_by("-id").afirst()


async def test_signed_out_visitor_is_refused(conversation):
    _communicator, connected, code = await connect(AnonymousUser(), conversation.pk)
    assert not connected
    assert code == 4401


async def test_teammate_and_other_team_are_refused_as_if_it_did_not_exist(conversation, alice, charlie):
    for outsider in (alice, charlie):
        _communicator, connected, code = await connect(outsider, conversation.pk)
        assert not connected
        assert code == 4404


async def test_outsider_cannot_stop_or_send_through_someone_elses_conversation(conversation, charlie):
    # charlie's own socket is on his own conversation; bob's stays untouched.
    own = await database_sync_to_async(Conversation.objects.create)(owner=charlie, team=conversation.team)
    communicator, connected, _code = await connect(charlie, own.pk)
    assert connected
    await communicator.send_json_to({"action": "send", "text": "hi", "conversation": str(conversation.pk)})
    await communicator.disconnect()
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_answer_streams_and_the_saved_answer_is_what_mimo_sent(conversation, bob, fake_url, fake_records):
    communicator, connected, _code = await connect(bob, conversation.pk)
    assert connected
    await communicator.send_json_to(send_form("Tell me [[fake:long=300]]"))
    frames = await frames_until_finished(communicator)
    assert len(frames) > 3  # streamed, not delivered at the end
    assert any("message-delta" in f or "-reasoning" in f for f in frames)
    answer = await latest_answer(conversation)
    assert answer.status == "complete"

    # The fake answers the same body the same way: ask it again, directly.
    body = fake_records.all()[-1]["body"]
    accumulator = mimo.Accumulator()
    async for event in mimo.stream_body(mimo.Endpoint(fake_url, "sk-test-consumer-key"), body):
        accumulator.add(event)
    assert answer.content == accumulator.text
    assert answer.reasoning_content == accumulator.reasoning
    assert answer.completion_tokens == accumulator.usage.completion_tokens
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_closing_the_socket_does_not_stop_the_answer(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Go on [[fake:long=200]] [[fake:speed=400]]"))
    await communicator.receive_from(timeout=10)
    await communicator.disconnect()
    for _ in range(200):
        answer = await latest_answer(conversation)
        if answer.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert answer.status == "complete"
    assert len(answer.content) > 200
    await mimo.close_shared_http_client()


async def test_stop_keeps_what_arrived(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Slowly [[fake:long=2000]] [[fake:speed=100]]"))
    while "md-block" not in await communicator.receive_from(timeout=10):  # answer text has arrived
        pass
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    frames = await frames_until_finished(communicator)
    assert 'data-status="stopped"' in frames[-1]
    answer = await latest_answer(conversation)
    assert answer.status == "stopped"
    assert 0 < len(answer.content)
    assert answer.completion_tokens is None  # the stream never reached its usage
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_upstream_error_is_kept_explained_and_retry_answers_again(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Hi [[fake:error=401]]"))
    frames = await frames_until_finished(communicator)
    assert "MiMo did not accept the API key" in frames[-1]
    failed = await latest_answer(conversation)
    assert (failed.status, failed.error_kind) == ("error", "auth")
    assert "Retry" in frames[-1]

    await communicator.send_json_to({"action": "retry", "message_id": str(failed.pk), "HEADERS": {}})
    await frames_until_finished(communicator)
    retried = await latest_answer(conversation)
    assert retried.pk != failed.pk
    assert await Message.objects.filter(pk=failed.pk, status="error").aexists()  # the failure stays
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_a_cut_stream_keeps_what_arrived_and_says_so(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Hi [[fake:long=300]] [[fake:cut=120]]"))
    frames = await frames_until_finished(communicator)
    assert "The answer stopped before it was finished" in frames[-1]
    answer = await latest_answer(conversation)
    assert (answer.status, answer.error_kind) == ("error", "stream_cut")
    assert answer.content
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_empty_message_gets_a_notice_and_nothing_is_saved(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("   "))
    assert "This field is required" in await communicator.receive_from(timeout=5)
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await communicator.disconnect()


async def test_team_without_a_key_gets_a_notice(bob, globex):
    dave = await database_sync_to_async(make_user)("dave", globex)
    conversation = await database_sync_to_async(Conversation.objects.create)(owner=dave, team=globex)
    communicator, _connected, _code = await connect(dave, conversation.pk)
    await communicator.send_json_to(send_form("hello"))
    assert "no MiMo key" in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_two_rounds_of_tools_run_and_reasoning_goes_back(conversation, bob, fake_records):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Compute [[fake:tool]] [[fake:rounds=2]]"))
    for _ in range(3):  # two tool rounds, then the answer
        await frames_until_finished(communicator)
    answers = [m async for m in Message.objects.filter(conversation=conversation, role="assistant").order_by("id")]
    assert [m.status for m in answers] == ["complete"] * 3
    assert [await m.tool_calls.exclude(result="", error="").acount() for m in answers] == [1, 1, 0]
    # The fake refuses a tool history without reasoning (answers 400), so the
    # complete rounds above prove it went back; here is what was sent.
    last_request = fake_records.all()[-1]["body"]
    with_calls = [m for m in last_request["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    assert len(with_calls) == 2
    assert all(m["reasoning_content"] for m in with_calls)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_a_stream_whose_process_died_is_marked_interrupted_and_can_be_retried(conversation, bob):
    dead = await Message.objects.acreate(
        conversation=conversation, role="assistant", content="half", status="streaming",
        heartbeat_at=timezone.now() - timedelta(minutes=1),
    )
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await dead.arefresh_from_db()
    assert (dead.status, dead.content) == ("interrupted", "half")
    await communicator.disconnect()


@pytest.fixture
def no_sweeps(monkeypatch):
    """This process's sweeps (generation.tend_forever) would mark a dead stream too, at a moment the test does not choose."""
    async def idle():
        pass

    monkeypatch.setattr(generation, "tend_forever", idle)


@pytest.fixture
def serving_process(no_sweeps):
    """Another server process of this pid space, as a stream records it; `.kill()` it and it is gone."""
    process = subprocess.Popen(["sleep", "60"])
    process.identity = f"{processes.own_pid_space()}:{process.pid}:0badc0de"
    yield process
    process.kill()
    process.wait()


async def stream_of(conversation, process, **fields):
    question = await Message.objects.acreate(conversation=conversation, role="user", content="Hello?")
    return await Message.objects.acreate(
        conversation=conversation, role="assistant", parent=question, content="Half an answer", status="streaming",
        heartbeat_at=timezone.now(), process=process, **fields,
    )


async def test_stop_on_a_stream_whose_process_died_marks_it_interrupted_at_once_with_retry(
    conversation, bob, serving_process
):
    orphan = await stream_of(conversation, serving_process.identity)
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await orphan.arefresh_from_db()
    assert orphan.status == "streaming"  # its process still runs
    serving_process.kill()
    serving_process.wait()

    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    html = await communicator.receive_from(timeout=5)
    assert f'id="message-{orphan.pk}" class="message message-assistant" data-status="interrupted"' in html
    assert 'aria-label="Retry"' in html and "Half an answer" in html
    await orphan.arefresh_from_db()
    assert (orphan.status, orphan.content) == ("interrupted", "Half an answer")
    await communicator.disconnect()


async def test_stop_on_a_stream_elsewhere_whose_beat_went_stale_marks_it_at_once(conversation, bob, no_sweeps):
    orphan = await stream_of(conversation, "another-host/1234abcd/4026531836:7:0badc0de")
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await Message.objects.filter(pk=orphan.pk).aupdate(heartbeat_at=timezone.now() - timedelta(minutes=1))

    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    assert 'data-status="interrupted"' in await communicator.receive_from(timeout=5)
    await orphan.arefresh_from_db()
    assert (orphan.status, orphan.stop_requested_at) == ("interrupted", None)
    await communicator.disconnect()


async def test_stop_on_a_live_stream_elsewhere_only_asks_its_process(conversation, bob):
    running = await stream_of(conversation, "another-host/1234abcd/4026531836:7:0badc0de")
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    assert await communicator.receive_nothing(timeout=0.5)
    await running.arefresh_from_db()
    assert running.status == "streaming" and running.stop_requested_at is not None
    await communicator.disconnect()


async def test_stop_on_a_page_left_behind_shows_the_answer_as_saved(conversation, bob, no_sweeps):
    # The page shows an answer streaming, but it was marked while the page's socket was away (its process restarted).
    marked = await stream_of(conversation, "")
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await Message.objects.filter(pk=marked.pk).aupdate(status="interrupted", heartbeat_at=None, finished_at=timezone.now())

    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    html = await communicator.receive_from(timeout=5)
    assert f'id="message-{marked.pk}" class="message message-assistant" data-status="interrupted"' in html
    assert 'aria-label="Retry"' in html and 'data-streaming="false"' in html
    await communicator.disconnect()


async def test_a_send_after_the_streams_process_died_is_admitted(conversation, bob, serving_process):
    orphan = await stream_of(conversation, serving_process.identity)
    communicator, _connected, _code = await connect(bob, conversation.pk)
    serving_process.kill()
    serving_process.wait()

    await communicator.send_json_to(send_form("Again"))
    await frames_until_finished(communicator)
    await orphan.arefresh_from_db()
    assert (orphan.status, orphan.content) == ("interrupted", "Half an answer")
    answer = await latest_answer(conversation)
    assert answer.status == "complete" and answer.process == processes.current()
    await communicator.disconnect()


def test_frames_speak_the_saved_language_then_the_cookie_then_the_browser(bob):
    scope = {"cookies": {"django_language": "zh-hant"}, "headers": [(b"accept-language", b"zh-CN,zh;q=0.9")]}
    assert socket_language(scope, bob) == "zh-hant"
    assert socket_language({"cookies": {}, "headers": scope["headers"]}, bob) == "zh-hans"
    assert socket_language({"cookies": {}, "headers": []}, bob) == "en"
    bob.language = "en"
    assert socket_language(scope, bob) == "en"


async def test_a_second_message_while_mimo_answers_gets_a_notice(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("First [[fake:long=2000]] [[fake:speed=50]]"))
    await communicator.receive_from(timeout=10)
    await communicator.send_json_to(send_form("Second"))
    while "still answering" not in await communicator.receive_from(timeout=10):
        pass
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_a_key_whose_base_url_is_no_longer_allowed_is_not_used(conversation, bob, settings, fake_records):
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = []  # the operator took the fake's loopback host off the list
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Hello"))
    frames = await frames_until_finished(communicator)
    assert "key cannot be used" in frames[-1]
    assert (await latest_answer(conversation)).error_kind == "key_unusable"
    assert fake_records.all() == []  # nothing was sent
    await communicator.disconnect()


async def test_frames_are_coalesced_and_the_database_is_not_written_per_token(conversation, bob, monkeypatch):
    saves = []
    real_asave, real_save_progress = Message.asave, generation.save_progress

    async def counting_asave(self, *args, **kwargs):
        saves.append(kwargs.get("update_fields"))
        return await real_asave(self, *args, **kwargs)

    def counting_save_progress(rows):
        saves.extend(rows)
        real_save_progress(rows)

    monkeypatch.setattr(Message, "asave", counting_asave)
    monkeypatch.setattr(generation, "save_progress", counting_save_progress)
    communicator, _connected, _code = await connect(bob, conversation.pk)
    # 600 tokens with no pause between them: they arrive far faster than frames go out.
    await communicator.send_json_to(send_form("Fast [[fake:long=600]] [[fake:speed=0]]"))
    frames = await frames_until_finished(communicator)
    answer = await latest_answer(conversation)
    assert answer.status == "complete" and answer.completion_tokens >= 600
    assert len(frames) < 60  # one frame per token would be 600 and more
    assert len(saves) < 20  # flushes and changes of state, not tokens
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_what_arrived_is_saved_while_the_answer_still_streams(conversation, bob, monkeypatch):
    monkeypatch.setattr(generation, "FLUSH_INTERVAL", 0.05)
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Slowly [[fake:long=40]] [[fake:speed=20]]", thinking=""))
    for _poll in range(1500):  # until the database holds part of the answer while it is still streaming
        answer = await latest_answer(conversation)
        if answer is not None:
            assert answer.status == "streaming", "the answer ended before any progress was saved"
            if answer.content:
                break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the answer did not start")
    assert answer.heartbeat_at is not None
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.parametrize(
    "frame",
    [
        {"text_data": "not json"},
        {"bytes_data": b"\x00\x01binary"},
        {"text_data": "[1, 2]"},
        {"text_data": '"just a string"'},
        {"text_data": "[" * 100_000 + "]" * 100_000},
        {"text_data": '{"action": "send", "text": "\\ud800"}'},
        {"text_data": '{"action": "send", "text": "a\\u0000b"}'},
    ],
    ids=["not JSON", "binary", "a list", "a string", "nested deep", "lone surrogate", "NUL"],
)
async def test_a_malformed_frame_gets_a_notice_and_the_socket_stays_open(conversation, bob, frame, caplog):
    communicator, connected, _code = await connect(bob, conversation.pk)
    assert connected
    await communicator.send_to(**frame)
    notice = await communicator.receive_from(timeout=5)
    assert 'id="notice"' in notice and "could not be read" in notice
    [record] = [r for r in caplog.records if r.name == "chat.consumers"]
    assert record.exc_info is None  # one line, no traceback
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await communicator.send_json_to(send_form("Still here [[fake:long=5]]"))  # the same socket goes on
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()
