"""Team members in real Chromium: a team admin invites a colleague, who signs up from the link; the admin changes their role."""

import re

from playwright.sync_api import expect

from accounts.models import Invitation, Membership, User
from tests.browser.conftest import sign_in_as

NEW_PASSWORD = "a long and new passphrase 42"


def test_admin_invites_a_member_who_signs_up_and_is_then_made_reviewer(page, live_url, alice, acme):
    sign_in_as(page, live_url, alice)
    page.goto("/home/")
    page.get_by_role("main").get_by_role("link", name="Manage team").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme")
    page.get_by_role("link", name="Members", exact=True).click()

    page.get_by_label("For:", exact=True).fill("Erin from sales")
    page.get_by_role("button", name="Create invitation link").click()
    expect(page.get_by_role("status")).to_contain_text("The invitation link is ready")
    link = page.get_by_role("textbox", name="Invitation link").input_value()
    assert re.fullmatch(rf"{live_url}/invitations/[\w-]{{40,}}/", link)

    # The invitee: a fresh browser profile, signed in to nothing.
    invitee_context = page.context.browser.new_context(locale="en-US")
    violations = []
    invitee = invitee_context.new_page()
    invitee.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    invitee.goto(link)
    expect(invitee.get_by_role("heading", level=1)).to_have_text("Join Acme")
    expect(invitee.get_by_text("You are invited to Acme as member.")).to_be_visible()
    invitee.get_by_label("Username").fill("erin")
    invitee.get_by_label("First name").fill("Erin")
    invitee.get_by_label("Password:", exact=True).fill(NEW_PASSWORD)
    invitee.get_by_label("Password confirmation").fill(NEW_PASSWORD)
    invitee.get_by_role("button", name="Create account and join").click()
    expect(invitee.get_by_role("status")).to_contain_text("Welcome to Acme.")
    expect(invitee.locator(".who")).to_have_text("erin")
    expect(invitee.locator(".team-list")).to_contain_text("Acme")
    invitee_context.close()
    assert violations == [], violations

    erin = User.objects.get(username="erin")
    assert Membership.objects.get(user=erin, team=acme).role == Membership.Role.MEMBER
    assert Invitation.objects.get().accepted_by == erin

    page.reload()
    expect(page.get_by_text("No open invitations.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="erin")
    expect(row).to_contain_text("Erin")
    row.get_by_role("combobox", name="Role of erin").select_option("reviewer")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_role("row").filter(has_text="erin").get_by_role("status")).to_have_text("Saved.")
    assert Membership.objects.get(user=erin, team=acme).role == Membership.Role.REVIEWER
    expect(page.get_by_role("combobox", name="Role of erin")).to_have_value("reviewer")


def test_admin_removes_a_member_after_confirming_and_their_row_goes(page, live_url, alice, bob, acme):
    sign_in_as(page, live_url, alice)
    page.goto(f"/teams/{acme.pk}/members/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("link", name="Remove bob").click()
    expect(page.get_by_role("row").filter(has_text="bob").get_by_role("status")).to_have_text(
        "bob is no longer in Acme. Their conversations are kept."
    )
    assert not Membership.objects.filter(user=bob).exists()
    assert User.objects.filter(pk=bob.pk).exists()
