import ast
import inspect

import pytest

from chat.mimo import errors
from chat.mimo.errors import ErrorKind, error_from_response, error_from_stream_payload, parse_error_body

PASSBACK_BODY = (
    b'{"error":{"code":"400","message":"Param Incorrect","param":"The reasoning_content in the thinking mode '
    b'must be passed back to the API.","type":""}}'
)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, PASSBACK_BODY, ErrorKind.BAD_REQUEST),
        (400, b'{"error":{"code":"400","message":"Param Incorrect","type":"Bad Request"}}', ErrorKind.BAD_REQUEST),
        (
            401,
            b'{"error":{"message":"Invalid API Key","param":"Please provide valid API Key","code":"401","type":"invalid_key"}}',
            ErrorKind.AUTH,
        ),
        (
            402,
            b'{"type":"server_error","message":"Upstream request failed: Insufficient account funds"}',
            ErrorKind.INSUFFICIENT_BALANCE,
        ),
        (403, b'{"error":{"code":"403","message":"Illegal access","type":"illegal_access"}}', ErrorKind.FORBIDDEN),
        (404, b'{"error":{"code":"404","message":"Not Found"}}', ErrorKind.NOT_FOUND),
        (404, b'{"error":{"code":"404","message":"model does not support image input"}}', ErrorKind.UNSUPPORTED_INPUT),
        (
            421,
            b'{"error":{"code":"421","message":"Moderation Block","param":"high risk","type":"content_filter"}}',
            ErrorKind.MODERATION,
        ),
        (400, b'{"error":{"code":"421","message":"Moderation Block","type":"content_filter"}}', ErrorKind.MODERATION),
        (429, b'{"error":{"code":"429","message":"Too many requests","type":"limitation"}}', ErrorKind.RATE_LIMITED),
        (500, b"", ErrorKind.SERVER_ERROR),
        (502, b"<html>Bad gateway</html>", ErrorKind.SERVER_ERROR),
        (503, b"", ErrorKind.OVERLOADED),
        (529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', ErrorKind.OVERLOADED),
        (408, b"", ErrorKind.TIMEOUT),
        (413, b"", ErrorKind.BAD_REQUEST),
        (301, b"", ErrorKind.NOT_FOUND),
    ],
)
def test_every_documented_status_maps_to_its_kind(status, body, kind):
    assert error_from_response(status, body).kind is kind


def test_passback_error_detail_says_what_was_missing():
    assert "reasoning_content" in error_from_response(400, PASSBACK_BODY).detail


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":{"code":"429","message":"Too many requests","type":"limitation"}}',
        b'data:{"error":{"code":"429","message":"Too many requests","type":"limitation"}}',
        b'data: {"error":{"code":"429","message":"Too many requests","type":"limitation"}}\n\n',
        b'{"type":"error","error":{"type":"rate_limit_error","message":"Too many requests"}}',
    ],
)
def test_every_error_body_shape_gives_its_message(body):
    assert parse_error_body(body)[1].startswith("Too many requests")


def test_a_body_that_is_not_json_becomes_the_detail():
    assert parse_error_body(b"upstream connect error") == ("", "upstream connect error")


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, ErrorKind.OVERLOADED),
        ({"type": "error", "error": {"type": "api_error", "message": "boom"}}, ErrorKind.SERVER_ERROR),
        ({"error": {"code": "500", "message": "Internal Server Error", "type": ""}}, ErrorKind.SERVER_ERROR),
        ({"error": {"code": "503", "message": "busy", "type": ""}}, ErrorKind.OVERLOADED),
        ({"error": {"code": "421", "message": "Moderation Block", "type": "content_filter"}}, ErrorKind.MODERATION),
        ({"error": "something odd"}, ErrorKind.SERVER_ERROR),
    ],
)
def test_error_events_inside_a_stream_map_like_statuses(payload, kind):
    assert error_from_stream_payload(payload).kind is kind


def test_every_kind_has_a_calm_sentence():
    for kind in ErrorKind:
        assert kind.message.endswith(".")
        assert "Error" not in kind.message
        assert "HTTP" not in kind.message


def test_messages_are_gettext_noop_literals_for_makemessages():
    tree = ast.parse(inspect.getsource(errors))
    messages = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_MESSAGES"
    )
    for value in messages.values:
        assert isinstance(value, ast.Call) and value.func.id == "gettext_noop"
        assert isinstance(value.args[0], ast.Constant) and isinstance(value.args[0].value, str)
    assert len(messages.values) == len(ErrorKind)


def test_only_transient_kinds_are_worth_retrying():
    assert {kind for kind in ErrorKind if kind.retryable} == {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.OVERLOADED,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.STREAM_CUT,
        ErrorKind.INVALID_RESPONSE,
    }
