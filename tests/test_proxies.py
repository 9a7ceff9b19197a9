"""X-Forwarded-For names the client only when a trusted proxy passes it on (mimoweb/proxies.py)."""

import re
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator

from accounts.models import SignInFailure
from mimoweb.asgi import application
from mimoweb.proxies import TrustedProxiesMiddleware, client_address, trusted_networks
from tests.test_settings import run_python

PROXIES = trusted_networks(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"])


@pytest.mark.parametrize(
    "peer, forwarded_for, client",
    [
        # Anyone may write the header: from an untrusted peer it is ignored.
        ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        # Our proxy appended the address it saw.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # The client's own claim sits left of what our proxy appended.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        # Through two of our proxies, and over two header lines.
        ("127.0.0.1", ["198.51.100.1, 10.1.1.1", "10.2.2.2"], "198.51.100.1"),
        # Every hop one of ours: the farthest one.
        ("10.0.0.2", ["10.0.0.9"], "10.0.0.9"),
        ("2001:db8::1", ["[2001:db8:1::5]", "2001:db8::2"], "2001:db8:1::5"),
        ("10.0.0.2", ["::ffff:198.51.100.1"], "198.51.100.1"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # No header: the proxy itself.
        ("10.0.0.2", [], "10.0.0.2"),
    ],
)
def test_client_is_the_rightmost_address_not_a_trusted_proxy(peer, forwarded_for, client):
    assert client_address(peer, forwarded_for, PROXIES) == client


@pytest.mark.parametrize(
    "forwarded_for, client",
    [
        (["unknown"], "10.0.0.2"),
        ([""], "10.0.0.2"),
        (["198.51.100.1:4711"], "10.0.0.2"),
        (["198.51.100.1, not an address"], "10.0.0.2"),
        (["\x00" * 10_000], "10.0.0.2"),
        # A bad value left of the client is the client's own claim, and does not matter.
        (["junk, 198.51.100.1"], "198.51.100.1"),
        # A bad value written after one of our proxies stops the walk at that proxy.
        (["198.51.100.1, junk, 10.0.0.3"], "10.0.0.3"),
    ],
)
def test_a_bad_forwarded_value_is_never_believed(forwarded_for, client):
    assert client_address("10.0.0.2", forwarded_for, PROXIES) == client


def test_a_bad_trusted_proxy_stops_the_start_naming_the_variable_and_the_value(tmp_path):
    result = run_python("import django; django.setup()", tmp_path, MIMOWEB_TRUSTED_PROXIES="10.0.0.0/8, proxy.local")
    assert "MIMOWEB_TRUSTED_PROXIES: 'proxy.local' is not an IP address or network." in result.stderr


async def client_seen(scope):
    """What scope["client"] the wrapped application receives."""
    seen = {}

    async def inner(scope, receive, send):
        seen["client"] = scope["client"]

    await TrustedProxiesMiddleware(inner)(scope, None, None)
    return seen["client"]


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_pages_and_sockets_get_the_forwarded_address_from_a_trusted_proxy(kind, settings):
    settings.MIMOWEB_TRUSTED_PROXIES = PROXIES
    scope = {"type": kind, "client": ["10.0.0.2", 5000], "headers": [(b"x-forwarded-for", b"198.51.100.1")]}
    assert await client_seen(scope) == ["198.51.100.1", 0]
    scope["client"] = ["203.0.113.7", 5000]
    assert await client_seen(scope) == ["203.0.113.7", 5000]


async def test_no_trusted_proxies_by_default_means_the_header_is_ignored():
    scope = {"type": "http", "client": ["127.0.0.1", 5000], "headers": [(b"x-forwarded-for", b"198.51.100.1")]}
    assert await client_seen(scope) == ["127.0.0.1", 5000]


def test_the_container_does_not_let_daphne_believe_every_client():
    dockerfile = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    command = dockerfile[dockerfile.index("\nCMD ") :]
    assert "daphne" in command
    assert "--proxy-headers" not in command


# --- Through the whole application: the sign-in lock per address ---------------------------


async def http(path, *, client, method="GET", headers=(), body=b""):
    """One request to mimoweb.asgi.application as daphne would hand it over; returns (status, headers, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": [client, 40000],
        "server": ["localhost", 80],
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body})
    start = await communicator.receive_output(10)
    content = b""
    while True:
        message = await communicator.receive_output(10)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return start["status"], start["headers"], content


async def failed_sign_in(client, username, forwarded_for):
    status, headers, page = await http("/accounts/sign-in/", client=client)
    cookie = next(value for name, value in headers if name == b"Set-Cookie" and value.startswith(b"csrftoken="))
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = b"csrfmiddlewaretoken=" + token + b"&username=" + username.encode() + b"&password=wrong"
    headers = [
        (b"cookie", cookie.split(b";")[0]),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"x-forwarded-for", forwarded_for.encode()),
    ]
    status, _, page = await http("/accounts/sign-in/", client=client, method="POST", headers=headers, body=form)
    assert status == 200
    return page.decode()


@pytest.mark.django_db(transaction=True)
async def test_rotating_forwarded_for_from_an_untrusted_peer_still_locks_the_address(settings):
    settings.MIMOWEB_TRUSTED_PROXIES = PROXIES
    settings.MIMOWEB_SIGNIN_FAILURES_PER_ADDRESS = 3
    for n in range(3):
        await failed_sign_in("203.0.113.7", f"guess{n}", forwarded_for=f"198.51.100.{n}")
    page = await failed_sign_in("203.0.113.7", "another", forwarded_for="198.51.100.99")
    assert "Too many failed sign-in attempts" in page
    assert {address async for address in SignInFailure.objects.values_list("address", flat=True)} == {"203.0.113.7"}


@pytest.mark.django_db(transaction=True)
async def test_through_a_trusted_proxy_each_client_is_counted_apart(settings):
    settings.MIMOWEB_TRUSTED_PROXIES = PROXIES
    settings.MIMOWEB_SIGNIN_FAILURES_PER_ADDRESS = 3
    for n in range(3):
        await failed_sign_in("10.0.0.2", f"guess{n}", forwarded_for="198.51.100.1")
    assert "Too many failed" in await failed_sign_in("10.0.0.2", "another", forwarded_for="198.51.100.1")
    # Another client behind the same proxy is not locked out with the first.
    assert "Too many failed" not in await failed_sign_in("10.0.0.2", "another", forwarded_for="198.51.100.2")
    assert await SignInFailure.objects.filter(address="10.0.0.2").acount() == 0
