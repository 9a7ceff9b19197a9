"""The composer in real Chromium: nothing typed is lost, notices go with their cause, live titles,
the keyboard, the switches that follow the model and the key, and sampling that reaches MiMo."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import ApiKey, Membership, Team
from chat.models import Conversation, Message
from tests.browser.conftest import sign_in_as

ANSWER = "article.message-assistant"
STILL_ANSWERING = "MiMo is still answering"

# Lets a test put the page in a background tab: headless Chromium shows every page.
HIDDEN_TAB = """
Object.defineProperty(Document.prototype, "visibilityState", { get() { return window.__tabState || "visible"; } });
Object.defineProperty(Document.prototype, "hidden", { get() { return window.__tabState === "hidden"; } });
"""


def make_key(team, fake_url, label="fake", api_format="openai", secret="sk-test-browser-key"):
    key = ApiKey(team=team, label=label, base_url=fake_url, api_format=api_format)
    key.set_secret(secret)
    key.save()
    return key


def open_chat(page, live_url, user, conversation):
    sign_in_as(page, live_url, user)
    page.goto(f"/chats/{conversation.pk}/")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open
    return page


@pytest.fixture
def chat(page, live_url, bob, acme, fake_url):
    """bob on a titled conversation (no title request follows an answer), the team key on the fake server."""
    make_key(acme, fake_url)
    return open_chat(page, live_url, bob, Conversation.objects.create(owner=bob, team=acme, title="Plans"))


def box(page):
    return page.get_by_role("textbox", name="Message")


def send(page, text):
    box(page).fill(text)
    box(page).press("Enter")


def last_answer(page):
    return page.locator(ANSWER).last


def test_text_sent_while_an_answer_streams_stays_and_the_notice_goes_when_the_answer_ends(chat):
    send(chat, "Write a lot [[fake:long=400]] [[fake:speed=40]]")
    expect(box(chat)).to_have_value("")  # taken: the box let go of it
    expect(last_answer(chat)).to_have_attribute("data-status", "streaming")
    send(chat, "A second question")
    expect(chat.locator("#notice")).to_contain_text(STILL_ANSWERING)
    expect(box(chat)).to_have_value("A second question")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(chat.locator("#notice")).to_be_empty()
    expect(box(chat)).to_have_value("A second question")

    box(chat).press("Enter")  # now it goes
    expect(chat.locator("article.message-user").last).to_contain_text("A second question")
    expect(box(chat)).to_have_value("")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(chat.locator("#notice")).to_be_empty()


def used_up_budget(team, conversation):
    Team.objects.filter(pk=team.pk).update(monthly_token_limit=1_000)
    Message.objects.create(
        conversation=conversation, role="assistant", model="mimo-v2.5-pro", prompt_tokens=600, completion_tokens=600,
        created_at=timezone.now(),
    )


@pytest.mark.parametrize("who", ["member", "team admin"])
def test_a_send_over_budget_keeps_the_text_and_says_why_once_in_words_for_the_role(page, live_url, alice, bob, acme, fake_url, fake_records, who):
    make_key(acme, fake_url)
    user = bob if who == "member" else alice
    conversation = Conversation.objects.create(owner=user, team=acme, title="Plans")
    used_up_budget(acme, Conversation.objects.create(owner=user, team=acme, title="Earlier"))
    open_chat(page, live_url, user, conversation)
    warnings = page.locator(".composer-dock .message-warning, .composer-dock .notice:not(:empty)")
    expect(warnings).to_have_count(1)  # the used-up budget, once (not once per meter)
    send(page, "Hello there")
    expect(warnings).to_have_count(1)
    expect(warnings).to_contain_text("Acme has used up its monthly budget")
    expect(box(page)).to_have_value("Hello there")
    if who == "member":
        expect(warnings).to_contain_text("Ask alice, a team admin of Acme, to raise it.")
    else:
        expect(warnings).to_contain_text("you can raise it on its Limits page")
        expect(warnings.get_by_role("link", name="Limits")).to_have_attribute("href", f"/teams/{acme.pk}/limits/")
    assert fake_records.all() == []


def test_a_draft_survives_a_reload_until_it_is_sent(chat):
    box(chat).fill("Half a thought")
    chat.reload()
    expect(box(chat)).to_have_value("Half a thought")
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    box(chat).press("Enter")
    expect(chat.locator("article.message-user")).to_contain_text("Half a thought")
    expect(box(chat)).to_have_value("")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    chat.reload()
    expect(box(chat)).to_have_value("")


def test_the_automatic_title_reaches_the_sidebar_and_the_tab_title_in_every_tab(page, live_url, bob, acme, fake_url):
    make_key(acme, fake_url)
    conversation = Conversation.objects.create(owner=bob, team=acme)
    first = open_chat(page, live_url, bob, conversation)
    second = first.context.new_page()
    second.goto(first.url)
    row = f"#conversation-{conversation.pk}-title"
    for tab in (first, second):
        expect(tab.locator(row)).to_have_text("New chat")
        expect(tab).to_have_title("New chat · mimoweb")
        expect(tab.get_by_role("button", name="Send")).to_be_enabled()
    send(first, "Hello")
    for tab in (first, second):
        expect(tab.locator("#chat-title")).to_contain_text("Hello! This is the offline fake MiMo server", timeout=20_000)
        title = tab.locator("#chat-title").inner_text()
        expect(tab.locator(row)).to_have_text(title)
        expect(tab).to_have_title(f"{title} · mimoweb")
    assert Conversation.objects.get().title == title


def test_escape_stops_the_answer_but_first_closes_an_open_menu(chat):
    send(chat, "Write a lot [[fake:long=3000]] [[fake:speed=40]]")
    answer = last_answer(chat)
    expect(answer.locator(".answer .md-block").first).to_be_visible(timeout=15_000)
    chat.get_by_role("button", name="Model").click()
    menu = chat.get_by_role("dialog", name="Model")
    expect(menu).to_be_visible()
    chat.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    assert answer.get_attribute("data-status") == "streaming"
    box(chat).focus()
    chat.keyboard.press("Escape")
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(chat.get_by_role("button", name="Send")).to_be_visible()


def test_an_answer_that_ends_is_announced_once_and_a_background_tab_says_so_in_its_title(chat):
    chat.add_init_script(HIDDEN_TAB)
    chat.reload()
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    send(chat, "Hello [[fake:long=100]] [[fake:speed=40]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "streaming")
    chat.evaluate("window.__tabState = 'hidden'")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(chat).to_have_title("✓ Answer ready · Plans · mimoweb")
    expect(chat.locator("#announcer")).to_have_text("MiMo answered.")
    chat.evaluate("window.__tabState = 'visible'; document.dispatchEvent(new Event('visibilitychange'))")
    expect(chat).to_have_title("Plans · mimoweb")


def test_a_background_tab_notifies_when_the_member_allowed_it(chat):
    chat.context.grant_permissions(["notifications"])
    chat.add_init_script(
        HIDDEN_TAB
        + """
        window.__notified = [];
        window.Notification = class { constructor(title, options) { window.__notified.push([title, options.body]); } };
        window.Notification.permission = "granted";
        window.Notification.requestPermission = async () => "granted";
        """
    )
    chat.reload()
    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Notify me when an answer is ready").check()
    chat.keyboard.press("Escape")
    send(chat, "Hello [[fake:long=100]] [[fake:speed=40]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "streaming")
    chat.evaluate("window.__tabState = 'hidden'")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(chat).to_have_title("✓ Answer ready · Plans · mimoweb")
    assert chat.evaluate("window.__notified") == [["Plans", "MiMo answered."]]
    chat.reload()  # the choice is remembered
    chat.get_by_role("button", name="Settings").click()
    expect(chat.get_by_label("Notify me when an answer is ready")).to_be_checked()


def test_web_search_follows_the_key_and_the_model_chosen(page, live_url, bob, acme, fake_url):
    Team.objects.filter(pk=acme.pk).update(members_may_choose_key=True)
    openai = make_key(acme, fake_url, label="OpenAI one")
    make_key(acme, fake_url, label="Anthropic one", api_format="anthropic", secret="sk-test-anthropic-9876")
    Team.objects.filter(pk=acme.pk).update(default_key=openai)
    open_chat(page, live_url, bob, Conversation.objects.create(owner=bob, team=acme, title="Plans"))
    search = page.get_by_label("Web search")
    expect(search).to_be_enabled()
    page.get_by_role("button", name="Settings").click()
    # The default is named: which key "the team's default" is, by label, where it is sent and its last four.
    expect(page.get_by_label("Key").locator("option").first).to_have_text("The team’s default key: OpenAI one · 127.0.0.1 · …-key")
    page.get_by_label("Key").select_option(label="Anthropic one · 127.0.0.1 · …9876")
    page.keyboard.press("Escape")
    expect(search).to_be_disabled()
    expect(page.locator("#web-search-cue")).to_have_text("Web search needs a key in OpenAI format.")
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Key").select_option(label="OpenAI one · 127.0.0.1 · …-key")
    page.keyboard.press("Escape")
    expect(search).to_be_enabled()
    page.get_by_role("button", name="Model").click()
    page.get_by_role("radio", name="mimo-v2.6-pro", exact=True).check()
    expect(search).to_be_disabled()
    expect(page.locator("#web-search-cue")).to_have_text("This model has no web search.")
    expect(page.get_by_role("button", name="Model")).to_contain_text("mimo-v2.6-pro")
    page.get_by_role("button", name="Model").click()
    page.get_by_role("radio", name="mimo-v2.5-pro", exact=True).check()
    expect(search).to_be_enabled()


def test_the_system_prompt_and_sampling_reach_mimo_and_a_bad_value_is_refused_with_the_text_kept(chat, fake_records):
    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Temperature").fill("2")
    chat.keyboard.press("Escape")
    send(chat, "Be creative")
    expect(chat.locator("#notice")).to_have_text("Temperature must be between 0 and 1.5 for mimo-v2.5-pro.")
    expect(box(chat)).to_have_value("Be creative")

    chat.get_by_role("button", name="Settings").click()
    chat.get_by_label("Temperature").fill("0.4")
    chat.get_by_label("Top p").fill("0.8")
    chat.get_by_label("Maximum output tokens").fill("2048")
    chat.get_by_label("System prompt").fill("Answer in French.")
    chat.keyboard.press("Escape")
    chat.get_by_label("Thinking").uncheck()
    box(chat).press("Enter")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(chat.locator("#notice")).to_be_empty()
    body = fake_records.all()[-1]["body"]
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.4, 0.8, 2048)
    assert body["thinking"] == {"type": "disabled"}
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    chat.reload()  # kept with the conversation
    chat.get_by_role("button", name="Settings").click()
    expect(chat.get_by_label("Temperature")).to_have_value("0.4")
    expect(chat.get_by_label("System prompt")).to_have_value("Answer in French.")


def test_the_model_menu_says_what_each_model_takes_and_the_switches_follow_the_model_chosen(chat):
    chat.get_by_role("button", name="Model").click()
    menu = chat.get_by_role("dialog", name="Model")
    expect(menu.get_by_role("radio", name="mimo-v2.5", exact=True)).to_have_accessible_description(
        "1M context · 128K output · text, images, audio, video · thinks by default · web search"
    )
    expect(menu.get_by_role("radio", name="mimo-v2.6-pro", exact=True)).to_have_accessible_description(
        "1M context · 128K output · text, images · thinks by default"
    )
    chat.keyboard.press("Escape")
    thinking, search = chat.get_by_label("Thinking"), chat.get_by_label("Web search")
    expect(thinking).to_be_checked()
    thinking.uncheck()
    chat.get_by_role("button", name="Model").click()
    menu.get_by_role("radio", name="mimo-v2.5", exact=True).check()
    expect(thinking).to_be_checked()  # the model brings its own default, at once
    # Web search is off by default, and says so; on, it says what it costs.
    expect(search).not_to_be_checked()
    expect(chat.locator("#web-search-cue")).to_have_text("Web search is off: MiMo answers from what it knows.")
    chat.keyboard.press("Escape")
    search.check()
    expect(chat.locator("#web-search-cue")).to_have_text("MiMo may search the web; each search is billed.")


def test_the_settings_say_that_thinking_makes_mimo_ignore_temperature_and_top_p(chat):
    chat.get_by_role("button", name="Settings").click()
    note = chat.get_by_text("While thinking is on, MiMo ignores temperature and top p (it uses 1.0 and 0.95).")
    expect(chat.get_by_label("Temperature")).to_have_attribute("min", "0.0")
    expect(chat.get_by_label("Temperature")).to_have_attribute("max", "1.5")
    expect(chat.get_by_label("Top p")).to_have_attribute("min", "0.01")
    expect(chat.get_by_label("Top p")).to_have_attribute("max", "1.0")
    expect(note).to_be_visible()
    chat.keyboard.press("Escape")
    chat.get_by_label("Thinking").uncheck()
    chat.get_by_role("button", name="Settings").click()
    expect(note).to_be_hidden()
