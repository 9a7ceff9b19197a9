"""Two daphne processes on PostgreSQL and Redis serve one conversation.

Runs in the second pass of `make test` (DATABASE_URL and REDIS_URL set), where
it is mandatory under CI=true; on the embedded defaults there is one process
and nothing to test.
"""

import os

import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey
from chat.models import Conversation, Message
from tests.browser.conftest import sign_in_as, start_live_server, stop_live_server

pytestmark = pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
    reason="needs PostgreSQL and the Redis channel layer (the scale-out pass of make test)",
)


@pytest.fixture(scope="module")
def other_live_url(live_url, django_db_blocker):
    server = start_live_server(django_db_blocker)
    yield f"http://localhost:{server.port.value}"
    stop_live_server(server)


def test_a_browser_on_process_b_watches_and_stops_a_generation_running_on_process_a(
    page, live_url, other_live_url, bob, acme, fake_url
):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-scale-out")
    key.save()
    conversation = Conversation.objects.create(owner=bob, team=acme)
    sign_in_as(page, live_url, bob)  # cookies ignore the port: both servers see the session

    page.goto(f"{live_url}/chats/{conversation.pk}/")  # process A
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_role("textbox", name="Message").fill("Go on [[fake:long=4000]] [[fake:speed=40]]")
    page.get_by_role("textbox", name="Message").press("Enter")
    on_a = page.locator("article.message-assistant").last
    expect(on_a.locator(".answer .md-block").first).to_be_visible(timeout=15_000)

    watcher = page.context.new_page()
    watcher.goto(f"{other_live_url}/chats/{conversation.pk}/")  # process B
    on_b = watcher.locator("article.message-assistant").last
    expect(on_b).to_have_attribute("data-status", "streaming")
    expect(watcher.get_by_role("button", name="Stop")).to_be_visible()
    # The answer keeps growing on B: frames from A arrive through Redis.
    before = len(on_b.locator(".answer").inner_text())
    expect(on_b.locator(".answer")).not_to_have_text(on_b.locator(".answer").inner_text(), timeout=10_000)
    assert len(on_b.locator(".answer").inner_text()) > before

    watcher.get_by_role("button", name="Stop").click()
    expect(on_b).to_have_attribute("data-status", "stopped", timeout=15_000)
    expect(on_a).to_have_attribute("data-status", "stopped", timeout=15_000)
    saved = Message.objects.get(conversation=conversation, role="assistant")
    assert saved.status == "stopped"
    assert on_a.locator(".answer").inner_text() == on_b.locator(".answer").inner_text()
