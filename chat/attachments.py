"""Reading an uploaded file into an Attachment: proving it is what its name says, cleaning it, storing it once.

Its name's suffix says what a file claims to be, and its content must prove it: Pillow opens an
image (and refuses a decompression bomb), a signature and FFmpeg (PyAV) prove audio and video
and read their duration, pypdf and python-docx read a PDF's and a Word document's text, and a
text file must be UTF-8. A browser's WebM recording is converted to MP3, which MiMo takes. The type
the browser sent is not trusted: it guesses it from the name too. Images are re-encoded, which
drops their metadata (EXIF, GPS, XMP, comments), and scaled down to what MiMo reads.

A file is stored once per content, under its sha256 (Attachment.file_name); `delete_unused_files`
deletes it when no row names it any more. Every refusal is a `Refused` with a sentence for the
member, in their language.
"""

import base64
import hashlib
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

import av
import docx
import pypdf
from docx.table import Table
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.utils.formats import number_format
from django.utils.translation import gettext as _, gettext_noop
from PIL import Image, ImageOps

from chat import mimo
from chat.models import Attachment
from chat.tokens import context_budget, estimated_tokens

Kind = Attachment.Kind

# What each accepted name suffix claims: images by Pillow's format name, the rest by their
# content type, which is also what is stored and served.
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".webp": "WEBP", ".bmp": "BMP"}
MEDIA_TYPES = {
    ".mp3": (Kind.AUDIO, "audio/mpeg"),
    ".wav": (Kind.AUDIO, "audio/wav"),
    ".flac": (Kind.AUDIO, "audio/flac"),
    ".m4a": (Kind.AUDIO, "audio/mp4"),
    ".ogg": (Kind.AUDIO, "audio/ogg"),
    ".webm": (Kind.AUDIO, "audio/webm"),  # recorded by a browser; converted to MP3 (read_media)
    ".mp4": (Kind.VIDEO, "video/mp4"),
    ".mov": (Kind.VIDEO, "video/quicktime"),
    ".avi": (Kind.VIDEO, "video/x-msvideo"),
    ".wmv": (Kind.VIDEO, "video/x-ms-wmv"),
}
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# Text of any kind is stored and served as plain text: it is downloaded, never run.
TEXT = "text/plain; charset=utf-8"
TEXT_SUFFIXES = set(
    ".txt .text .md .markdown .rst .csv .tsv .json .jsonl .xml .yaml .yml .toml .ini .cfg .conf .log .sql .tex "
    ".py .ipynb .js .mjs .ts .tsx .jsx .css .scss .html .htm .vue .svelte .java .kt .kts .scala .groovy .c .h .cc "
    ".cpp .hpp .cs .go .rs .rb .php .pl .lua .r .m .swift .dart .sh .bash .zsh .ps1 .bat .el .clj .ex .exs .erl "
    ".hs .ml .fs .jl .zig .nim .proto .graphql .gradle .cmake .mk .dockerfile .diff .patch".split()
)

# Every suffix taken, for the file chooser's `accept` (it only narrows what the chooser lists).
ACCEPTED_SUFFIXES = sorted({*IMAGE_FORMATS, *MEDIA_TYPES, ".pdf", ".docx", *TEXT_SUFFIXES})

# An animation is re-encoded frame by frame; this bounds the pixels decoded for all its frames.
MAX_ANIMATION_PIXELS = 64 * 1024 * 1024
# A Word document is a zip: what it unpacks to is bounded before python-docx reads it (a zip bomb).
MAX_DOCX_UNPACKED_BYTES = 256 * 1024 * 1024
THUMBNAIL_SIZE = (320, 320)
# Kept when an image is re-encoded: what it needs to look the same. Anything else (EXIF, GPS, XMP,
# comments, text chunks) goes.
KEPT_IMAGE_INFO = {"icc_profile", "transparency", "duration", "loop", "background", "disposal"}


class Refused(Exception):
    """A file mimoweb will not take; str() is the reason, for the member."""


@dataclass
class Upload:
    """A file read and accepted, not yet stored."""

    kind: str
    name: str
    content_type: str
    content: object  # a Django File: the upload itself, or its cleaned re-encoding
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    text: str = ""
    thumbnail: bytes | None = None


