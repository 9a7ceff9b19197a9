"""The container image, built and run for real.

`make image` builds it (installing podman and mmdebstrap from Debian's packages where they are
missing); the tests then run `migrate` and the server in it as a deployment would, against this
machine's PostgreSQL (a database of their own, reached over the host's network), and once more
with nothing configured, on SQLite in the image's data volume. Under CI=true they are mandatory;
elsewhere they skip, saying why, when the tools or PostgreSQL are missing.
"""

import json
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI") == "true"
IMAGE = "localhost/mimoweb:test"  # not :latest, which `make image` leaves for people
# The server of `make test`'s PostgreSQL pass, with a database of this test's own.
POSTGRES = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mimoweb")
DATABASE = "mimoweb_image"
HOST = "chat.example.com"
ORIGIN = f"https://{HOST}"  # behind a TLS proxy
PASSWORD = "correct horse battery staple"


def docker_answers():
    return shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def engine_command():
    """How to call the engine `make image` built with (the Makefile says why podman needs these)."""
    if shutil.which("podman"):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        limits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=32768:32768"]
        return ["podman", "--runtime", "runc"], limits
    return ["docker"], []


class Container:
    """One container of the image, run on the host's network."""

    def __init__(self, env, volume=None):
        self.engine, self.limits = engine_command()
        self.name = f"mimoweb-test-{uuid.uuid4().hex[:12]}"
        self.options = [option for name, value in env.items() for option in ("--env", f"{name}={value}")]
        if volume:
            self.options += ["--volume", f"{volume}:/data"]

    def run(self, *command):
        """A one-off command in a container of its own, as `migrate` is run at each release."""
        return self.call("run", "--rm", *self.limits, "--network", "host", *self.options, IMAGE, *command)

    def start(self, port, host):
        self.call("run", "--detach", "--name", self.name, *self.limits, "--network", "host", *self.options, IMAGE, check=True)
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(240):  # two minutes at the most, however slow the machine
            try:
                if httpx.get(f"{base_url}/healthz", headers={"Host": host}).status_code == 200:
                    return base_url
            except httpx.TransportError:
                pass
            state = self.call("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip()
            if state != "true":
                pytest.fail(f"The server stopped at start:\n{self.call('logs', self.name).stderr[-3000:]}")
            time.sleep(0.5)
        pytest.fail(f"The server never answered /healthz:\n{self.call('logs', self.name).stderr[-3000:]}")

    def exec(self, *command, env=()):
        options = [option for name, value in env for option in ("--env", f"{name}={value}")]
        return self.call("exec", *options, self.name, *command)

    def remove(self):
        self.call("rm", "--force", "--volumes", self.name)

    def call(self, *arguments, check=False):
        result = subprocess.run([*self.engine, *arguments], capture_output=True, text=True)
        if check:
            assert result.returncode == 0, result.stderr[-3000:]
        return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image():
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if not shutil.which(tool)]
    # Outside CI, installing system packages is left to people; under CI, `make image` does it.
    if missing and not CI and not docker_answers():
        pytest.skip(f"{', '.join(missing)} missing and no docker engine answers: `make image` installs them (as root).")
    build = subprocess.run(["make", "--no-print-directory", "image", f"IMAGE={IMAGE}"], cwd=BASE_DIR, capture_output=True, text=True)
    assert build.returncode == 0, f"`make image` failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return IMAGE


