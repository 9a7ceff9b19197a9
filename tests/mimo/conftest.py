"""Endpoints on the fake MiMo server (tests/conftest.py runs it) for the client tests."""

import pytest

from chat.mimo import ApiFormat, Endpoint, close_shared_http_client
from tests.conftest import NEW_MODEL  # noqa: F401 (the tests here import it from this module)

GOOD_KEY = "sk-test-good-key-4321"


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
