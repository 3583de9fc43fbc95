"""Throughput of a 256 MiB blob on loopback: direct from a real `registry`, through `regauth proxy` cold (no
cache; and cold while writing its cache), through it from its cache, and through distribution's own
pull-through mode (`registry` with `proxy.remoteurl`), cold and warm (once it has stored the blob). Where
`haproxy` is installed, also through HAProxy relaying plain HTTP with splice(2): a relay in C that moves
the body without copying it through user space, the reference for what any relay costs on this machine;
where `nginx` is, nginx serving the same blob as a static file (sendfile), the ceiling for a cache hit;
where a C compiler and OpenSSL's headers are, ``verifying_relay.c``: the least a relay that checks every
byte against the digest can do (receive, SHA-256, send; and with a spool as one fetch per blob needs),
the floor for regauth's cold relay. All run on loopback ports with private configs. Then the same blob
from a registry over TLS (the test CA in the record's ``ca_file``), direct and through the proxy cold,
because real upstreams are HTTPS. Then direct and cold once more with the relay on a core of its own (the
client and the registry pinned to one CPU, the relays to another): on 2 cores, three processes on the
path compete for them, and this shows the relay apart from that. Then the proxy's peak RSS around a 1 GiB
blob. Then a fleet's cold start: ``--fleet`` (50) concurrent cold pulls of the blob through one proxy,
without a cache (a spool) and with a fresh ``--cache-dir``, counting the GETs the registry saw (the goal:
exactly one), with the wall time beside one client's cold pull.

With ``--s3``, also the shared cache (``--cache-url``) over moto in server mode (a process of its own):
a cold pull written to the bucket and a hit streamed from it, each as a ratio to the local-disk cache in
the same run, and the object read directly with boto3 as the ceiling for a bucket hit (moto is Python:
a floor for what a real S3-compatible store gives).

Run: python3 bench/bench_proxy.py [--runs N] [--size-mib N] [--big-mib N] [--fleet N] [--fleet-only] [--s3]

Every pull is read to nowhere by the same aiohttp client; each figure is the median of the runs (hits
and nginx: nine interleaved pulls per run), printed in MiB/s and as a ratio to the direct pull. Goals:
cold >= 0.9x direct (also on a core of its own), >= distribution's proxy and >= HAProxy's relay; cache
hits faster than direct and >= 0.95x nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.registry import (  # noqa: E402
    RegistryProcess,
    _base_config,
    _start,
    _with_tls,
    free_port,
    start_anonymous,
)
from support.tls import make_pki  # noqa: E402

from regauth.config import load_settings  # noqa: E402
from regauth.registries import Registry, RegistryBook  # noqa: E402

MIB = 1024 * 1024
REPO = "bench/blob"
HAPROXY = "HAProxy (C, splice), cold"
VERIFYING = "C verifying relay, cold"
VERIFYING_SPOOL = "C verifying relay + spool, cold"
NGINX = "nginx, static file"
HIT = "regauth proxy, cache hit"
DIST_WARM = "distribution proxy, warm"
HIT_REPEATS = 9
TLS_DIRECT = "direct, TLS"
TLS_COLD = "regauth proxy, cold, TLS upstream"


def _chunks(seed: bytes, size: int) -> Iterator[bytes]:
    # A repeated random MiB: a large blob without holding it in memory.
    for _ in range(size // MIB):
        yield seed


def push_blob(url: str, size: int, context: ssl.SSLContext | None = None) -> str:
    """Push ``size`` bytes as one blob with a streamed monolithic upload; return its digest."""
    seed = os.urandom(MIB)
    digest = hashlib.sha256()
    for chunk in _chunks(seed, size):
        digest.update(chunk)
    name = "sha256:" + digest.hexdigest()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.netloc, timeout=120, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=120)
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/", body=b"")
    resp = conn.getresponse()
    resp.read()
    location = urllib.parse.urlsplit(resp.headers["Location"])
    query = f"{location.query}&digest={name}" if location.query else f"digest={name}"
    headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
    conn.request("PUT", f"{location.path}?{query}", body=_chunks(seed, size), headers=headers)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201, resp.status
    conn.close()
    return name


async def pull(
    session: aiohttp.ClientSession, url: str, context: ssl.SSLContext | None = None
) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    async with session.get(url, ssl=context if context is not None else True) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        async for chunk in resp.content.iter_any():
            size += len(chunk)
    return time.perf_counter() - started, size


def start_anonymous_tls(workdir: Path) -> RegistryProcess:
    pki = make_pki(workdir / "pki")
    return _start(workdir, lambda port: _with_tls(_base_config(workdir, port), pki), pki.ca_file)


def start_distribution_proxy(workdir: Path, upstream: str) -> RegistryProcess:
    def config(port: int) -> dict[str, object]:
        conf = _base_config(workdir, port)
        conf["proxy"] = {"remoteurl": upstream}
        return conf

    return _start(workdir, config, None)


async def answering(session: aiohttp.ClientSession, url: str, what: str) -> None:
    """Wait until ``url``/v2/ answers 200 (a relay just started)."""
    for _ in range(400):
        try:
            async with session.get(f"{url}/v2/") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class Proxy:
    def __init__(self, env: dict[str, str], workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("regauth") or str(Path(sys.executable).parent / "regauth")
        log = open(workdir / f"proxy-{self.port}.log", "wb")  # noqa: SIM115
        cmd = [exe, "proxy", "--listen", f"127.0.0.1:{self.port}", "--quiet", *args]
        self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    async def ready(self, session: aiohttp.ClientSession) -> None:
        await answering(session, self.url, "regauth proxy")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class HAProxy:
    """HAProxy as a plain relay before the registry: one thread like regauth's one event loop, HTTP mode,
    the body spliced socket to socket (its fastest way to forward)."""

    def __init__(self, workdir: Path, upstream: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "haproxy.cfg"
        config.write_text(
            "global\n  nbthread 1\n"
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
            "  option splice-request\n  option splice-response\n"
            f"frontend relay\n  bind 127.0.0.1:{self.port}\n  default_backend registry\n"
            f"backend registry\n  server registry {upstream}\n"
        )
        log = open(workdir / "haproxy.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout
        self.version = version.split()[2] if len(version.split()) > 2 else "?"

    async def ready(self, session: aiohttp.ClientSession) -> None:
        await answering(session, self.url, "haproxy")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class VerifyingRelay:
    """``verifying_relay.c`` built for this run: before the registry, with or without a spool."""

    def __init__(self, binary: Path, workdir: Path, upstream_port: int, spool: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(binary), str(self.port), str(upstream_port)]
        if spool:
            (workdir / "c-spool").mkdir(exist_ok=True)
            cmd += ["--spool", str(workdir / "c-spool")]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        await answering(session, self.url, "verifying_relay")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def build_verifying_relay(workdir: Path) -> Path | None:
    """Compile ``verifying_relay.c``; None (and why, printed) where no compiler or libcrypto is."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("reference: no C compiler (apt-get install gcc libssl-dev), so the C relay rows are left out")
        return None
    binary = workdir / "verifying-relay"
    source = Path(__file__).with_name("verifying_relay.c")
    built = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(source), "-lcrypto", "-lpthread"],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        why = (built.stderr.strip().splitlines() or ["?"])[0]
        print(f"reference: verifying_relay.c did not build ({why}), so the C relay rows are left out")
        return None
    return binary


