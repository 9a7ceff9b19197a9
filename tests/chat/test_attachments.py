"""Reading uploads into attachments (chat/attachments.py): what is taken, what is refused, how it is stored."""

import array
import hashlib
import io
import json
import math
import os
import struct
import tracemalloc
import zipfile
import zlib
from datetime import timedelta

import av
import docx
import pypdf
import pytest
from asgiref.sync import async_to_sync
from django.core.files import File
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from PIL import ExifTags, Image

from chat import attachments, mimo
from chat.attachments import Refused, read_upload
from chat.models import TRASH_DAYS, Attachment, Conversation, Message


@pytest.fixture(autouse=True)
def attachment_storage(settings, tmp_path):
    """Each test stores its files in a folder of its own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }
    return tmp_path


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme)


def image_bytes(size=(40, 30), format="PNG", mode="RGB", **options):
    buffer = io.BytesIO()
    Image.new(mode, size, "teal").save(buffer, format, **options)
    return buffer.getvalue()


def upload(name, content):
    return SimpleUploadedFile(name, content)


def stored_bytes(taken):
    taken.content.seek(0)
    return taken.content.read()


def stored_files(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def png_header_only(width, height):
    """A PNG that declares these dimensions and holds no pixels: what a decompression bomb looks like to a reader."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def pdf_with_text(text):
    """A minimal one-page PDF showing this text."""
    stream = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode()
    return pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ])  # fmt: skip


