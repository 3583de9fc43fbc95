"""``docker-credential-regauth``: the process edge of the helper protocol (argv, streams, exit code).

This is on the hot path of every pull: it imports only what a ``get`` needs; logging is set up only
when asked for with REGAUTH_LOG_LEVEL.
"""

from __future__ import annotations

import io
import os
import sys

from regauth.helper import texts

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from regauth.helper.backend import RegauthBackend


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The client stopped reading: nothing more to say, and the interpreter's last flush must not try.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if sys.stdin is None:
        # Started with stdin closed (`<&-`): read it as empty input, which gets the protocol's one line.
        sys.stdin = open("/dev/null", encoding="utf-8")  # noqa: SIM115 - the process's stdin
    out = sys.stdout
    # The protocol is UTF-8 whatever the locale (Go writes bytes): a Latin-1 or ASCII locale or
    # PYTHONIOENCODING must not turn a non-ASCII secret into a traceback.
    if isinstance(out, io.TextIOWrapper) and out.encoding.lower().replace("-", "") != "utf8":
        out.reconfigure(encoding="utf-8")
    if len(args) != 1:
        out.write(texts.USAGE + "\n")
        return 1
    action = args[0]
    if action == "version":
        from regauth import __version__

        out.write(f"{texts.PROGRAM} ({texts.PACKAGE}) {__version__}\n")
        return 0
    if action not in texts.ACTIONS:
        from regauth.printable import printable

        out.write(texts.UNKNOWN_ACTION.format(action=printable(action)) + "\n")
        return 1
    from regauth.coredump import disable_core_dumps

    # Before the first secret is read: stdin holds one on store, the store's key is read on get.
    disable_core_dumps()
    # Read one byte past the limit so oversized input is detected without reading all of it.
    raw = b"" if action == "list" else sys.stdin.buffer.read(texts.MAX_INPUT_BYTES + 1)
    if action == "get":
        from regauth.helper.fastget import answer

        fast = answer(raw, os.environ)
        if fast is not None:
            out.write(fast)
            out.flush()
            return 0
    from regauth.errors import RegauthError

    try:
        backend = _backend()
    except RegauthError as exc:
        from regauth.printable import printable

        out.write(f"{printable(str(exc))}\n")
        return 1
    from regauth.helper.protocol import serve

    code = serve(action, raw, out, backend)
    out.flush()
    return code


def _backend() -> RegauthBackend:
    from regauth.config import load_settings
    from regauth.helper.backend import RegauthBackend

    settings = load_settings()
    if settings.log_level in ("DEBUG", "INFO"):
        from regauth.logs import setup_logging

        setup_logging(settings)
    return RegauthBackend.for_settings(settings)


if __name__ == "__main__":
    sys.exit(main())
