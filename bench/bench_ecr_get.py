"""Time a cached-token ``get`` for an ECR host: regauth beside ``python3 -c pass``, a static ``get``, and
Debian's ``docker-credential-ecr-login`` (when installed) with its own cache warm.

Both helpers mint their first token from the same moto server. regauth reaches it through boto3's
``AWS_ENDPOINT_URL``; ecr-login honours no endpoint variable, only ``HTTPS_PROXY`` and
``AWS_CA_BUNDLE``, so it goes through a small CONNECT proxy here that terminates TLS with a test CA
certificate for the ECR API host and forwards the plain HTTP to moto.

Run: ``python3 bench/bench_ecr_get.py [--runs N]``. Goal: cached get <= 1.1x a static ``get`` (it takes
the helper's fast path, as the static get does); ``bench_get.py`` times the same in a fresh venv.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import trustme
from moto.server import ThreadedMotoServer

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
API_HOST = "api.ecr.us-east-1.amazonaws.com"
STATIC_HOST = "static.example.com"
HELPER = str(Path(sysconfig.get_path("scripts")) / "docker-credential-regauth")
ECR_LOGIN = shutil.which("docker-credential-ecr-login")


# moto answers every GetAuthorizationToken with expiresAt in 2015, which ecr-login (rightly) will not
# cache; the proxy moves it 12 hours ahead (same digit count, so Content-Length still holds).
_EXPIRES = re.compile(rb'("expiresAt": ?)\d{10}')
CONNECTIONS = [0]


def fix_expiry(data: bytes) -> bytes:
    return _EXPIRES.sub(lambda m: m[1] + b"%d" % (time.time() + 12 * 3600), data)


def pipe(src: socket.socket, dst: socket.socket, rewrite: bool = False) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(fix_expiry(data) if rewrite else data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve_connect_proxy(listener: socket.socket, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
    """Answer CONNECT, then speak TLS to the client and plain HTTP to moto: a test-only interceptor."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                break
            head += chunk
        if not head.startswith(b"CONNECT "):
            client.close()
            continue
        CONNECTIONS[0] += 1
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tls = context.wrap_socket(client, server_side=True)
        backend = socket.create_connection(upstream)
        threading.Thread(target=pipe, args=(tls, backend), daemon=True).start()
        threading.Thread(target=pipe, args=(backend, tls, True), daemon=True).start()


def run(argv: list[str], env: dict[str, str], stdin: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stdout.strip()} {proc.stderr.strip()}")
    return elapsed, proc.stdout


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def compile_regauth() -> None:
    """Byte-compile regauth as a wheel install does: with PYTHONDONTWRITEBYTECODE set (as on some CI
    machines) every run would otherwise compile the sources again and the figures would time that."""
    import compileall

    import regauth

    compileall.compile_dir(str(Path(regauth.__file__).parent), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    compile_regauth()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="regauth-bench-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_host, moto_port = moto.get_host_and_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "XDG_CONFIG_HOME": str(work / "config"),
        "XDG_DATA_HOME": str(work / "data"),
        "XDG_CACHE_HOME": str(work / "cache"),
        "XDG_STATE_HOME": str(work / "state"),
        "REGAUTH_STORE": "file",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    regauth_env = {**env, "AWS_ENDPOINT_URL": f"http://{moto_host}:{moto_port}"}
    samples: dict[str, list[float]] = {
        "python3 -c pass": [],
        "regauth get (cached ecr)": [],
        "regauth get (static)": [],
    }

    # Warm regauth's cache (the one mint) and add a static record to compare with.
    _, out = run([HELPER, "get"], regauth_env, HOST)
    assert '"Username":"AWS"' in out, out
    run([HELPER, "store"], env, f'{{"ServerURL":"{STATIC_HOST}","Username":"u","Secret":"p"}}')

    ecr_env: dict[str, str] | None = None
    listener: socket.socket | None = None
    if ECR_LOGIN:
        ca = trustme.CA()
        ca_file = work / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(API_HOST).configure_cert(context)
        listener = socket.create_server(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
        threading.Thread(
            target=serve_connect_proxy, args=(listener, context, (moto_host, moto_port)), daemon=True
        ).start()
        ecr_env = {
            **env,
            "HTTPS_PROXY": proxy,
            "AWS_CA_BUNDLE": str(ca_file),
            "AWS_ECR_CACHE_DIR": str(work / "ecr"),
        }
        _, out = run([ECR_LOGIN, "get"], ecr_env, HOST)
        assert '"Username":"AWS"' in out, out
        samples["ecr-login get (cached)"] = []
        warm_connections = CONNECTIONS[0]

    for _ in range(args.runs):
        samples["python3 -c pass"].append(run([sys.executable, "-c", "pass"], env, "")[0])
        samples["regauth get (cached ecr)"].append(run([HELPER, "get"], regauth_env, HOST)[0])
        samples["regauth get (static)"].append(run([HELPER, "get"], env, STATIC_HOST)[0])
        if ECR_LOGIN and ecr_env is not None:
            samples["ecr-login get (cached)"].append(run([ECR_LOGIN, "get"], ecr_env, HOST)[0])

    moto.stop()
    if ECR_LOGIN:
        # Zero means every timed ecr-login get was served from its own cache.
        print(f"ecr-login API calls during the timed runs: {CONNECTIONS[0] - warm_connections}")
    if listener is not None:
        listener.close()
    shutil.rmtree(work, ignore_errors=True)
    medians = {name: median_ms(values) for name, values in samples.items()}
    print(f"median wall time over {args.runs} runs each (ms)")
    for name, value in medians.items():
        print(f"  {name:<28} {value:7.1f}")
    cached = medians["regauth get (cached ecr)"]
    print(f"ratio cached ecr get / python3 -c pass: {cached / medians['python3 -c pass']:.2f} (information)")
    print(
        f"ratio cached ecr get / static get:      {cached / medians['regauth get (static)']:.2f} (goal 1.1)"
    )
    if "ecr-login get (cached)" in medians:
        print(f"ratio cached ecr get / ecr-login get:    {cached / medians['ecr-login get (cached)']:.2f}")
    else:
        print("docker-credential-ecr-login is not installed: no comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())
