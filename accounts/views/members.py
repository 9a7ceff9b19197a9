"""Team administration: the team's page, its members and their roles, invitation links and one-time passwords."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.forms import InvitationForm, InvitationSignUpForm, MemberRoleForm, NewMemberForm
from accounts.http import AuthenticatedHttpRequest
from accounts.models import (
    Invitation,
    Membership,
    get_invitation_administered_by,
    get_membership_administered_by,
    get_team_administered_by,
)

MEMBERS = "accounts/team/members.html"


def team(request: AuthenticatedHttpRequest, team_id):
    """The team admin's hub: links to members, keys, usage, limits and review settings."""
    team = get_team_administered_by(request.user, team_id)
    counts = {"members": team.memberships.count(), "invitations": team.invitations.open().count()}
    return render(request, "accounts/team/team.html", {"team": team, **counts})


# --- Members -----------------------------------------------------------------------


def member_row(membership, error="", saved=False):
    form = MemberRoleForm(instance=membership, prefix=f"member-{membership.pk}")
    return {"membership": membership, "form": form, "error": error, "saved": saved}


def render_member_row(request, membership, error="", saved=False):
    context = {"team": membership.team, "row": member_row(membership, error, saved)}
    return render(request, f"{MEMBERS}#member-row", context)


def render_members(request, team, invite_form=None, status=200):
    invitations = team.invitations.open().select_related("created_by")
    for invitation in invitations:
        invitation.url = request.build_absolute_uri(reverse("invitation", args=[invitation.token]))
    memberships = team.memberships.select_related("user").order_by("user__username")
    context = {
        "team": team,
        "rows": [member_row(membership) for membership in memberships],
        "invitations": invitations,
        "invite_form": invite_form or InvitationForm(),
    }
    return render(request, MEMBERS, context, status=status)


def members(request: AuthenticatedHttpRequest, team_id):
    team = get_team_administered_by(request.user, team_id)
    return render_members(request, team)


@require_POST
def change_role(request: AuthenticatedHttpRequest, team_id, membership_id):
    """Answers htmx with the member's row (showing any refusal in it), a plain POST with the page."""
    membership = get_membership_administered_by(request.user, team_id, membership_id)
    form = MemberRoleForm(request.POST, prefix=f"member-{membership.pk}")
    error = ""
    if not form.is_valid():
        error = _("Choose member, reviewer or team admin.")
    else:
        try:
            membership.change_role(form.cleaned_data["role"])
        except ValidationError as e:
            error = e.messages[0]
    if not error and membership.user == request.user and membership.role != Membership.Role.ADMIN:
        # Their own admin rights are gone, and this page with them.
        messages.success(request, _("You are no longer team admin of %(team)s.") % {"team": membership.team})
        return leave_for_home(request)
    if request.htmx:
        membership.refresh_from_db()
        return render_member_row(request, membership, error, saved=not error)
    if error:
        messages.error(request, error)
    else:
        messages.success(
            request,
            _("%(user)s is now %(role)s.") % {"user": membership.user.get_username(), "role": membership.get_role_display()},
        )
    return redirect("team_members", team_id=membership.team_id)


def remove_member(request: AuthenticatedHttpRequest, team_id, membership_id):
    """GET asks for confirmation; POST removes the membership only, never the member's conversations."""
    membership = get_membership_administered_by(request.user, team_id, membership_id)
    if request.method != "POST":
        return render(request, "accounts/team/remove_member.html", {"team": membership.team, "membership": membership})
    try:
        membership.remove(actor=request.user)
    except ValidationError as e:
        if request.htmx:
            return render_member_row(request, membership, e.messages[0])
        messages.error(request, e.messages[0])
        return redirect("team_members", team_id=membership.team_id)
    done = _("%(user)s is no longer in %(team)s. Their conversations are kept.") % {
        "user": membership.user.get_username(),
        "team": membership.team,
    }
    if membership.user == request.user:
        messages.success(request, done)
        return leave_for_home(request)
    if request.htmx:
        return render(request, f"{MEMBERS}#member-removed", {"done": done})
    messages.success(request, done)
    return redirect("team_members", team_id=membership.team_id)


def leave_for_home(request):
    """After an admin demoted or removed themselves: the team's pages are no longer theirs."""
    return HttpResponseClientRedirect(reverse("home")) if request.htmx else redirect("home")


# --- Invitations ---------------------------------------------------------------------


@require_POST
def create_invitation(request: AuthenticatedHttpRequest, team_id):
    team = get_team_administered_by(request.user, team_id)
    form = InvitationForm(request.POST, instance=Invitation(team=team, created_by=request.user))
    if not form.is_valid():
        return render_members(request, team, invite_form=form, status=400)
    form.save()
    messages.success(request, _("The invitation link is ready: copy it from the list of open invitations."))
    return redirect("team_members", team_id=team.pk)


@require_POST
def revoke_invitation(request: AuthenticatedHttpRequest, team_id, invitation_id):
    invitation = get_invitation_administered_by(request.user, team_id, invitation_id)
    invitation.revoke()
    messages.success(request, _("The invitation link is withdrawn: it no longer works."))
    return redirect("team_members", team_id=invitation.team_id)


def closed_invitation(request, invitation, status=410):
    return render(request, "accounts/team/invitation_closed.html", {"invitation": invitation}, status=status)


@login_not_required
@sensitive_post_parameters("password1", "password2")
@never_cache
def invitation(request, token):
    """The link an invited colleague opens: create an account, or join with the one they are signed in to."""
    invitation = Invitation.objects.select_related("team").filter(token=token).first()
    if invitation is None:
        return closed_invitation(request, None, status=404)
    if not invitation.is_open:
        return closed_invitation(request, invitation)
    if request.user.is_authenticated:
        return join_with_account(request, invitation)
    form = InvitationSignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():  # a used-up link leaves no account behind
                user = form.save()
                invitation.accept(user)
        except ValidationError:
            return closed_invitation(request, invitation)
        login(request, user)
        messages.success(request, _("Welcome to %(team)s.") % {"team": invitation.team})
        return redirect("home")
    return render(request, "accounts/team/invitation.html", {"invitation": invitation, "form": form})


def join_with_account(request: AuthenticatedHttpRequest, invitation):
    already = invitation.team.memberships.filter(user=request.user).exists()
    if request.method == "POST" and not already:
        try:
            invitation.accept(request.user)
        except ValidationError as e:
            if e.code == "closed":
                return closed_invitation(request, invitation)
            already = True
        else:
            messages.success(request, _("You are now a member of %(team)s.") % {"team": invitation.team})
            return redirect("home")
    return render(request, "accounts/team/invitation.html", {"invitation": invitation, "already": already})


# --- One-time passwords ----------------------------------------------------------------


@never_cache
@sensitive_variables("password")
def create_member(request: AuthenticatedHttpRequest, team_id):
    """The admin creates the account; its one-time password is shown on this response only, never again."""
    team = get_team_administered_by(request.user, team_id)
    form = NewMemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save(commit=False)
            password = user.set_one_time_password()
            user.save()
            Membership.objects.create(team=team, user=user, role=form.cleaned_data["role"])
        return render(request, "accounts/team/member_created.html", {"team": team, "member": user, "password": password})
    return render(request, "accounts/team/new_member.html", {"team": team, "form": form}, status=400 if form.errors else 200)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, which also lifts the must-change flag of a one-time password."""

    def form_valid(self, form):
        form.user.must_change_password = False  # saved by the form, with the new password
        return super().form_valid(form)
