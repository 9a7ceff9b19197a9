from datetime import timedelta

import pytest
from django.utils import timezone

from chat import transfer
from chat.models import Conversation, Message, Share, ShareOpening
from tests.chat.test_transfer import build_conversation, without_ids
from tests.conftest import make_user


@pytest.fixture
def conversation(bob, acme, acme_key):
    return build_conversation(bob, acme, acme_key, title="Bob's <plans>")


@pytest.fixture
def share(conversation, bob):
    return Share.objects.create(
        conversation=conversation,
        created_by=bob,
        snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk))),
    )


def create_share(client, conversation, expires_in="7"):
    return client.post(f"/chats/{conversation.pk}/shares/", {"expires_in": expires_in})


# --- The owner makes, sees and revokes links ----------------------------------------------


def test_owner_creates_a_link_holding_the_conversation_as_exported_now(client, bob, conversation):
    client.force_login(bob)
    response = create_share(client, conversation, "7")
    assert response["Location"] == f"/chats/{conversation.pk}/shares/"
    share = Share.objects.get()
    assert (share.conversation, share.created_by, share.revoked_at) == (conversation, bob, None)
    assert timedelta(days=6, hours=23) < share.expires_at - timezone.now() <= timedelta(days=7)
    exported = transfer.export_data(transfer.exportable(Conversation.objects.all()))
    assert without_ids(share.snapshot) == without_ids(exported)
    page = client.get(f"/chats/{conversation.pk}/shares/").content.decode()
    assert f"http://testserver/shares/{share.pk}/" in page
    assert "Nobody has opened it yet." in page


@pytest.mark.parametrize(("choice", "days"), [("0", None), ("1", 1), ("30", 30)])
def test_a_link_expires_never_or_after_the_days_chosen(client, bob, conversation, choice, days):
    client.force_login(bob)
    create_share(client, conversation, choice)
    expires_at = Share.objects.get().expires_at
    if days is None:
        assert expires_at is None
    else:
        assert timedelta(days=days) - timedelta(minutes=1) < expires_at - timezone.now() <= timedelta(days=days)


def test_an_unknown_expiry_is_refused_and_creates_nothing(client, bob, conversation):
    client.force_login(bob)
    response = create_share(client, conversation, "365")
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Share.objects.exists()


def test_owner_sees_who_opened_the_link_and_when(client, alice, bob, conversation, share):
    client.force_login(alice)
    client.get(f"/shares/{share.pk}/")
    client.force_login(bob)
    for url in (f"/chats/{conversation.pk}/shares/", "/shares/"):
        page = client.get(url).content.decode()
        assert "Opened once" in page
        assert "<td>alice</td>" in page


def test_the_owners_own_visits_are_not_listed_as_openings(client, bob, share):
    client.force_login(bob)
    assert client.get(f"/shares/{share.pk}/").status_code == 200
    assert not ShareOpening.objects.exists()


def test_owner_revokes_a_link_and_it_no_longer_opens(client, alice, bob, conversation, share):
    client.force_login(bob)
    response = client.post(f"/shares/{share.pk}/revoke/", {"next": f"/chats/{conversation.pk}/shares/"})
    assert response["Location"] == f"/chats/{conversation.pk}/shares/"
    share.refresh_from_db()
    assert share.revoked_at is not None
    client.force_login(alice)
    response = client.get(f"/shares/{share.pk}/")
    assert response.status_code == 410
    assert "Its owner revoked this link." in response.content.decode()
    assert conversation.title not in response.content.decode()
    assert not ShareOpening.objects.exists()


def test_revoke_goes_back_only_to_a_page_of_this_site(client, bob, share):
    client.force_login(bob)
    response = client.post(f"/shares/{share.pk}/revoke/", {"next": "https://evil.example/"})
    assert response["Location"] == "/shares/"


def test_the_list_of_all_links_shows_only_ones_own(client, alice, bob, acme, share):
    Share.objects.create(conversation=Conversation.objects.create(owner=alice, team=acme, title="Alice's"), created_by=alice)
    client.force_login(bob)
    page = client.get("/shares/").content.decode()
    assert "Bob&#x27;s &lt;plans&gt;" in page
    assert "Alice" not in page


# --- A teammate opens the link ---------------------------------------------------------


