"""Team administration of members: roles, removal, invitation links, one-time passwords, and who may do it."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

import chat.routing
from accounts.models import ApiKey, Invitation, KeyEvent, Membership, User
from chat.models import Conversation
from tests.conftest import make_user

NEW_PASSWORD = "a long and new passphrase 42"


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.fixture
def dave(acme):
    """A second team admin of Acme."""
    return make_user("dave", acme, Membership.Role.ADMIN)


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def membership(user, team):
    return Membership.objects.get(user=user, team=team)


def invite(team, by, role=Membership.Role.MEMBER, days=7, **extra):
    return Invitation.objects.create(
        team=team, role=role, created_by=by, expires_at=timezone.now() + timedelta(days=days), **extra
    )


# --- The team page ---------------------------------------------------------------------


def test_team_admin_sees_the_team_page_with_a_link_to_members(alice, acme):
    response = client_for(alice).get(f"/teams/{acme.pk}/")
    assert response.status_code == 200
    assert "<h1>Acme</h1>" in response.text
    assert f'href="/teams/{acme.pk}/members/"' in response.text
    assert f'href="/teams/{acme.pk}/review/"' in response.text


def test_home_offers_manage_team_to_team_admins_only(alice, bob, acme):
    assert f'href="/teams/{acme.pk}/"' in client_for(alice).get("/home/").text
    assert f'href="/teams/{acme.pk}/"' not in client_for(bob).get("/home/").text


# --- Members and roles -------------------------------------------------------------------


def test_members_page_lists_username_name_role_and_joined(alice, bob, acme):
    bob.first_name, bob.last_name = "Bob", "Builder"
    bob.save()
    response = client_for(alice).get(f"/teams/{acme.pk}/members/")
    assert response.status_code == 200
    assert "bob" in response.text and "Bob Builder" in response.text
    assert f'id="member-{membership(bob, acme).pk}"' in response.text
    assert '<option value="member" selected>' in response.text
    assert timezone.localdate().strftime("%Y") in response.text


def test_admin_changes_a_role_with_a_plain_post(alice, bob, acme):
    m = membership(bob, acme)
    response = client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "reviewer"})
    assert response.status_code == 302
    assert response.url == f"/teams/{acme.pk}/members/"
    m.refresh_from_db()
    assert m.role == Membership.Role.REVIEWER


def test_admin_changes_a_role_with_htmx_and_gets_the_row_back(alice, bob, acme):
    m = membership(bob, acme)
    response = client_for(alice).post(
        f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "admin"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response.text.strip().startswith(f'<tr id="member-{m.pk}"')
    assert '<option value="admin" selected>' in response.text
    assert "Saved." in response.text
    m.refresh_from_db()
    assert m.role == Membership.Role.ADMIN


def test_an_unknown_role_is_refused_and_nothing_changes(alice, bob, acme):
    m = membership(bob, acme)
    response = client_for(alice).post(
        f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "owner"}, headers={"HX-Request": "true"}
    )
    assert "Choose member, reviewer or team admin." in response.text
    m.refresh_from_db()
    assert m.role == Membership.Role.MEMBER


def test_the_last_team_admin_cannot_demote_themselves(alice, bob, acme):
    m = membership(alice, acme)
    client = client_for(alice)
    response = client.post(f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "member"}, follow=True)
    assert "alice is the last team admin of Acme. Make another member team admin first." in response.text
    htmx = client.post(
        f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "reviewer"}, headers={"HX-Request": "true"}
    )
    assert 'role="alert"' in htmx.text and "last team admin" in htmx.text
    assert '<option value="admin" selected>' in htmx.text
    m.refresh_from_db()
    assert m.role == Membership.Role.ADMIN


def test_the_last_team_admin_cannot_remove_themselves(alice, bob, acme):
    m = membership(alice, acme)
    client = client_for(alice)
    response = client.post(f"/teams/{acme.pk}/members/{m.pk}/remove/", follow=True)
    assert "alice is the last team admin of Acme." in response.text
    htmx = client.post(f"/teams/{acme.pk}/members/{m.pk}/remove/", headers={"HX-Request": "true"})
    assert "last team admin" in htmx.text
    assert Membership.objects.filter(pk=m.pk, role=Membership.Role.ADMIN).exists()


def test_an_admin_may_step_down_while_another_admin_remains(alice, dave, acme):
    m = membership(alice, acme)
    response = client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "member"})
    assert response.status_code == 302 and response.url == "/home/"
    m.refresh_from_db()
    assert m.role == Membership.Role.MEMBER
    assert client_for(alice).get(f"/teams/{acme.pk}/members/").status_code == 403


def test_an_admin_may_leave_while_another_admin_remains_and_htmx_goes_home(alice, dave, acme):
    m = membership(alice, acme)
    response = client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/remove/", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == "/home/"
    assert not Membership.objects.filter(pk=m.pk).exists()


def test_one_admin_may_demote_another(alice, dave, acme):
    m = membership(dave, acme)
    client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "member"})
    m.refresh_from_db()
    assert m.role == Membership.Role.MEMBER


def test_remove_asks_for_confirmation_first(alice, bob, acme):
    m = membership(bob, acme)
    response = client_for(alice).get(f"/teams/{acme.pk}/members/{m.pk}/remove/")
    assert response.status_code == 200
    assert "Remove bob from Acme?" in response.text
    assert "Their account and their conversations are kept." in response.text
    assert Membership.objects.filter(pk=m.pk).exists()


def test_removing_a_member_keeps_their_account_and_conversations(alice, bob, acme):
    kept = Conversation.objects.create(owner=bob, team=acme, title="Quarterly plan")
    m = membership(bob, acme)
    response = client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/remove/", follow=True)
    assert "bob is no longer in Acme. Their conversations are kept." in response.text
    assert not Membership.objects.filter(pk=m.pk).exists()
    assert User.objects.filter(pk=bob.pk).exists()
    assert Conversation.objects.filter(pk=kept.pk, owner=bob, team=acme).exists()


def test_removing_a_member_revokes_their_personal_keys_in_that_team_only(alice, bob, acme, globex):
    acme.members_may_add_keys = globex.members_may_add_keys = True
    acme.save()
    globex.save()
    Membership.objects.create(user=bob, team=globex)
    keys = {}
    for team in (acme, globex):
        keys[team.name] = ApiKey(team=team, owner=bob, label=f"bob in {team}")
        keys[team.name].set_secret("sk-personal-key-1234")
        keys[team.name].save()
    m = membership(bob, acme)
    client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/remove/")
    assert ApiKey.objects.get(pk=keys["Acme"].pk).is_revoked
    assert not ApiKey.objects.get(pk=keys["Globex"].pk).is_revoked
    assert KeyEvent.objects.filter(api_key=keys["Acme"], action=KeyEvent.Action.REVOKE, actor=alice).exists()


def test_removing_with_htmx_replaces_the_row_with_a_notice(alice, bob, acme):
    m = membership(bob, acme)
    response = client_for(alice).post(f"/teams/{acme.pk}/members/{m.pk}/remove/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'role="status"' in response.text and "bob is no longer in Acme." in response.text
    assert not Membership.objects.filter(pk=m.pk).exists()


def test_a_membership_of_another_team_is_not_found_through_this_team(alice, charlie, acme, globex):
    other = membership(charlie, globex)
    client = client_for(alice)
    assert client.post(f"/teams/{acme.pk}/members/{other.pk}/role/", {f"member-{other.pk}-role": "member"}).status_code == 404
    assert client.post(f"/teams/{acme.pk}/members/{other.pk}/remove/").status_code == 404
    other.refresh_from_db()
    assert other.role == Membership.Role.ADMIN


# --- Invitations: creating and revoking ----------------------------------------------------


def test_admin_creates_an_invitation_link_valid_for_seven_days_by_default(alice, acme):
    response = client_for(alice).post(
        f"/teams/{acme.pk}/invitations/", {"role": "reviewer", "note": "Rita from finance", "days": "7"}, follow=True
    )
    invitation = Invitation.objects.get()
    assert (invitation.team, invitation.role, invitation.note, invitation.created_by) == (acme, "reviewer", "Rita from finance", alice)
    assert timedelta(days=7) - timedelta(minutes=1) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    assert f"http://testserver/invitations/{invitation.token}/" in response.text
    assert "Rita from finance" in response.text


def test_the_members_page_offers_seven_days_by_default(alice, acme):
    response = client_for(alice).get(f"/teams/{acme.pk}/members/")
    assert 'name="days" value="7"' in response.text


@pytest.mark.parametrize("days", ["0", "31", "soon", ""])
def test_a_lifetime_outside_one_to_thirty_days_is_refused_and_nothing_is_created(alice, acme, days):
    response = client_for(alice).post(f"/teams/{acme.pk}/invitations/", {"role": "member", "days": days})
    assert response.status_code == 400
    assert 'class="field-error"' in response.text
    assert not Invitation.objects.exists()


def test_revoking_an_invitation_makes_the_link_stop_working(alice, acme):
    invitation = invite(acme, alice)
    client = client_for(alice)
    client.post(f"/teams/{acme.pk}/invitations/{invitation.pk}/revoke/")
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert invitation.token not in client.get(f"/teams/{acme.pk}/members/").text
    response = Client().get(f"/invitations/{invitation.token}/")
    assert response.status_code == 410
    assert "This invitation link was withdrawn" in response.text


def test_an_invitation_of_another_team_cannot_be_revoked_through_this_team(alice, charlie, globex, acme):
    theirs = invite(globex, charlie)
    assert client_for(alice).post(f"/teams/{acme.pk}/invitations/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# --- Invitations: the invitee's side -------------------------------------------------------


def test_a_visitor_sees_the_team_and_role_and_a_sign_up_form(alice, acme):
    invitation = invite(acme, alice, role=Membership.Role.REVIEWER)
    response = Client().get(f"/invitations/{invitation.token}/")
    assert response.status_code == 200
    assert "Join Acme" in response.text
    assert "You are invited to Acme as reviewer." in response.text
    assert 'name="password2"' in response.text


def test_a_visitor_creates_an_account_and_is_signed_in_as_a_member_with_the_invited_role(alice, acme):
    invitation = invite(acme, alice, role=Membership.Role.REVIEWER)
    client = Client()
    response = client.post(
        f"/invitations/{invitation.token}/",
        {"username": "erin", "first_name": "Erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response.url == "/home/"
    erin = User.objects.get(username="erin")
    assert erin.check_password(NEW_PASSWORD) and not erin.must_change_password
    assert membership(erin, acme).role == Membership.Role.REVIEWER
    assert int(client.session[SESSION_KEY]) == erin.pk
    invitation.refresh_from_db()
    assert invitation.accepted_by == erin and invitation.accepted_at is not None
    assert "Welcome to Acme." in client.get("/home/").text


def test_a_double_submit_makes_one_account_and_the_second_is_told_the_link_is_used(alice, acme):
    invitation = invite(acme, alice)
    form = {"username": "erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    Client().post(f"/invitations/{invitation.token}/", form)
    second = Client().post(f"/invitations/{invitation.token}/", {**form, "username": "erin2"})
    assert second.status_code == 410
    assert "This invitation link has been used" in second.text
    assert not User.objects.filter(username="erin2").exists()
    assert acme.memberships.count() == 2  # alice and erin


def test_a_stale_copy_of_the_invitation_cannot_be_accepted_twice(alice, bob, acme):
    """The conditional UPDATE decides, not the copy a request loaded before the other accepted."""
    invitation = invite(acme, alice)
    stale = Invitation.objects.get(pk=invitation.pk)
    erin = make_user("erin")
    invitation.accept(erin)
    frank = make_user("frank")
    with pytest.raises(Exception) as refused:
        stale.accept(frank)
    assert refused.value.code == "closed"
    assert not Membership.objects.filter(user=frank).exists()
    invitation.refresh_from_db()
    assert invitation.accepted_by == erin


@pytest.mark.parametrize(
    "form, error",
    [
        ({"username": "erin", "password1": "123", "password2": "123"}, "This password is too short."),
        ({"username": "erin", "password1": "password", "password2": "password"}, "This password is too common."),
        ({"username": "erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"}, "The two password fields"),
        ({"username": "BOB", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "A user with that username already exists."),
    ],
)
def test_a_bad_sign_up_is_refused_and_the_link_stays_open(alice, bob, acme, form, error):
    invitation = invite(acme, alice)
    response = Client().post(f"/invitations/{invitation.token}/", form)
    assert response.status_code == 200
    assert error in response.text
    assert not User.objects.filter(username="erin").exists()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_a_signed_in_user_joins_with_one_click(alice, charlie, acme):
    invitation = invite(acme, alice)
    client = client_for(charlie)
    page = client.get(f"/invitations/{invitation.token}/")
    assert '<button type="submit" class="primary">Join Acme</button>' in page.text
    assert 'name="password1"' not in page.text
    response = client.post(f"/invitations/{invitation.token}/")
    assert response.status_code == 302
    assert membership(charlie, acme).role == Membership.Role.MEMBER
    invitation.refresh_from_db()
    assert invitation.accepted_by == charlie


def test_a_member_opening_an_invitation_is_told_so_and_nothing_changes(alice, bob, acme):
    invitation = invite(acme, alice, role=Membership.Role.ADMIN)
    response = client_for(bob).post(f"/invitations/{invitation.token}/")
    assert "You are already a member of Acme. Nothing was changed." in response.text
    assert membership(bob, acme).role == Membership.Role.MEMBER
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


@pytest.mark.parametrize(
    "state, heading",
    [
        ({"expires_at": timezone.now() - timedelta(minutes=1)}, "This invitation link has expired"),
        ({"revoked_at": timezone.now()}, "This invitation link was withdrawn"),
        ({"accepted_at": timezone.now()}, "This invitation link has been used"),
    ],
)
def test_a_closed_link_says_why_with_410_and_nothing_changes(alice, charlie, acme, state, heading):
    invitation = invite(acme, alice)
    Invitation.objects.filter(pk=invitation.pk).update(**state)
    form = {"username": "erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    for client in (Client(), client_for(charlie)):
        assert client.get(f"/invitations/{invitation.token}/").status_code == 410
        response = client.post(f"/invitations/{invitation.token}/", form)
        assert response.status_code == 410
        assert heading in response.text
    assert not User.objects.filter(username="erin").exists()
    assert not Membership.objects.filter(user=charlie, team=acme).exists()


def test_an_unknown_link_is_404(db):
    response = Client().get("/invitations/not-a-real-token/")
    assert response.status_code == 404
    assert "This invitation link does not exist" in response.text


# --- One-time passwords ------------------------------------------------------------------------


def create_member(client, team, **fields):
    return client.post(f"/teams/{team.pk}/members/new/", {"username": "erin", "role": "member", **fields})


def test_admin_creates_an_account_and_sees_its_one_time_password_once(alice, acme):
    client = client_for(alice)
    response = create_member(client, acme, first_name="Erin", email="erin@example.com", role="reviewer")
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    password = response.context["password"]
    assert len(password) >= 12 and f'<code class="one-time-password">{password}</code>' in response.text
    erin = User.objects.get(username="erin")
    assert erin.must_change_password and erin.check_password(password)
    assert password not in erin.password  # stored hashed
    assert (erin.first_name, erin.email) == ("Erin", "erin@example.com")
    assert membership(erin, acme).role == Membership.Role.REVIEWER
    assert password not in client.get(f"/teams/{acme.pk}/members/").text
    assert password not in client.get(f"/teams/{acme.pk}/members/new/").text


def test_each_account_gets_a_different_one_time_password(alice, acme):
    client = client_for(alice)
    first = create_member(client, acme).context["password"]
    second = create_member(client, acme, username="frank").context["password"]
    assert first != second


@pytest.mark.parametrize("fields", [{"username": "Bob"}, {"username": ""}, {"username": "no spaces"}, {"email": "nope"}])
def test_a_bad_new_account_is_refused_and_nothing_is_created(alice, bob, acme, fields):
    before = User.objects.count()
    response = create_member(client_for(alice), acme, **fields)
    assert response.status_code == 400
    assert 'class="field-error"' in response.text
    assert User.objects.count() == before
    assert acme.memberships.count() == 2


def test_a_one_time_password_user_is_sent_to_change_it_first(alice, acme):
    password = create_member(client_for(alice), acme).context["password"]
    client = Client()
    assert client.login(username="erin", password=password)
    for path in ("/", "/chats/", f"/teams/{acme.pk}/", "/accounts/preferences/", "/no-such-page/"):
        response = client.get(path)
        assert response.status_code == 302 and response.url == "/accounts/password/", path
    htmx = client.get("/chats/sidebar/", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == "/accounts/password/"
    page = client.get("/accounts/password/")
    assert page.status_code == 200
    assert "You signed in with a one-time password from your team admin." in page.text
    assert client.get("/healthz").status_code == 200
    assert client.post("/language/", {"language": "en", "next": "/"}).url == "/"
    assert User.objects.get(username="erin").must_change_password


def test_changing_the_password_lifts_the_flag(alice, acme):
    password = create_member(client_for(alice), acme).context["password"]
    client = Client()
    client.login(username="erin", password=password)
    response = client.post(
        "/accounts/password/",
        {"old_password": password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response.url == "/accounts/password/done/"
    erin = User.objects.get(username="erin")
    assert not erin.must_change_password and erin.check_password(NEW_PASSWORD)
    assert client.get("/home/").status_code == 200


def test_a_wrong_old_password_keeps_the_flag(alice, acme):
    create_member(client_for(alice), acme)
    erin = User.objects.get(username="erin")
    client = client_for(erin)
    client.post("/accounts/password/", {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    erin.refresh_from_db()
    assert erin.must_change_password


def test_sign_out_is_allowed_with_a_one_time_password(alice, acme):
    create_member(client_for(alice), acme)
    client = client_for(User.objects.get(username="erin"))
    response = client.post("/accounts/sign-out/")
    assert response.status_code == 302 and response.url == "/accounts/sign-in/"
    assert SESSION_KEY not in client.session


@pytest.mark.django_db(transaction=True)
async def test_the_socket_refuses_a_user_who_must_change_their_password(acme):
    # database_sync_to_async, not acreate: it closes its thread's connection, which
    # PostgreSQL would otherwise count as a user of the test database at teardown.
    erin = await database_sync_to_async(make_user)("erin", acme, must_change_password=True)
    conversation = await database_sync_to_async(Conversation.objects.create)(owner=erin, team=acme)
    communicator = WebsocketCommunicator(
        URLRouter(chat.routing.websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/"
    )
    communicator.scope["user"] = erin
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


# --- Authorization: every URL of this part, as everyone who may not use it ---------------------


def team_urls(acme, bob, invitation):
    m = membership(bob, acme)
    return [
        ("get", f"/teams/{acme.pk}/", {}),
        ("get", f"/teams/{acme.pk}/members/", {}),
        ("get", f"/teams/{acme.pk}/members/new/", {}),
        ("post", f"/teams/{acme.pk}/members/new/", {"username": "mallory", "role": "admin"}),
        ("post", f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "admin"}),
        ("get", f"/teams/{acme.pk}/members/{m.pk}/remove/", {}),
        ("post", f"/teams/{acme.pk}/members/{m.pk}/remove/", {}),
        ("post", f"/teams/{acme.pk}/invitations/", {"role": "admin", "days": "30"}),
        ("post", f"/teams/{acme.pk}/invitations/{invitation.pk}/revoke/", {}),
    ]


def snapshot(acme):
    return (
        sorted(acme.memberships.values_list("user__username", "role")),
        sorted(Invitation.objects.values_list("pk", "revoked_at", "accepted_at")),
        User.objects.count(),
    )


@pytest.mark.parametrize("who, expected", [("bob", 403), ("rita", 403), ("charlie", 404), ("visitor", 302)])
def test_everyone_but_the_team_admins_is_refused_and_nothing_changes(request, alice, bob, rita, charlie, acme, who, expected):
    invitation = invite(acme, alice)
    client = Client() if who == "visitor" else client_for(request.getfixturevalue(who))
    before = snapshot(acme)
    for method, url, data in team_urls(acme, bob, invitation):
        response = getattr(client, method)(url, data)
        assert response.status_code == expected, (method, url)
        if who == "visitor":
            assert response.url.startswith("/accounts/sign-in/?next="), url
    assert snapshot(acme) == before


def test_htmx_requests_are_refused_too(bob, acme, alice):
    m = membership(alice, acme)
    response = client_for(bob).post(
        f"/teams/{acme.pk}/members/{m.pk}/role/", {f"member-{m.pk}-role": "member"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 403
    assert membership(alice, acme).role == Membership.Role.ADMIN


def test_superusers_outside_the_team_are_refused_like_outsiders(root, acme, alice, bob):
    assert client_for(root).get(f"/teams/{acme.pk}/members/").status_code == 404
