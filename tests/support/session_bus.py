"""A private D-Bus session bus with an unlocked gnome-keyring on it, for the tests and bench/bench_get.py.

The caller prepares ``env`` (a HOME and XDG directories of its own, so gnome-keyring writes its
``login.keyring`` only there); this starts the two daemons with it and says how to reach and stop them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def start_bus_and_keyring(env: Mapping[str, str], password: str) -> tuple[str, list[int]]:
    """The bus address, and the pids to stop (the bus first, then the keyring daemon if it said)."""
    bus = subprocess.run(
        ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
        capture_output=True,
        text=True,
        env=dict(env),
        check=True,
        timeout=30,
    )
    address, pid = bus.stdout.split()[:2]
    daemon = subprocess.run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
        input=password,
        capture_output=True,
        text=True,
        env={**env, "DBUS_SESSION_BUS_ADDRESS": address},
        check=True,
        timeout=30,
    )
    pids = [int(pid)]
    for line in daemon.stdout.splitlines():
        if line.startswith("GNOME_KEYRING_PID="):
            pids.append(int(line.split("=", 1)[1]))
    return address, pids
