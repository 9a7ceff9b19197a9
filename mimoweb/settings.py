"""mimoweb settings: everything comes from the environment, with defaults that need nothing installed.

With no variable set, mimoweb runs on one process with SQLite and the in-memory
channel layer, keeping its generated secrets in the data folder. A deployment
sets the variables README lists; each secret can also be read from a file named
by the same variable with `_FILE` appended (Docker and Kubernetes secrets).
"""

import errno
import json
import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from mimoweb.proxies import trusted_networks

BASE_DIR = Path(__file__).resolve().parent.parent


# --- Reading the environment -------------------------------------------------


def env_bool(name, default):
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1, 0, true or false, not {value!r}.")


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_list(name, default=()):
    value = env_secret(name)
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or list(default)


def env_secret(name, default=""):
    """A secret from NAME, or from the file that NAME_FILE points to."""
    if path := os.environ.get(f"{name}_FILE"):
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {e.strerror}.") from None
    return os.environ.get(name, default).strip()


def writable_data_dir():
    """The data folder, made if missing; a clear stop where this user may not write it
    (a container's volume or host folder that belongs to another user)."""
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        if not os.access(DATA_DIR, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        raise ImproperlyConfigured(
            f"MIMOWEB_DATA_DIR: this user (uid {os.getuid()}) cannot write {DATA_DIR} ({e.strerror}). "
            "Make it writable, point MIMOWEB_DATA_DIR at a folder that is, or set SECRET_KEY, "
            "MIMOWEB_ENCRYPTION_KEYS and DATABASE_URL, which need no data folder."
        ) from None


def generated_secret(path, make):
    """Read a generated secret from the data folder, creating it (mode 0600) on first use.

    This is what lets `make run` work with nothing configured while a restart
    keeps sessions valid and stored API keys readable.
    """
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):  # made below, or a clear error says why not
        pass
    writable_data_dir()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(make() + "\n")
    return path.read_text().strip()


# --- Core ---------------------------------------------------------------------

# Where the embedded defaults keep their state: the SQLite database and the
# generated secrets. Production sets everything explicitly and needs no data folder.
DATA_DIR = Path(os.environ.get("MIMOWEB_DATA_DIR", BASE_DIR / "data"))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY") or generated_secret(
    DATA_DIR / "secret_key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",  # first, so that runserver serves ASGI (websockets included)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "accounts",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.middleware.UserPreferencesMiddleware",
    "accounts.middleware.PasswordChangeRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "mimoweb.urls"
ASGI_APPLICATION = "mimoweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database -----------------------------------------------------------------

