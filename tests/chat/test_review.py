"""Review: reviewers read their team's conversations read-only, each opening recorded with its reason.

The cast adds to alice (Acme admin), bob (Acme member), charlie (Globex admin)
and root (superuser): rita, Acme's reviewer; dave, another Acme member; and
greta, Globex's reviewer.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Membership
from chat.models import Citation, Conversation, Message, ReviewAccess, ToolCall
from tests.conftest import make_user

REASONING = "Let me weigh the quarterly figures first"
ANSWER = "The forecast is **rosy**"
QUESTION = "What is the Q3 forecast?"
TOOL_ARGUMENTS = '{"expression": "40 * 1.1"}'
TOOL_RESULT = "44.000000001"
CITATION_URL = "https://example.com/q3-figures"
CONTENTS = [REASONING, "rosy", QUESTION, "40 * 1.1", TOOL_RESULT, CITATION_URL]
REASON = "Audit of Q3 answers requested by finance"


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.fixture
def dave(acme):
    return make_user("dave", acme)


@pytest.fixture
def greta(globex):
    return make_user("greta", globex, Membership.Role.REVIEWER)


@pytest.fixture
def conversation(bob, acme):
    """bob's conversation: a question and an answer with thinking, a tool call, a source and usage."""
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Q3 forecast", model="mimo-v2.5-pro")
    Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=ANSWER + " <script>alert(1)</script>",
        reasoning_content=REASONING,
        model="mimo-v2.5-pro",
        prompt_tokens=1200,
        completion_tokens=345,
        reasoning_tokens=120,
        parameters={"temperature": 1.0},
        first_token_at=timezone.now(),
        finished_at=timezone.now(),
    )
    ToolCall.objects.create(
        message=answer, index=0, call_id="call_1", name="calculator", arguments_raw=TOOL_ARGUMENTS, result=TOOL_RESULT, status="done"
    )
    Citation.objects.create(message=answer, index=0, url=CITATION_URL, title="Q3 figures")
    return conversation


def open_for_review(client, conversation, reason=REASON):
    return client.post(f"/review/{conversation.pk}/reason/", {"reason": reason})


# --- The list -----------------------------------------------------------------------


def test_reviewer_lists_the_teams_conversations_without_their_contents(client, rita, conversation):
    client.force_login(rita)
    response = client.get("/review/")
    assert response.status_code == 200
    page = response.text
    assert "Q3 forecast" in page
    assert "bob" in page
    assert "mimo-v2.5-pro" in page
    assert ">1,545<" in page  # tokens: 1200 in + 345 out, grouped
    for text in CONTENTS:
        assert text not in page
    assert not ReviewAccess.objects.exists()  # listing is not reading


def test_conversations_in_the_trash_are_not_listed_and_cannot_be_opened(client, rita, conversation):
    conversation.deleted_at = timezone.now()
    conversation.save()
    client.force_login(rita)
    assert "Q3 forecast" not in client.get("/review/").text
    assert open_for_review(client, conversation).status_code == 404
    assert not ReviewAccess.objects.exists()


def test_reviewer_of_another_team_does_not_list_this_teams_conversations(client, greta, conversation):
    client.force_login(greta)
    response = client.get("/review/")
    assert response.status_code == 200
    assert "Q3 forecast" not in response.text


@pytest.fixture
def second(dave, acme):
    """dave's conversation: another model, started last month, one stopped answer, no tools, few tokens."""
    other = Conversation.objects.create(owner=dave, team=acme, title="Lunch ideas", model="mimo-v2.5")
    Conversation.objects.filter(pk=other.pk).update(created_at=timezone.now() - timedelta(days=40))
    Message.objects.create(conversation=other, role="user", content="Lunch?")
    Message.objects.create(
        conversation=other, role="assistant", content="Soup", status="stopped", model="mimo-v2.5", prompt_tokens=10, completion_tokens=5
    )
    return other


