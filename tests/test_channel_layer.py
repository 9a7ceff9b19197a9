import asyncio
import os

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection


def test_configured_channel_layer_delivers_a_group_message():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("conversation-test", channel)
    async_to_sync(layer.group_send)("conversation-test", {"type": "conversation.html", "html": "<p>hi</p>"})
    assert async_to_sync(layer.receive)(channel) == {"type": "conversation.html", "html": "<p>hi</p>"}
    async_to_sync(layer.group_discard)("conversation-test", channel)


def test_scale_out_run_really_uses_postgresql_and_redis(db):
    # `make test` runs the suite a second time with these set; prove they took effect.
    if os.environ.get("DATABASE_URL"):
        assert connection.vendor == "postgresql"
    if os.environ.get("REDIS_URL"):
        assert type(get_channel_layer()).__name__ == "RedisChannelLayer"


def test_a_channel_left_waiting_longer_than_the_layer_polls_is_still_open():
    # The Redis layer polls a channel for 5 s at a time: an idle socket must outlive the poll.
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()

    async def wait_quietly():
        try:
            await asyncio.wait_for(layer.receive(channel), timeout=7)
        except TimeoutError:
            return "still waiting"

    assert async_to_sync(wait_quietly)() == "still waiting"
