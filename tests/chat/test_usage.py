"""Usage and cost: the sums against hand-computed figures, the charts, the CSV, the range, and who may see what."""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, Membership
from chat import usage
from chat.models import Conversation, Message, Price
from tests.conftest import SECRET, make_user

MARCH = {"start": "2026-03-01", "end": "2026-03-31"}


def price(model="mimo-test", valid_from=datetime(2026, 1, 1, tzinfo=UTC), **rates):
    rates = {"input_per_million": "1", "cached_input_per_million": "0.1", "output_per_million": "2",
             "web_search_per_thousand": "5", **rates}
    return Price.objects.create(model=model, valid_from=valid_from, **{k: Decimal(v) for k, v in rates.items()})


def answer(owner, team, when, model="mimo-test", key=None, prompt=1000, completion=500, reasoning=0, cached=0, searches=0,
           **media):  # image_tokens, audio_tokens, video_tokens
    conversation, _ = Conversation.objects.get_or_create(owner=owner, team=team, title=f"{owner}'s chat")
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Hi", created_at=when)
    return Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, content="Hello", model=model, api_key=key,
        prompt_tokens=prompt, completion_tokens=completion, reasoning_tokens=reasoning, cached_tokens=cached,
        web_search_calls=searches, created_at=when, **media,
    )


def at(day, hour=12):
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def cost(value):
    """To eight places: SQLite computes in floating point, PostgreSQL in exact decimals."""
    return Decimal(value).quantize(Decimal("0.00000001"))


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.fixture
def spare_key(acme, alice):
    key = ApiKey(team=acme, label="Acme spare", created_by=alice)
    key.set_secret("sk-spare-key-ending-Zz99")
    key.save()
    return key


@pytest.fixture
def prices(db):
    """mimo-test gets cheaper on 15 March; mimo-other keeps its price."""
    price()
    price(valid_from=datetime(2026, 3, 15, tzinfo=UTC), input_per_million="0.5", cached_input_per_million="0.05",
          output_per_million="1")
    price(model="mimo-other", input_per_million="3", cached_input_per_million="0.3", output_per_million="6")


@pytest.fixture
def march(prices, alice, bob, acme, acme_key, spare_key, charlie, globex):
    """Acme's March: bob's two answers either side of the price cut, alice's one on another model and key."""
    return [
        # (1000-200)×1 + 200×0.1 + 500×2 per million + 2 searches at 5 per thousand = 0.01182
        answer(bob, acme, at(10), key=acme_key, cached=200, reasoning=120, searches=2),
        # after the cut: (1000-200)×0.5 + 200×0.05 + 500×1 per million = 0.00091
        answer(bob, acme, at(20), key=acme_key, cached=200, reasoning=80),
        # 3000×3 + 1000×6 per million = 0.015
        answer(alice, acme, at(10, 15), model="mimo-other", key=spare_key, prompt=3000, completion=1000),
        # another team's, and another month's: never counted for Acme's March
        answer(charlie, globex, at(10)),
        answer(bob, acme, datetime(2026, 4, 1, 12, tzinfo=UTC), key=acme_key),
    ]


# --- The sums -------------------------------------------------------------------------


def test_each_answer_costs_the_price_in_force_when_it_ran(march, acme):
    rows = usage.grouped(usage.team_messages(acme, date(2026, 3, 1), date(2026, 3, 31)), "member", "model", per_day=True)
    by_day = {(row["day"], row["conversation__owner__username"]): row for row in rows}
    assert cost(by_day[date(2026, 3, 10), "bob"]["total_cost"]) == cost("0.01182")
    assert cost(by_day[date(2026, 3, 20), "bob"]["total_cost"]) == cost("0.00091")  # same usage, after the cut
    assert cost(by_day[date(2026, 3, 10), "alice"]["total_cost"]) == cost("0.015")
    assert len(by_day) == 3


