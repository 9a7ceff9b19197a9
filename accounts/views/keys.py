"""The team's MiMo keys for its admins, each member's personal keys, their tests and audit trail.

Team keys and personal keys share these views: `personal=True` (set by the URL) means the
signed-in member's own keys, which nobody else sees, not even the team's admins.
"""

from datetime import timedelta

import httpx
from asgiref.sync import async_to_sync
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from accounts.crypto import UndecryptableSecret
from accounts.forms import ReplaceSecretForm, TeamKeyForm, TeamKeySettingsForm
from accounts.http import AuthenticatedHttpRequest
from accounts.models import ApiKey, KeyEvent, Membership, get_key_managed_by, get_team_administered_by
from chat import mimo
from chat.mimo.transport import MimoTransport, environment_proxies

# "Error rate over the last day".
HEALTH_WINDOW = timedelta(hours=24)
AUDIT_PAGE_SIZE = 50
# A test that never reached MiMo: the key cannot be opened for its base URL (as chat/generation.py's).
KEY_UNUSABLE = "key_unusable"


def get_team_of_member(user, team_id):
    """The team, if this user belongs to it; anyone else gets a 404."""
    membership = Membership.objects.filter(user=user, team_id=team_id).select_related("team").first()
    if membership is None:
        raise Http404
    return membership.team


def keys_url(key_or_team, personal):
    team_id = key_or_team.team_id if isinstance(key_or_team, ApiKey) else key_or_team.pk
    return redirect("personal_keys" if personal else "team_keys", team_id=team_id)


# -- The list, with the Add form -------------------------------------------------------


@sensitive_post_parameters("secret")
def team_keys(request: AuthenticatedHttpRequest, team_id):
    team = get_team_administered_by(request.user, team_id)
    return keys_page(request, team, personal=False)


@sensitive_post_parameters("secret")
def personal_keys(request: AuthenticatedHttpRequest, team_id):
    team = get_team_of_member(request.user, team_id)
    return keys_page(request, team, personal=True)


def keys_page(request, team, *, personal):
    owner = request.user if personal else None
    form = TeamKeyForm(request.POST or None, instance=ApiKey(team=team, owner=owner, created_by=request.user))
    if request.method == "POST":
        if personal and not team.members_may_add_keys:
            messages.error(request, _("This team does not allow personal keys."))
            return keys_url(team, personal)
        if form.is_valid():
            add_key(request, form)
            return keys_url(team, personal)
    context = {"form": form, "settings_form": None if personal else TeamKeySettingsForm(instance=team)}
    return render(request, "accounts/keys/list.html", keys_context(team, owner, personal) | context)


@sensitive_variables("form")
def add_key(request, form):
    with transaction.atomic():
        key = form.save()
        key.record(KeyEvent.Action.ADD, request.user)
    messages.success(request, _("The key “%(label)s” (%(masked)s) is added.") % {"label": key.label, "masked": key.masked})
    for warning in key.warnings():
        messages.warning(request, warning)


def keys_context(team, owner, personal):
    keys = ApiKey.objects.filter(team=team, owner=owner) if owner else team.api_keys.team_keys()
    keys = list(keys.with_health(timezone.now() - HEALTH_WINDOW).select_related("created_by").order_by("revoked_at", "label", "pk"))
    for key in keys:
        describe_health(key, team)
    return {"team": team, "keys": keys, "personal": personal}


def describe_health(key, team):
    """Words for a key annotated by ApiKeyQuerySet.with_health: its last error and its latest test."""
    key.is_default = key.pk == team.default_key_id and not key.is_revoked
    key.last_test = outcome_in_words(key.last_test_ok, key.last_test_latency_ms, key.last_test_error_kind)
    # The last error is the later of a failed answer and a failed test.
    errors = [(key.last_failed_at, key.last_failed_kind)] if key.last_failed_at else []
    if key.last_test_ok is False:
        errors.append((key.last_test_at, key.last_test_error_kind))
    at, kind = max(errors, default=(None, ""), key=lambda error: error[0])
    key.last_error_at, key.last_error = at, error_in_words(kind) if at else ""


def error_in_words(kind):
    """The error kind's sentence for the person at the keyboard, translated."""
    if kind == KEY_UNUSABLE:
        return _("The key cannot be used: its base URL is no longer allowed, or it must be entered again.")
    try:
        return _(mimo.ErrorKind(kind).message)
    except ValueError:
        return _("Something went wrong on the server.")


def outcome_in_words(succeeded, latency_ms, error_kind):
    if succeeded is None:
        return ""
    if succeeded:
        return _("Works — answered in %(ms)d ms") % {"ms": latency_ms or 0}
    return _("Does not work: %(reason)s") % {"reason": error_in_words(error_kind)}


# -- Settings and one key's actions ------------------------------------------------------


@require_POST
def key_settings(request: AuthenticatedHttpRequest, team_id):
    """The team's default key and what members may do with keys."""
    team = get_team_administered_by(request.user, team_id)
    previous_default = team.default_key_id
    form = TeamKeySettingsForm(request.POST, instance=team)
    if not form.is_valid():
        context = keys_context(team, None, False) | {"form": TeamKeyForm(), "settings_form": form}
        return render(request, "accounts/keys/list.html", context, status=400)
    with transaction.atomic():
        team = form.save()
        if team.default_key_id and team.default_key_id != previous_default:
            team.default_key.record(KeyEvent.Action.DEFAULT, request.user)
        elif previous_default and not team.default_key_id:
            ApiKey.objects.get(pk=previous_default).record(KeyEvent.Action.UNDEFAULT, request.user)
    messages.success(request, _("The team’s key settings are saved."))
    return keys_url(team, False)


