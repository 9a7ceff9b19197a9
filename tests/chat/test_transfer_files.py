"""Export and import of conversations with attached files (chat/transfer.py): a zip that carries them,
files that come back byte for byte, and zips that are refused with nothing stored."""

import hashlib
import io
import json
import zipfile

import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile

from chat import attachments, search, transfer
from chat.models import Attachment, Conversation, Message
from tests.chat.test_attachments import (  # noqa: F401
    attachment_storage,
    encoded_media,
    image_bytes,
    pdf_with_text,
    stored_files,
)


def attach(conversation, message, name, content):
    upload = attachments.read_upload(SimpleUploadedFile(name, content))
    return attachments.store(upload, owner=conversation.owner, conversation=conversation, message=message)


@pytest.fixture
def conversation(bob, acme):
    """bob's question with an image, a PDF, a voice recording and a video, and an answer."""
    conversation = Conversation.objects.create(owner=bob, team=acme, title="Files")
    question = Message.objects.create(conversation=conversation, role="user", content="What do these say?")
    attach(conversation, question, "chart.png", image_bytes((40, 30)))
    attach(conversation, question, "report.pdf", pdf_with_text("Quarterly revenue rose"))
    attach(conversation, question, "recording.webm", encoded_media("webm", "libopus", seconds=1))
    attach(conversation, question, "clip.mp4", encoded_media("mp4", "aac", "libx264", seconds=1))
    Message.objects.create(conversation=conversation, role="assistant", content="A chart, a report, a voice, a clip.", parent=question)
    return conversation


def stored(attachment):
    with storages["attachments"].open(attachment.file_name) as file:
        return file.read()


