"""How long a member waits for the library (conversations, older pages, search) and an admin for usage.

Runs the app in-process on the embedded defaults (SQLite in a temporary data
folder), or on PostgreSQL when DATABASE_URL names a database called
mimoweb_bench… (created, and dropped at the end), through Django's test client,
so it measures the server's own work: views, queries, templates, markdown.
Prints tables; README carries the figures.

    .venv/bin/python bench/library_bench.py
    .venv/bin/python bench/library_bench.py --lengths 20 2000 20000 --search-messages 50000 --runs 30
    .venv/bin/python bench/library_bench.py --usage-only --usage-answers 1000000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mimoweb_bench_usage .venv/bin/python bench/library_bench.py --usage-only
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, time as day_time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stream_bench import create_database, drop_database  # noqa: E402  (a throwaway PostgreSQL database)

# English and Chinese words to write messages with; Chinese has no spaces, so its sentences are joined without.
ENGLISH = "budget invoice travel meeting schedule report contract design review server network coffee garden".split()
CHINESE = ["预算", "发票", "旅行", "会议", "日程", "报告", "合同", "设计", "评审", "服务器", "网络", "咖啡"]
RARE_EN, RARE_ZH = "xylophone", "琵琶"  # each in about one message in a thousand
MODELS = ["mimo-v2.5-pro", "mimo-v2.5"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 2000, 20000], help="messages per conversation")
    parser.add_argument("--search-messages", type=int, default=20000, help="messages in the searched library")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per figure")
    parser.add_argument("--usage-answers", type=int, default=1_000_000, help="answers this month in the usage team")
    parser.add_argument("--members", type=int, default=50, help="members of the usage team")
    parser.add_argument("--usage-only", action="store_true", help="only the usage pages and the budget check")
    return parser.parse_args()


def set_up_django(data_dir):
    os.environ["MIMOWEB_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimoweb.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # Static file names as they lie in static/, as the tests serve them: no collectstatic needed.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}

    settings.WHITENOISE_USE_FINDERS = True
    warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic: nothing to serve from there
    call_command("migrate", verbosity=0)
    # One connection for the whole run, as a server keeps it (CONN_MAX_AGE): a connection closed
    # after each request would also forget the queries it ran, which this counts.
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)


def timed(client, url, runs):
    """Median and 95th percentile milliseconds of `runs` GETs of `url`, its query count and its size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # caches and connections warm
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    queries = len(captured)  # now: the next request empties the log it reads
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], queries, len(response.content)


