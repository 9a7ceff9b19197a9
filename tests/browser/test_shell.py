"""The app shell in real Chromium: the sidebar (drawer, folding, one Tab stop per row), the header's
menu, the skip link, the app-wide shortcuts, the member's theme, and every main page: its fit on a phone
and a wide screen, its styled buttons and its one date format."""

import re

import pytest
from playwright.sync_api import expect

from chat import transfer
from chat.models import Conversation, Message, ReviewAccess, Share, ToolCall
from tests.browser.conftest import sign_in_as
from tests.browser.test_accessibility import ANSWER

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 860}


@pytest.fixture
def shell(browser, live_url, transactional_db):
    """Opens a page for a member at a screen size, failing on any Content-Security-Policy breach."""
    contexts, violations = [], []

    def open_as(user, path, viewport=DESKTOP, color_scheme="light"):
        context = browser.new_context(base_url=live_url, locale="en-US", viewport=viewport, color_scheme=color_scheme)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
        sign_in_as(page, live_url, user)
        assert page.goto(path).ok, path
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert violations == [], violations


def sidebar(page):
    return page.get_by_role("navigation", name="Your chats")


def toggle(page):
    return page.get_by_role("button", name="Chats")


@pytest.fixture
def paris(bob, acme):
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Trip to Paris")
    Message.objects.create(conversation=conversation, role="user", content="Where should we eat?")
    return conversation


# --- The sidebar ----------------------------------------------------------------------------


