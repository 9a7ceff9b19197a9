"""What attaching costs the server: a 10 MB photo and a 50-page PDF, uploaded and then sent.

In-process, on the embedded defaults (SQLite in a temporary folder, the filesystem store),
through Django's test client as the composer posts them (multipart, one file a request):

- upload: the POST to /chats/<id>/attachments/ (multipart parsing, the file proven, a photo's
  metadata stripped and scaled to MiMo's pixel limit, a PDF's text extracted, stored, the chip);
- send: what a send then does with the stored file before any byte goes to MiMo: the turn
  rebuilt from its row (the file read and base64-encoded) and the request body in JSON.

Then four 50 MB uploads (PDFs of a page of text, padded) sent at once to a `daphne` process
started as the container starts it, on the same data folder: the time for the four, and the
process's resident memory and peak (VmHWM) before and after, as the fault test
tests/faults/test_large_uploads.py measures them.

    .venv/bin/python bench/attachments_bench.py [--runs 5]
"""

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def photo(megabytes):
    """A photo-like JPEG of about this many megabytes: noise compresses as badly as a real photo's detail."""
    from PIL import Image

    width, height = 4000, 3000
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    for quality in (95, 90, 85, 80, 70):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        if out.tell() <= megabytes * 1024 * 1024:
            break
    return out.getvalue()


def pdf(pages, lines_per_page=40):
    """A PDF of this many pages of text (Helvetica, a line of words per line), with a correct xref table."""
    words = "budget invoice travel meeting schedule report contract design review server network".split()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for page in range(pages):
        lines = " ".join(
            f"({' '.join(words[(page + line + n) % len(words)] for n in range(9))}) Tj 0 -16 Td" for line in range(lines_per_page)
        )
        stream = f"BT /F1 11 Tf 56 760 Td {lines} ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>"
            % len(objects)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % kid for kid in kids), pages)
    from tests.chat.test_attachments import pdf_of  # the tests' PDF writer (Django is set up by then)

    return pdf_of(objects)


def set_up_django(data_dir):
    os.environ["MIMOWEB_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimoweb.settings")
    import django

    django.setup()
    from django.core.management import call_command

    warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic: nothing to serve from there
    call_command("migrate", verbosity=0)


def four_large_uploads(data_dir, user, team):
    """Four 50 MB uploads at once to a daphne process: (seconds, its memory before, after)."""
    import httpx
    from django.conf import settings
    from django.test import Client

    from chat.models import Conversation
    from tests.faults.test_large_bodies import memory
    from tests.faults.test_large_uploads import CSRF_TOKEN, UPLOAD_BYTES, UPLOADS, padded_pdf, upload
    from tests.test_body_limits import start_daphne

    conversation = Conversation.objects.create(owner=user, team=team, model="mimo-v2.5")
    browser = Client()
    browser.force_login(user)
    session = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    files = [Path(data_dir) / f"report-{n}.pdf" for n in range(UPLOADS)]
    for n, path in enumerate(files):
        padded_pdf(path, UPLOAD_BYTES, f"Report number {n}")
    warm_up = Path(data_dir) / "warm-up.pdf"
    padded_pdf(warm_up, 3 * 1024 * 1024, "Warming up")
    process, url = start_daphne(Path(data_dir), {"MIMOWEB_ATTACHMENT_MAX_BYTES": str(UPLOAD_BYTES + 1024 * 1024)})

    async def send():
        headers = {"Cookie": f"{session}; csrftoken={CSRF_TOKEN}", "X-CSRFToken": CSRF_TOKEN}
        async with httpx.AsyncClient(base_url=url, headers=headers) as client:
            await upload(client, conversation, warm_up)  # what the first upload loads is not what uploads hold
            before = memory(process.pid)
            started = time.perf_counter()
            await asyncio.gather(*(upload(client, conversation, path) for path in files))
            return time.perf_counter() - started, before

    try:
        seconds, before = asyncio.run(send())
        return seconds, before, memory(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def p50_p95(times):
    times = sorted(times)
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="uploads and sends of each file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mimoweb-attachments-bench-") as data_dir:
        set_up_django(data_dir)
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.test import Client

        from accounts.models import Membership, Team, User
        from chat import attachments, mimo
        from chat.models import Attachment, Conversation

        user = User.objects.create_user("bench")
        team = Team.objects.create(name="Bench")
        Membership.objects.create(team=team, user=user)
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        files = {"a photo (4000×3000 JPEG, ≤ 10 MB)": ("photo.jpg", lambda: photo(10)), "a 50-page PDF": ("report.pdf", lambda: pdf(50))}
        print(f"Attaching, {args.runs} runs each (server time, SQLite and the filesystem store)")
        print(f"{'file':>32} {'size':>8} {'upload p50':>11} {'p95':>8} {'send p50':>9} {'p95':>8} {'sent as':>10}")
        for label, (name, make) in files.items():
            uploads, sends = [], []
            for _run in range(args.runs):
                conversation = Conversation.objects.create(owner=user, team=team, model="mimo-v2.5")
                content = make()  # new noise each time: the store would find the same photo there already
                started = time.perf_counter()
                response = client.post(f"/chats/{conversation.pk}/attachments/", {"file": SimpleUploadedFile(name, content)})
                uploads.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 201, response.content[:300]
                stored = list(Attachment.objects.filter(conversation=conversation))
                started = time.perf_counter()
                turn = attachments.user_turn("What does this say?", stored)
                request = mimo.ChatRequest(model="mimo-v2.5", turns=[turn])
                body = json.dumps(mimo.wire.build_body(request, mimo.ApiFormat.OPENAI))
                sends.append((time.perf_counter() - started) * 1000)
            upload_p50, upload_p95 = p50_p95(uploads)
            send_p50, send_p95 = p50_p95(sends)
            print(
                f"{label:>32} {len(content) / 1024 / 1024:>6.1f}MB {upload_p50:>9.0f}ms {upload_p95:>6.0f}ms "
                f"{send_p50:>7.0f}ms {send_p95:>6.0f}ms {len(body) / 1024 / 1024:>8.1f}MB"
            )
        seconds, before, after = four_large_uploads(data_dir, user, team)
        mb = 1024 * 1024
        print(
            f"Four 50 MB uploads at once to a daphne process: {seconds:.1f} s; resident {before['VmRSS'] / mb:.0f} → "
            f"{after['VmRSS'] / mb:.0f} MB, peak {before['VmHWM'] / mb:.0f} → {after['VmHWM'] / mb:.0f} MB"
        )


if __name__ == "__main__":
    main()