@pytest.mark.parametrize(
    "query, shown",
    [
        ("member={bob}", "Q3 forecast"),
        ("member={dave}", "Lunch ideas"),
        ("model=mimo-v2.5-pro", "Q3 forecast"),
        ("model=mimo-v2.5", "Lunch ideas"),
        ("started_from={recent}", "Q3 forecast"),
        ("started_until={recent}", "Lunch ideas"),
        ("status=problem", "Lunch ideas"),
        ("status=stopped", "Lunch ideas"),
        ("used_tools=on", "Q3 forecast"),
        ("min_tokens=1000", "Q3 forecast"),
    ],
)
def test_filters_narrow_the_list(client, rita, bob, dave, conversation, second, query, shown):
    recent = (timezone.localdate() - timedelta(days=10)).isoformat()
    client.force_login(rita)
    page = client.get("/review/?" + query.format(bob=bob.pk, dave=dave.pk, recent=recent)).text
    hidden = {"Q3 forecast", "Lunch ideas"} - {shown}
    assert shown in page
    assert hidden.pop() not in page


def test_status_filter_finds_errors_and_interruptions(client, rita, conversation, second):
    Message.objects.filter(conversation=conversation, role="assistant").update(status="interrupted")
    client.force_login(rita)
    page = client.get("/review/?status=interrupted").text
    assert "Q3 forecast" in page and "Lunch ideas" not in page
    page = client.get("/review/?status=error").text
    assert "Q3 forecast" not in page and "Lunch ideas" not in page


@pytest.mark.parametrize(
    "query, error",
    [
        ("min_tokens=-5", "greater than or equal to 0"),
        ("min_tokens=many", "Enter a whole number"),
        ("started_from=2026-05-02&started_until=2026-05-01", "The start date is after the end date."),
        ("status=weird", "Select a valid choice"),
    ],
)
def test_bad_filters_are_explained(client, rita, conversation, query, error):
    client.force_login(rita)
    response = client.get("/review/?" + query)
    assert response.status_code == 200
    assert error in response.text


def test_list_is_paginated_and_keeps_the_filters(client, rita, bob, acme):
    for number in range(55):
        Conversation.objects.create(owner=bob, team=acme, title=f"Chat number {number:02}")
    client.force_login(rita)
    first = client.get(f"/review/?member={bob.pk}").text
    assert first.count("Chat number") == 50
    assert f"member={bob.pk}&amp;page=2" in first
    assert client.get(f"/review/?member={bob.pk}&page=2").text.count("Chat number") == 5


def test_a_reviewers_own_conversations_are_not_in_review(client, rita, acme):
    Conversation.objects.create(owner=rita, team=acme, title="Rita's own")
    client.force_login(rita)
    assert "Rita" not in client.get("/review/").text


# --- Opening with a reason ------------------------------------------------------------


