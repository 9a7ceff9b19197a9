from django.core.management.base import BaseCommand

from accounts.models import User


class Command(BaseCommand):
    help = "Say how to create the first administrator when nobody can sign in yet (used by `make run`)."

    def handle(self, *args, **options):
        if User.objects.exists():
            return
        self.stdout.write(
            "\nNobody can sign in yet. Create the first administrator in another terminal:\n\n"
            "    .venv/bin/python manage.py createsuperuser\n\n"
            "or without questions:\n\n"
            "    DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_EMAIL=admin@example.com \\\n"
            "    DJANGO_SUPERUSER_PASSWORD='choose-a-long-one' .venv/bin/python manage.py createsuperuser --no-input\n"
        )
