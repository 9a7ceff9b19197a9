"""The aiohttp transport (chat/mimo/transport.py) fails, times out and streams as httpx's own does.

Every test runs against a real socket, once with httpx's own transport and once
with `MimoTransport`, and expects the same: the same error kind, the same
retries, the same time-outs.
"""

import asyncio
import datetime
import ipaddress
import json
import socket
import ssl
import struct
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chat import mimo
from chat.mimo import (
    NO_RETRY,
    ChatRequest,
    Endpoint,
    ErrorEvent,
    ErrorKind,
    MimoError,
    RetryPolicy,
    TextDelta,
    Timeouts,
    UserTurn,
    list_models,
    stream_turn,
)
from chat.mimo.client import stream_body
from chat.mimo import transport
from chat.mimo.transport import MimoTransport, environment_proxies, pin_addresses

from .conftest import GOOD_KEY
from .test_client import SleepRecorder, unused_port

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
KEEP_ALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def token(text: str) -> bytes:
    return chunk(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n")


END = chunk(DONE) + b"0\r\n\r\n"


class Upstream:
    """A listening socket whose every request is answered by `answer(reader, writer)`."""

    def __init__(self, answer, *, read_request=True, tls=None):
        self.answer = answer
        self.read_request = read_request
        self.tls = tls
        self.requests = []
        self.tasks = set()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def handle(self, reader, writer):
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                if self.read_request:
                    head = await reader.readuntil(b"\r\n\r\n")
                    lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
                    await reader.readexactly(int(lengths[0].split(b":")[1]) if lengths else 0)
                    self.requests.append(head)
                if not await self.answer(reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(params=["httpx", "aiohttp"])
def make_client(request):
    """Each test using it runs with httpx's own transport and with `MimoTransport`."""

    def make(verify=True, **limits):
        limits = httpx.Limits(**limits)
        if request.param == "httpx":
            return httpx.AsyncClient(limits=limits, verify=verify)
        return httpx.AsyncClient(transport=MimoTransport(limits=limits, verify=verify))

    return make


@pytest.fixture(scope="module")
def certificates():
    """A certificate authority, and a server certificate for 127.0.0.1 and mimo.example that it signed."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, key, issuer, issuer_key, *, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if ca:
            usage = dict(digital_signature=False, key_cert_sign=True, crl_sign=True)
        else:
            usage = dict(digital_signature=True, key_cert_sign=False, crl_sign=False)
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("mimo.example")]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(
            x509.KeyUsage(
                content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False, **usage,
            ),
            critical=True,
        )  # fmt: skip
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, "test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    key_pem = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem).decode(), server.public_bytes(pem) + key_pem


@pytest.fixture
def tls_server(certificates, tmp_path):
    chain = tmp_path / "server.pem"
    chain.write_bytes(certificates[1])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return context


async def stream(client, url, *, retry=NO_RETRY, timeouts=Timeouts(), text="hi"):
    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn(text)])
    endpoint = Endpoint(url, GOOD_KEY)
    return [event async for event in stream_turn(endpoint, chat, retry=retry, timeouts=timeouts, http_client=client)]


def error_of(events):
    [error] = [event for event in events if isinstance(event, ErrorEvent)]
    return error


async def test_a_whole_answer_streams(make_client):
    async def answer(reader, writer):
        writer.write(HEAD + token("Hel") + token("lo") + END)
        return True

    async with Upstream(answer) as upstream, make_client() as client:
        for _ in range(3):  # the connection is reused
            assert await stream(client, upstream.url) == [TextDelta("Hel"), TextDelta("lo")]


async def test_a_refused_connection_is_a_connection_error_and_retried(make_client):
    sleep = SleepRecorder()
    async with make_client() as client:
        events = await stream(client, f"http://127.0.0.1:{unused_port()}", retry=RetryPolicy(attempts=3, sleep=sleep))
    assert error_of(events).kind is ErrorKind.CONNECTION
    assert len(sleep.delays) == 2


async def test_a_connect_time_out_is_a_connection_error_and_retried(make_client):
    # A listening socket whose backlog is full: the next connect hangs.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        sleep = SleepRecorder()
        started = time.monotonic()
        async with make_client() as client:
            events = await stream(
                client,
                "http://127.0.0.1:%d" % listener.getsockname()[1],
                retry=RetryPolicy(attempts=2, sleep=sleep),
                timeouts=Timeouts(connect=0.3),
            )
    assert error_of(events).kind is ErrorKind.CONNECTION
    assert "ConnectTimeout" in error_of(events).detail
    assert len(sleep.delays) == 1
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "reply",
    [b"", b"this is not HTTP\r\n\r\n"],
    ids=["a hang-up before the answer", "a garbled answer"],
)
async def test_an_answer_that_is_not_http_is_a_connection_error_and_never_retried(make_client, reply):
    async def answer(reader, writer):
        writer.write(reply)
        return False

    sleep = SleepRecorder()
    async with Upstream(answer) as upstream, make_client() as client:
        events = await stream(client, upstream.url, retry=RetryPolicy(attempts=3, sleep=sleep))
    assert error_of(events).kind is ErrorKind.CONNECTION
    # The request may have reached MiMo: sending it again could answer twice.
    assert sleep.delays == [] and len(upstream.requests) == 1


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_connection_lost_in_the_middle_is_a_stream_cut(make_client, how):
    async def answer(reader, writer):
        writer.write(HEAD + token("Hel"))
        await writer.drain()
        await asyncio.sleep(0.1)
        if how == "reset":
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        return False

    sleep = SleepRecorder()
    async with Upstream(answer) as upstream, make_client() as client:
        events = await stream(client, upstream.url, retry=RetryPolicy(sleep=sleep))
    assert events[0] == TextDelta("Hel")
    assert error_of(events).kind is ErrorKind.STREAM_CUT
    assert sleep.delays == [] and len(upstream.requests) == 1


async def test_a_server_that_closes_after_each_answer_is_never_caught_out(make_client):
    # Without `connection: close`: the client learns it from the socket alone,
    # and must not send the next request on the connection that was closed.
    async def answer(reader, writer):
        writer.write(HEAD + token("ok") + END)
        return False

    async with Upstream(answer) as upstream, make_client() as client:
        for _ in range(20):
            assert await stream(client, upstream.url) == [TextDelta("ok")]
    assert len(upstream.requests) == 20


@pytest.mark.parametrize("started", [False, True], ids=["before-the-answer", "in-the-middle"])
async def test_silence_longer_than_the_read_time_out_is_a_timeout(make_client, started):
    async def answer(reader, writer):
        if started:
            writer.write(HEAD + token("Hel"))
        await asyncio.sleep(30)
        return False

    sleep = SleepRecorder()
    began = time.monotonic()
    async with Upstream(answer) as upstream, make_client() as client:
        events = await stream(client, upstream.url, retry=RetryPolicy(sleep=sleep), timeouts=Timeouts(read=0.3))
    assert error_of(events).kind is ErrorKind.TIMEOUT
    assert sleep.delays == [] and time.monotonic() - began < 5


async def test_the_read_time_out_is_per_read_so_keep_alives_carry_a_long_silence(make_client):
    async def answer(reader, writer):
        writer.write(HEAD)
        for _ in range(12):  # 1.2 s of reasoning, four times the read time-out
            await asyncio.sleep(0.1)
            writer.write(chunk(KEEP_ALIVE))
        writer.write(token("done") + END)
        return True

    async with Upstream(answer) as upstream, make_client() as client:
        assert await stream(client, upstream.url, timeouts=Timeouts(read=0.3)) == [TextDelta("done")]


async def test_each_event_arrives_as_it_is_sent_not_when_the_answer_ends(make_client):
    received = asyncio.Event()

    async def answer(reader, writer):
        writer.write(HEAD + token("first"))
        await writer.drain()
        # The rest is sent only once the client has shown the first token.
        await asyncio.wait_for(received.wait(), 5)
        writer.write(token("second") + END)
        return True

    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
    events = []
    async with Upstream(answer) as upstream, make_client() as client:
        async for event in stream_turn(Endpoint(upstream.url, GOOD_KEY), chat, retry=NO_RETRY, http_client=client):
            events.append(event)
            received.set()
    assert events == [TextDelta("first"), TextDelta("second")]


async def test_a_full_pool_is_a_timeout_after_the_pool_time_out(make_client):
    release = asyncio.Event()

    async def answer(reader, writer):
        writer.write(HEAD + token("held"))
        await writer.drain()
        await release.wait()
        writer.write(END)
        return True

    chat = ChatRequest(model="mimo-v2.5-pro", turns=[UserTurn("hi")])
    async with Upstream(answer) as upstream, make_client(max_connections=1) as client:
        endpoint = Endpoint(upstream.url, GOOD_KEY)
        holder = stream_turn(endpoint, chat, retry=NO_RETRY, http_client=client)
        assert await anext(holder) == TextDelta("held")
        sleep = SleepRecorder()
        events = await stream(client, upstream.url, retry=RetryPolicy(sleep=sleep), timeouts=Timeouts(pool=0.2))
        assert error_of(events).kind is ErrorKind.TIMEOUT
        assert "PoolTimeout" in error_of(events).detail
        assert sleep.delays == [] and len(upstream.requests) == 1
        release.set()
        assert [event async for event in holder] == []
        # The connection came back to the pool: the next answer gets it.
        assert await stream(client, upstream.url, timeouts=Timeouts(pool=1)) == [TextDelta("held")]


async def test_a_peer_that_stops_reading_the_request_is_a_timeout(make_client):
    async def answer(reader, writer):
        await asyncio.sleep(30)
        return False

    # Far more than the kernel buffers on both sides take.
    body = {"model": "mimo-v2.5-pro", "stream": True, "messages": [{"role": "user", "content": "x" * 32_000_000}]}
    began = time.monotonic()
    async with Upstream(answer, read_request=False) as upstream, make_client() as client:
        events = [
            event
            async for event in stream_body(
                Endpoint(upstream.url, GOOD_KEY),
                body,
                retry=NO_RETRY,
                timeouts=Timeouts(connect=1, write=0.3, read=0.3),
                http_client=client,
            )
        ]
    assert error_of(events).kind is ErrorKind.TIMEOUT
    assert time.monotonic() - began < 5


async def test_the_model_list_fails_the_same_way(make_client):
    async with make_client() as client:
        with pytest.raises(MimoError) as refused:
            await list_models(Endpoint(f"http://127.0.0.1:{unused_port()}", GOOD_KEY), http_client=client)
    assert refused.value.kind is ErrorKind.CONNECTION


async def test_the_request_carries_the_key_and_the_stream_headers(make_client):
    async def answer(reader, writer):
        writer.write(HEAD + END)
        return True

    async with Upstream(answer) as upstream, make_client() as client:
        await stream(client, upstream.url)
    [head] = upstream.requests
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "post /v1/chat/completions http/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert headers["authorization"] == f"bearer {GOOD_KEY}".lower()
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    assert headers["host"] == upstream.url.removeprefix("http://")
    assert int(headers["content-length"]) > 0


async def test_cookies_are_kept_once_by_httpx_and_not_again_by_aiohttp(make_client):
    async def answer(reader, writer):
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nset-cookie: lb=one\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + END
        )
        return True

    async with Upstream(answer) as upstream, make_client() as client:
        await stream(client, upstream.url)
        await stream(client, upstream.url)
    cookies = [line for line in upstream.requests[1].split(b"\r\n") if line.lower().startswith(b"cookie:")]
    assert [cookie.lower() for cookie in cookies] == [b"cookie: lb=one"]


async def test_an_answer_streams_over_tls_on_a_reused_connection(make_client, certificates, tls_server):
    async def answer(reader, writer):
        writer.write(HEAD + token("Hel") + token("lo") + END)
        return True

    trusted = ssl.create_default_context(cadata=certificates[0])
    async with Upstream(answer, tls=tls_server) as upstream, make_client(verify=trusted) as client:
        for _ in range(3):
            assert await stream(client, upstream.url) == [TextDelta("Hel"), TextDelta("lo")]
    assert len(upstream.requests) == 3


async def test_a_pinned_name_connects_to_its_checked_address_with_the_name_for_tls_and_host(
    certificates, tls_server, monkeypatch
):
    """mimo.example resolves nowhere; pinned to 127.0.0.1, the server there is reached, the certificate is
    checked against the name (the server's is for mimo.example) and the Host header names it."""

    async def answer(reader, writer):
        writer.write(HEAD + token("Hi") + END)
        return True

    monkeypatch.setattr(transport, "_checked_addresses", {})
    trusted = ssl.create_default_context(cadata=certificates[0])
    async with Upstream(answer, tls=tls_server) as upstream:
        port = upstream.server.sockets[0].getsockname()[1]
        pin_addresses("MIMO.example", ["127.0.0.1"])
        async with httpx.AsyncClient(transport=MimoTransport(verify=trusted)) as client:
            assert await stream(client, f"https://mimo.example:{port}") == [TextDelta("Hi")]
    assert f"host: mimo.example:{port}".encode() in upstream.requests[0].lower()


async def test_a_pinned_name_is_not_looked_up(monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("looked up")

    async def answer(reader, writer):
        writer.write(HEAD + END)
        return True

    monkeypatch.setattr(transport, "_checked_addresses", {})
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    pin_addresses("mimo.example", ["127.0.0.1"])
    async with Upstream(answer) as upstream:
        port = upstream.server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(transport=MimoTransport()) as client:
            await stream(client, f"http://mimo.example:{port}")
    assert len(upstream.requests) == 1


async def test_a_certificate_nobody_vouches_for_is_a_connection_error(make_client, tls_server):
    async def answer(reader, writer):
        writer.write(HEAD + END)
        return True

    async with Upstream(answer, tls=tls_server) as upstream, make_client() as client:
        events = await stream(client, upstream.url)
    assert error_of(events).kind is ErrorKind.CONNECTION
    assert upstream.requests == []


async def test_the_shared_client_reads_through_the_aiohttp_transport(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not environment_proxies()
    client = mimo.shared_http_client()
    assert isinstance(client._transport, MimoTransport)


async def test_behind_a_proxy_from_the_environment_the_shared_client_keeps_httpx_transport(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert environment_proxies()
    client = mimo.shared_http_client()
    assert not isinstance(client._transport, MimoTransport)
    assert any(transport is not None for transport in client._mounts.values())
