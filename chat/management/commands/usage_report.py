"""Prints a month's usage as CSV: one row per day × team × model × member × key, with tokens and cost."""

import re

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Team
from chat import usage


class Command(BaseCommand):
    help = (
        "Prints a calendar month's usage as CSV to standard output: one row per day, team, model, member and key, "
        "with the token columns and the cost at the price in force when each answer ran. "
        "Days are in the server's time zone (TIME_ZONE)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="The month, as YYYY-MM (e.g. 2026-11).")
        parser.add_argument("--team", help="Only this team (its name); every team by default.")

    def handle(self, *args, month, team=None, **options):
        match = re.fullmatch(r"(\d{4})-(\d{2})", month)
        if not match or not 1 <= int(match[2]) <= 12:
            raise CommandError(f"--month must be a year and a month like 2026-11, not {month!r}.")
        chosen = None
        if team is not None:
            chosen = Team.objects.filter(name=team).first()
            if chosen is None:
                raise CommandError(f"There is no team named {team!r}.")
        records = usage.month_records(int(match[1]), int(match[2]), team=chosen)
        usage.write_csv(self.stdout, records, with_team=True)
