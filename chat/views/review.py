"""Review: reviewers read their team's conversations read-only, and each opening leaves a record its owner sees."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import prefetch_related_objects
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.http import AuthenticatedHttpRequest
from accounts.models import Membership, Team, get_team_administered_by
from chat import generation
from chat.forms import ReviewFilterForm, ReviewReasonForm, SendForm, TeamReviewForm
from chat.models import Conversation, ReviewAccess, get_conversation_for_review

CONVERSATIONS_PER_PAGE = 50
MESSAGES_PER_PAGE = 100
ACCESSES_PER_PAGE = 50


def review_list(request: AuthenticatedHttpRequest):
    """The conversations a reviewer may open, with filters; titles and counts only, never contents."""
    if not request.user.is_reviewer:
        raise PermissionDenied
    teams = Team.objects.reviewable_by(request.user)
    conversations = Conversation.objects.reviewable_by(request.user)
    form = ReviewFilterForm(teams, conversations, request.GET or None)
    conversations = conversations.with_counts().select_related("owner", "team").order_by("-updated_at", "pk")
    if form.is_valid():
        conversations = form.filter(conversations)
    page = Paginator(conversations, CONVERSATIONS_PER_PAGE).get_page(request.GET.get("page"))
    filters = request.GET.copy()
    filters.pop("page", None)
    switched_off = request.user.memberships.filter(role=Membership.Role.REVIEWER, team__review_enabled=False)
    return render(
        request,
        "chat/review/list.html",
        {
            "form": form,
            "page": page,
            "filters": filters.urlencode(),
            "switched_off_teams": [membership.team for membership in switched_off.select_related("team")],
        },
    )


def review_reason(request: AuthenticatedHttpRequest, conversation_id):
    """Ask why; the reason is recorded before anything of the conversation is shown."""
    conversation = get_conversation_for_review(request.user, conversation_id)
    form = ReviewReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        ReviewAccess.record(conversation, request.user, form.cleaned_data["reason"])
        return redirect("review_conversation", conversation_id=conversation.pk)
    return render(request, "chat/review/reason.html", {"conversation": conversation, "form": form})


def review_conversation(request: AuthenticatedHttpRequest, conversation_id):
    """Every message, every version, read-only, while a recorded reason covers this reviewer."""
    conversation = get_conversation_for_review(request.user, conversation_id)
    access = ReviewAccess.objects.covering(request.user, conversation).first()
    if access is None:
        return redirect("review_reason", conversation_id=conversation.pk)
    page = Paginator(conversation.messages.order_by("created_at", "id"), MESSAGES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    prefetch_related_objects(page.object_list, "tool_calls", "citations", "attachments")
    items = [
        generation.message_context(message) | {"parameters": readable_parameters(message.parameters)}
        for message in page.object_list
    ]
    return render(
        request,
        "chat/review/conversation.html",
        {"conversation": conversation, "access": access, "page": page, "items": items, "read_only": True},
    )


def readable_parameters(parameters):
    """An answer's request settings as (label, value) pairs a reviewer reads: "Thinking: on", not "thinking: True".

    Labelled as the composer labels the same settings (SendForm): thinking, web search and the sampling.
    """
    rows = []
    for name, value in parameters.items():
        if isinstance(value, bool):
            value = _("on") if value else _("off")
        field = SendForm.base_fields.get(name)
        rows.append((field.label if field else name, value))
    return rows


def review_accesses(request: AuthenticatedHttpRequest):
    """Who read my conversations: every review opening of a conversation of mine."""
    accesses = ReviewAccess.objects.filter(owner=request.user).select_related("reviewer", "team", "conversation")
    page = Paginator(accesses, ACCESSES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "chat/review/accesses.html", {"page": page})


def team_review_settings(request: AuthenticatedHttpRequest, team_id):
    """A team admin switches review of the team's conversations on or off."""
    team = get_team_administered_by(request.user, team_id)
    # Not `request.POST or None`: an unticked box is left out of the POST, which may then be empty.
    form = TeamReviewForm(request.POST if request.method == "POST" else None, instance=team)
    if request.method == "POST" and form.is_valid():
        form.save()
        if team.review_enabled:
            messages.success(request, _("Reviewers of %(team)s may open its conversations again.") % {"team": team})
        else:
            messages.success(request, _("Review is off for %(team)s: its reviewers see nothing.") % {"team": team})
        return redirect("team_review_settings", team_id=team.pk)
    return render(request, "chat/review/team.html", {"team": team, "form": form})
