"""The floor under stream_bench.py: what only reading N MiMo streams costs one Python process, reader by reader.

No Django, no rendering, no sockets to browsers: N answers from the bench's
minimal upstream (bench/upstream.py) read at once and thrown away, by each way
of reading them in turn, each in a fresh process of its own:

  mimo           `chat.mimo.stream_turn` with chat.mimo's shared client: the
                 transport the app itself uses, whatever that is today
  httpx          `chat.mimo.stream_turn` over an httpx client with httpx's
                 default transport (httpcore, h11)
  httpx-aiohttp  `chat.mimo.stream_turn` over an httpx client with the
                 `httpx_aiohttp.AiohttpTransport` transport
  aiohttp        aiohttp alone: split on blank lines, `json.loads`, no chat.mimo

Prints the CPU the reading process spent per token, its share of a core, how
late the tokens arrived (from the upstream's stamp to the reader seeing it) and
how long the answers took against how long they should take. Whatever the app
does per token comes on top of this. See bench/README.md.
"""

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import upstream  # noqa: E402
from bench.stream_bench import (  # noqa: E402
    MODEL,
    ROOT,
    STAMP,
    cpu_seconds,
    free_port,
    percentile,
    start_upstream,
    stop_processes,
)

READERS = {
    "mimo": "chat.mimo's shared client (the app's transport)",
    "httpx": "httpx, default transport, chat.mimo parsing",
    "httpx-aiohttp": "httpx with the aiohttp transport, chat.mimo parsing",
    "aiohttp": "aiohttp alone, split + json.loads",
}
# As chat.mimo's shared client: a connection per stream, for as many streams as a bench opens.
MAX_CONNECTIONS = 2000


# --- One reader in one process (--worker) ---------------------------------------------------


class Tally:
    """Tokens, errors and lags, kept cheaply: one regex and one clock read per token."""

    def __init__(self):
        self.tokens = 0
        self.errors = 0
        self.lags = []

    def token(self, text):
        self.tokens += 1
        if match := STAMP.search(text):
            self.lags.append(time.time() * 1000 - int(match[1]))


def http_client(reader):
    import httpx

    from chat import mimo

    if reader == "mimo":
        return None  # stream_turn then takes chat.mimo's own shared client
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
    timeout = mimo.Timeouts().for_httpx()
    if reader == "httpx":
        return httpx.AsyncClient(timeout=timeout, limits=limits)
    from httpx_aiohttp import AiohttpTransport

    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=timeout, limits=limits)


async def read_with_mimo(endpoint, request, client, tally):
    from chat import mimo

    async for event in mimo.stream_turn(endpoint, request, http_client=client):
        if isinstance(event, mimo.TextDelta):
            tally.token(event.text)
        elif isinstance(event, mimo.ErrorEvent):
            tally.errors += 1


async def read_with_aiohttp(session, url, body, headers, tally):
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            tally.errors += 1
            return
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if not event.startswith(b"data: "):
                    continue  # comments, keep-alives
                data = event[6:]
                if data == b"[DONE]":
                    return
                choices = json.loads(data).get("choices")
                if choices and (text := choices[0]["delta"].get("content")):
                    tally.token(text)


async def read_all(reader, port, streams, text, upstream_pid=None):
    """Reads one answer to warm up, then `streams` at once; the CPU and wall time of the latter.

    With `upstream_pid`, also the upstream's CPU over the same span, read here so
    that the process start-up and the warm-up are left out.
    """

    def upstream_cpu():
        return cpu_seconds(upstream_pid) if upstream_pid else math.nan

    from chat import mimo

    endpoint = mimo.Endpoint(f"http://127.0.0.1:{port}", "sk-bench-floor")
    request = mimo.ChatRequest(model=MODEL, turns=[mimo.UserTurn(text)], thinking=False)
    warm_up = mimo.ChatRequest(
        model=MODEL, turns=[mimo.UserTurn(upstream.directive(tokens=20, rate=0))], thinking=False
    )
    if reader == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS))
        body = mimo.client.encode_body(mimo.build_body(request, mimo.ApiFormat.OPENAI))
        headers = {**endpoint.headers(), "content-type": "application/json", "accept": "text/event-stream"}
        warm_body = mimo.client.encode_body(mimo.build_body(warm_up, mimo.ApiFormat.OPENAI))
        await read_with_aiohttp(session, endpoint.chat_url, warm_body, headers, Tally())
        tally = Tally()
        cpu, wall, upstream_before = time.process_time(), time.monotonic(), upstream_cpu()
        await asyncio.gather(
            *(read_with_aiohttp(session, endpoint.chat_url, body, headers, tally) for _ in range(streams))
        )
        cpu, wall, upstream_spent = time.process_time() - cpu, time.monotonic() - wall, upstream_cpu() - upstream_before
        await session.close()
    else:
        client = http_client(reader)
        await read_with_mimo(endpoint, warm_up, client, Tally())  # imports, the connection pool
        tally = Tally()
        cpu, wall, upstream_before = time.process_time(), time.monotonic(), upstream_cpu()
        await asyncio.gather(*(read_with_mimo(endpoint, request, client, tally) for _ in range(streams)))
        cpu, wall, upstream_spent = time.process_time() - cpu, time.monotonic() - wall, upstream_cpu() - upstream_before
        await (client.aclose() if client else mimo.close_shared_http_client())
    lags = sorted(tally.lags)
    return {
        "reader": reader,
        "streams": streams,
        "tokens": tally.tokens,
        "errors": tally.errors,
        "cpu": cpu,
        "wall": wall,
        "upstream_cpu": upstream_spent,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": percentile(lags, 100),
    }


