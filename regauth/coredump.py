"""No core dumps from a process that holds secrets.

A core file (or a crash reporter such as systemd-coredump or apport) would write the decrypted secret
store, tokens and ``REGAUTH_PASSPHRASE`` to disk, where they outlive the process. The credential
helper and the proxy call ``disable_core_dumps`` first thing. It costs the helper's hot path about
0.1 ms for ``resource`` (a C module) and nothing for ``ctypes``, which the fast ``get`` loads anyway to
reach libcrypto; it imports nothing else.
"""

from __future__ import annotations

import sys

_PR_SET_DUMPABLE = 4


def disable_core_dumps() -> None:
    """RLIMIT_CORE 0 (soft and hard, so no child can raise it) and, on Linux, PR_SET_DUMPABLE 0.

    Not dumpable also keeps other processes of the same user from attaching with ptrace or reading
    ``/proc/PID/mem``. Either step may be unavailable (another OS, a sandbox); the other still holds,
    and a failure never stops the program.
    """
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, OSError, ValueError):
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (ImportError, OSError, AttributeError):
            pass
