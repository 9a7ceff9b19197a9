from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import PreferencesForm
from accounts.http import AuthenticatedHttpRequest
from chat.models import Conversation
from chat.views.conversations import recommended_system_prompt


def start(request: AuthenticatedHttpRequest):
    """Where signing in and the site's address lead: a new chat, ready to type in.

    The member's newest empty chat is opened again rather than a new one made, so that
    coming back to the site over and over does not fill the sidebar with empty chats.
    """
    membership = request.user.memberships.select_related("team").order_by("joined_at").first()
    if membership is None:
        return redirect("home")  # Home says how to join a team
    empty = request.user.conversations.not_in_trash().filter(title="", messages__isnull=True)
    conversation = empty.order_by("-updated_at").first() or Conversation.objects.create(
        owner=request.user, team=membership.team, system_prompt=recommended_system_prompt()
    )
    return redirect("conversation", conversation_id=conversation.pk)


def home(request: AuthenticatedHttpRequest):
    memberships = request.user.memberships.select_related("team").order_by("team__name")
    return render(request, "accounts/home.html", {"memberships": memberships})


def preferences(request: AuthenticatedHttpRequest):
    form = PreferencesForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        response = redirect("preferences")
        set_language_cookie(response, request.user.language)
        messages.success(request, _("Your preferences are saved."))
        return response
    return render(request, "accounts/preferences.html", {"form": form})


@login_not_required
@require_POST
def set_language(request):
    """Switch the interface language; a signed-in user keeps the choice on their account."""
    language = request.POST.get("language", "")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = "/"
    response = redirect(next_url)
    if language in dict(settings.LANGUAGES):
        if request.user.is_authenticated:
            request.user.language = language
            request.user.save(update_fields=["language"])
        set_language_cookie(response, language)
    return response


def set_language_cookie(response, language):
    if language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=365 * 24 * 3600,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            secure=settings.LANGUAGE_COOKIE_SECURE,
            httponly=True,
        )


@login_not_required
@require_GET
def healthz(request):
    """For load balancers and the container's HEALTHCHECK: the app answers and reaches its database."""
    connection.ensure_connection()
    return HttpResponse("ok", content_type="text/plain")
