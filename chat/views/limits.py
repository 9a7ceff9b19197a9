"""The team admin's budgets and pace: the team's limits, each member's own, and the meters this month."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.http import AuthenticatedHttpRequest
from accounts.models import get_team_administered_by
from chat import limits
from chat.forms import MemberLimitsForm, TeamLimitsForm


def team_limits(request: AuthenticatedHttpRequest, team_id):
    team = get_team_administered_by(request.user, team_id)
    # Measured before the forms are bound: a form writes what it was sent onto its instance, saved or not.
    tokens, cost, team_meters = limits.team_usage(team)
    memberships = list(team.memberships.select_related("user").order_by("user__username"))
    rows = limits.member_rows(team, memberships)
    data = request.POST if request.method == "POST" else None
    team_form = TeamLimitsForm(data, instance=team, prefix="team")
    for row in rows:
        row.form = MemberLimitsForm(data, instance=row.membership, prefix=f"member-{row.membership.pk}")
    forms = [team_form, *(row.form for row in rows)]
    if data is not None and all([form.is_valid() for form in forms]):  # a list: every form shows its errors
        with transaction.atomic():
            for form in forms:
                form.save()
        messages.success(request, _("The limits of %(team)s are saved.") % {"team": team})
        return redirect("team_limits", team_id=team.pk)
    context = {"team": team, "team_form": team_form, "rows": rows, "tokens": tokens, "cost_text": limits.spent(cost)}
    return render(request, "chat/limits/team.html", context | {"team_meters": team_meters, "invalid": data is not None})