def pdf_of(objects):
    """A PDF file of these objects (numbered from 1, the catalog first), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def docx_bytes():
    document = docx.Document()
    document.add_paragraph("Quarterly plan")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Q3", "grow"
    document.add_paragraph("The end")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def refusal(name, content):
    with pytest.raises(Refused) as refused:
        read_upload(upload(name, content))
    return str(refused.value)


# --- Images ---------------------------------------------------------------------------


def test_a_png_is_taken_with_its_size_and_a_thumbnail():
    taken = read_upload(upload("chart.png", image_bytes((40, 30))))
    assert (taken.kind, taken.name, taken.content_type, taken.width, taken.height) == ("image", "chart.png", "image/png", 40, 30)
    assert Image.open(io.BytesIO(taken.thumbnail)).format == "WEBP"


def test_gps_and_other_exif_are_stripped_and_the_photo_turned_upright():
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Acme Phones"
    exif[ExifTags.Base.Orientation] = 6  # taken sideways: turn 90° clockwise to show
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    photo = image_bytes((40, 20), "JPEG", exif=exif, comment=b"shot at 12 Elm Street")
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    taken = read_upload(upload("holiday.jpg", photo))
    stored = Image.open(taken.content)
    assert stored.format == "JPEG"
    assert not stored.getexif()
    assert b"Acme Phones" not in stored_bytes(taken)
    assert b"Elm Street" not in stored_bytes(taken)
    assert (stored.width, stored.height) == (taken.width, taken.height) == (20, 40)


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_metadata_of_other_formats_goes_too(format):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Acme Phones"
    taken = read_upload(upload(f"shot.{format.lower()}", image_bytes(format=format, exif=exif, xmp=b"<x:xmpmeta>secret</x:xmpmeta>")))
    assert b"Acme Phones" not in stored_bytes(taken)
    assert b"secret" not in stored_bytes(taken)


def test_an_animated_gif_keeps_its_frames_and_loses_its_comment():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, comment=b"made at home")
    taken = read_upload(upload("wave.gif", buffer.getvalue()))
    stored = Image.open(taken.content)
    assert stored.n_frames == 3
    assert b"made at home" not in stored_bytes(taken)
    red, green, _ = Image.open(io.BytesIO(taken.thumbnail)).convert("RGB").getpixel((0, 0))
    assert red > 200 and green < 60  # the first frame's


def test_an_image_over_mimos_pixel_limit_is_scaled_down_to_it():
    taken = read_upload(upload("big.png", image_bytes((4000, 3000))))
    assert taken.width * taken.height <= mimo.MAX_IMAGE_PIXELS
    assert (taken.width, taken.height) == (3344, 2508)
    assert Image.open(taken.content).size == (3344, 2508)


@pytest.mark.parametrize("size", [20_000, 10_000])  # over twice Pillow's limit, where it refuses itself; over it
def test_a_decompression_bomb_is_refused_before_it_is_decoded(size):
    message = refusal("bomb.png", png_header_only(size, size))
    assert message == "bomb.png has too many pixels to be opened safely."


def test_an_animation_whose_frames_hold_too_many_pixels_together_is_refused():
    frames = [Image.new("L", (3000, 2000), n * 20) for n in range(12)]  # 72 million pixels
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert refusal("long.gif", buffer.getvalue()) == "long.gif has too many pixels to be opened safely."


@pytest.mark.parametrize("name", ["photo.jpg", "photo.gif"])
def test_an_image_whose_content_is_another_format_is_refused(name):
    assert "is not the" in refusal(name, image_bytes(format="PNG"))


def test_a_damaged_image_is_refused():
    assert "could not be read as an image" in refusal("cut.png", image_bytes((400, 300))[:200])


# --- What is not an image, or not anything ---------------------------------------------------


def test_a_png_renamed_pdf_is_refused():
    assert refusal("report.pdf", image_bytes()) == "report.pdf is not the PDF file its name says it is."


def test_a_pdf_that_is_really_html_is_refused():
    assert "is not the PDF file" in refusal("invoice.pdf", b"<html><script>alert(1)</script></html>")


@pytest.mark.parametrize("name", ["drawing.svg", "passwd", "../../etc/passwd", "setup.exe"])
def test_files_of_other_kinds_are_refused_by_name(name):
    content = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>' if name.endswith("svg") else b"root:x:0:0"
    message = refusal(name, content)
    assert "is not a kind of file mimoweb takes" in message
    assert "../" not in message


def test_an_empty_file_is_refused():
    assert refusal("notes.txt", b"") == "notes.txt is empty."


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.MIMOWEB_ATTACHMENT_MAX_BYTES = 1000
    assert refusal("notes.txt", b"x" * 1001) == "notes.txt is larger than 1000\xa0bytes, the most a file may hold."


def test_media_over_mimos_inline_limit_is_refused_even_under_a_larger_size_limit(settings):
    settings.MIMOWEB_ATTACHMENT_MAX_BYTES = 100 * 1024 * 1024
    too_long = b"ID3" + b"\0" * (38 * 1000 * 1000)
    assert "larger than MiMo takes in a message" in refusal("talk.mp3", too_long)


# --- Audio and video ------------------------------------------------------------------------------


def encoded_media(container_format, audio_codec=None, video_codec=None, seconds=1.0, rate=48000):
    """A real file FFmpeg (PyAV) encodes here: a 440 Hz mono tone and/or a 64×48 picture changing at 10 fps."""
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        # Every stream is added before the first packet is written: that writes the header.
        sound = container.add_stream(audio_codec, rate=rate, layout="mono") if audio_codec else None
        if video_codec:
            picture = container.add_stream(video_codec, rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            for n in range(round(seconds * 10)):
                frame = av.VideoFrame(64, 48, "yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([n * 20 % 256]) * plane.buffer_size)
                frame.pts = n
                container.mux(picture.encode(frame))
            container.mux(picture.encode(None))
        if sound:
            total = round(seconds * rate)
            for start in range(0, total, 1024):
                count = min(1024, total - start)
                tone = array.array("h", (round(8000 * math.sin(2 * math.pi * 440 * (start + i) / rate)) for i in range(count)))
                frame = av.AudioFrame(format="s16", layout="mono", samples=count)
                frame.planes[0].update(tone.tobytes())
                frame.rate, frame.pts = rate, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return out.getvalue()


def decoded_seconds(data):
    """How long the sound in these bytes lasts, counted from its decoded samples."""
    with av.open(io.BytesIO(data)) as container:
        sound = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(sound)) / sound.rate


MEDIA_FILES = {
    "voice.mp3": (("mp3", "libmp3lame"), "audio", "audio/mpeg"),
    "voice.wav": (("wav", "pcm_s16le"), "audio", "audio/wav"),
    "voice.flac": (("flac", "flac"), "audio", "audio/flac"),
    "voice.m4a": (("ipod", "aac"), "audio", "audio/mp4"),
    "voice.ogg": (("ogg", "libopus"), "audio", "audio/ogg"),
    "clip.mp4": (("mp4", "aac", "libx264"), "video", "video/mp4"),
    "clip.mov": (("mov", None, "mpeg4"), "video", "video/quicktime"),
    "clip.avi": (("avi", None, "mpeg4"), "video", "video/x-msvideo"),
    "clip.wmv": (("asf", None, "wmv2"), "video", "video/x-ms-wmv"),
}


@pytest.mark.parametrize("name", MEDIA_FILES)
def test_audio_and_video_are_taken_as_uploaded_with_their_duration(name):
    encoding, kind, content_type = MEDIA_FILES[name]
    content = encoded_media(*encoding, seconds=2)
    taken = read_upload(upload(name, content))
    assert (taken.kind, taken.content_type, taken.size, taken.name) == (kind, content_type, len(content), name)
    assert taken.sha256 == hashlib.sha256(content).hexdigest()
    assert taken.duration == pytest.approx(2, abs=0.1)


def test_a_video_whose_decoder_gives_its_frames_only_at_the_end_is_taken():
    """H.264 holds a two-frame clip's pictures back until the decoder is flushed."""
    taken = read_upload(upload("clip.mp4", encoded_media("mp4", None, "libx264", seconds=0.2)))
    assert (taken.kind, taken.duration) == ("video", pytest.approx(0.2, abs=0.05))


