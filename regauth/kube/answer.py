"""What regauth answers the kubelet for one image: the helper's routing, in the kubelet's terms.

The credential comes from ``providers.routing.credential_for``, the call the helper's general ``get``
makes, so records, the secret store and the token cache are shared: a token minted for
``docker-credential-regauth`` serves the kubelet and the other way round.

- A credential: one auth key, the image's registry as the image spells it (so it always matches the
  image under the kubelet's rules), cached per registry; where a per-repository-prefix record answered,
  the key is ``registry/prefix``, and on a host with such a record every answer is cached per image.
  A minted token is cached by the kubelet for half its remaining life (as ecr-credential-provider
  does: the rest covers the time between mint and pull); a static one for ``default_cache``, or, with
  none given, the config's defaultCacheDuration.
- No record or provider for the registry, or an anonymous record: an empty ``auth``, so the kubelet
  pulls anonymously without logging an error on every pull. "Nothing configured" is kept only as long as
  a provider's "no credentials" is (``Settings.no_credentials_ttl``): a record added later must not wait
  for a 12-hour default to be used.
- A provider that cannot mint: ``ProviderError``, which the edge turns into exit 1 and one line.
- A request with a service-account token (``tokenAttributes`` in the kubelet's config, KEP-4412): the
  credential comes from ``providers.routing.workload_credential_for``: a cloud provider mints it with
  the workload's own identity (ECR: the role in the service account's annotation
  ``eks.amazonaws.com/ecr-role-arn``), cached per service account in the token cache; a static record
  answers with its secret; a workload that names no identity for its cloud is refused in one line
  naming the annotation to set (or, with ``node_fallback``, answered with the node's identity, as
  ecr-credential-provider does). The response has the same fields as any other: the v1 type has no
  field for the token's cache (``tokenAttributes.cacheType`` in the kubelet's config says how the
  kubelet keys it, per token or per service account), and each answer is good for every pod of
  that service account for as long as ``cacheDuration`` says, so either cache type is right. The
  token itself is never part of an answer: the kubelet drops one that returns it as a password unless
  its cacheType is Token.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from regauth.config import Settings
from regauth.errors import NotFoundError, ProviderError, UsageError
from regauth.kube.matching import urls_match
from regauth.kube.wire import (
    CACHE_IMAGE,
    CACHE_REGISTRY,
    MAX_DURATION_SECONDS,
    AuthEntry,
    Request,
    Response,
)
from regauth.layout import encodable
from regauth.printable import quoted
from regauth.providers.base import Credential
from regauth.providers.routing import credential_for, workload_credential_for
from regauth.providers.workload import Workload
from regauth.reference import parse_reference
from regauth.registries import RegistryBook
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore
from regauth.usage import mark_used

# The key the kubelet's keyring falls back to for an image that names no registry (Docker Hub).
_HUB_FALLBACK_KEY = "index.docker.io"


def answer(
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    request: Request,
    *,
    default_cache: int | None = None,
    node_fallback: bool = False,
    clock: Callable[[], float] = time.time,
) -> Response:
    token = request.service_account_token
    workload = None if token is None else Workload.checked(token, request.service_account_annotations)
    key = auth_key(request.image)
    reference = parse_reference(request.image)
    host, repository = reference.domain, reference.path
    record = book.for_image(host, repository)
    # The kubelet looks its cache up by image, then by registry: an answer cached for the registry
    # would serve the images of a prefix record too. So on a host with one, every answer is per image.
    canonical = normalize_registry(host)
    per_image = any(r.registry == canonical and r.prefix is not None for r in book.all())
    cache_key_type = CACHE_IMAGE if per_image else CACHE_REGISTRY
    if record is not None and record.prefix is not None:
        # This identity is for the prefix only: keyed for it, not for the whole registry.
        key = f"{key}/{record.prefix}"
    try:
        if workload is None:
            credential = credential_for(settings, book, store, host, repository=repository)
        else:
            credential = workload_credential_for(
                settings, book, store, host, workload, repository=repository, node_fallback=node_fallback
            )
    except NotFoundError:
        nothing = int(settings.no_credentials_ttl)
        brief = nothing if default_cache is None else min(nothing, default_cache)
        return Response(request.api_version, cache_key_type, brief, {})
    if record is not None:
        mark_used(str(settings.state_dir), record.id)  # for `regauth doctor`
    if credential is None:
        return Response(request.api_version, cache_key_type, default_cache, {})
    if token is not None and credential.secret == token:
        # Never the pod's token as the registry's password (see the module's docstring).
        raise ProviderError(f"the credential for {quoted(request.image)} is the service-account token itself")
    if not (encodable(credential.username) and encodable(credential.secret)):
        # A lone surrogate (json.loads's reading of "\ud800" from an endpoint): no UTF-8 answer holds it.
        raise ProviderError(f"the credential for {quoted(request.image)} is not text (invalid Unicode)")
    entry = AuthEntry(credential.username, credential.secret)
    return Response(
        request.api_version, cache_key_type, cache_seconds(credential, default_cache, clock()), {key: entry}
    )


def auth_key(image: str) -> str:
    """The auth key for ``image``'s registry: its first component as written (``docker.io``,
    ``registry:5000``), which the kubelet's matching always takes to cover the image."""
    first, slash, _ = image.partition("/")
    key = first if slash and _names_registry(first) else _HUB_FALLBACK_KEY
    if key != _HUB_FALLBACK_KEY and not urls_match(key, image):
        raise UsageError(f"the kubelet would match no credential to the image {quoted(image)}")
    return key


def cache_seconds(credential: Credential, default_cache: int | None, now: float) -> int | None:
    """How long the kubelet may keep ``credential``: half a token's remaining life, whole seconds (0,
    "do not cache", when that is under a second); ``default_cache`` for a secret that does not expire."""
    if credential.expires_at is None:
        return default_cache
    # An expiry centuries ahead (an endpoint's say) is kept no longer than a Go Duration can say.
    return min(max(int((credential.expires_at - now) // 2), 0), int(MAX_DURATION_SECONDS))


def _names_registry(first: str) -> bool:
    # As the kubelet's keyring and Docker decide: a "." or ":" names a host; so does localhost.
    return "." in first or ":" in first or first == "localhost"
