"""How much the app adds to MiMo's stream: delay, lost tokens, CPU and bytes per token, with N browsers at once.

Starts a MiMo stand-in (bench/upstream.py, or the fake with `--upstream fake`)
and the app (embedded defaults: SQLite, in-memory channel layer, one daphne
process; or several processes on PostgreSQL and Redis) on free ports with a
throwaway data folder, opens N websocket "browsers", each asking for a clocked
answer on its own conversation, and times every token from the moment the
upstream wrote it to the moment a frame showing it arrived. After each run the
same answers are read again by a bare reader (chat.mimo alone, no app), so the
app's CPU per token has its floor beside it. See bench/README.md.
"""

import argparse
import asyncio
import base64
import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import upstream as minimal  # noqa: E402

VENV_BIN = Path(sys.executable).parent
MODEL = "mimo-v2.5-pro"
SECRET = "sk-bench-key"
# A clock token as the upstreams write it: Unix ms, then its number.
STAMP = re.compile(r"t(\d{13})n(\d+)")
ENDED = re.compile(r'class="message message-assistant" data-status="(complete|error|stopped|interrupted)"')
TITLED = re.compile(r'hx-swap-oob="innerHTML:#conversation-[0-9a-f-]+-title"')  # the frame that brings a new title
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# What `--app` serves: mimoweb, or the floor under it (bench/relay.py: read and relay, nothing else).
APPLICATIONS = {"mimoweb": "mimoweb.asgi:application", "relay": "bench.relay:application"}

# The issue's targets (issue 10), printed beside the figures.
CASE_CPU_TARGET = 1.5  # a code, table or list answer's app CPU per token, over prose's
EXTRA_TIME_TARGET = 10  # % more time to reach the browser than the upstream took to send it
READER_TARGET = 2.0  # app CPU per token over the bare reader's, at 100 streams
DELAY_TARGET_MS = 250  # p99 added delay, 200 streams at 50 tokens/s
LONG_SHORT_TARGET = 1.2  # per-token CPU of the 20,000-token answer over the 500-token one


# --- Processes --------------------------------------------------------------------------


