"""The kubelet's exec protocol for image credential providers, as ``credentialprovider.kubelet.k8s.io``.

The kubelet writes one ``CredentialProviderRequest`` to the plugin's stdin in the ``apiVersion`` its
configuration names (v1alpha1, v1beta1 and v1 are all still accepted by the kubelet) and reads one
``CredentialProviderResponse`` back. It checks that the response's group and version equal the request's
and decodes it strictly: an unknown field, a wrong ``kind`` or a ``cacheKeyType`` other than Image,
Registry or Global discards the answer, and the pull goes on without credentials. So the response holds
exactly the fields of the type and nothing else.

The request is read leniently (a newer kubelet may send fields this version does not know); its ``kind``,
``apiVersion`` and ``image`` must be right.

KEP-4412 (alpha in Kubernetes 1.33, beta and on by default in 1.34): with ``tokenAttributes`` in the
kubelet's config, which the kubelet allows only for v1, a v1 request carries ``serviceAccountToken`` and
``serviceAccountAnnotations``. The response type is the same with or without them: how the kubelet
caches an answer to such a request is ``tokenAttributes.cacheType`` in its own config (Token or
ServiceAccount, since 1.34), never a response field, so a response with any other field is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from regauth.errors import UsageError
from regauth.printable import quoted

GROUP = "credentialprovider.kubelet.k8s.io"
V1 = f"{GROUP}/v1"
API_VERSIONS = (V1, f"{GROUP}/v1beta1", f"{GROUP}/v1alpha1")
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"

# The cache key types: the kubelet keeps an answer for the image, its registry or every image.
CACHE_IMAGE = "Image"
CACHE_REGISTRY = "Registry"

# A request is an image name and, with tokenAttributes, a service-account token and a few annotations.
MAX_REQUEST_BYTES = 1 << 20


class Request(NamedTuple):
    api_version: str
    image: str
    # KEP-4412: only with tokenAttributes in the kubelet's configuration, and only in v1.
    service_account_token: str | None = None
    service_account_annotations: Mapping[str, str] = {}  # never mutated: the shared default is safe

    def __repr__(self) -> str:
        token = "'***'" if self.service_account_token else "None"
        return f"Request(api_version={self.api_version!r}, image={self.image!r}, token={token})"


class AuthEntry(NamedTuple):
    username: str
    password: str

    def __repr__(self) -> str:
        return f"AuthEntry(username={self.username!r}, password='***')"


class Response(NamedTuple):
    api_version: str
    cache_key_type: str
    # Seconds; None leaves the field out, so the kubelet uses its defaultCacheDuration; 0: never cache.
    cache_seconds: int | None
    auth: Mapping[str, AuthEntry]

    def __repr__(self) -> str:
        return (
            f"Response(api_version={self.api_version!r}, cache_key_type={self.cache_key_type!r}, "
            f"cache_seconds={self.cache_seconds!r}, auth keys={sorted(self.auth)!r})"
        )


def decode_request(raw: bytes) -> Request:
    """The request the kubelet wrote, or ``UsageError`` saying in one line what is wrong with it."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise UsageError(f"the request on stdin is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: nesting deeper than the interpreter's limit, which no request has.
        raise UsageError(
            f"the request on stdin is not JSON ({type(exc).__name__}); the kubelet sends "
            f"one {REQUEST_KIND} object"
        ) from exc
    if not isinstance(data, dict):
        raise UsageError(f"the request on stdin is not a JSON object; the kubelet sends one {REQUEST_KIND}")
    api_version = data.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise UsageError(
            f"the request's apiVersion is {_shown(api_version)}, not one of {', '.join(API_VERSIONS)}"
        )
    if data.get("kind") != REQUEST_KIND:
        raise UsageError(f"the request's kind is {_shown(data.get('kind'))}, not {REQUEST_KIND}")
    image = data.get("image")
    if not isinstance(image, str) or not image:
        raise UsageError(f"the request has no image (a non-empty string), it has {_shown(image)}")
    token = data.get("serviceAccountToken")
    if token is not None and not isinstance(token, str):
        raise UsageError("the request's serviceAccountToken is not a string")
    if token and api_version != V1:
        # The kubelet refuses tokenAttributes for any other version: this request is not the kubelet's.
        raise UsageError(
            f"the request has a serviceAccountToken in {api_version}; the kubelet sends one in {V1} only"
        )
    annotations = data.get("serviceAccountAnnotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise UsageError("the request's serviceAccountAnnotations is not a map of strings to strings")
    return Request(api_version, image, token or None, annotations)


def encode_response(response: Response) -> str:
    """The response as one line of JSON, with exactly the type's fields in the type's order."""
    data: dict[str, Any] = {
        "kind": RESPONSE_KIND,
        "apiVersion": response.api_version,
        "cacheKeyType": response.cache_key_type,
    }
    if response.cache_seconds is not None:
        data["cacheDuration"] = go_duration(response.cache_seconds)
    data["auth"] = {
        key: {"username": entry.username, "password": entry.password} for key, entry in response.auth.items()
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def go_duration(seconds: int) -> str:
    """Whole seconds as Go's ``time.Duration.String`` writes them (``1h0m0s``, ``2m5s``, ``0s``): the
    form ``metav1.Duration`` decodes."""
    if seconds < 0:
        raise ValueError("a cache duration is never negative")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


# Go's time.Duration is int64 nanoseconds: about 292 years, the longest cacheDuration the kubelet reads.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration (``12h``, ``1h30m``, ``90s``, ``0``), as ``time.ParseDuration`` reads
    it; ``UsageError`` otherwise. Negative durations are refused: no cache duration is negative."""
    rest = text.strip()
    if rest == "0":
        return 0.0
    if not rest or rest[0] in "+-":
        raise UsageError(f"invalid duration {quoted(text)}: use Go's form, e.g. 12h, 1h30m, 90s")
    total = 0.0
    while rest:
        number_end = 0
        while number_end < len(rest) and (rest[number_end].isdigit() or rest[number_end] == "."):
            number_end += 1
        unit_end = number_end
        while unit_end < len(rest) and not (rest[unit_end].isdigit() or rest[unit_end] == "."):
            unit_end += 1
        number, unit = rest[:number_end], rest[number_end:unit_end]
        if number in ("", ".") or number.count(".") > 1 or unit not in _UNITS or not number.isascii():
            raise UsageError(f"invalid duration {quoted(text)}: use Go's form, e.g. 12h, 1h30m, 90s")
        total += float(number) * _UNITS[unit]
        rest = rest[unit_end:]
    if total > MAX_DURATION_SECONDS:
        # Go's Duration is int64 nanoseconds: ParseDuration fails past it, and so would the kubelet.
        raise UsageError(f"invalid duration {quoted(text)}: longer than Go's limit of about 292 years")
    return total


def _shown(value: object) -> str:
    return quoted(value) if isinstance(value, str) else "missing" if value is None else type(value).__name__