def timed_admission(team, owner, runs):
    """chat.limits.admit, as a send runs it under the team's lock: team and member budgets and pace all set."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Membership
    from chat import limits
    from chat.models import Conversation, Message

    team.monthly_token_limit, team.monthly_cost_limit = 10**12, 10**6
    team.messages_per_minute, team.streams_at_once = 1000, 100
    team.save()
    Membership.objects.filter(team=team, user=owner).update(monthly_token_limit=10**12, monthly_cost_limit=10**6)
    conversation = Conversation.objects.filter(owner=owner, team=team).first()
    # An answer of the team still streaming, as under load: the check then reserves for it from recent answers.
    streaming = Conversation.objects.filter(team=team).exclude(owner=owner).first()
    Message.objects.create(conversation=streaming, role="assistant", status="streaming", model=MODELS[0])
    # The first run warms up and counts the queries; the others are timed without the debug cursor
    # that counting needs (it formats each statement with its parameters, as a server never does).
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        limits.admit(conversation)
    times = []
    for _run in range(runs):
        with transaction.atomic():
            started = time.perf_counter()
            limits.admit(conversation)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], len(captured)


def sentence(rng):
    if rng.random() < 0.5:
        words = rng.choices(ENGLISH, k=12)
        if rng.random() < 0.001:
            words[3] = RARE_EN
        return " ".join(words) + "."
    words = rng.choices(CHINESE, k=12)
    if rng.random() < 0.001:
        words[3] = RARE_ZH
    return "".join(words) + "。"


def build_library(owner, team, messages, rng):
    """`messages` messages in conversations of 100, with some reasoning, indexed as the app indexes them."""
    from django.utils import timezone

    from chat import search
    from chat.models import Conversation, Message

    rows = []
    for number in range(messages // 100):
        conversation = Conversation.objects.create(owner=owner, team=team, title=f"Library {number}")
        for turn in range(100):
            role = "user" if turn % 2 == 0 else "assistant"
            answer = role == "assistant"
            reasoning = " ".join(sentence(rng) for _ in range(2)) if answer else None
            # Answers carry usage, so the usage pages and the budget check have sums to make.
            usage = {"prompt_tokens": rng.randint(50, 5000), "completion_tokens": rng.randint(20, 2000)} if answer else {}
            rows.append(
                Message(
                    conversation=conversation, role=role, content=" ".join(sentence(rng) for _ in range(3)),
                    reasoning_content=reasoning, created_at=timezone.now(), model=rng.choice(MODELS) if answer else "",
                    **usage,
                )
            )
    Message.objects.bulk_create(rows, batch_size=1000)
    search.rebuild_index()


def insert_answers(rows):
    """Complete answers, in plain SQL: the ORM's bulk_create spends about half a millisecond a row
    here, most of the build of a million. Every other column takes the model's default."""
    from django.db import connection, transaction

    from chat.models import Message

    template = Message(role="assistant", content="a", status="complete")
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    sql = f"INSERT INTO {quote(Message._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    constant = [field.get_db_prep_save(field.pre_save(template, True), connection) for field in fields]
    varying = [(index, field) for index, field in enumerate(fields) if field.name in rows[0]] if rows else []
    params = []
    for row in rows:
        values = list(constant)
        for index, field in varying:
            values[index] = field.get_db_prep_save(row[field.name], connection)
        params.append(values)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def build_usage(team, members, answers, rng):
    """`answers` answers in this month's days, in conversations of 100, spread over members, keys, models
    and both sides of a price change on the 15th; then the roll-ups, made by the rebuild command."""
    from datetime import timedelta
    from decimal import Decimal

    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import ApiKey, Membership, User
    from chat import usage
    from chat.models import Conversation, Message, Price

    users = [User.objects.create_user(f"member{n}") for n in range(members)]
    Membership.objects.bulk_create(Membership(team=team, user=user) for user in users)
    keys = []
    for n in range(3):
        key = ApiKey(team=team, label=f"Key {n}")
        key.set_secret(f"sk-bench-usage-key-{n:04d}")
        key.save()
        keys.append(key)
    first, _last = usage.this_month()
    start = timezone.make_aware(datetime.combine(first, day_time.min))
    seconds = int((timezone.now() - start).total_seconds())  # up to now: the bench runs as at the month's end
    Price.objects.create(
        model=MODELS[0], valid_from=start + timedelta(days=14), input_per_million=Decimal("0.5"),
        cached_input_per_million=Decimal("0.005"), output_per_million=Decimal("1"),
    )  # fmt: skip
    conversations = [Conversation(owner=users[n % members], team=team, title=f"Usage {n}") for n in range(-(-answers // 100))]
    Conversation.objects.bulk_create(conversations, batch_size=1000)
    rows = []
    for n in range(answers):
        prompt = rng.randint(50, 5000)
        rows.append({
            "conversation": conversations[n // 100].pk, "model": rng.choice(MODELS), "api_key": rng.choice(keys).pk,
            "created_at": start + timedelta(seconds=rng.randrange(seconds)), "prompt_tokens": prompt,
            "cached_tokens": prompt // 4, "completion_tokens": rng.randint(20, 2000),
            "reasoning_tokens": rng.randint(0, 500), "web_search_calls": rng.choice((0, 0, 0, 1)),
        })  # fmt: skip
        if len(rows) == 10_000:
            insert_answers(rows)
            rows = []
    insert_answers(rows)
    started = time.perf_counter()
    call_command("usage_rollups", "--rebuild", stdout=open(os.devnull, "w"))
    rebuild_seconds = time.perf_counter() - started
    from django.db import connection

    if connection.vendor == "postgresql":  # the statistics autovacuum would have gathered a minute later
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return users, rebuild_seconds


def main():
    args = parse_args()
    with bench_database() as storage:
        run(args, storage)


@contextmanager
def bench_database():
    """The storage's name; on PostgreSQL, when DATABASE_URL names a mimoweb_bench… database, that database,
    created for the run and dropped after it."""
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        yield "SQLite"
        return
    create_database(database_url)
    try:
        yield "PostgreSQL"
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(database_url)


def run(args, storage):
    with tempfile.TemporaryDirectory(prefix="mimoweb-library-bench-") as data_dir:
        set_up_django(data_dir)
        from django.test import Client

        from accounts.models import Membership, Team, User

        owner = User.objects.create_user("bench")
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(owner)
        if not args.usage_only:
            team = Team.objects.create(name="Bench")
            Membership.objects.create(team=team, user=owner, role=Membership.Role.ADMIN)
            library(args, owner, team, client, storage)
        team = Team.objects.create(name="Usage bench")
        Membership.objects.create(team=team, user=owner, role=Membership.Role.ADMIN)  # to see the team's usage
        # As at the end of the month, so that the month is full of answers and none is in the future
        # (the pace counts the last minute's): 22:00 on its last day, in the server's time zone.
        from django.utils import timezone

        from chat import usage

        end = timezone.make_aware(datetime.combine(usage.this_month()[1], day_time(22)))
        with mock.patch("django.utils.timezone.now", return_value=end):
            client.force_login(owner)  # a session that has not expired by then
            usage_and_budgets(args, team, client, storage)


def library(args, owner, team, client, storage):
    from chat.models import Conversation
    from tests.chat.test_long_conversations import build  # the same shape of conversation the tests count

    print(f"Opening a conversation ({args.runs} runs each; server time, {storage})")
    print(f"{'messages':>9} {'open p50':>9} {'p95':>8} {'queries':>8} {'KiB':>6} {'older page p50':>15} {'queries':>8}")
    for length in args.lengths:
        conversation = Conversation.objects.create(owner=owner, team=team, title=f"{length} messages")
        branch = build(conversation, length)
        p50, p95, queries, size = timed(client, f"/chats/{conversation.pk}/", args.runs)
        older = f"/chats/{conversation.pk}/messages/?before={branch[len(branch) // 2].pk}"
        older_p50, _p95, older_queries, _size = timed(client, older, args.runs)
        print(f"{length:>9} {p50:>7.1f}ms {p95:>6.1f}ms {queries:>8} {size / 1024:>6.0f} {older_p50:>13.1f}ms {older_queries:>8}")

    rng = random.Random(7)
    started = time.perf_counter()
    build_library(owner, team, args.search_messages, rng)
    print(f"\nSearching {args.search_messages} messages ({time.perf_counter() - started:.0f} s to build and index)")
    print(f"{'query':>22} {'p50':>8} {'p95':>8} {'queries':>8}")
    for query in ["budget", "budget coffee", RARE_EN, "预算", "预算会议", RARE_ZH]:
        p50, p95, queries, _size = timed(client, f"/chats/search/?q={query}", args.runs)
        print(f"{query:>22} {p50:>6.1f}ms {p95:>6.1f}ms {queries:>8}")


def usage_and_budgets(args, team, client, storage):
    """The team's usage pages and the budget check of a send, over `--usage-answers` answers this month."""
    from django.test import Client

    from chat.models import UsageRollup

    rng = random.Random(11)
    started = time.perf_counter()
    users, rebuild_seconds = build_usage(team, args.members, args.usage_answers, rng)
    print(
        f"\nUsage and budgets over {args.usage_answers:,} answers this month of {args.members} members, 3 keys, "
        f"{len(MODELS)} models ({storage}; {time.perf_counter() - started:.0f} s to build; the rebuild of "
        f"{UsageRollup.objects.count():,} roll-ups took {rebuild_seconds:.1f} s)"
    )
    print(f"{'what':>34} {'p50':>8} {'p95':>8} {'queries':>8}")
    for name, url in [
        ("team usage page", f"/teams/{team.pk}/usage/"),
        ("team usage, stacked by member", f"/teams/{team.pk}/usage/?by=member"),
        ("team usage CSV", f"/teams/{team.pk}/usage.csv"),
        ("team limits page", f"/teams/{team.pk}/limits/"),
    ]:
        p50, p95, queries, _size = timed(client, url, args.runs)
        print(f"{name:>34} {p50:>6.1f}ms {p95:>6.1f}ms {queries:>8}")
    member = Client(HTTP_HOST="127.0.0.1")
    member.force_login(users[0])
    p50, p95, queries, _size = timed(member, "/usage/", args.runs)
    print(f"{'a member\'s own usage page':>34} {p50:>6.1f}ms {p95:>6.1f}ms {queries:>8}")
    p50, p95, queries = timed_admission(team, users[0], args.runs)
    print(f"{'budget and pace check of a send':>34} {p50:>6.1f}ms {p95:>6.1f}ms {queries:>8}")


if __name__ == "__main__":
    main()
