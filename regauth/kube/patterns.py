"""The ``matchImages`` patterns for regauth's plugin, and the lint of patterns the kubelet never matches.

A record's host is its own pattern (``host[:port]``, exactly as images spell it). The cloud hosts that
regauth serves with no record (``providers.hosts``) are the kubelet globs below: one glob is one label,
so each form of the cloud's host names is spelt out (``tests/test_kube_config.py`` holds them to
``providers.hosts``).
"""

from __future__ import annotations

from collections.abc import Iterable

from regauth.kube.matching import NoURL, parse_schemeless, split_host_port
from regauth.registries import Registry

_ECR_DOMAINS = (
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
)
CLOUD_PATTERNS: tuple[str, ...] = (
    *(f"*.dkr.ecr{fips}.*.{domain}" for domain in _ECR_DOMAINS for fips in ("", "-fips")),
    "*.dkr-ecr.*.on.aws",
    "*.dkr-ecr-fips.*.on.aws",
    "public.ecr.aws",
    "*.azurecr.io",
    "*.azurecr.cn",
    "*.azurecr.us",
    "gcr.io",
    "*.gcr.io",
    "*-docker.pkg.dev",
)


def match_images(records: Iterable[Registry], *, cloud: bool) -> list[str]:
    """Every active record's host, then (with ``cloud``) the cloud patterns, each once, in that order.

    A disabled record is left out: nothing answers for it, so the kubelet would run the plugin for
    nothing on every pull from its host (the host stays while another record for it is in use).
    """
    found = [record.registry for record in records if record.active]
    if cloud:
        found.extend(CLOUD_PATTERNS)
    return list(dict.fromkeys(found))


def problems(pattern: str) -> list[str]:
    """Why the kubelet would never (or not as meant) match ``pattern``; empty when it is fine."""
    shown = repr(pattern)
    try:
        url = parse_schemeless(pattern)
    except NoURL as exc:
        return [f"{shown}: the kubelet refuses the whole config (Go's URL parser rejects {exc})"]
    found: list[str] = []
    text_host = pattern.split("/", 1)[0]
    if "://" in pattern:
        found.append(f"{shown}: a scheme is read as part of the host; write the host alone")
    elif "?" in text_host or "#" in text_host:
        found.append(f"{shown}: '?' and '#' end the host for the kubelet; a glob is '*' only")
    if any(c in url.path for c in "*?["):
        found.append(
            f"{shown}: paths are matched as raw prefixes, without globs, so this matches no image; "
            "write HOST or HOST/PREFIX"
        )
    labels, port = split_host_port(url.host)
    if port in ("443", "80"):
        found.append(
            f"{shown}: the kubelet compares ports as written, and images name no :{port}; "
            "this matches only images that spell the port"
        )
    if any(label != label.lower() for label in labels):
        found.append(f"{shown}: matching is case-sensitive and image hosts are lower case")
    if labels == ["*"]:
        found.append(
            f"{shown}: '*' is one label, so this matches only one-label hosts (localhost), not every image"
        )
    return found
