"""The one table of providers: each name, where its class is, whether it mints tokens and whether it is
handed the record's secret. A new provider is one module in ``providers/`` and one line here.

Classes are named as ``"module:Class"`` and imported only when asked for (``ProviderKind.load``), so
reading the table costs no provider module and no SDK. This module imports nothing at all, not even
``typing``: the registries file's check (``layout.record_problem``), which the helper's fast ``get``
runs too, reads its names.

The order is the routing order for a host with no record: each provider's ``serves(host)`` is asked in
turn, so the CI variables (``env``) answer before a cloud's ambient credentials.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

    from regauth.providers.base import ProviderFactory


class ProviderKind:
    """One line of the table: what the rest of regauth knows of a provider without importing it."""

    __slots__ = ("name", "target", "mints", "reads_secret")

    def __init__(self, name: str, target: str, *, mints: bool, reads_secret: bool) -> None:
        self.name = name
        # "module:Class"; the class takes (environ, notify), as ``base.ProviderFactory`` says.
        self.target = target
        # Its credentials are short-lived tokens, kept in the token cache: a ``base.MintingProvider``.
        self.mints = mints
        # Routing reads the record's secret from the store and passes it to ``credential``; the
        # others get None, so a get for them never reads (or opens) the store for a secret.
        self.reads_secret = reads_secret

    def load(self) -> ProviderFactory:
        """The provider's class, its module imported now (never its SDK: that waits for ``credential``)."""
        factory: ProviderFactory = getattr(self._module(), self.target.partition(":")[2])
        return factory

    def option_keys(self) -> frozenset[str]:
        """The record options it reads (``--option KEY=VALUE``), declared as ``OPTION_KEYS`` in its module."""
        keys: frozenset[str] = self._module().OPTION_KEYS
        return keys

    def _module(self) -> ModuleType:
        module = self.target.partition(":")[0]
        # __import__ with a fromlist gives the module itself; importlib would be one more import.
        return __import__(module, fromlist=["OPTION_KEYS"])

    def __repr__(self) -> str:
        flags = f"mints={self.mints}, reads_secret={self.reads_secret}"
        return f"ProviderKind({self.name!r}, {self.target!r}, {flags})"


PROVIDERS: dict[str, ProviderKind] = {
    kind.name: kind
    for kind in (
        ProviderKind("static", "regauth.providers.static:StaticProvider", mints=False, reads_secret=True),
        ProviderKind("env", "regauth.providers.env:EnvProvider", mints=False, reads_secret=False),
        ProviderKind("ecr", "regauth.providers.ecr:EcrProvider", mints=True, reads_secret=False),
        ProviderKind("acr", "regauth.providers.acr:AcrProvider", mints=True, reads_secret=True),
        ProviderKind("gcp", "regauth.providers.gcp:GcpProvider", mints=True, reads_secret=False),
    )
}
# The names a record's ``provider`` may hold, in table order.
NAMES = tuple(PROVIDERS)
