"""The shared cast and settings for every test.

alice is team admin of Acme, bob a member of Acme, charlie team admin of
Globex (another team), and root a superuser in no team.
"""

import time

import httpx
import pytest
from channels.layers import channel_layers
from daphne.testing import DaphneProcess
from django.conf import settings
from django.core.management.base import CommandError
from django.test import TransactionTestCase
from django.utils import translation

from accounts.models import ApiKey, Membership, Team, User
from chat.mimo.fake import FakeMimo

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
    # Threads the async code uses must not keep connections past a test (PostgreSQL
    # refuses to drop a test database that a connection still uses).
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The fake MiMo server listens on loopback.
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture(scope="session", autouse=True)
def flush_retried_while_a_live_server_still_writes():
    """A transactional test ends with a flush while the live server may still be finishing what the
    test's last step started (a refused send, a socket closing). On PostgreSQL the TRUNCATE can then
    deadlock with the server's transaction and be the one cancelled, leaving the test's rows for the
    next test; the server's transaction ends on its own, so the flush is tried again."""
    flush = TransactionTestCase._fixture_teardown

    def flush_until_it_succeeds(self):
        for attempt in range(4):
            try:
                return flush(self)
            except CommandError:
                if attempt == 3:
                    raise
                time.sleep(0.5)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", flush_until_it_succeeds)
        yield


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets its own channel layer.

    Every async test runs in its own event loop, and the Redis layer binds its
    locks to the loop that first waits on them: a layer kept from an earlier
    test fails at random with "bound to a different event loop".
    """
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def default_language_after_each_test():
    """A request of a user with a saved language activates it in this thread (as LocaleMiddleware does), and
    nothing deactivates it after the response: the next test must not read its strings in that language."""
    yield
    translation.activate(settings.LANGUAGE_CODE)


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


# --- The fake MiMo server, over real HTTP on loopback -------------------------------

# A model only the fake's /v1/models knows, for discovery tests.
NEW_MODEL = "mimo-v9-preview"


def fake_application():
    """Module-level, so DaphneProcess can pickle it into the server process."""
    return FakeMimo(tokens_per_second=0, keepalive_interval=0.2, extra_models=[NEW_MODEL])


@pytest.fixture(scope="session")
def fake_url():
    process = DaphneProcess("127.0.0.1", fake_application)
    process.start()
    if not process.ready.wait(timeout=30):
        process.terminate()
        raise RuntimeError("the fake MiMo server did not start")
    yield f"http://127.0.0.1:{process.port.value}"
    process.terminate()
    process.join(timeout=10)


class FakeRecords:
    """The requests the fake server received, read over its /_fake/requests."""

    def __init__(self, url: str) -> None:
        self.url = url + "/_fake/requests"

    def reset(self) -> None:
        httpx.delete(self.url).raise_for_status()

    def all(self) -> list[dict]:
        return httpx.get(self.url).json()


@pytest.fixture
def fake_records(fake_url):
    records = FakeRecords(fake_url)
    records.reset()
    return records


