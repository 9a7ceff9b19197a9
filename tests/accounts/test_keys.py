import socket
import sys
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.views.debug import ExceptionReporter
from django.db import connection

from accounts.crypto import UndecryptableSecret
from accounts.models import ApiKey, Membership
from chat.mimo import transport
from tests.conftest import SECRET, make_user


def raw_secret_column(key):
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM accounts_apikey WHERE id = %s", [key.pk])
        return cursor.fetchone()[0]


def test_database_column_holds_no_plaintext(acme_key):
    stored = raw_secret_column(acme_key)
    assert SECRET not in stored
    assert SECRET[3:] not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token


def test_secret_decrypts_for_its_own_base_url(acme_key):
    assert ApiKey.objects.get(pk=acme_key.pk).decrypt_secret() == SECRET


def test_only_last_four_characters_are_kept_in_clear(acme_key):
    assert acme_key.last_four == SECRET[-4:]
    assert acme_key.masked == "…" + SECRET[-4:]


def test_repr_and_str_show_only_the_last_four(acme_key):
    for text in (repr(acme_key), str(acme_key)):
        assert SECRET not in text
        assert SECRET[-4:] in text
        assert SECRET[:-4] not in text


def test_secret_is_encrypted_with_the_encryption_key_not_secret_key(acme_key, settings):
    settings.SECRET_KEY = "something else entirely"
    assert ApiKey.objects.get(pk=acme_key.pk).decrypt_secret() == SECRET
    settings.MIMOWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(UndecryptableSecret):
        ApiKey.objects.get(pk=acme_key.pk).decrypt_secret()


def test_undecryptable_key_is_a_clear_error_naming_the_key_and_the_setting(acme_key, settings):
    settings.MIMOWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(UndecryptableSecret) as error:
        ApiKey.objects.get(pk=acme_key.pk).decrypt_secret()
    message = str(error.value)
    assert "Acme production" in message
    assert "MIMOWEB_ENCRYPTION_KEYS" in message
    assert SECRET not in message


def test_key_moved_to_another_base_url_in_the_database_cannot_be_opened(acme_key):
    # Someone with database access points the key at their own host: it must not follow.
    ApiKey.objects.filter(pk=acme_key.pk).update(base_url="https://attacker.example")
    with pytest.raises(PermissionError) as error:
        ApiKey.objects.get(pk=acme_key.pk).decrypt_secret()
    assert SECRET not in str(error.value)


@pytest.mark.parametrize("address", ["::7f00:1", "64:ff9b::a01:203", "2002:7f00:1::1", "fec0::1"])
def test_a_key_is_not_opened_once_its_host_resolves_to_an_internal_ipv6_form(acme, address, monkeypatch):
    """Answers, titles and key tests all open their key with secret_for_request: the check runs there too."""
    monkeypatch.setattr(transport, "_checked_addresses", {})  # the addresses it pins stay in this test
    key = ApiKey(team=acme, label="Proxy", base_url="https://mimo-proxy.example.com")
    key.set_secret(SECRET)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port))])
    key.full_clean()
    key.save()
    assert key.secret_for_request() == SECRET
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))])
    with pytest.raises(ValidationError) as error:
        key.secret_for_request()
    assert error.value.code == "internal"


def test_a_key_is_opened_outside_the_database_thread_since_its_dns_lookup_may_be_slow(acme, monkeypatch):
    monkeypatch.setattr(transport, "_checked_addresses", {})
    key = ApiKey(team=acme, label="Proxy", base_url="https://mimo-proxy.example.com")
    key.set_secret(SECRET)
    looked_up_in = []

    def getaddrinfo(host, port, *args, **kwargs):
        looked_up_in.append(threading.get_ident())
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    async def open_it():
        database_thread = await database_sync_to_async(threading.get_ident)()
        return database_thread, await key.asecret_for_request()

    database_thread, secret = async_to_sync(open_it)()
    assert secret == SECRET
    assert looked_up_in and database_thread not in looked_up_in


def test_revoked_key_cannot_be_opened(acme_key):
    acme_key.revoke()
    assert acme_key.revoked_at is not None
    with pytest.raises(PermissionError):
        ApiKey.objects.get(pk=acme_key.pk).decrypt_secret()
    assert list(ApiKey.objects.active()) == []


