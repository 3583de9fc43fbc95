"""The kubelet's side of the exec protocol, as the tests hold regauth to it.

``run_plugin`` runs the installed ``regauth-credential-provider`` as the kubelet does (args, one
request on stdin, one-minute budget); ``kubelet_decode`` reads its stdout as the kubelet's strict
decoder does (kubernetes pkg/credentialprovider/plugin/plugin.go: the group and version must equal the
request's, the kind must be CredentialProviderResponse, unknown or duplicate fields fail the decode,
cacheKeyType must be Image, Registry or Global, cacheDuration a Go duration); ``keyring_lookup`` picks the
auth entries the kubelet's keyring would use for an image (reverse-sorted keys, URLsMatch).

The response has the same five fields in every version, with or without a service-account token in the
request (KEP-4412): how the kubelet caches an answer to a request with a token is
``tokenAttributes.cacheType`` in its own config (kubernetes PR 132617, 1.34), not a response field, so a
``serviceAccountTokenCacheType`` in a response is an unknown field and the decode fails. With a token,
the kubelet (cacheType ServiceAccount) also drops a response whose password is that token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from regauth.kube.matching import urls_match

PLUGIN = str(Path(sysconfig.get_path("scripts")) / "regauth-credential-provider")
GROUP = "credentialprovider.kubelet.k8s.io"
V1 = f"{GROUP}/v1"
_RESPONSE_FIELDS = {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}
_DURATION = re.compile(r"^(?:0|(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|ns))+)$")


def request(image: str, api_version: str = V1, **extra: Any) -> bytes:
    return json.dumps(
        {"kind": "CredentialProviderRequest", "apiVersion": api_version, "image": image, **extra}
    ).encode()


def run_plugin(
    stdin: bytes, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [PLUGIN, *args],
        input=stdin,
        capture_output=True,
        timeout=60,  # the kubelet's own limit
        env=dict(os.environ) if env is None else env,
        check=False,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate fields {keys}"
    return dict(pairs)


def kubelet_decode(
    stdout: str, api_version: str = V1, *, service_account_token: str | None = None
) -> dict[str, Any]:
    """The response as the kubelet would take it; an AssertionError where the kubelet would drop it.

    ``service_account_token``: the token the request carried (see the module's docstring)."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, "one JSON document, nothing else"
    data = json.loads(stdout, object_pairs_hook=_no_duplicates)
    assert isinstance(data, dict)
    assert data.get("apiVersion") == api_version, "apiVersion must equal the request's"
    assert data.get("kind") == "CredentialProviderResponse"
    assert set(data) <= _RESPONSE_FIELDS, f"unknown fields {set(data) - _RESPONSE_FIELDS}"
    assert data.get("cacheKeyType") in ("Image", "Registry", "Global")
    if "cacheDuration" in data:
        assert isinstance(data["cacheDuration"], str) and _DURATION.match(data["cacheDuration"])
    auth = data.get("auth")
    assert auth is None or isinstance(auth, dict)
    for entry in (auth or {}).values():
        assert isinstance(entry, dict) and set(entry) <= {"username", "password"}
        assert all(isinstance(v, str) for v in entry.values())
        assert service_account_token is None or entry.get("password") != service_account_token
    return data


def go_seconds(duration: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    if duration == "0":
        return 0.0
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", duration))


def keyring_lookup(auth: dict[str, dict[str, str]], image: str) -> list[dict[str, str]]:
    """The entries the kubelet's keyring tries for ``image``, most specific key first."""
    found = [auth[key] for key in sorted(auth, reverse=True) if urls_match(key, image)]
    if not found and "index.docker.io" in auth:
        first, slash, _ = image.partition("/")
        if not slash or first in ("docker.io", "index.docker.io") or not any(c in first for c in ".:"):
            found = [auth["index.docker.io"]]
    return found
