"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright against real daphne.

The server runs in a second process, as Channels' ChannelsLiveServerTestCase
runs it, so every browser test uses `transactional_db`: its rows are committed
and the server process sees them.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from asgiref.sync import SyncToAsync
from channels.layers import channel_layers
from channels.testing.live import make_application
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.signals import request_started
from django.db import connections
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.test import Client
from playwright.sync_api import sync_playwright

from chat import generation

# Playwright's sync API keeps an event loop in this thread; the ORM calls the
# tests make between browser steps are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's
# hosts, which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone that plays a tone, granted without asking: Record (tests/browser/test_recording.py)
    # records from it. Only pages that ask for the microphone notice these.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def prepare_server_process():
    """Runs in the forked server process, before it serves.

    Each transactional test ends with a flush that recreates the content types
    under new ids: the server must not use ones it cached. And the fork copies
    whatever the test process had: channel layers bound to its event loops
    and its chat state, none of which belongs to the server; and asgiref's
    executor, whose thread did not cross the fork (work sent to it would wait
    forever).
    """
    request_started.connect(lambda **kwargs: ContentType.objects.clear_cache(), weak=False)
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
    channel_layers.backends.clear()
    generation._generations.clear()
    generation._watchers.clear()
    generation._tender = None


def start_live_server(django_db_blocker):
    """daphne serving the app in a forked process, as Channels' ChannelsLiveServerTestCase runs it.

    Forked after pytest-django switched the connections to the test database,
    so the server inherits that switch and needs no database setup of its own.
    """
    server = DaphneProcess(
        "localhost",
        partial(make_application, static_wrapper=ASGIStaticFilesHandler),
        kwargs={
            "websocket_max_message_size": settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE,
            "websocket_max_frame_size": settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE,
        },
        setup=prepare_server_process,
    )
    with django_db_blocker.unblock():  # the forked server inherits the unblocked database
        # An SQLite connection must not cross a fork: the child opens its own.
        connections.close_all()
        server.start()
    while not server.ready.wait(timeout=1):
        if not server.is_alive():
            raise RuntimeError("daphne did not start")
    return server


@pytest.fixture(scope="session")
def live_url(django_db_setup, django_db_blocker, test_settings):
    server = start_live_server(django_db_blocker)
    yield f"http://localhost:{server.port.value}"
    stop_live_server(server)


def stop_live_server(server):
    server.terminate()
    # A server whose exit waits on a thread that never ends must not keep the test run from ending.
    server.join(timeout=10)
    if server.is_alive():
        server.kill()
        server.join()


# Per module: Playwright's sync API keeps its event loop in this thread for as
# long as it runs, which would break async code in the test modules after it.
@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_url, transactional_db):
    """A fresh browser profile; fails the test if any page broke the Content-Security-Policy."""
    context = browser.new_context(base_url=live_url, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    yield page
    context.close()
    assert violations == [], violations


def sign_in_as(page, live_url, user):
    """Skip the sign-in form: give the browser a real session cookie for the user."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_url}])


def open_menu(page):
    """Open the header's menu (the navigation, languages and sign out live in it)."""
    page.locator("details.site-menu > summary").click()
    return page.locator("details.site-menu .menu-panel")
