"""The ASGI entry point: plain HTTP goes to Django, websockets to the chat consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimoweb.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware  # noqa: E402

import chat.routing  # noqa: E402
from chat import generation  # noqa: E402
from mimoweb import body_limits  # noqa: E402
from mimoweb.proxies import TrustedProxiesMiddleware  # noqa: E402

# A process that starts frees at once the answers its dead predecessor left streaming.
generation.mark_dead_at_start()

# daphne keeps a whole request body before the application sees it, so the limit on
# bodies is applied in daphne's own requests, and an accepted body is handed over a piece
# at a time by the application's queue.
body_limits.install()


class SocketSessionMiddleware(SessionMiddleware):
    """Channels' SessionMiddleware for sockets: the session in the scope, without its wrapper around `send`.

    The wrapper saves a changed session before an HTTP response starts. A socket sends
    no such message, yet the wrapper read the lazy session twice for every frame: a
    fifth of what sending a frame cost the process (bench/README.md).
    """

    async def __call__(self, scope, receive, send):
        session = InstanceSessionWrapper(scope, send)
        await session.resolve_session()
        return await self.inner(session.scope, receive, send)


# The client's address is settled first, for pages and sockets alike.
application = TrustedProxiesMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Origin validation stops other sites from opening sockets with our cookies.
            "websocket": AllowedHostsOriginValidator(
                CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(URLRouter(chat.routing.websocket_urlpatterns))))
            ),
        }
    )
)
