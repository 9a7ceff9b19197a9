import os
import subprocess

import pytest

from chat import processes


@pytest.fixture
def other_process():
    """A live process of this pid space; kill it to have one that is gone."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def identity_of(pid, space=None):
    return f"{space or processes.own_pid_space()}:{pid}:0badc0de"


def test_a_restarted_process_has_another_identity(monkeypatch):
    before = processes.current()
    monkeypatch.setattr(processes, "_current", None)  # what a new process starts with
    assert processes.current() != before
    assert processes.current().rsplit(":", 2)[:2] == before.rsplit(":", 2)[:2]


def test_a_forked_process_has_its_own_identity(monkeypatch):
    before = processes.current()
    monkeypatch.setattr(os, "getpid", lambda: 999_999_999)
    assert processes.current() != before
    assert ":999999999:" in processes.current()


def test_a_process_of_this_pid_space_that_no_longer_runs_is_gone(other_process):
    identity = identity_of(other_process.pid)
    assert not processes.is_gone(identity)
    other_process.kill()
    other_process.wait()
    assert processes.is_gone(identity)


def test_the_predecessor_whose_pid_this_process_now_has_is_gone():
    # A container's daphne is pid 1 after every restart.
    assert processes.is_gone(identity_of(os.getpid()))
    assert not processes.is_gone(processes.current())


def test_a_process_of_another_host_or_namespace_is_never_taken_for_gone(other_process):
    other_process.kill()
    other_process.wait()
    assert not processes.is_gone(identity_of(other_process.pid, space="another-host/1234abcd/4026531836"))
    assert not processes.is_gone(identity_of(os.getpid(), space="another-host/1234abcd/4026531836"))
    assert not processes.is_gone("")


def test_an_instance_name_names_the_pid_space_in_place_of_the_host(settings, monkeypatch):
    settings.MIMOWEB_INSTANCE_NAME = "web-2"
    monkeypatch.setattr(processes, "_current", None)
    assert processes.current().startswith("web-2/")
    assert processes.is_gone(identity_of(os.getpid()))
    assert not processes.is_gone(identity_of(os.getpid(), space="web-3/" + processes.current().split("/")[1].split(":")[0]))
