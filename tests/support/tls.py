"""A test certificate authority and the files the registry and clients need from it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class PKI:
    """A CA plus one server certificate for 127.0.0.1 and localhost, written out as PEM files."""

    ca: trustme.CA
    server: trustme.LeafCert
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_pki(directory: Path) -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="regauth tests")
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "ca.pem"
    cert_file = directory / "server-chain.pem"
    key_file = directory / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # The chain: leaf first, then the issuing CA, as Go's TLS server expects.
    cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key_file))
    return PKI(ca=ca, server=server, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
