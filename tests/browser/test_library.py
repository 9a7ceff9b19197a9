"""The member's library in real Chromium: the sidebar (trash and restore, rename, pin, pages), titles, details."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import ApiKey
from chat.models import Conversation, Message, Price
from chat.views.library import SIDEBAR_PAGE_SIZE
from tests.browser.conftest import sign_in_as


def sidebar(page):
    return page.get_by_role("navigation", name="Your chats")


def row(page, title):
    return sidebar(page).locator(".sidebar-item").filter(has_text=title)


def row_action(page, title, action):
    """A row's actions are in its menu: open it, then pick one."""
    row(page, title).locator("summary").click()
    row(page, title).get_by_role("button", name=action).click()


def open_chat(page, live_url, user, conversation):
    sign_in_as(page, live_url, user)
    page.goto(f"/chats/{conversation.pk}/")
    expect(sidebar(page).locator(".sidebar-item").first).to_be_visible()  # its first page has loaded


def test_member_deletes_from_the_sidebar_finds_it_in_the_trash_and_restores_it(page, live_url, bob, acme):
    paris = Conversation.objects.create(owner=bob, team=acme, title="Trip to Paris")
    shopping = Conversation.objects.create(owner=bob, team=acme, title="Shopping list")
    open_chat(page, live_url, bob, shopping)

    row_action(page, "Trip to Paris", "Delete")
    expect(sidebar(page).get_by_role("status")).to_contain_text("“Trip to Paris” is in the trash.")
    expect(sidebar(page).get_by_role("link", name="Trip to Paris")).to_have_count(0)

    sidebar(page).get_by_role("link", name="Trash").click()
    in_trash = page.get_by_role("listitem").filter(has_text="Trip to Paris")
    expect(in_trash).to_contain_text("Deleted for good on")
    in_trash.get_by_role("button", name="Restore").click()

    expect(page).to_have_url(re.compile(rf"/chats/{paris.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Trip to Paris")
    expect(sidebar(page).get_by_role("link", name="Trip to Paris")).to_have_attribute("aria-current", "page")
    expect(sidebar(page).get_by_role("link", name="Shopping list")).to_be_visible()


def test_a_slip_of_the_mouse_is_undone_from_the_sidebar(page, live_url, bob, acme):
    Conversation.objects.create(owner=bob, team=acme, title="Trip to Paris")
    shopping = Conversation.objects.create(owner=bob, team=acme, title="Shopping list")
    open_chat(page, live_url, bob, shopping)
    row_action(page, "Trip to Paris", "Delete")
    sidebar(page).get_by_role("status").get_by_role("button", name="Undo").click()
    expect(sidebar(page).get_by_role("link", name="Trip to Paris")).to_be_visible()
    expect(sidebar(page).get_by_role("status")).to_have_count(0)
    assert not Conversation.objects.in_trash().exists()


def test_deleting_the_open_conversation_goes_back_to_the_list(page, live_url, bob, acme):
    shopping = Conversation.objects.create(owner=bob, team=acme, title="Shopping list")
    open_chat(page, live_url, bob, shopping)
    row_action(page, "Shopping list", "Delete")
    expect(page).to_have_url(re.compile(r"/chats/$"))
    expect(page.get_by_role("status")).to_contain_text("“Shopping list” is in the trash.")


def test_member_renames_inline_and_pins(page, live_url, bob, acme):
    old = Conversation.objects.create(owner=bob, team=acme, title="Old notes")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=12))
    current = Conversation.objects.create(owner=bob, team=acme, title="Trip to Paris")
    open_chat(page, live_url, bob, current)

    row_action(page, "Trip to Paris", "Rename")
    title = sidebar(page).get_by_role("textbox", name="Title")
    expect(title).to_be_focused()
    title.fill("")
    sidebar(page).get_by_role("button", name="Save").click()
    expect(sidebar(page).get_by_role("alert")).to_have_text("A title cannot be empty.")
    title.fill("Paris in spring")
    title.press("Enter")
    expect(sidebar(page).get_by_role("link", name="Paris in spring")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Paris in spring")  # the open one's heading too
    assert Conversation.objects.get(pk=current.pk).title == "Paris in spring"

    links = sidebar(page).locator(".sidebar-link")
    expect(links.first).to_have_text("Paris in spring")
    row_action(page, "Old notes", "Pin")
    expect(links.first).to_have_text("Old notes")
    expect(sidebar(page).get_by_role("heading", name="Pinned")).to_be_visible()
    page.reload()
    expect(links.first).to_have_text("Old notes")  # kept
    row_action(page, "Old notes", "Unpin")
    expect(links.first).to_have_text("Paris in spring")
    expect(sidebar(page).get_by_role("heading", name="Pinned")).to_have_count(0)


def test_sidebar_loads_the_next_page_when_scrolled_to_its_end(page, live_url, bob, acme):
    now = timezone.now()
    total = SIDEBAR_PAGE_SIZE + 15
    for number in range(total):
        conversation = Conversation.objects.create(owner=bob, team=acme, title=f"Chat number {number:02}")
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(minutes=number))
    open_chat(page, live_url, bob, conversation)  # the oldest, on the second page
    items = sidebar(page).locator(".sidebar-item")
    expect(items).to_have_count(SIDEBAR_PAGE_SIZE)
    expect(sidebar(page).get_by_role("link", name=f"Chat number {total - 1:02}")).to_have_count(0)
    sidebar(page).evaluate("nav => nav.scrollTo(0, nav.scrollHeight)")  # the member scrolls the sidebar to its end
    expect(items).to_have_count(total)
    expect(sidebar(page).get_by_role("link", name=f"Chat number {total - 1:02}")).to_have_attribute("aria-current", "page")
    expect(sidebar(page).get_by_role("heading", name="Today")).to_have_count(1)  # one group over two pages


def test_details_open_lazily_with_tokens_cost_and_timings(page, live_url, bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Costs")
    Price.objects.create(
        model="mimo-priced", valid_from=datetime(2026, 1, 1, tzinfo=UTC), input_per_million=Decimal("1"),
        cached_input_per_million=Decimal("0.1"), output_per_million=Decimal("2"),
    )
    Message.objects.create(conversation=conversation, role="user", content="How much?")
    started = timezone.now() - timedelta(seconds=10)
    Message.objects.create(
        conversation=conversation, role="assistant", content="This much.", model="mimo-priced",
        parameters={"thinking": False, "web_search": False}, prompt_tokens=1000, cached_tokens=0,
        completion_tokens=500, created_at=started, first_token_at=started + timedelta(seconds=1),
        finished_at=started + timedelta(seconds=4),
    )
    open_chat(page, live_url, bob, conversation)
    details = page.locator("article.message-assistant details.message-details")
    expect(details.locator(".details-list")).to_have_count(0)  # nothing fetched until opened
    details.get_by_text("Details").click()
    expect(details).to_contain_text("0.002000 USD")  # (1000×1 + 500×2) per million
    expect(details).to_contain_text("Thinking: off")
    expect(details).to_contain_text("125.0")  # 500 tokens in 4 s


def test_a_new_conversation_gets_its_title_after_the_first_answer(page, live_url, bob, acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-browser-key")
    key.save()
    sign_in_as(page, live_url, bob)
    page.goto("/chats/")
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_role("textbox", name="Message").fill("Plan a trip to Paris")
    page.get_by_role("textbox", name="Message").press("Enter")
    # The fake answers the title request like any other; MiMo would give a short title.
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello! This is the offline fake MiMo", timeout=20_000)
    page.reload()
    expect(sidebar(page).locator(".sidebar-link").first).to_contain_text("Hello! This is the offline fake MiMo")
