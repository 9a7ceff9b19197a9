"""The Django admin for keys: write-only secrets, revoke, and nothing leaked over a key's whole life."""

import logging

import pytest
from django.core.management import call_command

from accounts.models import ApiKey
from tests.conftest import SECRET

ADD_URL = "/admin/accounts/apikey/add/"


def key_form(team, secret=SECRET, **changes):
    return {
        "team": team.pk,
        "owner": "",
        "label": "Production",
        "api_format": "openai",
        "base_url_preset": "https://api.xiaomimimo.com",
        "custom_base_url": "",
        "secret": secret,
        **changes,
    }


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


def test_superuser_adds_a_key_and_sees_only_its_last_four(admin_client, acme):
    response = admin_client.post(ADD_URL, key_form(acme), follow=True)
    key = ApiKey.objects.get()
    assert key.decrypt_secret() == SECRET
    assert key.created_by.username == "root"
    assert key.kind == ApiKey.Kind.PAY_AS_YOU_GO
    assert SECRET not in response.text
    assert "…" + SECRET[-4:] in response.text


def test_secret_field_is_a_password_input_that_is_never_filled_back(admin_client, acme):
    page = admin_client.get(ADD_URL).text
    assert 'type="password" name="secret"' in page
    # An invalid form comes back without the secret in it.
    response = admin_client.post(ADD_URL, key_form(acme, label=""))
    assert response.status_code == 200
    assert "This field is required" in response.text
    assert SECRET not in response.text
    assert not ApiKey.objects.exists()


def test_malformed_secret_error_does_not_quote_it(admin_client, acme):
    response = admin_client.post(ADD_URL, key_form(acme, secret="sk- has spaces in it"))
    assert "This does not look like an API key." in response.text
    assert "has spaces" not in response.text


def test_change_page_keeps_the_secret_when_left_empty(admin_client, acme_key):
    url = f"/admin/accounts/apikey/{acme_key.pk}/change/"
    page = admin_client.get(url).text
    assert SECRET not in page
    assert "…" + SECRET[-4:] in page
    admin_client.post(url, key_form(acme_key.team, secret="", label="Renamed"))
    acme_key.refresh_from_db()
    assert acme_key.label == "Renamed"
    assert acme_key.decrypt_secret() == SECRET


def test_replacing_the_secret(admin_client, acme_key):
    url = f"/admin/accounts/apikey/{acme_key.pk}/change/"
    admin_client.post(url, key_form(acme_key.team, secret="sk-the-new-one-WXYZ"))
    acme_key.refresh_from_db()
    assert acme_key.decrypt_secret() == "sk-the-new-one-WXYZ"
    assert acme_key.last_four == "WXYZ"


def test_changing_the_base_url_needs_the_secret_again(admin_client, acme_key):
    url = f"/admin/accounts/apikey/{acme_key.pk}/change/"
    form = key_form(acme_key.team, secret="", base_url_preset="https://token-plan-sgp.xiaomimimo.com")
    response = admin_client.post(url, form)
    assert "Enter the key again" in response.text
    acme_key.refresh_from_db()
    assert acme_key.base_url == "https://api.xiaomimimo.com"


def test_custom_base_url_on_an_internal_host_is_refused(admin_client, acme):
    response = admin_client.post(
        ADD_URL, key_form(acme, base_url_preset="custom", custom_base_url="https://169.254.169.254")
    )
    assert "private, loopback or link-local" in response.text
    assert not ApiKey.objects.exists()


def test_token_plan_key_is_saved_with_a_warning(admin_client, acme):
    response = admin_client.post(ADD_URL, key_form(acme, secret="tp-token-plan-key-1234"), follow=True)
    assert ApiKey.objects.get().kind == ApiKey.Kind.TOKEN_PLAN
    assert "coding tools" in response.text


def test_list_shows_label_team_kind_last_four_created_revoked(admin_client, acme_key):
    page = admin_client.get("/admin/accounts/apikey/").text
    for text in ("Acme production", "Acme", "pay-as-you-go", "…" + SECRET[-4:], "Created", "Revoked"):
        assert text in page
    assert SECRET not in page


def test_revoke_action(admin_client, acme_key):
    response = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke", "_selected_action": [acme_key.pk]},
        follow=True,
    )
    assert "1 key revoked." in response.text
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is not None


def test_team_admin_who_is_not_staff_cannot_open_the_admin(client, alice):
    client.force_login(alice)
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_key_appears_on_no_page_and_in_no_log_line_over_its_whole_life(admin_client, acme, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level
    pages = []

    def visit(url):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        pages.append((url, response.text))

    pages.append(("add", admin_client.post(ADD_URL, key_form(acme), follow=True).text))
    key = ApiKey.objects.get()
    change = f"/admin/accounts/apikey/{key.pk}/change/"
    for url in (
        "/home/",
        "/accounts/preferences/",
        "/admin/",
        "/admin/accounts/",
        "/admin/accounts/apikey/",
        "/admin/accounts/apikey/?q=Production",
        change,
        f"/admin/accounts/apikey/{key.pk}/history/",
        f"/admin/accounts/team/{acme.pk}/change/",
        "/admin/accounts/team/",
        "/admin/accounts/membership/",
        "/admin/accounts/user/",
        "/admin/autocomplete/?app_label=accounts&model_name=apikey&field_name=team&term=Acme",
    ):
        visit(url)
    replaced = "sk-replacement-secret-9876"
    pages.append(("replace", admin_client.post(change, key_form(acme, secret=replaced), follow=True).text))
    pages.append(("bad replace", admin_client.post(change, key_form(acme, secret=replaced, label="")).text))
    pages.append(
        ("revoke", admin_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True).text)
    )
    call_command("reencrypt_keys", stdout=open("/dev/null", "w"))
    visit(f"/admin/accounts/apikey/{key.pk}/delete/")
    pages.append(("delete", admin_client.post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"}, follow=True).text))

    for secret in (SECRET, replaced):
        for url, text in pages:
            assert secret not in text, url
            assert secret[:-4] not in text, url
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in str(record.args) and secret not in repr(record.__dict__)