def free_port():
    # Inexact on purpose: the port could be taken between here and the server's bind; fine for a bench.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent():
    """Runs in the child before exec: if the bench dies, even by SIGKILL, the servers get SIGTERM."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/<pid>/stat (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def has_loaded(pid, fragment):
    """Whether a process has a file whose path contains `fragment` mapped: which extensions it imported."""
    try:
        return fragment in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def spawn(name, port, command, log, env=None):
    """Starts a server and waits until it listens on 127.0.0.1:port (at most 30 s)."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
    )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start (status {process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if time.monotonic() > deadline:
                stop_processes([process])
                raise RuntimeError(f"{name} did not listen on port {port} within 30 s") from None
            time.sleep(0.1)


def start_upstream(port, log, env=None):
    """bench/upstream.py on 127.0.0.1:port."""
    return spawn("upstream", port, [sys.executable, ROOT / "bench" / "upstream.py", "--port", str(port)], log, env)


def stop_processes(processes):
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Servers:
    """The upstream and the app's processes, stopped on leaving the `with`, whatever happens."""

    def __init__(self, data_dir, *, apps=("mimoweb",), upstream="minimal", processes=1, database_url=None, redis_url=None):
        self.data_dir = data_dir
        self.upstream = upstream
        self.upstream_port = free_port()
        # Each app's processes, all started at once; `select` says which one the runs measure.
        self.apps = {
            app: [(f"{app}{i}" if processes > 1 else app, free_port()) for i in range(1, processes + 1)] for app in apps
        }
        self.select(apps[0])
        self.processes = {}
        self.env = environment(data_dir, database_url, redis_url)
        self.env["MIMOWEB_RELAY_UPSTREAM"] = f"http://127.0.0.1:{self.upstream_port}"

    def __enter__(self):
        try:
            # As `make run` does: with DEBUG off, pages (--page-every) need the static files collected.
            for command in ("migrate", "collectstatic"):
                manage = [sys.executable, "manage.py", command, "--no-input", "-v", "0"]
                subprocess.run(manage, cwd=ROOT, env=self.env, check=True)
            if self.upstream == "minimal":
                self.processes["upstream"] = start_upstream(self.upstream_port, self.log("upstream"), self.env)
            else:
                self.start("upstream", self.upstream_port, "chat.mimo.fake:application")
            for app, processes in self.apps.items():
                for name, port in processes:
                    self.start(name, port, APPLICATIONS[app])
        except BaseException:
            self.stop()
            raise
        return self

    def select(self, app):
        self.app = app
        self.app_names = [name for name, _ in self.apps[app]]
        self.app_ports = [port for _, port in self.apps[app]]

    def log(self, name):
        return open(self.data_dir / f"{name}.log", "wb")

    def start(self, name, port, application):
        command = [VENV_BIN / "daphne", "-b", "127.0.0.1", "-p", str(port), application]
        # As the Dockerfile runs it: a long answer's snapshot is more than daphne's default 1 MiB.
        command[1:1] = ["--websocket-max-message-size", "16777216", "--websocket-max-frame-size", "16777216"]
        self.processes[name] = spawn(name, port, command, self.log(name), self.env)

    def pid(self, name):
        return self.processes[name].pid

    def cpu(self):
        seconds = {name: cpu_seconds(self.processes[name].pid) for name in ["upstream", *self.app_names]}
        seconds["app"] = sum(seconds[name] for name in self.app_names)
        return seconds | {"bench": time.process_time()}

    def stop(self):
        stop_processes(list(self.processes.values()))

    def __exit__(self, *exc):
        self.stop()


def environment(data_dir, database_url=None, redis_url=None):
    """The embedded defaults, in a data folder of the bench's own, whatever the developer's shell has set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "DATABASE_URL_FILE", "REDIS_URL", "REDIS_URL_FILE", "MIMOWEB_DEMO")
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "mimoweb.settings",
        "MIMOWEB_DATA_DIR": str(data_dir),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "MIMOWEB_UPSTREAM_ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# --- A throwaway PostgreSQL database -------------------------------------------------------


def database_name(url):
    name = urlsplit(url).path.lstrip("/")
    # The bench drops this database at the end: refuse any name that could be someone's data.
    if not re.fullmatch(r"mimoweb_bench[a-z0-9_]*", name):
        raise SystemExit(f"--database-url must name a database called mimoweb_bench…, not {name!r}: it is dropped")
    return name


def maintenance_url(url):
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def create_database(url):
    """Creates the database the URL names (dropping a leftover of an earlier bench first)."""
    import psycopg

    name = database_name(url)
    with psycopg.connect(maintenance_url(url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(url):
    import psycopg

    with psycopg.connect(maintenance_url(url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


# --- Users, keys and conversations, straight through Django -----------------------------


class Fixture:
    """One user in one team with a key for the upstream; one session cookie serves every browser."""

    def __init__(self, upstream_port):
        from django.test import Client

        from accounts.models import ApiKey, Membership, Team, User

        self.team = Team.objects.create(name="Bench")
        self.user = User.objects.create_user("bench", "bench@example.com", "bench password that nobody uses")
        Membership.objects.create(team=self.team, user=self.user, role=Membership.Role.ADMIN)
        base_url = f"http://127.0.0.1:{upstream_port}"
        key = ApiKey(team=self.team, label="Bench MiMo", base_url=base_url, api_format="openai")
        key.set_secret(SECRET)
        key.full_clean()
        key.save()
        client = Client()
        client.force_login(self.user)
        self.session = client.cookies["sessionid"].value

    def conversations(self, count, titled=False):
        """New conversations; `titled` ones are as a conversation's later answers find them, already
        named, so no title is asked of MiMo after the answer (a first answer's extra request)."""
        from chat.models import Conversation

        title = "A conversation with a title" if titled else ""
        return [Conversation.objects.create(owner=self.user, team=self.team, title=title).pk for _ in range(count)]


def saved_answer(conversation_id):
    from chat.models import Message

    return Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT).order_by("pk").last()


# --- A browser: the smallest RFC 6455 client that does the job ---------------------------


class Browser:
    """One tab on one conversation, on one app process; keeps every text frame with the time it arrived.

    Frames are only stored while streaming and searched after the run, so the
    bench's own work does not delay the arrival times of other sockets' frames.
    Arrival times are time.time(), the clock the upstream stamps with (same machine).
    """

    def __init__(self, conversation_id, port):
        self.conversation_id = conversation_id
        self.port = port
        self.frames = []  # (arrival time.time(), payload str)
        self.bytes = 0
        self.status = "no answer"
        self.answer_frames = None  # how many of the frames were the answer's, up to its end (then its title)

    async def open(self, session):
        port = self.port
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/conversations/{self.conversation_id}/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: sessionid={session}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.writer.write(request.encode())
        status_line = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0].decode()
        if " 101 " not in status_line:
            raise RuntimeError(f"websocket refused: {status_line}")

    async def send_json(self, text):
        self.writer.write(client_frame(0x1, text.encode()))
        await self.writer.drain()

    async def read_answer(self, deadline, until_titled=False):
        """Read frames until the answer ends (or the socket closes, or time runs out); `until_titled`: and
        until the conversation's title arrives, which the app asks for after the answer, so that the run's
        CPU holds the title's too."""
        titled = not until_titled
        try:
            async with asyncio.timeout_at(deadline):
                while (payload := await self.read_message()) is not None:
                    self.frames.append((time.time(), payload))
                    self.bytes += len(payload)
                    if ended := ENDED.search(payload):
                        self.status, self.answer_frames = ended[1], len(self.frames)
                    titled = titled or bool(TITLED.search(payload))
                    if titled and self.answer_frames is not None:
                        return
                self.status = "socket closed"
        except TimeoutError:
            self.status = "timed out"
        except (ConnectionError, asyncio.IncompleteReadError):
            self.status = "socket closed"

    async def read_message(self):
        parts = []
        while True:
            head = await self.reader.readexactly(2)
            final, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2))
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)  # a server's frames are never masked
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self.writer.write(client_frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if final:
                return b"".join(parts).decode()

    async def close(self):
        try:
            self.writer.write(client_frame(0x8, (1000).to_bytes(2)))
            await self.writer.drain()
        except ConnectionError:
            pass
        self.writer.close()


def client_frame(opcode, payload):
    """One final frame, masked as RFC 6455 requires of a client."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 2**16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2)
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8)
    mask = os.urandom(4)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload) ^ int.from_bytes(repeated)).to_bytes(length) if length else b""
    return header + mask + masked


def run_loop(coroutine):
    """The bench's browsers on uvloop when there is one: the bench shares the machine, so it should cost little."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return asyncio.run(coroutine, loop_factory=uvloop.new_event_loop)


# --- One run: N browsers at once ------------------------------------------------------------


@dataclass
class Stream:
    """What one browser saw, read after the run."""

    browser: Browser
    tokens: int
    first_seen: dict = field(default_factory=dict)  # seq → (arrival s, emitted ms)

    def __post_init__(self):
        # The first frame that shows a token is when the reader could see it.
        for arrival, payload in self.browser.frames:
            for match in STAMP.finditer(payload):
                self.first_seen.setdefault(int(match[2]), (arrival, int(match[1])))

    def delays_ms(self):
        return [arrival * 1000 - emitted for arrival, emitted in self.first_seen.values()]

    def steady_delays_ms(self):
        """The delays of the tokens written a second or more after the stream's first: its start left out."""
        if 1 not in self.first_seen:
            return []
        start = self.first_seen[1][1]
        return [arrival * 1000 - emitted for arrival, emitted in self.first_seen.values() if emitted >= start + 1000]

    def extra_time(self):
        """How much longer than the upstream the answer took to reach the browser, as a fraction; None if unknown.

        From the first token's emission to the last token's arrival, over the
        first token's emission to the last one's.
        """
        first, last = self.first_seen.get(1), self.first_seen.get(self.tokens)
        if first is None or last is None or last[1] <= first[1]:
            return None
        return (last[0] * 1000 - first[1]) / (last[1] - first[1]) - 1

    def frames_per_second(self):
        # From the first frame after sending to the answer's last: the stream's own lifetime.
        times = [arrival for arrival, _ in self.browser.frames[: self.browser.answer_frames]]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


@dataclass
class Result:
    case: str
    streams: int
    rate: float
    tokens: int
    delays: list
    steady_delays: list  # ... of the tokens after each stream's first second
    lost: int
    db_equal: int | None  # None where nothing is saved (the relay)
    statuses: dict
    cpu: dict  # process → CPU seconds during the streaming
    wall: float
    delivered: int
    bytes: int
    fps: float
    extras: list  # extra_time() of each stream that got its first and last token, sorted
    ramp: float  # seconds over which the answers were asked for; 0: all at once
    app_names: list
    reader: dict | None = None  # the bare reader's figures for the same answers
    pages: list = field(default_factory=list)  # (status, ms) of each page asked for during the run (--page-every)
    runs: int = 1  # more than one when short runs are merged

    def ok(self):
        """What --find-max asks of a run: p99 within target, nothing lost, every answer saved as sent."""
        return (
            percentile(self.delays, 99) <= DELAY_TARGET_MS
            and self.lost == 0
            and self.db_equal in (None, self.streams)
            and self.statuses == {"complete": self.streams}
        )


def skeleton(text):
    """The text with the times taken out: numbers and whitespace must still match."""
    return STAMP.sub(lambda match: f"n{match[2]}", text)


def ask(upstream, case, tokens, rate):
    """What a browser types to get this answer from this upstream."""
    if upstream == "fake":
        return f"[[fake:clock]] [[fake:long={tokens}]] [[fake:speed={rate:g}]]"
    return minimal.directive(case, tokens, rate)


def expected_answer(servers, case, tokens, text):
    """What every stream should end up saving, but for the times."""
    if servers.upstream == "minimal":
        return minimal.skeleton_text(minimal.Answer(case, tokens))
    # The fake: its answer unstreamed.
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "thinking": {"type": "disabled"}}
    response = httpx.post(
        f"http://127.0.0.1:{servers.upstream_port}/v1/chat/completions",
        json=body,
        headers={"api-key": SECRET},
        timeout=60,
    )
    response.raise_for_status()
    return skeleton(response.json()["choices"][0]["message"]["content"])


