"""The member's library: sidebar, pin, rename, trash and restore, purge, and each answer's details."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.http import Http404
from django.utils import timezone
from django.utils.formats import date_format

import chat.routing
from chat.models import TRASH_DAYS, Conversation, Message, Price, get_conversation_for
from chat.views.library import MAX_SIDEBAR_PAGE, SIDEBAR_PAGE_SIZE

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Bob's plans")


@pytest.fixture
def answer(conversation):
    Message.objects.create(conversation=conversation, role="user", content="Plan my week")
    started = timezone.now() - timedelta(seconds=10)
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Here is a plan.",
        model="mimo-v2.5-pro",
        parameters={"thinking": True, "web_search": False},
        prompt_tokens=1000,
        cached_tokens=200,
        completion_tokens=500,
        reasoning_tokens=300,
        created_at=started,
        first_token_at=started + timedelta(seconds=2),
        finished_at=started + timedelta(seconds=5),
    )


def at(conversation, moment):
    """Set when the conversation was last active (auto_now would overwrite it through save())."""
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)


def sidebar_text(client):
    return client.get("/chats/sidebar/", **HTMX).text


# --- Who may do what -----------------------------------------------------------------


def library_urls(conversation, message):
    """Every URL the library adds about one conversation: (method, url, data)."""
    base = f"/chats/{conversation.pk}"
    return [
        ("get", f"{base}/sidebar-item/", {}),
        ("get", f"{base}/rename/", {}),
        ("post", f"{base}/rename/", {"title": "Taken over"}),
        ("post", f"{base}/pin/", {"pinned": "1"}),
        ("post", f"{base}/delete/", {}),
        ("post", f"{base}/restore/", {}),
        ("get", f"{base}/messages/{message.pk}/details/", {}),
    ]


def snapshot(conversation):
    row = Conversation.objects.get(pk=conversation.pk)
    return row.title, row.pinned_at, row.deleted_at, row.updated_at


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
@pytest.mark.parametrize("in_trash", [False, True])
def test_others_get_404_for_every_library_url_and_change_nothing(client, conversation, answer, who, in_trash, request):
    if in_trash:
        conversation.move_to_trash()
    before = snapshot(conversation)
    client.force_login(request.getfixturevalue(who))
    for method, url, data in library_urls(conversation, answer):
        assert getattr(client, method)(url, data, **HTMX).status_code == 404, url
        assert getattr(client, method)(url, data).status_code == 404, url
    assert snapshot(conversation) == before


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_others_see_none_of_the_members_conversations_in_their_sidebar_and_trash(client, conversation, who, request):
    trashed = Conversation.objects.create(owner=conversation.owner, team=conversation.team, title="Bob's secret")
    trashed.move_to_trash()
    client.force_login(request.getfixturevalue(who))
    for url in ("/chats/sidebar/", "/chats/sidebar/?page=2", "/chats/trash/", "/chats/"):
        page = client.get(url, **HTMX).text
        assert "Bob" not in page, url


def test_signed_out_visitor_is_sent_to_sign_in_from_every_library_url(client, conversation, answer):
    conversation.move_to_trash()
    before = snapshot(conversation)
    urls = [("get", "/chats/sidebar/", {}), ("get", "/chats/trash/", {}), *library_urls(conversation, answer)]
    for method, url, data in urls:
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/sign-in/"), url
    assert snapshot(conversation) == before


def test_someone_elses_message_is_404_even_through_ones_own_conversation(client, bob, acme, answer):
    own = Conversation.objects.create(owner=bob, team=acme)
    other = Conversation.objects.create(owner=bob, team=acme)
    mine_elsewhere = Message.objects.create(conversation=other, role="assistant", content="x")
    client.force_login(bob)
    assert client.get(f"/chats/{own.pk}/messages/{mine_elsewhere.pk}/details/").status_code == 404
    user_message = Message.objects.filter(role="user").first()
    assert client.get(f"/chats/{answer.conversation_id}/messages/{user_message.pk}/details/").status_code == 404


# --- The sidebar ----------------------------------------------------------------------


def test_sidebar_groups_by_period_in_the_members_time_zone_pinned_first(client, bob, acme):
    bob.time_zone = "Asia/Shanghai"
    bob.save()
    now = timezone.now()
    local_midnight = timezone.localtime(now, ZoneInfo("Asia/Shanghai")).replace(hour=0, minute=0, second=0, microsecond=0)
    made = {}
    for title, moment in [
        ("Just now", now),
        ("Last night", local_midnight - timedelta(hours=2)),
        ("Four days ago", local_midnight - timedelta(days=4)),
        ("Twenty days ago", local_midnight - timedelta(days=20)),
        ("Long ago", datetime(2025, 3, 14, 12, tzinfo=UTC)),
        ("Pinned old one", datetime(2025, 1, 2, 12, tzinfo=UTC)),
    ]:
        made[title] = Conversation.objects.create(owner=bob, team=acme, title=title)
        at(made[title], moment)
    made["Pinned old one"].set_pinned(True)
    client.force_login(bob)
    page = sidebar_text(client)
    order = ["Pinned", "Pinned old one", "Today", "Just now", "Yesterday", "Last night", "Previous 7 days",
             "Four days ago", "Previous 30 days", "Twenty days ago", "March 2025", "Long ago"]
    positions = [page.index(text) for text in order]
    assert positions == sorted(positions)
    assert "January 2025" not in page  # the pinned one is under Pinned, not its month


def test_month_headings_are_in_the_members_language(client, bob, acme):
    bob.language = "zh-hans"
    bob.save()
    at(Conversation.objects.create(owner=bob, team=acme, title="旧的"), datetime(2025, 3, 14, 12, tzinfo=UTC))
    client.force_login(bob)
    assert "2025年3月" in sidebar_text(client)


def test_sidebar_comes_in_pages_and_a_group_running_over_two_pages_has_one_heading(client, bob, acme):
    now = timezone.now()
    for number in range(SIDEBAR_PAGE_SIZE + 5):
        at(Conversation.objects.create(owner=bob, team=acme, title=f"Chat number {number:03}"), now - timedelta(seconds=number))
    client.force_login(bob)
    first = sidebar_text(client)
    assert first.count('class="sidebar-item"') == SIDEBAR_PAGE_SIZE
    assert "Chat number 000" in first and f"Chat number {SIDEBAR_PAGE_SIZE:03}" not in first
    assert 'hx-get="/chats/sidebar/?page=2&amp;after=today"' in first
    assert 'hx-trigger="intersect once root:.sidebar"' in first
    second = client.get("/chats/sidebar/?page=2&after=today", **HTMX).text
    assert second.count('class="sidebar-item"') == 5
    assert f"Chat number {SIDEBAR_PAGE_SIZE:03}" in second
    assert "Today" not in second  # the group goes on from the first page
    assert "?page=3" not in second  # the last page loads nothing more


def test_list_page_shows_the_first_page_of_the_sidebar(client, bob, conversation):
    client.force_login(bob)
    page = client.get("/chats/").text
    assert "Bob&#x27;s plans" in page
    assert 'id="sidebar-list"' in page
    assert 'href="/chats/trash/"' in page


def test_conversation_page_loads_the_sidebar_and_marks_the_open_conversation(client, bob, acme, conversation):
    other = Conversation.objects.create(owner=bob, team=acme, title="Another")
    client.force_login(bob)
    page = client.get(f"/chats/{conversation.pk}/").text
    assert 'hx-get="/chats/sidebar/" hx-trigger="load"' in page
    rows = client.get("/chats/sidebar/", HTTP_HX_CURRENT_URL=f"http://testserver/chats/{conversation.pk}/", **HTMX).text
    assert f'href="/chats/{conversation.pk}/" class="sidebar-link" aria-current="page"' in rows
    assert f'href="/chats/{other.pk}/" class="sidebar-link" data-row-link>' in rows


def test_bad_page_numbers_fall_back_to_the_first_page(client, bob, conversation):
    client.force_login(bob)
    for page in ("x", "-3", "0", "²", "1e9", ""):
        assert "Bob&#x27;s plans" in client.get(f"/chats/sidebar/?page={page}", **HTMX).text


@pytest.mark.parametrize("page", ["99999999999999999999", "9223372036854775807", str(10**4000)])
def test_a_page_number_too_large_for_the_database_is_a_404_not_a_500(client, bob, conversation, page):
    client.force_login(bob)
    assert client.get(f"/chats/sidebar/?page={page}", **HTMX).status_code == 404


def test_the_last_page_number_the_database_takes_is_an_empty_page(client, bob, conversation):
    client.force_login(bob)
    response = client.get(f"/chats/sidebar/?page={MAX_SIDEBAR_PAGE}", **HTMX)
    assert response.status_code == 200 and "Bob&#x27;s plans" not in response.text


# --- Pin and rename -------------------------------------------------------------------


def test_pin_puts_a_conversation_first_and_unpin_puts_it_back(client, bob, acme, conversation):
    at(conversation, timezone.now() - timedelta(days=3))
    Conversation.objects.create(owner=bob, team=acme, title="Newer")
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/pin/", {"pinned": "1"}, **HTMX)
    assert response.text.index("Bob&#x27;s plans") < response.text.index("Newer")
    assert 'id="sidebar-list"' in response.text
    conversation.refresh_from_db()
    assert conversation.pinned_at is not None
    assert (timezone.now() - conversation.updated_at).days == 3  # pinning is not activity
    response = client.post(f"/chats/{conversation.pk}/pin/", {"pinned": "0"}, **HTMX)
    assert response.text.index("Newer") < response.text.index("Bob&#x27;s plans")
    conversation.refresh_from_db()
    assert conversation.pinned_at is None


def test_rename_offers_a_form_in_place_and_saves_the_title(client, bob, conversation):
    client.force_login(bob)
    form = client.get(f"/chats/{conversation.pk}/rename/", **HTMX).text
    assert f'id="conversation-{conversation.pk}-item"' in form
    assert 'name="title" value="Bob&#x27;s plans"' in form
    response = client.post(f"/chats/{conversation.pk}/rename/", {"title": "  Holidays  "}, **HTMX)
    assert "Holidays" in response.text and 'class="sidebar-item"' in response.text
    assert "chat-title" not in response.text  # another page is on screen: no heading to update
    assert Conversation.objects.get(pk=conversation.pk).title == "Holidays"


def test_renaming_the_open_conversation_updates_its_heading_too(client, bob, conversation):
    client.force_login(bob)
    response = client.post(
        f"/chats/{conversation.pk}/rename/", {"title": "Holidays"},
        HTTP_HX_CURRENT_URL=f"http://testserver/chats/{conversation.pk}/", **HTMX,
    )
    assert '<h1 id="chat-title" class="chat-title" hx-swap-oob="true">Holidays</h1>' in response.text


@pytest.mark.parametrize(
    "title, error",
    [("", "A title cannot be empty."), ("   ", "A title cannot be empty."), ("x" * 201, "at most 200 characters")],
)
def test_an_empty_or_overlong_title_is_refused_clearly_and_changes_nothing(client, bob, conversation, title, error):
    before = snapshot(conversation)
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/rename/", {"title": title}, **HTMX)
    assert response.status_code == 200
    assert error in response.text
    assert 'role="alert"' in response.text and 'name="title"' in response.text
    assert snapshot(conversation) == before


def test_cancelling_a_rename_brings_the_row_back(client, bob, conversation):
    client.force_login(bob)
    row = client.get(f"/chats/{conversation.pk}/sidebar-item/", **HTMX).text
    assert row.strip().startswith(f'<li id="conversation-{conversation.pk}-item" class="sidebar-item">')
    assert "Bob&#x27;s plans" in row


# --- Trash, restore, purge ------------------------------------------------------------


def test_delete_moves_to_the_trash_out_of_the_sidebar_and_the_page_is_404(client, bob, acme, conversation):
    kept = Conversation.objects.create(owner=bob, team=acme, title="Kept")
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/delete/", **HTMX)
    assert "is in the trash" in response.text and "Undo" in response.text
    assert "Kept" in response.text
    conversation.refresh_from_db()
    assert conversation.deleted_at is not None
    assert "Bob&#x27;s plans" not in sidebar_text(client)
    assert "Bob&#x27;s plans" not in client.get("/chats/").text
    assert client.get(f"/chats/{conversation.pk}/").status_code == 404
    assert client.get(f"/chats/{kept.pk}/").status_code == 200


def test_delete_keeps_the_messages_for_a_restore(client, bob, conversation, answer):
    client.force_login(bob)
    client.post(f"/chats/{conversation.pk}/delete/", **HTMX)
    client.post(f"/chats/{conversation.pk}/restore/", **HTMX)
    assert Message.objects.filter(conversation=conversation).count() == 2
    assert client.get(f"/chats/{conversation.pk}/").status_code == 200


def test_deleting_the_open_conversation_sends_the_page_to_the_list(client, bob, conversation):
    client.force_login(bob)
    response = client.post(
        f"/chats/{conversation.pk}/delete/", HTTP_HX_CURRENT_URL=f"http://testserver/chats/{conversation.pk}/", **HTMX
    )
    assert response["HX-Redirect"] == "/chats/"
    assert "is in the trash" in client.get("/chats/").text


def test_deleting_while_an_answer_streams_stops_it_first(client, bob, conversation):
    streaming = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", heartbeat_at=timezone.now()
    )
    client.force_login(bob)
    client.post(f"/chats/{conversation.pk}/delete/", **HTMX)
    streaming.refresh_from_db()
    assert streaming.stop_requested_at is not None  # read by the generation's process within seconds
    assert Conversation.objects.get(pk=conversation.pk).deleted_at is not None


def test_trash_lists_deleted_conversations_with_when_they_go_for_good(client, bob, conversation):
    conversation.move_to_trash()
    deleted = timezone.now() - timedelta(days=2)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=deleted)
    client.force_login(bob)
    page = client.get("/chats/trash/").text
    assert "Bob&#x27;s plans" in page
    assert f"Deleted for good on {date_format(deleted + timedelta(days=28 + 2), 'DATETIME_FORMAT')}" in page
    assert f'action="/chats/{conversation.pk}/restore/"' in page


def test_restore_puts_it_back_in_the_sidebar_and_opens_it(client, bob, conversation):
    conversation.move_to_trash()
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/restore/")
    assert response["Location"] == f"/chats/{conversation.pk}/"
    assert Conversation.objects.get(pk=conversation.pk).deleted_at is None
    assert "Bob&#x27;s plans" in sidebar_text(client)
    assert f"/chats/{conversation.pk}/restore/" not in client.get("/chats/trash/").text


def test_only_a_conversation_in_the_trash_can_be_restored(client, bob, conversation):
    client.force_login(bob)
    assert client.post(f"/chats/{conversation.pk}/restore/").status_code == 404


def test_opening_the_trash_deletes_for_good_what_is_past_its_time(client, bob, charlie, acme, globex, conversation):
    due = timezone.now() - timedelta(days=TRASH_DAYS, minutes=1)
    conversation.move_to_trash()
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=due)
    recent = Conversation.objects.create(owner=bob, team=acme, title="Recently deleted")
    recent.move_to_trash()
    charlies = Conversation.objects.create(owner=charlie, team=globex, title="Charlie's")
    Conversation.objects.filter(pk=charlies.pk).update(deleted_at=due)
    client.force_login(bob)
    page = client.get("/chats/trash/").text
    assert "Recently deleted" in page and "Bob&#x27;s plans" not in page
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert Conversation.objects.filter(pk=charlies.pk).exists()  # only the visitor's own are purged here


def test_purge_trash_command_deletes_for_good_everyones_expired_trash_only(bob, charlie, acme, globex, answer):
    due = timezone.now() - timedelta(days=TRASH_DAYS, minutes=1)
    expired = [answer.conversation, Conversation.objects.create(owner=charlie, team=globex)]
    Conversation.objects.filter(pk__in=[c.pk for c in expired]).update(deleted_at=due)
    recent = Conversation.objects.create(owner=bob, team=acme)
    recent.move_to_trash()
    alive = Conversation.objects.create(owner=bob, team=acme)
    out = StringIO()
    call_command("purge_trash", stdout=out)
    assert "2 conversation(s) deleted for good" in out.getvalue()
    assert set(Conversation.objects.values_list("pk", flat=True)) == {recent.pk, alive.pk}
    assert not Message.objects.filter(conversation_id=answer.conversation_id).exists()


# --- An answer's details --------------------------------------------------------------


def price(model="mimo-test", valid_from=datetime(2026, 1, 1, tzinfo=UTC), **rates):
    rates = {"input_per_million": "1", "cached_input_per_million": "0.1", "output_per_million": "2",
             "web_search_per_thousand": "5", **rates}
    return Price.objects.create(model=model, valid_from=valid_from, **{k: Decimal(v) for k, v in rates.items()})


def test_cost_is_prompt_cached_completion_and_searches_at_their_rates():
    message = Message(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, web_search_calls=2)
    # (1000-200)×1 + 200×0.1 + 500×2 per million, plus 2 searches at 5 per thousand
    assert price().cost_of(message) == Decimal("0.00182") + Decimal("0.01")


def test_cost_is_unknown_without_usage():
    rates = price()
    assert rates.cost_of(Message(prompt_tokens=None, completion_tokens=None)) is None
    assert rates.cost_of(Message(prompt_tokens=10, completion_tokens=None)) is None


def test_the_price_in_force_when_the_message_ran_is_used_not_todays():
    old = price(valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    newer = price(valid_from=datetime(2026, 6, 1, tzinfo=UTC), input_per_million="9")
    price(valid_from=datetime(2026, 9, 1, tzinfo=UTC), input_per_million="99")  # later than the message
    price(model="mimo-other", valid_from=datetime(2026, 7, 1, tzinfo=UTC))
    assert Price.objects.in_force("mimo-test", datetime(2026, 3, 1, tzinfo=UTC)) == old
    assert Price.objects.in_force("mimo-test", datetime(2026, 6, 1, tzinfo=UTC)) == newer  # from that moment on
    assert Price.objects.in_force("mimo-test", datetime(2026, 7, 15, tzinfo=UTC)) == newer
    assert Price.objects.in_force("mimo-test", datetime(2025, 12, 31, tzinfo=UTC)) is None


def test_details_show_tokens_cost_timings_model_and_parameters(client, bob, answer):
    Message.objects.filter(pk=answer.pk).update(model="mimo-test", created_at=datetime(2026, 3, 1, tzinfo=UTC))
    answer.refresh_from_db()
    Message.objects.filter(pk=answer.pk).update(
        first_token_at=answer.created_at + timedelta(seconds=2), finished_at=answer.created_at + timedelta(seconds=5)
    )
    price(valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    price(valid_from=datetime(2026, 4, 1, tzinfo=UTC), output_per_million="50")  # today's price, not the message's
    client.force_login(bob)
    details = client.get(f"/chats/{answer.conversation_id}/messages/{answer.pk}/details/", **HTMX).text
    text = " ".join(details.split())
    assert "mimo-test" in text
    assert "Thinking: on · Web search: off" in text
    assert "1000 (200 cached)" in text
    assert "500 (300 thinking)" in text
    assert "0.001820 USD" in text  # (800×1 + 200×0.1 + 500×2) / 1e6
    assert "2.0 s" in text and "5.0 s" in text
    assert "100.0" in text  # 500 tokens in 5 s


def test_details_show_the_media_tokens_mimo_reported(client, bob, answer):
    Message.objects.filter(pk=answer.pk).update(image_tokens=1024, audio_tokens=63, video_tokens=0)
    client.force_login(bob)
    details = client.get(f"/chats/{answer.conversation_id}/messages/{answer.pk}/details/", **HTMX).text
    assert "Media tokens" in details and "1024 image · 63 audio" in " ".join(details.split())
    assert "video" not in details


def test_details_show_no_media_tokens_when_there_were_none(client, bob, answer):
    client.force_login(bob)
    assert "Media tokens" not in client.get(f"/chats/{answer.conversation_id}/messages/{answer.pk}/details/").text


def test_details_say_unknown_cost_without_a_price(client, bob, answer):
    Message.objects.filter(pk=answer.pk).update(model="mimo-unpriced")
    client.force_login(bob)
    details = client.get(f"/chats/{answer.conversation_id}/messages/{answer.pk}/details/").text
    assert "unknown" in details


def test_every_finished_answer_has_a_details_disclosure_that_loads_when_opened(client, bob, answer):
    client.force_login(bob)
    page = client.get(f"/chats/{answer.conversation_id}/").text
    url = f"/chats/{answer.conversation_id}/messages/{answer.pk}/details/"
    assert f'<details class="message-details" hx-get="{url}" hx-trigger="toggle once"' in page
    assert page.count('class="message-details"') == 1  # the question has none


def test_the_access_helper_finds_one_in_the_trash_only_when_asked(bob, conversation):
    assert get_conversation_for(bob, conversation.pk) == conversation
    with pytest.raises(Http404):
        get_conversation_for(bob, conversation.pk, in_trash=True)
    conversation.move_to_trash()
    with pytest.raises(Http404):
        get_conversation_for(bob, conversation.pk)
    assert get_conversation_for(bob, conversation.pk, in_trash=True) == conversation


@pytest.mark.django_db(transaction=True)
async def test_the_socket_of_a_conversation_in_the_trash_is_refused(bob, acme):
    conversation = await Conversation.objects.acreate(owner=bob, team=acme)
    await database_sync_to_async(conversation.move_to_trash)()
    communicator = WebsocketCommunicator(URLRouter(chat.routing.websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/")
    communicator.scope["user"] = bob
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4404)
