"""The client's address, believed from X-Forwarded-For only when a trusted proxy passes it on.

Anyone can send an X-Forwarded-For header. Taken on trust (daphne's --proxy-headers), a
client that changes it on every request is a new address every time, and the sign-in
lock per address (accounts/forms.py) never locks. So the header counts only when the
connection comes from a proxy named in MIMOWEB_TRUSTED_PROXIES, and then only up to the
first address that proxy chain did not write itself: each proxy appends the address it
saw, so reading from the right, the first address that is not one of our proxies is the
client; anything left of it is what the client claimed.

An ASGI middleware, so that HTTP (Django's REMOTE_ADDR) and websockets get the same
scope["client"].
"""

import ipaddress

from django.conf import settings


def trusted_networks(values):
    """MIMOWEB_TRUSTED_PROXIES' addresses and networks (`10.0.0.0/8`, `127.0.0.1`); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return networks


def parsed_address(text):
    """An address as a proxy writes it, or None: IPv6 may come in brackets, and an IPv4-mapped one counts as IPv4."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def is_trusted(address, networks):
    return any(address in network for network in networks)


def client_address(peer, forwarded_for, networks):
    """The client's address: the peer's own unless a trusted proxy forwarded the request.

    `forwarded_for` is every X-Forwarded-For value in order. Walking from the right, each
    trusted hop vouches for the address left of it; the first address that is not a trusted
    proxy is the client. A value that is not an address stops the walk at the hop that
    wrote it, since nothing it says can be believed.
    """
    address = parsed_address(peer) if peer else None
    if address is None or not is_trusted(address, networks):
        return peer
    client = address
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        hop_address = parsed_address(hop)
        if hop_address is None:
            break
        client = hop_address
        if not is_trusted(hop_address, networks):
            break
    return str(client)


class TrustedProxiesMiddleware:
    """Sets scope["client"] to the client's address as trusted proxies report it (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        networks = settings.MIMOWEB_TRUSTED_PROXIES
        if scope["type"] in ("http", "websocket") and networks and scope.get("client"):
            peer = scope["client"][0]
            forwarded_for = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
            address = client_address(peer, forwarded_for, networks)
            if address != peer:
                # The port is the proxy's, which says nothing about the client.
                scope = {**scope, "client": [address, 0]}
        return await self.app(scope, receive, send)