@require_POST
def make_default(request: AuthenticatedHttpRequest, team_id, key_id):
    key = get_key_managed_by(request.user, team_id, key_id, personal=False)
    if key.is_revoked:
        messages.error(request, _("A revoked key cannot be the default."))
    elif key.team.default_key_id != key.pk:
        key.make_default(request.user)
        messages.success(request, _("“%(label)s” is now the team’s default key.") % {"label": key.label})
    return keys_url(key, False)


@require_POST
def test_key(request: AuthenticatedHttpRequest, team_id, key_id, personal=False):
    """Runs the client's key check and records it; htmx gets the key's row back, a plain POST a message."""
    key = get_key_managed_by(request.user, team_id, key_id, personal=personal)
    if key.is_revoked:
        messages.error(request, _("A revoked key cannot be tested."))
        return keys_url(key, personal)
    check = run_key_check(key)
    if check is None:
        event = key.record(KeyEvent.Action.TEST, request.user, succeeded=False, latency_ms=0, error_kind=KEY_UNUSABLE)
    else:
        latency_ms, kind = round(check.latency * 1000), check.error.value if check.error else ""
        event = key.record(KeyEvent.Action.TEST, request.user, succeeded=check.ok, latency_ms=latency_ms, error_kind=kind)
    if request.htmx:
        key = ApiKey.objects.with_health(timezone.now() - HEALTH_WINDOW).select_related("created_by").get(pk=key.pk)
        describe_health(key, key.team)
        return render(request, "accounts/keys/list.html#key-row", {"key": key, "team": key.team, "personal": personal})
    words = outcome_in_words(event.succeeded, event.latency_ms, event.error_kind)
    (messages.success if event.succeeded else messages.error)(request, f"{key.label}: {words}")
    return keys_url(key, personal)


@sensitive_variables("secret")
def run_key_check(key):
    """chat.mimo's key check against the key's own base URL and format, checked again first as for an
    answer; None when the key cannot be opened there."""
    try:
        secret = key.secret_for_request()
    except (ValidationError, PermissionError, UndecryptableSecret):
        return None
    return async_to_sync(check_on_own_client)(mimo.Endpoint(key.base_url, secret, mimo.ApiFormat(key.api_format)))


async def check_on_own_client(endpoint):
    # A client of its own, closed at once: async_to_sync may run this on a loop made for it, where
    # the process's pooled client (bound to another loop) cannot go. A test is rare; pooling is not needed.
    # Its transport is the shared client's, which connects to the addresses secret_for_request checked.
    transport = None if environment_proxies() else MimoTransport()
    async with httpx.AsyncClient(transport=transport, headers={"user-agent": "mimoweb"}) as client:
        return await mimo.check_key(endpoint, http_client=client)


@sensitive_post_parameters("secret")
def replace_key(request: AuthenticatedHttpRequest, team_id, key_id, personal=False):
    """Rotation: a new secret for the key; the page without JavaScript, and where a bad secret is explained."""
    key = get_key_managed_by(request.user, team_id, key_id, personal=personal)
    form = ReplaceSecretForm(request.POST or None)
    if key.is_revoked:
        messages.error(request, _("A revoked key cannot get a new secret. Add a new key instead."))
        return keys_url(key, personal)
    if personal and not key.team.members_may_add_keys:
        messages.error(request, _("This team does not allow personal keys."))
        return keys_url(key, personal)
    if request.method == "POST" and form.is_valid():
        key.replace_secret(form.cleaned_data["secret"], request.user)
        messages.success(
            request,
            _("The key “%(label)s” has a new secret (%(masked)s, version %(version)d).")
            % {"label": key.label, "masked": key.masked, "version": key.secret_version},
        )
        for warning in key.warnings():
            messages.warning(request, warning)
        return keys_url(key, personal)
    return render(request, "accounts/keys/replace.html", {"key": key, "form": form, "personal": personal})


def revoke_key(request: AuthenticatedHttpRequest, team_id, key_id, personal=False):
    """GET asks to confirm; POST revokes for good."""
    key = get_key_managed_by(request.user, team_id, key_id, personal=personal)
    if request.method == "POST":
        key.revoke(request.user)
        messages.success(request, _("The key “%(label)s” (%(masked)s) is revoked.") % {"label": key.label, "masked": key.masked})
        return keys_url(key, personal)
    return render(request, "accounts/keys/revoke.html", {"key": key, "personal": personal})


# -- The audit trail ----------------------------------------------------------------------


def key_audit(request: AuthenticatedHttpRequest, team_id):
    """Every add, test, replace, revoke and default change of the team keys, newest first."""
    team = get_team_administered_by(request.user, team_id)
    # Personal keys' rows are their owners' alone (on their own page); a deleted key's rows stay here.
    events = team.key_events.filter(api_key__owner__isnull=True)
    return audit_page(request, team, events, personal=False)


def personal_key_audit(request: AuthenticatedHttpRequest, team_id):
    team = get_team_of_member(request.user, team_id)
    return audit_page(request, team, team.key_events.filter(api_key__owner=request.user), personal=True)


def audit_page(request, team, events, *, personal):
    events = events.select_related("actor").order_by("-at", "-pk")
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    for event in page:
        event.outcome = outcome_in_words(event.succeeded, event.latency_ms, event.error_kind)
    return render(request, "accounts/keys/audit.html", {"team": team, "page": page, "personal": personal})