def test_team_totals_and_tables_match_hand_computed_figures(march, acme):
    messages = usage.team_messages(acme, date(2026, 3, 1), date(2026, 3, 31))
    totals = usage.totals(messages)
    assert totals["messages"] == 3
    assert (totals["prompt"], totals["completion"], totals["reasoning"], totals["cached"]) == (5000, 2000, 200, 400)
    assert totals["searches"] == 2
    assert totals["total_tokens"] == 7000
    assert cost(totals["total_cost"]) == cost("0.02773")

    members = {row["label"]: row for row in usage.table(messages, "member")}
    assert members.keys() == {"bob", "alice"}
    assert (members["bob"]["messages"], members["bob"]["total_tokens"]) == (2, 3000)
    assert cost(members["bob"]["total_cost"]) == cost("0.01273")
    assert [row["label"] for row in usage.table(messages, "member")] == ["alice", "bob"]  # the biggest first

    models = {row["label"]: row for row in usage.table(messages, "model")}
    assert models["mimo-test"]["total_tokens"] == 3000 and models["mimo-other"]["total_tokens"] == 4000

    keys = {row["label"]: row for row in usage.table(messages, "key")}
    assert keys.keys() == {"Acme production (…bNm0)", "Acme spare (…Zz99)"}
    assert cost(keys["Acme spare (…Zz99)"]["total_cost"]) == cost("0.015")


def test_answers_without_usage_or_price_count_as_answers_that_cost_nothing(prices, bob, acme):
    answer(bob, acme, at(5), prompt=None, completion=None)
    answer(bob, acme, at(5), model="mimo-unpriced")
    totals = usage.totals(usage.team_messages(acme, date(2026, 3, 1), date(2026, 3, 31)))
    assert (totals["messages"], totals["total_tokens"]) == (2, 1500)
    assert totals["total_cost"] == 0


def test_a_member_sees_only_their_own_answers_across_their_teams(prices, bob, alice, acme, globex):
    Membership.objects.create(team=globex, user=bob)
    answer(bob, acme, at(3))
    answer(bob, globex, at(4), prompt=10, completion=10)
    answer(alice, acme, at(3), prompt=99999)
    rows = usage.table(usage.member_messages(bob, date(2026, 3, 1), date(2026, 3, 31)), "team")
    assert {row["label"]: row["total_tokens"] for row in rows} == {"Acme": 1500, "Globex": 20}
    only_globex = usage.member_messages(bob, date(2026, 3, 1), date(2026, 3, 31), team=globex)
    assert usage.totals(only_globex)["total_tokens"] == 20


def test_days_are_counted_in_the_users_time_zone(prices, bob, acme):
    answer(bob, acme, datetime(2026, 3, 10, 20, tzinfo=UTC))  # 11 March, 04:00 in Shanghai
    with timezone.override("Asia/Shanghai"):
        rows = list(usage.daily_totals(usage.team_messages(acme, date(2026, 3, 11), date(2026, 3, 11))))
        assert not usage.team_messages(acme, date(2026, 3, 10), date(2026, 3, 10)).exists()
    assert [row["day"] for row in rows] == [date(2026, 3, 11)]
    assert usage.team_messages(acme, date(2026, 3, 10), date(2026, 3, 10)).exists()  # in UTC it ran on the 10th


@pytest.mark.parametrize(
    "amount, text", [("0.01182", "0.0118 USD"), ("12.345", "12.34 USD"), ("0", "0.0000 USD"), ("0.00001", "< 0.0001 USD"),
                     ("1234.5", "1,234.50 USD")]
)
def test_costs_are_cut_to_four_places_under_a_dollar_and_to_cents_above(db, amount, text):
    assert usage.money(Decimal(amount)) == text


# --- The page -------------------------------------------------------------------------


