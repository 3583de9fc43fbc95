"""A guard against packets outside the loopback range, for the test process and its Python children.

The guard is an audit hook (PEP 578) on socket connections, datagrams and name lookups: it runs before
the socket call, and raising there means the packet is never sent. Each stopped attempt is also
written to ``$NETWORK_GUARD_LOG``, so that a caller who swallows the error is still caught. Child
interpreters get it as a ``sitecustomize`` on PYTHONPATH (``site_dir``); the test process itself
through ``install``. Go programs (skopeo, podman, dockerd) are outside its reach.
"""

from __future__ import annotations

import os
from pathlib import Path

GUARD = """
import os, sys

# Imported by the hook when it first sees a socket: a child's start-up must load nothing more (the
# helper's fast get is tested for what it imports).
_LOG = os.environ.get("NETWORK_GUARD_LOG")
_NAMES = {None, "", b"", "localhost", b"localhost"}
_CALLS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex")


def _loopback(host):
    if host in _NAMES:
        return True
    import ipaddress

    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _hook(event, args):
    if event in _CALLS:
        import socket

        sock, address = args[0], args[-1]
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return
        host = address[0]
    elif event in _LOOKUPS:
        host = args[0]
    else:
        return
    if not _loopback(host):
        if _LOG:
            with open(_LOG, "a") as log:
                log.write(f"{event} {host!r}\\n")
        raise PermissionError(f"network guard: {event} for {host!r} is outside the loopback range")


sys.addaudithook(_hook)
"""


def site_dir(directory: Path) -> Path:
    """``directory`` with the guard as its ``sitecustomize.py``: put it on PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(GUARD)
    return directory


def install(log: Path) -> None:
    """The guard in this interpreter, for good: an audit hook cannot be removed."""
    os.environ["NETWORK_GUARD_LOG"] = str(log)
    exec(compile(GUARD, "network_guard", "exec"), {"__name__": "network_guard"})
