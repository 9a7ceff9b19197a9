"""A page whose socket drops says it may be out of date, opens it again by itself and catches up.

Playwright stands between the page and the server (`route_web_socket`), so the
test can drop the socket with 1011, as daphne does when the app fails, and
refuse the page's next tries for as long as it likes.
"""

import re

from playwright.sync_api import expect

from chat.models import Conversation, Message
from tests.browser.conftest import sign_in_as


def test_a_dropped_socket_reconnects_by_itself_and_the_page_catches_up_as_a_reload_would(page, live_url, bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Plans")
    sockets, refusing = [], []

    def between_page_and_server(ws):
        if refusing:
            ws.close(code=1011)
        else:
            ws.connect_to_server()
            sockets.append(ws)

    page.route_web_socket(re.compile(r".*/ws/conversations/.*"), between_page_and_server)
    sign_in_as(page, live_url, bob)
    page.goto(f"/chats/{conversation.pk}/")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open
    live_status = page.locator("#live-status")
    expect(live_status).to_be_empty()

    refusing.append(True)
    sockets[-1].close(code=1011)
    expect(live_status).to_have_text("The connection was lost: this conversation may be out of date. Reconnecting…")
    # While the page was away, an answer ended (another tab, another process).
    Message.objects.create(conversation=conversation, role="assistant", status="complete", content="Answered while the page was away")

    refusing.clear()
    expect(page.locator("article.message-assistant")).to_contain_text("Answered while the page was away", timeout=30_000)
    expect(live_status).to_be_empty()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert len(sockets) == 2  # opened again once, by itself
