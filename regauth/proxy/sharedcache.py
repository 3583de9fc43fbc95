"""A blob cache shared by several proxies: an S3-compatible bucket (``--cache-url s3://BUCKET/PREFIX``).

boto3 (the ``aws`` extra) talks to it, with its own settings: credentials, region, and the endpoint
(``AWS_ENDPOINT_URL_S3``, or a profile's), so MinIO, Ceph RGW or moto work unchanged. Everything here
blocks (boto3 does): the proxy calls it in worker threads.

Objects under PREFIX:

- ``blobs/<algorithm>/<hex>``: a blob, written by a multipart upload while it streams to the client and
  completed only once its digest matched, with ``If-None-Match: *``: two instances never publish twice,
  and nothing unverified is ever visible;
- ``manifests/<algorithm>/<hex>``: a manifest fetched by digest and matched (its media type as the
  object's Content-Type), written conditionally;
- ``confirm/<algorithm>/<hex>/<d|c>/<host>/<repository>``: empty; the confirmations of
  ``confirmations.py`` (d: the upstream delivered the blob for that repository, c: it confirmed it),
  so an instance serves a blob only where its upstream would, whichever instance learnt it;
- ``leases/<algorithm>/<hex>/<generation>``: who fetches a cold blob. An instance takes generation 1
  with a conditional write; the others wait for the blob and stream it from the bucket. The holder
  renews its lease while it fetches; when a lease's expiry passes (its instance died), a waiter takes
  over by writing the next generation, again conditionally, so one instance wins each round.

Hits stream through the proxy (verified), or with ``--cache-redirect SECONDS`` the client is sent to a
presigned URL of the blob, valid that long, and checks the digest itself.

The lifecycle rule of the bucket is the eviction policy: objects under ``blobs/`` may go at any time;
a confirmation without its blob only makes the blob fetched again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from regauth.distribution.transport import MANIFEST_MAX
from regauth.errors import UsageError

log = logging.getLogger("regauth.proxy")

# S3's smallest part but the last is 5 MiB; larger parts mean fewer requests per blob.
PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Facts:
    """What the bucket knows of one blob's upstreams: hosts that delivered it, (host, repository) pairs."""

    delivered_by: frozenset[str]
    pairs: frozenset[tuple[str, str]]