class SvgReader(HTMLParser):
    """Each chart's segments: their class, geometry and <title>."""

    def __init__(self):
        super().__init__()
        self.charts, self.rect = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and attrs.get("aria-hidden") != "true":  # not the page's icons
            self.charts.append({"label": attrs.get("aria-label"), "role": attrs.get("role"), "segments": []})
        if tag == "rect" and "chart-segment" in attrs.get("class", ""):
            self.rect = {**attrs, "title": ""}
            self.charts[-1]["segments"].append(self.rect)

    def handle_data(self, data):
        if self.rect is not None:
            self.rect["title"] += data

    def handle_endtag(self, tag):
        if tag == "rect":
            self.rect = None


def charts_of(html):
    reader = SvgReader()
    reader.feed(html)
    return reader.charts


def test_team_admin_sees_charts_tables_and_totals(client, alice, acme, march):
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage/", MARCH)
    assert response.status_code == 200
    html = response.text
    assert "Usage in Acme" in html
    assert "7,000" in html and "0.0277 USD" in html
    for caption in ("By Model", "By Member", "By Key"):
        assert caption in html
    tokens, costs = charts_of(html)
    assert tokens["role"] == costs["role"] == "img"
    assert tokens["label"] == "Tokens per day, Mar 1, 2026 – Mar 31, 2026, stacked by model"
    assert costs["label"] == "Cost per day, Mar 1, 2026 – Mar 31, 2026, stacked by model"
    assert 'href="/usage/"' in html  # to their own usage
    assert f'href="/teams/{acme.pk}/usage.csv?start=2026-03-01&amp;end=2026-03-31"' in html
    assert "style=" not in html


# --- Image, audio and video tokens: part of the prompt's -----------------------------------


def column_headings(html):
    return re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', html)


def test_the_team_page_shows_the_media_tokens_of_the_prompt_when_the_range_has_some(client, alice, bob, acme, prices):
    answer(bob, acme, at(10), prompt=1300, image_tokens=1024, audio_tokens=0)
    answer(alice, acme, at(11), prompt=800, audio_tokens=63)
    answer(alice, acme, at(12))  # text only
    answer(alice, acme, datetime(2026, 4, 1, 12, tzinfo=UTC), video_tokens=256)  # another month's
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage/", MARCH)
    totals = response.context["totals"]
    assert (totals["image"], totals["audio"], totals["video"]) == (1024, 63, 0)
    assert totals["total_tokens"] == 1300 + 800 + 1000 + 3 * 500  # the prompts hold them: not added again
    by_member = {row["label"]: (row["image"], row["audio"]) for row in response.context["tables"][1]["rows"]}
    assert by_member == {"bob": (1024, 0), "alice": (0, 63)}
    html = response.text
    headings = column_headings(html)
    # Beside the prompt tokens in each table; no column for video, which none of the range has.
    assert headings[:5] == ["Model", "Answers", "Prompt tokens", "of which image tokens", "of which audio tokens"]
    assert headings.count("of which image tokens") == 3 and "of which video tokens" not in headings
    assert '<td class="number">1,024</td>' in html
    assert "the tokens, the cost and the budgets include them already" in html


def test_a_text_only_team_sees_no_media_token_columns(client, alice, acme, march):
    client.force_login(alice)
    html = client.get(f"/teams/{acme.pk}/usage/", MARCH).text
    assert column_headings(html)[:4] == ["Model", "Answers", "Prompt tokens", "Completion tokens"]
    assert "of which" not in html and "Image, audio and video tokens" not in html


def test_my_usage_shows_my_media_tokens(client, bob, acme, prices):
    answer(bob, acme, at(10), video_tokens=256)
    client.force_login(bob)
    response = client.get("/usage/", MARCH)
    assert response.context["totals"]["video"] == 256
    assert "of which video tokens" in column_headings(response.text)
    assert "of which image tokens" not in column_headings(response.text)


def test_the_csv_carries_each_rows_media_tokens(client, alice, bob, acme, prices):
    media = [
        answer(bob, acme, at(10), image_tokens=1024, audio_tokens=63),
        answer(bob, acme, at(10, 18), image_tokens=100, video_tokens=256),
        answer(alice, acme, at(11)),
    ]
    client.force_login(alice)
    rows = read_csv(client.get(f"/teams/{acme.pk}/usage.csv", MARCH))
    assert as_groups(rows) == expected_rows(media)
    assert [(row["member"], row["image_tokens"], row["audio_tokens"], row["video_tokens"]) for row in rows] == [
        ("bob", "1124", "63", "256"), ("alice", "0", "0", "0"),
    ]