class Nginx:
    """nginx serving the blob as a static file from a private prefix on loopback: the ceiling for a cache
    hit (sendfile, one worker like regauth's one event loop, the distribution's defaults otherwise)."""

    def __init__(self, workdir: Path, blob: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prefix = workdir / "nginx"
        for sub in ("logs", "temp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        temps = "".join(
            f"  {kind}_temp_path {prefix / 'temp' / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = prefix / "nginx.conf"
        config.write_text(
            "daemon off;\nworker_processes 1;\nuser root;\n"
            f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'logs' / 'error.log'};\n"
            "events {}\nhttp {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            f"{temps}  server {{\n    listen 127.0.0.1:{self.port};\n"
            f"    location = /blob {{ alias {blob}; default_type application/octet-stream; }}\n"
            "  }\n}\n"
        )
        log = open(prefix / "logs" / "stderr.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [_nginx_binary(), "-p", str(prefix), "-c", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        version = subprocess.run([_nginx_binary(), "-v"], capture_output=True, text=True, check=False)
        self.version = version.stderr.strip().rpartition("/")[2] or "?"

    def worker_pids(self) -> list[int]:
        """The master and its worker (the worker does the sending)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # a process that ended meanwhile
                if int(fields[1]) == self.process.pid:
                    found.append(int(entry.name))
        return [self.process.pid, *found]

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(400):
            try:
                async with session.head(f"{self.url}/blob") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


async def fetch_to(session: aiohttp.ClientSession, url: str, path: Path) -> None:
    with path.open("wb") as file:
        async with session.get(url) as resp:
            assert resp.status == 200, (url, resp.status)
            async for chunk in resp.content.iter_chunked(MIB):
                file.write(chunk)


def rate(seconds: list[float], size: int) -> float:
    return size / MIB / statistics.median(seconds)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# label -> one (seconds, CPU seconds of every process on the path) per run
Results = dict[str, list[tuple[float, float]]]


async def rounds(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    registry: RegistryProcess,
    tls: RegistryProcess,
    plain: Proxy,
    cached: Proxy,
    cache_dir: Path,
    digests: tuple[str, str],
    work: Path,
    haproxy: HAProxy | None,
    nginx: Nginx | None,
    verifying: list[VerifyingRelay],
) -> Results:
    """Round-robin: every round pulls once in each mode, so load from other processes on the machine
    falls on all modes alike instead of on whichever ran during a busy spell."""
    digest, tls_digest = digests
    path = f"/v2/{REPO}/blobs/{digest}"
    via = f"/v2/anon/{REPO}/blobs/{digest}"
    tls_path = f"/v2/{REPO}/blobs/{tls_digest}"
    tls_via = f"/v2/tls/{REPO}/blobs/{tls_digest}"
    context = tls.ssl_context()
    results: Results = {}

    async def one(
        label: str,
        url: str,
        *pids: int,
        origin: RegistryProcess = registry,
        ctx: ssl.SSLContext | None = None,
    ) -> None:
        # The CPU time of the client, the registry and the proxy: on a machine with few cores, the
        # sum bounds the throughput however the work is spread.
        pids = (origin.process.pid, *pids)
        before = time.process_time() + sum(cpu_seconds(pid) for pid in pids)
        seconds, got = await pull(session, url, ctx)
        assert got == args.size_mib * MIB, (label, got)
        cpu = time.process_time() + sum(cpu_seconds(pid) for pid in pids) - before
        results.setdefault(label, []).append((seconds, cpu))

    for run in range(args.runs):
        await one("direct", registry.url + path)
        await one("regauth proxy, cold", plain.url + via, plain.process.pid)
        if haproxy is not None:
            await one(HAPROXY, haproxy.url + path, haproxy.process.pid)
        for label, relay in zip((VERIFYING, VERIFYING_SPOOL), verifying, strict=False):
            await one(label, relay.url + path, relay.process.pid)
        for file in cache_dir.rglob("*"):
            if file.is_file():
                file.unlink()
        await one("regauth proxy, cold + cache write", cached.url + via, cached.process.pid)
        # Hits take a tenth of a second, and one pull's speed doubles or halves with where the
        # scheduler puts the client and the server: interleaved nine times per round, so that a busy
        # moment of the machine falls on both alike and the median has enough pulls to settle.
        for _ in range(HIT_REPEATS):
            await one(HIT, cached.url + via, cached.process.pid)
            if nginx is not None:
                await one(NGINX, f"{nginx.url}/blob", *nginx.worker_pids())
        dist = start_distribution_proxy(work / f"dist-{run}", registry.url)
        try:
            await one("distribution proxy, cold", dist.url + path, dist.process.pid)
            # It stores the blob after the cold pull, in the background: until then it relays again.
            await asyncio.to_thread(_until_stored, work / f"dist-{run}", digest, args.size_mib * MIB)
            for _ in range(HIT_REPEATS):
                await one(DIST_WARM, dist.url + path, dist.process.pid)
        finally:
            dist.stop()
        await one(TLS_DIRECT, tls.url + tls_path, origin=tls, ctx=context)
        await one(TLS_COLD, plain.url + tls_via, plain.process.pid, origin=tls)
    return results


def _until_stored(root: Path, digest: str, size: int) -> None:
    """Wait until distribution's storage under ``root`` holds the whole blob."""
    hex_part = digest.partition(":")[2]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for data in root.rglob(f"blobs/sha256/{hex_part[:2]}/{hex_part}/data"):
            if data.stat().st_size == size:
                return
        time.sleep(0.05)
    raise RuntimeError(f"distribution's proxy did not store {digest}")


PINNED_TITLE = (
    "The relay on a core of its own (the client and the registry share one CPU, the relay runs on the\n"
    "other, so it takes no CPU from them):"
)


def _pin(pid: int, cpus: set[int]) -> None:
    # Every thread of the process: Go and the proxy's worker threads would otherwise keep running anywhere.
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:
            pass  # a thread that ended meanwhile


async def pinned_rounds(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    registry: RegistryProcess,
    plain: Proxy,
    haproxy: HAProxy | None,
    verifying: list[VerifyingRelay],
    digest: str,
) -> Results | None:
    """Direct and cold again, with the relay given a core the direct pull does not use. On a machine
    with more cores than processes on the path, that is how it runs anyway; here it shows whether the
    relay itself keeps up with the pull, apart from the contention for two cores."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    first, second, *_ = sorted(os.sched_getaffinity(0))
    everywhere = os.sched_getaffinity(0)
    relays = [plain.process.pid] + ([haproxy.process.pid] if haproxy else [])
    relays += [relay.process.pid for relay in verifying]
    results: Results = {}
    try:
        for pid in (os.getpid(), registry.process.pid):
            _pin(pid, {first})
        for pid in relays:
            _pin(pid, {second})
        path = f"/v2/{REPO}/blobs/{digest}"
        for _ in range(args.runs):
            for label, url, pid in (
                ("direct", registry.url + path, None),
                ("regauth proxy, cold", f"{plain.url}/v2/anon/{REPO}/blobs/{digest}", plain.process.pid),
                *([(HAPROXY, haproxy.url + path, haproxy.process.pid)] if haproxy else []),
                *(
                    (label, relay.url + path, relay.process.pid)
                    for label, relay in zip((VERIFYING, VERIFYING_SPOOL), verifying, strict=False)
                ),
            ):
                pids = [registry.process.pid] + ([pid] if pid else [])
                before = time.process_time() + sum(cpu_seconds(p) for p in pids)
                seconds, got = await pull(session, url)
                assert got == args.size_mib * MIB, (label, got)
                cpu = time.process_time() + sum(cpu_seconds(p) for p in pids) - before
                results.setdefault(label, []).append((seconds, cpu))
    finally:
        for pid in (os.getpid(), registry.process.pid, *relays):
            _pin(pid, everywhere)
    return results


def report(
    args: argparse.Namespace,
    results: Results,
    size: int,
    haproxy: HAProxy | None,
    nginx: Nginx | None,
) -> None:
    where = f"loopback, {os.cpu_count()} CPUs"
    print(f"\n{args.size_mib} MiB blob, median of {args.runs} round-robin runs, {where}.")
    plain = {k: v for k, v in results.items() if k not in (TLS_DIRECT, TLS_COLD)}
    ratio = table("Plain-HTTP upstream:", plain, "direct", size)
    cold, hit = ratio["regauth proxy, cold"], ratio[HIT]
    dist = ratio["distribution proxy, cold"]
    tls = table(
        "TLS upstream (client to proxy is plain HTTP on loopback):",
        {k: results[k] for k in (TLS_DIRECT, TLS_COLD)},
        TLS_DIRECT,
        size,
    )
    print("goals:")
    print(f"  cold >= 0.90x direct:          {_met(cold >= 0.9)} ({cold:.2f}x)")
    print(f"  cold >= distribution's proxy:  {_met(cold >= dist)} ({cold:.2f}x vs {dist:.2f}x)")
    print(f"  cache hit faster than direct:  {_met(hit > 1)} ({hit:.2f}x)")
    print(f"  TLS cold >= 0.90x TLS direct:  {_met(tls[TLS_COLD] >= 0.9)} ({tls[TLS_COLD]:.2f}x)")
    if HAPROXY in ratio:
        ref = ratio[HAPROXY]
        assert haproxy is not None
        print(f"reference: HAProxy {haproxy.version}, splicing the same blob: {ref:.2f}x direct;")
        print(f"  cold >= HAProxy's relay:       {_met(cold >= ref)} ({cold / ref:.2f}x of HAProxy)")
    else:
        print("reference: haproxy is not installed (apt-get install haproxy), so its row is left out")
    floor(ratio, cold)
    if NGINX in ratio:
        ceiling = ratio[NGINX]
        assert nginx is not None
        print(f"reference: nginx {nginx.version}, serving the same blob as a file: {ceiling:.2f}x direct;")
        met = _met(hit >= 0.95 * ceiling)
        print(f"  cache hit >= 0.95x nginx:      {met} ({hit / ceiling:.2f}x of nginx)")
        if DIST_WARM in ratio:
            print(f"  distribution's warm proxy:     {ratio[DIST_WARM] / ceiling:.2f}x of nginx")
    else:
        print("reference: nginx is not installed (apt-get install nginx), so its row is left out")


def floor(ratio: dict[str, float], cold: float) -> None:
    """What the C relays say of the cold goals: how near the least verifying relay comes to them, and
    how near regauth comes to the C relay that does its work (hash and spool)."""
    if VERIFYING_SPOOL not in ratio:
        return
    bare, spool = ratio[VERIFYING], ratio[VERIFYING_SPOOL]
    against = f", {bare / ratio[HAPROXY]:.2f}x of HAProxy" if HAPROXY in ratio else ""
    print(f"reference: a verifying relay in C (receive, SHA-256, send): {bare:.2f}x direct{against};")
    print(f"  with the spool one fetch per blob needs: {spool:.2f}x direct;")
    print(f"  regauth's cold relay is {cold / spool:.2f}x of the C relay doing its work")


def table(title: str, results: Results, baseline: str, size: int) -> dict[str, float]:
    """Print one table; return each label's throughput as a ratio to ``baseline``'s."""
    direct = rate([s for s, _ in results[baseline]], size)
    print(f"\n{title}")
    print(f"  {'':36s} {'MiB/s':>8s}  {'ratio':>12s}  CPU s/GiB (client+registry+proxy)")
    ratio: dict[str, float] = {}
    for label, runs in results.items():
        mibs = rate([s for s, _ in runs], size)
        ratio[label] = mibs / direct
        cpu = statistics.median(c for _, c in runs) / (size / 1024**3)
        print(f"  {label:36s} {mibs:8.0f}  {mibs / direct:5.2f}x {'direct':6s}  {cpu:5.2f}")
    return ratio


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def measure(args: argparse.Namespace, work: Path) -> None:
    size, big = args.size_mib * MIB, args.big_mib * MIB
    registry = start_anonymous(work / "registry")
    tls = start_anonymous_tls(work / "registry-tls")
    env = {**os.environ, "HOME": str(work / "home"), "REGAUTH_STORE": "file"}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env.pop(var, None)
    settings = load_settings(env)
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="anon", registry=registry.host, insecure=True), None)
    book.add(Registry(id="", name="tls", registry=tls.host, ca_file=str(tls.ca_file)), None)
    procs: list[Proxy | HAProxy | Nginx | VerifyingRelay] = []
    try:
        t0 = time.perf_counter()
        digest = push_blob(registry.url, size)
        tls_digest = push_blob(tls.url, size, tls.ssl_context())
        print(f"pushed a {args.size_mib} MiB blob twice in {time.perf_counter() - t0:.1f}s", flush=True)
        path = f"/v2/{REPO}/blobs/{digest}"
        cache_dir = work / "cache"
        plain = Proxy(env, work)
        cached = Proxy(env, work, "--cache-dir", str(cache_dir))
        procs += [plain, cached]
        haproxy = HAProxy(work, registry.host) if shutil.which("haproxy") else None
        if haproxy is not None:
            procs.append(haproxy)
        binary = build_verifying_relay(work)
        upstream_port = int(registry.host.rpartition(":")[2])
        verifying = (
            [VerifyingRelay(binary, work, upstream_port, spool) for spool in (False, True)] if binary else []
        )
        procs += verifying
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            await plain.ready(session)
            await cached.ready(session)
            if haproxy is not None:
                await haproxy.ready(session)
            for relay in verifying:
                await relay.ready(session)
            # Warm the registries' page caches.
            await pull(session, registry.url + path)
            nginx: Nginx | None = None
            if shutil.which("nginx") or Path(_nginx_binary()).exists():
                blob_file = work / "nginx-blob"
                await fetch_to(session, registry.url + path, blob_file)
                nginx = Nginx(work, blob_file)
                procs.append(nginx)
                await nginx.ready(session)
            if args.fleet_only:
                if args.fleet:
                    await fleet(args, session, env, work)
                if args.s3:
                    await s3_rows(args, session, env, work)
                return
            await pull(session, f"{tls.url}/v2/{REPO}/blobs/{tls_digest}", tls.ssl_context())
            digests = (digest, tls_digest)
            results = await rounds(
                args,
                session,
                registry,
                tls,
                plain,
                cached,
                cache_dir,
                digests,
                work,
                haproxy,
                nginx,
                verifying,
            )
            report(args, results, size, haproxy, nginx)
            pinned = await pinned_rounds(args, session, registry, plain, haproxy, verifying, digest)
            if pinned is not None:
                ratio = table(PINNED_TITLE, pinned, "direct", size)
                cold = ratio["regauth proxy, cold"]
                print(f"  cold >= 0.90x direct, proxy on its own core: {_met(cold >= 0.9)} ({cold:.2f}x)")
                if HAPROXY in ratio:
                    print(f"reference: HAProxy on its own core: {ratio[HAPROXY]:.2f}x direct")
                floor(ratio, cold)
            await big_blob(args, registry, session, env, work, big)
            if args.fleet:
                await fleet(args, session, env, work)
            if args.s3:
                await s3_rows(args, session, env, work)
    finally:
        for proc in procs:
            proc.stop()
        registry.stop()
        tls.stop()


def registry_gets(registry: RegistryProcess, digest: str) -> int:
    """GETs of ``digest`` in the registry's access log so far."""
    log = (registry.workdir / "registry.log").read_text(errors="replace")
    return log.count(f'"GET /v2/{REPO}/blobs/{digest} ')


def start_counting_registry(workdir: Path) -> RegistryProcess:
    """An anonymous registry that writes its access log, so that its GETs can be counted."""

    def config(port: int) -> dict[str, object]:
        conf = _base_config(workdir, port)
        conf["log"] = {"level": "error", "accesslog": {"disabled": False}}
        return conf

    return _start(workdir, config, None)


async def fleet(
    args: argparse.Namespace, session: aiohttp.ClientSession, env: dict[str, str], work: Path
) -> None:
    """``args.fleet`` concurrent cold pulls of one blob through one proxy: one upstream GET, and the
    wall time beside one client's cold pull through the same kind of proxy."""
    size = args.size_mib * MIB
    registry = start_counting_registry(work / "registry-counting")
    try:
        digest = push_blob(registry.url, size)
        await pull(session, f"{registry.url}/v2/{REPO}/blobs/{digest}")  # its page cache, warm
        book = RegistryBook.for_settings(load_settings(env))
        book.add(Registry(id="", name="counted", registry=registry.host, insecure=True), None)
        print(f"\n{args.fleet} concurrent cold pulls of the {args.size_mib} MiB blob through one proxy:")
        for label, cached in (("no cache (spool)", False), ("fresh --cache-dir", True)):
            times: dict[str, float] = {}
            gets: dict[str, int] = {}
            for mode, pulls in (("one", 1), ("fleet", args.fleet)):
                cache = ("--cache-dir", str(work / f"fleet-{mode}-{int(cached)}")) if cached else ()
                proxy = Proxy(env, work, *cache)
                try:
                    await proxy.ready(session)
                    url = f"{proxy.url}/v2/counted/{REPO}/blobs/{digest}"
                    before = registry_gets(registry, digest)
                    started = time.perf_counter()
                    done = await asyncio.gather(*(pull(session, url) for _ in range(pulls)))
                    times[mode] = time.perf_counter() - started
                    assert all(got == size for _, got in done), label
                    # The registry writes its access line once the response is done: let it land.
                    await asyncio.sleep(0.3)
                    gets[mode] = registry_gets(registry, digest) - before
                finally:
                    proxy.stop()
            met = _met(gets["fleet"] == 1)
            print(
                f"  {label:18s} one client {times['one']:6.2f}s; {args.fleet} clients "
                f"{times['fleet']:6.2f}s wall ({times['fleet'] / times['one']:.1f}x one), "
                f"upstream GETs {gets['fleet']} (goal 1: {met})"
            )
    finally:
        registry.stop()


class MotoServer:
    """moto in server mode, in a process of its own: in this one it would share the interpreter lock
    with the client that measures."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        log = open(workdir / "moto.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()

    def wait_ready(self) -> None:
        for _ in range(400):
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def s3_rows(
    args: argparse.Namespace, session: aiohttp.ClientSession, env: dict[str, str], work: Path
) -> None:
    """Cold (written to the cache) and hit, local disk beside the bucket, round-robin; and the bucket
    read directly with boto3, the ceiling for a hit streamed from it."""
    import boto3

    size = args.size_mib * MIB
    server = MotoServer(work)
    s3_env = {
        **env,
        "AWS_ENDPOINT_URL_S3": server.url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    registry = start_anonymous(work / "registry-s3")
    procs: list[Proxy] = []
    try:
        server.wait_ready()
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=server.url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="bench")
        digest = push_blob(registry.url, size)
        book = RegistryBook.for_settings(load_settings(env))
        book.add(Registry(id="", name="s3src", registry=registry.host, insecure=True), None)
        disk_dir = work / "s3-disk-cache"
        disk = Proxy(env, work, "--cache-dir", str(disk_dir))
        bucket = Proxy(s3_env, work, "--cache-url", "s3://bench/blobs")
        procs += [disk, bucket]
        await disk.ready(session)
        await bucket.ready(session)
        url = f"/v2/s3src/{REPO}/blobs/{digest}"
        key = "blobs/blobs/" + digest.replace(":", "/")
        times: dict[str, list[float]] = {}
        published: list[float] = []
        for _ in range(args.runs):
            shutil.rmtree(disk_dir / "blobs", ignore_errors=True)
            for item in client.list_objects_v2(Bucket="bench").get("Contents", []):
                client.delete_object(Bucket="bench", Key=item["Key"])
            for label, proxy in (("disk", disk), ("bucket", bucket)):
                for mode in ("cold", "hit"):
                    seconds, got = await pull(session, proxy.url + url)
                    assert got == size, (label, mode, got)
                    times.setdefault(f"{label} {mode}", []).append(seconds)
                    if label == "bucket" and mode == "cold":
                        # The blob is published once the client has it all (the multipart upload
                        # completed after the digest matched): the hit is timed from the bucket.
                        published.append(await asyncio.to_thread(_until_published, client, key))
            seconds, got = await asyncio.to_thread(_read_object, client, key)
            assert got == size, ("boto3", got)
            times.setdefault("boto3", []).append(seconds)
        print(f"\nShared cache over moto ({args.size_mib} MiB, median of {args.runs} round-robin runs):")
        for mode in ("cold", "hit"):
            local, shared = rate(times[f"disk {mode}"], size), rate(times[f"bucket {mode}"], size)
            what = "cold, written to the cache" if mode == "cold" else "cache hit"
            ratio = shared / local
            print(f"  {what:28s} disk {local:6.0f} MiB/s, bucket {shared:6.0f} MiB/s: {ratio:.2f}x disk")
        print(
            f"  (a cold blob is published in the bucket {statistics.median(published):.2f}s after its"
            " client has it all: moto completing the multipart upload)"
        )
        direct = rate(times["boto3"], size)
        hit = rate(times["bucket hit"], size)
        print(
            f"  reference: the object read directly with boto3 (get_object, 1 MiB reads): {direct:.0f} MiB/s;"
            f" a hit from the bucket is {hit / direct:.2f}x of it (moto is Python: a floor for what a"
            " real S3-compatible store gives)"
        )
    finally:
        for proc in procs:
            proc.stop()
        registry.stop()
        server.stop()


def _until_published(client: Any, key: str) -> float:
    from botocore.exceptions import ClientError

    started = time.perf_counter()
    while time.perf_counter() - started < 120:
        try:
            client.head_object(Bucket="bench", Key=key)
            return time.perf_counter() - started
        except ClientError:
            time.sleep(0.02)
    raise RuntimeError(f"{key} was never published")


def _read_object(client: Any, key: str) -> tuple[float, int]:
    started = time.perf_counter()
    body = client.get_object(Bucket="bench", Key=key)["Body"]
    size = 0
    while chunk := body.read(MIB):
        size += len(chunk)
    return time.perf_counter() - started, size


async def big_blob(
    args: argparse.Namespace,
    registry: RegistryProcess,
    session: aiohttp.ClientSession,
    env: dict[str, str],
    work: Path,
    size: int,
) -> None:
    digest = push_blob(registry.url, size)
    print(f"\npeak RSS (VmHWM) of regauth proxy around a {size // MIB} MiB blob:")
    for label, extra in (("streaming", ()), ("streaming + cache write", ("--cache-dir", str(work / "big")))):
        proxy = Proxy(env, work, *extra)
        try:
            await proxy.ready(session)
            # Warm-up: the first pull's code paths and buffers belong to the baseline.
            warm = push_blob(registry.url, MIB)
            await pull(session, f"{proxy.url}/v2/anon/{REPO}/blobs/{warm}")
            before = proxy.peak_rss_mib()
            seconds, got = await pull(session, f"{proxy.url}/v2/anon/{REPO}/blobs/{digest}")
            assert got == size
            after = proxy.peak_rss_mib()
            print(
                f"  {label:24s} before {before:6.1f} MiB, after {after:6.1f} MiB "
                f"(+{after - before:.1f} MiB for {size // MIB} MiB; {size / MIB / seconds:.0f} MiB/s)"
            )
        finally:
            proxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument(
        "--fleet", type=int, default=50, help="concurrent cold pulls through one proxy (0: skip)"
    )
    parser.add_argument("--fleet-only", action="store_true", help="only the concurrent cold pulls")
    parser.add_argument("--s3", action="store_true", help="also the shared cache over moto (--cache-url)")
    args = parser.parse_args()
    if shutil.which("docker-registry") is None:
        print("docker-registry is not installed (apt-get install docker-registry)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        started = time.perf_counter()
        asyncio.run(measure(args, Path(tmp)))
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
