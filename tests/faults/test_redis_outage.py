"""Redis stopped for 10 s under 20 streams across two daphne processes, then started again.

The test runs its own redis-server on a port of its own (the machine's Redis
is never touched) and two daphne processes on the test database with the Redis
channel layer on it. Each conversation has two sockets: the one that sent the
message, on one process, and a watcher on the other, which sees the answer
only through Redis. Every answer's text is numbered word by word
(`[[fake:clock]]`), so a lost token shows as a missing number.

Nothing may be lost: every answer is saved whole, every socket saw every word
(live, or in the snapshot it gets once Redis is back) and ends on the whole
answer, and no socket is closed by the app.
"""

import asyncio
import re
import shutil
import socket
import subprocess
import time
from functools import partial

import aiohttp
import pytest
from channels.testing.live import make_application
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.db import connections
from django.test import Client

from accounts.models import ApiKey
from chat.models import Conversation, Message
from tests.browser.conftest import prepare_server_process, stop_live_server

REDIS_SERVER = shutil.which("redis-server")
STREAMS = 20
OUTAGE = 10.0  # seconds Redis stays down
SPEED = 20  # tokens a second: answers of 200 to 390 tokens last 10 to 20 s, so some end during the outage
WORD = re.compile(r"t\d+n(\d+)")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, with nothing saved to disk; stopped and started on one port."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_server():
    if REDIS_SERVER is None:
        pytest.fail("Debian's redis-server is missing: `make test` installs it (apt-get install redis-server).")
    server = RedisServer()
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def serve_on_redis(redis_url):
    """Runs in each forked daphne: the live server's preparation, then the Redis channel layer on our server."""
    prepare_server_process()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 15}]},
        }
    }


@pytest.fixture(scope="module")
def two_processes(redis_server, django_db_setup, django_db_blocker, test_settings):
    servers = []
    for _ in range(2):
        server = DaphneProcess(
            "localhost",
            partial(make_application, static_wrapper=ASGIStaticFilesHandler),
            setup=partial(serve_on_redis, f"redis://127.0.0.1:{redis_server.port}/0"),
        )
        with django_db_blocker.unblock():
            connections.close_all()  # a database connection must not cross a fork
            server.start()
        while not server.ready.wait(timeout=1):
            if not server.is_alive():
                raise RuntimeError("daphne did not start")
        servers.append(server)
    yield [f"localhost:{server.port.value}" for server in servers]
    for server in servers:
        stop_live_server(server)


class Socket:
    """One websocket of the test: every frame it got, with when, and how it ended."""

    def __init__(self, name, conversation_id, length):
        self.name, self.conversation_id, self.length = name, conversation_id, length
        self.frames = []  # (monotonic time, text)
        self.close_code = None  # set if the server closed it

    def words_seen(self):
        return {int(n) for _at, text in self.frames for n in WORD.findall(text)}

    def last_state(self):
        """The answer's status and its words in order, as the last frame that showed the whole message has them."""
        for _at, text in reversed(self.frames):
            if match := re.search(r'<article id="message-\d+" class="message message-assistant" data-status="(\w+)".*?</article>', text, re.S):
                answer = match[0].split('class="message-footer"')[0]  # the footer's copy button holds the text again
                return match[1], [int(n) for n in WORD.findall(answer)]
        return None, []

    def finished(self):
        status, words = self.last_state()
        return status == "complete" and len(words) == self.length


async def keep_reading(ws, sock):
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            sock.frames.append((time.monotonic(), message.data))
    sock.close_code = ws.close_code