def test_chart_bars_are_stacked_to_scale_with_their_exact_values_in_titles(client, alice, bob, acme, prices):
    answer(bob, acme, at(10), prompt=400, completion=200)  # 600 tokens
    answer(alice, acme, at(10), model="mimo-other", prompt=300, completion=100)  # 400 tokens
    answer(bob, acme, at(11), prompt=100, completion=150)  # 250 tokens
    client.force_login(alice)
    html = client.get(f"/teams/{acme.pk}/usage/", MARCH).text
    tokens, costs = charts_of(html)
    ticks = re.findall(r'<text class="chart-tick"[^>]*>([^<]*)</text>', html)
    assert ticks == ["0", "250", "500", "750", "1,000", "0.000", "0.001", "0.002", "0.003"]
    # The busiest day has 1,000 tokens: the axis tops at 1,000, over 200 units of height.
    segments = [(s["class"], s["y"], s["height"], s["title"]) for s in tokens["segments"]]
    assert segments == [
        ("chart-segment series-0", "96.0", "120.0", "Mar 10, 2026 · mimo-test: 600 tokens"),
        ("chart-segment series-1", "16.0", "80.0", "Mar 10, 2026 · mimo-other: 400 tokens"),
        ("chart-segment series-0", "166.0", "50.0", "Mar 11, 2026 · mimo-test: 250 tokens"),
    ]
    # Costs: 400×1 + 200×2 per million = 0.0008; 300×3 + 100×6 = 0.0015; 100×1 + 150×2 = 0.0004.
    assert [s["title"] for s in costs["segments"]] == [
        "Mar 10, 2026 · mimo-test: 0.0008 USD",
        "Mar 10, 2026 · mimo-other: 0.0015 USD",
        "Mar 11, 2026 · mimo-test: 0.0004 USD",
    ]
    # The busiest day costs 0.0023: the axis tops at 0.003 in steps of 0.001.
    assert [s["height"] for s in costs["segments"]] == ["53.33", "100.0", "26.67"]
    first, second = tokens["segments"][0], tokens["segments"][2]
    assert float(second["x"]) > float(first["x"])  # one day further right


def test_stacking_by_member_or_key_splits_the_bars_that_way(client, alice, acme, march):
    client.force_login(alice)
    tokens, _costs = charts_of(client.get(f"/teams/{acme.pk}/usage/", MARCH | {"by": "member"}).text)
    assert tokens["label"].endswith("stacked by member")
    assert sorted(s["title"] for s in tokens["segments"]) == [
        "Mar 10, 2026 · alice: 4,000 tokens",
        "Mar 10, 2026 · bob: 1,500 tokens",
        "Mar 20, 2026 · bob: 1,500 tokens",
    ]
    tokens, _costs = charts_of(client.get(f"/teams/{acme.pk}/usage/", MARCH | {"by": "key"}).text)
    assert "Mar 10, 2026 · Acme spare (…Zz99): 4,000 tokens" in [s["title"] for s in tokens["segments"]]


