"""The fake MiMo server over real HTTP on loopback, shared by the whole session."""

import httpx
import pytest
from daphne.testing import DaphneProcess

from chat.mimo import ApiFormat, Endpoint, close_shared_http_client
from chat.mimo.fake import FakeMimo

GOOD_KEY = "sk-test-good-key-4321"
# A model only the fake's /v1/models knows, for discovery tests.
NEW_MODEL = "mimo-v9-preview"


def fake_application():
    """Module-level, so DaphneProcess can pickle it into the server process."""
    return FakeMimo(tokens_per_second=0, keepalive_interval=0.2, extra_models=[NEW_MODEL])


@pytest.fixture(scope="session")
def fake_url():
    process = DaphneProcess("127.0.0.1", fake_application)
    process.start()
    if not process.ready.wait(timeout=30):
        process.terminate()
        raise RuntimeError("the fake MiMo server did not start")
    yield f"http://127.0.0.1:{process.port.value}"
    process.terminate()
    process.join(timeout=10)


class FakeRecords:
    """The requests the fake server received, read over its /_fake/requests."""

    def __init__(self, url: str) -> None:
        self.url = url + "/_fake/requests"

    def reset(self) -> None:
        httpx.delete(self.url).raise_for_status()

    def all(self) -> list[dict]:
        return httpx.get(self.url).json()


@pytest.fixture
def fake_records(fake_url):
    records = FakeRecords(fake_url)
    records.reset()
    return records


@pytest.fixture
def openai_endpoint(fake_url):
    return Endpoint(fake_url, GOOD_KEY, ApiFormat.OPENAI)


@pytest.fixture
def anthropic_endpoint(fake_url):
    return Endpoint(fake_url, GOOD_KEY, ApiFormat.ANTHROPIC)


@pytest.fixture(params=list(ApiFormat), ids=str)
def endpoint(request, fake_url):
    """Each test using it runs once per wire format."""
    return Endpoint(fake_url, GOOD_KEY, request.param)


@pytest.fixture(autouse=True)
async def close_http_client():
    """Each test has its own event loop; the pooled client must not outlive it."""
    yield
    await close_shared_http_client()
