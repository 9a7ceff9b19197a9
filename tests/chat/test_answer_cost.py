"""What an answer costs the database thread, where every socket's and stream's queries wait in turn.

A hundred answers asked for at once queue there: each query an answer's start or end
makes is paid a hundred times before the last of them begins (issue 10's bench).
"""

import logging

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper

from chat import mimo
from tests.chat.test_consumers import connect, conversation, frames_until_finished, send_form  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

# Today's count, from the form to the meters; a change that adds to it should say why here.
# 23 by issue 10's work, then +1 for the answers streaming that the budgets' reserve and the pace
# read at the start, and +4 for the usage roll-ups (chat/usage.py): the price period and the
# roll-up rows when the answer starts, its stored figures and the rows again when it ends.
# The end's save is one transaction (the retried final save), the search entries within it.
# -1: the team the budget check locks is the one the key is chosen by, read once.
# -2: without a budget or a limit on answers at once, neither the answers streaming nor, after
# the answer, the meters are read (the conversation's team here has none).
# -1: each round's request takes the settings the answer started with, not a new read of them.
MOST_QUERIES_AN_ANSWER_TAKES = 24


async def test_an_answer_from_send_to_end_takes_no_more_queries_than_it_did(conversation, bob, caplog, monkeypatch):
    communicator, connected, _code = await connect(bob, conversation.pk)
    assert connected
    await communicator.send_json_to(send_form("A first question", thinking="off"))
    await frames_until_finished(communicator)  # the first answer of a conversation also asks for its title
    await communicator.receive_nothing(0.3)

    # Every connection, in whichever thread, logs its queries (as with DEBUG on).
    monkeypatch.setattr(BaseDatabaseWrapper, "queries_logged", property(lambda connection: True))
    with caplog.at_level(logging.DEBUG, logger="django.db.backends"):
        await communicator.send_json_to(send_form("A second question", thinking="off"))
        await frames_until_finished(communicator)
        await communicator.receive_nothing(0.3)  # the meters after the end
    statements = [record.sql for record in caplog.records if hasattr(record, "sql")]
    assert 10 < len(statements) <= MOST_QUERIES_AN_ANSWER_TAKES, "\n".join(statements)
    await communicator.disconnect()
    await mimo.close_shared_http_client()
