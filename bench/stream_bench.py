"""How much the app adds to MiMo's stream: delay, lost tokens, CPU and bytes per token, with N browsers at once.

Starts the fake MiMo server and the app (embedded defaults: SQLite, in-memory
channel layer, one daphne process) on free ports with a throwaway data folder,
opens N websocket "browsers", each asking for a `[[fake:clock]]` answer on its
own conversation, and times every token from the moment the fake wrote it to
the moment a frame showing it arrived. See bench/README.md.
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

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MODEL = "mimo-v2.5-pro"
SECRET = "sk-bench-key"
# A clock token as the fake writes it (chat/mimo/fake.py, `clock`): Unix ms, then its number.
STAMP = re.compile(r"t(\d{13})n(\d+)")
ENDED = re.compile(r'class="message message-assistant" data-status="(complete|error|stopped|interrupted)"')
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- The two servers ------------------------------------------------------------------


def free_port():
    # Inexact on purpose: the port could be taken between here and daphne's bind; fine for a bench.
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


class Servers:
    """The fake MiMo server and the app as subprocesses, stopped on leaving the `with`, whatever happens."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.fake_port = free_port()
        self.app_port = free_port()
        self.processes = {}
        self.env = environment(data_dir)

    def __enter__(self):
        try:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=self.env, check=True
            )
            self.start("fake", self.fake_port, "chat.mimo.fake:application")
            self.start("app", self.app_port, "mimoweb.asgi:application")
        except BaseException:
            self.stop()
            raise
        return self

    def start(self, name, port, application):
        log = open(self.data_dir / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(
            [VENV_BIN / "daphne", "-b", "127.0.0.1", "-p", str(port), application],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited at start; see {self.data_dir / f'{name}.log'}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not listen on port {port} within 30 s") from None
                time.sleep(0.1)

    def cpu(self):
        return {name: cpu_seconds(process.pid) for name, process in self.processes.items()} | {
            "bench": time.process_time()
        }

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __exit__(self, *exc):
        self.stop()


def environment(data_dir):
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
    return env


# --- Users, keys and conversations, straight through Django -----------------------------


class Fixture:
    """One user in one team with a key for the fake server; one session cookie serves every browser."""

    def __init__(self, fake_port):
        from django.test import Client

        from accounts.models import ApiKey, Membership, Team, User

        self.team = Team.objects.create(name="Bench")
        self.user = User.objects.create_user("bench", "bench@example.com", "bench password that nobody uses")
        Membership.objects.create(team=self.team, user=self.user, role=Membership.Role.ADMIN)
        key = ApiKey(team=self.team, label="Fake MiMo", base_url=f"http://127.0.0.1:{fake_port}", api_format="openai")
        key.set_secret(SECRET)
        key.full_clean()
        key.save()
        client = Client()
        client.force_login(self.user)
        self.session = client.cookies["sessionid"].value

    def conversations(self, count):
        from chat.models import Conversation

        return [Conversation.objects.create(owner=self.user, team=self.team).pk for _ in range(count)]


def saved_answer(conversation_id):
    from chat.models import Message

    return Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT).order_by("pk").last()


# --- A browser: the smallest RFC 6455 client that does the job ---------------------------


class Browser:
    """One tab on one conversation; keeps every text frame with the time it arrived.

    Frames are only stored while streaming and searched after the run, so the
    bench's own work does not delay the arrival times of other sockets' frames.
    Arrival times are time.time(), the clock the fake stamps with (same machine).
    """

    def __init__(self, conversation_id):
        self.conversation_id = conversation_id
        self.frames = []  # (arrival time.time(), payload str)
        self.bytes = 0
        self.status = "no answer"

    async def open(self, port, session):
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

    async def read_answer(self, deadline):
        """Read frames until the answer ends (or the socket closes, or time runs out)."""
        try:
            async with asyncio.timeout_at(deadline):
                while (payload := await self.read_message()) is not None:
                    self.frames.append((time.time(), payload))
                    self.bytes += len(payload)
                    if ended := ENDED.search(payload):
                        self.status = ended[1]
                        return
                self.status = "socket closed"
        except TimeoutError:
            self.status = "timed out"

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


# --- One run: N browsers at once ------------------------------------------------------------


@dataclass
class Stream:
    """What one browser saw, read after the run."""

    browser: Browser
    first_seen: dict = field(default_factory=dict)  # seq → (arrival s, emitted ms)

    def __post_init__(self):
        # The first frame that shows a token is when the reader could see it.
        for arrival, payload in self.browser.frames:
            for match in STAMP.finditer(payload):
                self.first_seen.setdefault(int(match[2]), (arrival, int(match[1])))

    def delays_ms(self):
        return [arrival * 1000 - emitted for arrival, emitted in self.first_seen.values()]

    def frames_per_second(self):
        # From the first to the last frame after sending: the stream's own lifetime.
        times = [arrival for arrival, _ in self.browser.frames]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


@dataclass
class Result:
    streams: int
    rate: float
    tokens: int
    delays: list
    lost: int
    db_equal: int
    statuses: dict
    cpu: dict  # process → CPU seconds during the streaming
    wall: float
    delivered: int
    bytes: int
    fps: float
    runs: int = 1  # more than one when short runs are merged


def skeleton(text):
    """The text with the times taken out: numbers and whitespace must still match."""
    return STAMP.sub(lambda match: f"n{match[2]}", text)


def expected_answer(fake_port, text):
    """The same answer, unstreamed, from the fake: what every stream should end up saving, but for the times."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "thinking": {"type": "disabled"}}
    response = httpx.post(
        f"http://127.0.0.1:{fake_port}/v1/chat/completions", json=body, headers={"api-key": SECRET}, timeout=60
    )
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def run(servers, fixture, *, streams, rate, tokens):
    text = f"[[fake:clock]] [[fake:long={tokens}]] [[fake:speed={rate:g}]]"
    expected = skeleton(expected_answer(servers.fake_port, text))
    conversation_ids = fixture.conversations(streams)
    browsers = [Browser(pk) for pk in conversation_ids]
    cpu_before, cpu_after, wall = asyncio.run(
        stream_all(servers, fixture.session, browsers, text, deadline=tokens / rate + 60)
    )

    results = [Stream(browser) for browser in browsers]
    db_equal = 0
    for result in results:
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
        streams=streams,
        rate=rate,
        tokens=tokens,
        delays=sorted(delay for result in results for delay in result.delays_ms()),
        lost=streams * tokens - delivered,
        db_equal=db_equal,
        statuses=statuses,
        cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_before},
        wall=wall,
        delivered=delivered,
        bytes=sum(browser.bytes for browser in browsers),
        fps=sum(result.frames_per_second() for result in results) / len(results),
    )


async def stream_all(servers, session, browsers, text, deadline):
    # At most 50 handshakes at a time: daphne's listen backlog is 50.
    handshakes = asyncio.Semaphore(50)

    async def open_one(browser):
        async with handshakes:
            await browser.open(servers.app_port, session)

    await asyncio.gather(*(open_one(browser) for browser in browsers))
    # Let the consumers finish connecting (snapshots, group joins) before the clock starts.
    await asyncio.sleep(0.5)
    # What the composer sends; no "thinking" field means thinking off (a form checkbox).
    message = json.dumps({"action": "send", "text": text, "model": MODEL, "HEADERS": {}})
    cpu_before, started = servers.cpu(), time.monotonic()
    await asyncio.gather(*(browser.send_json(message) for browser in browsers))
    until = asyncio.get_running_loop().time() + deadline
    await asyncio.gather(*(browser.read_answer(until) for browser in browsers))
    wall = time.monotonic() - started
    cpu_after = servers.cpu()
    await asyncio.gather(*(browser.close() for browser in browsers))
    return cpu_before, cpu_after, wall


# --- Reporting ------------------------------------------------------------------------------


def percentile(ordered, p):
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def per_token_us(result, process="app"):
    return result.cpu[process] / result.delivered * 1e6 if result.delivered else math.nan


def per_token_bytes(result):
    return result.bytes / result.delivered if result.delivered else math.nan


def streams_table(results):
    lines = [
        "| streams | tok/s | tokens | delay p50 ms | p99 ms | max ms | lost | DB = sent | ended | "
        "app CPU µs/tok | bytes/tok | frames/s/stream | CPU % app / fake / bench |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        shares = " / ".join(f"{r.cpu[name] / r.wall * 100:.0f}" for name in ("app", "fake", "bench"))
        ended = ", ".join(f"{count} {status}" for status, count in sorted(r.statuses.items()))
        lines.append(
            f"| {r.streams} | {r.rate:g} | {r.tokens} | {percentile(r.delays, 50):.0f} | {percentile(r.delays, 99):.0f} "
            f"| {percentile(r.delays, 100):.0f} | {r.lost} | {r.db_equal}/{r.streams} | {ended} "
            f"| {per_token_us(r):.0f} | {per_token_bytes(r):.0f} | {r.fps:.1f} | {shares} |"
        )
    return "\n".join(lines)


def comparison_table(long, short):
    lines = [
        "| answer | tokens delivered | bytes/tok | app CPU µs/tok |",
        "|---|---:|---:|---:|",
        f"| {long.tokens} tokens × 1 | {long.delivered} | {per_token_bytes(long):.0f} | {per_token_us(long):.0f} |",
        f"| {short.tokens} tokens × {short.runs} | {short.delivered} | {per_token_bytes(short):.0f} "
        f"| {per_token_us(short):.0f} |",
        f"| ratio long / short (target ≤ 1.3) | | {per_token_bytes(long) / per_token_bytes(short):.2f}× "
        f"| {per_token_us(long) / per_token_us(short):.2f}× |",
    ]
    return "\n".join(lines)


def merged(results):
    """Several short runs as one, so the 10 ms CPU ticks average out."""
    return replace(
        results[0],
        runs=len(results),
        delivered=sum(r.delivered for r in results),
        bytes=sum(r.bytes for r in results),
        cpu={name: sum(r.cpu[name] for r in results) for name in results[0].cpu},
    )


# --- Command line ----------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 100, 300], help="browsers at once, one run each")
    parser.add_argument("--rate", type=float, default=50, help="tokens per second per stream")
    parser.add_argument("--tokens", type=int, default=500, help="tokens per answer")
    parser.add_argument("--compare-rate", type=float, default=2000, help="tokens per second for the long/short runs")
    parser.add_argument("--long-tokens", type=int, default=20_000)
    parser.add_argument("--short-tokens", type=int, default=500)
    parser.add_argument("--short-runs", type=int, default=10, help="short answers in a row, for steadier CPU figures")
    parser.add_argument("--no-compare", action="store_true", help="skip the long/short comparison")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (database and server logs)")
    args = parser.parse_args()

    # SIGTERM ends the bench through the `finally`s too, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data_dir = Path(tempfile.mkdtemp(prefix="mimoweb-bench-"))
    try:
        with Servers(data_dir) as servers:
            os.environ.update(servers.env)
            sys.path.insert(0, str(ROOT))
            import django

            django.setup()
            fixture = Fixture(servers.fake_port)
            # The first answer pays for what a process does once (templates, the HTTP pool):
            # leave it out of the figures.
            run(servers, fixture, streams=1, rate=1000, tokens=100)
            results = []
            for streams in args.streams:
                print(f"… {streams} streams × {args.tokens} tokens at {args.rate:g}/s", file=sys.stderr, flush=True)
                results.append(run(servers, fixture, streams=streams, rate=args.rate, tokens=args.tokens))
            print(streams_table(results))
            if not args.no_compare:
                print(f"… 1 stream × {args.long_tokens} tokens at {args.compare_rate:g}/s", file=sys.stderr, flush=True)
                long = run(servers, fixture, streams=1, rate=args.compare_rate, tokens=args.long_tokens)
                print(f"… {args.short_runs} × 1 stream × {args.short_tokens} tokens", file=sys.stderr, flush=True)
                shorts = [
                    run(servers, fixture, streams=1, rate=args.compare_rate, tokens=args.short_tokens)
                    for _ in range(args.short_runs)
                ]
                print()
                print(streams_table([long, *shorts[:1]]))
                print()
                print(comparison_table(long, merged(shorts)))
    finally:
        if args.keep:
            print(f"data and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
