"""A tab open on an answer while mimoweb's process is killed (`kill -9`) and started again.

The server is the daphne command in a process of its own (tests/faults/servers.py),
so that it can be killed and started again as a supervisor would.
"""

import time

import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey
from chat.models import Conversation, Message
from tests.browser.conftest import sign_in_as
from tests.faults.servers import Server, wait_until_listening

ANSWER = "article.message-assistant"


@pytest.fixture
def mimoweb(transactional_db, tmp_path):
    server = Server("mimoweb.asgi:application", tmp_path / "mimoweb.log")
    server.start()
    wait_until_listening(server.port)
    yield server
    server.stop()


@pytest.fixture
def page(browser, mimoweb):
    context = browser.new_context(base_url=mimoweb.url, locale="en-US")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def saved_text_of(message_id):
    """Waits until the answer has text in the database: what a crash must keep."""
    for _attempt in range(300):
        if content := Message.objects.get(pk=message_id).content:
            return content
        time.sleep(0.05)
    raise TimeoutError("the answer saved no text")


def test_after_a_crash_the_open_tab_stops_the_dead_answer_at_once_and_retries_it(page, mimoweb, bob, acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-browser-crash")
    key.save()
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Crash")
    sign_in_as(page, mimoweb.url, bob)
    page.goto(f"/chats/{conversation.pk}/")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open
    page.get_by_role("textbox", name="Message").fill("Write a lot [[fake:long=3000]] [[fake:speed=40]]")
    page.get_by_role("textbox", name="Message").press("Enter")
    answer = page.locator(ANSWER).last
    expect(answer.locator(".answer .md-block").first).to_be_visible()
    saved = saved_text_of(Message.objects.get(conversation=conversation, role="assistant").pk)

    mimoweb.kill()
    composer = page.locator("[data-composer]")
    expect(composer).not_to_have_attribute("data-connected", "true")
    mimoweb.start()
    expect(composer).to_have_attribute("data-connected", "true", timeout=30_000)  # the tab reconnected by itself

    # The tab still shows the answer streaming; Stop ends it at once, keeping what was saved.
    expect(answer).to_have_attribute("data-status", "streaming")
    page.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-status", "interrupted")
    expect(answer).to_contain_text("The server stopped while MiMo was answering")
    assert answer.locator(".answer").inner_text().strip().startswith(saved.split()[0])

    answer.get_by_role("button", name="Retry").click()
    retried = page.locator(ANSWER).last
    expect(retried).to_have_attribute("data-status", "streaming")
    expect(retried.locator(".answer .md-block").first).to_be_visible()
    page.get_by_role("button", name="Stop").click()
    expect(retried).to_have_attribute("data-status", "stopped")
    expect(retried.locator(".version-number")).to_have_text("2/2")  # the interrupted one is kept beside it
    assert not Message.objects.filter(status="streaming").exists()
