"""The ASGI entry point: plain HTTP goes to Django, websockets to the chat consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimoweb.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

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

# The client's address is settled first, for pages and sockets alike.
application = TrustedProxiesMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Origin validation stops other sites from opening sockets with our cookies.
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(chat.routing.websocket_urlpatterns))),
        }
    )
)
