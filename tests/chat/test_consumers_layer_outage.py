"""The conversation socket while the channel layer (Redis) is unreachable, and when it comes back.

The layer below fails as channels_redis does while Redis is down: every call
raises redis' ConnectionError, a receive already waiting included; and a
Redis that comes back after a restart has forgotten every group.
"""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from redis.exceptions import ConnectionError as RedisConnectionError

from chat import consumers, generation, mimo
from chat.models import Message
from tests.chat.test_consumers import connect, conversation, frames_until_finished, send_form  # noqa: F401 (a fixture)
from tests.chat.test_versions import two_versions  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

OUT_OF_DATE = "this conversation may be out of date"


class OutageLayer(InMemoryChannelLayer):
    """The in-memory layer, made to fail while `down` as the Redis layer does while Redis is."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.down = False
        self.went_down = None  # an asyncio.Event, made in the loop that waits on it

    def go_down(self):
        self.down = True
        if self.went_down is not None:
            self.went_down.set()

    async def come_back(self):
        await self.flush()  # a restarted Redis has forgotten every group
        self.down = False
        self.went_down = None

    def refuse_while_down(self):
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6391. Connection refused.")

    async def receive(self, channel):
        self.refuse_while_down()
        if self.went_down is None:
            self.went_down = asyncio.Event()
        receiving = asyncio.ensure_future(super().receive(channel))
        failing = asyncio.ensure_future(self.went_down.wait())
        try:
            await asyncio.wait({receiving, failing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            receiving.cancel() if not receiving.done() else None
            failing.cancel()
        if receiving.done() and not receiving.cancelled():
            return receiving.result()
        raise RedisConnectionError("Connection closed by server.")

    async def group_add(self, group, channel):
        self.refuse_while_down()
        await super().group_add(group, channel)

    async def group_discard(self, group, channel):
        self.refuse_while_down()
        await super().group_discard(group, channel)

    async def group_send(self, group, message):
        self.refuse_while_down()
        await super().group_send(group, message)


@pytest.fixture
def layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.chat.test_consumers_layer_outage.OutageLayer"}}
    channel_layers.backends.clear()
    return get_channel_layer()


async def frame_with(communicator, pattern, timeout=10):
    """The first frame from now on that matches `pattern` (a regular expression)."""
    while True:
        html = await communicator.receive_from(timeout=timeout)
        if re.search(pattern, html):
            return html


async def test_a_socket_stays_open_and_streams_its_own_answer_while_the_layer_is_down(layer, conversation, bob):
    communicator, connected, _code = await connect(bob, conversation.pk)
    assert connected
    layer.go_down()
    assert OUT_OF_DATE in await frame_with(communicator, 'id="live-status"')

    await communicator.send_json_to(send_form("Tell me [[fake:long=300]]"))
    frames = await frames_until_finished(communicator)
    assert 'data-status="complete"' in frames[-1]
    answer = await Message.objects.filter(conversation=conversation, role="assistant").aget()
    assert answer.status == "complete" and answer.content
    assert await communicator.receive_nothing(timeout=0.5)  # still open: no close came
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_a_socket_opened_while_the_layer_is_down_is_accepted_and_says_the_page_may_be_out_of_date(
    layer, conversation, bob
):
    layer.go_down()
    communicator, connected, _code = await connect(bob, conversation.pk)
    assert connected
    assert OUT_OF_DATE in await frame_with(communicator, 'id="live-status"')
    await communicator.disconnect()


async def test_when_the_layer_is_back_the_socket_joins_its_group_again_and_catches_up(layer, conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    layer.go_down()
    await frame_with(communicator, OUT_OF_DATE)
    # Meanwhile another process answered: its frames could not come.
    answered = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="complete", content="Answered elsewhere meanwhile"
    )

    await layer.come_back()
    caught_up = await frame_with(communicator, 'id="messages"')
    assert f'id="message-{answered.pk}"' in caught_up and "Answered elsewhere meanwhile" in caught_up
    assert re.search(r'<p id="live-status"[^>]*></p>', caught_up)  # the line is empty again
    # In the group again: what other processes send now arrives.
    await layer.group_send(generation.group_name(conversation.pk), {"type": "conversation.changed", "message_id": answered.pk})
    assert "Answered elsewhere meanwhile" in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_resync_shows_the_conversation_as_a_reload_would(conversation, bob):
    # The page's socket dropped and opened again (composer.js): an answer ended while it was closed.
    communicator, _connected, _code = await connect(bob, conversation.pk)
    answered = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="complete", content="Finished while the page was away"
    )
    await communicator.send_json_to({"action": "resync"})
    caught_up = await frame_with(communicator, 'id="messages"')
    assert f'id="message-{answered.pk}"' in caught_up and 'data-status="complete"' in caught_up
    assert 'id="composer-actions"' in caught_up
    await communicator.disconnect()


async def test_resync_during_an_answer_of_this_process_ends_with_its_live_state(conversation, bob):
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Slowly [[fake:long=2000]] [[fake:speed=200]]"))
    await frame_with(communicator, "md-block")
    await communicator.send_json_to({"action": "resync"})
    await frame_with(communicator, 'id="messages"')
    # Right after the window read from the database: the answer as it stands now, not as last saved.
    assert 'data-status="streaming"' in await communicator.receive_from(timeout=5)
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_stop_from_another_process_while_the_layer_is_down_is_left_to_the_database_flag(
    layer, conversation, bob, monkeypatch
):
    monkeypatch.setattr(generation, "is_shared_layer", lambda: True)  # as with Redis: stop also tells the group
    streaming = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming")
    layer.go_down()
    await generation.stop(conversation.pk)  # no generation here: the one elsewhere reads the flag
    await streaming.arefresh_from_db()
    assert streaming.stop_requested_at is not None


async def test_another_process_answer_whose_last_frame_was_dropped_is_shown_ended_from_the_database(
    layer, conversation, bob, monkeypatch
):
    monkeypatch.setattr(consumers, "REMOTE_SILENCE", 0.2)
    monkeypatch.setattr(generation, "is_shared_layer", lambda: True)  # as with Redis: answers of other processes
    communicator, _connected, _code = await connect(bob, conversation.pk)
    answer = await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming", content="Half")
    # Another process's answer: its snapshot arrives, then nothing (a full channel dropped the last frame).
    frame = {"type": "generation.frame", "origin": "elsewhere:1", "generation": "g1", "seq": 1, "snapshot": True}
    await layer.group_send(generation.group_name(conversation.pk), frame | {"html": {"en": f'<article id="message-{answer.pk}">Half</article>'}})
    await frame_with(communicator, "Half")
    answer.status, answer.content = "complete", "Half and the end"
    await answer.asave()

    assert "Half and the end" in await frame_with(communicator, 'id="messages"')
    await communicator.disconnect()


async def test_the_out_of_date_line_is_in_the_members_language(layer, conversation, bob):
    bob.language = "zh-hans"
    await bob.asave()
    layer.go_down()
    communicator, _connected, _code = await connect(bob, conversation.pk)
    assert "此对话可能不是最新的" in await frame_with(communicator, 'id="live-status"')
    await communicator.disconnect()


async def test_an_answer_streaming_through_an_outage_sends_other_processes_a_snapshot_once_the_layer_is_back(
    layer, conversation, bob, monkeypatch
):
    monkeypatch.setattr(generation, "is_shared_layer", lambda: True)  # as with Redis: frames go to other processes too
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Slowly [[fake:long=2000]] [[fake:speed=100]]"))
    await frame_with(communicator, "md-block")
    layer.go_down()
    await frame_with(communicator, "md-block")  # this socket's frames go on meanwhile
    await layer.come_back()

    elsewhere = await layer.new_channel()  # a socket of another process, in the group once Redis is back
    await layer.group_add(generation.group_name(conversation.pk), elsewhere)
    while True:
        message = await asyncio.wait_for(layer.receive(elsewhere), timeout=10)
        if message["type"] == "generation.frame" and message["snapshot"]:
            break
    assert 'data-status="streaming"' in message["html"]["en"]
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


def test_switching_versions_while_the_layer_is_down_still_shows_the_chosen_version(layer, client, bob, conversation, two_versions):
    question, _edited = two_versions
    layer.go_down()
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/messages/{question.pk}/show/", headers={"HX-Request": "true"})
    assert response.status_code == 200  # the other tabs catch up when the layer is back
    assert "first answer" in response.text