class SharedCache:
    def __init__(
        self, url: str, *, lease_seconds: float = 30.0, redirect_seconds: float = 0.0, client: Any = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise UsageError(f"--cache-url {url!r}: use s3://BUCKET/PREFIX")
        self.url = url
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.lease_seconds = lease_seconds
        # Hits answered with a redirect to a presigned URL valid this long; 0: streamed by the proxy.
        self.redirect_seconds = redirect_seconds
        self.owner = os.urandom(8).hex()
        self._client = client if client is not None else _client()

    # --- blobs -----------------------------------------------------------------------------------

    def blob_key(self, digest: str) -> str:
        algorithm, _, hex_part = digest.partition(":")
        return f"{self.prefix}blobs/{algorithm}/{hex_part}"

    def size_of(self, digest: str) -> int | None:
        """The published blob's size, or None when the bucket does not hold it."""
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self.blob_key(digest))
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        return int(head["ContentLength"])

    def open(self, digest: str) -> tuple[Any, int] | None:
        """The published blob's body (a stream to ``read``) and size, or None."""
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.blob_key(digest))
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        return answer["Body"], int(answer["ContentLength"])

    def presigned(self, digest: str) -> str:
        params = {"Bucket": self.bucket, "Key": self.blob_key(digest)}
        expires = max(1, int(self.redirect_seconds))
        return str(self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires))

    def manifest_key(self, digest: str) -> str:
        algorithm, _, hex_part = digest.partition(":")
        return f"{self.prefix}manifests/{algorithm}/{hex_part}"

    def get_manifest(self, digest: str) -> tuple[bytes, str] | None:
        """A manifest kept by digest (its bytes, read within the manifest cap, and media type), or None."""
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.manifest_key(digest))
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        with answer["Body"] as body:
            if int(answer["ContentLength"]) > MANIFEST_MAX:
                return None
            return body.read(MANIFEST_MAX), str(answer.get("ContentType", "application/octet-stream"))

    def put_manifest(self, digest: str, body: bytes, media_type: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.manifest_key(digest),
                Body=body,
                ContentType=media_type,
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _status(exc) not in (409, 412):  # kept by another instance already
                raise

    def upload(self, digest: str) -> Upload:
        return Upload(self, digest)

    # --- confirmations ---------------------------------------------------------------------------

    def _facts_prefix(self, digest: str) -> str:
        algorithm, _, hex_part = digest.partition(":")
        return f"{self.prefix}confirm/{algorithm}/{hex_part}/"

    def facts(self, digest: str) -> Facts:
        prefix = self._facts_prefix(digest)
        delivered: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                kind, _, rest = item["Key"][len(prefix) :].partition("/")
                host, _, repository = rest.partition("/")
                if kind not in ("d", "c") or not host or not repository:
                    continue
                pairs.add((unquote(host), repository))
                if kind == "d":
                    delivered.add(unquote(host))
        return Facts(frozenset(delivered), frozenset(pairs))

    def remember(self, host: str, repository: str, digest: str, *, delivered: bool) -> None:
        key = f"{self._facts_prefix(digest)}{'d' if delivered else 'c'}/{quote(host, safe='')}/{repository}"
        self._client.put_object(Bucket=self.bucket, Key=key, Body=b"")

    # --- leases ----------------------------------------------------------------------------------

    def _lease_prefix(self, digest: str) -> str:
        algorithm, _, hex_part = digest.partition(":")
        return f"{self.prefix}leases/{algorithm}/{hex_part}/"

    def try_lease(self, digest: str) -> int | None:
        """The generation of the lease this instance now holds, or None while another instance's lease
        on ``digest`` is alive."""
        prefix = self._lease_prefix(digest)
        answer = self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        generations = [
            int(name) for item in answer.get("Contents", []) if (name := item["Key"][len(prefix) :]).isdigit()
        ]
        current = max(generations, default=0)
        if current and not self._expired(prefix, current):
            return None
        return current + 1 if self._put_lease(digest, current + 1, conditional=True) else None

    def renew(self, digest: str, generation: int) -> None:
        self._put_lease(digest, generation, conditional=False)

    def release(self, digest: str, generation: int) -> None:
        """Drop this instance's lease on ``digest`` (once it is published, or given up) and the expired
        ones before it. Never a later generation: that is an instance that took over from this one,
        believing it dead, and is still fetching; without its lease a third would fetch as well."""
        prefix = self._lease_prefix(digest)
        answer = self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        for item in answer.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if not name.isdigit() or int(name) <= generation:
                self._client.delete_object(Bucket=self.bucket, Key=item["Key"])

    def _expired(self, prefix: str, generation: int) -> bool:
        from botocore.exceptions import ClientError

        try:
            body = self._client.get_object(Bucket=self.bucket, Key=f"{prefix}{generation}")["Body"].read(4096)
        except ClientError as exc:
            if _status(exc) == 404:
                return True  # released meanwhile
            raise
        try:
            expires = float(json.loads(body)["expires"])
        except (ValueError, KeyError, TypeError):
            return True  # not a lease this code wrote: nobody holds it
        return expires <= time.time()

    def _put_lease(self, digest: str, generation: int, *, conditional: bool) -> bool:
        from botocore.exceptions import ClientError

        body = json.dumps({"owner": self.owner, "expires": time.time() + self.lease_seconds}).encode()
        extra = {"IfNoneMatch": "*"} if conditional else {}
        key = f"{self._lease_prefix(digest)}{generation}"
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        except ClientError as exc:
            if _status(exc) in (409, 412):
                return False  # another instance wrote this generation first
            raise
        return True


class Upload:
    """One blob's multipart upload, fed as it streams, completed only once it is verified."""

    def __init__(self, cache: SharedCache, digest: str) -> None:
        self._cache = cache
        self._key = cache.blob_key(digest)
        self._id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.failed = False
        # A part may still be on its way in a worker thread when the fetch is given up on the loop.
        self._lock = threading.Lock()
        self._closed = False

    def add(self, chunks: list[bytes]) -> None:
        if self.failed or self._closed:
            return
        self._pending += chunks
        self._pending_size += sum(len(chunk) for chunk in chunks)
        if self._pending_size >= PART_SIZE:
            self._send_part()

    def _send_part(self) -> None:
        client, bucket = self._cache._client, self._cache.bucket
        try:
            with self._lock:
                if self._closed:
                    return
                if self._id is None:
                    self._id = client.create_multipart_upload(Bucket=bucket, Key=self._key)["UploadId"]
            number = len(self._parts) + 1
            answer = client.upload_part(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._id,
                PartNumber=number,
                Body=b"".join(self._pending),
            )
            self._parts.append({"ETag": answer["ETag"], "PartNumber": number})
        except Exception as exc:  # noqa: BLE001 - any failure of the bucket only stops the sharing
            log.warning("shared cache: cannot upload %s: %s; not shared", self._key, reason(exc))
            self.failed = True
        self._pending, self._pending_size = [], 0

    def complete(self) -> bool:
        """Publish (conditionally: a blob another instance published stays as it is); True if the
        bucket now holds the blob."""
        from botocore.exceptions import ClientError

        if self.failed:
            self.abort()
            return False
        if self._pending or not self._parts:
            self._send_part()
        if self.failed or self._id is None:
            self.abort()
            return False
        client, bucket = self._cache._client, self._cache.bucket
        try:
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._id,
                MultipartUpload={"Parts": self._parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            self.abort()
            return _status(exc) in (409, 412)  # published by another instance meanwhile
        except Exception as exc:  # noqa: BLE001 - the bucket out of reach: the blob is just not shared
            log.warning("shared cache: cannot publish %s: %s", self._key, reason(exc))
            self.abort()
            return False
        return True

    def abort(self) -> None:
        with self._lock:
            self._closed = True
            upload, self._id = self._id, None
        if upload is None:
            return
        try:
            self._cache._client.abort_multipart_upload(
                Bucket=self._cache.bucket, Key=self._key, UploadId=upload
            )
        except Exception as exc:  # noqa: BLE001 - the bucket's lifecycle rule removes what is left
            log.warning("shared cache: cannot abort the upload of %s: %s", self._key, reason(exc))


def _client() -> Any:
    try:
        import boto3
    except ImportError:
        raise UsageError(
            "--cache-url needs boto3: install regauth with the aws extra (regauth[aws])"
        ) from None
    # boto3's own settings: credentials, region, and AWS_ENDPOINT_URL_S3 or a profile's endpoint.
    return boto3.session.Session().client("s3")


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__
