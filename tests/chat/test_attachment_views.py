"""Uploading, removing and fetching attachments over HTTP: who may, and how the files are served."""

import warnings

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from accounts.models import Membership
from chat import transfer
from chat.models import Attachment, Conversation, Message, Share
from mimoweb.body_limits import body_limit
from tests.chat.test_attachments import attachment_storage, docx_bytes, encoded_media, image_bytes, stored_files  # noqa: F401
from tests.conftest import make_user

REASON = "Checking the Q3 answers for finance"


@pytest.fixture
def rita(acme):
    return make_user("rita", acme, Membership.Role.REVIEWER)


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


def post_files(client, conversation, *files):
    return client.post(f"/chats/{conversation.pk}/attachments/", {"file": list(files)})


def png(name="chart.png", size=(40, 30)):
    return SimpleUploadedFile(name, image_bytes(size), content_type="image/png")


@pytest.fixture
def sent(client, bob, conversation):
    """bob's image and document, sent with his message."""
    client.force_login(bob)
    response = post_files(client, conversation, png(), SimpleUploadedFile("plan.docx", docx_bytes()))
    client.logout()
    message = Message.objects.create(conversation=conversation, role="user", content="See these")
    Attachment.objects.update(message=message)
    image, document = (Attachment.objects.get(pk=chip["id"]) for chip in response.json()["attachments"])
    return image, document


def urls_of(image, document):
    return [f"/attachments/{image.pk}/", f"/attachments/{image.pk}/thumbnail/", f"/attachments/{document.pk}/"]


# --- Uploading ----------------------------------------------------------------------------


def test_owner_uploads_several_files_and_gets_a_chip_for_each(client, bob, conversation, attachment_storage):  # noqa: F811
    client.force_login(bob)
    response = post_files(client, conversation, png(), SimpleUploadedFile("notes.md", b"# Notes"))
    assert response.status_code == 201
    document, image = Attachment.objects.order_by("kind")
    assert (document.kind, image.kind) == ("document", "image")
    assert (image.owner, image.conversation, image.message) == (bob, conversation, None)
    chips = response.json()["attachments"]
    # Each chip's HTML is the page's own (chat/conversation.html#attachment-chip): the composer puts it in as is.
    html = [chip.pop("html") for chip in chips]
    assert f'name="attachments" value="{image.pk}"' in html[0] and f"/attachments/{image.pk}/thumbnail/" in html[0]
    assert f'name="attachments" value="{document.pk}"' in html[1] and 'data-tokens="20"' in html[1]
    assert chips == [
        {
            "id": str(image.pk),
            "name": "chart.png",
            "kind": "image",
            "content_type": "image/png",
            "size": image.size,
            "size_label": f"{image.size}\xa0bytes",
            "width": 40,
            "height": 30,
            "duration": None,
            "url": f"/attachments/{image.pk}/",
            "thumbnail_url": f"/attachments/{image.pk}/thumbnail/",
            "remove_url": f"/attachments/{image.pk}/remove/",
            "tokens": None,
        },
        {
            "id": str(document.pk),
            "name": "notes.md",
            "kind": "document",
            "content_type": "text/plain; charset=utf-8",
            "size": 7,
            "size_label": "7\xa0bytes",
            "width": None,
            "height": None,
            "duration": None,
            "url": f"/attachments/{document.pk}/",
            "thumbnail_url": None,
            "remove_url": f"/attachments/{document.pk}/remove/",
            "tokens": 20,  # about: its name, its text and the delimiters around it
        },
    ]
    assert document.text == "# Notes"
    assert len(stored_files(attachment_storage)) == 3  # the image, its thumbnail, the document


def test_one_refused_file_refuses_the_upload_and_nothing_is_stored(client, bob, conversation, attachment_storage):  # noqa: F811
    client.force_login(bob)
    bomb = SimpleUploadedFile("../../etc/passwd", b"root:x:0:0")
    response = post_files(client, conversation, png(), bomb, SimpleUploadedFile("empty.txt", b""))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [error["name"] for error in errors] == ["passwd", "empty.txt"]
    assert "is not a kind of file mimoweb takes" in errors[0]["message"]
    assert errors[1]["message"] == "empty.txt is empty."
    assert not Attachment.objects.exists()
    assert stored_files(attachment_storage) == []


