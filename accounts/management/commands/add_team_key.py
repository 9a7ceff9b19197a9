"""`manage.py add_team_key`: an operator adds a team key without the web pages.

The secret comes from a file or standard input, never from an argument: arguments
land in shell history and in every process listing.
"""

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from accounts.forms import CUSTOM_URL, TeamKeyForm
from accounts.models import BASE_URL_PRESETS, PAY_AS_YOU_GO_URL, ApiKey, KeyEvent, Team


class Command(BaseCommand):
    stealth_options = ("stdin",)  # as createsuperuser's: tests pass standard input to call_command
    help = (
        "Add a MiMo key to a team. The secret is read from --secret-file PATH, or from standard input "
        "(--secret-file - or no --secret-file): never give it as an argument."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # No abbreviations: `--secret sk-…` must fail, not be read as `--secret-file sk-…`.
        return super().create_parser(prog_name, subcommand, allow_abbrev=False, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--team", required=True, help="the team's name")
        parser.add_argument("--label", required=True, help="what the team's admins will see the key as")
        parser.add_argument("--format", choices=ApiKey.Format.values, default=ApiKey.Format.OPENAI, dest="api_format")
        parser.add_argument("--base-url", default=PAY_AS_YOU_GO_URL, help=f"default {PAY_AS_YOU_GO_URL}")
        parser.add_argument("--default", action="store_true", help="make it the team's default key")
        parser.add_argument("--secret-file", default="-", help="a file holding the key; - (the default) for standard input")

    @sensitive_variables("secret")
    def handle(self, *args, team, label, api_format, base_url, default, secret_file, **options):
        team_name, team = team, Team.objects.filter(name=team).first()
        if team is None:
            raise CommandError(f"There is no team named {team_name!r}. Nothing was changed.")
        secret = self.read_secret(secret_file, options.get("stdin") or sys.stdin)
        presets = {url for url, _label in BASE_URL_PRESETS}
        base_url = base_url.strip().rstrip("/")
        data = {
            "label": label,
            "api_format": api_format,
            "base_url_preset": base_url if base_url in presets else CUSTOM_URL,
            "custom_base_url": "" if base_url in presets else base_url,
            "secret": secret,
        }
        # The web page's form: the same checks of the label, base URL and secret.
        form = TeamKeyForm(data, instance=ApiKey(team=team))
        if not form.is_valid():
            problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
            raise CommandError(f"The key was not added: {problems}")
        with transaction.atomic():
            key = form.save()
            key.record(KeyEvent.Action.ADD, None)
            if default:
                key.make_default(None)
        self.stdout.write(f"Added {key.label} ({key.masked}) to {team}{', as its default key' if default else ''}.")
        for warning in key.warnings():
            self.stderr.write(f"Warning: {warning}")

    def read_secret(self, path, stdin):
        try:
            if path == "-":
                secret = stdin.readline()
            else:
                with open(path, encoding="utf-8") as file:
                    secret = file.readline()
        except OSError as error:
            raise CommandError(f"Cannot read the secret file: {error.strerror}.") from None
        if not secret.strip():
            raise CommandError("No key was given: pass it on standard input or in --secret-file.")
        return secret.strip()
