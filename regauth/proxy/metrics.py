"""Prometheus metrics in the text exposition format, kept by hand (no client library needed).

Counters and one histogram; labels are fixed small sets (method, kind, status, source, upstream host),
never repositories or digests, so the series count stays bounded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
Labels = tuple[tuple[str, str], ...]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[Labels, int] = defaultdict(int)
        self.bytes_sent: dict[Labels, int] = defaultdict(int)
        self.cache_hits: dict[Labels, int] = defaultdict(int)
        self.cache_misses: dict[Labels, int] = defaultdict(int)
        self.upstream_errors: dict[Labels, int] = defaultdict(int)
        self.stale_served: dict[Labels, int] = defaultdict(int)
        self._latency_buckets: dict[Labels, list[int]] = {}
        self._latency_sum: dict[Labels, float] = defaultdict(float)
        self._latency_count: dict[Labels, int] = defaultdict(int)
        # Read at scrape time from the parts that own them (the authenticator, the blob cache).
        self.gauges: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def request(self, method: str, kind: str, status: int) -> None:
        # The client names the method: any other token would be a series kept for ever.
        method = method if method in _METHODS else "other"
        self.requests[(("method", method), ("kind", kind), ("status", str(status)))] += 1

    def sent(self, kind: str, source: str, count: int) -> None:
        self.bytes_sent[(("kind", kind), ("source", source))] += count

    def hit(self, kind: str) -> None:
        self.cache_hits[(("kind", kind),)] += 1

    def miss(self, kind: str) -> None:
        self.cache_misses[(("kind", kind),)] += 1

    def stale(self, upstream: str) -> None:
        self.stale_served[(("upstream", upstream),)] += 1

    def upstream_error(self, upstream: str, reason: str) -> None:
        self.upstream_errors[(("upstream", upstream), ("reason", reason))] += 1

    def upstream_latency(self, upstream: str, seconds: float) -> None:
        key = (("upstream", upstream),)
        buckets = self._latency_buckets.setdefault(key, [0] * len(_LATENCY_BUCKETS))
        for i, bound in enumerate(_LATENCY_BUCKETS):
            if seconds <= bound:
                buckets[i] += 1
        self._latency_sum[key] += seconds
        self._latency_count[key] += 1

    def gauge(self, name: str, kind: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (kind, help_text, read)

    def render(self) -> str:
        out: list[str] = []
        self._counter(out, "regauth_proxy_requests_total", "Requests served, by outcome.", self.requests)
        self._counter(out, "regauth_proxy_bytes_sent_total", "Body bytes sent to clients.", self.bytes_sent)
        self._counter(
            out, "regauth_proxy_cache_hits_total", "Requests served from the cache.", self.cache_hits
        )
        self._counter(
            out, "regauth_proxy_cache_misses_total", "Cacheable requests sent upstream.", self.cache_misses
        )
        self._counter(
            out, "regauth_proxy_upstream_errors_total", "Upstream faults, by reason.", self.upstream_errors
        )
        self._counter(
            out,
            "regauth_proxy_stale_manifests_total",
            "Tags answered with their last known manifest because the upstream was unreachable.",
            self.stale_served,
        )
        self._histogram(out)
        for name, (kind, help_text, read) in sorted(self.gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {read():g}"]
        return "\n".join(out) + "\n"

    @staticmethod
    def _counter(out: list[str], name: str, help_text: str, values: dict[Labels, int]) -> None:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        out += [f"{name}{_labels(labels)} {value}" for labels, value in sorted(values.items())]

    def _histogram(self, out: list[str]) -> None:
        name = "regauth_proxy_upstream_seconds"
        out += [f"# HELP {name} Time to the upstream's response headers.", f"# TYPE {name} histogram"]
        for key, buckets in sorted(self._latency_buckets.items()):
            for bound, count in zip(_LATENCY_BUCKETS, buckets, strict=True):
                out.append(f"{name}_bucket{_labels(key + (('le', f'{bound:g}'),))} {count}")
            out.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {self._latency_count[key]}")
            out.append(f"{name}_sum{_labels(key)} {self._latency_sum[key]:.6f}")
            out.append(f"{name}_count{_labels(key)} {self._latency_count[key]}")
