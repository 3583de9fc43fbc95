"""Time ``docker-credential-regauth get`` on each of its paths against baselines measured in the same run.

    python3 bench/bench_get.py [--runs 60] [--warmup 5] [--check]

In one run, round-robin so that machine noise hits every command alike, it times (wall clock, median
of ``--runs`` runs after ``--warmup``, ``time.perf_counter`` around ``subprocess.run``):

- ``python3 -c pass`` and ``docker-credential-regauth get`` of a stored static credential (file store,
  in a temp HOME) with the interpreter of the installed script (``sys.executable``), whatever .pth
  hooks its site-packages runs at every start-up;
- in a fresh venv where the checkout is installed as ``pip install regauth`` or pipx would install it
  (a wheel; no other .pth hooks), what a user's machine runs: ``python3 -c pass``; the static get; a
  get of an ECR host whose token is fresh in the token cache (file store); and a static get from the
  keyring store, inside a private D-Bus session with gnome-keyring (all under the temp HOME), beside
  the general path's keyring get (through ``keyring``) for information;
- the Go references, when installed: ``docker-credential-pass get`` (pass/GPG, a temp ``GNUPGHOME``
  with a passphrase-less key), ``docker-credential-secretservice get`` over the same Secret Service,
  and ``docker-credential-ecr-login get`` with its own cache warm (its one mint answered by moto
  behind a test-only TLS-terminating CONNECT proxy, as in ``bench_ecr_get.py``; needs moto and trustme).

Goals (each a ratio to a command of the same run): static get <= 2.5x ``python3 -c pass`` and <= 1.0x
``docker-credential-pass``; cached ECR get <= 1.1x the static get; keyring get <= 2.0x
``docker-credential-secretservice`` and <= 1.3x the static (file store) get. With ``--check`` a missed
goal makes the exit status 1 (a benchmark, not a test: noise moves it). Nothing outside the temp
directory is read or written (no real HOME, keyring, GPG keys or AWS credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The tests' own way to start a private session bus with gnome-keyring, shared rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.session_bus import start_bus_and_keyring  # noqa: E402

PASS_HELPER = Path("/usr/bin/docker-credential-pass")
SECRETSERVICE_HELPER = Path("/usr/bin/docker-credential-secretservice")
ECR_LOGIN = shutil.which("docker-credential-ecr-login")
SERVER = "registry.bench.example:5000"
USERNAME = "bench-user"
SECRET = "bench-secret-not-real"
ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ECR_TOKEN_USERNAME = "AWS"
GOAL_VS_PYTHON = 2.5
GOAL_VS_PASS = 1.0
GOAL_CACHED_VS_STATIC = 1.1
GOAL_KEYRING_VS_GO = 2.0
GOAL_KEYRING_VS_FILE = 1.3
HEAVY = ("aiohttp", "keyring", "boto3", "botocore", "azure", "google")
# Environment variables that could point a helper at real credentials or a real keyring or bus; dropped.
_STRIP_PREFIXES = (
    "REGAUTH_",
    "DOCKER_",
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "XDG_",
    "GNUPG",
    "PASSWORD_STORE_",
    "DBUS_",
    "KEYRING_",
    "PYTHON_KEYRING",
    "HTTPS_PROXY",
    "https_proxy",
)


@dataclass
class Command:
    label: str
    argv: list[str]
    stdin: bytes
    env: dict[str, str]
    expect: bytes | None = None
    times: list[float] | None = None

    def once(self) -> float:
        start = time.perf_counter()
        proc = subprocess.run(self.argv, input=self.stdin, capture_output=True, env=self.env, timeout=60)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0 or (self.expect is not None and self.expect not in proc.stdout):
            raise SystemExit(f"{self.label} failed ({proc.returncode}): {proc.stdout!r} {proc.stderr!r}")
        return elapsed

    @property
    def median_ms(self) -> float:
        assert self.times
        return statistics.median(self.times) * 1000


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}
    env["HOME"] = str(home)
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        env[var] = str(home / sub)
    env["DOCKER_CONFIG"] = str(home / ".docker")
    return env


def helper_script() -> Path:
    script = Path(sysconfig.get_path("scripts")) / "docker-credential-regauth"
    if not script.exists():
        raise SystemExit(f"{script} is missing: pip install -e . with {sys.executable}")
    return script


def store_payload() -> bytes:
    return json.dumps({"ServerURL": SERVER, "Username": USERNAME, "Secret": SECRET}).encode()


def setup_regauth(root: Path, script: Path, label: str, extra: dict[str, str] | None = None) -> Command:
    """A temp HOME with the static credential stored (file store unless ``extra`` says), and its get."""
    home = root / f"home-{label.replace(' ', '-').replace(':', '')}"
    home.mkdir()
    env = base_env(home)
    env["REGAUTH_STORE"] = "file"
    env.update(extra or {})
    env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
    # Stored by this interpreter's install: the venv's has no dependencies to write the store with.
    store = [str(helper_script()), "store"]
    subprocess.run(store, input=store_payload(), env=env, check=True, timeout=60)
    return Command(
        f"{label}docker-credential-regauth get", [str(script), "get"], SERVER.encode(), env, SECRET.encode()
    )


def cache_ecr_token(env: dict[str, str], secret: str) -> None:
    """Put a fresh ECR token for ``ECR_HOST`` (no record: ambient) in the token cache of ``env``'s
    store, under the key the general path computes, as a mint would."""
    from regauth.config import load_settings
    from regauth.providers.base import Credential
    from regauth.providers.cache import TokenCache, cache_key
    from regauth.providers.routing import make_provider
    from regauth.store import open_store

    settings = load_settings(env)
    identity = make_provider("ecr", settings).identity(ECR_HOST, None)  # type: ignore[attr-defined]
    now = time.time()
    token = Credential(username=ECR_TOKEN_USERNAME, secret=secret, expires_at=now + 12 * 3600)
    assert TokenCache(settings, open_store(settings)).put(cache_key("ecr", ECR_HOST, identity), token, now)


def start_secret_service(root: Path) -> tuple[str, list[int]] | None:
    """A private session bus and an unlocked gnome-keyring on it, every file under ``root``; its
    address and the pids to stop. None when dbus-daemon or gnome-keyring-daemon is not installed."""
    if shutil.which("dbus-daemon") is None or shutil.which("gnome-keyring-daemon") is None:
        return None
    home = root / "keyring-home"
    env = base_env(home)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        Path(env[var]).mkdir(parents=True, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(home / "run")
    (home / "run").mkdir(mode=0o700)
    return start_bus_and_keyring(env, "bench-login-password")


def stop_pids(pids: list[int]) -> None:
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def setup_secretservice(root: Path, address: str) -> Command | None:
    if not SECRETSERVICE_HELPER.exists():
        return None
    home = root / "secretservice-home"
    home.mkdir()
    env = base_env(home)
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    subprocess.run(
        [str(SECRETSERVICE_HELPER), "store"], input=store_payload(), env=env, check=True, timeout=60
    )
    return Command(
        "docker-credential-secretservice get (Go)",
        [str(SECRETSERVICE_HELPER), "get"],
        SERVER.encode(),
        env,
        SECRET.encode(),
    )


def setup_ecr_login(root: Path) -> Command | None:
    """docker-credential-ecr-login with its cache warm: one mint from moto through a test-only CONNECT
    proxy (bench_ecr_get.py's), which is then shut, so a timed get that asks the API fails the run."""
    if ECR_LOGIN is None:
        return None
    try:
        import ssl

        import trustme
        from bench_ecr_get import API_HOST, serve_connect_proxy
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        print(f"note: {ECR_LOGIN} is installed but {exc.name} is not: skipping it")
        return None
    import logging
    import socket
    import threading

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        ca = trustme.CA()
        ca_file = root / "ecr-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(API_HOST).configure_cert(context)
        threading.Thread(
            target=serve_connect_proxy, args=(listener, context, moto.get_host_and_port()), daemon=True
        ).start()
        home = root / "ecr-login-home"
        home.mkdir()
        env = base_env(home)
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_EC2_METADATA_DISABLED="true",
            HTTPS_PROXY=f"http://127.0.0.1:{listener.getsockname()[1]}",
            AWS_CA_BUNDLE=str(ca_file),
            AWS_ECR_CACHE_DIR=str(home / "ecr-cache"),
        )
        command = Command(
            "docker-credential-ecr-login get, cached (Go)",
            [ECR_LOGIN, "get"],
            ECR_HOST.encode(),
            env,
            f'"Username":"{ECR_TOKEN_USERNAME}"'.encode(),
        )
        command.once()
    finally:
        listener.close()
        moto.stop()
    return command