def test_a_teammate_opens_the_snapshot_read_only_and_the_opening_is_recorded(client, alice, share):
    client.force_login(alice)
    response = client.get(f"/shares/{share.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Shared by bob" in page
    assert "<strong>noon</strong>" in page  # the answer's markdown, rendered
    assert "<script>alert(1)</script>" not in page  # and sanitised
    assert "What **time** is it?<br>&lt;b&gt;now&lt;/b&gt;" in page  # the question, escaped
    assert "I should call the clock." in page and "current_time" in page and "Time [now]" in page
    assert "Look it up" not in page  # the hidden version
    assert "MiMo wrote a call to web_search in its thinking" in page and "2 older messages were left out" in page
    assert "ws-connect" not in page and "<textarea" not in page and "ws-send" not in page  # no edit, no retry
    opening = ShareOpening.objects.get()
    assert (opening.share, opening.user) == (share, alice)


def test_later_changes_to_the_conversation_do_not_reach_the_link(client, alice, conversation, share):
    answer = Message.objects.get(content__startswith="It is")
    answer.content = "Changed later"
    answer.save()
    conversation.messages.filter(role="user").delete()  # takes the answers with it
    conversation.title = "Renamed"
    conversation.save()
    client.force_login(alice)
    page = client.get(f"/shares/{share.pk}/").content.decode()
    assert "<strong>noon</strong>" in page and "And tomorrow?" in page and "Bob&#x27;s &lt;plans&gt;" in page
    assert "Changed later" not in page and "Renamed" not in page


def test_an_expired_link_says_so(client, alice, share):
    share.expires_at = timezone.now() - timedelta(seconds=1)
    share.save()
    client.force_login(alice)
    response = client.get(f"/shares/{share.pk}/")
    assert response.status_code == 410
    assert "This link has expired." in response.content.decode()
    assert not ShareOpening.objects.exists()


def test_a_link_to_a_conversation_in_the_trash_does_not_open(client, alice, conversation, share):
    conversation.deleted_at = timezone.now()
    conversation.save()
    client.force_login(alice)
    response = client.get(f"/shares/{share.pk}/")
    assert response.status_code == 410
    assert "Its owner deleted this conversation." in response.content.decode()


def test_a_reviewer_of_the_team_may_open_a_link_too(client, acme, share):
    from accounts.models import Membership

    reviewer = make_user("rita", acme, Membership.Role.REVIEWER)
    client.force_login(reviewer)
    assert client.get(f"/shares/{share.pk}/").status_code == 200


# --- Who may do what ---------------------------------------------------------------


def test_another_teams_member_gets_404_for_the_link_and_nothing_is_recorded(client, charlie, share):
    client.force_login(charlie)
    assert client.get(f"/shares/{share.pk}/").status_code == 404
    share.revoke()
    assert client.get(f"/shares/{share.pk}/").status_code == 404  # not even whether it was revoked
    assert not ShareOpening.objects.exists()


def test_a_signed_out_visitor_is_sent_to_sign_in_for_the_link(client, share):
    response = client.get(f"/shares/{share.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")
    assert not ShareOpening.objects.exists()


def test_an_unknown_link_is_a_404(client, alice):
    client.force_login(alice)
    assert client.get("/shares/00000000-0000-0000-0000-000000000000/").status_code == 404


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
def test_others_cannot_create_list_or_revoke_links_of_a_conversation_not_theirs(client, conversation, share, who, request):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/chats/{conversation.pk}/shares/").status_code == 404
    assert create_share(client, conversation).status_code == 404
    assert client.post(f"/shares/{share.pk}/revoke/").status_code == 404
    assert conversation.title not in client.get("/shares/").content.decode()
    share.refresh_from_db()
    assert share.revoked_at is None and Share.objects.count() == 1


def test_a_signed_out_visitor_cannot_create_list_or_revoke_links(client, conversation, share):
    for response in (
        client.get(f"/chats/{conversation.pk}/shares/"),
        create_share(client, conversation),
        client.get("/shares/"),
        client.post(f"/shares/{share.pk}/revoke/"),
    ):
        assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")
    share.refresh_from_db()
    assert share.revoked_at is None and Share.objects.count() == 1


def test_revoke_needs_post(client, bob, share):
    client.force_login(bob)
    assert client.get(f"/shares/{share.pk}/revoke/").status_code == 405
    share.refresh_from_db()
    assert share.revoked_at is None


def test_a_conversation_in_the_trash_cannot_be_shared(client, bob, conversation):
    conversation.deleted_at = timezone.now()
    conversation.save()
    client.force_login(bob)
    assert create_share(client, conversation).status_code == 404
    assert not Share.objects.exists()
