"""The member's library: the sidebar of their conversations (pin, rename, trash), the trash, and each answer's details."""

from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.http import AuthenticatedHttpRequest
from chat import generation
from chat.models import TRASH_DAYS, Conversation, Message, Price, get_conversation_for

SIDEBAR = "chat/library/sidebar.html"
SIDEBAR_PAGE_SIZE = 30
MAX_SIDEBAR_PAGE = (2**63 - 1) // SIDEBAR_PAGE_SIZE  # the largest page whose offset a database takes


class RenameForm(forms.Form):
    title = forms.CharField(
        label=gettext_lazy("Title"),
        max_length=Conversation._meta.get_field("title").max_length,
        error_messages={
            "required": gettext_lazy("A title cannot be empty."),
            "max_length": gettext_lazy("A title can be at most %(limit_value)d characters long (this one has %(show_value)d)."),
        },
    )


# --- The sidebar -------------------------------------------------------------------


def period(conversation, today):
    """The sidebar group of a conversation, as (key, heading), by its last activity in the user's time zone."""
    if conversation.pinned_at:
        return "pinned", _("Pinned")
    day = timezone.localdate(conversation.updated_at)
    age = (today - day).days
    if age <= 0:
        return "today", _("Today")
    if age == 1:
        return "yesterday", _("Yesterday")
    if age <= 7:
        return "week", _("Previous 7 days")
    if age <= 30:
        return "month", _("Previous 30 days")
    return f"{day:%Y-%m}", date_format(day, "YEAR_MONTH_FORMAT")


def current_conversation_id(request: AuthenticatedHttpRequest):
    """The conversation the page on screen shows (htmx sends the page's URL), so its row is marked."""
    path = request.htmx.current_url_abs_path if request.htmx else None
    try:
        match = resolve(urlsplit(path).path) if path else None
    except Resolver404:
        return None
    return match.kwargs["conversation_id"] if match and match.url_name == "conversation" else None


def sidebar_page(request: AuthenticatedHttpRequest, number=1, after=""):
    """One page of the member's conversations, with a heading where a group starts.

    `after` is the group the previous page ended in, so a group running over
    two pages gets one heading. Offsets, not a cursor: a conversation that
    moves up while the member scrolls may show twice, inexact on purpose.
    """
    start = (number - 1) * SIDEBAR_PAGE_SIZE
    conversations = Conversation.objects.visible_to(request.user).not_in_trash().newest_first()
    conversations = list(conversations[start : start + SIDEBAR_PAGE_SIZE + 1])  # one more: is there a next page?
    rows, group, today = [], after, timezone.localdate()
    for conversation in conversations[:SIDEBAR_PAGE_SIZE]:
        key, heading = period(conversation, today)
        rows.append({"conversation": conversation, "heading": heading if key != group else ""})
        group = key
    return {
        "rows": rows,
        "page_number": number,
        "next_page": number + 1 if len(conversations) > SIDEBAR_PAGE_SIZE else None,
        "last_group": group,
        "current_id": current_conversation_id(request),
    }


def sidebar_list(request: AuthenticatedHttpRequest, **extra):
    """The sidebar's first page again, after a change that moves rows; without htmx, the list page."""
    if not request.htmx:
        return redirect("conversation_list")
    return render(request, f"{SIDEBAR}#sidebar-list", sidebar_page(request) | extra)


def conversation_list(request: AuthenticatedHttpRequest):
    return render(request, "chat/list.html", sidebar_page(request))


def sidebar_page_number(value):
    """The page asked for, 1 for anything that is not a page number.

    A number past any offset the database takes (a 64-bit integer) is no page
    at all: 404, where SQLite would raise an overflow.
    """
    if not (value.isascii() and value.isdigit()):
        return 1
    if len(value) > len(str(MAX_SIDEBAR_PAGE)) or int(value) > MAX_SIDEBAR_PAGE:
        raise Http404
    return max(1, int(value))