def setup_venv(root: Path) -> Path:
    """A fresh venv with the checkout installed from a wheel, as ``pip install`` or pipx installs it.

    The wheel is built by pip (in its isolated build environment, as ``pip install -e`` does) and
    installed with its dependencies (no extras), as on a user's machine: the fast keyring get looks
    for keyring's distribution and for other keyring backends among them. Without the package index
    it is installed alone (the static and cached-token rows need nothing else).
    """
    import regauth as package

    checkout = Path(package.__file__).resolve().parent.parent
    wheels, venv = root / "wheels", root / "venv"
    quiet = {"check": True, "capture_output": True, "timeout": 300}
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(checkout)]
    subprocess.run(build, **quiet)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    python = venv / "bin" / "python3"
    wheel = next(wheels.glob("regauth-*.whl"))
    install = [str(python), "-m", "pip", "install", "-q", str(wheel)]
    if subprocess.run(install, capture_output=True, timeout=600, check=False).returncode != 0:
        print("note: the dependencies could not be installed in the fresh venv: the keyring rows decline")
        subprocess.run([*install[:4], "--no-deps", "--no-index", str(wheel)], **quiet)
    # As compile_regauth: timed runs must not compile the sources (PYTHONDONTWRITEBYTECODE may be set).
    subprocess.run([str(python), "-m", "compileall", "-q", str(venv / "lib")], **quiet)
    return python


