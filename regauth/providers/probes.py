"""Metadata probes bounded through the SDKs' own seams: the transport each one lets regauth pass.

A laptop on a network that drops link-local traffic, or a proxy that accepts every connection, turns
each probe into a wait for the SDK's own timeout: 3 s three times for google-auth, 300 s for
azure-core's read. Here each probe of a metadata endpoint waits ``PROBE_TIMEOUT`` at most; every
other request keeps the SDK's timeouts. botocore needs nothing here: its instance metadata probes
wait 1 s, once, unless the user configured otherwise (and ``deadline`` bounds the rest).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from regauth.providers.base import PROBE_TIMEOUT

# Where azure-identity's managed identity credentials ask for tokens: the IMDS address and the
# variables that move it (AKS pod identity, App Service, Service Fabric, Arc, Cloud Shell).
IMDS_HOST = "169.254.169.254"
MANAGED_IDENTITY_VARS = (
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
)

# google-auth's metadata server names and the variables that move it.
METADATA_HOSTS = ("169.254.169.254", "metadata.google.internal")
METADATA_VARS = ("GCE_METADATA_HOST", "GCE_METADATA_ROOT", "GCE_METADATA_IP")


def azure_transport(az_transport: Any, environ: Mapping[str, str]) -> Any:
    """azure-core's requests transport, with ``PROBE_TIMEOUT`` to connect and to read from the
    managed identity endpoints: DefaultAzureCredential's IMDS probe sets only a 1 s connect timeout,
    so an endpoint that accepts and never answers holds the chain for azure-core's 300 s read timeout.
    Other requests (Entra ID, the token exchange) keep their timeouts. A real endpoint answers in
    milliseconds, and the managed identity's retry policy retries a read that timed out."""

    def endpoint(url: str) -> tuple[str | None, int]:
        parts = urllib.parse.urlsplit(url if "//" in url else f"//{url}")
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)

    probed: set[tuple[str | None, int]] = {(IMDS_HOST, 80)}
    probed.update(endpoint(v) for name in MANAGED_IDENTITY_VARS if (v := environ.get(name, "").strip()))

    class ProbingTransport(az_transport.RequestsTransport):  # type: ignore[misc, unused-ignore]
        def send(self, request: Any, **kwargs: Any) -> Any:
            if endpoint(request.url) in probed:
                connect = kwargs.get("connection_timeout", self.connection_config.timeout)
                read = kwargs.get("read_timeout", self.connection_config.read_timeout)
                if not isinstance(connect, tuple):
                    kwargs["connection_timeout"] = min(connect, PROBE_TIMEOUT)
                    kwargs["read_timeout"] = min(read, PROBE_TIMEOUT)
            return super().send(request, **kwargs)

    return ProbingTransport()


class GoogleProbeRequest:
    """A google-auth transport whose requests to the metadata server wait ``PROBE_TIMEOUT`` at most.

    google-auth pings the metadata server three times, 3 s each with back-off between, before it
    concludes it is not on Google Cloud. A ping that times out here is answered as "no metadata server"
    (a 404 without the ``Metadata-Flavor`` header), which ends the ping loop at once. Every other
    request passes through unchanged.
    """

    def __init__(self, inner: Any, g_errors: Any, metadata_hosts: frozenset[str]) -> None:
        self._inner = inner
        self._errors = g_errors
        self._hosts = metadata_hosts

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in self._hosts and parts.hostname not in self._hosts:
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        bounded = PROBE_TIMEOUT if timeout is None else min(timeout, PROBE_TIMEOUT)
        try:
            return self._inner(url, method=method, body=body, headers=headers, timeout=bounded, **kwargs)
        except self._errors.TransportError:
            return _NoMetadataServer()


class _NoMetadataServer:
    status = 404
    headers: dict[str, str] = {}
    data = b""


def google_metadata_hosts(environ: Mapping[str, str]) -> frozenset[str]:
    hosts = set(METADATA_HOSTS)
    hosts.update(value for name in METADATA_VARS if (value := environ.get(name, "").strip()))
    return frozenset(hosts)