def largest_file_bytes(team=None):
    """The most a file attached in the team may hold: the team admins' limit, within the server's."""
    most = settings.MIMOWEB_ATTACHMENT_MAX_BYTES
    if team is not None and team.largest_file_mib is not None:
        most = min(most, team.largest_file_mib * 1024 * 1024)
    return most


def read_upload(uploaded, team=None):
    """The Upload an uploaded file makes in the team; Refused when it is not one mimoweb takes."""
    name = PurePath(uploaded.name or "").name
    suffix = PurePath(name.lower()).suffix
    if uploaded.size == 0:
        raise Refused(_("%(name)s is empty.") % {"name": name})
    if uploaded.size > (most := largest_file_bytes(team)):
        raise Refused(
            _("%(name)s is larger than %(limit)s, the most a file may hold.") % {"name": name, "limit": filesizeformat(most)}
        )
    if suffix in IMAGE_FORMATS:
        upload = read_image(uploaded, name, IMAGE_FORMATS[suffix])
    elif suffix in MEDIA_TYPES:
        check_inline_size(name, uploaded.size, MEDIA_TYPES[suffix][1])  # before FFmpeg reads all of it
        upload = read_media(uploaded, name, *MEDIA_TYPES[suffix])
    elif suffix == ".pdf":
        upload = read_document(uploaded, name, PDF, pdf_text)
    elif suffix == ".docx":
        upload = read_document(uploaded, name, DOCX, docx_text)
    elif suffix in TEXT_SUFFIXES:
        upload = read_document(uploaded, name, TEXT, plain_text)
    else:
        raise Refused(
            _(
                "%(name)s is not a kind of file mimoweb takes. It takes images (JPEG, PNG, GIF, WebP, BMP), "
                "audio (MP3, WAV, FLAC, M4A, OGG, WebM), video (MP4, MOV, AVI, WMV) and documents "
                "(text, Markdown, CSV, JSON, source code, PDF, DOCX)."
            )
            % {"name": name}
        )
    if upload.kind != Kind.DOCUMENT:
        check_inline_size(name, upload.size, upload.content_type)
    return upload


def check_inline_size(name, size, content_type):
    if inline_size(size, content_type) > mimo.INLINE_MEDIA_BYTES:
        raise Refused(
            _("%(name)s is larger than MiMo takes in a message: %(limit)s once encoded.")
            % {"name": name, "limit": filesizeformat(mimo.INLINE_MEDIA_BYTES)}
        )


def not_what_it_claims(name, what):
    return Refused(_("%(name)s is not the %(format)s file its name says it is.") % {"name": name, "format": what})


def inline_size(size, content_type):
    """The length of the data URL MiMo is sent for a file of this size."""
    return len(f"data:{content_type};base64,") + 4 * math.ceil(size / 3)


# --- Images ----------------------------------------------------------------------------


def read_image(uploaded, name, expected):
    """An image proven by Pillow, its metadata dropped, no larger than MiMo reads, with a thumbnail."""
    try:
        # Pillow refuses over twice Image.MAX_IMAGE_PIXELS as it opens, and only warns above it
        # (an error where warnings are errors, as in the tests); check_pixels refuses above it,
        # before anything is decoded.
        with Image.open(uploaded, formats=[expected]) as image:
            check_pixels(image, name)
            image.load()
            cleaned, still = clean_image(image)
            small = thumbnail(still)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels(name) from None
    except Image.UnidentifiedImageError:
        raise not_what_it_claims(name, expected) from None
    except (OSError, ValueError, SyntaxError, EOFError):  # what Pillow raises for a damaged image
        raise Refused(_("%(name)s could not be read as an image: it may be damaged.") % {"name": name}) from None
    data = cleaned.getvalue()
    return Upload(
        kind=Kind.IMAGE,
        name=name,
        content_type=Image.MIME[expected],
        content=ContentFile(data),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=still.width,
        height=still.height,
        thumbnail=small,
    )


def check_pixels(image, name):
    """Refuses, before decoding, an image whose pixels would not fit in memory (a decompression bomb)."""
    pixels, frames = image.width * image.height, getattr(image, "n_frames", 1)
    if pixels > Image.MAX_IMAGE_PIXELS or (frames > 1 and pixels * frames > MAX_ANIMATION_PIXELS):
        raise too_many_pixels(name)
    if frames > 1 and pixels > mimo.MAX_IMAGE_PIXELS:
        raise Refused(
            _("%(name)s is an animation too large for MiMo: at most %(limit)s pixels a frame.")
            % {"name": name, "limit": number_format(mimo.MAX_IMAGE_PIXELS, force_grouping=True)}
        )


