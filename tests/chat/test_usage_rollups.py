"""Usage roll-ups (chat/usage.py): in step with the answers after every kind of write, read by budgets and
pages with the same figures as the answers give, checked and rebuilt by `usage_rollups`; imported answers never count."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team
from chat import generation, limits, mimo, usage
from chat.models import Conversation, Message, Price, UsageRollup
from tests.chat.test_versions import connect, send_form, until_finished


def price(model="mimo-v2.5-pro", valid_from=datetime(2026, 1, 1, tzinfo=UTC), **rates):
    rates = {"input_per_million": "1", "cached_input_per_million": "0.1", "output_per_million": "2",
             "web_search_per_thousand": "5", **rates}  # fmt: skip
    return Price.objects.create(model=model, valid_from=valid_from, **{k: Decimal(v) for k, v in rates.items()})


def answer(conversation, prompt=1000, completion=500, when=None, **fields):
    return Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, model="mimo-v2.5-pro", prompt_tokens=prompt,
        completion_tokens=completion, created_at=when or timezone.now(), **fields,
    )  # fmt: skip


def in_step():
    """The roll-ups hold what the answers give, and hold something."""
    assert usage.rollup_differences() == []
    counted = Message.objects.filter(role="assistant", imported=False).count()
    for period in UsageRollup.Period:
        assert sum(UsageRollup.objects.filter(period=period).values_list("answers", flat=True)) == counted


def this_month_totals(team):
    start, end = usage.this_month()
    return usage.totals(usage.team_records(team, start, end))


@pytest.fixture
def prices(db):
    price()


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


# --- Imported answers ----------------------------------------------------------------


def upload(data):
    return SimpleUploadedFile("export.json", json.dumps(data).encode(), content_type="application/json")


@pytest.mark.django_db(transaction=True)  # a send runs in database_sync_to_async, off the test's transaction
def test_an_import_whose_figures_were_edited_counts_for_nothing_and_the_next_send_is_admitted(
    client, alice, bob, acme, acme_key, conversation, prices
):
    answer(conversation, prompt=600, completion=400)
    Team.objects.filter(pk=acme.pk).update(monthly_token_limit=10_000, monthly_cost_limit=Decimal("1"))
    client.force_login(bob)
    exported = client.get(f"/chats/{conversation.pk}/export.json").json()
    for message in exported["conversations"][0]["messages"]:
        message["prompt_tokens"] = 2_000_000_000
    assert client.post("/chats/import/", {"file": upload(exported)}).status_code == 302
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    [copy] = imported.messages.filter(role="assistant")
    assert (copy.prompt_tokens, copy.imported) == (2_000_000_000, True)  # kept as history, marked

    client.force_login(alice)
    page = client.get(f"/teams/{acme.pk}/usage/")
    assert (page.context["totals"]["messages"], page.context["totals"]["total_tokens"]) == (1, 1_000)
    assert limits.used_this_month(acme)[0] == 1_000
    _question, sent, _window, _metered = async_to_sync(generation.create_turn)(conversation, "Next question")
    assert sent.status == Message.Status.STREAMING  # admitted: the budget is far from used
    in_step()


def test_an_imported_answer_says_so_where_its_figures_are_shown(client, bob, conversation, prices):
    copy = answer(conversation, imported=True)
    client.force_login(bob)
    assert "imported, not counted in usage" in client.get(f"/chats/{conversation.pk}/").text
    details = client.get(f"/chats/{conversation.pk}/messages/{copy.pk}/details/", HTTP_HX_REQUEST="true").text
    assert "never count toward usage, cost or budgets" in details


def test_imported_answers_take_no_part_in_the_reserve_or_the_pace(bob, acme, conversation, prices):
    answer(conversation, prompt=2_000_000_000, completion=0, imported=True)
    Message.objects.create(conversation=conversation, role="assistant", status="streaming", model="mimo-v2.5-pro")
    streaming = limits.streaming_now(acme)
    tokens, _cost = limits.reserved(None, streaming, limits.used_this_month(acme), limits.largest_recent_answers(acme, None))
    assert tokens == limits.RESERVE_FLOOR_TOKENS


# --- In step with the answers ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_rollups_equal_the_answers_after_answers_edits_and_regenerations(bob, acme, fake_url, client):
    await database_sync_to_async(price)()
    key = ApiKey(team=acme, label="fake", base_url=fake_url)
    key.set_secret("sk-test-rollups-key")
    await key.asave()
    conversation = await Conversation.objects.acreate(owner=bob, team=acme, title="Plans")
    communicator = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("first question"))
    await until_finished(communicator)
    question = await conversation.messages.aget(role="user")
    await communicator.send_json_to({"action": "edit", "message_id": question.pk, "text": "edited", "HEADERS": {}})
    await until_finished(communicator)
    latest = await conversation.messages.filter(role="assistant").order_by("-id").afirst()
    await communicator.send_json_to({"action": "regenerate", "message_id": latest.pk, "HEADERS": {}})
    await until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()

    answers = [m async for m in conversation.messages.filter(role="assistant")]
    assert len(answers) == 3 and all(m.prompt_tokens for m in answers)  # the fake reports usage
    await database_sync_to_async(in_step)()
    tokens, _cost = await database_sync_to_async(limits.used_this_month)(acme)
    assert tokens == sum(m.prompt_tokens + m.completion_tokens for m in answers)


def test_an_answers_final_figures_are_saved_with_its_rollup_or_not_at_all(conversation, acme_key, prices, monkeypatch):
    streaming = Message.objects.create(conversation=conversation, role="assistant", status="streaming", model="mimo-v2.5-pro")
    answering = generation.Generation(conversation, streaming, acme_key, "")
    streaming.prompt_tokens, streaming.completion_tokens, streaming.status = 700, 300, Message.Status.COMPLETE

    def broken(group, amounts, largest=0):
        raise RuntimeError("the roll-up could not be written")

    monkeypatch.setattr(usage, "add", broken)
    with pytest.raises(RuntimeError):
        answering.save_finished_in_one_transaction()  # where the generation saves the final figures
    streaming.refresh_from_db()
    assert (streaming.prompt_tokens, streaming.status) == (None, Message.Status.STREAMING)
    monkeypatch.undo()
    answering.message = streaming
    streaming.prompt_tokens, streaming.completion_tokens, streaming.status = 700, 300, Message.Status.COMPLETE
    answering.save_finished_in_one_transaction()
    in_step()


def test_an_answer_changed_moved_or_deleted_moves_its_rollup(bob, acme, conversation, acme_key, prices):
    first = answer(conversation)
    answer(conversation, api_key=acme_key, cached_tokens=200, web_search_calls=2, reasoning_tokens=50)
    first.prompt_tokens = 5
    first.save()
    first.created_at -= timedelta(days=40)  # another day, another month
    first.save(update_fields=["created_at"])
    in_step()
    first.content = "not a counted field"
    first.save(update_fields=["content"])
    in_step()
    first.delete()
    in_step()


def media_this_month(team):
    """(image, audio, video) tokens of the team this month, as the roll-ups sum them."""
    totals = this_month_totals(team)
    return totals["image"], totals["audio"], totals["video"]


def test_rollups_equal_the_answers_with_their_media_tokens_after_answers_changes_and_deletes(
    bob, acme, conversation, acme_key, prices
):
    first = answer(conversation, prompt=2000, image_tokens=1024, audio_tokens=63)
    answer(conversation, api_key=acme_key, video_tokens=256, image_tokens=0)
    answer(conversation)  # text only: MiMo said nothing, which counts as 0
    in_step()
    assert media_this_month(acme) == (1024, 63, 256)
    first.image_tokens = 2048
    first.save(update_fields=["image_tokens"])  # a media count alone is a counted field
    in_step()
    assert media_this_month(acme) == (2048, 63, 256)
    first.created_at -= timedelta(days=40)  # another day, another month
    first.save(update_fields=["created_at"])
    in_step()
    assert media_this_month(acme) == (0, 0, 256)
    first.delete()
    in_step()
    assert this_month_totals(acme)["total_tokens"] == 3_000  # of the prompts: never added again


def test_the_media_tokens_an_answer_ends_with_reach_its_rollup(acme, conversation, acme_key, prices):
    streaming = Message.objects.create(conversation=conversation, role="assistant", status="streaming", model="mimo-v2.5-pro")
    answering = generation.Generation(conversation, streaming, acme_key, "")
    streaming.prompt_tokens, streaming.completion_tokens, streaming.status = 1700, 300, Message.Status.COMPLETE
    streaming.image_tokens, streaming.audio_tokens, streaming.video_tokens = 1024, None, 0
    answering.save_finished_in_one_transaction()
    in_step()
    assert media_this_month(acme) == (1024, 0, 0)
    assert limits.used_this_month(acme)[0] == 2_000


def test_the_trash_keeps_usage_and_a_purge_takes_it_away(bob, acme, conversation, prices):
    answer(conversation, prompt=600, completion=400)
    conversation.move_to_trash()
    assert limits.used_this_month(acme)[0] == 1_000
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    call_command("purge_trash")
    assert limits.used_this_month(acme)[0] == 0
    in_step()


def test_a_deleted_member_or_team_takes_their_rollups_with_them(bob, acme, conversation, prices):
    answer(conversation)
    bob.delete()
    in_step()
    assert not UsageRollup.objects.exists()


def test_a_new_price_within_the_month_splits_the_period_and_costs_match_the_answers(acme, conversation, prices):
    start = usage.this_month()[0]
    early = timezone.make_aware(datetime.combine(start, datetime.min.time())) + timedelta(hours=1)
    answer(conversation, when=early, cached_tokens=100, web_search_calls=1)
    answer(conversation, when=early + timedelta(hours=2))
    price(valid_from=early + timedelta(hours=1), input_per_million="3", output_per_million="7")
    in_step()
    assert UsageRollup.objects.filter(period="day").values("price").distinct().count() == 2
    messages = usage.team_messages(acme, *usage.this_month())
    assert this_month_totals(acme) == usage.totals(messages)
    cut = Price.objects.get(valid_from=early + timedelta(hours=1))
    cut.valid_from = early - timedelta(minutes=1)  # moved: now both answers ran at it
    cut.save()
    in_step()
    assert UsageRollup.objects.filter(period="day").values("price").distinct().count() == 1
    cut.output_per_million = Decimal("9")  # a rate alone: the same periods, costs read anew
    cut.save()
    assert this_month_totals(acme) == usage.totals(usage.team_messages(acme, *usage.this_month()))
    cut.delete()
    in_step()
    assert this_month_totals(acme) == usage.totals(usage.team_messages(acme, *usage.this_month()))


# --- Read by budgets and pages ----------------------------------------------------------


def test_the_budget_check_reads_the_rollups_not_the_answers(bob, acme, conversation, prices):
    for _ in range(3):
        answer(conversation)
    Team.objects.filter(pk=acme.pk).update(monthly_token_limit=10**9, monthly_cost_limit=10**6)
    Membership.objects.filter(team=acme, user=bob).update(monthly_token_limit=10**9, monthly_cost_limit=10**6)
    acme.refresh_from_db()
    membership = Membership.objects.get(team=acme, user=bob)
    with CaptureQueriesContext(connection) as queries:
        found = limits.meters(acme, membership, streaming=[(bob.pk, None)])  # used, and held for one answer streaming
    assert [meter.used for meter in found if meter.kind == limits.TOKENS] == [4_500, 4_500]
    assert [meter.reserved for meter in found if meter.kind == limits.TOKENS] == [limits.RESERVE_FLOOR_TOKENS] * 2
    assert queries.captured_queries and all('"chat_message"' not in q["sql"] for q in queries.captured_queries)


@pytest.fixture
def default_time_zone_after():
    """A request of a user with a saved time zone activates it in this thread, and nothing deactivates it."""
    yield
    timezone.deactivate()


def test_a_viewer_in_another_time_zone_gets_the_same_figures_summed_from_the_answers(
    client, alice, acme, conversation, prices, default_time_zone_after
):
    answer(conversation, when=timezone.now().replace(hour=12))
    client.force_login(alice)
    here = client.get(f"/teams/{acme.pk}/usage/").context["totals"]
    alice.time_zone = "Asia/Kathmandu"  # +5:45: no roll-up's day is one of its days
    alice.save()
    there = client.get(f"/teams/{acme.pk}/usage/").context["totals"]
    assert (there["messages"], there["total_tokens"], there["total_cost"]) == (1, 1_500, here["total_cost"])


def test_the_monthly_report_reads_the_rollups_with_the_same_rows(conversation, prices):
    answer(conversation, when=datetime(2026, 3, 10, 12, tzinfo=UTC))
    rollups = list(usage.csv_rows(usage.month_records(2026, 3), with_team=True))
    answers = list(usage.csv_rows(usage.in_period(usage.assistant_messages(), date(2026, 3, 1), date(2026, 3, 31)), with_team=True))
    assert rollups == answers and len(rollups) == 1


# --- The command -----------------------------------------------------------------------------


def test_the_check_finds_a_tampered_rollup_and_the_rebuild_mends_it(conversation, prices, capsys):
    answer(conversation)
    call_command("usage_rollups", "--check")
    assert "match" in capsys.readouterr().out
    UsageRollup.objects.filter(period=UsageRollup.Period.DAY).update(prompt_tokens=F("prompt_tokens") + 5)
    with pytest.raises(CommandError, match="1 roll-up group"):
        call_command("usage_rollups", "--check")
    assert "(1, 1005, 500, 0, 0, 0, 0, 0, 0), answers (1, 1000, 500, 0, 0, 0, 0, 0, 0)" in capsys.readouterr().out
    call_command("usage_rollups", "--rebuild")
    call_command("usage_rollups", "--check")
    in_step()


def test_the_check_finds_a_tampered_media_token_sum(conversation, prices, capsys):
    answer(conversation, image_tokens=1024, video_tokens=256)
    call_command("usage_rollups", "--check")
    UsageRollup.objects.filter(period=UsageRollup.Period.MONTH).update(image_tokens=0)
    with pytest.raises(CommandError, match="1 roll-up group"):
        call_command("usage_rollups", "--check")
    out = capsys.readouterr().out
    assert "image_tokens, audio_tokens, video_tokens)" in out
    assert "(1, 1000, 500, 0, 0, 0, 0, 0, 256), answers (1, 1000, 500, 0, 0, 0, 1024, 0, 256)" in out
    call_command("usage_rollups", "--rebuild")
    in_step()
    assert media_this_month(conversation.team) == (1024, 0, 256)


def test_the_rebuild_leaves_imported_answers_out(conversation, prices):
    answer(conversation)
    answer(conversation, prompt=2_000_000_000, imported=True)
    UsageRollup.objects.all().delete()
    call_command("usage_rollups", "--rebuild")
    in_step()
    assert sum(UsageRollup.objects.filter(period="day").values_list("prompt_tokens", flat=True)) == 1000
