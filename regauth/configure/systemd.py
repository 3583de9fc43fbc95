"""``regauth configure systemd``: a unit that runs ``regauth proxy``, restarted on failure, hardened.

The unit sees the system read-only, its own /tmp, no new privileges and no way to gain capabilities;
only regauth's own directories (records, secrets, token cache, log) and the blob cache stay writable,
as the proxy writes minted tokens to the store and blobs to ``--cache-dir``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from regauth.configure.core import Change, Plan
from regauth.configure.files import read_state
from regauth.errors import UsageError

CLIENT = "systemd"
UNIT = "regauth-proxy.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def unit_dir(environ: Mapping[str, str], flag: str | None, user: bool) -> Path:
    if flag:
        return Path(flag).expanduser()
    if not user:
        return SYSTEM_UNIT_DIR
    config = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~"), ".config"))
    return Path(config).expanduser() / "systemd" / "user"


def quote(arg: str) -> str:
    """One word of ``ExecStart=`` as systemd.syntax(7) reads it: ``%`` is a specifier, ``$`` a
    variable, and quotes and backslashes escape."""
    if not arg or any(c in arg for c in "\x00\n\r"):
        raise UsageError(f"{arg!r} cannot stand in a systemd command line")
    text = arg.replace("%", "%%").replace("$", "$$")
    if any(c in text for c in " \t\"'\\;"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def unit_text(
    exe: str,
    proxy_args: Sequence[str],
    *,
    user: bool,
    writable: Sequence[Path],
    description: str,
    low_port: bool = False,
) -> str:
    """``low_port``: the proxy listens below 1024, so it keeps the one capability that binding needs."""
    command = " ".join(quote(word) for word in [exe, "proxy", *proxy_args])
    # "-": a directory not made yet (no cache so far) must not stop the unit from starting.
    paths = " ".join("-" + quote(str(p)) for p in dict.fromkeys(writable))
    lines = [
        "# Written by `regauth configure systemd`; `regauth configure systemd --undo` takes it back.",
        "[Unit]",
        f"Description={description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={command}",
        "Restart=on-failure",
        "RestartSec=2s",
        # SIGTERM lets in-flight pulls finish (the proxy's --shutdown-timeout, 60 s by default).
        "TimeoutStopSec=90s",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        f"ReadWritePaths={paths}",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        *(
            ["CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE"]
            if low_port
            else ["CapabilityBoundingSet="]
        ),
        "UMask=0077",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"


def plan(path: Path, text: str, *, user: bool, cache_dir: Path | None = None) -> Plan:
    state = read_state(path)
    ctl = "systemctl --user" if user else "systemctl"
    notes = [f"then: {ctl} daemon-reload && {ctl} enable --now {path.name}"]
    if cache_dir is not None and (cache_dir == Path("/tmp") or Path("/tmp") in cache_dir.parents):
        notes.append(
            f"note: {cache_dir} is under /tmp, which is the unit's own (PrivateTmp=yes) and gone at each stop"
        )
    return Plan(CLIENT, [Change(state, text.encode(), new_mode=0o644)], notes=notes)
