from django.core.management.base import BaseCommand, CommandError

from chat import usage


class Command(BaseCommand):
    help = (
        "Check the usage roll-ups (what budgets and usage pages read) against the answers they sum, or make them "
        "again from the answers. Saves keep them in step; --rebuild is for rows written around them (a restored "
        "backup, a bulk load) or after TIME_ZONE changed, since their days are in the server's time zone."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--check", action="store_true", help="Print every group where they differ; exit 1 if any does.")
        action.add_argument("--rebuild", action="store_true", help="Delete them and make them again from the answers.")

    def handle(self, *args, check, rebuild, **options):
        if rebuild:
            count = usage.rebuild_rollups()
            self.stdout.write(f"Rebuilt the usage roll-ups: {count} rows.")
            return
        differences = usage.rollup_differences()
        names = ", ".join(usage.SUMS)
        for group, kept, raw in differences:
            where = ", ".join(f"{name}={value}" for name, value in zip(usage.GROUP, group))
            self.stdout.write(f"{where}: roll-ups ({names}) {kept}, answers {raw}")
        if differences:
            raise CommandError(
                f"{len(differences)} roll-up group(s) differ from the answers; `manage.py usage_rollups --rebuild` fixes them."
            )
        self.stdout.write("The usage roll-ups match the answers.")