def run(servers, fixture, *, streams, rate, tokens, case="prose", ramp=0.0, titled=False, page_every=0.0):
    text = ask(servers.upstream, case, tokens, rate)
    expected = expected_answer(servers, case, tokens, text)
    conversation_ids = fixture.conversations(streams, titled)
    # Browsers take the app's processes in turn; each answer is made by the process its browser sent to.
    ports = servers.app_ports
    browsers = [Browser(pk, ports[i % len(ports)]) for i, pk in enumerate(conversation_ids)]
    cpu_before, cpu_after, wall, pages = run_loop(
        stream_all(
            servers, fixture.session, browsers, text, deadline=tokens / rate + ramp + 60, ramp=ramp,
            until_titled=servers.app == "mimoweb" and not titled, page_every=page_every,
        )
    )

    results = [Stream(browser, tokens) for browser in browsers]
    db_equal = 0 if servers.app == "mimoweb" else None
    for result in results if db_equal is not None else []:
        message = saved_answer(result.browser.conversation_id)
        if message is None:
            continue
        saved = {int(match[2]): int(match[1]) for match in STAMP.finditer(message.content)}
        times_match = all(saved.get(seq) == emitted for seq, (_, emitted) in result.first_seen.items())
        db_equal += skeleton(message.content) == expected and times_match
    statuses = {}
    for browser in browsers:
        statuses[browser.status] = statuses.get(browser.status, 0) + 1
    delivered = sum(len(result.first_seen) for result in results)
    return Result(
        case=case,
        streams=streams,
        rate=rate,
        tokens=tokens,
        delays=sorted(delay for result in results for delay in result.delays_ms()),
        steady_delays=sorted(delay for result in results for delay in result.steady_delays_ms()),
        lost=streams * tokens - delivered,
        db_equal=db_equal,
        statuses=statuses,
        cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_before},
        wall=wall,
        delivered=delivered,
        bytes=sum(browser.bytes for browser in browsers),
        fps=sum(result.frames_per_second() for result in results) / len(results),
        extras=sorted(extra for result in results if (extra := result.extra_time()) is not None),
        app_names=servers.app_names,
        ramp=ramp,
        pages=pages,
    )