def too_many_pixels(name):
    return Refused(_("%(name)s has too many pixels to be opened safely.") % {"name": name})


def clean_image(image):
    """The image re-encoded in its own format without its metadata, and the still it shows.

    A photo is turned upright by its EXIF orientation first, since the EXIF that told browsers
    to turn it goes. A still larger than MiMo reads is scaled down to fit (MiMo would scale it
    anyway: sending the pixels would cost time and bytes for nothing).
    """
    animated = getattr(image, "n_frames", 1) > 1
    still = image if animated else ImageOps.exif_transpose(image)
    if not animated and still.width * still.height > mimo.MAX_IMAGE_PIXELS:
        scale = math.sqrt(mimo.MAX_IMAGE_PIXELS / (still.width * still.height))
        still = still.resize((max(1, int(still.width * scale)), max(1, int(still.height * scale))), Image.Resampling.LANCZOS)
    still.info = {key: value for key, value in image.info.items() if key in KEPT_IMAGE_INFO}
    options = {"exif": b"", "xmp": b""}
    if image.format == "JPEG":
        options["quality"] = 90
    if image.format == "GIF":
        options["comment"] = b""
    cleaned = io.BytesIO()
    still.save(cleaned, image.format, save_all=animated, **options)
    if animated:
        still.seek(0)  # saving went through every frame; the first is the one a thumbnail shows
    return cleaned, still


def thumbnail(image):
    """A small WebP of the image (its first frame) for chips and messages."""
    small = image.copy()
    small.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    small = small.convert("RGBA" if small.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    out = io.BytesIO()
    small.save(out, "WEBP", quality=80)
    return out.getvalue()


# --- Audio and video ---------------------------------------------------------------------
#
# Recording a voice message: the composer posts what the browser's MediaRecorder made to the same
# upload route as any file (`POST /chats/<id>/attachments/`, field `file`), named for its type:
# `recording.webm` (Chrome, Edge: WebM/Opus), `recording.ogg` (Firefox: Ogg/Opus) or
# `recording.m4a` / `recording.mp4` (Safari: MP4/AAC). MiMo takes OGG and M4A as they are; WebM it
# does not take, so a WebM holding only sound is converted to MP3 here and stored as
# `recording.mp3`. An MP4 holding only sound is audio (M4A), not a video. The chip the upload
# answers says what was stored: kind "audio", its type and its duration in seconds.


def read_media(uploaded, name, kind, content_type):
    """Audio or video whose first bytes are its format's signature and which FFmpeg (PyAV) decodes,
    with its duration; a WebM recording converted to MP3, which MiMo takes."""
    uploaded.seek(0)
    head = uploaded.read(64)
    if not has_signature(content_type, head):
        raise not_what_it_claims(name, PurePath(name).suffix.lstrip(".").upper())
    facts = media_facts(uploaded, name)
    if content_type == "audio/webm":
        if facts.has_video:
            raise Refused(
                _("%(name)s holds video. mimoweb takes WebM for sound only: attach a video as MP4, MOV, AVI or WMV.")
                % {"name": name}
            )
        data, duration = audio_as_mp3(uploaded, name)
        return Upload(
            kind=Kind.AUDIO,
            name=f"{PurePath(name).stem}.mp3",
            content_type="audio/mpeg",
            content=ContentFile(data),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            duration=duration,
        )
    if kind == Kind.VIDEO and not facts.has_video:
        if content_type != "video/mp4" or not facts.has_audio:
            raise Refused(_("%(name)s holds no picture to watch.") % {"name": name})
        kind, content_type = Kind.AUDIO, "audio/mp4"  # sound alone in an MP4, as Safari records it: an M4A
    if kind == Kind.AUDIO and not facts.has_audio:
        raise Refused(_("%(name)s holds no sound to listen to.") % {"name": name})
    return Upload(
        kind=kind,
        name=name,
        content_type=content_type,
        content=uploaded,
        sha256=sha256_of(uploaded),
        size=uploaded.size,
        duration=facts.duration,
    )


# The ASF header object's GUID, with which every WMV (and WMA) file begins.
ASF = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# The top-level atoms an old QuickTime file may begin with, before the ftyp box existed.
QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"ftyp"}
# WebM (and Matroska) begins with an EBML header.
EBML = bytes.fromhex("1a45dfa3")


