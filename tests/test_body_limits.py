"""A body over its route's limit is refused with 413 as it arrives, and a large one within it reaches
the application a piece at a time as it reads it (mimoweb/body_limits.py).

The refusal happens inside daphne, so most of these run against a real daphne started as the
container starts it (`daphne mimoweb.asgi:application`), on its own data folder.
"""

import asyncio
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import daphne.server
import httpx
import pytest
from twisted.web.http_headers import Headers

from chat.transfer import MAX_IMPORT_ARCHIVE_BYTES, MAX_IMPORT_BYTES
from mimoweb.body_limits import BODY_PIECE, BodyQueue, ReadElsewhere, body_limit, refusal, request_path

BASE_DIR = Path(__file__).resolve().parent.parent
DAPHNE = Path(sys.executable).parent / "daphne"
MiB = 1024 * 1024


# --- The limits -----------------------------------------------------------------------------


def test_the_import_takes_a_whole_export_and_its_form():
    assert body_limit("/chats/import/") >= max(MAX_IMPORT_BYTES, MAX_IMPORT_ARCHIVE_BYTES) + 64 * 1024


def test_every_other_route_takes_a_few_megabytes():
    for path in ["/accounts/sign-in/", "/chats/import/x/", "/chats/import", "/admin/login/", "/"]:
        assert body_limit(path) == 4 * MiB


@pytest.mark.parametrize(
    "target, path",
    [
        (b"/chats/import/", "/chats/import/"),
        (b"/chats/import/?next=/x", "/chats/import/"),
        (b"/chats/%69mport/", "/chats/import/"),
        (b"http://localhost:8000/chats/import/", "/chats/import/"),
        (b"http://localhost", "/"),
    ],
)
def test_the_route_is_the_path_django_will_see(target, path):
    assert request_path(target) == path


def headers(**values):
    result = Headers()
    for name, value in values.items():
        result.addRawHeader(name.replace("_", "-").encode(), value.encode())
    return result


def test_the_refusal_is_a_page_for_a_browser_and_a_line_for_other_clients():
    content_type, page = refusal(headers(Accept="text/html,*/*"), {}, 4 * MiB)
    assert content_type == b"text/html; charset=utf-8"
    assert b"<h1>Request too large</h1>" in page
    content_type, text = refusal(headers(), {}, 4 * MiB)
    assert content_type == b"text/plain; charset=utf-8"
    assert text == "This request is too large: it may hold at most 4.0\xa0MB.\n".encode()


def test_the_refusal_speaks_the_language_of_the_cookie_or_the_browser():
    _, text = refusal(headers(Accept_Language="zh-CN,zh;q=0.9"), {}, 4 * MiB)
    assert "请求过大" in text.decode()
    _, text = refusal(headers(Accept_Language="en"), {b"django_language": b"zh-hant"}, 4 * MiB)
    assert "請求過大" in text.decode()


# --- A large body, a piece at a time --------------------------------------------------------


def body_file(size):
    """A body as Twisted keeps it once it is all in: in a temporary file, read from the start."""
    file = tempfile.TemporaryFile()
    file.write(os.urandom(size))
    file.seek(0)
    return file


async def test_a_large_body_reaches_the_application_a_piece_at_a_time_as_it_asks():
    size = 2 * BODY_PIECE + 1000
    with body_file(size) as file:
        expected = file.read()
        file.seek(0)
        queue = BodyQueue(file)
        # What daphne puts for the request: it read nothing from ReadElsewhere.
        queue.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        messages = [await queue.get()]
        assert file.tell() == BODY_PIECE  # the rest is still only in the file
        while messages[-1]["more_body"]:
            messages.append(await queue.get())
    assert [len(message["body"]) for message in messages] == [BODY_PIECE, BODY_PIECE, 1000]
    assert {message["type"] for message in messages} == {"http.request"}
    assert b"".join(message["body"] for message in messages) == expected
    # After the body, the application waits for the client's disconnect (Django does), and gets it.
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait({"type": "http.disconnect"})
    assert await waiting == {"type": "http.disconnect"}