def test_a_refusal_is_in_the_members_language(client, bob, conversation):
    bob.language = "zh-hans"
    bob.save()
    client.force_login(bob)
    response = post_files(client, conversation, SimpleUploadedFile("empty.txt", b""))
    assert response.json()["errors"][0]["message"] == "empty.txt 是空的。"


def test_a_recording_posted_as_recording_webm_becomes_an_mp3_with_its_duration(client, bob, conversation):
    """The composer's record button posts the browser's WebM blob to the same route as any file."""
    client.force_login(bob)
    response = post_files(client, conversation, SimpleUploadedFile("recording.webm", encoded_media("webm", "libopus", seconds=2)))
    assert response.status_code == 201
    [chip] = response.json()["attachments"]
    assert (chip["kind"], chip["name"], chip["content_type"]) == ("audio", "recording.mp3", "audio/mpeg")
    assert chip["duration"] == pytest.approx(2, abs=0.05)
    assert Attachment.objects.get().duration == chip["duration"]
    assert 'class="icon icon-audio"' in chip["html"] and '<span class="attachment-duration">0:02</span>' in chip["html"]


@pytest.mark.parametrize(
    ("seconds", "label"), [(None, ""), (0.2, "0:01"), (1.5, "0:02"), (59.4, "0:59"), (61, "1:01"), (3723.2, "1:02:03")]
)
def test_a_duration_reads_as_a_player_shows_it(seconds, label):
    assert Attachment(kind="audio", duration=seconds).duration_label == label


def quota(acme, bob, team_mib=None, own_mib=None):
    acme.storage_quota_mib = team_mib
    acme.save()
    Membership.objects.filter(team=acme, user=bob).update(storage_quota_mib=own_mib)


def test_an_upload_over_the_members_quota_is_refused_with_the_numbers_and_nothing_is_stored(
    client, bob, acme, conversation, attachment_storage  # noqa: F811
):
    quota(acme, bob, team_mib=1)
    client.force_login(bob)
    assert post_files(client, conversation, SimpleUploadedFile("a.txt", b"a" * 700 * 1024)).status_code == 201
    response = post_files(client, conversation, SimpleUploadedFile("b.txt", b"b" * 400 * 1024))
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "name": "",
                "message": "These files need 400.0\xa0KB, and only 324.0\xa0KB of your 1.0\xa0MB of storage in Acme is left "
                "(700.0\xa0KB used). Delete conversations with files you no longer need, or ask a team admin for more.",
            }
        ]
    }
    assert Attachment.objects.count() == 1 and len(stored_files(attachment_storage)) == 1


def test_a_file_over_the_teams_largest_file_is_refused_with_its_limit_and_nothing_is_stored(
    client, bob, acme, conversation, attachment_storage  # noqa: F811
):
    acme.largest_file_mib = 1
    acme.save()
    client.force_login(bob)
    response = post_files(client, conversation, SimpleUploadedFile("big.txt", b"b" * (1024 * 1024 + 1)))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"name": "big.txt", "message": "big.txt is larger than 1.0\xa0MB, the most a file may hold."}
    ]
    assert not Attachment.objects.exists() and not stored_files(attachment_storage)
    assert post_files(client, conversation, SimpleUploadedFile("fits.txt", b"f" * 1024 * 1024)).status_code == 201


def test_the_quota_counts_every_row_though_the_same_file_is_stored_once(client, bob, acme, conversation):
    quota(acme, bob, team_mib=1)
    client.force_login(bob)
    same = b"s" * 600 * 1024
    assert post_files(client, conversation, SimpleUploadedFile("a.txt", same)).status_code == 201
    assert post_files(client, conversation, SimpleUploadedFile("again.txt", same)).status_code == 400