def sidebar(request: AuthenticatedHttpRequest):
    """A page of sidebar rows; the last row of each loads the next when it scrolls into view."""
    number = sidebar_page_number(request.GET.get("page", "1"))
    return render(request, f"{SIDEBAR}#sidebar-page", sidebar_page(request, number, request.GET.get("after", "")))


def sidebar_item(request: AuthenticatedHttpRequest, conversation_id):
    """One row as it stands, e.g. when a rename is cancelled."""
    conversation = get_conversation_for(request.user, conversation_id)
    context = {"conversation": conversation, "current_id": current_conversation_id(request)}
    return render(request, f"{SIDEBAR}#conversation-item", context)


def rename(request: AuthenticatedHttpRequest, conversation_id):
    """GET: the row becomes a small form. POST: the new title, or the form again with what is wrong."""
    conversation = get_conversation_for(request.user, conversation_id)
    form = RenameForm(request.POST or None, initial={"title": conversation.title})
    if request.method == "POST" and form.is_valid():
        conversation.title = form.cleaned_data["title"]
        conversation.save(update_fields=["title"])  # not activity: the row keeps its place
        context = {"conversation": conversation, "current_id": current_conversation_id(request)}
        return render(request, f"{SIDEBAR}#renamed", context)
    return render(request, f"{SIDEBAR}#rename-form", {"conversation": conversation, "form": form})


@require_POST
def pin(request: AuthenticatedHttpRequest, conversation_id):
    conversation = get_conversation_for(request.user, conversation_id)
    conversation.set_pinned(request.POST.get("pinned") == "1")
    return sidebar_list(request)


@require_POST
def delete(request: AuthenticatedHttpRequest, conversation_id):
    """Into the trash, after stopping an answer still streaming: nobody would watch it finish."""
    conversation = get_conversation_for(request.user, conversation_id)
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        async_to_sync(generation.stop)(conversation.pk)
    conversation.move_to_trash()
    if request.htmx and current_conversation_id(request) != conversation.pk:
        return sidebar_list(request, trashed=conversation)
    messages.success(
        request,
        _("“%(title)s” is in the trash. You can restore it from there for %(days)d days.")
        % {"title": conversation.title or _("New chat"), "days": TRASH_DAYS},
    )
    if request.htmx:  # the page on screen shows the conversation just deleted
        return HttpResponseClientRedirect(reverse("conversation_list"))
    return redirect("conversation_list")


@require_POST
def restore(request: AuthenticatedHttpRequest, conversation_id):
    conversation = get_conversation_for(request.user, conversation_id, in_trash=True)
    conversation.restore()
    if request.htmx:  # the sidebar's Undo
        return sidebar_list(request)
    messages.success(request, _("“%(title)s” is back.") % {"title": conversation.title or _("New chat")})
    return redirect("conversation", conversation_id=conversation.pk)


# --- The trash ---------------------------------------------------------------------


def trash(request: AuthenticatedHttpRequest):
    # Past their time, this member's are deleted now; `manage.py purge_trash` does it for everyone.
    Conversation.objects.visible_to(request.user).due_for_purge().delete()
    conversations = Conversation.objects.visible_to(request.user).in_trash().order_by("-deleted_at")
    return render(request, "chat/library/trash.html", {"conversations": conversations, "trash_days": TRASH_DAYS})


# --- An answer's details -----------------------------------------------------------


def message_details(request: AuthenticatedHttpRequest, conversation_id, message_id):
    """Tokens, cost, timings, model and parameters of one answer; loaded when its Details open."""
    conversation = get_conversation_for(request.user, conversation_id)
    message = get_object_or_404(conversation.messages, pk=message_id, role=Message.Role.ASSISTANT)
    price = Price.objects.in_force(message.model, message.created_at)
    context = {"message": message, "price": price, "cost": price.cost_of(message) if price else None}
    return render(request, "chat/library/details.html#message-details", context)
