"""Tokens from the environment, for CI: ``GITHUB_TOKEN`` for ghcr.io, GitLab's ``CI_JOB_TOKEN``, or
the variables a record names.

Record options: ``secret_env`` (the variable holding the secret), ``username_env`` (the variable
holding the username) or ``username`` (a literal username). With no options, a ghcr.io record reads
``GITHUB_TOKEN`` and a record for ``$CI_REGISTRY`` reads ``CI_JOB_TOKEN``. Never cached: the
environment is already at hand, and a CI token must not outlive its job in a store.
"""

from __future__ import annotations

from collections.abc import Mapping

from regauth.errors import ProviderError, UsageError
from regauth.providers.base import Credential, Notify, failure, option
from regauth.registries import Registry, check_username
from regauth.servers import normalize_registry

GHCR = "ghcr.io"
GITLAB_CI_USERNAME = "gitlab-ci-token"
# GitHub accepts any username beside a token; this is the one its docs use for app tokens.
GITHUB_DEFAULT_USERNAME = "x-access-token"
# The record options this provider reads (`--option KEY=VALUE`); `regauth registry add` refuses others.
OPTION_KEYS = frozenset({"secret_env", "username_env", "username"})


class EnvProvider:
    name = "env"

    def __init__(self, environ: Mapping[str, str], notify: Notify) -> None:
        self._env = environ

    def serves(self, host: str) -> bool:
        return self._default(host) is not None

    def credential(self, host: str, record: Registry | None, secret: str | None) -> Credential:
        # ``secret`` is always None: this provider's secret is in the environment, never in the store.
        secret_var = option(record, "secret_env")
        if secret_var is None:
            default = self._default(host, require_set=False)
            if default is None:
                raise failure(
                    self.name,
                    host,
                    record,
                    "no token variable is configured for this host",
                    "add the record option secret_env=VAR (and username_env=VAR or username=NAME)",
                )
            secret_var, default_username = default
        else:
            default_username = ""
        value = self._env.get(secret_var, "")
        if not value:
            raise failure(
                self.name, host, record, f"${secret_var} is not set or empty", f"export {secret_var}"
            )
        return Credential(username=self._username(host, record, fallback=default_username), secret=value)

    def _username(self, host: str, record: Registry | None, fallback: str = "") -> str:
        var = option(record, "username_env")
        if var is not None:
            value = self._env.get(var, "")
            if not value:
                raise failure(self.name, host, record, f"${var} is not set or empty", f"export {var}")
            return self._checked(host, record, value, f"${var}", f"set {var} to the username")
        literal = option(record, "username") or (record.username if record else None)
        if literal:
            return self._checked(host, record, literal, "the username option", "change it")
        if fallback:
            return fallback
        raise failure(
            self.name,
            host,
            record,
            "no username is configured",
            "add the record option username=NAME or username_env=VAR",
        )

    def _checked(self, host: str, record: Registry | None, username: str, source: str, todo: str) -> str:
        try:
            # The stored record's rule: Basic auth cannot carry a ':' or a control character.
            return check_username(username)
        except UsageError as exc:
            raise failure(self.name, host, record, f"{source}: {exc}", todo) from exc

    def _default(self, host: str, *, require_set: bool = True) -> tuple[str, str] | None:
        """The (secret variable, username) CI provides for ``host``, if any."""
        if host == GHCR and (self._env.get("GITHUB_TOKEN") or not require_set):
            return "GITHUB_TOKEN", self._env.get("GITHUB_ACTOR") or GITHUB_DEFAULT_USERNAME
        ci_registry = self._env.get("CI_REGISTRY", "")
        if ci_registry and (self._env.get("CI_JOB_TOKEN") or not require_set):
            try:
                gitlab = normalize_registry(ci_registry)
            except UsageError as exc:
                raise ProviderError(f"env provider: CI_REGISTRY={ci_registry!r} is not valid: {exc}") from exc
            if gitlab == host:
                return "CI_JOB_TOKEN", GITLAB_CI_USERNAME
        return None
