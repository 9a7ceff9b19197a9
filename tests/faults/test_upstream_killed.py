"""The upstream (the fake MiMo server's process) killed mid-answer, 20 times over.

Each answer must end as an error that says the stream was cut, keeping what
arrived; Retry must work once MiMo is back; and mimoweb's process must stay
healthy throughout.
"""

import time

import httpx
import pytest
from channels.db import database_sync_to_async

from accounts.models import ApiKey
from chat import mimo
from chat.models import Conversation, Message
from tests.faults.servers import (
    Browser, Server, close_the_orm_connection, report, session_cookie, summary, wait_for, wait_until_listening,
)

pytestmark = pytest.mark.django_db(transaction=True)

KILLS = 20
# About four seconds an answer (200 tokens at 50 a second): each is cut about a second in, and the last one ends.
QUESTION = "Tell me a story [[fake:long=200]] [[fake:speed=50]]"


@pytest.fixture
async def servers(transactional_db, tmp_path):
    """mimoweb, and two fake MiMo servers: while one is killed and starts again, the key points at the other."""
    mimoweb = Server("mimoweb.asgi:application", tmp_path / "mimoweb.log")
    upstreams = [Server("chat.mimo.fake:application", tmp_path / f"fake-mimo-{n}.log") for n in (1, 2)]
    yield mimoweb, upstreams
    for server in (mimoweb, *upstreams):
        server.stop()
    await close_the_orm_connection()


@database_sync_to_async
def fake_key(team, url):
    key = ApiKey(team=team, label="fake", base_url=url)
    key.set_secret("sk-test-faults-upstream")
    key.save()
    return key


@database_sync_to_async
def point_key_at(key, url):
    key.base_url = url
    key.set_secret("sk-test-faults-upstream")  # a secret is bound to its base URL
    key.save()


def latest_answer_with_saved_text(conversation, newer_than):
    async def check():
        answer = await Message.objects.filter(conversation=conversation, role="assistant").order_by("-id").afirst()
        streaming = answer and answer.pk > newer_than and answer.status == "streaming"
        return answer if streaming and answer.content else None

    return check


def ended(message_id):
    async def check():
        message = await Message.objects.aget(pk=message_id)
        return message if message.status != "streaming" else None

    return check


async def test_an_answer_cut_by_the_upstream_dying_ends_as_an_error_keeping_its_text_and_can_be_retried(
    servers, bob, acme, capsys
):
    mimoweb, upstreams = servers
    key = await fake_key(acme, upstreams[0].url)
    conversation = await Conversation.objects.acreate(owner=bob, team=acme, title="Cut off")
    cookie = await database_sync_to_async(session_cookie)(bob)
    for server in (mimoweb, *upstreams):
        server.start()
    for server in (mimoweb, *upstreams):
        wait_until_listening(server.port)
    browser = await Browser(mimoweb.url, conversation.pk, cookie).open()

    marked_after = []
    try:
        assert await browser.send_message(QUESTION)
        previous = 0
        for kill in range(KILLS):
            upstream, other = upstreams[kill % 2], upstreams[(kill + 1) % 2]
            answer = await wait_for(latest_answer_with_saved_text(conversation, previous), "an answer with text saved")
            upstream.kill()
            killed = time.monotonic()
            cut = await wait_for(ended(answer.pk), "the cut answer to end")
            marked_after.append(time.monotonic() - killed)

            assert cut.status == "error" and cut.error_kind == mimo.ErrorKind.STREAM_CUT
            assert cut.content.startswith(answer.content)
            # The page says what happened, and offers Retry.
            frame = await browser.frame_with(f'id="message-{cut.pk}" class="message message-assistant" data-status="error"')
            assert str(mimo.ErrorKind.STREAM_CUT.message) in frame and 'aria-label="Retry"' in frame

            upstream.start()  # ready by its next turn
            await point_key_at(key, other.url)
            wait_until_listening(other.port)
            await browser.send(action="retry", message_id=str(cut.pk))
            previous = cut.pk

        # The last retry runs to its end.
        retried = await wait_for(latest_answer_with_saved_text(conversation, previous), "the last retry")
        finished = await wait_for(ended(retried.pk), "the last retry to end")
        assert finished.status == "complete"
    except BaseException:
        print(mimoweb.log()[-3000:])
        raise
    finally:
        await browser.close()

    # mimoweb's process lived through it all, and says it is well.
    assert mimoweb.process.poll() is None
    assert httpx.get(f"{mimoweb.url}/healthz").status_code == 200
    assert "Traceback" not in mimoweb.log()
    cut_answers = Message.objects.filter(conversation=conversation, status="error", error_kind="stream_cut").exclude(content="")
    assert await cut_answers.acount() == KILLS
    assert not await Message.objects.filter(status="streaming").aexists()

    report(capsys, f"upstream killed mid-answer x{KILLS}", [f"kill to the answer saved as cut {summary(marked_after)}"])
