"""``regauth registry which HOST|IMAGE``: who answers a credential request for a host, never the secret.

It follows the credential helper's routing (``providers.routing``): the host's record, else the CI
variables (``env``), else a cloud provider from the host's name. Nothing is minted or sent: it says
where the answer would come from, so it is safe to run anywhere and prints no secret.
"""

from __future__ import annotations

from typing import Any

from regauth.config import Settings
from regauth.providers.routing import minting_provider, route_ambient
from regauth.providers.table import PROVIDERS
from regauth.reference import parse_reference
from regauth.registries import Registry, RegistryBook, stored_secret
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore

# Every answer has these keys, in this order (None where one does not apply), for scripts.
FIELDS = ("target", "registry", "image", "answered_by", "record", "provider", "username", "credential")


def split_target(text: str) -> tuple[str, str | None]:
    """(canonical host, normalised image reference or None) for a host, a server URL or an image.

    As ``docker login`` takes a host and ``docker pull`` an image: a URL, or a name with no ``/`` that
    ends in ``:PORT``, or has a ``.`` and no ``:``, or is ``localhost``, is a host; anything else an
    image (``ubuntu:22.04`` is ``docker.io/library/ubuntu:22.04``).
    """
    text = text.strip()
    if "://" in text or ("/" not in text and _host_like(text)):
        return normalize_registry(text), None
    ref = parse_reference(text)
    return normalize_registry(ref.domain), str(ref.with_default_tag())


def answer_for(settings: Settings, book: RegistryBook, store: SecretStore, target: str) -> dict[str, Any]:
    host, image = split_target(target)
    answer: dict[str, Any] = dict.fromkeys(FIELDS)
    answer.update(target=target, registry=host, image=image)
    # An image names its repository: a per-prefix record for it answers before the host-wide one. A
    # host is looked up as given, as routing does: "http://h:443" is "h:443", but "h:443" is "h".
    if image is None:
        record = book.for_host(target)
    else:
        ref = parse_reference(image)
        record = book.for_image(ref.domain, ref.path)
    if record is not None and not record.active:
        # As the helper's routing: a disabled record answers not-found, and nothing answers in its stead.
        return {
            **answer,
            "answered_by": "nothing",
            "record": record.name,
            "credential": f"none: registry {record.name!r} is disabled, so the helper answers not-found "
            f"(`regauth registry enable {record.name}`)",
        }
    if record is not None:
        return {**answer, **_from_record(settings, store, record)}
    provider = route_ambient(settings, host)
    if provider is None:
        return {
            **answer,
            "answered_by": "nothing",
            "credential": "none: no record or provider answers for it, so pulls are anonymous "
            f"(add one with `regauth registry add NAME --url {host}`)",
        }
    if PROVIDERS[provider].mints:
        credential = (
            f"a token minted from the ambient {minting_provider(provider, settings).cloud} credentials, "
            f"cached in the {store.name} store until it expires"
        )
    else:
        credential = (
            "a CI token from the environment (GITHUB_TOKEN for ghcr.io, CI_JOB_TOKEN for $CI_REGISTRY)"
        )
    return {**answer, "answered_by": "provider", "provider": provider, "credential": credential}


def _from_record(settings: Settings, store: SecretStore, record: Registry) -> dict[str, Any]:
    found: dict[str, Any] = {
        "answered_by": "record",
        "record": record.name,
        "provider": record.provider,
        "username": record.username,
    }
    if record.provider == "static":
        if record.anonymous:
            found["credential"] = "none: the record is anonymous"
        elif stored_secret(store, record) is not None:
            found["credential"] = f"its username and secret, kept in the {store.name} store"
        else:
            found["credential"] = (
                f"missing: the {store.name} store has no secret for it "
                f"(set one with `regauth registry update {record.name} --password-stdin`)"
            )
    elif PROVIDERS[record.provider].mints:
        cloud = minting_provider(record.provider, settings).cloud
        found["credential"] = (
            f"a token minted from {cloud} credentials as the record's options say, "
            f"cached in the {store.name} store until it expires"
        )
    else:
        found["credential"] = "a token from the environment variable the record names"
    return found


def _host_like(text: str) -> bool:
    if text.startswith("["):
        return True
    name, colon, after = text.rpartition(":")
    if colon:
        # host:5000 is a host, ubuntu:22.04 an image with a tag.
        return after.isdigit()
    return "." in text or text == "localhost"
