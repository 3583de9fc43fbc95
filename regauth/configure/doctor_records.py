"""``regauth doctor`` on each record: its host, the age of its secret, its last validation (or a new one),
whether its credential can push, and when it was last used on this machine."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from regauth import usage
from regauth.config import Settings
from regauth.configure.findings import ACTION, INFO, OK, WARN, Finding, days_ago
from regauth.errors import RegauthError
from regauth.registries import Registry
from regauth.store.base import SecretStore

# Container Registry (gcr.io and its regional hosts) is shut down in favour of Artifact Registry.
_GCR_HOSTS = ("gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io")
_DAY = 86400.0


class Limits(NamedTuple):
    max_age_days: float = 90.0  # a static secret older than this needs rotating
    unused_days: float = 90.0  # a record unused for longer is worth removing
    validate: bool = False  # validate every record again


def record_findings(
    settings: Settings, records: Sequence[Registry], limits: Limits, store: SecretStore | None
) -> Iterator[Finding]:
    if not records:
        yield Finding("records", INFO, "no registries configured (`regauth registry add NAME --url URL`)")
    now = datetime.datetime.now(datetime.timezone.utc)
    state_dir = str(settings.state_dir)
    for record in records:
        check = f"registry {record.name}"
        if record.registry in _GCR_HOSTS or record.registry.endswith(".gcr.io"):
            yield Finding(
                check,
                ACTION,
                f"{record.registry} is Container Registry, which is shut down: "
                "move to Artifact Registry (*.pkg.dev)",
            )
        age = age_days(record.updated_at, now)
        if (
            age is not None
            and record.provider == "static"
            and not record.anonymous
            and age > limits.max_age_days
        ):
            yield Finding(
                check,
                ACTION,
                f"its secret is {age:.0f} days old (over {limits.max_age_days:.0f}): rotate it with "
                f"`regauth registry update {record.name} --password-stdin`",
            )
        if limits.validate and store is not None:
            finding, access = _validated(settings, store, record, check)
        else:
            finding, access = _last_validation(record, check)
        yield finding
        if access is not None:
            yield from _access(record, check, access)
        yield _last_use(state_dir, record, check, limits.unused_days, now)


def _validated(
    settings: Settings, store: SecretStore, record: Registry, check: str
) -> tuple[Finding, str | None]:
    from regauth import registry_ops

    try:
        result = registry_ops.check(settings, store, record, None, record.repository)
    except RegauthError as exc:
        return Finding(check, ACTION, f"cannot be checked: {exc}"), None
    if result.ok:
        return Finding(check, OK, f"validates ({record.registry})"), result.access
    return Finding(check, ACTION, f"does not validate: {result.message}"), None


def _last_validation(record: Registry, check: str) -> tuple[Finding, str | None]:
    last = record.last_validation
    if not last:
        return Finding(
            check, INFO, f"{record.registry}: not validated since it was saved (--validate checks it)"
        ), None
    when = last.get("at", "?")
    if last.get("outcome") == "valid":
        return Finding(check, OK, f"{record.registry}: valid at its last check ({when})"), last.get("access")
    return Finding(
        check,
        ACTION,
        f"{record.registry}: its last check ({when}) said {last.get('outcome')}: {last.get('message', '')}; "
        f"`regauth registry validate {record.name}` checks it again",
    ), None


def _access(record: Registry, check: str, access: str) -> Iterator[Finding]:
    where = f" on {record.repository}" if record.repository else ""
    if access == "read-write":
        yield Finding(
            check,
            WARN,
            f"{record.registry}: its credential can also push or delete{where} (read-write); "
            "use read-only credentials when possible",
        )
    elif access == "read-only":
        yield Finding(check, OK, f"{record.registry}: its credential is read-only (pull only{where})")


def _last_use(
    state_dir: str, record: Registry, check: str, unused_days: float, now: datetime.datetime
) -> Finding:
    if not record.active:
        return Finding(check, INFO, "disabled: not used by design")
    remove = (
        f"if nothing needs it, `regauth registry remove {record.name}` (or `disable`); "
        "--unused-days sets the threshold"
    )
    last = usage.last_used(state_dir, record.id)
    if last is not None:
        idle = time.time() - last
        if idle > unused_days * _DAY:
            return Finding(
                check,
                ACTION,
                f"last used here {days_ago(idle)} (over {unused_days:g} days): {remove}",
            )
        return Finding(check, OK, f"last used here {days_ago(idle)}")
    # Never marked: unused for as long as the record and the marks have both existed here.
    since = usage.since(state_dir)
    created = age_days(record.created_at, now)
    if since is not None and created is not None:
        idle_days = min(created, (time.time() - since) / _DAY)
        if idle_days > unused_days:
            return Finding(
                check, ACTION, f"never used here in {idle_days:.0f} days (over {unused_days:g}): {remove}"
            )
    return Finding(check, INFO, "never used here yet")


def age_days(stamp: str, now: datetime.datetime) -> float | None:
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return (now - when).total_seconds() / _DAY
