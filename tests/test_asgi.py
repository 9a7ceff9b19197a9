"""How a socket reaches the consumers (mimoweb/asgi.py): its user found by its session cookie, its frames sent on."""

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from chat.models import Conversation
from mimoweb.asgi import SocketSessionMiddleware, application

pytestmark = pytest.mark.django_db(transaction=True)


def socket_to(conversation, cookie=""):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, f"/ws/conversations/{conversation.pk}/", headers=headers)


async def test_a_socket_with_the_members_session_cookie_opens_and_one_without_is_refused(bob, acme):
    conversation = await Conversation.objects.acreate(owner=bob, team=acme, title="Plans")
    client = Client()
    await client.aforce_login(bob)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    signed_in = socket_to(conversation, cookie)
    assert await signed_in.connect() == (True, None)
    await signed_in.disconnect()

    for stranger in (socket_to(conversation), socket_to(conversation, "not-a-session")):
        connected, code = await stranger.connect()
        assert not connected and code == 4401


async def test_the_socket_session_middleware_hands_on_the_servers_own_send():
    """Channels' SessionMiddleware wraps `send` to save sessions before HTTP responses, and read the
    session twice for every frame a socket sent; a socket's frames go to the server's send as they are."""
    handed_on = {}

    async def consumer(scope, receive, send):
        handed_on.update(send=send, session=scope["session"])

    async def server_send(message):
        pass

    scope = {"type": "websocket", "path": "/ws/", "cookies": {settings.SESSION_COOKIE_NAME: "some-key"}}
    await SocketSessionMiddleware(consumer)(scope, None, server_send)
    assert handed_on["send"] is server_send
    assert handed_on["session"].session_key == "some-key"