def test_a_members_own_quota_replaces_the_teams(client, bob, alice, acme, conversation):
    quota(acme, bob, team_mib=1, own_mib=2)
    client.force_login(bob)
    assert post_files(client, conversation, SimpleUploadedFile("a.txt", b"a" * 1500 * 1024)).status_code == 201
    quota(acme, bob, team_mib=100, own_mib=1)
    assert post_files(client, conversation, SimpleUploadedFile("b.txt", b"b")).status_code == 400


def test_files_in_another_team_do_not_count(client, bob, acme, globex, conversation):
    quota(acme, bob, team_mib=1)
    elsewhere = Conversation.objects.create(owner=bob, team=globex)
    Attachment.objects.create(
        owner=bob, conversation=elsewhere, kind="document", name="x.txt", content_type="text/plain", size=5 * 1024 * 1024, sha256="e" * 64
    )
    client.force_login(bob)
    assert post_files(client, conversation, SimpleUploadedFile("a.txt", b"a" * 1000)).status_code == 201


def test_an_upload_without_files_is_refused_clearly(client, bob, conversation):
    client.force_login(bob)
    response = client.post(f"/chats/{conversation.pk}/attachments/")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"name": "", "message": "Choose a file to attach."}]}


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_only_the_owner_may_upload_to_a_conversation(client, who, alice, charlie, conversation):
    client.force_login({"alice": alice, "charlie": charlie}[who])
    assert post_files(client, conversation, png()).status_code == 404
    assert not Attachment.objects.exists()


def test_an_upload_needs_the_csrf_token(bob, conversation):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert post_files(client, conversation, png()).status_code == 403


def test_the_upload_route_takes_a_whole_file_in_its_body(settings):
    limit = body_limit("/chats/0b8f6a8e-1b7c-4a55-9b43-3c1f1c4d2e10/attachments/")
    assert limit > settings.MIMOWEB_ATTACHMENT_MAX_BYTES
    assert body_limit("/chats/0b8f6a8e-1b7c-4a55-9b43-3c1f1c4d2e10/attachments/x/") == settings.MIMOWEB_BODY_LIMIT


# --- Removing -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "delete"])
def test_owner_removes_an_unsent_attachment_and_its_file(
    client, bob, conversation, attachment_storage, method, django_capture_on_commit_callbacks  # noqa: F811
):
    client.force_login(bob)
    chip = post_files(client, conversation, png()).json()["attachments"][0]
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client, method)(chip["remove_url"])
    assert response.status_code == 200
    assert not Attachment.objects.exists()
    assert stored_files(attachment_storage) == []


def test_a_sent_attachment_cannot_be_removed(client, bob, sent):
    client.force_login(bob)
    response = client.post(f"/attachments/{sent[0].pk}/remove/")
    assert response.status_code == 409
    assert response.json() == {"errors": [{"name": "chart.png", "message": "This file was sent with its message, so it stays with it."}]}
    assert Attachment.objects.count() == 2


def test_nobody_else_removes_an_attachment(client, alice, charlie, bob, conversation):
    client.force_login(bob)
    chip = post_files(client, conversation, png()).json()["attachments"][0]
    for other in (alice, charlie):
        client.force_login(other)
        assert client.post(chip["remove_url"]).status_code == 404
    assert Attachment.objects.count() == 1


# --- Serving ------------------------------------------------------------------------------


def test_owner_gets_an_image_inline_with_its_stored_type_and_safe_headers(client, bob, sent):
    image, _ = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{image.pk}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="chart.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "private" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == stored_bytes_of(image)


def test_a_range_request_gets_those_bytes_alone_with_the_same_safe_headers(client, bob, sent):
    image, _ = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{image.pk}/", headers={"Range": "bytes=10-19"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 10-19/{image.size}"
    assert response["Content-Length"] == "10"
    assert b"".join(response.streaming_content) == stored_bytes_of(image)[10:20]
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="chart.png"'
    assert response["Accept-Ranges"] == "bytes"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("header", "piece"),
    [("bytes=20-", slice(20, None)), ("bytes=-7", slice(-7, None)), ("bytes=0-99999999", slice(0, None))],
)
def test_open_ended_and_suffix_ranges_are_cut_at_the_end(client, bob, sent, header, piece):
    image, _ = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{image.pk}/", headers={"Range": header})
    expected = stored_bytes_of(image)[piece]
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == expected
    assert response["Content-Range"].endswith(f"-{image.size - 1}/{image.size}")


