"""manage.py usage_report: a month's usage as CSV on standard output, for operators."""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command

from tests.chat.test_usage import answer, cost, expected_rows, price


def report(*args):
    out = io.StringIO()
    call_command("usage_report", *args, stdout=out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


@pytest.fixture
def november(db, alice, bob, charlie, acme, globex, acme_key):
    price()
    price(valid_from=datetime(2026, 11, 15, tzinfo=UTC), output_per_million="4")  # dearer from the 15th
    return [
        answer(bob, acme, datetime(2026, 11, 2, 9, tzinfo=UTC), key=acme_key, cached=100, searches=1),
        answer(bob, acme, datetime(2026, 11, 20, 9, tzinfo=UTC), key=acme_key),
        answer(alice, acme, datetime(2026, 11, 30, 23, 59, tzinfo=UTC), prompt=10, completion=5),
        answer(charlie, globex, datetime(2026, 11, 2, 10, tzinfo=UTC), prompt=7, completion=3),
        # October and December stay out
        answer(bob, acme, datetime(2026, 10, 31, 23, 59, tzinfo=UTC)),
        answer(bob, acme, datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
    ]


def groups(rows):
    head = ["day", "team", "model", "member", "key"]
    return {tuple(row[c] for c in head): [v for c, v in row.items() if c not in head] for row in rows}


def test_report_has_every_teams_rows_of_the_month_at_the_prices_in_force(november):
    rows = report("--month", "2026-11")
    assert list(rows[0]) == [
        "day", "team", "model", "member", "key", "messages", "prompt_tokens", "completion_tokens",
        "reasoning_tokens", "cached_tokens", "web_search_calls", "tokens", "cost_usd", "image_tokens", "audio_tokens",
        "video_tokens",
    ]
    assert groups(rows) == expected_rows(november[:4], with_team=True)
    by_day = {(row["day"], row["member"]): row for row in rows}
    # 900×1 + 100×0.1 + 500×2 per million + 1 search at 5 per thousand; then 1000×1 + 500×4 after the rise
    assert by_day["2026-11-02", "bob"]["cost_usd"] == str(cost("0.00691"))
    assert by_day["2026-11-20", "bob"]["cost_usd"] == str(cost("0.003"))
    assert by_day["2026-11-20", "bob"]["key"] == "Acme production (…bNm0)"


def test_report_for_one_team(november):
    rows = report("--month", "2026-11", "--team", "Globex")
    assert [(row["team"], row["member"], row["tokens"]) for row in rows] == [("Globex", "charlie", "10")]


def test_a_month_without_usage_prints_only_the_header(db):
    out = io.StringIO()
    call_command("usage_report", "--month", "2020-02", stdout=out)
    assert out.getvalue().splitlines() == [
        "day,team,model,member,key,messages,prompt_tokens,completion_tokens,reasoning_tokens,cached_tokens,"
        "web_search_calls,tokens,cost_usd,image_tokens,audio_tokens,video_tokens"
    ]


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "11-2026", "2026-1", "november", "2026-11-01", ""])
def test_a_bad_month_is_a_clear_error(db, month):
    with pytest.raises(CommandError, match="--month must be a year and a month like 2026-11"):
        call_command("usage_report", "--month", month, stdout=io.StringIO())


def test_an_unknown_team_is_a_clear_error(db):
    with pytest.raises(CommandError, match="There is no team named 'Initech'"):
        call_command("usage_report", "--month", "2026-11", "--team", "Initech", stdout=io.StringIO())
