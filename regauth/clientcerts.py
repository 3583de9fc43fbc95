"""The CA the container clients themselves trust for a registry: their ``certs.d`` directories.

docker reads ``/etc/docker/certs.d/HOST[:PORT]/``, podman, skopeo and buildah (containers-certs.d(5))
``~/.config/containers/certs.d/`` and ``/etc/containers/certs.d/`` too. A ``docker login`` to a registry
with a private CA works because that CA is there; the record a login creates takes it from the same
place, so regauth's own checks (``registry validate``, the proxy) trust what the clients trust.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

# docker's name for it; containers-certs.d takes every ``*.crt`` in the directory as a CA.
CA_NAME = "ca.crt"


def client_ca(certs_dirs: Iterable[Path], host: str) -> str | None:
    """The CA file for ``host`` (canonical ``host[:port]``) in the first directory that has one."""
    for base in certs_dirs:
        found = _ca_in(base / host)
        if found is not None:
            return found
    return None


def _ca_in(directory: Path) -> str | None:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    # ca.crt first, as docker; otherwise a lone *.crt (one file is all a record can name).
    crts = [name for name in names if name.endswith(".crt")]
    chosen = CA_NAME if CA_NAME in crts else (crts[0] if len(crts) == 1 else None)
    if chosen is None:
        return None
    path = directory / chosen
    return str(path) if _trustworthy(path) else None


def _trustworthy(path: Path) -> bool:
    # A CA another user can write could be swapped for theirs, and with it the registry's identity.
    try:
        st = path.stat()
    except OSError:
        return False
    owner_ok = st.st_uid in (0, os.geteuid())
    return stat.S_ISREG(st.st_mode) and owner_ok and not st.st_mode & 0o022
