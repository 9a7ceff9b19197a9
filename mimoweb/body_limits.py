"""A request body over its route's limit is refused (413) as it arrives, before anything keeps it.

daphne keeps a request's whole body before the application sees a byte of it: Twisted writes
the body to a temporary file until the last byte is in, then daphne puts all of it, in 8 KB
pieces, on the application's queue at once. Two anonymous 300 MB POSTs took a daphne process
from 89 MB to 706 MB, and it kept that memory. An ASGI middleware is called only after that, so
the limit is applied in daphne's request itself, where the bytes come in: a Content-Length over
the limit is refused as soon as the headers are read, and a body without one (chunked) when its
count passes the limit. The limits are settings (MIMOWEB_BODY_LIMIT, MIMOWEB_BODY_LIMITS by route).

`install()` (called by mimoweb/asgi.py, which daphne imports before it serves, whether started
as `daphne`, by `manage.py runserver` or by the tests) makes daphne build these requests.
"""

import logging
import re
from urllib.parse import unquote

from daphne import http_protocol
from django.conf import settings
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

# After a refusal the rest of the body is read and dropped, so that a client sending it all
# before it reads (browsers, most HTTP libraries) gets the 413 rather than a reset connection;
# a client still sending after this long is cut off (nginx's lingering_time).
LINGER_SECONDS = 30


def body_limit(path):
    """The most a request body to this path may hold, in bytes."""
    for pattern, limit in settings.MIMOWEB_BODY_LIMITS.items():
        if re.fullmatch(pattern, path):
            return limit
    return settings.MIMOWEB_BODY_LIMIT


def request_path(target):
    """The path of a request line's target (`/chats/import/?x=1`, or `http://host/chats/import/`), as Django routes it."""
    path = target.decode("latin-1").split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return unquote(path)


def refusal(headers, cookies, limit):
    """The 413 response's content type and body: a short page for a browser, a line of text otherwise, in the user's language."""
    request = HttpRequest()
    request.COOKIES = {name.decode("latin-1"): value.decode("latin-1") for name, value in cookies.items()}
    request.META["HTTP_ACCEPT_LANGUAGE"] = (headers.getRawHeaders(b"Accept-Language") or [b""])[0].decode("latin-1")
    with translation.override(translation.get_language_from_request(request)):
        message = _("This request is too large: it may hold at most %(limit)s.") % {"limit": filesizeformat(limit)}
        if b"text/html" in b",".join(headers.getRawHeaders(b"Accept") or []):
            page = render_to_string("413.html", {"message": message})
            return b"text/html; charset=utf-8", page.encode()
        return b"text/plain; charset=utf-8", message.encode() + b"\n"


class BodyLimitedRequest(http_protocol.WebRequest):
    """daphne's request, refusing a body over its route's limit as it arrives (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        # daphne hands the application the raw body; Twisted would also parse a form's body
        # into request.args for nobody, reading all of it into memory to do so.
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)
        self.body_limit = settings.MIMOWEB_BODY_LIMIT
        self.body_size = 0
        self.refused = False
        self.linger = None

    def gotLength(self, length):
        """Called once the headers are in, with the Content-Length (None for a chunked body)."""
        super().gotLength(length)
        # Twisted keeps the request line's target on the channel until the body is in (a private
        # name: tests/test_body_limits.py fails if a Twisted release changes it).
        self.body_limit = body_limit(request_path(self.channel._path))
        if length is not None and length > self.body_limit:
            self.refuse_body()

    def handleContentChunk(self, data):
        self.body_size += len(data)
        if not self.refused and self.body_size > self.body_limit:
            self.refuse_body()
        if not self.refused:
            super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        """The body has ended: a refused request goes no further, and its connection closes as the 413 said."""
        if self.refused:
            self.channel.loseConnection()
        else:
            super().requestReceived(command, path, version)

    def refuse_body(self):
        self.refused = True
        logger.warning(
            "Refused a request body over %d bytes: %r from %s",
            self.body_limit,
            request_path(self.channel._path),
            getattr(self.client, "host", "?"),
        )
        # Written straight to the connection: Twisted's response machinery needs the request line,
        # which it records only once the whole body is in.
        content_type, body = refusal(self.requestHeaders, self.received_cookies, self.body_limit)
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (content_type, len(body), body)
        )
        # Twisted answers "Expect: 100-continue" after gotLength; the client must not be told to go on.
        self.requestHeaders.removeHeader(b"Expect")
        self.content.close()
        self.linger = self.channel.callLater(LINGER_SECONDS, self.channel.transport.abortConnection)

    def connectionLost(self, reason):
        if self.linger is not None and self.linger.active():
            self.linger.cancel()
        super().connectionLost(reason)


def install():
    """daphne builds every HTTP request from this module-level name when a connection opens."""
    http_protocol.WebRequest = BodyLimitedRequest
