"""The usage page in real Chromium: a team admin picks a range, stacks by member, reads the bars and downloads the CSV."""

import csv
import re
from collections import defaultdict
from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.browser.conftest import sign_in_as
from tests.chat.test_usage import answer, expected_rows, price


def test_team_admin_stacks_usage_by_member_and_the_csv_matches_the_rows(page, live_url, alice, bob, acme, acme_key):
    price()
    price(model="mimo-other", input_per_million="3", output_per_million="6")
    messages = [
        answer(bob, acme, datetime(2026, 3, 10, 9, tzinfo=UTC), key=acme_key, cached=200, searches=1),
        answer(bob, acme, datetime(2026, 3, 10, 11, tzinfo=UTC), model="mimo-other", key=acme_key, prompt=20, completion=30),
        answer(alice, acme, datetime(2026, 3, 10, 15, tzinfo=UTC), prompt=2000, completion=800, image_tokens=1024),
        answer(alice, acme, datetime(2026, 3, 12, 8, tzinfo=UTC), key=acme_key, prompt=300, completion=100),
    ]
    sign_in_as(page, live_url, alice)
    page.goto(f"/teams/{acme.pk}/usage/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage in Acme")
    page.get_by_label("From").fill("2026-03-01")
    page.get_by_label("To").fill("2026-03-31")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"start=2026-03-01&end=2026-03-31"))
    charts = page.get_by_role("img")
    expect(charts.first).to_have_attribute("aria-label", re.compile("stacked by model$"))
    # alice's screenshot: beside the prompt tokens in each table, the only media the range has
    expect(page.get_by_role("columnheader", name="of which image tokens")).to_have_count(3)
    expect(page.get_by_role("columnheader", name="of which audio tokens")).to_have_count(0)

    page.evaluate("window.notReloaded = true")
    page.get_by_role("navigation", name="Stack by").get_by_role("link", name="Member").click()
    expect(page).to_have_url(re.compile(r"by=member"))
    expect(charts.first).to_have_attribute("aria-label", re.compile("stacked by member$"))
    assert page.evaluate("window.notReloaded") is True  # htmx swapped the charts, the page stayed
    expect(page.get_by_role("link", name="Member")).to_have_attribute("aria-current", "true")

    tokens = defaultdict(int)
    for message in messages:
        tokens[message.created_at.day, message.conversation.owner.username] += message.prompt_tokens + message.completion_tokens
    titles = charts.first.locator("rect.chart-segment title").all_text_contents()
    assert sorted(titles) == sorted(f"Mar {day}, 2026 · {member}: {count:,} tokens" for (day, member), count in tokens.items())
    expect(charts.nth(1).locator("rect.chart-segment")).to_have_count(len(tokens))
    legend = page.get_by_role("list", name="Legend")
    expect(legend).to_contain_text("alice")
    expect(legend).to_contain_text("bob")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == "usage-acme-2026-03-01-2026-03-31.csv"
    with open(download.path(), encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    head = ["day", "model", "member", "key"]
    assert {tuple(row[c] for c in head): [v for c, v in row.items() if c not in head] for row in rows} == expected_rows(messages)