def export_zip(client, conversation, kind="json"):
    response = client.get(f"/chats/{conversation.pk}/export.{kind}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="Files.{kind}.zip"'
    return b"".join(response.streaming_content)


def zip_of(entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def entries_of(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def import_file(client, data, name="Files.zip"):
    return client.post("/chats/import/", {"file": SimpleUploadedFile(name, data)})


# --- Export ------------------------------------------------------------------------------


def test_the_json_export_of_a_conversation_with_files_is_a_zip_of_it_and_its_files(client, bob, conversation):
    client.force_login(bob)
    entries = entries_of(export_zip(client, conversation))
    data = json.loads(entries.pop("conversations.json"))
    [question, _answer] = data["conversations"][0]["messages"]
    files = question["attachments"]
    assert [(f["kind"], f["name"], f["content_type"]) for f in files] == [
        ("image", "chart.png", "image/png"),
        ("document", "report.pdf", "application/pdf"),
        ("audio", "recording.mp3", "audio/mpeg"),
        ("video", "clip.mp4", "video/mp4"),
    ]
    for exported, attachment in zip(files, conversation.attachments.all()):
        assert exported["file"] == f"files/{attachment.sha256}{attachments.suffix_for(attachment.content_type)}"
        assert entries[exported["file"]] == stored(attachment)
        assert (exported["id"], exported["sha256"], exported["size"]) == (str(attachment.pk), attachment.sha256, attachment.size)
    assert set(entries) == {exported["file"] for exported in files}


def test_the_markdown_export_is_a_zip_whose_links_open_the_files_beside_it(client, bob, conversation):
    client.force_login(bob)
    entries = entries_of(export_zip(client, conversation, "md"))
    markdown = entries.pop("conversations.md").decode()
    image, pdf, audio, video = conversation.attachments.all()
    assert f"- ![chart.png ({image.size}\xa0bytes)](<files/{image.sha256}.png>)" in markdown
    assert f"- [report.pdf (" in markdown and f"](<files/{pdf.sha256}.pdf>)" in markdown
    assert f"](<files/{audio.sha256}.mp3>)" in markdown and f"](<files/{video.sha256}.mp4>)" in markdown
    assert set(entries) == {f"files/{image.sha256}.png", f"files/{pdf.sha256}.pdf", f"files/{audio.sha256}.mp3", f"files/{video.sha256}.mp4"}


def test_a_file_shared_by_two_messages_is_in_the_zip_once(client, bob, conversation):
    again = Message.objects.create(conversation=conversation, role="user", content="Once more")
    attach(conversation, again, "chart-again.png", image_bytes((40, 30)))
    client.force_login(bob)
    entries = entries_of(export_zip(client, conversation))
    assert len([name for name in entries if name.endswith(".png")]) == 1


def test_an_unsent_file_is_not_exported(client, bob, conversation):
    attach(conversation, None, "draft.txt", b"not sent yet")
    client.force_login(bob)
    entries = entries_of(export_zip(client, conversation))
    assert not any(name.endswith(".txt") for name in entries)


# --- Import ------------------------------------------------------------------------------


def test_export_then_import_gives_back_every_file_byte_for_byte(client, bob, conversation):
    client.force_login(bob)
    exported = export_zip(client, conversation)
    response = import_file(client, exported)
    assert response.status_code == 302
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    question = imported.messages.get(role="user")
    originals, copies = list(conversation.attachments.all()), list(imported.attachments.all())
    assert [copy.message_id for copy in copies] == [question.pk] * 4
    for original, copy in zip(originals, copies, strict=True):
        assert stored(copy) == stored(original)
        assert hashlib.sha256(stored(copy)).hexdigest() == original.sha256 == copy.sha256
        fields = ["kind", "name", "content_type", "size", "width", "height", "text", "created_at", "owner_id"]
        assert [getattr(copy, name) for name in fields] == [getattr(original, name) for name in fields]
        assert copy.duration == pytest.approx(original.duration, abs=0.05)
    image = copies[0]
    assert storages["attachments"].exists(image.thumbnail_name)
    assert client.get(f"/attachments/{image.pk}/thumbnail/").status_code == 200
    assert "Quarterly revenue rose" in copies[1].text


def test_an_import_stores_a_file_already_stored_only_once(client, bob, conversation, attachment_storage):  # noqa: F811
    client.force_login(bob)
    before = stored_files(attachment_storage)
    import_file(client, export_zip(client, conversation))
    assert Attachment.objects.count() == 8
    assert stored_files(attachment_storage) == before


def test_a_json_export_without_files_still_imports(client, bob, acme):
    plain = Conversation.objects.create(owner=bob, team=acme, title="Plain")
    Message.objects.create(conversation=plain, role="user", content="Hello")
    client.force_login(bob)
    response = client.get(f"/chats/{plain.pk}/export.json")
    assert response["Content-Type"] == "application/json"
    assert import_file(client, response.content, "Plain.json").status_code == 302
    assert Conversation.objects.filter(title="Plain").count() == 2


# --- Refused, with nothing stored ------------------------------------------------------------


def refusal_of(client, data, name="Files.zip"):
    response = import_file(client, data, name)
    assert response.status_code == 200
    return response.context["form"].errors


@pytest.fixture
def exported(client, bob, conversation):
    client.force_login(bob)
    data = export_zip(client, conversation)
    return entries_of(data)


def assert_nothing_imported(conversation, attachment_storage, before):  # noqa: F811
    assert Conversation.objects.exclude(pk=conversation.pk).count() == 0
    assert Attachment.objects.exclude(conversation=conversation).count() == 0
    assert stored_files(attachment_storage) == before


def test_a_file_whose_bytes_differ_from_its_sha256_is_refused(client, conversation, exported, attachment_storage):  # noqa: F811
    before = stored_files(attachment_storage)
    pdf_name = next(name for name in exported if name.endswith(".pdf"))
    exported[pdf_name] = exported[pdf_name].replace(b"Quarterly", b"Quarterlz")
    errors = refusal_of(client, zip_of(exported))
    assert "The file of report.pdf is not the one the export names: its sha256 differs." in str(errors)
    assert_nothing_imported(conversation, attachment_storage, before)


def test_a_file_that_is_not_what_its_type_says_is_refused_though_its_sha256_matches(client, conversation, exported, attachment_storage):  # noqa: F811
    before = stored_files(attachment_storage)
    html = b"<html><script>alert(1)</script></html>"
    data = json.loads(exported["conversations.json"])
    pdf = data["conversations"][0]["messages"][0]["attachments"][1]
    sha256 = hashlib.sha256(html).hexdigest()
    del exported[pdf["file"]]
    pdf.update(sha256=sha256, size=len(html), file=f"files/{sha256}.pdf")
    exported[pdf["file"]] = html
    exported["conversations.json"] = json.dumps(data)
    assert "report.pdf is not the PDF file its name says it is." in str(refusal_of(client, zip_of(exported)))
    assert_nothing_imported(conversation, attachment_storage, before)


@pytest.mark.parametrize("evil", ["../../etc/passwd", "/etc/passwd", "files/../../x", "C:\\\\x", "files\\\\..\\\\x"])
def test_a_zip_with_a_name_that_climbs_out_is_refused(client, conversation, exported, evil, attachment_storage):  # noqa: F811
    before = stored_files(attachment_storage)
    exported[evil] = b"x"
    assert "which no export holds" in str(refusal_of(client, zip_of(exported)))
    assert_nothing_imported(conversation, attachment_storage, before)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(client, conversation, exported, monkeypatch, attachment_storage):  # noqa: F811
    before = stored_files(attachment_storage)
    monkeypatch.setattr(transfer, "MAX_UNPACKED_BYTES", 10 * 1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in exported.items():
            archive.writestr(name, data)
        archive.writestr("files/zeros", b"\0" * 11 * 1024 * 1024)  # 11 MiB that pack into 11 KB
    assert len(out.getvalue()) < 200_000
    assert "This zip unpacks to more than 10.0\xa0MB." in str(refusal_of(client, out.getvalue()))
    assert_nothing_imported(conversation, attachment_storage, before)


def test_a_zip_over_the_limit_is_refused(client, conversation, exported, monkeypatch):
    monkeypatch.setattr(transfer, "MAX_IMPORT_ARCHIVE_BYTES", 1000)
    assert "an export can be at most 1000\xa0bytes" in str(refusal_of(client, zip_of(exported)))


def test_a_file_the_export_names_but_the_zip_lacks_is_refused(client, conversation, exported):
    mp4 = next(name for name in exported if name.endswith(".mp4"))
    del exported[mp4]
    assert "The file of clip.mp4 is missing from the zip." in str(refusal_of(client, zip_of(exported)))


def test_a_file_bigger_than_the_export_says_is_refused(client, conversation, exported):
    mp3 = next(name for name in exported if name.endswith(".mp3"))
    exported[mp3] += b"\0"
    assert "The file of recording.mp3 is not the size the export says." in str(refusal_of(client, zip_of(exported)))


def test_a_zip_without_conversations_json_is_refused(client, bob):
    client.force_login(bob)
    assert "This zip holds no conversations.json" in str(refusal_of(client, zip_of({"notes.txt": b"hi"})))


def test_the_json_of_a_zip_alone_is_refused_for_naming_files_it_does_not_hold(client, conversation, exported):
    errors = refusal_of(client, exported["conversations.json"], "conversations.json")
    assert "This export names attached files, which it does not hold. Import the .zip file it came in." in str(errors)


def test_an_import_over_the_members_storage_quota_is_refused_with_the_numbers(client, bob, acme, conversation, exported):
    acme.storage_quota_mib = 0
    acme.save()
    errors = str(refusal_of(client, zip_of(exported)))
    assert "These files need" in errors and "of your 0\xa0bytes of storage in Acme is left" in errors
    assert Conversation.objects.count() == 1


def test_a_failed_import_takes_its_stored_files_back(
    bob, acme, conversation, exported, attachment_storage, monkeypatch, django_capture_on_commit_callbacks  # noqa: F811
):
    """The files are stored before their rows; when a later save fails, the import deletes what it saved, files too."""
    with django_capture_on_commit_callbacks(execute=True):
        Attachment.objects.all().delete()  # so that the import's files are new to the storage
    assert stored_files(attachment_storage) == []
    read = transfer.read_upload(SimpleUploadedFile("Files.zip", zip_of(exported)))
    original = transfer.save_attachment
    calls = []

    def fail_on_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the disk is full")
        return original(*args)

    monkeypatch.setattr(transfer, "save_attachment", fail_on_the_third)
    with pytest.raises(RuntimeError), django_capture_on_commit_callbacks(execute=True):
        transfer.import_conversations(read, owner=bob, team=acme)
    assert len(calls) == 3
    assert Attachment.objects.count() == 0
    assert stored_files(attachment_storage) == []


def test_an_imported_documents_text_is_found_by_search_at_once(client, bob, conversation):
    client.force_login(bob)
    import_file(client, export_zip(client, conversation))
    imported = Conversation.objects.exclude(pk=conversation.pk).get()
    form = search.SearchForm(bob, {"q": "quarterly revenue"})
    assert form.is_valid()
    assert [hit["conversation_id"] for hit in form.hits()] == [imported.pk]  # the original's was linked by no sending code
