"""Database connections under daphne: kept in the thread websockets and streams share,
closed after each HTTP request (settings.py, chat/signals.py).

Each case runs the real settings in a fresh Python: the test settings turn kept
connections off (tests/conftest.py).
"""

import json

from tests.test_settings import run_python

# Counts the connections opened, and says which are still open at the end.
WATCH_CONNECTIONS = """
import asyncio, json, django
django.setup()
from django.db.backends.signals import connection_created
opened = []
connection_created.connect(lambda sender, connection, **kwargs: opened.append(connection), weak=False)
"""

SOCKET_THREAD = WATCH_CONNECTIONS + """
from channels.db import database_sync_to_async
from django.db import connection

def query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")

async def three_calls():
    for _ in range(3):
        await database_sync_to_async(query)()

asyncio.run(three_calls())
print(json.dumps({"opened": len(opened), "open": sum(c.connection is not None for c in opened)}))
"""

HTTP_REQUEST = WATCH_CONNECTIONS + """
from django.core.asgi import get_asgi_application

app = get_asgi_application()
sent = []

async def request():
    scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b"", "headers": [(b"host", b"localhost")],
             "server": ("localhost", 80), "client": ("127.0.0.1", 5000), "scheme": "http", "asgi": {"version": "3.0"}}
    bodies = [{"type": "http.request", "body": b"", "more_body": False}]
    async def receive():
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the browser stays connected
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)

asyncio.run(request())
print(json.dumps({"status": sent[0]["status"], "opened": len(opened), "open": sum(c.connection is not None for c in opened)}))
"""


def run(code, tmp_path):
    result = run_python(code, tmp_path, ALLOWED_HOSTS="localhost")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_thread_websockets_and_streams_share_keeps_one_connection(tmp_path):
    assert run(SOCKET_THREAD, tmp_path) == {"opened": 1, "open": 1}


def test_an_http_request_closes_its_connection_when_it_ends(tmp_path):
    assert run(HTTP_REQUEST, tmp_path) == {"status": 200, "opened": 1, "open": 0}