def test_on_a_phone_the_sidebar_is_a_drawer_that_esc_and_a_click_beside_it_close(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/", PHONE)
    expect(page.locator("#sidebar .sidebar-item")).to_have_count(1)  # its rows have loaded, out of sight
    expect(sidebar(page)).to_be_hidden()
    expect(toggle(page)).to_have_attribute("aria-expanded", "false")

    toggle(page).click()
    expect(sidebar(page)).to_be_visible()
    expect(toggle(page)).to_have_attribute("aria-expanded", "true")
    expect(sidebar(page).get_by_role("link", name="Trip to Paris")).to_be_focused()  # the open chat's row

    page.keyboard.press("Escape")
    expect(sidebar(page)).to_be_hidden()
    expect(toggle(page)).to_be_focused()

    toggle(page).click()
    page.mouse.click(380, 420)  # on the page beside the drawer
    expect(sidebar(page)).to_be_hidden()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()


def test_on_a_wide_screen_the_sidebar_folds_away_and_stays_folded(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/")
    expect(sidebar(page)).to_be_visible()
    box = sidebar(page).bounding_box()
    assert box["y"] == page.locator(".site-header").bounding_box()["height"]  # right under the header…
    assert box["y"] + box["height"] == DESKTOP["height"]  # …down to the bottom of the window

    toggle(page).click()
    expect(sidebar(page)).to_be_hidden()
    expect(toggle(page)).to_have_attribute("aria-expanded", "false")
    page.reload()
    expect(sidebar(page)).to_be_hidden()
    toggle(page).click()
    expect(sidebar(page)).to_be_visible()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_composer_stays_at_the_bottom_of_the_conversation_column_as_the_messages_scroll(shell, bob, paris, viewport):
    for number in range(30):
        Message.objects.create(conversation=paris, role="assistant", content=f"Answer {number}\n\n" + "A line. " * 40)
    page = shell(bob, f"/chats/{paris.pk}/", viewport)
    composer = page.locator("form#composer")
    messages = page.locator("#messages")
    for scroll in ("top", "bottom"):
        messages.evaluate(f"m => m.scrollTo(0, {'0' if scroll == 'top' else 'm.scrollHeight'})")
        box = composer.bounding_box()
        assert viewport["height"] - 40 <= box["y"] + box["height"] <= viewport["height"], scroll  # at the window's foot
        assert messages.bounding_box()["y"] + messages.bounding_box()["height"] <= box["y"] + 1  # nothing under it
    assert page.evaluate("document.scrollingElement.scrollHeight") <= viewport["height"]  # the messages scroll, not the page


def test_a_sidebar_row_is_one_tab_stop_and_its_menu_opens_from_the_keyboard(shell, bob, acme, paris):
    Conversation.objects.create(owner=bob, team=acme, title="Shopping list")
    page = shell(bob, f"/chats/{paris.pk}/")
    shopping = sidebar(page).get_by_role("link", name="Shopping list")
    shopping.focus()
    page.keyboard.press("Tab")
    expect(sidebar(page).get_by_role("link", name="Trip to Paris")).to_be_focused()  # the next row, not an action

    page.keyboard.press("ArrowRight")
    row = sidebar(page).locator(".sidebar-item").filter(has_text="Trip to Paris")
    expect(row.get_by_role("button", name="Pin")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(row.get_by_role("button", name="Rename")).to_be_focused()
    page.keyboard.press("Escape")
    expect(row.get_by_role("button", name="Rename")).to_be_hidden()
    expect(sidebar(page).get_by_role("link", name="Trip to Paris")).to_be_focused()

    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # Rename
    expect(sidebar(page).get_by_role("textbox", name="Title")).to_be_focused()


def test_a_new_title_has_a_place_to_go_in_the_sidebar(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/")
    expect(page.locator(f"#conversation-{paris.pk}-title")).to_have_text("Trip to Paris")


# --- The header, the skip link and the shortcuts -------------------------------------------------


def test_the_header_is_one_short_row_on_a_phone_and_a_wide_screen(shell, bob, paris):
    for viewport in (PHONE, DESKTOP):
        page = shell(bob, f"/chats/{paris.pk}/", viewport)
        assert page.locator(".site-header").bounding_box()["height"] <= 56


def test_the_menu_holds_the_navigation_and_closes_on_esc_and_outside_clicks(shell, alice, acme):
    page = shell(alice, "/home/", PHONE)
    menu = page.locator("details.site-menu")
    menu.locator("summary").click()
    navigation = page.get_by_role("navigation", name="Main")
    for name in ("Home", "Usage", "Manage team", "Preferences"):
        expect(navigation.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.keyboard.press("Escape")
    expect(navigation).to_be_hidden()
    expect(menu.locator("summary")).to_be_focused()
    menu.locator("summary").click()
    page.mouse.click(20, 600)  # on the page, away from the menu
    expect(navigation).to_be_hidden()


def test_the_menu_opened_as_the_page_loads_stays_open_when_the_sidebar_rows_arrive(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/")
    menu = page.locator("details.site-menu")
    menu.locator("summary").click()
    # The rows are drawn again by htmx, as they are once the page has loaded; resolved after every
    # listener of the swap has run.
    page.evaluate(
        """() => new Promise(swapped => {
            document.body.addEventListener("htmx:afterSwap", () => setTimeout(swapped), {once: true});
            htmx.ajax("GET", "/chats/sidebar/", {target: "#sidebar-list", swap: "outerHTML"});
        })"""
    )
    expect(menu).to_have_attribute("open", "")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_the_skip_link_is_the_first_tab_stop_and_leads_to_the_main_content(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_question_mark_opens_the_shortcuts_sheet_but_not_while_typing(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/")
    box = page.get_by_role("textbox", name="Message")
    box.press("?")
    expect(box).to_have_value("?")
    expect(page.get_by_role("dialog")).to_have_count(0)

    page.locator("h1").click()
    page.keyboard.press("?")
    sheet = page.get_by_role("dialog", name="Shortcuts")
    expect(sheet).to_be_visible()
    for shortcut in ("New chat", "Search your chats", "Send the message", "New line in the message", "Stop the answer"):
        expect(sheet).to_contain_text(shortcut)
    page.keyboard.press("Escape")
    expect(sheet).to_be_hidden()


def test_ctrl_k_goes_to_search_and_ctrl_shift_o_starts_a_new_chat(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/", PHONE)
    page.locator("h1").click()
    page.keyboard.press("Control+k")
    expect(sidebar(page).get_by_role("searchbox", name="Search your chats")).to_be_focused()  # the drawer opened
    page.keyboard.type("Paris")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/chats/search/\?q=Paris"))
    expect(page.get_by_role("main").get_by_role("link", name="Trip to Paris").first).to_be_visible()

    page.keyboard.press("Control+Shift+O")
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    assert bob.conversations.count() == 2


def test_on_a_mac_cmd_k_and_cmd_shift_o_do_the_same(shell, bob, paris):
    page = shell(bob, f"/chats/{paris.pk}/")
    page.locator("h1").click()
    page.keyboard.press("Meta+k")
    expect(sidebar(page).get_by_role("searchbox", name="Search your chats")).to_be_focused()
    page.locator("h1").click()
    page.keyboard.press("Meta+Shift+O")
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    assert bob.conversations.count() == 2


# --- The look ---------------------------------------------------------------------------------


def test_the_theme_chosen_in_preferences_wins_over_the_devices(shell, bob, paris):
    page = shell(bob, "/accounts/preferences/", color_scheme="light")
    page.get_by_label("Theme").select_option(label="Dark")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 24, 30)"
    bob.refresh_from_db()
    assert bob.theme == "dark"

    page.get_by_label("Theme").select_option(label="Same as the device")
    page.get_by_role("button", name="Save").click()
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 24, 30)"
    page.emulate_media(color_scheme="light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 248, 250)"


def test_every_button_on_every_main_page_is_styled_none_is_the_browsers_grey(shell, alice, main_pages):
    page = shell(alice, "/home/")
    native = {}
    for name, path in main_pages.items():
        assert page.goto(path).ok, path
        # Hidden ones too: "Send the edited message" waits in a closed disclosure, "Change role" in each member's row.
        found = page.evaluate(
            """() => [...document.querySelectorAll('button, input[type=submit], summary.button')]
                .filter(b => getComputedStyle(b).backgroundColor === 'rgb(239, 239, 239)')
                .map(b => b.textContent.trim() || b.getAttribute('aria-label'))"""
        )
        if found:
            native[name] = found
    assert native == {}
    page.goto(main_pages["members"])
    expect(page.get_by_role("button", name="Change role").first).to_be_attached()  # the page had them to check
    page.goto(main_pages["chat"])
    expect(page.get_by_role("button", name="Send the edited message", include_hidden=True).first).to_be_attached()


# --- Every main page fits a phone and a wide screen -------------------------------------------------

MAIN_PAGES = {
    "chat": "/chats/{paris}/",
    "list": "/chats/",
    "search": "/chats/search/?q=Paris",
    "usage": "/usage/",
    "preferences": "/accounts/preferences/",
    "keys": "/teams/{team}/keys/",
    "key audit": "/teams/{team}/keys/audit/",
    "members": "/teams/{team}/members/",
    "limits": "/teams/{team}/limits/",
    "review": "/review/",
    "review of a chat": "/review/{reviewed}/",
    "team usage": "/teams/{team}/usage/",
    "trash": "/chats/trash/",
    "shares": "/shares/",
    "shared link": "/shares/{share}/",
}


def answered(owner, team, key, title):
    """A conversation with a question and an answer: thinking, a table, a code block and a tool call."""
    conversation = Conversation.objects.create(owner=owner, team=team, title=title, api_key=key)
    question = Message.objects.create(conversation=conversation, role="user", content=f"{title}: where should we eat?")
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content=ANSWER, model="mimo-v2.5", api_key=key,
        reasoning_content="Thirty days for the standard plan.", prompt_tokens=1200, completion_tokens=300,
    )
    ToolCall.objects.create(
        message=answer, index=0, call_id="c1", name="policy_lookup", arguments_raw='{"topic": "refunds"}',
        result="30 days", status="done",
    )
    return conversation


@pytest.fixture
def main_pages(alice, bob, acme, acme_key):
    """{name: path} of every main page for alice, a team admin who reviews every team (a superuser), with a
    conversation of her own, shared, and one of bob's she opened for review."""
    alice.is_superuser = alice.is_staff = True
    alice.save()
    paris = answered(alice, acme, acme_key, "Trip to Paris")
    share = Share.objects.create(
        conversation=paris, created_by=alice,
        snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=paris.pk))),
    )
    reviewed = answered(bob, acme, acme_key, "Trip to Rome")
    ReviewAccess.record(reviewed, alice, "Checking the layout")
    ids = {"paris": paris.pk, "reviewed": reviewed.pk, "team": acme.pk, "share": share.pk}
    return {name: path.format(**ids) for name, path in MAIN_PAGES.items()}


# Each pair of visible controls whose boxes overlap by more than a pixel, and any sideways scrolling.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const root = document.scrollingElement;
  if (root.scrollWidth > window.innerWidth) problems.push(`scrolls sideways: ${root.scrollWidth} > ${window.innerWidth}`);
  const controls = [...document.querySelectorAll('a, button, input, select, textarea, summary')].filter(element => {
    const box = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden' && element.checkVisibility()
      && !element.closest('.visually-hidden');
  });
  const name = element => `${element.tagName.toLowerCase()} "${(element.textContent || element.name || '').trim().slice(0, 30)}"`;
  // What a scrolling box (the messages, a code block) shows of a control: scrolled out of it, it overlaps nothing.
  const shown = (element, rect) => {
    let box = {left: rect.left, top: rect.top, right: rect.right, bottom: rect.bottom};
    for (let outer = element.parentElement; outer; outer = outer.parentElement) {
      const style = getComputedStyle(outer);
      if (style.overflowX === 'visible' && style.overflowY === 'visible') continue;
      const clip = outer.getBoundingClientRect();
      box = {left: Math.max(box.left, clip.left), top: Math.max(box.top, clip.top),
             right: Math.min(box.right, clip.right), bottom: Math.min(box.bottom, clip.bottom)};
    }
    return box;
  };
  // A link that wraps has one box per line: compare those, not the rectangle around them.
  const boxes = controls.map(element => [...element.getClientRects()].map(rect => shown(element, rect))
    .filter(box => box.right > box.left && box.bottom > box.top));
  const overlap = (p, q) => Math.min(p.right, q.right) - Math.max(p.left, q.left) > 1
    && Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 1;
  for (let i = 0; i < controls.length; i++) {
    for (let j = i + 1; j < controls.length; j++) {
      if (controls[i].contains(controls[j]) || controls[j].contains(controls[i])) continue;
      if (boxes[i].some(p => boxes[j].some(q => overlap(p, q)))) problems.push(`${name(controls[i])} overlaps ${name(controls[j])}`);
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("width", [360, 1440])
def test_main_pages_neither_scroll_sideways_nor_overlap_controls(shell, alice, main_pages, width):
    viewport = {"width": width, "height": 900}
    page = shell(alice, "/home/", viewport)
    problems = {}
    for name, path in main_pages.items():
        assert page.goto(path).ok, path
        page.wait_for_load_state("networkidle")
        if found := page.evaluate(LAYOUT_PROBLEMS):
            problems[name] = found
    page.context.clear_cookies()
    page.goto("/accounts/sign-in/")
    if found := page.evaluate(LAYOUT_PROBLEMS):
        problems["sign-in"] = found
    assert problems == {}


# --- One date format ------------------------------------------------------------------------------

DATE = r"[A-Z][a-z]{2} \d{1,2}, \d{4}"  # "Dec 3, 2026", as mimoweb/formats/en writes it
CLOCK = re.compile(r"\d{1,2}:\d\d(?::\d\d)?(?:\s?[AaPp]\.?[Mm]\.?)?")
NUMERIC_DATE = re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b")


def test_every_main_page_writes_its_dates_and_times_in_one_format(shell, alice, main_pages):
    page = shell(alice, "/home/")
    found, problems = 0, {}
    for name, path in main_pages.items():
        assert page.goto(path).ok, path
        page.wait_for_load_state("networkidle")
        text = page.locator("main").inner_text()
        clocks = CLOCK.findall(text)
        in_format = re.findall(rf"{DATE}, \d{{1,2}}:\d\d [AP]M", text)
        found += len(clocks)
        if len(in_format) != len(clocks) or NUMERIC_DATE.search(text) or ".." in text:
            problems[name] = (clocks, in_format)
    assert problems == {}
    assert found >= 5  # keys, audit, review, shares, the shared link and search write times
