"""Settings come from the environment; each case starts a fresh Python so settings load anew."""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from mimoweb.settings import env_bool

BASE_DIR = Path(__file__).resolve().parent.parent

SHOW_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "debug": settings.DEBUG,
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"], "secret_key": settings.SECRET_KEY,
    "encryption_keys": settings.MIMOWEB_ENCRYPTION_KEYS, "allowed_hosts": settings.ALLOWED_HOSTS,
}))
"""


def run_python(code, tmp_path, **env):
    clean_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "mimoweb.settings"}
    clean_env.setdefault("MIMOWEB_DATA_DIR", str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env={**clean_env, **env}, capture_output=True, text=True, timeout=60
    )


def settings_with(tmp_path, **env):
    result = run_python(SHOW_SETTINGS, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def error_with(tmp_path, **env):
    result = run_python(SHOW_SETTINGS, tmp_path, **env)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("TRUE", True), ("0", False), ("false", False), ("", None)])
def test_booleans_accept_one_zero_true_false(monkeypatch, text, value):
    monkeypatch.setenv("SOME_FLAG", text)
    assert env_bool("SOME_FLAG", None) is value


@pytest.mark.parametrize("text", ["yes", "on", "2", "enabled"])
def test_any_other_boolean_is_an_error(monkeypatch, text):
    monkeypatch.setenv("SOME_FLAG", text)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG must be 1, 0, true or false"):
        env_bool("SOME_FLAG", False)


def test_nothing_set_means_sqlite_in_memory_layer_and_debug_off(tmp_path):
    shown = settings_with(tmp_path)
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["name"] == str(tmp_path / "data" / "db.sqlite3")
    assert shown["layer"] == "channels.layers.InMemoryChannelLayer"
    assert shown["debug"] is False


def test_generated_secrets_are_private_files_that_survive_a_restart(tmp_path):
    first = settings_with(tmp_path)
    for name in ("secret_key", "encryption_key"):
        mode = stat.S_IMODE((tmp_path / "data" / name).stat().st_mode)
        assert mode == 0o600, name
    second = settings_with(tmp_path)
    assert second["secret_key"] == first["secret_key"]
    assert second["encryption_keys"] == first["encryption_keys"]
    Fernet(first["encryption_keys"][0])  # a usable key


def test_database_url_and_redis_url_switch_to_postgresql_and_redis(tmp_path):
    shown = settings_with(
        tmp_path, DATABASE_URL="postgres://mimo:pw@db.internal:5432/mimoweb", REDIS_URL="redis://cache.internal:6379/0"
    )
    assert shown["engine"] == "django.db.backends.postgresql"
    assert shown["name"] == "mimoweb"
    assert shown["layer"] == "channels_redis.core.RedisChannelLayer"


def test_secrets_can_come_from_files(tmp_path):
    key = Fernet.generate_key().decode()
    (tmp_path / "secret").write_text("from-a-file-" + "x" * 40 + "\n")
    (tmp_path / "keys").write_text(key + "\n")
    (tmp_path / "hosts").write_text("chat.example.com,chat.internal\n")
    shown = settings_with(
        tmp_path,
        SECRET_KEY_FILE=str(tmp_path / "secret"),
        MIMOWEB_ENCRYPTION_KEYS_FILE=str(tmp_path / "keys"),
        ALLOWED_HOSTS_FILE=str(tmp_path / "hosts"),
    )
    assert shown["secret_key"] == "from-a-file-" + "x" * 40
    assert shown["encryption_keys"] == [key]
    assert shown["allowed_hosts"] == ["chat.example.com", "chat.internal"]


def test_encryption_keys_are_a_comma_list_newest_first(tmp_path):
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert settings_with(tmp_path, MIMOWEB_ENCRYPTION_KEYS=f"{new}, {old}")["encryption_keys"] == [new, old]


def test_malformed_encryption_key_is_an_error_naming_which_one(tmp_path):
    good = Fernet.generate_key().decode()
    error = error_with(tmp_path, MIMOWEB_ENCRYPTION_KEYS=f"{good},not-a-real-key")
    assert "MIMOWEB_ENCRYPTION_KEYS: key number 2 is not a valid Fernet key" in error
    assert "not-a-real-key" not in error  # never echo secrets, even broken ones


def test_missing_secret_file_is_an_error(tmp_path):
    error = error_with(tmp_path, SECRET_KEY_FILE=str(tmp_path / "nope"))
    assert "SECRET_KEY_FILE: cannot read" in error


def test_a_data_folder_that_cannot_be_made_is_an_error_naming_what_to_set(tmp_path):
    (tmp_path / "a-file").write_text("")
    error = error_with(tmp_path, MIMOWEB_DATA_DIR=str(tmp_path / "a-file" / "data"))
    assert "MIMOWEB_DATA_DIR: this user" in error
    assert "cannot write" in error
    assert "SECRET_KEY, MIMOWEB_ENCRYPTION_KEYS and DATABASE_URL" in error


def test_bad_debug_value_is_an_error(tmp_path):
    assert "DEBUG must be 1, 0, true or false" in error_with(tmp_path, DEBUG="yes")


def test_production_variables_pass_check_deploy_with_no_warning(tmp_path):
    result = run_python(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        tmp_path,
        SECRET_KEY="a-production-secret-key-" + "k" * 40,
        MIMOWEB_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="chat.example.com",
        MIMOWEB_HTTPS="true",
        DATABASE_URL="postgres://mimo:pw@db.internal:5432/mimoweb",
        REDIS_URL="redis://cache.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues (0 silenced)" in result.stdout
    assert not (tmp_path / "data").exists()  # production writes nothing to a data folder


def test_the_container_gives_daphne_the_websocket_limits_the_settings_give_runserver(settings):
    dockerfile = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    # The CMD's words, whether it is written as a JSON list or for a shell.
    command = " ".join(re.sub(r'[\[\]",\\]', " ", dockerfile[dockerfile.index("\nCMD ") :]).split())
    assert f"--websocket-max-message-size {settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE}" in command
    assert f"--websocket-max-frame-size {settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE}" in command