def test_a_webm_recording_of_a_tone_is_converted_to_mp3_with_its_duration():
    recorded = encoded_media("webm", "libopus", seconds=3)
    taken = read_upload(upload("recording.webm", recorded))
    assert (taken.kind, taken.name, taken.content_type) == ("audio", "recording.mp3", "audio/mpeg")
    mp3 = stored_bytes(taken)
    assert attachments.has_signature("audio/mpeg", mp3[:64])
    assert (taken.size, taken.sha256) == (len(mp3), hashlib.sha256(mp3).hexdigest())
    assert taken.duration == pytest.approx(3, abs=0.05)
    assert decoded_seconds(mp3) == pytest.approx(3, abs=0.1)  # all of the sound, not its first frames


def test_a_webm_holding_video_is_refused():
    assert refusal("recording.webm", encoded_media("webm", "libopus", "libvpx")) == (
        "recording.webm holds video. mimoweb takes WebM for sound only: attach a video as MP4, MOV, AVI or WMV."
    )


def test_an_mp4_holding_only_sound_is_audio_as_safari_records_it():
    taken = read_upload(upload("recording.mp4", encoded_media("mp4", "aac", seconds=1)))
    assert (taken.kind, taken.content_type) == ("audio", "audio/mp4")
    assert taken.duration == pytest.approx(1, abs=0.1)


def test_a_video_file_holding_only_sound_but_an_mp4_is_refused():
    assert refusal("clip.mov", encoded_media("mov", "aac")) == "clip.mov holds no picture to watch."


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("voice.mp3", b"ID3\x04\0\0\0\0\0\0" + bytes(range(256)) * 40),  # a tag, then no MPEG frame at all
        ("voice.wav", b"RIFF\x24\0\0\0WAVEfmt " + b"\xff" * 100),
        ("recording.webm", attachments.EBML + b"\x9f" * 500),
        ("clip.mp4", b"\0\0\0\x18ftypmp42" + b"\0" * 100),
    ],
)
def test_audio_or_video_ffmpeg_cannot_decode_is_refused(name, content):
    assert refusal(name, content) == (
        f"{name} could not be played back: it may be damaged, or in a format mimoweb cannot read."
    )


