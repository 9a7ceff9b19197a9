"""Attachments over HTTP: upload to a conversation, remove before sending, and serve to whoever may see them.

Uploads answer JSON: the composer (static/chat/attachments.js) draws each file's chip, with its
progress bar, as soon as the file is chosen, and replaces it with the chip the answer carries, the
page's own partial (chat/conversation.html#attachment-chip); refusals come back as sentences beside
the file they are about.
"""

import re
from pathlib import PurePath

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.files.storage import storages
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.formats import number_format
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _, ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.http import AuthenticatedHttpRequest
from chat import attachments
from chat.models import Attachment, get_attachment_for, get_conversation_for

# Files in one upload request; the composer sends one file a request, for a progress bar each.
MAX_FILES_PER_UPLOAD = 10
# A file never changes under its URL; the browser may keep it, for this person only.
CACHE_SECONDS = 3600


@require_POST
def upload(request: AuthenticatedHttpRequest, conversation_id):
    """Files (`file`, one or more) for the conversation's next message; all are taken, or none."""
    conversation = get_conversation_for(request.user, conversation_id)
    files = request.FILES.getlist("file")
    if not files:
        return refused([{"name": "", "message": _("Choose a file to attach.")}])
    if len(files) > MAX_FILES_PER_UPLOAD:
        message = ngettext("Attach at most %(count)d file at a time.", "Attach at most %(count)d files at a time.", MAX_FILES_PER_UPLOAD)
        return refused([{"name": "", "message": message % {"count": MAX_FILES_PER_UPLOAD}}])
    taken, errors = [], []
    for uploaded in files:
        try:
            taken.append(attachments.read_upload(uploaded, conversation.team))
        except attachments.Refused as refusal:
            errors.append({"name": uploaded.name, "message": str(refusal)})
    if errors:
        return refused(errors)
    membership = conversation.team.memberships.select_related("team").filter(user=request.user).first()
    if membership is not None:  # the team's quota binds its members (one who left has no membership)
        try:
            attachments.check_storage_quota(membership, sum(upload.size for upload in taken))
        except attachments.Refused as refusal:
            return refused([{"name": "", "message": str(refusal)}])
    stored = [attachments.store(upload, owner=request.user, conversation=conversation) for upload in taken]
    return JsonResponse({"attachments": [chip(attachment) for attachment in stored]}, status=201)


def refused(errors, status=400):
    """Refusals as the composer shows them: each file's name (or "") and the reason, in the member's language."""
    return JsonResponse({"errors": errors}, status=status)


def with_tokens(attachment):
    """The attachment with `tokens`, a document's estimated cost for the composer's chip (None for media)."""
    is_document = attachment.kind == Attachment.Kind.DOCUMENT
    attachment.tokens = attachments.document_tokens(attachment) if is_document else None
    attachment.tokens_label = number_format(attachment.tokens, force_grouping=True) if is_document else ""
    return attachment


def chip(attachment):
    """What the composer shows of an attachment, and where to fetch or remove it; `html` is its chip
    as the page draws it (chat/conversation.html#attachment-chip), which replaces the uploading one."""
    is_image = attachment.kind == Attachment.Kind.IMAGE
    with_tokens(attachment)
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "size_label": filesizeformat(attachment.size),
        "width": attachment.width,
        "height": attachment.height,
        "duration": attachment.duration,  # seconds, for audio and video
        "url": reverse("attachment", args=[attachment.pk]),
        "thumbnail_url": reverse("attachment_thumbnail", args=[attachment.pk]) if is_image else None,
        "remove_url": reverse("remove_attachment", args=[attachment.pk]),
        "tokens": attachment.tokens,
        "html": render_to_string("chat/conversation.html#attachment-chip", {"attachment": attachment}),
    }


@require_http_methods(["POST", "DELETE"])
def remove(request: AuthenticatedHttpRequest, attachment_id):
    """Removes an attachment its owner has not sent yet; a sent one stays with its message."""
    attachment = get_attachment_for(request.user, attachment_id)
    if attachment.owner_id != request.user.pk:  # a reviewer or a share's visitor: they only read
        raise PermissionDenied
    if attachment.message_id is not None:
        message = _("This file was sent with its message, so it stays with it.")
        return refused([{"name": attachment.name, "message": message}], status=409)
    attachment.delete()
    return JsonResponse({"removed": str(attachment_id)})


@require_GET
def attachment_file(request: AuthenticatedHttpRequest, attachment_id):
    attachment = get_attachment_for(request.user, attachment_id)
    # Documents download: a text or PDF shown by the browser at our address would be a page of ours.
    inline = attachment.kind != Attachment.Kind.DOCUMENT
    return file_response(request, attachment.file_name, attachment.content_type, attachment.name, inline)


@require_GET
def thumbnail(request: AuthenticatedHttpRequest, attachment_id):
    attachment = get_attachment_for(request.user, attachment_id)
    if attachment.kind != Attachment.Kind.IMAGE:
        raise Http404
    return file_response(request, attachment.thumbnail_name, "image/webp", f"{PurePath(attachment.name).stem}.webp", inline=True)


def file_response(request, name, content_type, filename, inline):
    """A stored file with the type stored for it (never one guessed from its name), as the page's
    CSP and nosniff (the middleware's) cover it, cached for this person only.

    A request for one byte range (`Range: bytes=…`) gets just those bytes (206), so that an audio
    or video player can seek without fetching the whole file; a range past the end gets 416.
    Several ranges at once, or an If-Range (we give no validator it could match), get the whole file.
    """
    file = storages["attachments"].open(name)
    size = file.size
    wanted = request.headers.get("Range", "")
    byte_range = requested_range(wanted, size) if wanted and "If-Range" not in request.headers else None
    if byte_range == UNSATISFIABLE:
        file.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    else:
        start, end = byte_range or (0, size - 1)
        response = StoredFileResponse(file_slice(file, start, end - start + 1), content_type=content_type)
        response["Content-Length"] = str(end - start + 1)
        response["Content-Disposition"] = content_disposition_header(not inline, filename)
        if byte_range is not None:
            response.status_code = 206
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["X-Content-Type-Options"] = "nosniff"
    patch_cache_control(response, private=True, max_age=CACHE_SECONDS)
    return response


class StoredFileResponse(StreamingHttpResponse):
    """A file sent a chunk at a time under ASGI (daphne) too.

    Given a plain iterator, as FileResponse is, Django's ASGI handler reads all of it into memory
    before it sends a byte: a 32 MiB video watched by ten people would be 320 MB held. Here each
    chunk is read in a worker thread as the last one is sent. The test client iterates it as usual.
    """

    async def __aiter__(self):
        chunks = iter(self.streaming_content)
        while (chunk := await sync_to_async(next, thread_sensitive=False)(chunks, None)) is not None:
            yield chunk


UNSATISFIABLE = "unsatisfiable"
SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def requested_range(header, size):
    """(first, last) byte of the one range a Range header asks for, both included; UNSATISFIABLE when
    it starts past the end; None when the header is not one range of bytes (the whole file is sent)."""
    match = SINGLE_RANGE.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        length = int(last)
        return (max(0, size - length), size - 1) if length and size else UNSATISFIABLE
    first, last = int(first), min(int(last), size - 1) if last else size - 1
    if first > last:
        return UNSATISFIABLE if first >= size else None  # "5-3" is no range at all: the whole file
    return first, last


def file_slice(file, start, length, chunk_size=64 * 1024):
    """The bytes of a range, read a chunk at a time; the file is closed after."""
    with file:
        file.seek(start)
        while length > 0:
            chunk = file.read(min(chunk_size, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
