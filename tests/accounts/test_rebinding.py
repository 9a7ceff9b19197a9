"""DNS rebinding: a base URL's host that resolves to a public address when it is checked and to
127.0.0.1 a moment later, when the connection is made, must not reach 127.0.0.1."""

import socket
import threading

import aiohappyeyeballs
import pytest
from channels.db import database_sync_to_async

from accounts.models import ApiKey
from accounts.views.keys import run_key_check
from chat import mimo
from chat.mimo import transport
from chat.mimo.client import close_shared_http_client, shared_http_client
from tests.conftest import SECRET

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "93.184.215.14"
HOST = "rebind.example"


@pytest.fixture(autouse=True)
def no_pins(monkeypatch, settings):
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = []
    monkeypatch.setattr(transport, "_checked_addresses", {})


@pytest.fixture
def local_server():
    """A listener on 127.0.0.1 that counts the connections reaching it and hangs up on each."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    arrived, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, peer = listener.accept()
            except TimeoutError:
                continue
            arrived.append(peer)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], arrived
    stop.set()
    thread.join()
    listener.close()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """HOST resolves to a public address the first time it is looked up, to 127.0.0.1 every time after."""
    real, lookups = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != HOST:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = PUBLIC if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.fixture
def connections(monkeypatch):
    """Where connections are attempted; one to the public address is refused here, never sent out."""
    real, attempted = aiohappyeyeballs.start_connection, []

    async def start_connection(addr_infos, **kwargs):
        addresses = [info[4][0] for info in addr_infos]
        attempted.extend(addresses)
        if "127.0.0.1" not in addresses:
            raise ConnectionRefusedError(111, "refused by the test: not sent out")
        return await real(addr_infos, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", start_connection)
    return attempted


def rebinding_key(acme, port):
    key = ApiKey(team=acme, label="Proxy", base_url=f"https://{HOST}:{port}")
    key.set_secret(SECRET)
    key.save()
    return key


def test_a_key_test_connects_to_the_address_that_was_checked(acme, local_server, rebinding_dns, connections):
    port, arrived = local_server
    check = run_key_check(rebinding_key(acme, port))
    assert not check.ok
    assert arrived == []
    assert connections == [PUBLIC]


async def test_an_answer_connects_to_the_address_that_was_checked(acme, local_server, rebinding_dns, connections):
    port, arrived = local_server
    key = await database_sync_to_async(rebinding_key)(acme, port)
    secret = await database_sync_to_async(key.secret_for_request)()
    endpoint = mimo.Endpoint(key.base_url, secret)
    try:
        with pytest.raises(mimo.MimoError):
            await mimo.list_models(endpoint, http_client=shared_http_client())
    finally:
        await close_shared_http_client()
    assert arrived == []
    assert connections == [PUBLIC]
