"""DefaultAzureCredential in two parts, so that a silent metadata endpoint never hides ``az login``.

The first part is what the chain finds on the machine: environment variables, workload and managed
identity (whose endpoints may accept a connection and never answer), the shared token cache, VS Code.
It runs under the search ``deadline``. The second part is the developer tools the user runs (``az``,
``pwsh``, ``azd``, the OS broker): like a ``credential_process`` for AWS, they are waited for, each under
azure-identity's own process timeout. Asked in the same order as one DefaultAzureCredential would
ask them, they give the same token; only a first part that does not answer in time is cut short.

When ``AZURE_TOKEN_CREDENTIALS`` narrows the chain, the user chose its members: it runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from regauth.errors import ProviderError
from regauth.providers.base import DISCOVERY_DEADLINE, NoAmbientCredentials
from regauth.providers.deadline import within

# DefaultAzureCredential's members in its own order, as the exclude_* arguments that name them.
MACHINE = (
    "exclude_environment_credential",
    "exclude_workload_identity_credential",
    "exclude_managed_identity_credential",
    "exclude_shared_token_cache_credential",
    "exclude_visual_studio_code_credential",
)
TOOLS = (
    "exclude_cli_credential",
    "exclude_powershell_credential",
    "exclude_developer_cli_credential",
    "exclude_broker_credential",
)


class DefaultChain:
    def __init__(
        self,
        az: Any,
        az_errors: Any,
        environ: Mapping[str, str],
        late: Callable[[], ProviderError],
        **options: Any,
    ) -> None:
        self._errors = az_errors
        self._late = late
        self._tools: Any = None
        if environ.get("AZURE_TOKEN_CREDENTIALS", "").strip():
            self._machine = az.DefaultAzureCredential(**options)
            return
        self._machine = az.DefaultAzureCredential(**options, **dict.fromkeys(TOOLS, True))
        self._tools = az.DefaultAzureCredential(**dict.fromkeys(MACHINE, True))

    def get_token(self, scope: str) -> Any:
        """The token, or ``ClientAuthenticationError`` naming every credential tried, or the late error."""
        if self._tools is None:
            return self._machine.get_token(scope)
        try:
            return within(DISCOVERY_DEADLINE, lambda: self._machine.get_token(scope), self._late)
        except self._errors.ClientAuthenticationError as exc:
            machine: Exception = exc
        except NoAmbientCredentials as exc:
            machine = exc
        try:
            return self._tools.get_token(scope)
        except self._errors.ClientAuthenticationError as exc:
            if isinstance(machine, NoAmbientCredentials):
                raise machine from exc
            # One message listing both parts, as one chain's would.
            raise self._errors.ClientAuthenticationError(message=f"{machine}\n{exc}") from exc

    def close(self) -> None:
        self._machine.close()
        if self._tools is not None:
            self._tools.close()
