"""Which server process streams an answer, and whether that process is known to be gone.

Each process has an identity that a restart changes: where its pid means
something (its pid space), its pid, and a random part made when it starts.
A streaming message records it (`Message.process`), so a process can tell at
once that a stream of its own pid space was left by a process that no longer
runs: the process that has its pid now is another one, or none has. Anything
else (a stream of another host, or of a pid now used by another live process)
is left to the heartbeat (`Message.stale_streams`): never mark a live stream.

The pid space is, by default, this host's name with its kernel's boot id and
pid namespace: two hosts, or two containers with one host name, never share
one. A container that restarts gets a new pid namespace, so its predecessor is
left to the heartbeat; MIMOWEB_INSTANCE_NAME names the pid space instead (one
name per container, never two containers running under one name at once),
and the restarted container then frees its predecessor's streams at start.
"""

import os
import secrets
import socket
from pathlib import Path

from django.conf import settings

_current = None  # (pid, identity): computed on first use, so a forked process makes its own


def current():
    """This process's identity, as `Message.process` records it: "<pid space>:<pid>:<random>"."""
    global _current
    pid = os.getpid()
    if _current is None or _current[0] != pid:
        _current = (pid, f"{pid_space()}:{pid}:{secrets.token_hex(4)}")
    return _current[1]


def own_pid_space():
    """The pid space this process's identity names."""
    return current().rsplit(":", 2)[0]


def pid_space():
    """Where a pid names one process: the instance name when one is set, else this host, boot and pid namespace."""
    boot = read_or_empty(lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
    if settings.MIMOWEB_INSTANCE_NAME:
        return f"{settings.MIMOWEB_INSTANCE_NAME}/{boot}"
    namespace = read_or_empty(lambda: os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]"))
    return f"{socket.gethostname()}/{boot}/{namespace}"


def read_or_empty(read):
    """What `read` returns, or "" where the system has no such file (not Linux)."""
    try:
        return read()
    except OSError:
        return ""


def is_gone(identity):
    """Whether the process with this identity is known to have stopped.

    Only a process of our own pid space can be known: it is gone when we now
    have its pid (a container's daphne is pid 1 after each restart), or when no
    process has it. A pid that another process has now counts as alive.
    """
    space, pid, _random = (identity.rsplit(":", 2) + ["", ""])[:3]
    if identity == current() or space != own_pid_space() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)  # signal 0 sends nothing: it asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process has it
        pass
    return False
