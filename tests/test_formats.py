"""One date and number format per language (mimoweb/formats/), and the pages that use them."""

import re
from datetime import UTC, datetime

import pytest
from django.utils import translation
from django.utils.formats import date_format, number_format

from chat import usage
from chat.forms import UsageForm

MOMENT = datetime(2026, 12, 3, 13, 24, tzinfo=UTC)

FORMATS = {
    "en": ("Dec 3, 2026", "Dec 3, 2026, 1:24 PM", "1,234,567.5"),
    "zh-hans": ("2026年12月3日", "2026年12月3日 13:24", "1,234,567.5"),
    "zh-hant": ("2026年12月3日", "2026年12月3日 13:24", "1,234,567.5"),
}


@pytest.mark.parametrize("language", FORMATS)
def test_each_language_has_one_date_and_one_number_format(language):
    day, moment, number = FORMATS[language]
    with translation.override(language):
        assert date_format(MOMENT, "DATE_FORMAT") == date_format(MOMENT, "SHORT_DATE_FORMAT") == day
        assert date_format(MOMENT, "DATETIME_FORMAT") == date_format(MOMENT, "SHORT_DATETIME_FORMAT") == moment
        assert number_format(1234567.5, 1, force_grouping=True) == number


@pytest.mark.parametrize("language", FORMATS)
def test_no_format_ends_in_a_full_stop_for_a_sentence_to_double(language):
    """Django's English "p.m." and "Dec." put "a.m.." on pages whose sentence ends with the time."""
    with translation.override(language):
        for name in ("DATE_FORMAT", "TIME_FORMAT", "DATETIME_FORMAT", "MONTH_DAY_FORMAT", "YEAR_MONTH_FORMAT"):
            assert "." not in date_format(MOMENT, name), name


def test_forms_still_read_the_dates_a_date_input_sends():
    with translation.override("zh-hans"):
        form = UsageForm({"start": "2026-03-01", "end": "2026-03-31"}, dimensions=usage.TEAM_DIMENSIONS)
        assert form.is_valid(), form.errors


@pytest.mark.parametrize(
    "language, moment",
    [("en", r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d [AP]M"), ("zh-hans", r"\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d")],
)
def test_the_keys_page_writes_every_date_in_the_readers_format(client, alice, acme, acme_key, language, moment):
    alice.language = language
    alice.save()
    client.force_login(alice)
    html = client.get(f"/teams/{acme.pk}/keys/").text
    assert re.search(moment, html), html
    assert not re.search(r"\d{1,2}/\d{1,2}/\d{4}", html)  # no second, numeric format
    assert ".." not in re.sub(r"<[^>]+>", "", html)
