"""Push a small test image into a registry with plain HTTP requests (urllib), independent of regauth.

Handles the three test set-ups: no auth, Basic (htpasswd) and Bearer (token realm, fetched with basic
auth for ``repository:NAME:pull,push``). ``push_test_image`` pushes random blobs (enough for copies);
``push_runnable_image`` pushes an image a runtime can unpack: a gzip'd tar layer and a config whose
``rootfs.diff_ids`` are the digests of the uncompressed tars.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import re
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    digest: str
    manifest: bytes
    config_digest: str
    layer_digests: tuple[str, ...]

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config_digest, *self.layer_digests)


class _Pusher:
    def __init__(
        self, url: str, context: ssl.SSLContext | None, username: str | None, password: str | None
    ) -> None:
        self.url = url
        self.context = context
        self.basic = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
        )
        self.authorization: str | None = None

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
            if self.authorization:
                req.add_header("Authorization", self.authorization)
            try:
                with urllib.request.urlopen(req, timeout=10, context=self.context) as resp:
                    return resp.status, dict(resp.headers), resp.read()
            except urllib.error.HTTPError as exc:
                with exc:
                    if exc.code != 401 or attempt:
                        raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None
                    self.authorization = self._authorize(exc.headers.get("WWW-Authenticate", ""))
        raise AssertionError("unreachable")

    def _authorize(self, challenge: str) -> str:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            assert self.basic, "the registry wants credentials"
            return self.basic
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode({"service": params["service"], "scope": params["scope"]})
        req = urllib.request.Request(f"{params['realm']}?{query}")
        if self.basic:
            req.add_header("Authorization", self.basic)
        with urllib.request.urlopen(req, timeout=10, context=self.context) as resp:
            return "Bearer " + json.loads(resp.read())["token"]

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, headers, _ = self.request("POST", f"{self.url}/v2/{repository}/blobs/uploads/", b"")
        location = urllib.parse.urljoin(self.url, headers["Location"])
        sep = "&" if "?" in location else "?"
        put_headers = {"Content-Type": "application/octet-stream"}
        self.request("PUT", f"{location}{sep}digest={digest}", data, put_headers)
        return digest


def push_test_image(
    url: str,
    repository: str = "test/app",
    tag: str = "1.0",
    *,
    context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    layers: int = 2,
) -> PushedImage:
    """Push a config, ``layers`` random blobs and a Docker v2 manifest; return what was pushed."""
    pusher = _Pusher(url, context, username, password)
    layer_blobs = [os.urandom(512 + 256 * i) for i in range(layers)]
    layer_digests = [pusher.push_blob(repository, blob) for blob in layer_blobs]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layer_digests},
            "config": {},
        }
    ).encode()
    layers_pushed = list(zip(layer_blobs, layer_digests, strict=True))
    return _push_manifest(pusher, url, repository, tag, config, layers_pushed)


# uname -m -> the OCI architecture; a runtime pulls only the manifest whose config matches its platform.
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def tar_layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A layer of regular files (0644, root-owned, mtime 0): (uncompressed tar, gzip of it)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return raw, gzip.compress(raw, mtime=0)


def push_runnable_image(
    url: str,
    repository: str = "test/real",
    tag: str = "1.0",
    *,
    context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    files: dict[str, bytes] | None = None,
) -> PushedImage:
    """Push one gzip'd tar layer of ``files``, a config for this host's platform with the layer's
    diff_id, and a Docker v2 manifest; return what was pushed."""
    pusher = _Pusher(url, context, username, password)
    raw, compressed = tar_layer(files or {"hello.txt": b"hello from regauth\n"})
    layer_digest = pusher.push_blob(repository, compressed)
    config = json.dumps(
        {
            "architecture": host_architecture(),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
            "config": {"Cmd": ["/hello.txt"]},
            "history": [{"created_by": "regauth tests"}],
        }
    ).encode()
    return _push_manifest(pusher, url, repository, tag, config, [(compressed, layer_digest)])


def _push_manifest(
    pusher: _Pusher, url: str, repository: str, tag: str, config: bytes, layers: list[tuple[bytes, str]]
) -> PushedImage:
    """Push ``config`` and a Docker v2 manifest of it and the pushed ``layers`` (blob, digest) as ``tag``."""
    config_digest = pusher.push_blob(repository, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": config_digest},
            "layers": [
                {"mediaType": LAYER_GZIP, "size": len(blob), "digest": blob_digest}
                for blob, blob_digest in layers
            ],
        }
    ).encode()
    _, headers, _ = pusher.request(
        "PUT", f"{url}/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": MANIFEST_V2}
    )
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert headers.get("Docker-Content-Digest") == digest, headers
    layer_digests = tuple(blob_digest for _, blob_digest in layers)
    return PushedImage(repository, tag, digest, manifest, config_digest, layer_digests)
