"""The shared cast and settings for every test.

alice is team admin of Acme, bob a member of Acme, charlie team admin of
Globex (another team), and root a superuser in no team.
"""

import pytest
from django.conf import settings

from accounts.models import ApiKey, Membership, Team, User

PASSWORD = "correct horse battery staple"
# What a pay-as-you-go key looks like; its tail is what may be shown.
SECRET = "sk-live-Qw3rTy9UiOp4AsDfGh7JkL2zXcVbNm0"


@pytest.fixture(scope="session", autouse=True)
def test_settings():
    """Changed on the settings object itself, before any live server forks, so it sees them too."""
    # No collectstatic before tests: serve files as they lie in static/.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    # Hashing on purpose slowly is the point in production and a waste in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def acme(db):
    return Team.objects.create(name="Acme")


@pytest.fixture
def globex(db):
    return Team.objects.create(name="Globex")


def make_user(username, team=None, role=Membership.Role.MEMBER, **extra):
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)
    if team:
        Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def alice(acme):
    return make_user("alice", acme, Membership.Role.ADMIN)


@pytest.fixture
def bob(acme):
    return make_user("bob", acme)


@pytest.fixture
def charlie(globex):
    return make_user("charlie", globex, Membership.Role.ADMIN)


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def acme_key(acme, alice):
    key = ApiKey(team=acme, label="Acme production", created_by=alice)
    key.set_secret(SECRET)
    key.full_clean()
    key.save()
    return key
