from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.crypto import UndecryptableSecret
from accounts.models import ApiKey


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored API key under the first key in MIMOWEB_ENCRYPTION_KEYS, "
        "so that older encryption keys can then be removed."
    )

    def handle(self, *args, **options):
        # All or nothing: a key that cannot be opened stops the run before any
        # row changes, so no key is left behind under a key about to be removed.
        try:
            with transaction.atomic():
                keys = list(ApiKey.objects.select_for_update().order_by("pk"))
                for key in keys:
                    key.reencrypt()
        except UndecryptableSecret as e:
            raise CommandError(f"API key {key}: {e} Nothing was changed.") from None
        self.stdout.write(f"Re-encrypted {len(keys)} API keys under the newest encryption key.")