def test_a_range_past_the_end_is_unsatisfiable(client, bob, sent):
    image, _ = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{image.pk}/", headers={"Range": f"bytes={image.size}-"})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{image.size}"


@pytest.mark.parametrize("headers", [{"Range": "bytes=0-1,5-6"}, {"Range": "lines=1-2"}, {"Range": "bytes=0-1", "If-Range": "x"}])
def test_several_ranges_another_unit_or_an_if_range_get_the_whole_file(client, bob, sent, headers):
    image, _ = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{image.pk}/", headers=headers)
    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert b"".join(response.streaming_content) == stored_bytes_of(image)


def test_a_range_request_opens_nothing_to_another_team(client, charlie, sent):
    image, _ = sent
    client.force_login(charlie)
    assert client.get(f"/attachments/{image.pk}/", headers={"Range": "bytes=0-9"}).status_code == 404


def test_under_asgi_a_file_is_sent_a_chunk_at_a_time_never_read_whole_first(client, bob, conversation):
    """Django's ASGI handler reads a plain iterator whole (with a warning) before sending; not this one."""
    client.force_login(bob)
    text = ("All work and no play. " * 20_000).encode()  # 440 KB: seven chunks of 64 KiB
    [chip] = post_files(client, conversation, SimpleUploadedFile("long.txt", text)).json()["attachments"]

    async def sent_as_asgi_sends(response):
        return [chunk async for chunk in response]

    for headers, expected in (({}, text), ({"Range": "bytes=100000-"}, text[100000:])):
        response = client.get(chip["url"], headers=headers)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            chunks = async_to_sync(sent_as_asgi_sends)(response)
        assert len(chunks) > 5 and b"".join(chunks) == expected
        assert response["Content-Length"] == str(len(expected))


def test_a_document_is_served_as_a_download(client, bob, sent):
    _, document = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{document.pk}/")
    assert response["Content-Disposition"] == 'attachment; filename="plan.docx"'
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_the_stored_type_is_served_whatever_the_name_says(client, bob, conversation):
    client.force_login(bob)
    chip = post_files(client, conversation, SimpleUploadedFile("page.html", b"<script>alert(1)</script>")).json()
    response = client.get(chip["attachments"][0]["url"])
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")


def test_an_image_has_a_small_webp_thumbnail_and_nothing_else_has_one(client, bob, sent):
    image, document = sent
    client.force_login(bob)
    response = client.get(f"/attachments/{image.pk}/thumbnail/")
    assert response["Content-Type"] == "image/webp"
    assert response["Content-Disposition"] == 'inline; filename="chart.webp"'
    thumbnail = Image.open(__import__("io").BytesIO(b"".join(response.streaming_content)))
    assert thumbnail.format == "WEBP" and max(thumbnail.size) <= 320
    assert client.get(f"/attachments/{document.pk}/thumbnail/").status_code == 404


def stored_bytes_of(attachment):
    from django.core.files.storage import storages

    return storages["attachments"].open(attachment.file_name).read()


def test_a_member_of_another_team_gets_404_for_every_url(client, charlie, sent):
    client.force_login(charlie)
    assert [client.get(url).status_code for url in urls_of(*sent)] == [404, 404, 404]


def test_a_teammate_gets_404_without_a_share(client, alice, sent):
    client.force_login(alice)
    assert [client.get(url).status_code for url in urls_of(*sent)] == [404, 404, 404]


def test_a_signed_out_visitor_is_sent_to_sign_in(client, sent):
    for url in urls_of(*sent):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/sign-in/?next={url}"


