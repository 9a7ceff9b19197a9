"""Fault: four 50 MB attachments uploaded at once by a signed-in member.

All four are stored whole, and the daphne process's peak memory grows by far less than one of
them: an accepted body goes from Twisted's temporary file to Django a piece at a time, as Django
reads it (mimoweb/body_limits.py), and from Django's multipart parser to a temporary file and the
store. Before, daphne put every byte of each body on the application's queue at once, and the peak
grew by the four bodies together (about 200 MB). README's "Faults" section has the figures.

The files are PDFs of one page of text padded by a stream no page uses: a document is the kind of
file taken at this size (audio and video are bounded by what MiMo takes inline, 50 MB once encoded).
"""

import asyncio
import hashlib
import json
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from chat.models import Attachment, Conversation
from tests.faults.servers import Server, close_the_orm_connection, report, session_cookie, wait_until_listening
from tests.faults.test_large_bodies import memory

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024
UPLOAD_BYTES = 50 * MiB
UPLOADS = 4
# Less than one upload: the four bodies held at once would be 200 MB.
GROWTH_ALLOWED = 40 * MiB
CSRF_TOKEN = "x" * 32


def padded_pdf(path, size, text):
    """A PDF of one page saying `text`, padded to about `size` bytes by a stream no page uses,
    written as it is made; returns its sha256."""
    page = b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text.encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(page), page),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    digest = hashlib.sha256()
    with open(path, "wb") as out:

        def write(data):
            out.write(data)
            digest.update(data)

        write(b"%PDF-1.4\n")
        offsets = []
        for number, body in enumerate(objects, 1):
            offsets.append(out.tell())
            write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
        offsets.append(out.tell())
        write(b"%d 0 obj\n<< /Length %d >>\nstream\n" % (len(objects) + 1, size))
        block = text.encode().ljust(MiB, b" ")
        for start in range(0, size, MiB):
            write(block[: min(MiB, size - start)])
        write(b"\nendstream\nendobj\n")
        xref = out.tell()
        write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
        write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, xref))
    return digest.hexdigest()


@pytest.fixture
async def mimoweb(transactional_db, tmp_path):
    store = tmp_path / "attachments"
    server = Server(
        "mimoweb.asgi:application",
        tmp_path / "mimoweb.log",
        env={
            "MIMOWEB_ATTACHMENT_MAX_BYTES": str(UPLOAD_BYTES + MiB),
            "MIMOWEB_ATTACHMENT_STORAGE_OPTIONS": json.dumps({"location": str(store)}),
        },
    )
    server.store = store
    server.start()
    wait_until_listening(server.port)
    yield server
    server.stop()
    await close_the_orm_connection()


async def upload(client, conversation, path):
    with open(path, "rb") as file:
        response = await client.post(
            f"/chats/{conversation.pk}/attachments/", files={"file": (path.name, file, "application/pdf")}, timeout=300
        )
    assert response.status_code == 201, response.text[:500]
    return response.json()["attachments"][0]


async def test_four_50_mb_uploads_at_once_are_stored_and_the_peak_memory_grows_by_less_than_one(
    mimoweb, bob, acme, tmp_path, capsys
):
    conversation = await Conversation.objects.acreate(owner=bob, team=acme)
    cookie = await database_sync_to_async(session_cookie)(bob)
    files = [tmp_path / f"report-{n}.pdf" for n in range(UPLOADS)]
    sha256s = [padded_pdf(path, UPLOAD_BYTES, f"Report number {n}") for n, path in enumerate(files)]
    warm_up = tmp_path / "warm-up.pdf"
    padded_pdf(warm_up, 3 * MiB, "Warming up")
    headers = {"Cookie": f"{cookie}; csrftoken={CSRF_TOKEN}", "X-CSRFToken": CSRF_TOKEN}
    async with httpx.AsyncClient(base_url=mimoweb.url, headers=headers) as client:
        # What the first upload loads (Django's multipart parser, pypdf) is not growth.
        await upload(client, conversation, warm_up)
        before = memory(mimoweb.process.pid)
        started = time.monotonic()
        chips = await asyncio.gather(*(upload(client, conversation, path) for path in files))
        seconds = time.monotonic() - started
    after = memory(mimoweb.process.pid)

    for chip, sha256 in zip(chips, sha256s):
        attachment = await Attachment.objects.aget(pk=chip["id"])
        assert attachment.sha256 == sha256 and attachment.size > UPLOAD_BYTES
        with open(mimoweb.store / attachment.file_name, "rb") as stored:
            assert hashlib.file_digest(stored, "sha256").hexdigest() == sha256
    growth = {name: after[name] - before[name] for name in after}
    report(
        capsys,
        f"{UPLOADS} uploads of {UPLOAD_BYTES // MiB} MiB at once",
        [
            f"{seconds:.1f} s",
            f"resident {before['VmRSS'] / MiB:.0f} → {after['VmRSS'] / MiB:.0f} MiB",
            f"peak {before['VmHWM'] / MiB:.0f} → {after['VmHWM'] / MiB:.0f} MiB",
        ],
    )
    assert growth["VmHWM"] < GROWTH_ALLOWED, growth
    assert growth["VmRSS"] < GROWTH_ALLOWED, growth
