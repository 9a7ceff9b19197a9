"""`manage.py add_team_key`: the secret from a file or standard input, checked like the form, audited."""

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey, KeyEvent

SECRET = "sk-from-the-operator-Wq81"


def add(*args, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    call_command("add_team_key", *args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_secret_from_standard_input_is_added_audited_and_printed_masked(acme):
    out, _err = add("--team", "Acme", "--label", "Production", stdin=SECRET + "\n")
    key = ApiKey.objects.get()
    assert (key.team, key.owner, key.label, key.base_url, key.api_format) == (
        acme, None, "Production", "https://api.xiaomimimo.com", "openai"
    )
    assert key.decrypt_secret() == SECRET
    assert "…Wq81" in out and SECRET not in out
    event = KeyEvent.objects.get()
    assert (event.action, event.actor, event.api_key, event.last_four) == ("add", None, key, "Wq81")


def test_a_dash_reads_standard_input_too(acme):
    add("--team", "Acme", "--label", "Production", "--secret-file", "-", stdin=SECRET)
    assert ApiKey.objects.get().decrypt_secret() == SECRET


def test_the_secret_from_a_file_with_format_base_url_and_default(acme, tmp_path, fake_url):
    path = tmp_path / "key.txt"
    path.write_text(SECRET + "\n")
    out, _err = add(
        "--team", "Acme", "--label", "Claude-style", "--format", "anthropic", "--base-url", fake_url + "/",
        "--default", "--secret-file", str(path),
    )
    key = ApiKey.objects.get()
    acme.refresh_from_db()
    assert (key.api_format, key.base_url, acme.default_key) == ("anthropic", fake_url, key)
    assert "default key" in out
    assert list(KeyEvent.objects.order_by("pk").values_list("action", flat=True)) == ["add", "default"]


def test_there_is_no_argument_for_the_secret(acme):
    with pytest.raises(CommandError, match="unrecognized arguments"):
        add("--team", "Acme", "--label", "Production", "--secret", SECRET)
    assert not ApiKey.objects.exists()


def test_a_token_plan_key_is_added_with_its_warnings(acme):
    _out, err = add("--team", "Acme", "--label", "Plan", stdin="tp-plan-key-Lk92")
    assert "Token Plan key" in err and "401" in err


@pytest.mark.parametrize(
    ("args", "stdin", "problem"),
    [
        (["--team", "Nobody", "--label", "x"], SECRET, "no team named 'Nobody'"),
        (["--team", "Acme", "--label", "x"], "", "No key was given"),
        (["--team", "Acme", "--label", "x"], "sk-1", "This does not look like an API key."),
        (["--team", "Acme", "--label", "x", "--base-url", "http://example.com"], SECRET, "must start with https://"),
        (["--team", "Acme", "--label", "x", "--base-url", "https://10.0.0.1"], SECRET, "private, loopback"),
        (["--team", "Acme", "--label", "x", "--secret-file", "/nonexistent/key"], "", "Cannot read the secret file"),
    ],
)
def test_bad_input_is_explained_and_nothing_is_added(acme, args, stdin, problem):
    with pytest.raises(CommandError, match=problem) as error:
        add(*args, stdin=stdin)
    assert SECRET not in str(error.value)
    assert not ApiKey.objects.exists() and not KeyEvent.objects.exists()
