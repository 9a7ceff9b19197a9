"""mimoweb's own settings for a daphne process that a fault test starts, on the test's database
and with what tests/conftest.py changes for every test's server."""

import os

from mimoweb.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["MIMOWEB_FAULTS_DATABASE"]  # noqa: F405
# No collectstatic before tests: static files are served as they lie in static/.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# The fake MiMo server listens on loopback.
MIMOWEB_UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
