"""Shared links in real Chromium: a teammate opens one, an outsider cannot, and the owner sees who did."""

import pytest
from playwright.sync_api import expect

from chat.models import ShareOpening
from tests.browser.conftest import sign_in_as
from tests.chat.test_transfer import build_conversation


@pytest.fixture
def open_as(browser, live_url):
    """A new browser profile signed in as the user, failing the test on any CSP violation, like `page`."""
    contexts, violations = [], []

    def open_as(user):
        context = browser.new_context(base_url=live_url, locale="en-US")
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
        sign_in_as(page, live_url, user)
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert violations == [], violations


def test_a_teammate_opens_a_shared_link_an_outsider_cannot_and_the_owner_sees_who_opened_it(
    page, live_url, open_as, alice, bob, charlie, acme
):
    conversation = build_conversation(bob, acme, title="Quarterly plans")
    sign_in_as(page, live_url, bob)
    page.goto(f"/chats/{conversation.pk}/")
    page.get_by_role("link", name="Share", exact=True).click()
    page.get_by_label("The link expires").select_option(label="in 1 day")
    page.get_by_role("button", name="Create a link").click()
    expect(page.get_by_role("status")).to_contain_text("The link is ready")
    link = page.get_by_role("textbox", name="Link").input_value()
    assert link.startswith(f"{live_url}/shares/")
    expect(page.get_by_text("Nobody has opened it yet.")).to_be_visible()

    teammate = open_as(alice)
    teammate.goto(link)
    expect(teammate.get_by_role("heading", name="Quarterly plans")).to_be_visible()
    expect(teammate.get_by_text("Shared by bob")).to_be_visible()
    answer = teammate.locator("article.message-assistant").filter(has_text="It is")
    expect(answer.locator("strong")).to_have_text("noon")
    expect(teammate.get_by_role("region", name="Tool call: current_time")).to_be_visible()
    expect(teammate.get_by_role("textbox", name="Message")).to_have_count(0)  # read-only: no composer

    outsider = open_as(charlie)
    response = outsider.goto(link)
    assert response.status == 404
    expect(outsider.get_by_text("Quarterly plans")).to_have_count(0)

    page.reload()
    openings = page.get_by_role("table", name="Opened once")
    expect(openings.get_by_role("cell", name="alice")).to_be_visible()
    expect(page.get_by_role("cell", name="charlie")).to_have_count(0)
    assert [opening.user for opening in ShareOpening.objects.all()] == [alice]

    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("The link is revoked")
    response = teammate.goto(link)
    assert response.status == 410
    expect(teammate.get_by_text("Its owner revoked this link.")).to_be_visible()
