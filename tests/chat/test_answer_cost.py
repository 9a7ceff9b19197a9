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
# +4 for the usage roll-ups (chat/usage.py), in the transactions that start and end the answer:
# its price period and its day's and month's row when it starts, its stored figures (with the
# period) and the two rows again when it ends.
MOST_QUERIES_AN_ANSWER_TAKES = 27


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
