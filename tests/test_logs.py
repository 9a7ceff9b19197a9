"""What a refused request and a server error write to the log (settings.LOGGING, mimoweb/logs.py)."""

import logging
from io import StringIO

import pytest
from django.http import HttpResponseServerError
from django.test import Client
from django.utils.log import log_response

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def console():
    """What the configured console handler writes, as the operator's log would show it."""
    handler = logging.getHandlerByName("console")
    stream = StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def lines(stream):
    return stream.getvalue().splitlines()


def test_a_permission_denied_is_one_line(client, bob, console):
    client.force_login(bob)  # a plain member, not a reviewer
    assert client.get("/review/").status_code == 403
    assert lines(console) == ["Forbidden (Permission denied): /review/"]


def test_a_csrf_failure_is_one_line(bob, console):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/sign-in/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 403
    assert len(lines(console)) == 1 and lines(console)[0].startswith("Forbidden (CSRF")


def test_a_suspicious_request_is_one_line(client, console):
    assert client.get("/", HTTP_HOST="evil.example.com").status_code == 400
    assert len(lines(console)) == 1 and "evil.example.com" in lines(console)[0]


def test_a_server_error_keeps_its_traceback(rf, console):
    try:
        raise RuntimeError("the disk is full")
    except RuntimeError as error:
        log_response("Internal Server Error: %s", "/x/", response=HttpResponseServerError(), request=rf.get("/x/"), exception=error)
    assert lines(console)[0] == "Internal Server Error: /x/"
    assert "Traceback (most recent call last):" in console.getvalue()
    assert "RuntimeError: the disk is full" in console.getvalue()


def test_other_loggers_keep_their_tracebacks(console):
    try:
        raise RuntimeError("a task died")
    except RuntimeError:
        logging.getLogger("chat.generation").exception("the progress task stopped", extra={"status_code": 403})
    assert "RuntimeError: a task died" in console.getvalue()