async def run_streams(hosts, cookie, conversations, redis_server):
    """The streams, the outage and the wait for every socket to show every answer whole; returns the sockets and times."""
    sockets, readers, senders = [], [], []
    async with aiohttp.ClientSession(cookies={settings.SESSION_COOKIE_NAME: cookie}) as session:
        for index, (conversation_id, length) in enumerate(conversations):
            own, other = hosts[index % 2], hosts[(index + 1) % 2]
            for role, host in (("sender", own), ("watcher", other)):
                ws = await session.ws_connect(f"ws://{host}/ws/conversations/{conversation_id}/", headers={"Origin": f"http://{host}"})
                sock = Socket(f"{role} {index}", conversation_id, length)
                sockets.append(sock)
                readers.append(asyncio.create_task(keep_reading(ws, sock)))
                if role == "sender":
                    senders.append((ws, sock))
        for (ws, _sock), (_id, length) in zip(senders, conversations):
            text = f"Count [[fake:long={length}]] [[fake:speed={SPEED}]] [[fake:clock]]"
            await ws.send_json({"action": "send", "text": text, "model": "mimo-v2.5-pro", "HEADERS": {}})
        for _ in range(300):  # every answer has begun (a minute at most)
            if all(sock.words_seen() for _ws, sock in senders):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)

        stopped_at = time.monotonic()
        redis_server.stop()
        await asyncio.sleep(OUTAGE)
        redis_server.start()
        started_at = time.monotonic()

        for _ in range(1200):  # two minutes at most
            if all(sock.finished() or sock.close_code is not None for sock in sockets):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # anything the app would still do to a socket, such as closing it
        for reader in readers:
            reader.cancel()
    return sockets, stopped_at, started_at


@pytest.mark.django_db(transaction=True)
def test_a_redis_outage_under_twenty_streams_on_two_processes_loses_nothing_and_closes_no_socket(
    two_processes, redis_server, bob, acme, fake_url
):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-redis-outage")
    key.save()
    lengths = [200 + 10 * index for index in range(STREAMS)]
    # Titled, so no title request follows the answers.
    conversations = [(Conversation.objects.create(owner=bob, team=acme, title=f"Stream {i}").pk, n) for i, n in enumerate(lengths)]
    client = Client()
    client.force_login(bob)

    sockets, stopped_at, started_at = asyncio.run(
        run_streams(two_processes, client.cookies[settings.SESSION_COOKIE_NAME].value, conversations, redis_server)
    )

    answers = Message.objects.filter(conversation_id__in=[pk for pk, _length in conversations], role="assistant")
    for _ in range(600):  # the answers end on their own, whatever became of the sockets
        if not answers.filter(status="streaming").exists():
            break
        time.sleep(0.1)
    # No socket closed by the app.
    assert [(sock.name, sock.close_code) for sock in sockets if sock.close_code is not None] == []
    # Every answer saved whole: what MiMo sent is what was saved.
    for conversation_id, length in conversations:
        answer = Message.objects.get(conversation_id=conversation_id, role="assistant")
        assert (answer.status, [int(n) for n in WORD.findall(answer.content)]) == ("complete", list(range(1, length + 1)))
    # Each socket saw every word, live or in a snapshot, and ends on the whole answer.
    for sock in sockets:
        assert sock.words_seen() == set(range(1, sock.length + 1)), sock.name
        assert sock.last_state() == ("complete", list(range(1, sock.length + 1))), sock.name

    # What happened, for README's figures.
    during = [sock for sock in sockets if sock.name.startswith("sender") and any(stopped_at < at < started_at for at, _ in sock.frames)]
    watchers_back = [
        next(at for at, _text in sock.frames if at > started_at) - started_at
        for sock in sockets
        if sock.name.startswith("watcher") and any(at > started_at for at, _ in sock.frames)
    ]
    ended_during = sum(
        1 for sock in sockets if sock.name.startswith("sender")
        and any(stopped_at < at < started_at and 'data-status="complete"' in text for at, text in sock.frames)
    )
    words = sum(lengths)
    print(
        f"\nRedis down {OUTAGE:.0f} s under {STREAMS} streams on 2 processes: {words} words saved of {words} sent, "
        f"{len(sockets)} sockets, 0 closed; {len(during)} senders kept streaming through the outage "
        f"({ended_during} answers ended during it); watchers caught up {max(watchers_back):.1f} s at most after Redis returned"
    )
