"""``regauth-credential-provider``: the process edge of the kubelet's exec protocol.

The kubelet runs ``<bin-dir>/regauth-credential-provider <args>`` with one request on stdin, waits at
most one minute, and reads one response from stdout; on a non-zero exit it logs stderr. So: exit 0 with
a response (an empty ``auth`` when regauth has nothing for the registry), or exit 1 with one line on
stderr that says what to do. Nothing but the response is ever written to stdout.

Arguments (the ``args`` of the provider in the kubelet's CredentialProviderConfig):
``--default-cache-duration DURATION`` (Go form, ``12h``): how long the kubelet keeps a credential that
does not expire; without it the response leaves ``cacheDuration`` out and the kubelet applies the
config's ``defaultCacheDuration``.
``--node-identity-fallback``: a request with a service-account token whose service account names no
identity for its cloud (ECR: no ``eks.amazonaws.com/ecr-role-arn`` annotation, no ``workload_role_arn``
option) is answered with the node's identity, as ecr-credential-provider does since it learned
KEP-4412. Without it such a request is refused in one line naming the annotation, so that turning on
``tokenAttributes`` never quietly leaves a workload with the node's access.

The service-account token is a credential of the pod: it is never written to stdout, stderr or a log.
"""

from __future__ import annotations

import io
import os
import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from regauth.kube.wire import Request, Response

PROGRAM = "regauth-credential-provider"
USAGE = (
    f"usage: {PROGRAM} [--default-cache-duration DURATION] [--node-identity-fallback] "
    "< CredentialProviderRequest"
)
NODE_FALLBACK = "--node-identity-fallback"
# Within the kubelet's fixed one-minute timeout, with room for the interpreter's start: past this the
# plugin says why itself, instead of being killed without a word in the kubelet's log.
ANSWER_DEADLINE = 45.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if sys.stdin is None:
        # Started with stdin closed (`<&-`): an empty request, refused in one line like any other.
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the process's stdin
    out, err = sys.stdout, sys.stderr
    for stream in (out, err):
        # The protocol is UTF-8 JSON whatever the node's locale.
        if isinstance(stream, io.TextIOWrapper) and stream.encoding.lower().replace("-", "") != "utf8":
            stream.reconfigure(encoding="utf-8")
    from regauth.errors import RegauthError

    token = ""
    try:
        if args in (["--help"], ["-h"]):
            out.write(USAGE + "\n")
            return 0
        if args == ["--version"]:
            from regauth import __version__

            out.write(f"{PROGRAM} (regauth) {__version__}\n")
            return 0
        default_cache, node_fallback = _options(args)
        from regauth.coredump import disable_core_dumps
        from regauth.kube.wire import MAX_REQUEST_BYTES, decode_request, encode_response

        disable_core_dumps()
        request = decode_request(sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1))
        token = request.service_account_token or ""
        response = _answer(request, default_cache, node_fallback)
    except RegauthError as exc:
        # The pod's token is never shown, whatever a cloud's message echoed of it.
        _fail(err, str(exc).replace(token, "***") if token else str(exc))
        return 1
    out.write(encode_response(response) + "\n")
    out.flush()
    return 0


def _options(args: list[str]) -> tuple[int | None, bool]:
    """(``--default-cache-duration`` in seconds or None, whether ``--node-identity-fallback`` is set)."""
    from regauth.errors import UsageError
    from regauth.kube.wire import parse_go_duration

    flag = "--default-cache-duration"
    value: str | None = None
    node_fallback = False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == NODE_FALLBACK:
            node_fallback = True
        elif arg == flag and rest:
            value = rest.pop(0)
        elif arg.startswith(flag + "="):
            value = arg.partition("=")[2]
        else:
            from regauth.printable import quoted

            raise UsageError(f"unknown argument {quoted(arg)} in the provider's args; {USAGE}")
    return (None if value is None else int(parse_go_duration(value))), node_fallback


def _answer(request: Request, default_cache: int | None, node_fallback: bool) -> Response:
    from regauth.config import load_settings
    from regauth.errors import ProviderError
    from regauth.kube.answer import answer
    from regauth.providers.deadline import within
    from regauth.registries import RegistryBook
    from regauth.store.lazy import LazyStore

    settings = load_settings()
    if settings.log_level in ("DEBUG", "INFO"):
        from regauth.logs import setup_logging

        setup_logging(settings)
    store = LazyStore.for_settings(settings)
    book = RegistryBook(settings, store)

    def late() -> ProviderError:
        return ProviderError(
            f"no credential for {request.image} within {ANSWER_DEADLINE:.0f}s (the kubelet gives up at "
            "60s); check the network to the registry and the cloud's token endpoint, and see "
            f"`regauth registry which {request.image}`"
        )

    def run() -> Response:
        return answer(
            settings, book, store, request, default_cache=default_cache, node_fallback=node_fallback
        )

    return within(ANSWER_DEADLINE, run, late)


def _fail(err: IO[str], message: str) -> None:
    from regauth.logs import log_safe

    # A provider's or an SDK's text may be in it: redacted and escaped, as in the log.
    err.write(f"{PROGRAM}: {log_safe(message)}\n")
    err.flush()


if __name__ == "__main__":
    sys.exit(main())