def test_the_stack_switch_swaps_only_the_charts_for_htmx_and_links_work_without(client, alice, acme, march):
    client.force_login(alice)
    page = client.get(f"/teams/{acme.pk}/usage/", MARCH).text
    link = f"/teams/{acme.pk}/usage/?start=2026-03-01&amp;end=2026-03-31&amp;by=member"
    assert f'href="{link}" hx-get="{link}" hx-target="#usage-charts"' in page
    fragment = client.get(f"/teams/{acme.pk}/usage/", MARCH | {"by": "member"}, headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="usage-charts"')
    assert "<table" not in fragment and "<html" not in fragment
    assert 'aria-current="true">Member</a>' in fragment


def test_an_unknown_stack_falls_back_to_model_in_the_range_asked(client, alice, acme, march):
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage/", MARCH | {"by": "secret"})
    tokens, _costs = charts_of(response.text)
    assert tokens["label"] == "Tokens per day, Mar 1, 2026 – Mar 31, 2026, stacked by model"
    assert response.context["form"].errors == {}


def test_no_answers_in_the_range_says_so(client, alice, acme):
    client.force_login(alice)
    html = client.get(f"/teams/{acme.pk}/usage/", MARCH).text
    assert "No answers in this period." in html
    assert charts_of(html) == []


# --- The date range ---------------------------------------------------------------------


def test_the_default_range_is_this_calendar_month(client, alice, bob, acme, prices):
    today = timezone.localdate()
    answer(bob, acme, timezone.now())
    answer(bob, acme, datetime(today.year - 1, today.month, 1, 12, tzinfo=UTC))
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage/")
    assert response.context["start"] == today.replace(day=1)
    assert response.context["end"].month == today.month and (response.context["end"] + timedelta(days=1)).day == 1
    assert f'value="{today.replace(day=1).isoformat()}"' in response.text  # the inputs show the range shown
    assert response.context["totals"]["messages"] == 1


@pytest.mark.parametrize(
    "query, error",
    [
        ({"start": "2026-03-31", "end": "2026-03-01"}, "The start date is after the end date."),
        ({"start": "2026-02-30", "end": "2026-03-01"}, "Enter a valid date."),
        ({"start": "yesterday"}, "Enter a valid date."),
        ({"start": "2024-01-01", "end": "2026-03-01"}, "A range can be at most 366 days long."),
    ],
)
def test_a_bad_range_is_explained_and_the_default_range_shown(client, alice, acme, march, query, error):
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage/", query)
    assert response.status_code == 200
    assert error in response.text
    assert "Showing this month instead." in response.text
    start, end = usage.this_month()
    assert (response.context["start"], response.context["end"]) == (start, end)
    # the CSV asked the same way covers the same default range
    csv_response = client.get(f"/teams/{acme.pk}/usage.csv", query)
    assert f"usage-acme-{start}-{end}.csv" in csv_response["Content-Disposition"]


def test_a_whole_year_is_a_range_allowed(client, alice, acme, march):
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage/", {"start": "2026-01-01", "end": "2026-12-31"})
    assert response.context["form"].errors == {}
    assert response.context["totals"]["messages"] == 4  # April's too


# --- CSV ------------------------------------------------------------------------------


def read_csv(response):
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def expected_rows(messages, with_team=False):
    """The CSV's rows computed by hand, in Python, from the Message rows themselves."""
    rows = {}
    for message in messages:
        key = message.api_key
        group = (
            timezone.localdate(message.created_at).isoformat(),
            *([message.conversation.team.name] if with_team else []),
            message.model,
            message.conversation.owner.username,
            f"{key.label} (…{key.last_four})" if key else "no key recorded",
        )
        row = rows.setdefault(group, [0, 0, 0, 0, 0, 0, 0, Decimal(0), 0, 0, 0])
        in_force = Price.objects.in_force(message.model, message.created_at)
        for index, value in enumerate([
            1, message.prompt_tokens, message.completion_tokens, message.reasoning_tokens, message.cached_tokens,
            message.web_search_calls, message.prompt_tokens + message.completion_tokens,
            in_force.cost_of(message) if in_force else 0,
            message.image_tokens, message.audio_tokens, message.video_tokens,
        ]):
            row[index] += value or 0
    return {group: [*map(str, values[:7]), str(cost(values[7])), *map(str, values[8:])] for group, values in rows.items()}


def as_groups(rows, with_team=False):
    head = ["day", "team", "model", "member", "key"] if with_team else ["day", "model", "member", "key"]
    return {tuple(row[c] for c in head): [v for c, v in row.items() if c not in head] for row in rows}


def test_team_csv_has_one_row_per_day_model_member_and_key_equal_to_the_messages(client, alice, acme, march):
    client.force_login(alice)
    response = client.get(f"/teams/{acme.pk}/usage.csv", MARCH)
    assert 'attachment; filename="usage-acme-2026-03-01-2026-03-31.csv"' == response["Content-Disposition"]
    rows = read_csv(response)
    assert list(rows[0]) == [
        "day", "model", "member", "key", "messages", "prompt_tokens", "completion_tokens", "reasoning_tokens",
        "cached_tokens", "web_search_calls", "tokens", "cost_usd", "image_tokens", "audio_tokens", "video_tokens",
    ]  # the media tokens came after the cost, so that the columns before them kept their places
    assert as_groups(rows) == expected_rows(march[:3])  # Acme's March only
    assert rows[0] == {
        "day": "2026-03-10", "model": "mimo-other", "member": "alice", "key": "Acme spare (…Zz99)", "messages": "1",
        "prompt_tokens": "3000", "completion_tokens": "1000", "reasoning_tokens": "0", "cached_tokens": "0",
        "web_search_calls": "0", "tokens": "4000", "cost_usd": "0.01500000", "image_tokens": "0", "audio_tokens": "0",
        "video_tokens": "0",
    }


def test_the_csv_adds_up_to_the_page_it_was_downloaded_from(client, alice, acme, march):
    client.force_login(alice)
    page = client.get(f"/teams/{acme.pk}/usage/", MARCH).context
    rows = read_csv(client.get(f"/teams/{acme.pk}/usage.csv", MARCH))
    assert sum(int(row["tokens"]) for row in rows) == page["totals"]["total_tokens"]
    assert sum(Decimal(row["cost_usd"]) for row in rows) == cost(page["totals"]["total_cost"])
    titles = [s["title"] for chart in charts_of(client.get(f"/teams/{acme.pk}/usage/", MARCH).text) for s in chart["segments"]]
    for row in rows:
        day = date.fromisoformat(row["day"])
        assert f"{day:%b} {day.day}, {day.year} · {row['model']}: {int(row['tokens']):,} tokens" in titles


def test_the_csv_keeps_the_day_in_the_users_time_zone(client, alice, bob, acme, prices):
    answer(bob, acme, datetime(2026, 3, 10, 20, tzinfo=UTC))
    alice.time_zone = "Asia/Shanghai"
    alice.save()
    client.force_login(alice)
    rows = read_csv(client.get(f"/teams/{acme.pk}/usage.csv", MARCH))
    assert [row["day"] for row in rows] == ["2026-03-11"]


def test_names_that_look_like_formulas_cannot_run_in_a_spreadsheet(client, alice, acme, prices):
    key = ApiKey(team=acme, label="=HYPERLINK(\"http://evil\")", created_by=alice)
    key.set_secret(SECRET)
    key.save()
    answer(alice, acme, at(2), key=key)
    client.force_login(alice)
    rows = read_csv(client.get(f"/teams/{acme.pk}/usage.csv", MARCH))
    assert rows[0]["key"].startswith("'=HYPERLINK")


def test_no_secret_reaches_the_page_or_the_csv(client, alice, acme, march):
    client.force_login(alice)
    for url in (f"/teams/{acme.pk}/usage/?by=key", f"/teams/{acme.pk}/usage.csv"):
        body = client.get(url, MARCH).content.decode()
        assert SECRET not in body and SECRET[:-4] not in body


# --- My usage --------------------------------------------------------------------------


def test_my_usage_shows_only_my_answers(client, bob, acme, march):
    client.force_login(bob)
    response = client.get("/usage/", MARCH)
    assert response.status_code == 200
    assert response.context["totals"]["messages"] == 2
    assert response.context["totals"]["total_tokens"] == 3000
    html = response.text
    assert "alice" not in re.sub(r"<header.*?</header>", "", html, flags=re.S)
    assert "By Team" in html and "By Member" not in html
    labels = [row["label"] for row in response.context["tables"][1]["rows"]]
    assert labels == ["Acme"]


def test_my_usage_csv_is_my_rows_with_a_team_column(client, bob, acme, march):
    client.force_login(bob)
    response = client.get("/usage.csv", MARCH)
    assert 'filename="my-usage-2026-03-01-2026-03-31.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    assert list(rows[0])[:3] == ["day", "team", "model"]
    assert as_groups(rows, with_team=True) == expected_rows(march[:2], with_team=True)


def test_my_usage_filters_by_one_of_my_teams_only(client, bob, acme, globex, prices):
    Membership.objects.create(team=globex, user=bob)
    answer(bob, acme, at(3))
    answer(bob, globex, at(4), prompt=10, completion=10)
    client.force_login(bob)
    assert client.get("/usage/", MARCH | {"team": globex.pk}).context["totals"]["total_tokens"] == 20
    rows = read_csv(client.get("/usage.csv", MARCH | {"team": globex.pk}))
    assert [row["team"] for row in rows] == ["Globex"]


def test_a_team_that_is_not_mine_is_refused_as_a_filter(client, bob, charlie, globex, acme, prices):
    answer(charlie, globex, at(3))
    answer(bob, acme, at(3), prompt=1, completion=1)
    client.force_login(bob)
    response = client.get("/usage/", MARCH | {"team": globex.pk})
    assert "Select a valid choice" in response.text
    assert response.context["totals"]["messages"] == 0  # March is not this month: the default range is empty
    rows = read_csv(client.get("/usage.csv", MARCH | {"team": globex.pk}))
    assert all(row["team"] != "Globex" for row in rows)


def test_my_usage_links_to_the_teams_i_administer(client, alice, bob, acme):
    client.force_login(alice)
    assert f'href="/teams/{acme.pk}/usage/"' in client.get("/usage/").text
    client.force_login(bob)
    assert f'/teams/{acme.pk}/usage/' not in client.get("/usage/").text


# --- Authorization: everyone but the team's admins is refused, and nothing changes ------------


def refused(response):
    if response.status_code == 302:
        return response["Location"].startswith("/accounts/sign-in/")
    return response.status_code in (403, 404)


@pytest.mark.parametrize("who, status", [("bob", 403), ("rita", 403), ("charlie", 404), ("root", 404), ("visitor", 302)])
@pytest.mark.parametrize("path", ["usage/", "usage/?by=member", "usage.csv"])
def test_only_the_teams_admins_see_its_usage(client, bob, rita, charlie, root, acme, march, who, status, path):
    if who != "visitor":
        client.force_login({"bob": bob, "rita": rita, "charlie": charlie, "root": root}[who])
    before = list(Message.objects.values_list("pk", "prompt_tokens", "completion_tokens"))
    response = client.get(f"/teams/{acme.pk}/{path}", MARCH)
    assert response.status_code == status and refused(response)
    assert "bob" not in response.content.decode() or who == "bob"
    assert list(Message.objects.values_list("pk", "prompt_tokens", "completion_tokens")) == before


@pytest.mark.parametrize("path", ["/usage/", "/usage.csv", "/teams/1/usage/"])
def test_signed_out_visitors_are_sent_to_sign_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")


def test_a_team_that_does_not_exist_is_404(client, alice):
    client.force_login(alice)
    assert client.get("/teams/999999/usage/").status_code == 404
    assert client.get("/teams/999999/usage.csv").status_code == 404


def test_the_page_sums_in_the_database_whatever_the_number_of_answers(client, alice, bob, acme, prices):
    client.force_login(alice)
    answer(bob, acme, at(1))
    with CaptureQueriesContext(connection) as few:
        client.get(f"/teams/{acme.pk}/usage/", MARCH)
    for day in range(1, 29):
        answer(make_user(f"member{day}", acme), acme, at(day), model="mimo-other" if day % 2 else "mimo-test")
    with CaptureQueriesContext(connection) as many:
        client.get(f"/teams/{acme.pk}/usage/", MARCH)
    assert len(many) == len(few)
