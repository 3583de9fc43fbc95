"""Secret storage: the OS keyring where a real one exists, else an encrypted file.

Backends are imported only when chosen, so a credential ``get`` served from the file store never
imports ``keyring``; and this package imports nothing itself, so the helper's fast ``get`` can use its
``aesgcm`` and ``sealed`` modules without the settings and file utilities behind the full store.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from regauth.config import Settings
    from regauth.store.base import SecretStore

__all__ = ["open_store", "resolve_backend"]


def resolve_backend(settings: Settings) -> str:
    """Name the backend to use: the explicit setting, else the remembered or probed ``auto`` choice."""
    if settings.store != "auto":
        return settings.store
    from regauth import layout
    from regauth.fsutil import atomic_write, read_private

    raw = read_private(settings.store_choice_file, limit=layout.STORE_CHOICE_MAX_BYTES)
    remembered = (raw or b"").decode("utf-8", "replace").strip()
    if remembered in ("keyring", "file"):
        return remembered
    from regauth.store.keyring import real_keyring_available

    # Probing the keyring costs a few hundred ms; remembering the answer keeps later calls fast.
    choice = "keyring" if real_keyring_available() else "file"
    from regauth.errors import StoreError

    try:
        atomic_write(settings.store_choice_file, f"{choice}\n".encode())
    except StoreError:
        # A data dir mounted read-only (shared records and secrets): probe again next time;
        # REGAUTH_STORE=file spares the probe.
        pass
    return choice


def open_store(settings: Settings) -> SecretStore:
    backend = resolve_backend(settings)
    if backend == "keyring":
        from regauth.store.keyring import KeyringStore

        return KeyringStore(settings)
    from regauth.store.file import FileStore

    return FileStore(settings)
