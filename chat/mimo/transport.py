"""The shared client's transport: httpx's API on aiohttp's connections.

`httpx_aiohttp.AiohttpTransport` (the transport the official openai SDK offers
for high concurrency) reads MiMo's streams for much less CPU per token than
httpx's own transport, and keeps up where httpx's falls behind. This module
adapts it so that nothing above it can tell the difference:

- Errors. The library maps aiohttp's exceptions by a table in which refused
  connections, server disconnects and resets all become `ConnectTimeout`, and
  a malformed response is not mapped at all. `stream_body` retries connect
  failures only (a POST that may have reached MiMo is never sent twice), so
  each aiohttp exception is mapped here to the class httpx's own transport
  raises for the same event: a refused or unresolvable host is `ConnectError`,
  a connect time-out `ConnectTimeout`, silence longer than the read time-out
  `ReadTimeout`, a peer that hangs up before or during the answer
  `RemoteProtocolError`, a reset `ReadError`.
- Time-outs. `read` becomes aiohttp's `sock_read`, which, like httpx's, limits
  each wait for data and not the whole answer: it restarts on every chunk that
  arrives (and stops while the reader is behind), so a long silent reasoning
  phase survives as long as keep-alive comments come. `connect` covers
  resolving and connecting, as in httpx. `pool` is the longest wait for one of
  the `max_connections` slots, kept here with a semaphore because aiohttp's
  own pool wait shares one limit with connecting; it runs out as `PoolTimeout`.
  aiohttp has no write time-out and starts `sock_read` only once the body is
  sent, so a peer that stopped reading the request would hang it for ever:
  connecting, sending and waiting for the response head are bounded by
  `connect + write + read` instead, and that runs out as `WriteTimeout`.
- Connections. An idle connection is checked just before it is reused, as
  httpcore does: one the server has just closed is not used. Idle ones close
  after `keepalive_expiry` (aiohttp has no cap on how many stay idle). Every
  new connection resolves the host again, as httpx's does, instead of using
  aiohttp's 10-second DNS cache. Cookies are httpx's business alone: the
  aiohttp session keeps none. httpx ignores proxies from the environment
  (HTTP_PROXY and the like) when it is given a transport: where
  `environment_proxies()` says one is set, keep httpx's own transport, which
  honours it.
- Addresses. `ApiKey.secret_for_request` checks that the base URL's host
  resolves to public addresses just before each request, and pins them here
  (`pin_addresses`): a connection to that host goes to one of the addresses
  checked, never to what the name resolves to a moment later (DNS
  rebinding). The name still goes in the TLS handshake (SNI, the certificate
  it must match) and the Host header. A host never checked (one the operator
  listed, or this client used on its own) resolves as usual.
"""

import asyncio
import select
import socket
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, NoReturn

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

# The addresses last checked for each host, by the host as aiohttp sees it in a URL.
_checked_addresses: dict[str, tuple[str, ...]] = {}


def pin_addresses(host: str, addresses: Iterable[str]) -> None:
    """Connections to `host` go to these addresses, the ones just checked, whatever the name resolves to later."""
    _checked_addresses[_url_host(host)] = tuple(addresses)


def _url_host(host: str) -> str:
    # As aiohttp will ask for it: lower case, an international name in its ASCII (IDNA) form.
    return (yarl.URL.build(scheme="https", host=host).raw_host or host).lower()


def environment_proxies() -> bool:
    """Whether HTTP_PROXY, HTTPS_PROXY or ALL_PROXY is set, which httpx's own client honours."""
    return bool({"http", "https", "all"} & urllib.request.getproxies().keys())


