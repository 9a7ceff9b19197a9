"""The team's keys for its admins, personal keys for members, tests, rotation, audit trail, and key choice."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

import chat.routing
from chat import mimo
from accounts.models import ApiKey, KeyEvent, Membership
from chat.forms import SendForm
from chat.models import Conversation, Message
from tests.conftest import SECRET, make_user

GOOD = "sk-good-Zx81Qw7Lm2Np"
BAD = "sk-invalid-Hy62Kd0Ft9"


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


def add_key(team, label, secret, base_url="https://api.xiaomimimo.com", owner=None, created_by=None):
    key = ApiKey(team=team, label=label, base_url=base_url, owner=owner, created_by=created_by)
    key.set_secret(secret)
    key.save()
    return key


def add_form(label, secret, base_url):
    return {
        "label": label,
        "api_format": "openai",
        "base_url_preset": "custom",
        "custom_base_url": base_url,
        "secret": secret,
    }


def answer(conversation, key, status=Message.Status.COMPLETE, **fields):
    return Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=status, api_key=key,
        api_key_version=key.secret_version, model="mimo-v2.5", **fields,
    )


# -- The list and adding ----------------------------------------------------------------


def test_admin_sees_the_team_keys_by_their_last_four_only(client, alice, acme_key):
    client.force_login(alice)
    response = client.get(f"/teams/{acme_key.team_id}/keys/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme production" in html and "…" + SECRET[-4:] in html
    assert SECRET not in html and SECRET[:-4] not in html


def test_admin_adds_a_key_with_a_custom_base_url_and_it_is_audited(client, alice, acme, fake_url):
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/", add_form("Fake", GOOD, fake_url), follow=True)
    key = ApiKey.objects.get(label="Fake")
    assert (key.team, key.owner, key.base_url, key.created_by, key.last_four) == (acme, None, fake_url, alice, GOOD[-4:])
    assert key.decrypt_secret() == GOOD
    assert GOOD not in response.content.decode()
    event = KeyEvent.objects.get()
    assert (event.action, event.actor, event.api_key, event.last_four, event.secret_version) == ("add", alice, key, GOOD[-4:], 1)


def test_a_bad_secret_or_base_url_is_explained_and_nothing_is_added(client, alice, acme):
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/", add_form("Short", "sk-1", "https://api.xiaomimimo.com"))
    assert "This does not look like an API key." in response.content.decode()
    response = client.post(f"/teams/{acme.pk}/keys/", add_form("Plain http", GOOD, "http://example.com"))
    html = response.content.decode()
    assert "The base URL must start with https://." in html
    assert GOOD not in html  # the password field is not rendered back with its value
    assert not ApiKey.objects.exists() and not KeyEvent.objects.exists()


@pytest.mark.parametrize("base_url", ["https://[::127.0.0.1]", "https://[64:ff9b::7f00:1]", "https://[::ffff:0:7f00:1]"])
def test_a_custom_base_url_on_an_ipv6_form_of_loopback_is_refused_and_nothing_is_added(client, alice, acme, base_url):
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/", add_form("Loopback", GOOD, base_url))
    assert "is on a private, loopback or link-local network" in response.content.decode()
    assert not ApiKey.objects.exists() and not KeyEvent.objects.exists()


def test_a_token_plan_key_is_added_with_its_warning(client, alice, acme):
    client.force_login(alice)
    form = add_form("Plan", "tp-Lk92Jd81Hs", "https://api.xiaomimimo.com") | {
        "base_url_preset": "https://api.xiaomimimo.com"
    }
    response = client.post(f"/teams/{acme.pk}/keys/", form, follow=True)
    assert "Token Plan key" in response.content.decode()
    assert ApiKey.objects.get().kind == ApiKey.Kind.TOKEN_PLAN


# -- Test ---------------------------------------------------------------------------------------


def test_test_reports_a_working_key_in_words_and_records_it(client, alice, acme, fake_url, fake_records):
    key = add_key(acme, "Good", GOOD, fake_url)
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/{key.pk}/test/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith(f'<article id="key-{key.pk}"')  # the row, for htmx to swap
    assert "Works — answered in" in html and " ms" in html
    event = KeyEvent.objects.get(action="test")
    assert (event.succeeded, event.error_kind, event.actor) == (True, "", alice)
    assert event.latency_ms is not None
    assert len(fake_records.all()) == 1
    assert GOOD not in html


def test_test_reports_a_refused_key_with_the_error_kind_in_words(client, alice, acme, fake_url, fake_records):
    key = add_key(acme, "Bad", BAD, fake_url)
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/{key.pk}/test/", follow=True)  # no htmx: a message
    html = response.content.decode()
    assert "Bad: Does not work: MiMo did not accept the API key." in html
    event = KeyEvent.objects.get(action="test")
    assert (event.succeeded, event.error_kind) == (False, "auth")
    assert "Last error" in html and BAD not in html


def test_test_of_a_key_whose_base_url_is_no_longer_allowed_sends_nothing(client, alice, acme, fake_url, fake_records, settings):
    key = add_key(acme, "Local", GOOD, fake_url)
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = []
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/{key.pk}/test/", follow=True)
    assert "Does not work: The key cannot be used" in response.content.decode()
    assert fake_records.all() == []
    assert KeyEvent.objects.get(action="test").error_kind == "key_unusable"


# -- Health: last used, last error, error rate --------------------------------------------------


def test_each_key_shows_last_use_last_error_and_the_days_error_rate_in_a_fixed_number_of_queries(
    client, alice, bob, acme, django_assert_max_num_queries
):
    conversation = Conversation.objects.create(owner=bob, team=acme)
    keys = [add_key(acme, f"Key {n}", f"sk-key-number-{n}-abcd{n}") for n in range(5)]
    for _n in range(38):
        answer(conversation, keys[0])
    answer(conversation, keys[0], status=Message.Status.ERROR, error_kind="rate_limited")
    answer(conversation, keys[0], status=Message.Status.ERROR, error_kind="insufficient_balance")
    old = answer(conversation, keys[0], status=Message.Status.ERROR, error_kind="auth")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))  # outside the day
    answer(conversation, keys[0], status=Message.Status.STREAMING)  # not finished: not counted
    for key in keys[1:]:
        answer(conversation, key)
        key.record(KeyEvent.Action.TEST, alice, succeeded=True, latency_ms=312)
    client.force_login(alice)
    with django_assert_max_num_queries(12):
        html = client.get(f"/teams/{acme.pk}/keys/").content.decode()
    assert "2 of 40 answers failed" in html
    assert "The MiMo account has run out of credit." in html  # the latest error, in words
    assert html.count("Works — answered in 312 ms") == 4
    assert "0 of 1 answer failed" in html


# -- Replace, revoke, default ---------------------------------------------------------------------


def test_replacing_the_secret_bumps_its_version_and_answers_keep_the_one_that_served_them(client, alice, bob, acme, acme_key):
    conversation = Conversation.objects.create(owner=bob, team=acme)
    before = answer(conversation, acme_key)
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/{acme_key.pk}/replace/", {"secret": GOOD}, follow=True)
    assert "version 2" in response.content.decode()
    acme_key.refresh_from_db()
    assert (acme_key.secret_version, acme_key.last_four, acme_key.decrypt_secret()) == (2, GOOD[-4:], GOOD)
    event = KeyEvent.objects.get(action="replace")
    assert (event.last_four, event.secret_version, event.actor) == (GOOD[-4:], 2, alice)
    before.refresh_from_db()
    assert before.api_key_version == 1
    acme_key.record(KeyEvent.Action.ADD, alice)  # (the fixture added it without the page)
    KeyEvent.objects.filter(action="add").update(secret_version=1, last_four=SECRET[-4:])
    assert before.key_last_four == SECRET[-4:]
    assert answer(conversation, acme_key).key_last_four == GOOD[-4:]


def test_a_bad_new_secret_is_explained_and_nothing_changes(client, alice, acme, acme_key):
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/{acme_key.pk}/replace/", {"secret": "with spaces in it"})
    assert "This does not look like an API key." in response.content.decode()
    acme_key.refresh_from_db()
    assert (acme_key.secret_version, acme_key.last_four) == (1, SECRET[-4:])
    assert not KeyEvent.objects.exists()


def test_revoke_asks_first_then_revokes_and_the_default_moves_on(client, alice, acme, acme_key):
    acme.default_key = acme_key
    acme.save()
    client.force_login(alice)
    assert "Revoke this key" in client.get(f"/teams/{acme.pk}/keys/{acme_key.pk}/revoke/").content.decode()
    assert ApiKey.objects.active().count() == 1
    client.post(f"/teams/{acme.pk}/keys/{acme_key.pk}/revoke/")
    acme_key.refresh_from_db()
    acme.refresh_from_db()
    assert acme_key.is_revoked and acme.default_key is None
    assert KeyEvent.objects.get().action == "revoke"


def test_make_default_and_the_settings_are_audited(client, alice, acme, acme_key):
    other = add_key(acme, "Backup", GOOD)
    client.force_login(alice)
    client.post(f"/teams/{acme.pk}/keys/{other.pk}/default/")
    acme.refresh_from_db()
    assert acme.default_key == other
    client.post(
        f"/teams/{acme.pk}/keys/settings/",
        {"default_key": acme_key.pk, "members_may_choose_key": "on", "members_may_add_keys": "on"},
    )
    acme.refresh_from_db()
    assert (acme.default_key, acme.members_may_choose_key, acme.members_may_add_keys) == (acme_key, True, True)
    assert [(e.action, e.api_key) for e in KeyEvent.objects.order_by("at", "pk")] == [("default", other), ("default", acme_key)]


def test_going_back_to_no_default_key_is_audited_on_the_key_that_was_default(client, alice, acme, acme_key):
    acme_key.make_default(alice)
    client.force_login(alice)
    client.post(f"/teams/{acme.pk}/keys/settings/", {"default_key": ""})
    acme.refresh_from_db()
    assert acme.default_key is None
    latest = KeyEvent.objects.order_by("-at", "-pk").first()
    assert (latest.action, latest.api_key, latest.actor) == ("undefault", acme_key, alice)


def test_another_teams_key_cannot_be_made_default(client, alice, acme, acme_key, globex):
    theirs = add_key(globex, "Globex key", GOOD)
    client.force_login(alice)
    response = client.post(f"/teams/{acme.pk}/keys/settings/", {"default_key": theirs.pk})
    assert response.status_code == 400
    assert "only the team’s active team keys can" in response.content.decode()
    acme.refresh_from_db()
    assert acme.default_key is None and not KeyEvent.objects.exists()


# -- The audit trail --------------------------------------------------------------------------


def test_the_audit_trail_lists_every_action_newest_first_without_the_secret(client, alice, acme, fake_url):
    client.force_login(alice)
    client.post(f"/teams/{acme.pk}/keys/", add_form("Fake", GOOD, fake_url))
    key = ApiKey.objects.get()
    client.post(f"/teams/{acme.pk}/keys/{key.pk}/test/")
    client.post(f"/teams/{acme.pk}/keys/{key.pk}/replace/", {"secret": BAD})
    client.post(f"/teams/{acme.pk}/keys/{key.pk}/test/")
    client.post(f"/teams/{acme.pk}/keys/{key.pk}/revoke/")
    html = client.get(f"/teams/{acme.pk}/keys/audit/").content.decode()
    rows = html[html.index("<tbody>"):]
    order = [rows.index(word) for word in ("revoked", "Does not work", "replaced the secret", "Works — answered", "added")]
    assert order == sorted(order)
    assert "…" + BAD[-4:] in html and "…" + GOOD[-4:] in html
    assert GOOD not in html and BAD not in html


def test_the_audit_trail_is_paginated(client, alice, acme, acme_key):
    for _n in range(55):
        acme_key.record(KeyEvent.Action.TEST, alice, succeeded=True, latency_ms=5)
    client.force_login(alice)
    assert "Page 1 of 2" in client.get(f"/teams/{acme.pk}/keys/audit/").content.decode()
    assert client.get(f"/teams/{acme.pk}/keys/audit/?page=2").content.decode().count("<tr>") == 1 + 5


# -- Who may do what ------------------------------------------------------------------------------


def team_key_urls(team_id, key_id):
    return [
        ("get", f"/teams/{team_id}/keys/"),
        ("post", f"/teams/{team_id}/keys/"),
        ("post", f"/teams/{team_id}/keys/settings/"),
        ("get", f"/teams/{team_id}/keys/audit/"),
        ("post", f"/teams/{team_id}/keys/{key_id}/test/"),
        ("get", f"/teams/{team_id}/keys/{key_id}/replace/"),
        ("post", f"/teams/{team_id}/keys/{key_id}/replace/"),
        ("get", f"/teams/{team_id}/keys/{key_id}/revoke/"),
        ("post", f"/teams/{team_id}/keys/{key_id}/revoke/"),
        ("post", f"/teams/{team_id}/keys/{key_id}/default/"),
    ]


def personal_key_urls(team_id, key_id):
    return [
        ("post", f"/teams/{team_id}/my-keys/{key_id}/test/"),
        ("get", f"/teams/{team_id}/my-keys/{key_id}/replace/"),
        ("post", f"/teams/{team_id}/my-keys/{key_id}/replace/"),
        ("get", f"/teams/{team_id}/my-keys/{key_id}/revoke/"),
        ("post", f"/teams/{team_id}/my-keys/{key_id}/revoke/"),
    ]


def everything(key):
    key.refresh_from_db()
    team = key.team
    team.refresh_from_db()
    return (
        key.secret_encrypted, key.secret_version, key.revoked_at, team.default_key_id, team.members_may_choose_key,
        ApiKey.objects.count(), KeyEvent.objects.count(),
    )


def attempt(client, method, url):
    data = {"secret": GOOD, "label": "x", "default_key": "", "members_may_choose_key": "on"} | add_form("x", GOOD, "https://api.xiaomimimo.com")
    return client.post(url, data) if method == "post" else client.get(url)


def test_team_key_pages_refuse_members_reviewers_other_admins_and_visitors(client, acme, acme_key, bob, rita, charlie):
    before = everything(acme_key)
    for user, expected in ((bob, 403), (rita, 403), (charlie, 404), (None, 302)):
        client.logout()
        if user:
            client.force_login(user)
        for method, url in team_key_urls(acme.pk, acme_key.pk):
            response = attempt(client, method, url)
            assert response.status_code == expected, (user, method, url)
            if user is None:
                assert response["Location"].startswith("/accounts/sign-in/")
    assert everything(acme_key) == before


def test_a_personal_key_is_its_owners_alone(client, acme, bob, alice, rita, charlie):
    acme.members_may_add_keys = True
    acme.save()
    mine = add_key(acme, "Bob's own", GOOD, owner=bob, created_by=bob)
    before = everything(mine)
    for user, expected in ((alice, 404), (rita, 404), (charlie, 404), (None, 302)):
        client.logout()
        if user:
            client.force_login(user)
        for method, url in personal_key_urls(acme.pk, mine.pk) + team_key_urls(acme.pk, mine.pk)[4:]:
            response = attempt(client, method, url)
            assert response.status_code in (expected, 403 if user is rita and "/my-keys/" not in url else expected), (user, url)
    assert everything(mine) == before
    client.force_login(alice)
    assert "Bob's own" not in client.get(f"/teams/{acme.pk}/keys/").content.decode()
    assert "Bob's own" not in client.get(f"/teams/{acme.pk}/my-keys/").content.decode()
    client.force_login(charlie)
    assert client.get(f"/teams/{acme.pk}/my-keys/").status_code == 404
    assert client.get(f"/teams/{acme.pk}/my-keys/audit/").status_code == 404


# -- Personal keys -----------------------------------------------------------------------------


def test_member_adds_tests_replaces_and_revokes_a_personal_key(client, acme, bob, fake_url, fake_records):
    acme.members_may_add_keys = True
    acme.save()
    client.force_login(bob)
    client.post(f"/teams/{acme.pk}/my-keys/", add_form("Mine", GOOD, fake_url))
    key = ApiKey.objects.get()
    assert (key.owner, key.created_by) == (bob, bob)
    response = client.post(f"/teams/{acme.pk}/my-keys/{key.pk}/test/", headers={"HX-Request": "true"})
    assert "Works — answered in" in response.content.decode()
    client.post(f"/teams/{acme.pk}/my-keys/{key.pk}/replace/", {"secret": BAD})
    client.post(f"/teams/{acme.pk}/my-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.is_revoked and key.secret_version == 2
    assert list(KeyEvent.objects.order_by("at", "pk").values_list("action", "actor__username")) == [
        ("add", "bob"), ("test", "bob"), ("replace", "bob"), ("revoke", "bob")
    ]
    html = client.get(f"/teams/{acme.pk}/my-keys/audit/").content.decode()
    assert "replaced the secret" in html and GOOD not in html and BAD not in html


def test_personal_keys_are_refused_where_the_team_does_not_allow_them(client, acme, bob):
    client.force_login(bob)
    response = client.post(f"/teams/{acme.pk}/my-keys/", add_form("Mine", GOOD, "https://api.xiaomimimo.com"), follow=True)
    assert "This team does not allow personal keys." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_team_audit_trail_leaves_out_personal_keys(client, acme, alice, bob, acme_key):
    acme.members_may_add_keys = True
    acme.save()
    mine = add_key(acme, "Bob's own", GOOD, owner=bob)
    mine.record(KeyEvent.Action.ADD, bob)
    acme_key.record(KeyEvent.Action.ADD, alice)
    client.force_login(alice)
    html = client.get(f"/teams/{acme.pk}/keys/audit/").content.decode()
    assert "Acme production" in html and "Bob's own" not in html


# -- Which key a conversation uses ------------------------------------------------------------------


def test_next_turn_uses_the_chosen_key_then_the_default_then_the_oldest(acme, bob, acme_key):
    later = add_key(acme, "Later", GOOD)
    conversation = Conversation.objects.create(owner=bob, team=acme, api_key=later)
    assert conversation.key_for_next_turn() == acme_key  # members may not choose: the oldest
    acme.default_key = later
    acme.save()
    third = add_key(acme, "Third", BAD)
    conversation.api_key = third
    assert conversation.key_for_next_turn() == later  # the default
    acme.members_may_choose_key = True
    acme.save()
    assert conversation.key_for_next_turn() == third  # the choice
    third.revoke()
    assert conversation.key_for_next_turn() == later
    later.revoke()
    assert conversation.key_for_next_turn() == acme_key


def test_a_personal_key_serves_only_its_owner(acme, bob, alice, acme_key):
    acme.members_may_add_keys = acme.members_may_choose_key = True
    acme.save()
    bobs = add_key(acme, "Bob's own", GOOD, owner=bob)
    assert Conversation.objects.create(owner=bob, team=acme, api_key=bobs).key_for_next_turn() == bobs
    # A conversation of another member pointing at it (forged, or a row copied) never uses it.
    assert Conversation.objects.create(owner=alice, team=acme, api_key=bobs).key_for_next_turn() == acme_key


def test_the_send_form_offers_only_usable_keys_by_label_and_last_four(acme, bob, alice, acme_key, globex):
    acme.members_may_add_keys = True
    acme.save()
    bobs = add_key(acme, "Bob's own", GOOD, owner=bob)
    alices = add_key(acme, "Alice's own", BAD, owner=alice)
    conversation = Conversation.objects.create(owner=bob, team=acme)
    field = SendForm(conversation=conversation).fields["api_key"]
    assert list(field.queryset) == [bobs]  # team keys only while members may choose
    acme.members_may_choose_key = True
    acme.save()
    form = SendForm(conversation=conversation)
    assert set(form.fields["api_key"].queryset) == {bobs, acme_key}
    html = str(form["api_key"])
    assert "…" + GOOD[-4:] in html and GOOD not in html and "Alice" not in html
    forged = SendForm({"text": "hi", "model": "mimo-v2.5", "api_key": alices.pk}, conversation=conversation)
    assert not forged.is_valid()
    assert forged.errors["api_key"] == ["That key cannot be used in this conversation. Choose another one."]


def test_a_team_where_nobody_may_choose_offers_no_key_field(acme, bob, acme_key):
    assert "api_key" not in SendForm(conversation=Conversation.objects.create(owner=bob, team=acme)).fields


def test_the_chat_settings_panel_offers_the_choice(client, acme, bob, acme_key):
    acme.members_may_choose_key = True
    acme.save()
    conversation = Conversation.objects.create(owner=bob, team=acme)
    client.force_login(bob)
    html = client.get(f"/chats/{conversation.pk}/").content.decode()
    assert 'name="api_key"' in html and f"Acme production · pay-as-you-go · …{SECRET[-4:]}" in html


application = URLRouter(chat.routing.websocket_urlpatterns)


async def send_over_socket(user, conversation, fields):
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _code = await communicator.connect()
    assert connected
    await communicator.send_json_to(
        {"action": "send", "text": "hello", "model": "mimo-v2.5", "HEADERS": {}} | fields
    )
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_a_forged_key_over_the_socket_is_refused_with_a_notice_and_nothing_is_sent(acme, bob, alice, fake_url, fake_records):
    def setup():
        acme.members_may_add_keys = acme.members_may_choose_key = True
        acme.save()
        add_key(acme, "Team", GOOD, fake_url)
        alices = add_key(acme, "Alice's own", GOOD, fake_url, owner=alice)
        return alices, Conversation.objects.create(owner=bob, team=acme, title="Plans")

    alices, conversation = await database_sync_to_async(setup)()
    communicator = await send_over_socket(bob, conversation, {"api_key": str(alices.pk)})
    assert "That key cannot be used in this conversation" in await communicator.receive_from(timeout=5)
    await communicator.disconnect()
    # database_sync_to_async closes its connection after each call, so none is left open for teardown.
    assert await database_sync_to_async(saved_state)(conversation) == (None, [])
    assert fake_records.all() == []


def saved_state(conversation):
    conversation.refresh_from_db()
    answers = Message.objects.filter(conversation=conversation, role="assistant")
    return conversation.api_key_id, list(answers.values_list("api_key_id", "api_key_version", "status"))


@pytest.mark.django_db(transaction=True)
async def test_a_chosen_key_is_saved_on_the_conversation_and_serves_the_answer(acme, bob, fake_url, fake_records):
    def setup():
        acme.members_may_choose_key = True
        acme.save()
        add_key(acme, "First", "sk-first-key-aaaa", fake_url)
        second = add_key(acme, "Second", "sk-second-key-bbbb", fake_url)
        return second, Conversation.objects.create(owner=bob, team=acme, title="Plans")

    second, conversation = await database_sync_to_async(setup)()
    communicator = await send_over_socket(bob, conversation, {"api_key": str(second.pk)})
    while 'class="message message-assistant" data-status="complete"' not in await communicator.receive_from(timeout=20):
        pass
    await communicator.disconnect()
    assert await database_sync_to_async(saved_state)(conversation) == (second.pk, [(second.pk, 1, "complete")])
    assert fake_records.all()[-1]["headers"]["authorization"].endswith("bbbb")
    await mimo.close_shared_http_client()