def has_signature(content_type, head):
    match content_type:
        case "audio/mpeg":  # an ID3 tag, or straight into an MPEG frame (11 sync bits)
            return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
        case "audio/wav":
            return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
        case "audio/flac":
            return head[:4] == b"fLaC"
        case "audio/ogg":
            return head[:4] == b"OggS"
        case "audio/webm":
            return head[:4] == EBML
        case "audio/mp4" | "video/mp4":
            return head[4:8] == b"ftyp"
        case "video/quicktime":
            return head[4:8] in QUICKTIME_ATOMS
        case "video/x-msvideo":
            return head[:4] == b"RIFF" and head[8:12] == b"AVI "
        case "video/x-ms-wmv":
            return head[:16] == ASF
    return False


@dataclass
class MediaFacts:
    duration: float  # seconds
    has_audio: bool
    has_video: bool


# What PyAV raises for a file FFmpeg cannot read: its own errors (some of which are also OSError
# or ValueError), and what a damaged container makes it raise while demuxing.
MEDIA_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError, IndexError)


def media_facts(uploaded, name):
    """The duration and streams of audio or video, proven by FFmpeg: its first frames decode, and
    every packet of it can be read. Refused when FFmpeg cannot, or when it lasts no time at all."""
    uploaded.seek(0)
    try:
        with av.open(uploaded, mode="r") as container:
            streams = [stream for stream in container.streams if stream.type in ("audio", "video")]
            if not streams:
                raise cannot_decode(name)
            decoded = set()
            end = 0.0
            for packet in container.demux(streams):
                if packet.pts is not None and packet.time_base is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                # A stream is proven by its first frame; the rest is only read. A decoder may hold its
                # first frames back until the end (the empty packet that flushes it), so that decodes too.
                if packet.stream.index not in decoded and packet.decode():
                    decoded.add(packet.stream.index)
            if len(decoded) < len(streams):
                raise cannot_decode(name)
            duration = container.duration / av.time_base if container.duration else end
            kinds = {stream.type for stream in streams}
    except Refused:
        raise
    except MEDIA_ERRORS:
        raise cannot_decode(name) from None
    finally:
        uploaded.seek(0)
    if duration <= 0:
        raise cannot_decode(name)
    return MediaFacts(duration=round(duration, 3), has_audio="audio" in kinds, has_video="video" in kinds)


def cannot_decode(name):
    return Refused(_("%(name)s could not be played back: it may be damaged, or in a format mimoweb cannot read.") % {"name": name})


# The sample rates an MP3 can have; a recording at another is resampled to 48 kHz.
MP3_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}
MP3_BITS_PER_SECOND_PER_CHANNEL = 64_000  # a voice is clear at this; a minute of mono is 480 KB


def audio_as_mp3(uploaded, name):
    """(MP3 bytes, duration in seconds) of the first sound of an audio file, for a format MiMo does not take.

    Mono stays mono and anything else becomes stereo; the duration is counted from the samples
    written, since a browser's WebM recording does not say how long it is.
    """
    uploaded.seek(0)
    out = io.BytesIO()
    try:
        with av.open(uploaded, mode="r") as source, av.open(out, mode="w", format="mp3") as mp3:
            sound = source.streams.audio[0]
            layout = "mono" if sound.codec_context.layout.nb_channels == 1 else "stereo"
            rate = sound.rate if sound.rate in MP3_RATES else 48000
            encoded = mp3.add_stream("libmp3lame", rate=rate, layout=layout)
            encoded.bit_rate = MP3_BITS_PER_SECOND_PER_CHANNEL * (1 if layout == "mono" else 2)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            samples = 0
            for frame in [*source.decode(sound), None]:  # None: flush the resampler, then the encoder
                for resampled in resampler.resample(frame):
                    samples += resampled.samples
                    mp3.mux(encoded.encode(resampled))
            mp3.mux(encoded.encode(None))
    except MEDIA_ERRORS:
        raise cannot_decode(name) from None
    if not samples:
        raise cannot_decode(name)
    return out.getvalue(), round(samples / rate, 3)


def sha256_of(uploaded):
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    return digest.hexdigest()


