"""A large import on SQLite while 20 answers stream: every answer ends complete, saved as sent, with its usage.

SQLite has one write lock for the whole database, and a writer that waits longer
than the busy timeout (5 s, mimoweb/settings.py) is refused ("database is
locked"). An import of 1,500 conversations in one transaction held the lock for
26 s: answers that finished meanwhile had their final save refused.
"""

import asyncio
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.test import Client

from accounts.models import ApiKey
from chat import generation, mimo, transfer
from chat.mimo.fake import _long_text  # the text the fake sends for [[fake:long=N]]
from chat.models import Conversation, Message
from tests.chat.test_transfer import build_conversation, upload

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
        reason="the database-wide write lock is SQLite's; PostgreSQL locks rows",
    ),
]

CONVERSATIONS = 1500  # each with the 6 messages, tool calls and sources of tests/chat/test_transfer.py's
ANSWERS = 20
SPEED = 20  # tokens a second: the answers last from 3 to 26 seconds, so they end while the import runs


class OutermostTransactions:
    """How long each outermost transaction of one thread lasted once open: on SQLite
    (transaction_mode IMMEDIATE) that is how long it held the write lock."""

    def __init__(self, monkeypatch):
        self.thread = None
        self.longest = 0.0
        self.opened_at = None
        enter, exit_ = transaction.Atomic.__enter__, transaction.Atomic.__exit__

        def timed_enter(atomic):
            outermost = not transaction.get_connection(atomic.using).in_atomic_block
            enter(atomic)
            if outermost and threading.get_ident() == self.thread:
                self.opened_at = time.monotonic()

        def timed_exit(atomic, *args):
            try:
                return exit_(atomic, *args)
            finally:
                if threading.get_ident() == self.thread and not transaction.get_connection(atomic.using).in_atomic_block:
                    if self.opened_at is not None:
                        self.longest = max(self.longest, time.monotonic() - self.opened_at)
                    self.opened_at = None

        monkeypatch.setattr(transaction.Atomic, "__enter__", timed_enter)
        monkeypatch.setattr(transaction.Atomic, "__exit__", timed_exit)


class TimedSaves:
    """The longest a stream's save took, waiting for the lock included, and when each answer's final save ended."""

    def __init__(self, monkeypatch):
        self.longest = 0.0
        self.finished_at = []
        save_progress, save_finished = generation.save_progress, generation.Generation.save_finished

        def timed(save, *args):
            started = time.monotonic()
            try:
                return save(*args)
            finally:
                self.longest = max(self.longest, time.monotonic() - started)

        def timed_finished(stream):
            timed(save_finished, stream)
            if stream.message.status != Message.Status.STREAMING:
                self.finished_at.append(time.monotonic())

        monkeypatch.setattr(generation, "save_progress", lambda rows: timed(save_progress, rows))
        monkeypatch.setattr(generation.Generation, "save_finished", timed_finished)


@database_sync_to_async
def export_of_many(bob, acme, key):
    """An export of CONVERSATIONS conversations, made from one that is then deleted."""
    template = build_conversation(bob, acme, key)
    data = transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=template.pk)))
    template.delete()
    data["conversations"] *= CONVERSATIONS
    return data


@database_sync_to_async
def streaming_conversations(bob, acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-import-key")
    key.save()
    # Titled, so no title request (chat/titles.py) follows the answers.
    return key, [Conversation.objects.create(owner=bob, team=acme, title=f"Stream {n}") for n in range(ANSWERS)]


def import_as(user, data):
    """What a member's browser does: post the file, in a thread and database connection of its own."""
    client = Client()
    client.force_login(user)
    started = time.monotonic()
    response = client.post("/chats/import/", {"file": upload(data)})
    return response, started, time.monotonic()


async def test_answers_streaming_during_a_large_import_complete_with_their_usage(bob, acme, fake_url, monkeypatch, capsys):
    data = await export_of_many(bob, acme, None)
    key, conversations = await streaming_conversations(bob, acme, fake_url)
    saves = TimedSaves(monkeypatch)
    lock = OutermostTransactions(monkeypatch)
    lengths = [SPEED * 3 + SPEED * 6 * n // 5 for n in range(ANSWERS)]
    streams = []
    for conversation, tokens in zip(conversations, lengths):
        await generation.start(conversation, text=f"Talk [[fake:long={tokens}]] [[fake:speed={SPEED}]]", api_key=key)
        streams.append(generation._generations[str(conversation.pk)])
    while any(not stream.message.first_token_at for stream in streams):  # all 20 are streaming text
        await asyncio.sleep(0.1)

    def import_in_its_thread():
        lock.thread = threading.get_ident()
        return import_as(bob, data)

    (response, import_started, import_ended), *_ = await asyncio.wait_for(
        asyncio.gather(asyncio.to_thread(import_in_its_thread), *(stream.task for stream in streams)), timeout=600
    )

    assert response.status_code == 302
    imported = await Conversation.objects.exclude(pk__in=[c.pk for c in conversations]).acount()
    assert imported == CONVERSATIONS
    answers = [await Message.objects.aget(pk=stream.message.pk) for stream in streams]
    assert [answer.status for answer in answers] == ["complete"] * ANSWERS
    assert [answer.content for answer in answers] == [_long_text(tokens) for tokens in lengths]  # saved = sent
    assert all(answer.prompt_tokens and answer.completion_tokens > tokens for answer, tokens in zip(answers, lengths))
    during = sum(import_started <= at <= import_ended for at in saves.finished_at)
    assert during > 0  # the test's premise: answers ended while the import ran
    with capsys.disabled():
        print(
            f"\n{CONVERSATIONS:,}-conversation import during {ANSWERS} answers: {import_ended - import_started:.1f} s, "
            f"its longest transaction {lock.longest * 1000:.0f} ms; the longest save of a stream {saves.longest * 1000:.0f} ms; "
            f"{during} answers ended during the import, all complete"
        )
    await mimo.close_shared_http_client()