def test_a_reviewer_sees_them_only_after_giving_a_reason(client, rita, sent, conversation):
    client.force_login(rita)
    assert [client.get(url).status_code for url in urls_of(*sent)] == [404, 404, 404]
    client.post(f"/review/{conversation.pk}/reason/", {"reason": REASON})
    assert [client.get(url).status_code for url in urls_of(*sent)] == [200, 200, 200]


def test_a_reviewer_never_sees_an_unsent_attachment(client, rita, bob, conversation):
    client.force_login(bob)
    chip = post_files(client, conversation, png()).json()["attachments"][0]
    client.force_login(rita)
    client.post(f"/review/{conversation.pk}/reason/", {"reason": REASON})
    assert client.get(chip["url"]).status_code == 404


def share_now(conversation, bob):
    return Share.objects.create(
        conversation=conversation,
        created_by=bob,
        snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk))),
    )


def test_a_share_links_visitor_sees_the_attachments_of_shared_messages_while_it_opens(client, alice, bob, sent, conversation):
    share = share_now(conversation, bob)
    client.force_login(alice)
    assert [client.get(url).status_code for url in urls_of(*sent)] == [200, 200, 200]
    share.revoke()
    assert [client.get(url).status_code for url in urls_of(*sent)] == [404, 404, 404]


def test_a_share_does_not_show_what_was_sent_after_it(client, alice, bob, sent, conversation):
    share_now(conversation, bob)
    later = Message.objects.create(conversation=conversation, role="user", content="And this")
    client.force_login(bob)
    chip = post_files(client, conversation, png("later.png", (10, 10))).json()["attachments"][0]
    Attachment.objects.filter(pk=chip["id"]).update(message=later)
    client.force_login(alice)
    assert client.get(chip["url"]).status_code == 404


def test_a_share_opens_nothing_to_another_team(client, charlie, bob, sent, conversation):
    share_now(conversation, bob)
    client.force_login(charlie)
    assert [client.get(url).status_code for url in urls_of(*sent)] == [404, 404, 404]


def test_the_owner_gets_404_once_the_conversation_is_in_the_trash(client, bob, sent, conversation):
    conversation.deleted_at = timezone.now()
    conversation.save()
    client.force_login(bob)
    assert [client.get(url).status_code for url in urls_of(*sent)] == [404, 404, 404]


def test_daphne_lets_a_whole_file_through_to_the_upload_and_refuses_more(tmp_path):
    """Through daphne as it serves: a 20 MiB upload reaches mimoweb (whose CSRF check refuses a sender without a token);
    a body over one file's limit is refused by its length, before it is sent."""
    import httpx

    from tests.test_body_limits import raw_request, start_daphne, zeros

    path = "/chats/0b8f6a8e-1b7c-4a55-9b43-3c1f1c4d2e10/attachments/"
    process, url = start_daphne(tmp_path)
    try:
        response = httpx.post(url + path, content=zeros(20 * 1024 * 1024), timeout=60)
        assert response.status_code == 403
        assert "CSRF" in response.text
        head = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (path.encode(), 40 * 1024 * 1024)
        assert raw_request(url, head).startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_large_upload_spooled_to_disk_is_stored_byte_for_byte(client, bob, conversation):
    import hashlib

    content = ("A line of a long log, with ünïcode.\n" * 120_000).encode()  # 4.4 MB: Django spools it to a file
    client.force_login(bob)
    chip = post_files(client, conversation, SimpleUploadedFile("server.log", content)).json()["attachments"][0]
    attachment = Attachment.objects.get(pk=chip["id"])
    assert attachment.sha256 == hashlib.sha256(content).hexdigest() and attachment.size == len(content)
    assert stored_bytes_of(attachment) == content
    assert attachment.text == content.decode().strip()


def test_a_reviewer_who_may_read_an_attachment_may_not_remove_it(client, rita, sent, conversation):
    client.force_login(rita)
    client.post(f"/review/{conversation.pk}/reason/", {"reason": REASON})
    assert client.post(f"/attachments/{sent[0].pk}/remove/").status_code == 403
    assert Attachment.objects.count() == 2
