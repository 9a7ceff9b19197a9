from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command

from accounts.models import ApiKey, Membership


def welcome(**options):
    out = StringIO()
    call_command("welcome", stdout=out, **options)
    return out.getvalue()


def test_first_run_says_how_to_create_the_first_administrator(db):
    assert "manage.py createsuperuser" in welcome()


def test_says_nothing_once_someone_can_sign_in(alice):
    assert welcome() == ""


def test_demo_prepares_a_team_a_key_for_the_fake_server_and_a_sign_in(db, settings):
    settings.MIMOWEB_DEMO = True
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    out = welcome(fake_mimo_url="http://127.0.0.1:8765")
    password = out.split("with the password ")[1].split()[0]
    user = authenticate(username="demo", password=password)
    assert user is not None
    assert user.memberships.get().role == Membership.Role.ADMIN
    key = ApiKey.objects.get(team__name="Demo")
    assert key.base_url == "http://127.0.0.1:8765"
    assert key.decrypt_secret().startswith("sk-")


def test_demo_can_start_again_and_again(db, settings):
    settings.MIMOWEB_DEMO = True
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    welcome()
    out = welcome()
    assert ApiKey.objects.count() == 1
    password = out.split("with the password ")[1].split()[0]
    assert authenticate(username="demo", password=password) is not None