@pytest.fixture(scope="module")
def database_url():
    try:
        connection = psycopg.connect(POSTGRES, dbname="postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        if CI:
            pytest.fail(f"CI=true: the container test is mandatory, but PostgreSQL does not answer: {e}")
        pytest.skip(f"PostgreSQL does not answer: {e}")
    with connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")
        yield urlsplit(POSTGRES)._replace(path=f"/{DATABASE}").geturl()
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


@pytest.fixture(scope="module")
def deployment(database_url, image):
    """The server as README tells a deployment to run it: behind TLS, every secret set, migrated first."""
    port = free_port()
    container = Container(
        {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "MIMOWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": HOST,
            "CSRF_TRUSTED_ORIGINS": ORIGIN,
            "DATABASE_URL": database_url,
            "MIMOWEB_HTTPS": "true",
            "PORT": str(port),
        }
    )
    migrate = container.run("python", "manage.py", "migrate", "--no-input")
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    try:
        yield container, container.start(port, HOST)
    finally:
        container.remove()


def get(base_url, path, origin=ORIGIN):
    """What a browser at `origin` asks for (through the TLS proxy in front when it is https)."""
    return httpx.get(f"{base_url}{path}", headers=browser_headers(origin))


def browser_headers(origin, cookies=""):
    # Cookies by hand: those of https sites are marked Secure, and this side speaks plain http.
    scheme, host = origin.split("://")
    return {"Host": host, "X-Forwarded-Proto": scheme, "Cookie": cookies}


def sign_in(container, base_url, username, origin=ORIGIN):
    """Creates the account inside the container, then signs in through the form as a browser does."""
    created = container.exec(
        "python", "manage.py", "createsuperuser", "--no-input", f"--username={username}", f"--email={username}@example.com",
        env=[("DJANGO_SUPERUSER_PASSWORD", PASSWORD)],
    )
    assert created.returncode == 0, created.stderr[-3000:]
    page = get(base_url, "/accounts/sign-in/", origin)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    return httpx.post(
        f"{base_url}/accounts/sign-in/",
        headers={**browser_headers(origin, cookies=f"csrftoken={page.cookies['csrftoken']}"), "Origin": origin},
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
    )


def test_the_health_check_answers_on_the_configured_port(deployment):
    container, base_url = deployment
    assert not base_url.endswith(":8000")
    response = httpx.get(f"{base_url}/healthz", headers={"Host": HOST})
    assert (response.status_code, response.text) == (200, "ok")
    # The image's own HEALTHCHECK, run as the engine runs it.
    healthcheck = container.call("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", IMAGE).stdout
    kind, command = json.loads(healthcheck)
    assert kind == "CMD-SHELL"
    assert container.exec("sh", "-c", command).returncode == 0


def test_a_member_signs_in_on_postgresql(deployment):
    container, base_url = deployment
    page = get(base_url, "/accounts/sign-in/")
    assert page.status_code == 200
    assert 'name="password"' in page.text
    response = sign_in(container, base_url, "alice")
    assert response.status_code == 302, response.text[-2000:]
    assert "sessionid" in response.cookies


def test_static_files_are_served_from_the_image(deployment):
    _, base_url = deployment
    page = get(base_url, "/accounts/sign-in/")
    icon = re.search(r'href="(/static/favicon\.[0-9a-f]+\.svg)"', page.text)[1]  # collected, under its hashed name
    response = get(base_url, icon)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.content == (BASE_DIR / "static/favicon.svg").read_bytes()


def test_the_server_runs_as_a_user_that_is_not_root(deployment):
    container, _ = deployment
    status = container.exec("cat", "/proc/1/status").stdout
    uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)[1]
    assert "daphne" in container.exec("cat", "/proc/1/cmdline").stdout
    assert uid != "0"
    assert container.exec("id", "-un").stdout.strip() == "mimoweb"


def test_check_deploy_reports_no_issue_with_a_deployments_settings(deployment):
    container, _ = deployment
    check = container.exec("python", "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no issues" in check.stdout


def test_the_image_holds_neither_pip_nor_tests_and_tooling(deployment):
    container, _ = deployment
    assert container.exec("python", "-m", "pip", "--version").returncode != 0
    assert container.exec("sh", "-c", "command -v pip pip3").stdout == ""
    shipped = set(container.exec("ls", "-A", "/app").stdout.split())
    assert {"manage.py", "mimoweb", "chat", "accounts", "staticfiles", "locale"} <= shipped
    left_out = {".git", ".venv", ".ci", "bench", "docs", "tests", "requirements-test.txt", "Makefile", "node_modules", "data"}
    assert shipped & left_out == set()


def test_with_nothing_configured_sqlite_and_the_secrets_live_in_the_data_volume(image):
    volume = f"mimoweb-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    container = Container({"PORT": str(port)}, volume=volume)
    try:
        migrate = container.run("python", "manage.py", "migrate", "--no-input")
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        # Served as `make run` serves it: plain http, under a default allowed host.
        origin = f"http://localhost:{port}"
        base_url = container.start(port, "localhost")
        response = sign_in(container, base_url, "bob", origin)
        assert response.status_code == 302, response.text[-2000:]
        assert set(container.exec("ls", "/data").stdout.split()) >= {"db.sqlite3", "secret_key", "encryption_key"}
    finally:
        container.remove()
        container.call("volume", "rm", "--force", volume)


def test_a_data_folder_the_user_cannot_write_stops_it_with_a_message_naming_what_to_set(image, tmp_path):
    tmp_path.chmod(0o755)  # a host folder that belongs to root, mounted as the data volume
    migrate = Container({}, volume=tmp_path).run("python", "manage.py", "migrate", "--no-input")
    assert migrate.returncode != 0
    assert "MIMOWEB_DATA_DIR: this user (uid 10001) cannot write /data" in migrate.stderr
    assert "set SECRET_KEY, MIMOWEB_ENCRYPTION_KEYS and DATABASE_URL" in migrate.stderr
