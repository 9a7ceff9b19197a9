"""Export a member's conversations as JSON or Markdown (in a zip with their files when they have
some), and import a JSON or zip export back."""

import json
import logging
import tempfile

from django import forms
from django.contrib import messages
from django.db import DatabaseError
from django.http import FileResponse, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.utils.translation import gettext_lazy as _, ngettext

from accounts.http import AuthenticatedHttpRequest
from chat import attachments, transfer
from chat.models import Conversation, get_conversation_for

logger = logging.getLogger(__name__)

CONTENT_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8"}


def export_conversation(request: AuthenticatedHttpRequest, conversation_id, kind):
    conversation = get_conversation_for(request.user, conversation_id)  # one in the trash is a 404
    exported = transfer.exportable(Conversation.objects.filter(pk=conversation.pk))
    return download(exported, kind, transfer.safe_filename(conversation.title))


def export_all(request: AuthenticatedHttpRequest, kind):
    conversations = transfer.exportable(Conversation.objects.visible_to(request.user))
    return download(conversations, kind, "mimoweb-conversations")


def download(conversations, kind, name):
    """The export as a file; a zip of it and the attached files when the conversations have any."""
    if kind == "json":
        body = json.dumps(transfer.export_data(conversations), ensure_ascii=False, indent=2)
    else:
        body = transfer.markdown(conversations)
    files = transfer.attachments_of(conversations)
    if files:
        archive = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # on disk past that: files can be large
        transfer.write_archive(archive, f"conversations.{kind}", body, files)
        archive.seek(0)
        return FileResponse(archive, as_attachment=True, filename=f"{name}.{kind}.zip", content_type="application/zip")
    response = HttpResponse(body, content_type=CONTENT_TYPES[kind])
    response["Content-Disposition"] = content_disposition_header(True, f"{name}.{kind}")
    return response


class ImportForm(forms.Form):
    file = forms.FileField(
        label=_("Export file (.json or .zip)"),
        help_text=_("A JSON file exported from mimoweb, or the zip an export with attached files comes in."),
    )

    def clean_file(self):
        return transfer.read_upload(self.cleaned_data["file"])


def import_conversations(request: AuthenticatedHttpRequest):
    form = ImportForm(request.POST or None, request.FILES or None)
    membership = request.user.memberships.select_related("team").order_by("joined_at").first()
    if membership is None:
        form.add_error(None, _("You are not in a team yet. Ask a team admin to add you."))
    elif request.method == "POST" and form.is_valid() and fits_storage_quota(form, membership):
        try:
            imported = transfer.import_conversations(form.cleaned_data["file"], owner=request.user, team=membership.team)
        except DatabaseError:  # what it had saved is deleted again (transfer.import_conversations)
            logger.exception("An import by member %s failed", request.user.pk)
            form.add_error(None, _("Nothing was imported: the database could not save the conversations. Try again in a moment."))
        else:
            count = len(imported)
            messages.success(request, ngettext("Imported %(count)d conversation.", "Imported %(count)d conversations.", count) % {"count": count})
            if count == 1:
                return redirect("conversation", conversation_id=imported[0].pk)
            return redirect("conversation_list")
    limits = {"limit": transfer.MAX_IMPORT_BYTES, "archive_limit": transfer.MAX_IMPORT_ARCHIVE_BYTES}
    return render(request, "chat/transfer/import.html", {"form": form, **limits})


def fits_storage_quota(form, membership):
    """Whether the import's files fit the member's storage quota in the team; if not, the form says so."""
    try:
        attachments.check_storage_quota(membership, transfer.attachment_bytes(form.cleaned_data["file"]))
    except attachments.Refused as refusal:
        form.add_error(None, str(refusal))
        return False
    return True