# --- Documents ---------------------------------------------------------------------------


def read_document(uploaded, name, content_type, extract):
    """A document stored as uploaded, with its text, which is what MiMo is sent."""
    uploaded.seek(0)
    text = extract(uploaded, name).strip()
    if not text:
        raise Refused(
            _("%(name)s holds no text to read. A scanned document holds only pictures of its pages.") % {"name": name}
        )
    return Upload(
        kind=Kind.DOCUMENT,
        name=name,
        content_type=content_type,
        content=uploaded,
        sha256=sha256_of(uploaded),
        size=uploaded.size,
        text=text,
    )


def plain_text(uploaded, name):
    refusal = Refused(_("%(name)s is not UTF-8 text. Save it as UTF-8 and attach it again.") % {"name": name})
    try:
        text = uploaded.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise refusal from None
    if "\0" in text:  # binary can be valid UTF-8 too; text never holds NUL
        raise refusal
    return text


def pdf_text(uploaded, name):
    if b"%PDF-" not in uploaded.read(1024):  # the header may follow a little junk
        raise not_what_it_claims(name, "PDF")
    uploaded.seek(0)
    try:
        reader = pypdf.PdfReader(uploaded)
        if reader.is_encrypted and not reader.decrypt(""):
            raise Refused(_("%(name)s is protected by a password. Attach a copy without one.") % {"name": name})
        return "\n\n".join(page_texts(reader))
    except Refused:
        raise
    except Exception:  # a hostile or damaged PDF can fail anywhere inside pypdf, with any exception
        raise Refused(_("%(name)s could not be read as a PDF: it may be damaged.") % {"name": name}) from None


def page_texts(reader):
    """Each page's text. pypdf keeps every object it has read, and it reads a page's pictures whole to
    learn that they are pictures: forgotten after each page, a PDF of photos is not all held at once."""
    for page in reader.pages:
        yield page.extract_text()
        reader.resolved_objects.clear()


def docx_text(uploaded, name):
    """The paragraphs and tables of a Word document, in order; a table's cells separated by " | "."""
    if not zipfile.is_zipfile(uploaded):
        raise not_what_it_claims(name, "DOCX")
    try:
        with zipfile.ZipFile(uploaded) as archive:
            if sum(member.file_size for member in archive.infolist()) > MAX_DOCX_UNPACKED_BYTES:
                raise Refused(_("%(name)s unpacks to too much to be read safely.") % {"name": name})
            document = docx.Document(xml_parts_of(archive))
        blocks = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks += [" | ".join(cell.text for cell in row.cells) for row in block.rows]
            else:
                blocks.append(block.text)
        return "\n".join(blocks)
    except Refused:
        raise
    except Exception:  # as for PDFs: a damaged or hostile zip fails in many ways
        raise Refused(_("%(name)s could not be read as a Word document: it may be damaged.") % {"name": name}) from None


def xml_parts_of(archive):
    """A copy of a Word document's zip in which only its XML (where python-docx reads the text) is
    kept, its pictures, fonts and embedded files emptied: python-docx holds every part of a document
    in memory, and a 50 MB document of photos is 50 MB held while its text is read."""
    copy = io.BytesIO()
    with zipfile.ZipFile(copy, "w") as out:
        for member in archive.infolist():
            out.writestr(member.filename, archive.read(member) if member.filename.endswith((".xml", ".rels")) else b"")
    copy.seek(0)
    return copy


# --- Files coming back from an export (chat/transfer.py) --------------------------------------

