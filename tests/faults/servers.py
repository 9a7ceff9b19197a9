"""Real server processes for the fault tests, and a browser's socket to mimoweb.

mimoweb and the fake MiMo server each run as in production, under the daphne
command in a process of their own (not a fork of the test process), so a
restart imports and starts everything again.
"""

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.test import Client



def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port, timeout=30.0):
    """Blocks: a test's event loop has nothing else to do meanwhile (and a browser test has none)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port}") from None
            time.sleep(0.02)


class Server:
    """An ASGI application served by the daphne command, as in production, on a port it keeps across
    restarts; `kill()` is `kill -9`. mimoweb runs on the test's database; `env` adds to its environment."""

    def __init__(self, application, log_path: Path, env=None):
        self.application = application
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process = None

    def start(self):
        env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "tests.faults.server_settings",
            "MIMOWEB_FAULTS_DATABASE": str(settings.DATABASES["default"]["NAME"]),
        } | self.env
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), self.application]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self):
        """As `kill -9`; then reaped, as its supervisor would (a zombie still has its pid)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self):
        return self.log_path.read_text(errors="replace")


async def close_the_orm_connection():
    """The async ORM's thread keeps its connection after the test: PostgreSQL would not drop the test database."""
    await sync_to_async(close_connections)()


def close_connections():
    connections.close_all()  # of the thread it runs in


def session_cookie(user):
    """A signed-in browser's cookie for the user: the server reads the session from the database."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class Browser:
    """A page's socket to one conversation, speaking what the composer sends; it reads the frames."""

    def __init__(self, server_url, conversation_id, cookie):
        self.server_url = server_url
        self.path = f"/ws/conversations/{conversation_id}/"
        self.headers = {"Cookie": cookie, "Origin": server_url}
        self.http = None
        self.socket = None
        self.last_notice = ""

    async def open(self):
        self.http = aiohttp.ClientSession(headers=self.headers)
        self.socket = await self.http.ws_connect(self.server_url.replace("http", "ws", 1) + self.path)
        return self

    async def close(self):
        if self.socket is not None:
            await self.socket.close()
        if self.http is not None:
            await self.http.close()

    async def send(self, **fields):
        await self.socket.send_json(fields | {"HEADERS": {}})

    async def send_message(self, text):
        """Send as the composer does; True when admitted, False when refused (a notice says why)."""
        await self.send(action="send", text=text, model="mimo-v2.5-pro")
        while True:
            frame = await self.frame()
            if "data-accepted" in frame:
                return True
            self.last_notice = notice_text(frame)
            if self.last_notice:
                return False

    async def frame_with(self, mark):
        """Read frames until one holds `mark`; returns it."""
        while mark not in (frame := await self.frame()):
            pass
        return frame

    async def frame(self, timeout=30.0):
        async with asyncio.timeout(timeout):
            message = await self.socket.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"the socket ended: {message.type.name}")
        return message.data

    async def page(self, path):
        async with self.http.get(self.server_url + path) as response:
            return response.status, await response.text()


def notice_text(html):
    """The words of a notice frame, "" for the empty one that clears it."""
    start = html.find('class="notice"')
    if start < 0:
        return ""
    body = html[html.find(">", start) + 1 : html.find("</div>", start)]
    return body.strip()


async def wait_for(check, what, timeout=30.0):
    """Poll `check` (async, returning a value or None) until it gives a value."""
    deadline = time.monotonic() + timeout
    while (value := await check()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def summary(seconds):
    """p50 and max of a list of durations, in seconds, for the report."""
    return f"p50 {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s (n={len(seconds)})"


def report(capsys, title, figures):
    """The figures, in the test run's output whatever its capture (README's Faults section quotes them)."""
    with capsys.disabled():
        print(f"\n{title}: " + "; ".join(figures))


def article(html, message_id):
    """A message's <article> in a page, or "" when the page does not show it."""
    start = html.find(f'<article id="message-{message_id}"')
    if start < 0:
        return ""
    end = html.find("<article ", start + 1)
    return html[start : end if end > 0 else len(html)]
