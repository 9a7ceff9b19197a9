"""The team admin's and reviewer's pages laid out in real Chromium: on a phone and on a laptop."""

import pytest
from playwright.sync_api import expect

from accounts.models import Membership
from chat.models import Conversation, Message
from tests.browser.conftest import sign_in_as
from tests.conftest import make_user

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}


@pytest.fixture
def team_pages(acme, alice, bob, acme_key):
    """alice admins Acme: members with roles, budgets set, a conversation a reviewer can list."""
    make_user("rita", acme, Membership.Role.REVIEWER)
    acme.monthly_cost_limit = "0.02"
    acme.save()
    Membership.objects.filter(user=bob).update(monthly_token_limit=10_000, monthly_cost_limit="2.50")
    chat = Conversation.objects.create(owner=bob, team=acme, title="A conversation with a rather long title to wrap")
    Message.objects.create(conversation=chat, role="assistant", content="Hello", prompt_tokens=900, completion_tokens=600)
    return {
        "members": f"/teams/{acme.pk}/members/",
        "limits": f"/teams/{acme.pk}/limits/",
        "keys": f"/teams/{acme.pk}/keys/",
    }


def scrolls_sideways(page):
    return page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["390", "1366"])
def test_members_limits_and_review_fit_the_screen_without_sideways_scrolling(page, live_url, alice, team_pages, viewport):
    page.set_viewport_size(viewport)
    sign_in_as(page, live_url, alice)
    for path in (team_pages["members"], team_pages["limits"]):
        page.goto(path)
        assert not scrolls_sideways(page), path
    alice_membership = Membership.objects.get(user=alice)
    alice_membership.role = Membership.Role.REVIEWER
    alice_membership.save()
    page.goto("/review/")
    expect(page.get_by_role("link", name="A conversation with a rather long title to wrap")).to_be_visible()
    assert not scrolls_sideways(page)


def test_on_a_phone_each_member_row_names_its_columns(page, live_url, alice, team_pages):
    page.set_viewport_size(PHONE)
    sign_in_as(page, live_url, alice)
    page.goto(team_pages["limits"])
    field = page.get_by_role("spinbutton", name="Tokens a month for bob")
    expect(field).to_have_value("10000")
    column_name = field.locator("xpath=ancestor::td").evaluate("cell => getComputedStyle(cell, '::before').content")
    assert column_name == '"Tokens a month"'  # shown above the field: the table's head is hidden on a phone


def test_the_team_limits_inputs_start_at_one_left_edge(page, live_url, alice, team_pages):
    page.set_viewport_size(LAPTOP)
    sign_in_as(page, live_url, alice)
    page.goto(team_pages["limits"])
    lefts = {round(box["x"]) for box in (field.bounding_box() for field in page.locator("fieldset input").all())}
    assert len(lefts) == 1, lefts


def test_a_cost_meter_shows_enough_decimals_to_agree_with_its_percent(page, live_url, alice, team_pages):
    page.set_viewport_size(LAPTOP)
    sign_in_as(page, live_url, alice)
    page.goto(team_pages["limits"])
    expect(page.get_by_text("of $0.0200 this month")).to_be_visible()  # not "$0.02 of $0.02"
    expect(page.get_by_text("$0.000 of $2.500 this month")).to_be_visible()  # 1 % of $2.50 is $0.025


def test_key_settings_checkboxes_sit_at_the_left_before_their_labels(page, live_url, alice, team_pages):
    page.set_viewport_size(LAPTOP)
    sign_in_as(page, live_url, alice)
    page.goto(team_pages["keys"])
    form = page.locator("form").filter(has=page.get_by_role("button", name="Save the key settings"))
    form_left = form.bounding_box()["x"]
    for name in ("Members may choose among the team’s keys", "Members may add personal keys"):
        box = form.get_by_role("checkbox", name=name).bounding_box()
        label = form.get_by_text(name, exact=True).bounding_box()
        assert round(box["x"]) == round(form_left)
        assert box["x"] + box["width"] <= label["x"]
        assert abs((box["y"] + box["height"] / 2) - (label["y"] + label["height"] / 2)) < label["height"] / 2


def test_key_actions_are_styled_buttons_and_revoke_reads_as_dangerous(page, live_url, alice, team_pages):
    sign_in_as(page, live_url, alice)
    page.goto(team_pages["keys"])
    card = page.get_by_role("article", name="Acme production")
    expect(card.get_by_role("button", name="Test")).to_be_visible()
    expect(card.get_by_role("link", name="Revoke…")).to_have_class("button danger")