# SQLite in the data folder unless DATABASE_URL names a PostgreSQL server.
if database_url := env_secret("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(database_url, conn_max_age=60, conn_health_checks=True)}
else:
    writable_data_dir()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            # The live-server tests run daphne in a second process, which
            # cannot see an in-memory test database.
            "TEST": {"NAME": DATA_DIR / "test.sqlite3"},
            # Kept open: the websockets' and streams' database work all runs in one
            # thread (Channels' database_sync_to_async), and opening a connection per
            # call (2 ms each, ten calls an answer) was most of what 100 answers
            # starting at once waited for. Connections of HTTP requests, each in a
            # thread of its own under ASGI, are closed when the request ends
            # (chat/signals.py).
            "CONN_MAX_AGE": None,
            "CONN_HEALTH_CHECKS": True,
            # WAL lets pages read while a stream writes; with WAL, synchronous=NORMAL
            # is still crash-safe and saves an fsync per write.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                # SQLite's busy timeout: a write waits this many seconds for the database's one
                # lock, then is refused ("database is locked"). Writers keep transactions far
                # shorter (an import commits every 100 messages); a refused final save of an
                # answer is tried again (chat/generation.py).
                "timeout": 5,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Channel layer ------------------------------------------------------------

# In memory on one process; Redis when several daphne processes share the work.
if redis_url := env_secret("REDIS_URL"):
    # A socket waits on its channel with Redis' BZPOPMIN for 5 s at a time; redis-py 8
    # gives up reading after 5 s by default, so an idle socket would die in the race.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 15}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The most one websocket message may hold. daphne means its limit for what comes in, but
# autobahn under it applies the same limit to what goes out, and the snapshot or the
# finished code block of a long answer is several MB of HTML: at daphne's 1 MiB, such a
# frame was refused and the socket got nothing more. What comes in is a composer's form,
# from signed-in members only. `manage.py runserver` reads these; the Dockerfile passes
# the same figure to daphne.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 16 * 1024 * 1024

# The most an HTTP request body may hold: for the paths in MIMOWEB_BODY_LIMITS (regular
# expressions) their figure, for any other path MIMOWEB_BODY_LIMIT. A larger body is refused
# (413) as it arrives, before it is kept anywhere (mimoweb/body_limits.py). Pages' forms are
# small (Django refuses form fields over 2.5 MB anyway); only uploads need more.
MIMOWEB_BODY_LIMIT = 4 * 1024 * 1024
MIMOWEB_BODY_LIMITS = {
    # An export of at most 128 MiB (a zip with files, MAX_IMPORT_ARCHIVE_BYTES in chat/transfer.py;
    # a JSON file alone, MAX_IMPORT_BYTES, is at most 20 MiB) and the rest of its form.
    r"/chats/import/": 129 * 1024 * 1024,
    # (Attachments' uploads: see Attachments below.)
}


# --- Accounts and sign-in -----------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "start"  # a new chat: what a member signs in for
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Failed sign-ins within the window that lock an account, or an address, for the window.
MIMOWEB_SIGNIN_WINDOW_MINUTES = env_int("MIMOWEB_SIGNIN_WINDOW_MINUTES", 15)
MIMOWEB_SIGNIN_FAILURES_PER_ACCOUNT = env_int("MIMOWEB_SIGNIN_FAILURES_PER_ACCOUNT", 5)
MIMOWEB_SIGNIN_FAILURES_PER_ADDRESS = env_int("MIMOWEB_SIGNIN_FAILURES_PER_ADDRESS", 20)

# The proxies (addresses or networks) whose X-Forwarded-For names the client
# (mimoweb/proxies.py). Empty: the address is the connection's, whatever the headers say.
try:
    MIMOWEB_TRUSTED_PROXIES = trusted_networks(env_list("MIMOWEB_TRUSTED_PROXIES"))
except ValueError as e:
    raise ImproperlyConfigured(f"MIMOWEB_TRUSTED_PROXIES: {e}.") from None


# --- API key encryption -------------------------------------------------------


def fernet_keys(value):
    """The Fernet keys in a comma list, newest first; a malformed one is a clear error."""
    keys = [key.strip() for key in value.split(",") if key.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"MIMOWEB_ENCRYPTION_KEYS: key number {position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes, as made by "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`).'
            ) from None
    return keys


# MiMo API keys are encrypted with keys of their own, never with SECRET_KEY.
# The first key encrypts, all of them decrypt: put a new key first, keep the
# old ones until `manage.py reencrypt_keys` has run.
MIMOWEB_ENCRYPTION_KEYS = fernet_keys(
    env_secret("MIMOWEB_ENCRYPTION_KEYS")
    or generated_secret(DATA_DIR / "encryption_key", lambda: Fernet.generate_key().decode())
)

# Hosts a custom base URL may point at even though they resolve to a private,
# loopback or link-local address (a proxy on the LAN, the fake MiMo server of
# the tests and the demo). Only these may also use plain http.
MIMOWEB_UPSTREAM_ALLOWED_HOSTS = env_list("MIMOWEB_UPSTREAM_ALLOWED_HOSTS")

# Names this instance's pid space (a container) when several hosts or containers share the
# database: a restarted container then frees at once the answers its predecessor left
# streaming (chat/processes.py). One name per container, never two running under one name.
MIMOWEB_INSTANCE_NAME = os.environ.get("MIMOWEB_INSTANCE_NAME", "").strip()

# The offline demo (`MIMOWEB_DEMO=1 make run`): the fake MiMo server on
# loopback stands in for MiMo, so loopback must be an allowed upstream.
MIMOWEB_DEMO = env_bool("MIMOWEB_DEMO", False)
if MIMOWEB_DEMO:
    MIMOWEB_UPSTREAM_ALLOWED_HOSTS.append("127.0.0.1")


# --- Languages and time -------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("zh-hans", "简体中文"),
    ("zh-hant", "繁體中文"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
# One date and number format per language, over Django's own (mimoweb/formats/).
FORMAT_MODULE_PATH = ["mimoweb.formats"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_TZ = True


# --- Static files -------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:  # no collectstatic needed while developing
    STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"


# --- Attachments --------------------------------------------------------------

# Files members attach (chat/attachments.py), stored once per content and never public: only
# chat/views/attachments.py serves them, to whoever may see their conversation. By default in
# the data folder; several hosts share one store (S3 through django-storages, README): name its
# backend in MIMOWEB_ATTACHMENT_STORAGE and its options as a JSON object (which may hold a secret,
# hence _FILE) in MIMOWEB_ATTACHMENT_STORAGE_OPTIONS.
try:
    attachment_storage_options = json.loads(env_secret("MIMOWEB_ATTACHMENT_STORAGE_OPTIONS") or "{}")
except ValueError as e:
    raise ImproperlyConfigured(f"MIMOWEB_ATTACHMENT_STORAGE_OPTIONS is not a JSON object: {e}.") from None
if not isinstance(attachment_storage_options, dict):
    raise ImproperlyConfigured("MIMOWEB_ATTACHMENT_STORAGE_OPTIONS must be a JSON object.")
STORAGES["attachments"] = {
    "BACKEND": env_secret("MIMOWEB_ATTACHMENT_STORAGE") or "django.core.files.storage.FileSystemStorage",
    "OPTIONS": attachment_storage_options
    or {
        "location": DATA_DIR / "attachments",
        "file_permissions_mode": 0o600,
        "directory_permissions_mode": 0o700,
    },
}

# The most one attached file may hold. 32 MiB is 43 MiB once base64-encoded, within the 50 MB
# MiMo takes inline (mimo-api.md §5.3); a larger setting still sends no image, audio or video over that.
MIMOWEB_ATTACHMENT_MAX_BYTES = env_int("MIMOWEB_ATTACHMENT_MAX_BYTES", 32 * 1024 * 1024)
# An upload request holds one such file, or several smaller ones, and its form around them.
MIMOWEB_BODY_LIMITS[r"/chats/[0-9a-f-]+/attachments/"] = MIMOWEB_ATTACHMENT_MAX_BYTES + 1024 * 1024


# --- Security -----------------------------------------------------------------

# Model output is untrusted: no inline script, no eval, nothing from elsewhere.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    # Said outright, not left to default-src: a question's audio and video players play our own files.
    "media-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"

# Behind TLS (a reverse proxy that sets X-Forwarded-Proto): secure cookies,
# redirect to https, HSTS. Off by default so `make run` works on plain http.
MIMOWEB_HTTPS = env_bool("MIMOWEB_HTTPS", False)
if MIMOWEB_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container's own health check speaks plain http
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)


# --- Logging ------------------------------------------------------------------

# Everything to the console, where daphne, Docker and systemd collect it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"one_line_for_client_errors": {"()": "mimoweb.logs.OneLineForClientErrors"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["one_line_for_client_errors"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs every request URL at INFO; keep the noise, and any URL, out.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