def setup_pass(root: Path) -> Command | None:
    if not PASS_HELPER.exists():
        return None
    for tool in ("gpg", "pass"):
        if shutil.which(tool) is None:
            print(f"note: {PASS_HELPER} is installed but {tool} is not: skipping it")
            return None
    home = root / "pass-home"
    home.mkdir()
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = base_env(home)
    env["GNUPGHOME"] = str(gnupg)
    env["PASSWORD_STORE_DIR"] = str(root / "password-store")
    uid = "regauth bench <bench@regauth.invalid>"
    gpg = ["gpg", "--batch", "--quiet", "--passphrase", "", "--pinentry-mode", "loopback"]
    subprocess.run([*gpg, "--quick-gen-key", uid, "future-default", "default", "never"], env=env, check=True)
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys", uid], env=env, check=True, capture_output=True
    ).stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    subprocess.run(["pass", "init", fingerprint], env=env, check=True, capture_output=True)
    subprocess.run([str(PASS_HELPER), "store"], input=store_payload(), env=env, check=True, timeout=60)
    return Command(
        "docker-credential-pass get", [str(PASS_HELPER), "get"], SERVER.encode(), env, SECRET.encode()
    )


def stop_gpg_agent(command: Command | None) -> None:
    if command is not None and shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=command.env, check=False, capture_output=True)


