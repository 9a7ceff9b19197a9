"""Budgets and pace (chat/limits.py): checked before anything is sent to MiMo, and held under concurrent sends."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.utils import timezone

import chat.routing
from accounts.models import ApiKey, Membership, Team
from chat import generation, limits, mimo, usage
from chat.models import Attachment, Conversation, Message, Price
from tests.conftest import make_user

# Transactional: create_turn runs in database_sync_to_async, which closes the connection a
# test transaction would live in; and the concurrency test needs committed rows across threads.
pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(chat.routing.websocket_urlpatterns)


def past_answer(conversation, tokens, *, created_at=None, status=Message.Status.COMPLETE, **fields):
    """An assistant message that used `tokens` (half prompt, half completion)."""
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=status,
        model="mimo-v2.5-pro",
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        created_at=created_at or timezone.now(),
        **fields,
    )


def streaming_answer(conversation, **fields):
    return Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, **fields
    )


def held_for_team(team):
    """(tokens, cost) the budget check holds for the team's answers streaming now."""
    return limits.reserved(None, limits.streaming_now(team), limits.used_this_month(team), limits.largest_recent_answers(team, None))


def set_limits(holder, **limits_):
    type(holder).objects.filter(pk=holder.pk).update(**limits_)
    holder.refresh_from_db()


@pytest.fixture
def price(db):
    """mimo-v2.5-pro's price from mimo-api.md §11 (a transactional test flushes the migration's rows)."""
    return Price.objects.get_or_create(
        model="mimo-v2.5-pro",
        valid_from=datetime(2026, 5, 27, tzinfo=UTC),
        defaults={
            "input_per_million": Decimal("0.435"),
            "cached_input_per_million": Decimal("0.0036"),
            "output_per_million": Decimal("0.87"),
        },
    )[0]


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


@pytest.fixture
def history(bob, acme):
    """Another of bob's conversations in Acme, where the past answers are."""
    return Conversation.objects.create(owner=bob, team=acme, title="Earlier")


def bobs_membership(bob, acme):
    return Membership.objects.get(user=bob, team=acme)


def send(conversation, text="Hello"):
    """A send as the socket makes it; the team's key (the acme_key fixture) is the one chosen."""
    return async_to_sync(generation.create_turn)(conversation, text)


def refusal_of(conversation, text="Hello"):
    with pytest.raises(limits.Refused) as refused:
        send(conversation, text)
    return str(refused.value)


# --- What counts as used ------------------------------------------------------------------


def test_a_member_removed_from_the_team_cannot_go_on_with_its_keys(bob, alice, acme, acme_key, conversation):
    Membership.objects.get(user=bob, team=acme).remove(actor=alice)
    refusal = refusal_of(conversation)
    assert refusal == "You are no longer a member of Acme, so this conversation cannot go on with its keys."
    assert not conversation.messages.exists()


def test_used_counts_this_months_answers_of_the_team_and_of_the_member(bob, alice, acme, globex, history):
    past_answer(history, 1_000)
    past_answer(history, 500, created_at=limits.month_start() - timedelta(seconds=1))  # last month
    alices = Conversation.objects.create(owner=alice, team=acme)
    past_answer(alices, 300)
    charlie = make_user("charlie", globex)
    past_answer(Conversation.objects.create(owner=charlie, team=globex), 7_000)  # another team
    Message.objects.create(conversation=history, role=Message.Role.USER, content="Hi")  # a question uses nothing

    assert limits.used_this_month(acme)[0] == 1_300
    assert limits.used_this_month(acme, bob)[0] == 1_000


def test_the_budget_checks_one_read_gives_the_team_and_the_member_what_each_read_alone_gives(bob, alice, acme, history, price):
    past_answer(history, 2_000_000)
    past_answer(Conversation.objects.create(owner=alice, team=acme), 300)
    other_model = past_answer(history, 1_000)
    Message.objects.filter(pk=other_model.pk).update(model="mimo-v2.5")  # another model: another price
    usage.rebuild_rollups()
    team, own = limits.used_by_team_and_member(acme, bob.pk)
    assert team == limits.used_this_month(acme)
    assert team[0] == 2_001_300 and team[1] > Decimal("1.305")
    assert own == limits.used_this_month(acme, bob)
    assert own[0] == 2_001_000 and own[1] >= Decimal("1.305")
    assert limits.used_by_team_and_member(acme, None)[1] == (0, 0)


