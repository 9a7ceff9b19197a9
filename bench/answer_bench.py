"""What an answer's start and end cost the database thread, step by step.

Every socket's and every stream's queries take turns on one thread of the process
(channels' database_sync_to_async), so a hundred answers asked for at once queue there,
and at 500 tokens an answer's start and end weigh on its CPU per token as much as its
frames do (issue 10). This runs the steps an answer takes on that thread, as the socket
and the generation call them, on the embedded defaults (SQLite in a temporary data
folder) or on PostgreSQL when DATABASE_URL names a database called mimoweb_bench…
(created, and dropped at the end); MiMo is not asked (the title's answer is given).
Prints each step's CPU time (the process's, median and 95th percentile over the answers,
the first ones left out) and its queries.

    .venv/bin/python bench/answer_bench.py
    .venv/bin/python bench/answer_bench.py --answers 300 --budget
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mimoweb_bench_answer .venv/bin/python bench/answer_bench.py
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.library_bench import bench_database, set_up_django  # noqa: E402

WARM_UP = 10  # answers left out of the figures: the first queries of a connection, caches


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=200, help="answers, each in a new conversation (its first)")
    parser.add_argument("--tokens", type=int, default=500, help="words in each answer")
    parser.add_argument("--budget", action="store_true", help="the team has a monthly budget: the meters are read")
    return parser.parse_args()


def main():
    args = parse_args()
    with bench_database() as storage, tempfile.TemporaryDirectory(prefix="mimoweb-answer-bench-") as data_dir:
        set_up_django(data_dir)
        report(measure(args), args, storage)


def measure(args):
    """{step: [(cpu seconds, queries), …]} over the answers, each step called as the server calls it:
    from the event loop, its queries on the database thread (the hop is part of its cost)."""
    import asyncio

    from channels.db import database_sync_to_async
    from django.db import connection

    from accounts.models import ApiKey, Membership, Team, User
    from chat import generation, limits, titles
    from chat.consumers import ConversationConsumer
    from chat.models import Conversation, Message

    user = User.objects.create_user("bench")
    team = Team.objects.create(name="Bench", monthly_token_limit=10**12 if args.budget else None)
    Membership.objects.create(team=team, user=user, role=Membership.Role.ADMIN)
    key = ApiKey(team=team, label="Bench MiMo", base_url="http://127.0.0.1:9", api_format="openai")
    key.set_secret("sk-bench-answer-steps")
    key.save()
    form = {"text": "A question", "model": "mimo-v2.5-pro", "thinking": "on"}
    answer_text = "word " * args.tokens
    steps, queries = {}, []

    @database_sync_to_async
    def count_queries():  # on the database thread's connection, where every step's queries run
        connection.execute_wrappers.append(lambda execute, *params: queries.append(1) or execute(*params))

    @database_sync_to_async
    def new_conversation():
        return Conversation.objects.create(owner=user, team=team, model="mimo-v2.5-pro")

    async def step(name, work):
        queries.clear()
        started = time.process_time()
        result = await work
        steps.setdefault(name, []).append((time.process_time() - started, len(queries)))
        return result

    def finish(answer):  # Generation.finish: the text and usage in, then its one transaction
        answer.new_text = [answer_text]
        answer.take_text()
        message = answer.message
        message.status, message.finish_reason = Message.Status.COMPLETE, "stop"
        message.prompt_tokens, message.completion_tokens = 1000, args.tokens
        message.finished_at, message.heartbeat_at = message.created_at, None
        answer.save_finished_in_one_transaction()

    async def answers():
        await count_queries()
        for _ in range(args.answers):
            conversation = await new_conversation()
            socket = SimpleNamespace(conversation=conversation)
            socket.save_settings = lambda data: ConversationConsumer.save_settings(socket, data)
            await step("the form, and the settings saved", database_sync_to_async(ConversationConsumer.accept_form)(socket, form))
            _question, message, _window, metered = await step(
                "the turn: key, budgets, two messages", generation.create_turn(conversation, "A question")
            )
            answer = generation.Generation(conversation, message, message.api_key, "", metered=metered)
            await step("the request: the history", answer.build_request())
            await step("the end: text, usage, search, roll-ups", database_sync_to_async(finish)(answer))
            if answer.metered:
                await step("the meters after the end", database_sync_to_async(limits.member_meters)(conversation))
            await step("the title (MiMo's answer given)", titles.give_title(conversation.pk, answer.api_key))

    with mock.patch.object(titles, "ask_mimo", mock.AsyncMock(return_value="A title")):
        asyncio.run(answers())
    return steps


def report(steps, args, storage):
    print(
        f"An answer on the database thread: {args.answers} answers of {args.tokens} words, each the first of its "
        f"conversation; {storage}; {'a team budget' if args.budget else 'no budget'}; CPU ms of the process, "
        f"the first {WARM_UP} left out"
    )
    print()
    print("| step | median ms | p95 ms | queries |")
    print("|---|---:|---:|---:|")
    total = 0.0
    for name, runs in steps.items():
        runs = runs[WARM_UP:]
        times = sorted(spent * 1000 for spent, _queries in runs)
        median = statistics.median(times)
        total += median
        print(f"| {name} | {median:.2f} | {times[int(0.95 * (len(times) - 1))]:.2f} | {runs[-1][1]} |")
    queries = sum(runs[-1][1] for runs in steps.values())
    print(f"| **an answer** | **{total:.2f}** | | **{queries}** |")
    print()
    print(f"At {args.tokens} tokens an answer, that is {total * 1000 / args.tokens:.0f} µs per token before any frame.")


if __name__ == "__main__":
    main()