def heavy_imports(command: Command) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *command.argv],
        input=command.stdin,
        capture_output=True,
        env=command.env,
        timeout=60,
    )
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def site_hooks() -> list[str]:
    """The .pth files in site-packages that run code at every start-up (they slow every python3)."""
    hooks = []
    for directory in sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}):
        for pth in sorted(Path(directory).glob("*.pth")):
            lines = pth.read_text(errors="replace").splitlines()
            if not any(line.startswith("import") for line in lines):
                continue
            if any("certifi" in line for line in lines):
                hooks.append(f"{pth.name} (imports certifi)")
            elif pth.name.startswith("__editable__"):
                hooks.append(f"{pth.name} (editable-install finder)")
            else:
                hooks.append(pth.name)
    return hooks


def measure(commands: list[Command], runs: int, warmup: int) -> None:
    for command in commands:
        command.times = []
        for _ in range(warmup):
            command.once()
    # Round-robin: a burst of load on the machine slows every command, not one.
    for _ in range(runs):
        for command in commands:
            assert command.times is not None
            command.times.append(command.once())


def ratio_line(label: str, num: Command | None, den: Command | None, goal: float | None) -> bool:
    if num is None or den is None:
        print(f"  {label:<58}  n/a")
        return True
    ratio = num.median_ms / den.median_ms
    assert num.times and den.times
    # The ratio of the fastest runs, less moved by a busy machine than the medians: for information.
    fastest = f"(fastest runs: {min(num.times) / min(den.times):4.2f}x)"
    if goal is None:
        print(f"  {label:<58}  {ratio:5.2f}x  {fastest}  information")
        return True
    met = ratio <= goal
    print(f"  {label:<58}  {ratio:5.2f}x  {fastest}  goal <= {goal}x  {'met' if met else 'NOT MET'}")
    return met


def report(rows: list[Command], named: dict[str, Command | None], heavy: list[str], mark_us: float) -> bool:
    width = max(len(c.label) for c in rows)
    print(f"\n{'command':<{width}}  {'median':>9}  {'min':>9}  {'p90':>9}  runs")
    for c in rows:
        assert c.times
        p90 = statistics.quantiles(c.times, n=10)[-1] * 1000
        low = min(c.times) * 1000
        print(f"{c.label:<{width}}  {c.median_ms:7.1f}ms  {low:7.1f}ms  {p90:7.1f}ms  {len(c.times)}")
    hooks = site_hooks()
    if hooks:
        print(
            f"\nnote: this interpreter's site-packages runs {', '.join(hooks)} at every start-up: every "
            "console script of it pays for them; the venv has none of them."
        )
    n = named
    ok = True
    print("\nthis interpreter (.venv):")
    ok &= ratio_line("static get / python3 -c pass", n["static"], n["python"], GOAL_VS_PYTHON)
    print("\nfresh venv (a wheel):")
    ok &= ratio_line("static get / python3 -c pass", n["venv static"], n["venv python"], GOAL_VS_PYTHON)
    ok &= ratio_line("static get / docker-credential-pass get", n["venv static"], n["pass"], GOAL_VS_PASS)
    ratio_line("python3 -c pass / docker-credential-pass get", n["venv python"], n["pass"], None)
    ok &= ratio_line("cached ECR get / static get", n["venv ecr"], n["venv static"], GOAL_CACHED_VS_STATIC)
    ratio_line("cached ECR get / python3 -c pass", n["venv ecr"], n["venv python"], None)
    ratio_line(
        "cached ECR get / docker-credential-ecr-login get (cached)", n["venv ecr"], n["ecr-login"], None
    )
    ok &= ratio_line(
        "keyring get / docker-credential-secretservice get",
        n["venv keyring"],
        n["secretservice"],
        GOAL_KEYRING_VS_GO,
    )
    ok &= ratio_line(
        "keyring get / static get (file store)", n["venv keyring"], n["venv static"], GOAL_KEYRING_VS_FILE
    )
    ratio_line(
        "keyring get, general path / fast keyring get", n["venv keyring general"], n["venv keyring"], None
    )
    static = n["venv static"]
    if static is not None:
        share = mark_us / 1000 / static.median_ms * 100
        print(
            f"\nlast-use mark (usage.mark_used on an existing mark): {mark_us:.1f} us per call, "
            f"{share:.2f}% of a static get"
        )
    print(f"heavy modules imported by the static get: {', '.join(heavy) if heavy else 'none'}")
    return ok