def test_cost_used_is_at_the_price_in_force(bob, acme, history, price):
    past_answer(history, 2_000_000)  # a million in at $0.435, a million out at $0.87
    assert limits.used_this_month(acme, bob)[1] == Decimal("1.305")


def test_month_starts_at_midnight_of_the_first_in_the_servers_time_zone(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    start = limits.month_start(datetime(2026, 3, 31, 17, 0, tzinfo=UTC))  # April 1st, 1:00 there
    assert (start.year, start.month, start.day, start.hour) == (2026, 4, 1, 0)
    assert start.utcoffset() == timedelta(hours=8)


# --- Budgets --------------------------------------------------------------------------------


def test_member_over_team_budget_is_refused_naming_the_limit_and_the_admin(bob, alice, acme, acme_key, conversation, history):
    set_limits(acme, monthly_token_limit=10_000)
    past_answer(history, 10_234)
    sentence = refusal_of(conversation)
    assert "Acme has used up its monthly budget: 10,234 of 10,000 tokens this month." in sentence
    assert "Ask alice, a team admin of Acme, to raise it." in sentence
    assert not conversation.messages.exists()


def test_member_over_own_cost_budget_is_refused_though_the_team_has_room(
    bob, alice, acme, acme_key, conversation, history, price
):
    set_limits(acme, monthly_cost_limit=Decimal("100"))
    set_limits(bobs_membership(bob, acme), monthly_cost_limit=Decimal("1.00"))
    past_answer(history, 2_000_000)  # $1.305
    sentence = refusal_of(conversation)
    assert "You have used up your own monthly budget in Acme: $1.30 of $1.00 this month." in sentence
    assert "alice" in sentence
    assert not conversation.messages.exists()


def test_every_admin_of_the_team_is_named(bob, alice, acme, acme_key, conversation, history):
    make_user("dora", acme, Membership.Role.ADMIN)
    set_limits(acme, monthly_token_limit=100)
    past_answer(history, 100)
    assert "Ask alice or dora, the team admins of Acme, to raise it." in refusal_of(conversation)


def test_at_80_percent_the_member_is_warned_and_the_send_goes_ahead(bob, acme, acme_key, conversation, history):
    set_limits(bobs_membership(bob, acme), monthly_token_limit=10_000)
    past_answer(history, 8_500)
    [meter] = limits.member_meters(conversation)
    assert meter.is_warning and not meter.is_exhausted
    assert meter.summary == "8,500 of 10,000 tokens this month"
    assert meter.warning == "You have used 85% of your own monthly budget in Acme: 8,500 of 10,000 tokens."
    _question, answer, _window, _metered = send(conversation)
    assert answer.status == Message.Status.STREAMING


def test_the_meter_shows_the_tighter_of_the_team_budget_and_the_members_own(bob, acme, conversation, history):
    set_limits(acme, monthly_token_limit=1_000_000, monthly_cost_limit=Decimal("2.00"))
    set_limits(bobs_membership(bob, acme), monthly_token_limit=5_000)
    past_answer(history, 1_000)
    tokens, cost = limits.member_meters(conversation)
    assert (tokens.whose, tokens.kind, tokens.limit) == (limits.MEMBER, limits.TOKENS, 5_000)
    assert (cost.whose, cost.kind, cost.summary) == (limits.TEAM, limits.COST, "$0.00 of $2.00 this month")


@pytest.mark.parametrize(
    "used, limit, text, percent",
    [
        ("0.0182", "0.02", "$0.0182 of $0.0200", 91),  # was "$0.02 of $0.02" beside 91 %
        ("4.999", "5", "$4.99 of $5.00", 99),  # cut, not rounded up to the limit
        ("0.455", "0.5", "$0.455 of $0.500", 91),
        ("12.34", "100", "$12.34 of $100.00", 12),
        ("1234.5", "2000", "$1,234.50 of $2,000.00", 61),
    ],
)
def test_a_cost_meter_shows_amounts_that_agree_with_its_percent(acme, used, limit, text, percent):
    meter = limits.Meter(limits.MEMBER, limits.COST, acme, Decimal(used), Decimal(limit))
    assert meter.of_limit() == text
    assert meter.percent == percent


@pytest.mark.parametrize("limit", ["0.02", "0.5", "1", "2.50", "7.3", "100"])
def test_the_shown_amount_of_a_cost_meter_gives_back_its_percent(acme, limit):
    """Whatever was used, the amount as shown, over the limit, is the percent shown."""
    for thousandths in range(0, 1001, 7):
        used = Decimal(limit) * thousandths / 1000 + Decimal("0.000001")
        meter = limits.Meter(limits.MEMBER, limits.COST, acme, used, Decimal(limit))
        shown = Decimal(meter.amount(used).removeprefix("$").replace(",", ""))
        assert int(shown / Decimal(limit) * 100) == meter.percent, (used, meter.of_limit(), meter.percent)


@pytest.mark.parametrize("amount", ["0.00025", "0.0182", "0.99999", "12.345", "1234.5"])
def test_the_limits_page_and_the_usage_page_show_one_cost_alike(amount):
    assert limits.spent(Decimal(amount)).removeprefix("$") == usage.money(Decimal(amount)).removesuffix(" USD")


def test_no_limits_no_meter(conversation):
    assert limits.member_meters(conversation) == []


def test_answers_still_streaming_hold_room_in_the_budget(bob, acme, acme_key, conversation, history):
    set_limits(acme, monthly_token_limit=10_000)
    past_answer(history, 5_000)
    other = Conversation.objects.create(owner=bob, team=acme)
    streaming_answer(other)  # holds about one answer's worth: 5,000
    sentence = refusal_of(conversation)
    assert "The monthly budget of Acme is almost used up: 5,000 of 10,000 tokens this month" in sentence
    assert "Try again when they have finished." in sentence
    assert not conversation.messages.exists()


def test_without_history_a_streaming_answer_holds_the_floor(acme, bob, history):
    streaming_answer(history)
    assert held_for_team(acme) == (limits.RESERVE_FLOOR_TOKENS, limits.RESERVE_FLOOR_COST)


def test_a_streaming_answer_holds_the_largest_answer_of_today_and_yesterday(bob, alice, acme, history):
    past_answer(history, 7_000, created_at=timezone.now() - timedelta(days=1))
    past_answer(history, 5_000)
    past_answer(history, 90_000, created_at=timezone.now() - timedelta(days=3))  # too long ago
    past_answer(Conversation.objects.create(owner=alice, team=acme), 6_000)
    streaming_answer(history)
    streaming_answer(Conversation.objects.create(owner=alice, team=acme))
    assert held_for_team(acme)[0] == 2 * 7_000
    used, largest = limits.used_this_month(acme, alice), limits.largest_recent_answers(acme, alice.pk)
    streaming = limits.streaming_now(acme)
    assert limits.reserved(alice.pk, streaming, used, largest)[0] == 6_000  # a member's own: only theirs


def test_a_streaming_answer_holds_the_largest_answers_tokens_at_the_scopes_cost_per_token(bob, acme, history, price):
    past_answer(history, 2_000_000)  # $1.305
    past_answer(history, 10_000)  # $0.006525: $1.311525 this month for 2,010,000 tokens
    streaming_answer(history)
    tokens, cost = held_for_team(acme)
    assert tokens == 2_000_000
    assert cost == Decimal("1.311525") * 2_000_000 / 2_010_000


def test_the_largest_answer_is_kept_by_the_rollups_and_measured_again_by_a_rebuild(bob, acme, history):
    answer = past_answer(history, 9_000)
    past_answer(history, 3_000)
    assert limits.largest_recent_answers(acme, bob.pk) == {None: 9_000, bob.pk: 9_000}
    answer.delete()  # a high-water mark: the hold may stay a little larger until a rebuild
    assert limits.largest_recent_answers(acme, bob.pk) == {None: 9_000, bob.pk: 9_000}
    usage.rebuild_rollups()
    assert limits.largest_recent_answers(acme, bob.pk) == {None: 3_000, bob.pk: 3_000}


def test_twenty_sends_at_once_against_room_for_three_admit_at_most_one_too_many(bob, acme, acme_key, history):
    # Five answers of 5,000 tokens used 25,000 of 40,000: room for three more of that size.
    set_limits(acme, monthly_token_limit=40_000)
    for _ in range(5):
        past_answer(history, 5_000)
    conversations = [Conversation.objects.create(owner=bob, team=acme, title=f"Chat {n}") for n in range(20)]
    barrier = threading.Barrier(len(conversations))

    def send_at_once(conversation):
        barrier.wait()
        try:
            send(conversation)
            return "admitted"
        except limits.Refused:
            return "refused"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(conversations)) as pool:
        outcomes = list(pool.map(send_at_once, conversations))

    admitted = outcomes.count("admitted")
    assert outcomes.count("refused") == len(conversations) - admitted  # nothing else went wrong
    assert 3 <= admitted <= 4
    assert Message.objects.filter(status=Message.Status.STREAMING).count() == admitted
    assert Message.objects.filter(role=Message.Role.USER).count() == admitted


