import socket

import pytest
from django.core.exceptions import ValidationError

from accounts.models import BASE_URL_PRESETS, validate_base_url


@pytest.fixture(autouse=True)
def no_operator_listed_hosts(settings):
    # The suite lists the fake MiMo server's 127.0.0.1; these tests start from nothing listed.
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = []


def resolving_to(address):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return fake_getaddrinfo


def error_code(url):
    with pytest.raises(ValidationError) as error:
        validate_base_url(url)
    return error.value.code


@pytest.mark.parametrize("url", [url for url, _label in BASE_URL_PRESETS])
def test_presets_are_accepted_without_a_lookup(url, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", None)  # would fail if called
    validate_base_url(url)


def test_custom_https_url_on_a_public_host_is_accepted(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("8.8.8.8"))
    validate_base_url("https://mimo-proxy.example.com")


def test_custom_url_must_be_https(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("8.8.8.8"))
    assert error_code("http://mimo-proxy.example.com") == "scheme"
    assert error_code("ftp://mimo-proxy.example.com") == "scheme"


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "0.0.0.0"],
)
def test_custom_url_resolving_to_an_internal_address_is_refused(address, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(address))
    assert error_code("https://looks-public.example.com") == "internal"


def test_literal_loopback_and_metadata_addresses_are_refused():
    assert error_code("https://127.0.0.1:8443") == "internal"
    assert error_code("https://169.254.169.254") == "internal"
    assert error_code("https://localhost") == "internal"


def test_unresolvable_host_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror("nope")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert error_code("https://no-such-host.example") == "unresolvable"


def test_operator_listed_host_may_be_internal_and_plain_http(settings):
    settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    validate_base_url("http://127.0.0.1:8765")
    validate_base_url("https://127.0.0.1:8765")
    assert error_code("http://localhost:8765") == "scheme"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@api.example.com",
        "https://api.example.com/?x=1",
        "https://api.example.com/#f",
        "https://[::1",
        "https://api.example.com:99999",
        "not a url",
        "",
    ],
)
def test_malformed_urls_are_refused(url):
    assert error_code(url) == "invalid"