def mark_cost_us(root: Path) -> float:
    """What one last-use mark costs (one utime on an existing file), in-process, median of 5 x 1000."""
    from regauth.usage import mark_used

    state = root / "mark-state"
    mark_used(str(state), "0123456789abcdef")
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(1000):
            mark_used(str(state), "0123456789abcdef")
        samples.append((time.perf_counter() - start) / 1000 * 1e6)
    return statistics.median(samples)


def compile_regauth() -> None:
    """Byte-compile regauth as a wheel install does: with PYTHONDONTWRITEBYTECODE set (as on some CI
    machines) every run would otherwise compile the sources again and the figures would time that."""
    import compileall

    import regauth

    compileall.compile_dir(str(Path(regauth.__file__).parent), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    args = parser.parse_args()
    compile_regauth()
    named: dict[str, Command | None] = {}
    with tempfile.TemporaryDirectory(prefix="regauth-bench-") as tmp:
        root = Path(tmp)
        pids: list[int] = []
        ref: Command | None = None
        try:
            regauth = setup_regauth(root, helper_script(), "")
            venv_python = setup_venv(root)
            venv_script = venv_python.parent / "docker-credential-regauth"
            venv_static = setup_regauth(root, venv_script, "venv: ")
            cache_ecr_token(venv_static.env, "bench-ecr-token-not-real")
            venv_ecr = Command(
                "venv: docker-credential-regauth get, cached ECR token",
                [str(venv_script), "get"],
                ECR_HOST.encode(),
                venv_static.env,
                b"bench-ecr-token-not-real",
            )
            env = regauth.env
            named.update(
                python=Command("python3 -c pass", [sys.executable, "-c", "pass"], SERVER.encode(), env),
                static=regauth,
                **{
                    "venv python": Command(
                        "venv: python3 -c pass", [str(venv_python), "-c", "pass"], SERVER.encode(), env
                    ),
                    "venv static": venv_static,
                    "venv ecr": venv_ecr,
                },
            )
            service = start_secret_service(root)
            if service is None:
                print("note: dbus-daemon or gnome-keyring-daemon is not installed: no keyring rows")
            else:
                address, pids = service
                keyring = setup_regauth(
                    root,
                    venv_script,
                    "venv keyring: ",
                    {"REGAUTH_STORE": "keyring", "DBUS_SESSION_BUS_ADDRESS": address},
                )
                # The general path through keyring (which the venv has not: the checkout's interpreter),
                # for information: debug logging makes the fast path decline and changes no output.
                general = Command(
                    "keyring: docker-credential-regauth get, general path (keyring)",
                    [str(helper_script()), "get"],
                    SERVER.encode(),
                    {**keyring.env, "REGAUTH_LOG_LEVEL": "INFO"},
                    SECRET.encode(),
                )
                named.update(
                    {
                        "venv keyring": keyring,
                        "venv keyring general": general,
                        "secretservice": setup_secretservice(root, address),
                    }
                )
            ref = setup_pass(root)
            named["pass"] = ref
            named["ecr-login"] = setup_ecr_login(root)
            commands = [c for c in named.values() if c is not None]
            print(f"interpreter: {sys.executable} (Python {sys.version.split()[0]})")
            print(f"timing {len(commands)} commands, {args.warmup} warm-up + {args.runs} runs each ...")
            measure(commands, args.runs, args.warmup)
            heavy = heavy_imports(venv_static)
            mark_us = mark_cost_us(root)
        finally:
            stop_gpg_agent(ref)
            stop_pids(pids)
        ok = report(commands, named, heavy, mark_us)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