@pytest.mark.parametrize(
    "secret, kind",
    [
        ("sk-abcdef123456", ApiKey.Kind.PAY_AS_YOU_GO),
        ("tp-abcdef123456", ApiKey.Kind.TOKEN_PLAN),
        ("abcdef123456", ApiKey.Kind.UNKNOWN),
    ],
)
def test_kind_is_detected_from_the_prefix(acme, secret, kind):
    key = ApiKey(team=acme, label="k")
    key.set_secret(secret)
    assert key.kind == kind


def test_token_plan_key_warns_about_policy_and_wrong_host(acme):
    key = ApiKey(team=acme, label="k", base_url="https://api.xiaomimimo.com")
    key.set_secret("tp-abcdef123456")
    warnings = key.warnings()
    assert any("coding tools" in w for w in warnings)
    assert any("401" in w for w in warnings)


def test_pay_as_you_go_key_on_token_plan_host_warns(acme):
    key = ApiKey(team=acme, label="k", base_url="https://token-plan-sgp.xiaomimimo.com")
    key.set_secret("sk-abcdef123456")
    assert any("401" in w for w in key.warnings())


def test_pay_as_you_go_key_on_pay_as_you_go_host_has_no_warning(acme):
    key = ApiKey(team=acme, label="k")
    key.set_secret("sk-abcdef123456")
    assert key.warnings() == []


def test_personal_key_needs_a_team_that_allows_it(acme, bob):
    key = ApiKey(team=acme, owner=bob, label="bob's")
    key.set_secret("sk-abcdef123456")
    with pytest.raises(ValidationError) as error:
        key.full_clean()
    assert "owner" in error.value.message_dict
    acme.members_may_add_keys = True
    acme.save()
    key.full_clean()


def test_personal_key_owner_must_be_in_the_team(acme, charlie):
    acme.members_may_add_keys = True
    acme.save()
    key = ApiKey(team=acme, owner=charlie, label="not charlie's team")
    key.set_secret("sk-abcdef123456")
    with pytest.raises(ValidationError) as error:
        key.full_clean()
    assert "owner" in error.value.message_dict


def test_reencrypt_after_rotation_leaves_every_key_readable_with_the_new_key_alone(acme, alice, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MIMOWEB_ENCRYPTION_KEYS = [old]
    secrets = {f"sk-key-number-{n}-abcdefgh": None for n in range(3)}
    for secret in secrets:
        key = ApiKey(team=acme, label=secret[:12], created_by=alice)
        key.set_secret(secret)
        key.save()
        secrets[secret] = key.pk

    settings.MIMOWEB_ENCRYPTION_KEYS = [new, old]  # new key first, old second
    call_command("reencrypt_keys", stdout=open("/dev/null", "w"))

    settings.MIMOWEB_ENCRYPTION_KEYS = [new]  # the old key is gone
    for secret, pk in secrets.items():
        assert ApiKey.objects.get(pk=pk).decrypt_secret() == secret


def test_reencrypt_refuses_and_changes_nothing_when_a_key_cannot_be_opened(acme, acme_key, settings):
    original = settings.MIMOWEB_ENCRYPTION_KEYS
    settings.MIMOWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # soon lost
    lost = ApiKey(team=acme, label="lost")
    lost.set_secret("sk-encrypted-under-a-lost-key")
    lost.save()
    before = raw_secret_column(acme_key)

    settings.MIMOWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *original]
    with pytest.raises(CommandError) as error:
        call_command("reencrypt_keys")
    assert "lost" in str(error.value)
    assert "Nothing was changed" in str(error.value)
    # acme_key came first and could be opened, yet the run rolled back whole.
    assert raw_secret_column(acme_key) == before


def test_membership_role_defaults_to_member(acme):
    user = make_user("dave", acme)
    assert user.memberships.get().role == Membership.Role.MEMBER


def test_error_reports_star_out_the_secret(acme, monkeypatch, rf):
    # What DEBUG pages and emailed error reports would print of a failure while saving a key.
    def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("accounts.crypto._multifernet", broken)
    key = ApiKey(team=acme, label="k")
    try:
        key.set_secret(SECRET)
    except RuntimeError:
        report = ExceptionReporter(rf.get("/"), *sys.exc_info()).get_traceback_html()
    assert "disk on fire" in report
    assert SECRET not in report
