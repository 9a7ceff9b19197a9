"""axe-core on every main page, in light and dark, in English and 简体中文: no critical or serious violation.

axe.min.js comes from the npm registry (`make test` runs `npm ci` from package-lock.json). Each page is
opened as the person who uses it: a member for the chat, their library and their settings, a team admin
for keys, members, limits and the team's usage, a reviewer for review, nobody for the sign-in form.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import KeyEvent, Membership
from chat import transfer
from chat.models import Attachment, Conversation, Message, ReviewAccess, Share, ToolCall
from tests.browser.conftest import sign_in_as
from tests.chat.test_attachments import image_bytes, pdf_with_text
from tests.chat.test_sending_attachments import stored
from tests.conftest import make_user

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = {"critical", "serious"}

ANSWER = """Here is the function:

```python
def refund_days(plan):
    return 30 if plan == "standard" else 60
```

| plan | days |
| --- | --- |
| standard | 30 |
"""


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.fixture
def library(bob, alice, acme, acme_key):
    """bob's chats (one with thinking, code and a tool call, one in the trash), shared; alice's limits set."""
    chat = Conversation.objects.create(owner=bob, team=acme, title="Refund policy", api_key=acme_key)
    question = Message.objects.create(conversation=chat, role="user", content="How long can I ask for a refund?")
    answer = Message.objects.create(
        conversation=chat, parent=question, role="assistant", content=ANSWER, model="mimo-v2.5", api_key=acme_key,
        reasoning_content="The policy says thirty days for the standard plan.",
        prompt_tokens=1200, completion_tokens=300, reasoning_tokens=120, image_tokens=640,  # the usage pages show its column
        finished_at=timezone.now(), first_token_at=timezone.now() - timedelta(seconds=3),
    )
    ToolCall.objects.create(
        message=answer, index=0, call_id="c1", name="policy_lookup", arguments_raw='{"topic": "refunds"}',
        result="30 days", status="done",
    )
    # The question's image and PDF, and a file waiting in the composer.
    sent = [stored(bob, chat, "chart.png", image_bytes((64, 48))), stored(bob, chat, "policy.pdf", pdf_with_text("30 days"))]
    Attachment.objects.filter(pk__in=[attachment.pk for attachment in sent]).update(message=question)
    stored(bob, chat, "draft.md", b"# Draft")
    trashed = Conversation.objects.create(owner=bob, team=acme, title="Old draft", deleted_at=timezone.now())
    Message.objects.create(conversation=trashed, role="user", content="A draft")
    share = Share.objects.create(
        conversation=chat, created_by=bob,
        snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=chat.pk))),
    )
    acme_key.record(KeyEvent.Action.TEST, alice, succeeded=True, latency_ms=400)  # a row in the audit trail
    acme.monthly_cost_limit = "5.00"
    acme.save()
    Membership.objects.filter(user=bob).update(monthly_token_limit=10_000)
    return {"chat": chat, "share": share, "team": acme}


def pages_for(library):
    """(who, path, a text the page must show) of every main page: axe checks the page with its contents."""
    chat, team = library["chat"], library["team"]
    return [
        ("bob", f"/chats/{chat.pk}/", "refund_days"),  # the answer's code block, past its thinking and tool call
        ("bob", "/chats/", "Refund policy"),
        ("bob", "/chats/search/?q=refund", "Refund policy"),
        ("bob", "/chats/trash/", "Old draft"),
        ("bob", "/usage/", "mimo-v2.5"),
        ("bob", "/accounts/preferences/", "bob"),
        ("bob", "/shares/", "Refund policy"),
        ("alice", f"/shares/{library['share'].pk}/", "refund_days"),
        ("alice", f"/teams/{team.pk}/keys/", "Acme production"),
        ("alice", f"/teams/{team.pk}/keys/audit/", "Acme production"),
        ("alice", f"/teams/{team.pk}/members/", "bob"),
        ("alice", f"/teams/{team.pk}/limits/", "bob"),
        ("alice", f"/teams/{team.pk}/usage/", "mimo-v2.5"),
        ("rita", "/review/", "Refund policy"),
        ("rita", f"/review/{chat.pk}/", "refund_days"),
        (None, "/accounts/sign-in/", "mimoweb"),
    ]


def axe_violations(page, rules=None):
    """Run axe on the page as it is (every rule, or only `rules`); one readable line per failing node."""
    # Evaluated rather than added as a <script> tag: the page's CSP admits only scripts with its nonce.
    page.evaluate(AXE.read_text())
    options = {"resultTypes": ["violations"]} | ({"runOnly": rules} if rules else {})
    results = page.evaluate("options => axe.run(document, options)", options)
    found = []
    for violation in results["violations"]:
        for node in violation["nodes"]:
            where = f"{violation['impact']} {violation['id']}: {node['target']} ({violation['help']})"
            found.append((violation["impact"], f"{where} {node['failureSummary']}"))
    return found


def serious_violations(page):
    return [line for impact, line in axe_violations(page) if impact in FAILING_IMPACTS]


def violations_on_every_page(page, live_url, library, people, language="en"):
    """{page: its critical and serious violations} for the pages that have any, read in `language`."""
    for person in people.values():
        person.language = language
        person.save()
    ReviewAccess.record(library["chat"], people["rita"], "Checking the refund answer")
    found = {}
    for who, path, shown in pages_for(library):
        page.context.clear_cookies()
        if who:
            sign_in_as(page, live_url, people[who])
        else:  # the language switch's cookie: the context's locale sets the browser's Accept-Language
            page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": live_url}])
        response = page.goto(path)
        assert response.ok, (path, response.status)
        expect(page.locator("html")).to_have_attribute("lang", language)
        expect(page.get_by_text(shown).first).to_be_attached()
        page.wait_for_load_state("networkidle")
        if violations := serious_violations(page):
            found[f"{path} as {who or 'nobody'}"] = violations
    return found


def report(found):
    return "\n".join(f"{where}:\n  " + "\n  ".join(lines) for where, lines in found.items())


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_every_main_page_has_no_serious_accessibility_violation(
    page, live_url, library, alice, bob, rita, language, color_scheme
):
    page.emulate_media(color_scheme=color_scheme)
    found = violations_on_every_page(page, live_url, library, {"alice": alice, "bob": bob, "rita": rita}, language)
    assert found == {}, report(found)


def test_every_main_page_on_a_phone_has_no_serious_accessibility_violation(page, live_url, library, alice, bob, rita):
    """At 390 px tables scroll or stack and the navigation folds: other layouts, other rules (scrollable regions)."""
    page.set_viewport_size({"width": 390, "height": 844})
    found = violations_on_every_page(page, live_url, library, {"alice": alice, "bob": bob, "rita": rita})
    assert found == {}, report(found)


def test_the_keys_page_has_well_formed_facts_headings_in_order_and_allowed_roles(page, live_url, library, alice):
    """The three rules the keys page broke, at any impact: a live region inside <dl>, h1 then h3, role=status on <dd>."""
    sign_in_as(page, live_url, alice)
    page.goto(f"/teams/{library['team'].pk}/keys/")
    expect(page.get_by_role("article", name="Acme production")).to_be_visible()
    found = axe_violations(page, ["definition-list", "heading-order", "aria-allowed-role"])
    assert found == [], "\n".join(line for _impact, line in found)


LANDMARKS_AND_HEADINGS = [
    "page-has-heading-one", "heading-order", "empty-heading", "landmark-one-main", "landmark-unique",
    "landmark-no-duplicate-banner", "landmark-no-duplicate-main", "landmark-no-duplicate-contentinfo",
    "landmark-banner-is-top-level", "landmark-main-is-top-level", "landmark-complementary-is-top-level", "region",
    "bypass",
]


def test_every_main_page_has_its_landmarks_and_headings_in_order(page, live_url, library, alice, bob, rita):
    """Moderate rules, which the test above leaves out: each at any impact, on every page."""
    people = {"alice": alice, "bob": bob, "rita": rita}
    ReviewAccess.record(library["chat"], rita, "Checking the refund answer")
    found = {}
    for who, path, shown in pages_for(library):
        page.context.clear_cookies()
        if who:
            sign_in_as(page, live_url, people[who])
        assert page.goto(path).ok, path
        expect(page.get_by_text(shown).first).to_be_attached()
        page.wait_for_load_state("networkidle")
        if violations := [line for _impact, line in axe_violations(page, LANDMARKS_AND_HEADINGS)]:
            found[f"{path} as {who or 'nobody'}"] = violations
    assert found == {}, report(found)
