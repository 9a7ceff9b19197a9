import ipaddress
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


# --- IPv6 addresses that carry an IPv4 address -----------------------------------------

LOOPBACK, PRIVATE, PUBLIC = (ipaddress.IPv4Address(a) for a in ("127.0.0.1", "10.1.2.3", "8.8.8.8"))
TEREDO_SERVER = ipaddress.IPv4Address("65.54.227.120")


def ipv6(value):
    return str(ipaddress.IPv6Address(value))


def teredo(client, server=TEREDO_SERVER, port=40000):
    # 2001:0::/32, the server, flags, then the client's port and address stored bit-inverted
    return ipv6((0x20010000 << 96) | (int(server) << 64) | ((~port & 0xFFFF) << 32) | (~int(client) & 0xFFFFFFFF))


EMBEDDING_FORMS = {
    "IPv4-mapped": lambda v4: f"::ffff:{v4}",
    "IPv4-compatible": lambda v4: f"::{v4}",
    "IPv4-translated": lambda v4: f"::ffff:0:{v4}",
    "NAT64": lambda v4: f"64:ff9b::{v4}",
    "6to4": lambda v4: ipv6((0x2002 << 112) | (int(v4) << 80) | 1),
    "Teredo": teredo,
}


@pytest.mark.parametrize("form", EMBEDDING_FORMS)
@pytest.mark.parametrize("embedded", [LOOPBACK, PRIVATE], ids=["loopback", "private"])
def test_an_ipv6_address_embedding_an_internal_ipv4_address_is_refused(form, embedded, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(EMBEDDING_FORMS[form](embedded)))
    assert error_code("https://looks-public.example.com") == "internal"


@pytest.mark.parametrize("form", EMBEDDING_FORMS)
def test_an_ipv6_address_embedding_a_public_ipv4_address_is_accepted(form, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(EMBEDDING_FORMS[form](PUBLIC)))
    validate_base_url("https://mimo-proxy.example.com")


@pytest.mark.parametrize("server", [LOOPBACK, PRIVATE], ids=["loopback", "private"])
def test_a_teredo_address_through_an_internal_server_is_refused(server, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(teredo(PUBLIC, server=server)))
    assert error_code("https://looks-public.example.com") == "internal"


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1:7f00:1::",  # local-use NAT64 (RFC 8215): the network's own IPv4 addresses
        "64:ff9b:1:808:808::",  # even one that reads as 8.8.8.8
        "fc00::1",  # unique-local
        "fd12:3456::1",
        "fec0::1",  # site-local
        "feff::1",
        "ff02::1",  # multicast
        "224.0.0.1",
    ],
)
def test_local_nat64_unique_local_site_local_and_multicast_are_refused(address, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(address))
    assert error_code("https://looks-public.example.com") == "internal"


@pytest.mark.parametrize("url", ["https://[::127.0.0.1]", "https://[64:ff9b::7f00:1]", "https://[::ffff:0:a01:203]", "https://[fec0::1]:8443"])
def test_literal_ipv6_forms_of_internal_addresses_are_refused(url):
    assert error_code(url) == "internal"


def test_a_public_ipv6_address_is_accepted(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("2606:4700::1111"))
    validate_base_url("https://mimo-proxy.example.com")