async def test_a_client_leaving_while_the_application_reads_a_large_body_is_told_at_once():
    with body_file(3 * BODY_PIECE) as file:
        queue = BodyQueue(file)
        assert (await queue.get())["more_body"]
        queue.put_nowait({"type": "http.disconnect"})
        assert await queue.get() == {"type": "http.disconnect"}


def test_daphne_reads_nothing_of_a_kept_body_and_twisted_closing_it_closes_the_file():
    file = body_file(3 * BODY_PIECE)
    content = ReadElsewhere(file)
    content.seek(0, 0)
    assert content.read(8192) == b"" and not content.closed
    content.close()
    assert file.closed and content.closed


def test_daphne_still_creates_applications_as_body_limits_copies_it():
    """mimoweb.body_limits.create_application is daphne 4.2.3's with another queue: a release that changes
    the original must be read and the copy brought up to date (then this hash)."""
    source = Path(daphne.server.__file__).read_text()
    original = re.search(r"\n    def create_application\(.*?(?=\n    (?:async )?def )", source, re.DOTALL).group()
    assert hashlib.sha256(original.encode()).hexdigest() == "41fae2d809a0439a6f95e12659cd565fa6987195540014bfdab26c70004a9f9d"


# --- daphne serving mimoweb -------------------------------------------------------------------


def start_daphne(data_dir, env=None):
    """`daphne mimoweb.asgi:application` on a free port, as the container runs it, logging to daphne.log in
    `data_dir`, with `env` added to its environment; returns (process, url)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(data_dir),
        "MIMOWEB_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "mimoweb.settings",
    } | (env or {})
    log = data_dir / "daphne.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [DAPHNE, "--bind", "127.0.0.1", "--port", "0", "mimoweb.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if match := re.search(r"Listening on TCP address 127\.0\.0\.1:(\d+)", log.read_text()):
            return process, f"http://127.0.0.1:{match.group(1)}"
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"daphne did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def daphne_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("daphne")


@pytest.fixture(scope="module")
def daphne_url(daphne_dir):
    process, url = start_daphne(daphne_dir)
    yield url
    process.terminate()
    process.wait(timeout=10)


def zeros(size, piece=MiB):
    """A body of `size` bytes, made as it is sent."""
    block = bytes(piece)
    for start in range(0, size, piece):
        yield block[: min(piece, size - start)]


def raw_request(url, head):
    """Sends a request head (no body) and returns what the server answers before closing."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head)
        return connection.recv(4096)


def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_sent(daphne_url):
    head = b"POST /accounts/sign-in/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
    answer = raw_request(daphne_url, head)
    assert answer.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"100 Continue" not in answer


def test_a_chunked_body_is_refused_once_it_passes_the_limit(daphne_url):
    response = httpx.post(daphne_url + "/accounts/sign-in/", content=zeros(5 * MiB))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"


def test_a_body_within_the_limit_reaches_django(daphne_url):
    # Django's own answer: the anonymous POST has no CSRF cookie.
    assert httpx.post(daphne_url + "/accounts/sign-in/", content=bytes(3 * MiB)).status_code == 403
    assert httpx.post(daphne_url + "/accounts/sign-in/", content=zeros(3 * MiB)).status_code == 403
    assert httpx.post(daphne_url + "/chats/import/", content=bytes(MAX_IMPORT_BYTES)).status_code == 403


def test_the_server_keeps_serving_after_a_refusal_and_logs_it_in_one_line(daphne_url, daphne_dir):
    limit = body_limit("/chats/import/")
    with httpx.Client() as client:
        assert client.post(daphne_url + "/chats/import/?x=1", content=bytes(limit + MiB)).status_code == 413
        assert client.get(daphne_url + "/healthz").status_code == 200
    log = (daphne_dir / "daphne.log").read_text()
    assert f"Refused a request body over {limit} bytes: '/chats/import/' from 127.0.0.1\n" in log