async def stream_all(servers, session, browsers, text, deadline, ramp=0.0, until_titled=False, page_every=0.0):
    # At most 50 handshakes at a time: daphne's listen backlog is 50.
    handshakes = asyncio.Semaphore(50)

    async def open_one(browser):
        async with handshakes:
            await browser.open(session)

    await asyncio.gather(*(open_one(browser) for browser in browsers))
    await settled(servers)
    # What the composer sends; no "thinking" field means thinking off (a form checkbox).
    message = json.dumps({"action": "send", "text": text, "model": MODEL, "HEADERS": {}})
    cpu_before, started = servers.cpu(), time.monotonic()

    until = asyncio.get_running_loop().time() + deadline

    async def ask_and_read(browser, at):
        await asyncio.sleep(at)
        await browser.send_json(message)
        # At once: a frame's time is when it is read, so a browser must not wait for the others' sends.
        await browser.read_answer(until, until_titled)

    pages = []
    prober = asyncio.create_task(load_pages(browsers[0], session, page_every, pages)) if page_every else None
    # All at once, or one after another spread evenly over `ramp` seconds.
    await asyncio.gather(*(ask_and_read(browser, ramp * i / len(browsers)) for i, browser in enumerate(browsers)))
    wall = time.monotonic() - started
    cpu_after = servers.cpu()
    if prober is not None:
        prober.cancel()
    await asyncio.gather(*(browser.close() for browser in browsers))
    return cpu_before, cpu_after, wall, pages


async def load_pages(browser, session, every, pages):
    """What a person opening a conversation waits for while the answers stream: the first browser's
    conversation page (a view in a thread, its queries, its template), every `every` seconds: (status, ms) each."""
    url = f"http://127.0.0.1:{browser.port}/chats/{browser.conversation_id}/"
    async with httpx.AsyncClient(cookies={"sessionid": session}, timeout=30) as client:
        while True:
            started = time.monotonic()
            response = await client.get(url)
            pages.append((response.status_code, (time.monotonic() - started) * 1000))
            await asyncio.sleep(every)


def pages_line(case, streams, pages):
    """The --page-every figures of a run; a page that did not load is counted with its status, not timed."""
    loaded = sorted(ms for status, ms in pages if status == 200)
    refused = [status for status, _ms in pages if status != 200]
    line = f"{case}, {streams} streams: {len(loaded)} conversation pages loaded meanwhile"
    if loaded:
        line += (
            f", p50 {percentile(loaded, 50):.0f} ms, p95 {percentile(loaded, 95):.0f} ms, max {loaded[-1]:.0f} ms"
        )
    if refused:
        line += f"; {len(refused)} not loaded (status {', '.join(map(str, sorted(set(refused))))})"
    return line