def test_a_media_file_cut_short_is_refused():
    whole = encoded_media("mp4", "aac", "libx264")
    assert "could not be played back" in refusal("clip.mp4", whole[: len(whole) // 3])


def test_audio_whose_content_is_another_format_is_refused():
    assert refusal("voice.wav", b"ID3\x04" + b"\0" * 100) == "voice.wav is not the WAV file its name says it is."


# --- Documents ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["notes.txt", "README.md", "data.csv", "data.json", "main.py"])
def test_utf8_text_documents_are_taken_with_their_text(name):
    taken = read_upload(upload(name, "\ufeffHéllo, 北京\n".encode()))
    assert (taken.kind, taken.content_type, taken.text) == ("document", "text/plain; charset=utf-8", "Héllo, 北京")


@pytest.mark.parametrize("content", ["Héllo".encode("latin-1"), b"abc\0def"])
def test_text_that_is_not_utf8_is_refused(content):
    assert refusal("notes.txt", content) == "notes.txt is not UTF-8 text. Save it as UTF-8 and attach it again."


def test_a_pdfs_text_is_extracted():
    taken = read_upload(upload("plan.pdf", pdf_with_text("Hello from the PDF")))
    assert (taken.kind, taken.content_type) == ("document", "application/pdf")
    assert "Hello from the PDF" in taken.text


def test_a_pdf_without_text_is_refused():
    assert "holds no text to read" in refusal("scan.pdf", pdf_with_text(""))


def test_a_damaged_pdf_is_refused():
    assert "could not be read as a PDF" in refusal("plan.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R")


def read_upload_measured(path):
    """The file at `path` read as an upload, and the most memory Python held while reading it."""
    with open(path, "rb") as file:
        tracemalloc.start()
        try:
            return read_upload(File(file, name=path.name)), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_a_pdfs_text_is_read_holding_the_pictures_of_one_page_at_a_time(tmp_path):
    picture = 6 * 1024 * 1024
    pages, objects = [], [b"<< /Type /Catalog /Pages 2 0 R >>", None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for page in range(4):
        content = b"q 612 0 0 792 0 0 cm /Photo Do Q BT /F1 12 Tf 72 720 Td (Photo %d) Tj ET" % page
        objects.append(  # a JPEG as a camera makes it: its bytes do not compress
            b"<< /Type /XObject /Subtype /Image /Width 3000 /Height 2000 /ColorSpace /DeviceRGB /BitsPerComponent 8 "
            b"/Filter /DCTDecode /Length %d >>\nstream\n%s\nendstream" % (picture, os.urandom(picture))
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> /XObject << /Photo %d 0 R >> >> >>" % (len(objects), len(objects) - 1)
        )
        pages.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count 4 >>" % b" ".join(pages)
    path = tmp_path / "photos.pdf"
    path.write_bytes(pdf_of(objects))
    del objects
    taken, peak = read_upload_measured(path)
    assert taken.text == "Photo 0\n\nPhoto 1\n\nPhoto 2\n\nPhoto 3"
    assert peak < 2 * picture  # one page's picture, not the four


def test_a_pdf_encrypted_with_no_password_has_every_pages_text_read():
    pages = pypdf.PdfWriter()
    for text in ["First page", "Second page", "Third page"]:
        pages.append(pypdf.PdfReader(io.BytesIO(pdf_with_text(text))))
    pages.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    encrypted = io.BytesIO()
    pages.write(encrypted)
    assert read_upload(upload("plan.pdf", encrypted.getvalue())).text == "First page\n\nSecond page\n\nThird page"


def test_a_word_documents_paragraphs_and_tables_are_extracted_in_order():
    taken = read_upload(upload("plan.docx", docx_bytes()))
    assert taken.text == "Quarterly plan\nQ3 | grow\nThe end"
    assert taken.content_type == attachments.DOCX


def test_a_word_documents_text_is_read_without_holding_its_pictures_in_memory(tmp_path):
    document = docx.Document()
    document.add_paragraph("Site survey")
    document.add_picture(io.BytesIO(image_bytes()))
    buffer = io.BytesIO()
    document.save(buffer)
    picture = os.urandom(20 * 1024 * 1024)  # a photo as a camera stores it: it does not compress
    path = tmp_path / "survey.docx"
    with zipfile.ZipFile(buffer) as small, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as large:
        for member in small.infolist():
            large.writestr(member.filename, picture if member.filename.startswith("word/media/") else small.read(member))
    del picture
    taken, peak = read_upload_measured(path)
    assert taken.text == "Site survey" and taken.size > 20 * 1024 * 1024
    assert peak < 5 * 1024 * 1024


def test_a_zip_that_is_not_a_word_document_is_refused():
    buffer = io.BytesIO()
    with __import__("zipfile").ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "could not be read as a Word document" in refusal("plan.docx", buffer.getvalue())


# --- Storing once, deleting with the last row ------------------------------------------------


def test_the_same_file_uploaded_twice_is_stored_once(attachment_storage, bob, conversation):
    content = image_bytes()
    first = attachments.store(read_upload(upload("a.png", content)), owner=bob, conversation=conversation)
    second = attachments.store(read_upload(upload("b.png", content)), owner=bob, conversation=conversation)
    assert first.pk != second.pk and first.sha256 == second.sha256
    assert stored_files(attachment_storage) == [first.file_name, first.thumbnail_name]
    stored = storages["attachments"].open(first.file_name).read()
    assert hashlib.sha256(stored).hexdigest() == first.sha256 and len(stored) == first.size


def test_the_file_goes_with_the_last_row_naming_it(attachment_storage, bob, conversation, django_capture_on_commit_callbacks):
    content = b"shared words"
    first, second = (
        attachments.store(read_upload(upload(name, content)), owner=bob, conversation=conversation) for name in ("a.txt", "b.txt")
    )
    with django_capture_on_commit_callbacks(execute=True):
        first.delete()
    assert stored_files(attachment_storage) == [second.file_name]
    with django_capture_on_commit_callbacks(execute=True):
        conversation.delete()  # the cascade deletes the row, and so the file
    assert not Attachment.objects.exists()
    assert stored_files(attachment_storage) == []


# --- Sending ------------------------------------------------------------------------------------


def test_stored_attachments_reach_the_fake_as_mimo_reads_them(fake_url, bob, conversation):
    files = [
        upload("chart.png", image_bytes((40, 30))),
        upload("notes.md", b"# Notes"),
        upload("voice.wav", encoded_media("wav", "pcm_s16le", seconds=0.2)),
    ]
    stored = [attachments.store(read_upload(file), owner=bob, conversation=conversation) for file in files]
    turn = attachments.user_turn("What are these?", stored)
    assert turn.documents == [mimo.DocumentPart("notes.md", "# Notes")]
    assert turn.audio[0].data.startswith("data:audio/wav;base64,UklGR")
    endpoint = mimo.Endpoint(fake_url, "sk-test-good-key-4321", mimo.ApiFormat.OPENAI)

    async def answer():
        try:
            chat = mimo.ChatRequest(model="mimo-v2.5", turns=[turn])
            events = [event async for event in mimo.stream_turn(endpoint, chat)]
        finally:
            await mimo.close_shared_http_client()
        return "".join(event.text for event in events if isinstance(event, mimo.TextDelta))

    assert async_to_sync(answer)().startswith("I see 1 image (40×30), 1 audio clip (0.2 s), 1 document (notes.md).")


# --- Trash and purge ------------------------------------------------------------------------------


def sent_with_files(conversation, *files):
    message = Message.objects.create(conversation=conversation, role="user", content="See these")
    for name, content in files:
        attachment = attachments.store(read_upload(upload(name, content)), owner=conversation.owner, conversation=conversation)
        Attachment.objects.filter(pk=attachment.pk).update(message=message)
    return message


def expire(conversation):
    conversation.move_to_trash()
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now() - timedelta(days=TRASH_DAYS, minutes=1))


def test_the_trash_keeps_the_files_for_a_restore(attachment_storage, conversation, django_capture_on_commit_callbacks):
    sent_with_files(conversation, ("chart.png", image_bytes()), ("voice.wav", encoded_media("wav", "pcm_s16le", seconds=0.2)))
    with django_capture_on_commit_callbacks(execute=True):
        conversation.move_to_trash()
    assert len(stored_files(attachment_storage)) == 3  # the image, its thumbnail, the sound


def test_a_purge_deletes_the_files_of_the_conversations_it_deletes(attachment_storage, conversation, django_capture_on_commit_callbacks):
    sent_with_files(conversation, ("chart.png", image_bytes()), ("report.pdf", pdf_with_text("Revenue")))
    expire(conversation)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_trash", stdout=io.StringIO())
    assert not Attachment.objects.exists()
    assert stored_files(attachment_storage) == []


def test_a_purged_file_stays_while_another_conversation_still_names_it(
    attachment_storage, bob, acme, conversation, django_capture_on_commit_callbacks
):
    sent_with_files(conversation, ("chart.png", image_bytes()), ("notes.md", b"# Only here"))
    other = Conversation.objects.create(owner=bob, team=acme)
    sent_with_files(other, ("same-chart.png", image_bytes()))
    expire(conversation)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_trash", stdout=io.StringIO())
    [kept] = Attachment.objects.all()
    assert stored_files(attachment_storage) == sorted([kept.file_name, kept.thumbnail_name])


def test_opening_the_trash_purges_the_files_of_what_is_past_its_time(
    client, attachment_storage, bob, conversation, django_capture_on_commit_callbacks
):
    sent_with_files(conversation, ("notes.md", b"# Notes"))
    expire(conversation)
    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get("/chats/trash/").status_code == 200
    assert stored_files(attachment_storage) == []


# --- Settings -----------------------------------------------------------------------------------

SHOW_STORAGE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({"storage": settings.STORAGES["attachments"], "limit": settings.MIMOWEB_ATTACHMENT_MAX_BYTES}, default=str))
"""


def test_files_are_kept_in_the_data_folder_by_default_readable_by_mimoweb_alone(tmp_path):
    from tests.test_settings import run_python

    result = run_python(SHOW_STORAGE, tmp_path)
    shown = json.loads(result.stdout)
    assert shown["storage"] == {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "data" / "attachments"), "file_permissions_mode": 384, "directory_permissions_mode": 448},
    }
    assert shown["limit"] == 32 * 1024 * 1024


def test_another_store_is_named_with_its_options(tmp_path):
    from tests.test_settings import run_python

    options = {"bucket_name": "mimoweb", "endpoint_url": "https://s3.example.com", "location": "attachments"}
    result = run_python(
        SHOW_STORAGE,
        tmp_path,
        MIMOWEB_ATTACHMENT_STORAGE="storages.backends.s3.S3Storage",
        MIMOWEB_ATTACHMENT_STORAGE_OPTIONS=json.dumps(options),
        MIMOWEB_ATTACHMENT_MAX_BYTES="1000",
    )
    assert json.loads(result.stdout) == {"storage": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}, "limit": 1000}


def test_options_that_are_not_a_json_object_stop_the_start_naming_the_variable(tmp_path):
    from tests.test_settings import run_python

    result = run_python(SHOW_STORAGE, tmp_path, MIMOWEB_ATTACHMENT_STORAGE_OPTIONS="bucket=mimoweb")
    assert result.returncode != 0
    assert "MIMOWEB_ATTACHMENT_STORAGE_OPTIONS is not a JSON object" in result.stderr