# The type each kind of file is stored with, as read_upload gives it; an export naming another is refused.
STORED_TYPES = {
    Kind.IMAGE: {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP", "image/bmp": "BMP"},
    Kind.AUDIO: {content_type for kind, content_type in MEDIA_TYPES.values() if kind == Kind.AUDIO} - {"audio/webm"},
    Kind.VIDEO: {content_type for kind, content_type in MEDIA_TYPES.values() if kind == Kind.VIDEO},
    Kind.DOCUMENT: {PDF: pdf_text, DOCX: docx_text, TEXT: plain_text},
}


def read_restored(kind, name, content_type, data):
    """An exported file coming back, proven as an upload is but kept byte for byte: an image was
    cleaned and scaled when it was first uploaded, and a recording converted, so they are not again.
    Its pixel size, duration, text and thumbnail are read from the file, not taken from the export."""
    content = ContentFile(data, name=name)
    upload = Upload(kind, name, content_type, content, hashlib.sha256(data).hexdigest(), len(data))
    if content_type not in STORED_TYPES.get(kind, ()):
        raise Refused(_("%(name)s is not a kind of file mimoweb takes.") % {"name": name})
    if kind == Kind.IMAGE:
        expected = STORED_TYPES[kind][content_type]
        try:
            with Image.open(io.BytesIO(data), formats=[expected]) as image:
                check_pixels(image, name)
                image.load()
                upload.width, upload.height, upload.thumbnail = image.width, image.height, thumbnail(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_many_pixels(name) from None
        except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            raise not_what_it_claims(name, expected) from None
    elif kind in (Kind.AUDIO, Kind.VIDEO):
        if not has_signature(content_type, data[:64]):
            raise not_what_it_claims(name, PurePath(name).suffix.lstrip(".").upper() or content_type)
        upload.duration = media_facts(content, name).duration
    else:
        upload.text = STORED_TYPES[kind][content_type](content, name).strip()
        if not upload.text:
            raise Refused(_("%(name)s holds no text to read.") % {"name": name})
    return upload


def suffix_for(content_type):
    """The name suffix of a stored type, for a file written out under its sha256 (an export's)."""
    if content_type == TEXT:
        return ".txt"
    if format := STORED_TYPES[Kind.IMAGE].get(content_type):
        return next(suffix for suffix, its_format in IMAGE_FORMATS.items() if its_format == format)
    suffixes = {stored: suffix for suffix, (kind, stored) in MEDIA_TYPES.items()}
    return suffixes.get(content_type) or {PDF: ".pdf", DOCX: ".docx"}.get(content_type, "")


# --- Sending --------------------------------------------------------------------------------


def user_turn(text, attachments):
    """The turn MiMo is sent for a message's text and attachments: media inline as data URLs
    (MiMo has no upload endpoint and cannot reach our files), documents as their text."""
    parts = {Kind.IMAGE: [], Kind.AUDIO: [], Kind.VIDEO: [], Kind.DOCUMENT: []}
    for attachment in attachments:
        if attachment.kind == Kind.DOCUMENT:
            part = mimo.DocumentPart(attachment.name, attachment.text)
        elif attachment.kind == Kind.IMAGE:
            part = mimo.ImagePart(data_url(attachment))
        elif attachment.kind == Kind.AUDIO:
            part = mimo.AudioPart(data_url(attachment))
        else:
            part = mimo.VideoPart(data_url(attachment))
        parts[attachment.kind].append(part)
    return mimo.UserTurn(
        text, images=parts[Kind.IMAGE], audio=parts[Kind.AUDIO], videos=parts[Kind.VIDEO], documents=parts[Kind.DOCUMENT]
    )


def data_url(attachment):
    with storages["attachments"].open(attachment.file_name) as file:
        return f"data:{attachment.content_type};base64,{base64.b64encode(file.read()).decode()}"


# --- Before sending: what the chosen model and key can take -------------------------------

# Each names the model as %(model)s: the composer (static/chat/composer.js) fills it in as the
# model changes, and the server refuses a send with the same sentence (chat/forms.py's SendForm).
CANNOT_READ = {
    Kind.IMAGE: gettext_noop(
        "%(model)s cannot read images. Choose a model that reads them (the model menu says what each one reads), or remove them."
    ),
    Kind.AUDIO: gettext_noop(
        "%(model)s cannot listen to audio. Choose a model that takes audio (the model menu says what each one reads), or remove it."
    ),
    Kind.VIDEO: gettext_noop(
        "%(model)s cannot watch video. Choose a model that takes video (the model menu says what each one reads), or remove it."
    ),
}
DOCUMENT_TOO_LONG = gettext_noop(
    "%(name)s is about %(tokens)s tokens, more than %(model)s reads at once (%(limit)s, leaving room for its answer)."
)
DOCUMENTS_TOO_LONG = gettext_noop(
    "These documents are about %(tokens)s tokens together, more than %(model)s reads at once "
    "(%(limit)s, leaving room for its answer). Remove some of them."
)


def document_tokens(attachment):
    """About how many tokens a document costs in the user turn: its text, its name and its delimiters."""
    return estimated_tokens(attachment.name) + estimated_tokens(attachment.text) + 8


def why_not_sendable(attachments, model, api_format):
    """Why these attachments cannot go to this model through a key in this format, in a sentence; "" when they can.

    What the model reads comes from chat/mimo's catalogue; the Anthropic format has no part for
    audio or video (mimo-api.md §6.1). A document, or the documents together, must fit the
    model's context beside its answer.
    """
    kinds = {attachment.kind for attachment in attachments}
    for kind, sentence in CANNOT_READ.items():
        if kind in kinds and kind not in model.input_modalities:
            return _(sentence) % {"model": model.id}
    if api_format == mimo.ApiFormat.ANTHROPIC and kinds & {Kind.AUDIO, Kind.VIDEO}:
        return _(mimo.ErrorKind.UNSUPPORTED_IN_FORMAT.message)
    documents = [attachment for attachment in attachments if attachment.kind == Kind.DOCUMENT]
    budget = context_budget(model)  # the most a message's documents may take
    numbers = {"model": model.id, "limit": number_format(budget, force_grouping=True)}
    for document in documents:
        if (tokens := document_tokens(document)) > budget:
            return _(DOCUMENT_TOO_LONG) % (numbers | {"name": document.name, "tokens": number_format(tokens, force_grouping=True)})
    if (total := sum(document_tokens(document) for document in documents)) > budget:
        return _(DOCUMENTS_TOO_LONG) % (numbers | {"tokens": number_format(total, force_grouping=True)})
    return ""


# --- Storing and deleting --------------------------------------------------------------------


def store(upload, *, owner, conversation, message=None, created_at=None):
    """The Attachment row for an accepted upload, its file stored unless the same content already is.
    `message` and `created_at`: those of an imported one (chat/transfer.py)."""
    attachment = Attachment(
        owner=owner,
        conversation=conversation,
        message=message,
        kind=upload.kind,
        name=upload.name,
        content_type=upload.content_type,
        size=upload.size,
        sha256=upload.sha256,
        width=upload.width,
        height=upload.height,
        duration=upload.duration,
        text=upload.text,
    )
    if created_at is not None:
        attachment.created_at = created_at
    save_once(attachment.file_name, upload.content)
    if upload.thumbnail is not None:
        save_once(attachment.thumbnail_name, ContentFile(upload.thumbnail))
    attachment.save()
    return attachment


def storage_used(owner, team):
    """Bytes of the member's attachments in the team, each row counted, however many share a file:
    deduplication is mimoweb's saving, not the member's. Unsent ones and those in the trash count."""
    used = Attachment.objects.filter(owner=owner, conversation__team=team).aggregate(total=Sum("size"))["total"]
    return used or 0


def check_storage_quota(membership, adding):
    """Refuses `adding` more bytes that would take the member past their storage quota in the team.

    Inexact under concurrency on purpose, as budgets' reserves are not: two uploads at the same
    instant may both pass, going over by at most one upload (MIMOWEB_ATTACHMENT_MAX_BYTES each).
    """
    quota = membership.storage_quota_bytes
    if quota is None:
        return
    used = storage_used(membership.user_id, membership.team_id)
    if used + adding > quota:
        raise Refused(
            _(
                "These files need %(needed)s, and only %(left)s of your %(quota)s of storage in %(team)s is left "
                "(%(used)s used). Delete conversations with files you no longer need, or ask a team admin for more."
            )
            % {
                "needed": filesizeformat(adding),
                "left": filesizeformat(max(0, quota - used)),
                "quota": filesizeformat(quota),
                "team": membership.team.name,
                "used": filesizeformat(used),
            }
        )


def save_once(name, content):
    storage = storages["attachments"]
    if storage.exists(name):
        return
    saved = storage.save(name, content)
    if saved != name:  # another upload of the same bytes stored it meanwhile: one copy is enough
        storage.delete(saved)


def delete_unused_files(sha256):
    """Deletes the file (and thumbnail) of this content once no attachment names it.

    Inexact on purpose: the same bytes uploaded again in the instant between the check and the
    delete would lose their file. That takes two people removing and adding the same content at
    the same moment; reference counts under a lock would cost every upload a write for it.
    """
    if Attachment.objects.filter(sha256=sha256).exists():
        return
    storage = storages["attachments"]
    probe = Attachment(sha256=sha256)
    for name in (probe.file_name, probe.thumbnail_name):
        storage.delete(name)