async def settled(servers, idle_share=0.1, longest=10):
    """Wait until the app's processes are idle: the consumers have finished connecting.

    Each connection costs the app some milliseconds (session, user, snapshot,
    meters); at 200 sockets that is longer than a fixed pause, and the answers'
    clock would start while the app still works on connections.
    """
    deadline = time.monotonic() + longest
    before, quiet = servers.cpu()["app"], 0
    while quiet < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = servers.cpu()["app"]
        quiet = quiet + 1 if now - before <= idle_share * 0.1 * len(servers.app_names) else 0
        before = now


def bare_reader(servers, result, loop):
    """The same answers read by chat.mimo alone, with the app's transport, in a process of its own.

    bench/client_floor.py's `mimo` reader: `chat.mimo.stream_turn` on chat.mimo's shared client.
    """
    command = [
        sys.executable, ROOT / "bench" / "client_floor.py", "--worker", "mimo",
        "--port", str(servers.upstream_port), "--streams", str(result.streams),
        "--text", ask(servers.upstream, result.case, result.tokens, result.rate), "--loop", loop,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=result.tokens / result.rate * 3 + 120
        )
    except subprocess.TimeoutExpired:
        print("the bare reader did not finish in time", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"the bare reader failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def app_loop(servers):
    """uvloop if the app's first process has it loaded (then the bare reader runs on it too), else asyncio."""
    return "uvloop" if has_loaded(servers.pid(servers.app_names[0]), "/uvloop/") else "asyncio"


def find_max(measure, *, start, limit, max_runs, budget_s):
    """The largest N whose run is ok(): doubling from `start`, then halving the gap; bounded in runs and time.

    Returns (largest ok N or 0, smallest failing N or None, the runs).
    """
    good, bad, runs = 0, None, []
    n, deadline = start, time.monotonic() + budget_s
    while len(runs) < max_runs and time.monotonic() < deadline:
        result = measure(n)
        runs.append(result)
        if result.ok():
            good = n
        else:
            bad = n
        if bad is None:
            if n >= limit:
                break
            n = min(n * 2, limit)
        else:
            # Within 10 % (or 5 streams) of the edge is close enough on a noisy machine.
            if bad - good <= max(5, good // 10):
                break
            n = (good + bad) // 2
    return good, bad, runs


# --- Reporting ------------------------------------------------------------------------------


def percentile(ordered, p):
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def per_token_us(result, process="app"):
    return result.cpu[process] / result.delivered * 1e6 if result.delivered else math.nan


def reader_per_token_us(result):
    r = result.reader
    return r["cpu"] / r["tokens"] * 1e6 if r and r["tokens"] else math.nan


def figure(value, spec=".0f"):
    """A number for a table cell; a dash when it was not measured."""
    return "–" if math.isnan(value) else format(value, spec)


def per_token_bytes(result):
    return result.bytes / result.delivered if result.delivered else math.nan


def mark(ok):
    return "✓" if ok else "✗"


def extra_percent(result, p):
    return percentile(result.extras, p) * 100


def shares(r):
    """CPU % of each process over the run, 100 = one core; several app processes as a sum."""
    app = "+".join(f"{r.cpu[name] / r.wall * 100:.0f}" for name in r.app_names)
    return f"{app} / {r.cpu['upstream'] / r.wall * 100:.0f} / {r.cpu['bench'] / r.wall * 100:.0f}"


def saved(r):
    return "–" if r.db_equal is None else f"{r.db_equal}/{r.streams}"


def how_they_ended(r):
    return ", ".join(f"{count} {status}" for status, count in sorted(r.statuses.items()))


def streams_table(results):
    lines = [
        "| case | streams | asked over s | tok/s | tokens | delay p50 ms | p99 ms | max ms | p99 after 1 s ms | lost | DB = sent | ended | "
        "app CPU µs/tok | bare reader µs/tok | bytes/tok | frames/s/stream | extra time % p50 / max "
        "| CPU % app / upstream / bench |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ended = how_they_ended(r)
        lines.append(
            f"| {r.case} | {r.streams} | {r.ramp:g} | {r.rate:g} | {r.tokens} | {percentile(r.delays, 50):.0f} "
            f"| {percentile(r.delays, 99):.0f} | {percentile(r.delays, 100):.0f} | {figure(percentile(r.steady_delays, 99))} "
            f"| {r.lost} | {saved(r)} "
            f"| {ended} | {per_token_us(r):.0f} | {figure(reader_per_token_us(r))} | {per_token_bytes(r):.0f} "
            f"| {r.fps:.1f} | {figure(extra_percent(r, 50), '.1f')} / {figure(extra_percent(r, 100), '.1f')} "
            f"| {shares(r)} |"
        )
    return "\n".join(lines)


def cases_table(results):
    """Each case against prose at the same N, in the same run."""
    lines = [
        f"| case | streams | app CPU µs/tok | × prose (target ≤ {CASE_CPU_TARGET:g}×) "
        f"| extra time % p50 / max (target ≤ {EXTRA_TIME_TARGET} %) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        prose = next((p for p in results if p.case == "prose" and p.streams == r.streams), None)
        ratio = per_token_us(r) / per_token_us(prose) if prose else math.nan
        within = extra_percent(r, 100) <= EXTRA_TIME_TARGET
        lines.append(
            f"| {r.case} | {r.streams} | {per_token_us(r):.0f} "
            f"| {ratio:.2f}× {mark(ratio <= CASE_CPU_TARGET) if r.case != 'prose' else ''} "
            f"| {extra_percent(r, 50):.1f} / {extra_percent(r, 100):.1f} {mark(within)} |"
        )
    return "\n".join(lines)


def reader_table(results):
    lines = [
        f"| case | streams | app CPU µs/tok | bare reader µs/tok | app / reader (target ≤ {READER_TARGET:g}× "
        "at 100 streams) | reader CPU % of a core | reader lag p99 ms | reader took |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.reader is None:
            continue
        ratio = per_token_us(r) / reader_per_token_us(r)
        lines.append(
            f"| {r.case} | {r.streams} | {per_token_us(r):.0f} | {reader_per_token_us(r):.0f} "
            f"| {ratio:.2f}× {mark(ratio <= READER_TARGET)} | {100 * r.reader['cpu'] / r.reader['wall']:.0f} "
            f"| {r.reader['lag_p99']:.0f} | {r.reader['wall']:.1f} s / {r.tokens / r.rate:.1f} s |"
        )
    return "\n".join(lines)


def comparison_table(case, long, short):
    ratio = per_token_us(long) / per_token_us(short)
    lines = [
        f"| {case} answer | tokens delivered | ended | bytes/tok | app CPU µs/tok |",
        "|---|---:|---|---:|---:|",
        f"| {long.tokens} tokens × 1 | {long.delivered} | {', '.join(long.statuses)} | {per_token_bytes(long):.0f} "
        f"| {per_token_us(long):.0f} |",
        f"| {short.tokens} tokens × {short.runs} | {short.delivered} | {', '.join(short.statuses)} "
        f"| {per_token_bytes(short):.0f} | {per_token_us(short):.0f} |",
        f"| ratio long / short (target ≤ {LONG_SHORT_TARGET:g}×) | | | "
        f"{per_token_bytes(long) / per_token_bytes(short):.2f}× | {ratio:.2f}× {mark(ratio <= LONG_SHORT_TARGET)} |",
    ]
    return "\n".join(lines)


def find_max_table(good, bad, runs, limit, processes):
    lines = [
        f"Largest N with p99 ≤ {DELAY_TARGET_MS} ms, nothing lost and every answer saved as sent, "
        f"{processes} app process{'es' if processes > 1 else ''}"
        + (f", the answers asked for over {runs[0].ramp:g} s" if runs and runs[0].ramp else ", the answers asked for at once")
        + ": "
        + (f"≥ {good} (the limit asked)" if bad is None and good >= limit else f"{good}")
        + (f" (fails at {bad})" if bad is not None else ""),
        "",
        "| streams | delay p99 ms | p99 after 1 s ms | lost | DB = sent | ended | ok |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        ended = how_they_ended(r)
        lines.append(
            f"| {r.streams} | {percentile(r.delays, 99):.0f} | {figure(percentile(r.steady_delays, 99))} | {r.lost} "
            f"| {saved(r)} | {ended} "
            f"| {mark(r.ok())} |"
        )
    return "\n".join(lines)


def targets(results, comparisons, found):
    """The issue's targets that this run measured, each with its figure."""
    lines = []
    for r in results:
        prose = next((p for p in results if p.case == "prose" and p.streams == r.streams), None)
        if r.case != "prose" and prose:
            ratio = per_token_us(r) / per_token_us(prose)
            lines.append(
                f"- {r.case}, {r.streams} streams: app CPU {ratio:.2f}× prose's (≤ {CASE_CPU_TARGET:g}×) "
                f"{mark(ratio <= CASE_CPU_TARGET)}; reaches the browser within {extra_percent(r, 100):.1f} % "
                f"of the upstream's time (≤ {EXTRA_TIME_TARGET} %) {mark(extra_percent(r, 100) <= EXTRA_TIME_TARGET)}"
            )
    for r in results:
        if r.reader is not None and r.streams == 100:
            ratio = per_token_us(r) / reader_per_token_us(r)
            lines.append(
                f"- {r.case}, 100 streams: app CPU per token {ratio:.2f}× the bare reader's (≤ {READER_TARGET:g}×) "
                f"{mark(ratio <= READER_TARGET)}"
            )
    for r in results:
        if r.streams == 200 and r.rate == 50:
            p99 = percentile(r.delays, 99)
            lines.append(
                f"- {r.case}, 200 streams at 50 tok/s: p99 added delay {p99:.0f} ms (≤ {DELAY_TARGET_MS}) "
                f"{mark(p99 <= DELAY_TARGET_MS)}, {r.lost} tokens lost {mark(r.lost == 0)}, "
                f"saved = sent {saved(r)} {mark(r.db_equal in (None, r.streams))}"
            )
    for case, long, short in comparisons:
        ratio = per_token_us(long) / per_token_us(short)
        lines.append(
            f"- {case}: the {long.tokens}-token answer costs {ratio:.2f}× per token the {short.tokens}-token one's "
            f"(≤ {LONG_SHORT_TARGET:g}×) {mark(ratio <= LONG_SHORT_TARGET)}"
        )
    if found is not None:
        good, bad, processes = found
        lines.append(f"- largest N with p99 ≤ {DELAY_TARGET_MS} ms on {processes} process(es): {good}")
    return "\n".join(["Targets (issue 10) this run measured:", *lines]) if lines else ""


def merged(results):
    """Several short runs as one, so the 10 ms CPU ticks average out."""
    statuses = {}
    for r in results:
        for status, count in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return replace(
        results[0],
        runs=len(results),
        delivered=sum(r.delivered for r in results),
        bytes=sum(r.bytes for r in results),
        cpu={name: sum(r.cpu[name] for r in results) for name in results[0].cpu},
        statuses=statuses,
    )


# --- Command line ----------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--streams", type=int, nargs="*", help="browsers at once, a run each (default 1 100 200; none with --find-max)"
    )
    parser.add_argument("--case", nargs="+", choices=minimal.CASES, default=["prose"], help="answer shapes, a run each")
    parser.add_argument("--rate", type=float, default=50, help="tokens per second per stream")
    parser.add_argument("--tokens", type=int, default=500, help="tokens per answer")
    parser.add_argument(
        "--ramp", type=float, default=0, help="ask for the N answers one after another over this many seconds (0: at once)"
    )
    parser.add_argument("--no-reader", action="store_true", help="skip the bare reader after each run")
    parser.add_argument(
        "--titled", action="store_true",
        help="conversations already titled, as for a conversation's later answers: no title asked after each answer",
    )  # fmt: skip
    parser.add_argument("--compare-rate", type=float, default=2000, help="tokens per second for the long/short runs")
    parser.add_argument("--compare-case", nargs="+", choices=minimal.CASES, default=["prose", "code"])
    parser.add_argument("--long-tokens", type=int, default=20_000)
    parser.add_argument("--short-tokens", type=int, default=500)
    parser.add_argument("--short-runs", type=int, default=10, help="short answers in a row, for steadier CPU figures")
    parser.add_argument("--no-compare", action="store_true", help="skip the long/short comparison")
    parser.add_argument("--find-max", action="store_true", help="look for the largest N with p99 within target")
    parser.add_argument("--find-max-from", type=int, default=50, help="the first N tried")
    parser.add_argument("--find-max-limit", type=int, default=1000, help="the largest N tried")
    parser.add_argument("--find-max-runs", type=int, default=8, help="at most this many runs")
    parser.add_argument("--find-max-minutes", type=float, default=20, help="no new run after this long")
    parser.add_argument("--processes", type=int, default=1, help="app processes; more than one needs the two URLs")
    parser.add_argument("--database-url", help="postgres://…/mimoweb_bench…: created, migrated, dropped at the end")
    parser.add_argument("--redis-url", help="redis://127.0.0.1:6379/N: the channel layer; use a db nobody else uses")
    parser.add_argument(
        "--upstream", choices=["minimal", "fake"], default="minimal", help="fake: chat.mimo.fake, prose only"
    )
    parser.add_argument(
        "--app", nargs="+", choices=APPLICATIONS, default=["mimoweb"],
        help="what to measure, each in turn in this run: mimoweb, or relay (the floor: bench/relay.py)",
    )  # fmt: skip
    parser.add_argument(
        "--page-every", type=float, default=0,
        help="load the first browser's conversation page this often (seconds) during each run, and print its times",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the data folder (database and server logs)")
    args = parser.parse_args()
    if args.processes > 1 and not (args.database_url and args.redis_url):
        # SQLite would do, but the in-memory channel layer cannot reach another process.
        parser.error("--processes above 1 needs --database-url and --redis-url")
    if args.upstream == "fake" and set(args.case + args.compare_case) != {"prose"}:
        parser.error("the fake upstream only writes prose: use --case prose --compare-case prose")
    if args.database_url:
        database_name(args.database_url)
    if args.streams is None:
        args.streams = [] if args.find_max else [1, 100, 200]
    return args


def main():
    args = parse_args()
    # SIGTERM ends the bench through the `finally`s too, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data_dir = Path(tempfile.mkdtemp(prefix="mimoweb-bench-"))
    if args.database_url:
        create_database(args.database_url)
    try:
        servers = Servers(
            data_dir,
            apps=args.app,
            upstream=args.upstream,
            processes=args.processes,
            database_url=args.database_url,
            redis_url=args.redis_url,
        )
        with servers:
            os.environ.update(servers.env)
            import django

            django.setup()
            try:
                fixture = Fixture(servers.upstream_port)
                for app in args.app:
                    servers.select(app)
                    if len(args.app) > 1:
                        print(f"\n## {app}\n")
                    measure(args, servers, fixture)
            finally:
                from django.db import connections

                connections.close_all()
    finally:
        if args.database_url:
            drop_database(args.database_url)
        if args.keep:
            print(f"data and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def setup_line(servers, loop):
    """What was measured, for the record: the app's processes and storage, its loop and transport, the upstream."""
    env = servers.env
    storage = ("PostgreSQL" if "DATABASE_URL" in env else "SQLite") + (
        " + Redis" if "REDIS_URL" in env else " + in-memory channel layer"
    )
    aiohttp = has_loaded(servers.pid(servers.app_names[0]), "/aiohttp/")
    return (
        f"{servers.app}: {len(servers.app_ports)} daphne process(es), {storage}, on {loop}, aiohttp "
        f"{'loaded' if aiohttp else 'not loaded'}; upstream: {servers.upstream}; bare reader: chat.mimo on {loop}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start."
    )


def progress(text):
    print(f"… {text}", file=sys.stderr, flush=True)


def measure(args, servers, fixture):
    # The first answer in each process pays for what a process does once (templates,
    # the HTTP pool): leave it out of the figures.
    run(servers, fixture, streams=len(servers.app_ports), rate=1000, tokens=100)
    loop = app_loop(servers)
    titled = " Conversations already titled: no title is asked for after each answer." if args.titled else ""
    print(setup_line(servers, loop) + titled)

    results = []
    for streams in args.streams:
        for case in args.case:
            progress(f"{case}: {streams} streams × {args.tokens} tokens at {args.rate:g}/s")
            result = run(
                servers, fixture, streams=streams, rate=args.rate, tokens=args.tokens, case=case, ramp=args.ramp,
                titled=args.titled, page_every=args.page_every,
            )  # fmt: skip
            if result.pages:
                print(pages_line(case, streams, result.pages))
            if not args.no_reader:
                progress(f"bare reader ({loop}): the same {streams} answers")
                result.reader = bare_reader(servers, result, loop)
            results.append(result)
    if results:
        print()
        print(streams_table(results))
        if any(r.reader for r in results):
            print()
            print(reader_table(results))
        if args.case != ["prose"]:
            print()
            print(cases_table(results))

    found = None
    if args.find_max:
        case = args.case[0]

        def at(n):
            progress(f"find-max: {case}, {n} streams × {args.tokens} tokens at {args.rate:g}/s")
            return run(
                servers, fixture, streams=n, rate=args.rate, tokens=args.tokens, case=case, ramp=args.ramp,
                titled=args.titled,
            )  # fmt: skip

        good, bad, runs = find_max(
            at,
            start=args.find_max_from,
            limit=args.find_max_limit,
            max_runs=args.find_max_runs,
            budget_s=args.find_max_minutes * 60,
        )
        found = (good, bad, args.processes)
        print()
        print(find_max_table(good, bad, runs, args.find_max_limit, args.processes))
        print()
        print(streams_table(runs))

    comparisons = []
    if not args.no_compare:
        for case in args.compare_case:
            progress(f"{case}: 1 stream × {args.long_tokens} tokens at {args.compare_rate:g}/s")
            long = run(servers, fixture, streams=1, rate=args.compare_rate, tokens=args.long_tokens, case=case)
            progress(f"{case}: {args.short_runs} × 1 stream × {args.short_tokens} tokens")
            shorts = [
                run(servers, fixture, streams=1, rate=args.compare_rate, tokens=args.short_tokens, case=case)
                for _ in range(args.short_runs)
            ]
            comparisons.append((case, long, merged(shorts)))
            print()
            print(streams_table([long, *shorts[:1]]))
            print()
            print(comparison_table(case, long, merged(shorts)))

    if summary := targets(results, comparisons, found):
        print()
        print(summary)


if __name__ == "__main__":
    main()
