import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import ApiKey, Membership, Team, User

DEMO_USERNAME = "demo"
# The fake server accepts any sk- key; this one says where it came from.
DEMO_SECRET = "sk-offline-demo-key-0000"


class Command(BaseCommand):
    help = (
        "What `make run` says before it serves: with MIMOWEB_DEMO on, prepare the demo team, "
        "its key for the fake MiMo server and a demo sign-in; otherwise, while nobody can "
        "sign in, how to create the first administrator."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fake-mimo-url", default="http://127.0.0.1:8765", help="where the demo's fake MiMo listens")
        parser.add_argument("--site-url", default="http://127.0.0.1:8000")

    def handle(self, *args, fake_mimo_url, site_url, **options):
        if settings.MIMOWEB_DEMO:
            password = self.prepare_demo(fake_mimo_url)
            self.stdout.write(
                f"\nOffline demo: a fake MiMo server at {fake_mimo_url} stands in for MiMo.\n"
                f"Sign in at {site_url}/ as “{DEMO_USERNAME}” with the password {password}\n"
                "(a new password on every start).\n"
            )
        elif not User.objects.exists():
            self.stdout.write(
                "\nNobody can sign in yet. Create the first administrator in another terminal:\n\n"
                "    .venv/bin/python manage.py createsuperuser\n\n"
                "or without questions:\n\n"
                "    DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_EMAIL=admin@example.com \\\n"
                "    DJANGO_SUPERUSER_PASSWORD='choose-a-long-one' .venv/bin/python manage.py createsuperuser --no-input\n\n"
                "Or try mimoweb with no MiMo account: MIMOWEB_DEMO=1 make run\n"
            )

    def prepare_demo(self, fake_mimo_url):
        team, _created = Team.objects.get_or_create(name="Demo")
        user = User.objects.filter(username=DEMO_USERNAME).first() or User(username=DEMO_USERNAME)
        user.is_staff = user.is_superuser = True  # so the demo shows the key admin too
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.save()
        Membership.objects.update_or_create(team=team, user=user, defaults={"role": Membership.Role.ADMIN})
        key = ApiKey.objects.filter(team=team, label="Fake MiMo").first() or ApiKey(team=team, label="Fake MiMo", created_by=user)
        key.base_url = fake_mimo_url
        key.revoked_at = None
        key.set_secret(DEMO_SECRET)
        key.full_clean()
        key.save()
        return password
