"""The floor under stream_bench.py: what only reading N MiMo streams costs one Python process.

No Django, no rendering, no sockets to browsers: N answers from the fake MiMo
server read at once with `chat.mimo.stream_turn` (httpx, the SSE parser, the
event decoder) and thrown away. Prints the CPU this process spent per token
and how long the answers took against how long they should take. Whatever the
app does per token comes on top of this. See bench/README.md.
"""

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stream_bench import MODEL, ROOT, VENV_BIN, cpu_seconds, die_with_parent, free_port  # noqa: E402
from chat import mimo  # noqa: E402


async def read_answer(endpoint, request, counts):
    async for event in mimo.stream_turn(endpoint, request):
        if isinstance(event, mimo.TextDelta):
            counts["tokens"] += 1
        elif isinstance(event, mimo.ErrorEvent):
            counts["errors"] += 1


async def read_all(port, streams, rate, tokens):
    endpoint = mimo.Endpoint(f"http://127.0.0.1:{port}", "sk-bench-floor")
    request = mimo.ChatRequest(
        model=MODEL, turns=[mimo.UserTurn(f"[[fake:long={tokens}]] [[fake:speed={rate}]]")], thinking=False
    )
    await read_answer(endpoint, request, {"tokens": 0, "errors": 0})  # warm-up: imports, the connection pool
    counts = {"tokens": 0, "errors": 0}
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(read_answer(endpoint, request, counts) for _ in range(streams)))
    await mimo.close_shared_http_client()
    return counts, time.process_time() - cpu, time.monotonic() - wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--tokens", type=int, default=500)
    args = parser.parse_args()
    port = free_port()
    fake = subprocess.Popen(
        [VENV_BIN / "daphne", "-b", "127.0.0.1", "-p", str(port), "chat.mimo.fake:application"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        time.sleep(2)  # daphne's start-up
        print("| streams | tok/s | tokens read | errors | took / should take | reader CPU µs/tok | reader CPU % | fake CPU % |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for streams in args.streams:
            fake_cpu = cpu_seconds(fake.pid)
            counts, cpu, wall = asyncio.run(read_all(port, streams, args.rate, args.tokens))
            fake_share = (cpu_seconds(fake.pid) - fake_cpu) / wall
            print(
                f"| {streams} | {args.rate:g} | {counts['tokens']} | {counts['errors']} "
                f"| {wall:.1f} s / {args.tokens / args.rate:.1f} s | {cpu * 1e6 / max(counts['tokens'], 1):.0f} "
                f"| {100 * cpu / wall:.0f} | {100 * fake_share:.0f} |",
                flush=True,
            )
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
