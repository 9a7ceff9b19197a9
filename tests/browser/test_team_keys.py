"""A team admin's keys in real Chromium: add two, test both, rotate one, revoke the other, read the audit trail."""

import re

from playwright.sync_api import expect

from accounts.models import ApiKey, KeyEvent
from tests.browser.conftest import sign_in_as

GOOD = "sk-browser-good-Tq4Z"
NEW_GOOD = "sk-browser-rotated-Mn8P"
BAD = "sk-invalid-browser-Xr2K"


def add_key(page, label, secret, base_url):
    form = page.locator("form.key-form").first
    form.get_by_label("Label").fill(label)
    form.get_by_label(re.compile(r"^Base URL")).select_option("custom")
    form.get_by_label("Custom base URL").fill(base_url)
    form.get_by_label("API key").fill(secret)
    form.get_by_role("button", name="Add the key").click()
    expect(page.get_by_role("status").first).to_contain_text(f"The key “{label}”")


def card(page, label):
    return page.get_by_role("article", name=label)


def assert_no_secret(page):
    html = page.content()
    for secret in (GOOD, NEW_GOOD, BAD):
        assert secret not in html
        assert secret[:-4] not in html


def test_admin_adds_tests_rotates_revokes_and_reads_the_audit_trail(page, live_url, alice, acme, fake_url, fake_records):
    sign_in_as(page, live_url, alice)
    page.goto(f"/teams/{acme.pk}/keys/")
    add_key(page, "Works", GOOD, fake_url)
    assert_no_secret(page)
    add_key(page, "Refused", BAD, fake_url)
    assert_no_secret(page)

    card(page, "Works").get_by_role("button", name="Test").click()
    expect(card(page, "Works").locator(".key-test")).to_contain_text("Works — answered in")
    card(page, "Refused").get_by_role("button", name="Test").click()
    expect(card(page, "Refused").locator(".key-test")).to_contain_text(
        "Does not work: MiMo did not accept the API key."
    )
    expect(card(page, "Refused")).to_contain_text("Last error")
    assert_no_secret(page)

    works = card(page, "Works")
    works.get_by_text("Replace the secret").first.click()
    works.get_by_label("New API key").fill(NEW_GOOD)
    works.get_by_role("button", name="Replace the secret").click()
    expect(page.get_by_role("status").first).to_contain_text("version 2")
    expect(card(page, "Works")).to_contain_text("…" + NEW_GOOD[-4:])
    expect(card(page, "Works")).to_contain_text("secret v2")
    assert_no_secret(page)

    card(page, "Refused").get_by_role("link", name="Revoke…").click()
    page.get_by_role("button", name="Revoke this key").click()
    expect(card(page, "Refused")).to_contain_text("revoked")
    expect(card(page, "Refused").get_by_role("button", name="Test")).to_have_count(0)

    page.get_by_role("link", name="Audit trail").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.nth(0)).to_contain_text("revoked")
    expect(rows.nth(0)).to_contain_text("Refused")
    expect(rows.nth(1)).to_contain_text("replaced the secret")
    expect(rows.nth(1)).to_contain_text("…" + NEW_GOOD[-4:])
    expect(rows.nth(2)).to_contain_text("Does not work")
    expect(rows.nth(3)).to_contain_text("Works — answered in")
    expect(rows.nth(4)).to_contain_text("added")
    expect(rows.nth(4)).to_contain_text("alice")
    assert_no_secret(page)

    works_key = ApiKey.objects.get(label="Works")
    assert (works_key.secret_version, works_key.decrypt_secret()) == (2, NEW_GOOD)
    assert ApiKey.objects.get(label="Refused").is_revoked
    assert KeyEvent.objects.count() == 6
