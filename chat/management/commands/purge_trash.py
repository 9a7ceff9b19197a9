from django.core.management.base import BaseCommand

from chat.models import TRASH_DAYS, Conversation


class Command(BaseCommand):
    help = (
        f"Deletes for good every conversation that has been in the trash for {TRASH_DAYS} days or more. "
        "Run it daily (cron, a systemd timer); opening the Trash page also purges its owner's."
    )

    def handle(self, *args, **options):
        due = Conversation.objects.due_for_purge()
        count = due.count()
        due.delete()
        self.stdout.write(f"{count} conversation(s) deleted for good.")
