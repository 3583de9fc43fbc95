"""Time ``docker-credential-regauth get`` against the interpreter's own start-up and the reference helper.

    python3 bench/bench_get.py [--runs 60] [--warmup 5] [--check]

In one run, round-robin so that machine noise hits every command alike, it times (wall clock, median
of ``--runs`` runs after ``--warmup``, ``time.perf_counter`` around ``subprocess.run``):

- ``python3 -c pass`` and ``docker-credential-regauth get`` of a stored static credential (file store,
  in a temp HOME) with the interpreter of the installed script (``sys.executable``), whatever .pth
  hooks its site-packages runs at every start-up;
- the same two in a fresh venv where the checkout is installed as ``pip install regauth`` or pipx
  would install it (a wheel; no other .pth hooks): what a user's machine runs;
- ``docker-credential-pass get`` (Debian's reference Go helper over pass/GPG), when installed, with
  a temp ``GNUPGHOME`` holding a passphrase-less key and a temp ``PASSWORD_STORE_DIR``.

Goals: regauth get at most 2.5x ``python3 -c pass``, and no slower than ``docker-credential-pass``;
with ``--check`` a missed goal makes the exit status 1 (a benchmark, not a test: noise moves it).
Nothing outside the temp directory is read or written (no real HOME, keyring or GPG keys).
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

PASS_HELPER = Path("/usr/bin/docker-credential-pass")
SERVER = "registry.bench.example:5000"
USERNAME = "bench-user"
SECRET = "bench-secret-not-real"
GOAL_VS_PYTHON = 2.5
GOAL_VS_PASS = 1.0
HEAVY = ("aiohttp", "keyring", "boto3", "botocore", "azure", "google")
# Environment variables that could point a helper at real credentials; dropped from the bench's env.
_STRIP_PREFIXES = ("REGAUTH_", "DOCKER_", "AWS_", "AZURE_", "GOOGLE_", "XDG_", "GNUPG", "PASSWORD_STORE_")


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


def setup_regauth(root: Path, script: Path, label: str) -> Command:
    home = root / f"home-{label.replace(' ', '-').replace(':', '')}"
    home.mkdir()
    env = base_env(home)
    env["REGAUTH_STORE"] = "file"
    env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
    # Stored by this interpreter's install: the venv's has no dependencies to write the store with.
    store = [str(helper_script()), "store"]
    subprocess.run(store, input=store_payload(), env=env, check=True, timeout=60)
    return Command(
        f"{label}docker-credential-regauth get", [str(script), "get"], SERVER.encode(), env, SECRET.encode()
    )


def setup_venv(root: Path) -> Path:
    """A fresh venv with the checkout installed from a wheel, as ``pip install`` or pipx installs it.

    The wheel is built by pip (in its isolated build environment, as ``pip install -e`` does) and
    installed with ``--no-deps --no-index``: a static get needs none of regauth's dependencies.
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
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], **quiet
    )
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


def report(pairs: list[tuple[Command, Command]], ref: Command | None, heavy: list[str]) -> bool:
    rows = [c for pair in pairs for c in pair] + ([ref] if ref else [])
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
    ok = True
    for python, regauth in pairs:
        where = python.label.partition("python3")[0].strip() or "this interpreter:"
        print(f"\n{where}")
        ratio = regauth.median_ms / python.median_ms
        met = ratio <= GOAL_VS_PYTHON
        ok &= met
        print(f"  regauth/python  {ratio:5.2f}x  goal <= {GOAL_VS_PYTHON}x  {'met' if met else 'NOT MET'}")
        if ref is None:
            print(f"  regauth/pass    n/a   ({PASS_HELPER} is not installed)")
            continue
        ratio = regauth.median_ms / ref.median_ms
        met = ratio <= GOAL_VS_PASS
        ok &= met
        print(f"  regauth/pass    {ratio:5.2f}x  goal <= {GOAL_VS_PASS}x  {'met' if met else 'NOT MET'}")
        print(
            f"  information: python3 -c pass alone is {python.median_ms / ref.median_ms:.2f}x "
            "docker-credential-pass get (the floor for any console script of this interpreter)"
        )
    print(f"\nheavy modules imported by get: {', '.join(heavy) if heavy else 'none'}")
    return ok


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
    with tempfile.TemporaryDirectory(prefix="regauth-bench-") as tmp:
        root = Path(tmp)
        regauth = setup_regauth(root, helper_script(), "")
        venv_python = setup_venv(root)
        venv_regauth = setup_regauth(root, venv_python.parent / "docker-credential-regauth", "venv: ")
        ref = setup_pass(root)
        try:
            env = regauth.env
            python = Command("python3 -c pass", [sys.executable, "-c", "pass"], SERVER.encode(), env)
            venv_pass = Command(
                "venv: python3 -c pass", [str(venv_python), "-c", "pass"], SERVER.encode(), env
            )
            pairs = [(python, regauth), (venv_pass, venv_regauth)]
            commands = [c for pair in pairs for c in pair] + ([ref] if ref else [])
            print(f"interpreter: {sys.executable} (Python {sys.version.split()[0]})")
            print(f"timing {len(commands)} commands, {args.warmup} warm-up + {args.runs} runs each ...")
            measure(commands, args.runs, args.warmup)
            heavy = heavy_imports(regauth)
        finally:
            stop_gpg_agent(ref)
        ok = report(pairs, ref, heavy)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
