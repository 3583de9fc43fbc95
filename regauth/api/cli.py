"""The ``regauth serve`` and ``regauth token`` command lines (``regauth.cli`` mounts them)."""

from __future__ import annotations

from typing import Any

from regauth import argtypes
from regauth.api.commands import cmd_serve, cmd_token_create, cmd_token_list, cmd_token_revoke
from regauth.api.tokens import SCOPES

DEFAULT_LISTEN = "127.0.0.1:8450"


def add_parsers(commands: Any, examples: Any) -> None:
    """``serve`` and ``token`` under the top-level ``commands``; ``examples`` formats an epilog."""
    serve = commands.add_parser(
        "serve",
        help="serve the registries as an HTTP API (/api/v1) and a web console (/)",
        description="Serve the registry records as a JSON API under /api/v1 (its OpenAPI document at "
        "/api/v1/openapi.json) and a web console at /, over the same records, secret store and "
        "validation as the CLI. Every API request needs a token (`regauth token create`). Listens on "
        "loopback unless told otherwise; any other address needs --tls-cert and --tls-key.",
        epilog=examples(
            "regauth token create ci --scope write",
            "regauth serve",
            "regauth serve --listen 0.0.0.0:8450 --tls-cert api.pem --tls-key api.key",
        ),
    )
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help="address to listen on")
    serve.add_argument(
        "--tls-cert", type=argtypes.path, metavar="PEM", help="serve HTTPS with this certificate (chain)"
    )
    serve.add_argument("--tls-key", type=argtypes.path, metavar="PEM", help="the private key of --tls-cert")
    serve.add_argument(
        "--accept-cleartext-credentials",
        action="store_true",
        help="allow a non-loopback --listen without TLS (the API tokens cross the network in clear)",
    )
    serve.add_argument(
        "--allow-server-credentials",
        action="store_true",
        help="let API callers save and check records that use this server's own credentials: options "
        "naming its environment variables, files or AWS profiles, or a cloud provider for a host that "
        "is not that cloud's registry (refused by default)",
    )
    serve.add_argument("--quiet", action="store_true", help="no access log")
    serve.set_defaults(func=cmd_serve)

    token = commands.add_parser(
        "token",
        help="create, list and revoke the API tokens of `regauth serve`",
        description="API tokens for `regauth serve`: `read` may list, get and validate saved "
        "registries; `write` may also create, update, delete and check an unsaved body. A token is "
        "printed once, when it is created; only its hash is kept.",
        epilog=examples(
            "regauth token create ci --scope write", "regauth token list", "regauth token revoke ci"
        ),
    )
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a token and print it (once)",
        description="Create a token and print it on standard output; it is never shown again.",
        epilog=examples(
            "regauth token create ci --scope read", "TOKEN=$(regauth token create ci --scope write)"
        ),
    )
    create.add_argument("name", help="a name for it: letters, digits, '.', '_', '-'")
    create.add_argument("--scope", required=True, choices=SCOPES, help="read, or write (read and change)")
    create.set_defaults(func=cmd_token_create)
    listing = actions.add_parser(
        "list",
        help="list the tokens (names and scopes; never a token)",
        description="List the tokens: name, scope, creation time. The tokens themselves are not kept.",
        epilog=examples("regauth token list", "regauth token list --json"),
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_token_list)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a token (at once, for a running server too)",
        description="Revoke a token: a running `regauth serve` refuses it from the next request on.",
        epilog=examples("regauth token revoke ci"),
    )
    revoke.add_argument("name", help="the token's name (see `regauth token list`)")
    revoke.set_defaults(func=cmd_token_revoke)
