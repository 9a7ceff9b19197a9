"""Fault: anonymous 300 MB and 1 GB request bodies, to a form and to the import.

Each is refused with 413 and the daphne process's memory stays flat (before the fix, two
300 MB POSTs took it from 89 MB to 706 MB for good). The bodies are made as they are sent,
so the test itself holds none of them. README's "Faults" section has the figures.
"""

import httpx
import pytest

from tests.test_body_limits import start_daphne, zeros

MiB = 1024 * 1024
GROWTH_ALLOWED = 50 * MiB


def memory(pid):
    """The process's resident memory now and at its peak, in bytes (from /proc/<pid>/status)."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, url = start_daphne(tmp_path_factory.mktemp("daphne"))
    # What the first requests load (Django's handler, a first refusal's template and translations) is not growth.
    with httpx.Client(base_url=url) as client:
        for _ in range(3):
            client.get("/healthz")
            client.post("/accounts/sign-in/", content=bytes(5 * MiB), headers={"Accept": "text/html"})
    before = memory(process.pid)
    yield url, process.pid, before
    process.terminate()
    process.wait(timeout=10)


@pytest.mark.parametrize(
    "path, size, chunked",
    [
        ("/accounts/sign-in/", 300 * MiB, False),
        ("/accounts/sign-in/", 1024 * MiB, True),
        ("/chats/import/", 300 * MiB, True),
        ("/chats/import/", 1024 * MiB, False),
    ],
    ids=["form-300MB", "form-1GB-chunked", "import-300MB-chunked", "import-1GB"],
)
def test_a_huge_anonymous_body_is_refused_and_memory_stays_flat(server, path, size, chunked):
    url, pid, before = server
    headers = {} if chunked else {"Content-Length": str(size)}
    response = httpx.post(url + path, content=zeros(size), headers=headers, timeout=120)
    assert response.status_code == 413
    after = memory(pid)
    growth = {name: after[name] - before[name] for name in after}
    assert growth["VmRSS"] < GROWTH_ALLOWED, growth
    assert growth["VmHWM"] < GROWTH_ALLOWED, growth
    assert httpx.get(url + "/healthz").status_code == 200
