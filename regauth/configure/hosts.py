"""Which registries a ``configure`` run names: the configured records' hosts and those the user adds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from regauth.errors import UsageError
from regauth.registries import Registry
from regauth.servers import normalize_registry

HELPER = "regauth"  # the credential helper's name as the clients spell it: docker-credential-<HELPER>


def registry_hosts(records: Iterable[Registry], named: Sequence[str], *, host_wide_only: bool) -> list[str]:
    """Canonical ``host[:port]`` of every record in use and of every ``--registries`` entry, each once,
    in that order. A pattern is refused: the clients' ``credHelpers`` and ``certs.d`` match exact hosts
    only."""
    # A disabled record answers nothing: a client pointed at regauth for it would only get "not found".
    # ``host_wide_only``: the helper protocol sends a host, never a repository, so the helper answers
    # from the host-wide record alone; pointing docker or podman at it for a host that has only
    # per-prefix records would hide the credential the client has for it. The proxy sees repositories.
    hosts = [r.registry for r in records if r.active and not (host_wide_only and r.prefix is not None)]
    for item in named:
        for part in item.split(","):
            if not part.strip():
                continue
            if "*" in part or "?" in part:
                raise UsageError(
                    f"--registries {part.strip()!r}: the clients match exact hosts, not patterns; "
                    "name each host (or use --creds-store for docker)"
                )
            hosts.append(normalize_registry(part))
    return list(dict.fromkeys(hosts))


def no_hosts_error(client: str, alternative: str = "") -> UsageError:
    more = f", or {alternative}" if alternative else ""
    return UsageError(
        f"no registries to configure {client} for: add one with `regauth registry add`, or name hosts "
        f"with --registries HOST[,HOST...]{more}"
    )