# --- Pace ---------------------------------------------------------------------------------


def test_over_messages_per_minute_is_told_when_to_try_again(bob, acme, acme_key, conversation, history):
    set_limits(acme, messages_per_minute=2)
    now = timezone.now()
    past_answer(history, 10, created_at=now - timedelta(seconds=40))
    past_answer(history, 10, created_at=now - timedelta(seconds=10))
    past_answer(history, 10, created_at=now - timedelta(seconds=90))  # outside the minute
    sentence = refusal_of(conversation)
    assert "You have sent 2 messages in the last minute, the most Acme allows." in sentence
    # Free again when the older of the two leaves the minute: in about 20 seconds.
    seconds = int(re.search(r"Try again in (\d+) seconds?\.", sentence).group(1))
    assert 15 <= seconds <= 20
    assert not conversation.messages.exists()


def test_tool_rounds_of_an_answer_are_not_messages(bob, acme, acme_key, conversation, history):
    set_limits(acme, messages_per_minute=2)
    first = past_answer(history, 10)
    past_answer(history, 10, parent=first)  # its second round
    _question, answer, _window, _metered = send(conversation)
    assert answer.status == Message.Status.STREAMING


def test_over_streams_at_once_is_refused_until_one_finishes(bob, acme, acme_key, conversation, history):
    set_limits(acme, streams_at_once=1)
    running = streaming_answer(history)
    sentence = refusal_of(conversation)
    assert "You have 1 answer streaming, the most Acme allows at once. Try again when it has finished." == sentence
    Message.objects.filter(pk=running.pk).update(status=Message.Status.COMPLETE)
    _question, answer, _window, _metered = send(conversation)
    assert answer.status == Message.Status.STREAMING


