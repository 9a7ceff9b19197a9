"""The live chat in real Chromium, against the fake MiMo server in both formats."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey
from chat import mimo
from chat.models import Conversation, Message
from chat.render import render_markdown
from tests.browser.conftest import sign_in_as

ANSWER = "article.message-assistant"


@pytest.fixture(params=["openai", "anthropic"])
def api_format(request):
    return request.param


@pytest.fixture
def chat(page, live_url, bob, acme, fake_url, api_format):
    """bob, signed in, on a new conversation whose team key points at the fake server."""
    key = ApiKey(team=acme, label="fake", base_url=fake_url, api_format=api_format)
    key.set_secret("sk-test-browser-key")
    key.save()
    sign_in_as(page, live_url, bob)
    page.goto("/chats/")
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # the socket is open
    return page


def send(page, text):
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("textbox", name="Message").press("Enter")


def last_answer(page):
    return page.locator(ANSWER).last


def saved_answer():
    return Message.objects.filter(role="assistant").order_by("-id").first()


def test_shift_enter_breaks_the_line_and_enter_sends(chat):
    box = chat.get_by_role("textbox", name="Message")
    box.fill("First line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    assert box.input_value() == "First line\nsecond line"
    expect(chat.locator(ANSWER)).to_have_count(0)
    box.press("Enter")
    expect(chat.locator("article.message-user")).to_contain_text("second line")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)


def test_thinking_then_answer_streams_into_the_page(chat, api_format):
    send(chat, "Explain [[fake:markdown]] [[fake:speed=60]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "streaming")
    thinking = answer.locator("details.thinking")
    expect(thinking).to_have_attribute("open", "")  # open while MiMo reasons
    expect(thinking.locator(".reasoning")).not_to_be_empty()
    expect(chat.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(thinking).not_to_have_attribute("open", "")  # folded once the answer started
    expect(thinking.locator("summary")).to_contain_text("Thought for")
    expect(answer.get_by_role("heading", name="A formatted answer")).to_be_visible()
    expect(answer.locator("table")).to_be_visible()
    expect(answer.locator("math").first).to_be_attached()
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    assert not chat.get_by_role("textbox", name="Message").input_value()


@pytest.mark.parametrize("thinking", [True, False])
def test_the_thinking_panel_folds_or_goes_as_soon_as_the_answer_starts(chat, thinking):
    if not thinking:
        chat.get_by_label("Thinking").uncheck()
    send(chat, "Write a lot [[fake:long=3000]] [[fake:speed=40]]")
    answer = last_answer(chat)
    expect(answer.locator(".answer")).to_contain_text("quick brown fox")
    expect(answer).to_have_attribute("data-status", "streaming")  # its frame, not the end's snapshot
    panel = answer.locator("details.thinking")
    if thinking:
        expect(panel).not_to_have_attribute("open", "")
        expect(panel.locator("summary")).to_contain_text("Thought for")
        expect(panel.locator(".reasoning")).not_to_be_empty()
    else:
        expect(panel).to_have_count(0)
        expect(answer).not_to_contain_text("Thinking…")
    chat.get_by_role("button", name="Stop").click()


def test_stop_keeps_the_partial_answer_and_offers_retry(chat):
    send(chat, "Write a lot [[fake:long=3000]] [[fake:speed=40]]")
    answer = last_answer(chat)
    expect(answer.locator(".answer .md-block").first).to_be_visible(timeout=15_000)
    chat.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer).to_contain_text("You stopped this answer")
    expect(answer.get_by_role("button", name="Retry")).to_be_visible()
    saved = saved_answer()
    assert saved.status == "stopped" and saved.content
    chat.reload()
    expect(last_answer(chat)).to_have_attribute("data-status", "stopped")
    assert last_answer(chat).locator(".answer").inner_text().strip()


def test_reload_and_a_second_tab_end_with_exactly_what_mimo_sent(chat, fake_records, fake_url):
    send(chat, "Long one [[fake:long=1500]] [[fake:speed=150]]")
    expect(last_answer(chat).locator(".answer .md-block").first).to_be_visible(timeout=15_000)
    chat.reload()  # in the middle of the answer
    second = chat.context.new_page()
    second.goto(chat.url)
    expect(chat.get_by_role("button", name="Stop")).to_be_visible()
    for tab in (chat, second):
        expect(last_answer(tab)).to_have_attribute("data-status", "complete", timeout=30_000)
    first_text = last_answer(chat).locator(".answer").inner_text()
    assert last_answer(second).locator(".answer").inner_text() == first_text
    chat.reload()  # rendered from the saved rows alone
    assert last_answer(chat).locator(".answer").inner_text() == first_text

    # The answer's request, not the title's after it (chat/titles.py offers no tools).
    body = next(r["body"] for r in reversed(fake_records.all()) if (r["body"] or {}).get("tools"))
    endpoint = mimo.Endpoint(fake_url, "sk-test-browser-key", mimo.ApiFormat(ApiKey.objects.get().api_format))
    assert saved_answer().content == replay(endpoint, body)


def replay(endpoint, body):
    """What the fake server says to this body (the same every time), read by our client."""

    async def collect():
        accumulator = mimo.Accumulator()
        async for event in mimo.stream_body(endpoint, body):
            accumulator.add(event)
        await mimo.close_shared_http_client()
        return accumulator.text

    # In a thread of its own: Playwright's event loop runs in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, collect()).result()


def test_a_cut_stream_is_kept_explained_and_retry_works(chat):
    send(chat, "Hello [[fake:long=200]] [[fake:cut=80]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "error", timeout=20_000)
    expect(answer).to_contain_text("The answer stopped before it was finished")
    assert answer.locator(".answer").inner_text().strip()  # what arrived is kept
    answer.get_by_role("button", name="Retry").click()
    # The retry is a new version of the answer: it takes the failed one's place, which stays one click away.
    expect(last_answer(chat).locator(".version-number")).to_have_text("2/2")
    expect(chat.locator(ANSWER)).to_have_count(1)
    expect(last_answer(chat)).not_to_have_attribute("data-status", "streaming", timeout=20_000)


def test_an_upstream_error_is_explained_and_retry_works(chat):
    send(chat, "Hello [[fake:error=402]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "error", timeout=20_000)
    expect(answer).to_contain_text("run out of credit")
    answer.get_by_role("button", name="Retry").click()
    expect(last_answer(chat).locator(".version-number")).to_have_text("2/2")


def test_two_rounds_of_tool_calls_show_as_cards(chat):
    send(chat, "What time is it? [[fake:tool]] [[fake:rounds=2]]")
    expect(chat.locator(ANSWER)).to_have_count(3, timeout=20_000)
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    cards = chat.get_by_role("region", name="Tool call: current_time")
    expect(cards).to_have_count(2)
    expect(cards.first).to_contain_text("Arguments")
    assert Conversation.objects.get().messages.filter(status="error").count() == 0


def test_html_and_script_payloads_are_rendered_inert(chat):
    dialogs = []
    chat.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    send(chat, "Show me [[fake:html]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    chat.reload()
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    found = chat.evaluate(
        """() => {
        const root = document.querySelector('#messages');
        const all = [...root.querySelectorAll('*')];
        return {
          scripts: root.querySelectorAll('script, iframe, object, embed, style').length,
          handlers: all.flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on')).length,
          badLinks: all.filter(e => /^\\s*(javascript|data|vbscript):/i.test(e.getAttribute('href') || e.getAttribute('src') || '')).length,
        };
    }"""
    )
    assert found == {"scripts": 0, "handlers": 0, "badLinks": 0}
    assert dialogs == []


def test_web_search_shows_its_sources_as_links(chat, api_format):
    if api_format == "anthropic":
        expect(chat.get_by_label("Web search")).to_be_disabled()  # MiMo offers it in OpenAI format only
        return
    chat.get_by_role("button", name="Model").click()
    chat.get_by_role("radio", name="mimo-v2.6-pro", exact=True).check()
    expect(chat.get_by_label("Web search")).to_be_disabled()  # not offered by this model
    chat.get_by_role("button", name="Model").click()
    chat.get_by_role("radio", name="mimo-v2.5-pro", exact=True).check()
    chat.get_by_label("Web search").check()
    send(chat, "News? [[fake:search]]")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=20_000)
    sources = last_answer(chat).get_by_role("region", name="Sources").get_by_role("link")
    expect(sources.first).to_be_visible()
    expect(sources.first).to_have_attribute("rel", "noopener noreferrer nofollow")
    assert Message.objects.filter(role="assistant").first().citations.count() == sources.count()


@pytest.mark.parametrize(
    "shape, piece", [("code", ".highlight code span.k"), ("table", "table tbody tr"), ("list", "ol li")]
)
def test_a_long_block_streams_piece_by_piece_and_ends_as_the_saved_text_renders(chat, shape, piece):
    errors = []
    chat.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    send(chat, f"Show me [[fake:{shape}=60]] [[fake:speed=120]]")
    answer = last_answer(chat)
    tail = answer.locator("[id$='-tail']")
    # Lines, rows and items appear in the open block while it streams, each rendered once.
    expect(tail.locator(piece).nth(5)).to_be_attached(timeout=15_000)
    expect(tail.locator("[id$='-open']")).to_have_count(1)
    assert answer.get_attribute("data-status") == "streaming"
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    expected = chat.evaluate(
        "html => { const box = document.createElement('div'); box.innerHTML = html; return box.innerHTML; }",
        str(render_markdown(saved_answer().content)),
    )
    # The code header is the page's own (static/chat/copy.js), not part of the rendered answer.
    final = answer.locator("[id$='-final']").evaluate(
        "final => { const copy = final.cloneNode(true); copy.querySelectorAll('.code-header').forEach(h => h.remove()); return copy.innerHTML; }"
    )
    assert final == expected
    assert tail.inner_html() == ""
    assert not errors


def test_an_answer_of_several_megabytes_reaches_the_page_whole(chat):
    # A 12,000-line code block: its finished block and the snapshot are each about 2 MB of HTML.
    send(chat, "Show me [[fake:code=6000]] [[fake:speed=0]]")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete", timeout=60_000)
    assert answer.locator("[id$='-final'] code > span.k").count() == 12000  # def and return, each step
    assert len(str(render_markdown(saved_answer().content))) > 1024 * 1024
