"""Usage and cost pages: a team's for its admins, and each member's own; charts, tables and CSV of one range."""

from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.http import AuthenticatedHttpRequest
from accounts.models import Membership, Team, get_team_administered_by
from chat import usage
from chat.forms import UsageForm

PAGE = "chat/usage/page.html"


def team_usage(request: AuthenticatedHttpRequest, team_id):
    """Tokens and cost of the team's answers per day, stacked by model, member or key, and the tables."""
    team = get_team_administered_by(request.user, team_id)
    form = UsageForm(request.GET, dimensions=usage.TEAM_DIMENSIONS)
    start, end = form.period()
    records = usage.team_records(team, start, end)
    context = usage_context(form, records, start, end, usage.TEAM_DIMENSIONS)
    context |= {
        "heading": _("Usage in %(team)s") % {"team": team},
        "team": team,
        "page_url": reverse("team_usage", args=[team.pk]),
        "csv_url": reverse("team_usage_csv", args=[team.pk]),
    }
    return render_usage(request, context)


def team_usage_csv(request: AuthenticatedHttpRequest, team_id):
    """The rows the team's page is computed from: one per day × model × member × key."""
    team = get_team_administered_by(request.user, team_id)
    start, end = UsageForm(request.GET, dimensions=usage.TEAM_DIMENSIONS).period()
    name = f"usage-{slugify(team.name) or team.pk}-{start}-{end}.csv"
    return csv_response(usage.team_records(team, start, end), name)


def my_usage(request: AuthenticatedHttpRequest):
    """The member's own answers, across their teams or in one, the way team admins see the team's."""
    teams = Team.objects.filter(memberships__user=request.user)
    form = UsageForm(request.GET, dimensions=usage.MEMBER_DIMENSIONS, teams=teams)
    start, end = form.period()
    records = usage.member_records(request.user, start, end, team=form.chosen_team())
    context = usage_context(form, records, start, end, usage.MEMBER_DIMENSIONS)
    context |= {
        "heading": _("My usage"),
        "page_url": reverse("my_usage"),
        "csv_url": reverse("my_usage_csv"),
        "administered": Team.objects.filter(memberships__user=request.user, memberships__role=Membership.Role.ADMIN),
    }
    return render_usage(request, context)


def my_usage_csv(request: AuthenticatedHttpRequest):
    teams = Team.objects.filter(memberships__user=request.user)
    form = UsageForm(request.GET, dimensions=usage.MEMBER_DIMENSIONS, teams=teams)
    start, end = form.period()
    records = usage.member_records(request.user, start, end, team=form.chosen_team())
    return csv_response(records, f"my-usage-{start}-{end}.csv", with_team=True)


def usage_context(form, records, start, end, dimensions):
    """Everything both pages show for these records: totals, one table per dimension, the two charts."""
    by = form.stack_by()
    tables = [{"dimension": usage.DIMENSIONS[name], "rows": usage.table(records, name)} for name in dimensions]
    legend = usage.legend(next(t["rows"] for t in tables if t["dimension"].name == by), by)
    rows, day_rows, days = list(usage.daily(records, by)), list(usage.daily_totals(records)), usage.days_of(start, end)
    query = {"start": start.isoformat(), "end": end.isoformat()}
    if form.chosen_team():
        query["team"] = form.chosen_team().pk
    totals = usage.totals(records)
    return {
        "form": form,
        "start": start,
        "end": end,
        "by": by,
        "totals": totals | {"cost_text": usage.money(totals["total_cost"])},
        "tables": tables,
        "legend": legend,
        "token_chart": usage.chart(rows, day_rows, legend, by, days, cost=False),
        "cost_chart": usage.chart(rows, day_rows, legend, by, days, cost=True),
        "stacks": [
            {"name": name, "heading": usage.DIMENSIONS[name].heading, "query": urlencode(query | {"by": name})}
            for name in dimensions
        ],
        "csv_query": urlencode(query),
    }


def render_usage(request: AuthenticatedHttpRequest, context):
    # A stack switch swaps the charts only; a history restore needs the whole page.
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{PAGE}#usage-charts", context)
    return render(request, PAGE, context)


def csv_response(records, filename, with_team=False):
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    usage.write_csv(response, records, with_team=with_team)
    return response