def test_pace_is_per_member(bob, alice, acme, acme_key, conversation):
    set_limits(acme, streams_at_once=1)
    streaming_answer(Conversation.objects.create(owner=alice, team=acme))
    _question, answer, _window, _metered = send(conversation)
    assert answer.status == Message.Status.STREAMING


# --- Through the socket, against the fake MiMo server -------------------------------------


@pytest.fixture
def fake_key(acme, fake_url):
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-limits-key")
    key.save()
    return key


def answers_of(conversation):
    return list(Message.objects.filter(conversation=conversation, role="assistant").order_by("id"))


async def connect(user, conversation):
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _code = await communicator.connect()
    assert connected
    return communicator


def send_form(text):
    return {"action": "send", "text": text, "model": "mimo-v2.5-pro", "thinking": "on", "HEADERS": {}}


async def frame_with(communicator, pattern, timeout=20):
    while True:
        html = await communicator.receive_from(timeout=timeout)
        if re.search(pattern, html):
            return html


async def test_member_over_budget_is_refused_and_nothing_is_sent(bob, alice, acme, fake_key, conversation, history, fake_records):
    await database_sync_to_async(set_limits)(acme, monthly_token_limit=1_000)
    await database_sync_to_async(past_answer)(history, 1_000)
    communicator = await connect(bob, conversation)
    meter = await frame_with(communicator, 'id="usage-meter"')
    assert "1,000 of 1,000 tokens this month" in meter and "<meter" in meter
    await communicator.send_json_to(send_form("Hello"))
    notice = await frame_with(communicator, 'id="notice"')
    assert "Acme has used up its monthly budget" in notice and "Ask alice, a team admin of Acme" in notice
    await communicator.disconnect()
    assert fake_records.all() == []
    assert not await database_sync_to_async(conversation.messages.exists)()


