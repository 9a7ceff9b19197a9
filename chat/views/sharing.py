"""Read-only snapshots of a conversation for the owner's team: create, list, revoke, open."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _, gettext_lazy
from django.views.decorators.http import require_POST

from accounts.http import AuthenticatedHttpRequest
from chat import generation, transfer
from chat.models import Attachment, Conversation, Share, ShareOpening, get_conversation_for


def get_share_of_owner(user, share_id):
    """A share of one of this user's own conversations; anyone else's is a 404."""
    try:
        return Share.objects.select_related("conversation").get(pk=share_id, conversation__owner=user)
    except Share.DoesNotExist:
        raise Http404


def get_share_to_open(user, share_id):
    """A share of a conversation in one of this user's teams; anyone else gets a 404, as if there were none."""
    try:
        return Share.objects.select_related("conversation__owner").get(pk=share_id, conversation__team__in=user.teams.all())
    except Share.DoesNotExist:
        raise Http404


class ShareForm(forms.Form):
    expires_in = forms.TypedChoiceField(
        label=gettext_lazy("The link expires"),
        choices=[
            ("0", gettext_lazy("never")),
            ("1", gettext_lazy("in 1 day")),
            ("7", gettext_lazy("in 7 days")),
            ("30", gettext_lazy("in 30 days")),
        ],
        coerce=int,
        initial="7",
    )


def conversation_shares(request: AuthenticatedHttpRequest, conversation_id):
    """The conversation's shares with who opened them, and the form that makes a new one."""
    conversation = get_conversation_for(request.user, conversation_id)
    form = ShareForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in"]
        Share.objects.create(
            conversation=conversation,
            created_by=request.user,
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk))),
        )
        messages.success(request, _("The link is ready. Anyone in your team can open it once signed in."))
        return redirect("conversation_shares", conversation_id=conversation.pk)
    shares = conversation.shares.prefetch_related("openings__user")
    return render(request, "chat/sharing/shares.html", {"conversation": conversation, "shares": shares, "form": form})


def share_list(request: AuthenticatedHttpRequest):
    """Every share of the member's conversations, in the trash or not."""
    shares = Share.objects.filter(conversation__owner=request.user).select_related("conversation")
    return render(request, "chat/sharing/shares.html", {"shares": shares.prefetch_related("openings__user")})


@require_POST
def revoke_share(request: AuthenticatedHttpRequest, share_id):
    share = get_share_of_owner(request.user, share_id)
    share.revoke()
    messages.success(request, _("The link is revoked: it no longer opens."))
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(back)
    return redirect("share_list")


def open_share(request: AuthenticatedHttpRequest, share_id):
    share = get_share_to_open(request.user, share_id)
    if reason := share.why_closed():
        return render(request, "chat/sharing/closed.html", {"reason": reason}, status=410)
    # The owner checking their own link is not news to them: only others' openings are listed.
    if request.user != share.conversation.owner:
        ShareOpening.objects.create(share=share, user=request.user)
    snapshot = transfer.read_export(share.snapshot)[0]
    items = snapshot_items(snapshot, share.conversation)
    context = {"share": share, "conversation": snapshot.conversation, "items": items, "read_only": True}
    return render(request, "chat/sharing/share.html", context)


def snapshot_items(snapshot, conversation):
    """What chat/message.html#message needs for each shown message of a snapshot (chat/transfer.py).

    A snapshot keeps its messages' ids, and its messages' attachments are read by them, from this
    conversation's rows: the attachment URLs let a share's visitor fetch only what its snapshot holds
    (Attachment.may_be_seen_by).
    """
    shown = [read for read in snapshot.messages if read.message.visible]
    attachments_of = {}
    for attachment in Attachment.objects.filter(conversation=conversation, message_id__in=[read.file_id for read in shown]):
        attachments_of.setdefault(attachment.message_id, []).append(attachment)
    items = []
    for read in shown:
        # Not rows, never saved: the file's ids name them, as the page's element ids.
        read.message.pk = read.file_id
        # As a prefetch would leave them, for the template's message.attachments.all.
        read.message._prefetched_objects_cache = {"attachments": attachments_of.get(read.file_id, [])}
        items.append(generation.message_context(read.message, tool_calls=read.tool_calls, citations=read.citations))
    return items
