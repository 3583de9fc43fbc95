"""An S3 bucket in moto's server mode, for the proxy's shared-cache tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer


@contextmanager
def moto_bucket(monkeypatch: pytest.MonkeyPatch, name: str) -> Iterator[Any]:
    """An S3 client for a new bucket ``name`` in a moto server on 127.0.0.1. boto3's own settings point
    at it, and the proxy processes the test starts inherit them: their endpoint is moto's too."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for variable, value in {
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(variable, value)
    s3 = boto3.session.Session().client("s3")
    s3.create_bucket(Bucket=name)
    try:
        yield s3
    finally:
        server.stop()