async def test_the_meter_is_refreshed_after_each_answer(bob, acme, fake_key, conversation, fake_records):
    await database_sync_to_async(set_limits)(acme, monthly_token_limit=1_000_000)
    communicator = await connect(bob, conversation)
    assert "0 of 1,000,000 tokens this month" in await frame_with(communicator, 'id="usage-meter"')
    await communicator.send_json_to(send_form("Hello"))
    await frame_with(communicator, 'data-status="complete"')
    meter = await frame_with(communicator, 'id="usage-meter"')
    answer = await database_sync_to_async(Message.objects.filter(conversation=conversation, role="assistant").latest)("id")
    used = answer.prompt_tokens + answer.completion_tokens
    assert f"{used:,} of 1,000,000 tokens this month" in meter
    await communicator.disconnect()
    await mimo.close_shared_http_client()


async def test_a_tool_round_past_the_budget_ends_the_answer_with_a_clear_error(bob, acme, fake_key, conversation, fake_records):
    # Room for the first round only: its usage uses the budget up.
    await database_sync_to_async(set_limits)(acme, monthly_token_limit=1)
    communicator = await connect(bob, conversation)
    await communicator.send_json_to(send_form("Compute [[fake:tool]]"))
    await frame_with(communicator, 'data-status="error"')
    await communicator.disconnect()
    rounds = await database_sync_to_async(answers_of)(conversation)
    assert [m.status for m in rounds] == [Message.Status.COMPLETE, Message.Status.ERROR]
    assert rounds[1].error_kind == limits.BUDGET_EXHAUSTED and rounds[1].parent_id == rounds[0].pk
    assert "budget ran out while MiMo was using tools" in rounds[1].explanation()
    assert len(fake_records.all()) == 1  # the tools' results were not sent
    await mimo.close_shared_http_client()


# --- The team admin's page ----------------------------------------------------------------


def test_admin_sees_team_limits_and_each_members_meter(client, alice, bob, acme, history, price):
    set_limits(acme, monthly_token_limit=10_000, messages_per_minute=5)
    set_limits(bobs_membership(bob, acme), monthly_cost_limit=Decimal("2.50"))
    past_answer(history, 2_000_000)
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/limits/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "2,000,000 of 10,000 tokens this month" in html
    assert "$1.305 of $2.500 this month" in html  # 1 % of $2.50 is $0.025: three places
    assert 'name="team-messages_per_minute"' in html and 'value="5"' in html
    assert f'name="member-{bobs_membership(bob, acme).pk}-monthly_cost_limit"' in html


