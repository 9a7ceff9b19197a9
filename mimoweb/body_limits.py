"""A request body over its route's limit is refused (413) as it arrives, before anything keeps it.

daphne keeps a request's whole body before the application sees a byte of it: Twisted writes
the body to a temporary file until the last byte is in, then daphne puts all of it, in 8 KB
pieces, on the application's queue at once. Two anonymous 300 MB POSTs took a daphne process
from 89 MB to 706 MB, and it kept that memory. An ASGI middleware is called only after that, so
the limit is applied in daphne's request itself, where the bytes come in: a Content-Length over
the limit is refused as soon as the headers are read, and a body without one (chunked) when its
count passes the limit. The limits are settings (MIMOWEB_BODY_LIMIT, MIMOWEB_BODY_LIMITS by route).

An accepted body is handed to the application a piece at a time, as it reads it, rather than all
at once: four 50 MB uploads at once took a daphne process's peak from 128 to 326 MB (and it kept
it), and now add a few MB. Once Twisted has the whole body, the request keeps its file for itself
and daphne reads nothing from it (ReadElsewhere); the application's queue (BodyQueue) reads the
next piece from the file each time the application asks for one. daphne's Server builds that
queue, so `create_application` is daphne's with that one change.

`install()` (called by mimoweb/asgi.py, which daphne imports before it serves, whether started
as `daphne`, by `manage.py runserver` or by the tests) makes daphne build these requests and queues.
"""

import asyncio
import logging
import re
from functools import partial
from urllib.parse import unquote

from daphne import http_protocol, server
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
# What the application gets of a large body each time it asks (daphne's pieces are 8 KB). Django
# writes each piece to its spooled file from a worker thread, one handoff a piece: four 50 MB
# uploads at once took 5 s in 8 KB pieces, 1.5 s in 64 KB ones, 1.0 s in 256 KB ones and no less
# in larger ones, with the same memory (tests/faults/test_large_uploads.py).
BODY_PIECE = 256 * 1024


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
        """The body has ended: a refused request goes no further, and its connection closes as the 413 said.
        A body of more than a piece stays in its file for the application's BodyQueue (a websocket's
        handshake, which daphne hands on with what followed it, is left to daphne)."""
        if self.refused:
            self.channel.loseConnection()
            return
        if self.body_size > BODY_PIECE and not self.requestHeaders.hasHeader(b"Upgrade"):
            self.body_file = self.content
            self.content = ReadElsewhere(self.content)
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


class ReadElsewhere:
    """The request's content as daphne sees it once the body is kept for the application's BodyQueue:
    daphne reads nothing from it, and Twisted closing it when the request ends closes the body's file."""

    def __init__(self, file):
        self.file = file

    def read(self, size=-1):
        return b""

    def seek(self, offset, whence=0):
        return self.file.seek(offset, whence)

    def tell(self):
        return self.file.tell()

    def close(self):
        self.file.close()

    @property
    def closed(self):
        return self.file.closed


class BodyQueue(asyncio.Queue):
    """The application's queue for a request whose body waits in a file: each `http.request` message
    is the next piece of the file, read when the application asks, so that a body is never in memory
    whole. daphne's own `http.request` (empty: it read nothing) is dropped; its other messages (the
    client's disconnect, during the body or after it) reach the application first."""

    def __init__(self, file):
        super().__init__()
        self.file = file  # None once the application has had all of it

    def put_nowait(self, message):
        if message["type"] != "http.request":
            super().put_nowait(message)

    async def get(self):
        # A closed file is a request Twisted has ended: its disconnect is (or was) in the queue.
        if self.file is not None and self.empty() and not self.file.closed:
            piece = self.file.read(BODY_PIECE)
            more_body = len(piece) == BODY_PIECE
            if not more_body:
                self.file = None
            return {"type": "http.request", "body": piece, "more_body": more_body}
        return await super().get()


def create_application(self, protocol, scope):
    """daphne's Server.create_application (4.2.3), but for a BodyQueue where the request kept its body's
    file (tests/test_body_limits.py fails if a daphne release changes the original)."""
    assert "application_instance" not in self.connections[protocol]
    body_file = getattr(protocol, "body_file", None)
    input_queue = BodyQueue(body_file) if body_file is not None else asyncio.Queue()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = self.application(scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol))
    if protocol not in self.connections:
        return None
    self.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance, loop=asyncio.get_event_loop()
    )
    return input_queue


def install():
    """daphne builds every HTTP request from this module-level name when a connection opens, and
    every application's queue in its Server's create_application."""
    http_protocol.WebRequest = BodyLimitedRequest
    server.Server.create_application = create_application
