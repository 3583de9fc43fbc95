"""The spool a shared fetch writes without a cache (``flights.SpoolWriter``) when the process is out of
file descriptors: it is given up with nothing left open, so a proxy at its limit does not sink further."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.proxy import digest_of

from regauth.proxy.flights import SpoolWriter


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def _limit() -> Iterator[None]:
    """The soft RLIMIT_NOFILE lowered until the next open succeeds and the one after fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    first, second = os.open("/dev/null", os.O_RDONLY), os.open("/dev/null", os.O_RDONLY)
    os.close(first)
    os.close(second)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(first, second), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_spool_that_cannot_be_opened_for_reading_leaves_no_descriptor_open(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    before = _open_fds()
    with pytest.raises(OSError), _limit():
        SpoolWriter(spool, digest_of(b"blob"))
    assert _open_fds() == before
    assert list(spool.iterdir()) == []