class MimoTransport(AiohttpTransport):
    """`AiohttpTransport` with httpx's error classes and time-outs; see the module's docstring."""

    def __init__(self, *, limits: httpx.Limits = httpx.Limits(), **options: Any) -> None:
        super().__init__(limits=limits, **options)
        # httpx's pool: at most this many requests hold a connection at once,
        # the next one waits up to the pool time-out for one.
        self._slots = asyncio.Semaphore(limits.max_connections) if limits.max_connections else None

    def get_client(self) -> aiohttp.ClientSession:
        connector = _Connector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            use_dns_cache=False,
            resolver=_CheckedAddressResolver(),
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        release = await self._take_slot(request, timeout.get("pool"))
        # The library passes `pool` as aiohttp's `connect`, which covers the
        # wait for a slot (nil now) and resolving and connecting: that is
        # httpx's connect time-out.
        request.extensions = {**request.extensions, "timeout": {**timeout, "pool": timeout.get("connect")}}
        limits = [timeout.get(name) for name in ("connect", "write", "read")]
        deadline = asyncio.timeout(None if None in limits else sum(limits))
        try:
            async with deadline:
                response = await super().handle_async_request(request)
        except Exception as error:
            release()
            if deadline.expired():
                raise httpx.WriteTimeout("sending the request took too long", request=request) from None
            _raise_as_httpx_error(error, request)
        except BaseException:
            release()
            raise
        response.stream = _Stream(response.stream, request, release)
        return response

    async def _take_slot(self, request: httpx.Request, pool_timeout: float | None) -> Callable[[], None]:
        if self._slots is None:
            return lambda: None
        try:
            async with asyncio.timeout(pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection became free in time", request=request) from None
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        return release


class _Connector(aiohttp.TCPConnector):
    """aiohttp's pool, checking an idle connection just before reusing it, as httpcore does.

    A server may close an idle connection at any moment. aiohttp notices once
    the event loop has handled the close, so a request sent in the same turn
    of the loop would go out on a dead connection and fail; the socket itself
    already says so.
    """

    async def _get(self, key: Any, traces: Any) -> Any:
        while (connection := await super()._get(key, traces)) is not None:
            if not _readable(connection.protocol):
                return connection
            connection.close()
        return None


class _CheckedAddressResolver(AbstractResolver):
    """Answers with the addresses pinned for a host (see `pin_addresses`); any other host resolves as usual.

    aiohttp connects to the address a resolver gives and keeps the URL's name
    for SNI, the certificate check and the Host header.
    """

    def __init__(self) -> None:
        self._resolver = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = _checked_addresses.get(host.lower())
        if addresses is None:
            return await self._resolver.resolve(host, port, family)
        results = [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )  # fmt: skip
            for address in addresses
        ]
        results = [result for result in results if family in (socket.AF_UNSPEC, result["family"])]
        if not results:
            raise OSError(f"no checked address of {host} in the family asked for")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def _readable(protocol: Any) -> bool:
    """Whether an idle connection has something to read: the peer closed it, or sent what it should not have."""
    transport = getattr(protocol, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.fileno() < 0:
        return True
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


class _Stream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request, release: Callable[[], None]) -> None:
        self._stream = stream
        self._request = request
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as error:
            _raise_as_httpx_error(error, self._request)

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except Exception as error:
            _raise_as_httpx_error(error, self._request)
        finally:
            self._release()


# Most specific first: several of these derive from one another.
_HTTPX_ERROR_FOR = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
    (TimeoutError, httpx.TimeoutException),
)


def _raise_as_httpx_error(error: Exception, request: httpx.Request) -> NoReturn:
    """Raises what httpx's own transport raises where aiohttp raised `error`.

    The library's own mapping is undone first: its exception's cause is what
    aiohttp raised. Anything that is not aiohttp's is raised again as it is.
    """
    original = error
    if isinstance(error, httpx.TransportError) and isinstance(error.__cause__, aiohttp.ClientError | TimeoutError):
        original = error.__cause__
    for aiohttp_class, httpx_class in _HTTPX_ERROR_FOR:
        if isinstance(original, aiohttp_class):
            raise httpx_class(str(original) or type(original).__name__, request=request) from original
    raise error