def test_review_page_without_a_reason_asks_for_one_and_shows_nothing(client, rita, conversation):
    client.force_login(rita)
    response = client.get(f"/review/{conversation.pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/review/{conversation.pk}/reason/"
    form = client.get(response["Location"]).text
    assert "Why are you opening this conversation?" in form
    for text in CONTENTS:
        assert text not in form
    assert not ReviewAccess.objects.exists()


@pytest.mark.parametrize(
    "reason, error",
    [
        ("", "Give a reason for opening this conversation."),
        ("     ", "Give a reason for opening this conversation."),
        ("because", "Give a reason of at least 10 characters"),
    ],
)
def test_blank_or_short_reason_is_refused(client, rita, conversation, reason, error):
    client.force_login(rita)
    response = open_for_review(client, conversation, reason)
    assert response.status_code == 200
    assert error in response.text
    assert not ReviewAccess.objects.exists()
    assert client.get(f"/review/{conversation.pk}/").status_code == 302


def test_reason_is_recorded_then_the_whole_conversation_shows(client, rita, bob, acme, conversation):
    client.force_login(rita)
    response = open_for_review(client, conversation)
    assert response["Location"] == f"/review/{conversation.pk}/"
    access = ReviewAccess.objects.get()
    assert (access.reviewer, access.owner, access.team, access.conversation) == (rita, bob, acme, conversation)
    assert access.reason == REASON
    assert access.conversation_title == "Q3 forecast"

    page = client.get(f"/review/{conversation.pk}/").text
    for text in (QUESTION, REASONING, "<strong>rosy</strong>", "calculator", "40 * 1.1", TOOL_RESULT, CITATION_URL):
        assert text in page
    for usage in ("1200", "345", "120", "Temperature"):
        assert usage in page
    assert "<script>alert(1)</script>" not in page  # model text is rendered, not trusted
    assert ReviewAccess.objects.count() == 1  # reading is covered by the recorded reason


def test_review_page_is_read_only(client, rita, conversation):
    Message.objects.filter(role="assistant").update(status="error", error_kind="server")
    client.force_login(rita)
    open_for_review(client, conversation)
    page = client.get(f"/review/{conversation.pk}/").text
    assert "ws-connect" not in page
    assert 'id="composer"' not in page
    assert "composer.js" not in page
    assert 'value="retry"' not in page


def test_review_page_shows_every_version_of_an_edited_message(client, rita, conversation):
    first = conversation.messages.first()
    first.visible = False
    first.save()
    Message.objects.create(conversation=conversation, role="user", content="Edited: the Q4 forecast?", parent=first.parent)
    client.force_login(rita)
    open_for_review(client, conversation)
    page = client.get(f"/review/{conversation.pk}/").text
    assert QUESTION in page and "Edited: the Q4 forecast?" in page
    assert "another version, not on the shown branch" in page


def test_a_reason_covers_an_hour_of_reading_then_another_is_asked(client, rita, conversation):
    client.force_login(rita)
    open_for_review(client, conversation)
    ReviewAccess.objects.update(opened_at=timezone.now() - timedelta(minutes=59))
    assert client.get(f"/review/{conversation.pk}/").status_code == 200
    ReviewAccess.objects.update(opened_at=timezone.now() - timedelta(minutes=61))
    assert client.get(f"/review/{conversation.pk}/")["Location"] == f"/review/{conversation.pk}/reason/"


def test_a_reason_for_one_conversation_does_not_cover_another(client, rita, bob, acme, conversation):
    other = Conversation.objects.create(owner=bob, team=acme, title="Other")
    client.force_login(rita)
    open_for_review(client, conversation)
    assert client.get(f"/review/{other.pk}/")["Location"] == f"/review/{other.pk}/reason/"


def test_long_conversations_are_shown_in_pages(client, rita, bob, acme):
    long = Conversation.objects.create(owner=bob, team=acme, title="Long")
    Message.objects.bulk_create(
        Message(conversation=long, role="user", content=f"Question {number:03}") for number in range(150)
    )
    client.force_login(rita)
    open_for_review(client, long)
    first = client.get(f"/review/{long.pk}/").text
    assert "Question 000" in first and "Question 099" in first and "Question 100" not in first
    assert "Question 149" in client.get(f"/review/{long.pk}/?page=2").text


def test_review_page_queries_do_not_grow_with_the_messages(client, rita, bob, acme):
    def queries_for(count):
        chat = Conversation.objects.create(owner=bob, team=acme, title=f"{count} answers")
        for number in range(count):
            answer = Message.objects.create(conversation=chat, role="assistant", content=f"Answer {number}")
            ToolCall.objects.create(message=answer, index=0, call_id=f"c{number}", name="calculator", status="done")
            Citation.objects.create(message=answer, index=0, url="https://example.com/")
        open_for_review(client, chat)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/review/{chat.pk}/").status_code == 200
        return len(queries)

    client.force_login(rita)
    assert queries_for(3) == queries_for(40)


# --- Superusers ---------------------------------------------------------------------


def test_superuser_without_a_reason_is_asked_for_one_and_leaves_a_record(client, root, bob, conversation):
    client.force_login(root)
    assert "Q3 forecast" in client.get("/review/").text
    assert client.get(f"/review/{conversation.pk}/")["Location"] == f"/review/{conversation.pk}/reason/"
    open_for_review(client, conversation, "Checking a complaint about answer quality")
    access = ReviewAccess.objects.get()
    assert (access.reviewer, access.owner) == (root, bob)
    assert REASONING in client.get(f"/review/{conversation.pk}/").text


def test_superuser_cannot_review_a_team_that_switched_review_off(client, root, acme, conversation):
    acme.review_enabled = False
    acme.save()
    client.force_login(root)
    assert "Q3 forecast" not in client.get("/review/").text
    assert open_for_review(client, conversation).status_code == 404
    assert not ReviewAccess.objects.exists()


# --- Switching review off -------------------------------------------------------------


def test_team_admin_switches_review_off_and_reviewers_see_nothing(client, alice, rita, acme, conversation):
    client.force_login(rita)
    open_for_review(client, conversation)
    client.force_login(alice)
    page = client.get(f"/teams/{acme.pk}/review/").text
    assert 'name="review_enabled"' in page and "checked" in page
    response = client.post(f"/teams/{acme.pk}/review/", {}, follow=True)
    assert "Review is off for Acme" in response.text
    acme.refresh_from_db()
    assert acme.review_enabled is False

    client.force_login(rita)
    page = client.get("/review/").text
    assert "Q3 forecast" not in page
    assert "Review is switched off for Acme" in page
    # Even the reason given before the switch no longer opens it.
    assert client.get(f"/review/{conversation.pk}/").status_code == 404
    assert client.get(f"/review/{conversation.pk}/reason/").status_code == 404
    assert open_for_review(client, conversation).status_code == 404
    assert ReviewAccess.objects.count() == 1


def test_team_admin_switches_review_back_on(client, alice, rita, acme, conversation):
    acme.review_enabled = False
    acme.save()
    client.force_login(alice)
    client.post(f"/teams/{acme.pk}/review/", {"review_enabled": "on"})
    acme.refresh_from_db()
    assert acme.review_enabled is True
    client.force_login(rita)
    assert "Q3 forecast" in client.get("/review/").text


# --- The owner's view ---------------------------------------------------------------


def test_owner_sees_who_read_their_conversation_when_and_why(client, rita, bob, conversation):
    client.force_login(rita)
    open_for_review(client, conversation)
    client.force_login(bob)
    page = client.get("/chats/read-by-reviewers/").text
    assert "rita" in page
    assert REASON in page
    assert "Q3 forecast" in page
    assert f'href="/chats/{conversation.pk}/"' in page
    assert "<time datetime=" in page


def test_owner_still_sees_the_access_after_deleting_the_conversation(client, rita, bob, conversation):
    client.force_login(rita)
    open_for_review(client, conversation)
    conversation.delete()
    client.force_login(bob)
    page = client.get("/chats/read-by-reviewers/").text
    assert "rita" in page and "Q3 forecast" in page and REASON in page


def test_owner_with_no_accesses_is_told_so(client, bob):
    client.force_login(bob)
    assert "No reviewer has opened any of your conversations." in client.get("/chats/read-by-reviewers/").text


def test_preferences_link_to_the_access_list(client, bob):
    client.force_login(bob)
    assert 'href="/chats/read-by-reviewers/"' in client.get("/accounts/preferences/").text


# --- Who sees the way in ----------------------------------------------------------------


@pytest.mark.parametrize("who, shown", [("rita", True), ("root", True), ("bob", False), ("alice", False)])
def test_review_link_is_in_the_nav_for_reviewers_and_superusers_only(client, rita, root, bob, alice, who, shown):
    client.force_login({"rita": rita, "root": root, "bob": bob, "alice": alice}[who])
    assert ('href="/review/"' in client.get("/home/").text) is shown


def test_team_admins_find_the_review_switch_on_the_home_page(client, alice, bob, acme):
    client.force_login(alice)
    assert f'href="/teams/{acme.pk}/review/"' in client.get("/home/").text
    client.force_login(bob)
    assert "/review/" not in client.get("/home/").text


def test_a_reviewer_is_still_a_member_who_chats(client, rita, acme):
    client.force_login(rita)
    response = client.post("/chats/new/")
    conversation = Conversation.objects.get(owner=rita)
    assert response["Location"] == f"/chats/{conversation.pk}/"
    assert conversation.team == acme
    assert client.get(f"/chats/{conversation.pk}/").status_code == 200


def test_reviewer_cannot_open_a_conversation_on_the_chat_page(client, rita, conversation):
    client.force_login(rita)
    open_for_review(client, conversation)
    assert client.get(f"/chats/{conversation.pk}/").status_code == 404


# --- Authorization: everyone else is refused and changes nothing ---------------------------


@pytest.fixture
def outsider(request, dave, greta, charlie, alice):
    """A plain member of the team, another team's reviewer, another team's admin, this team's admin, or nobody."""
    return {"dave": dave, "greta": greta, "charlie": charlie, "alice": alice, "visitor": None}[request.param]


def sign_in(client, user):
    if user is not None:
        client.force_login(user)


OUTSIDERS = ["dave", "greta", "charlie", "alice", "visitor"]


def refused(response):
    """A 403, a 404, or the visitor sent to sign in."""
    if response.status_code == 302:
        return response["Location"].startswith("/accounts/sign-in/")
    return response.status_code in (403, 404)


@pytest.mark.parametrize("outsider", OUTSIDERS, indirect=True)
def test_outsiders_cannot_list_the_teams_conversations(client, outsider, conversation):
    sign_in(client, outsider)
    response = client.get("/review/")
    # greta reviews Globex: her list opens, without Acme's conversations.
    assert refused(response) or (outsider.username == "greta" and "Q3 forecast" not in response.text)


@pytest.mark.parametrize("outsider", OUTSIDERS, indirect=True)
@pytest.mark.parametrize("method, path", [("get", "reason/"), ("post", "reason/"), ("get", ""), ("get", "?page=2")])
def test_outsiders_cannot_open_a_conversation_for_review(client, outsider, conversation, method, path):
    sign_in(client, outsider)
    if outsider is not None:  # even with a reason of their own on record
        ReviewAccess.record(conversation, outsider, "Trying to get in anyway")
    before = ReviewAccess.objects.count()
    response = getattr(client, method)(f"/review/{conversation.pk}/{path}", {"reason": REASON} if method == "post" else {})
    assert refused(response)
    assert REASONING not in response.text
    assert ReviewAccess.objects.count() == before


@pytest.mark.parametrize("outsider", ["dave", "greta", "charlie", "visitor"], indirect=True)
def test_outsiders_cannot_see_the_owners_access_list(client, outsider, rita, conversation):
    client.force_login(rita)
    open_for_review(client, conversation)
    client.logout()
    sign_in(client, outsider)
    response = client.get("/chats/read-by-reviewers/")
    assert refused(response) or (response.status_code == 200 and REASON not in response.text)


@pytest.mark.parametrize("outsider", ["dave", "greta", "charlie", "visitor"], indirect=True)
@pytest.mark.parametrize("method", ["get", "post"])
def test_outsiders_cannot_switch_the_teams_review(client, outsider, rita, acme, method):
    sign_in(client, outsider)
    response = getattr(client, method)(f"/teams/{acme.pk}/review/", {})
    assert refused(response)
    acme.refresh_from_db()
    assert acme.review_enabled is True


def test_the_teams_reviewer_cannot_switch_review(client, rita, acme):
    client.force_login(rita)
    assert client.post(f"/teams/{acme.pk}/review/", {}).status_code == 403
    acme.refresh_from_db()
    assert acme.review_enabled is True


def test_superuser_who_is_not_the_teams_admin_switches_review_in_the_django_admin_only(client, root, acme):
    client.force_login(root)
    assert client.post(f"/teams/{acme.pk}/review/", {}).status_code == 404
    acme.refresh_from_db()
    assert acme.review_enabled is True


def test_unknown_conversation_and_malformed_ids_are_404(client, rita):
    client.force_login(rita)
    assert client.get("/review/00000000-0000-0000-0000-000000000000/reason/").status_code == 404
    assert client.get("/teams/999999/review/").status_code == 404