def test_admin_saves_team_and_member_limits(client, alice, bob, acme):
    client.force_login(alice)
    membership = bobs_membership(bob, acme)
    alices = Membership.objects.get(user=alice, team=acme)
    response = client.post(
        f"/teams/{acme.pk}/limits/",
        {
            "team-monthly_token_limit": "50000",
            "team-monthly_cost_limit": "12.50",
            "team-messages_per_minute": "10",
            "team-streams_at_once": "2",
            f"member-{membership.pk}-monthly_token_limit": "20000",
            f"member-{membership.pk}-monthly_cost_limit": "",
            f"member-{alices.pk}-monthly_token_limit": "",
            f"member-{alices.pk}-monthly_cost_limit": "",
        },
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    membership.refresh_from_db()
    assert (acme.monthly_token_limit, acme.monthly_cost_limit, acme.messages_per_minute, acme.streams_at_once) == (
        50_000, Decimal("12.50"), 10, 2
    )
    assert (membership.monthly_token_limit, membership.monthly_cost_limit) == (20_000, None)


def test_admin_sets_a_storage_quota_for_the_team_and_another_for_a_member(client, alice, bob, acme):
    client.force_login(alice)
    membership = bobs_membership(bob, acme)
    alices = Membership.objects.get(user=alice, team=acme)
    response = client.post(
        f"/teams/{acme.pk}/limits/",
        {"team-storage_quota_mib": "100", f"member-{membership.pk}-storage_quota_mib": "500", f"member-{alices.pk}-storage_quota_mib": ""},
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    membership.refresh_from_db()
    alices.refresh_from_db()
    assert (acme.storage_quota_mib, membership.storage_quota_mib, alices.storage_quota_mib) == (100, 500, None)
    assert (membership.storage_quota_bytes, alices.storage_quota_bytes) == (500 * 1024 * 1024, 100 * 1024 * 1024)


def test_admin_lowers_the_largest_file_a_member_may_attach(client, alice, acme):
    client.force_login(alice)
    page = client.get(f"/teams/{acme.pk}/limits/").content.decode()
    assert 'name="team-largest_file_mib"' in page and 'max="32"' in page and "up to 32 MiB, this server’s limit" in page
    assert client.post(f"/teams/{acme.pk}/limits/", {"team-largest_file_mib": "5"}).status_code == 302
    acme.refresh_from_db()
    assert acme.largest_file_mib == 5


def test_the_limits_page_shows_each_members_storage_beside_their_quota(client, alice, bob, acme, conversation):
    set_limits(bobs_membership(bob, acme), storage_quota_mib=20)
    for size in (3 * 1024 * 1024, 2 * 1024 * 1024):  # two rows of one file: each counts for the member
        Attachment.objects.create(
            owner=bob, conversation=conversation, kind="document", name="a.txt", content_type="text/plain", size=size, sha256="a" * 64
        )
    client.force_login(alice)
    html = client.get(f"/teams/{acme.pk}/limits/").content.decode()
    assert "5.0\xa0MB" in html
    assert f'name="member-{bobs_membership(bob, acme).pk}-storage_quota_mib"' in html and 'value="20"' in html
    assert 'name="team-storage_quota_mib"' in html


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("team-storage_quota_mib", "-1", "Ensure this value is greater than or equal to 0."),
        ("team-storage_quota_mib", "1.5", "Enter a whole number."),
        ("team-largest_file_mib", "0", "Ensure this value is greater than or equal to 1."),
        ("team-largest_file_mib", "33", "Ensure this value is less than or equal to 32."),
        ("member-storage", "many", "Enter a whole number."),
        ("team-monthly_token_limit", "-5", "Ensure this value is greater than or equal to 0."),
        ("team-monthly_cost_limit", "-0.01", "Ensure this value is greater than or equal to 0."),
        ("team-monthly_cost_limit", "lots", "Enter a number."),
        ("team-messages_per_minute", "0", "Ensure this value is greater than or equal to 1."),
        ("team-streams_at_once", "two", "Enter a whole number."),
        ("member", "-1", "Ensure this value is greater than or equal to 0."),
    ],
)
def test_bad_input_is_explained_and_nothing_is_changed(client, alice, bob, acme, field, value, error):
    set_limits(acme, monthly_token_limit=1_000)
    membership = bobs_membership(bob, acme)
    client.force_login(alice)
    data = {"team-monthly_token_limit": "2000", f"member-{membership.pk}-monthly_token_limit": "300"}
    names = {"member": f"member-{membership.pk}-monthly_token_limit", "member-storage": f"member-{membership.pk}-storage_quota_mib"}
    data[names.get(field, field)] = value
    response = client.post(f"/teams/{acme.pk}/limits/", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was saved" in html and error in html
    acme.refresh_from_db()
    membership.refresh_from_db()
    assert (acme.monthly_token_limit, acme.messages_per_minute, acme.streams_at_once) == (1_000, None, None)
    assert membership.monthly_token_limit is None
    assert (acme.storage_quota_mib, membership.storage_quota_mib) == (None, None)


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.mark.parametrize("method", ["get", "post"])
def test_everyone_but_the_teams_admins_is_refused_and_nothing_changes(client, bob, rita, charlie, acme, method):
    url = f"/teams/{acme.pk}/limits/"
    data = {"team-monthly_token_limit": "1"} if method == "post" else None
    for user, status in ((bob, 403), (rita, 403), (charlie, 404)):
        client.force_login(user)
        assert getattr(client, method)(url, data).status_code == status, user
    client.logout()
    response = getattr(client, method)(url, data)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")
    assert Team.objects.get(pk=acme.pk).monthly_token_limit is None


def test_an_unknown_team_is_a_404(client, alice):
    client.force_login(alice)
    assert client.get("/teams/999999/limits/").status_code == 404