def worker(args):
    sys.path.insert(0, str(ROOT))
    coroutine = read_all(args.worker, args.port, args.streams[0], args.text, args.upstream_pid)
    if args.loop == "uvloop":
        import uvloop

        result = asyncio.run(coroutine, loop_factory=uvloop.new_event_loop)
    else:
        result = asyncio.run(coroutine)
    print(json.dumps(result), flush=True)


def measure(reader, port, streams, text, loop, timeout, upstream_pid=None):
    """Runs one reader in a fresh process; its figures, or None if it failed (said on stderr)."""
    command = [
        sys.executable, Path(__file__).resolve(), "--worker", reader, "--port", str(port),
        "--streams", str(streams), "--text", text, "--loop", loop,
    ]  # fmt: skip
    if upstream_pid:
        command += ["--upstream-pid", str(upstream_pid)]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"reader {reader} at {streams} streams: no answer within {timeout:.0f} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"reader {reader} at {streams} streams failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_loop():
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# --- Reporting ------------------------------------------------------------------------------


def per_token_us(result):
    return result["cpu"] / result["tokens"] * 1e6 if result["tokens"] else math.nan


def long_table(rows, rate, tokens):
    lines = [
        "| reader | streams | tokens read | errors | took / should take | CPU µs/tok | CPU % of a core "
        "| lag p50 / p99 / max ms | upstream CPU % / µs/tok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['reader']} | {r['streams']} | {r['tokens']} | {r['errors']} "
            f"| {r['wall']:.1f} s / {tokens / rate:.1f} s | {per_token_us(r):.0f} | {100 * r['cpu'] / r['wall']:.0f} "
            f"| {r['lag_p50']:.0f} / {r['lag_p99']:.0f} / {r['lag_max']:.0f} "
            f"| {100 * r['upstream_cpu'] / r['wall']:.0f} / {r['upstream_cpu'] * 1e6 / max(r['tokens'], 1):.0f} |"
        )
    return "\n".join(lines)


def side_by_side(rows, stream_counts):
    """The issue's table: a row per reader, a column per N."""
    lines = [
        "| reader | " + " | ".join(f"{n} streams" for n in stream_counts) + " |",
        "|---|" + "---|" * len(stream_counts),
    ]
    for reader in dict.fromkeys(r["reader"] for r in rows):
        cells = []
        for n in stream_counts:
            r = next((r for r in rows if r["reader"] == reader and r["streams"] == n), None)
            cells.append(
                "failed" if r is None
                else f"{per_token_us(r):.0f} µs ({100 * r['cpu'] / r['wall']:.0f} %, p99 lag {r['lag_p99']:.0f} ms)"
            )  # fmt: skip
        lines.append(f"| {READERS[reader]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- Command line ----------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--case", choices=upstream.CASES, default="prose")
    parser.add_argument("--readers", nargs="+", choices=READERS, default=["httpx", "httpx-aiohttp", "aiohttp", "mimo"])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default=default_loop(), help="the readers' loop")
    # A worker reads one set of answers and prints its figures as JSON; the main process starts them.
    parser.add_argument("--worker", choices=READERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--text", help=argparse.SUPPRESS)
    parser.add_argument("--upstream-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    text = upstream.directive(args.case, args.tokens, args.rate)
    port = free_port()
    server = start_upstream(port, log=subprocess.DEVNULL)
    rows = []
    try:
        what = f"{args.case} answers of {args.tokens} tokens at {args.rate:g}/s"
        print(f"… readers on {args.loop}, {what}", file=sys.stderr)
        for streams in args.streams:
            for reader in args.readers:
                print(f"… {reader}: {streams} streams", file=sys.stderr, flush=True)
                timeout = args.tokens / args.rate * 3 + 120
                result = measure(reader, port, streams, text, args.loop, timeout, upstream_pid=server.pid)
                if result is not None:
                    rows.append(result)
    finally:
        stop_processes([server])
    print(long_table(rows, args.rate, args.tokens))
    print()
    print(side_by_side(rows, args.streams))


if __name__ == "__main__":
    main()
