from django.core.management.base import BaseCommand
from django.db import transaction

from chat.models import SearchEntry
from chat.search import rebuild_index


class Command(BaseCommand):
    help = (
        "Index every conversation title and finished message for search anew. Signals keep the index "
        "up to date; this is for rows written around them (a restored backup, a bulk import)."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            rebuild_index()
        self.stdout.write(f"Indexed {SearchEntry.objects.count()} pieces of text for search.")
