"""The ``regauth configure`` command line: its parsers and what each client's command does."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regauth import argtypes
from regauth.config import Settings
from regauth.errors import UsageError
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore

if TYPE_CHECKING:
    from regauth.configure.core import Plan

CLIENTS = ("docker", "podman", "containerd", "systemd")


def add_parsers(commands: Any, examples: Any) -> None:
    """``configure``, ``import`` and ``doctor`` under the top-level ``commands``."""
    from regauth.configure import cli_doctor, cli_import

    add_configure_parser(commands, examples)
    cli_import.add_parser(commands, examples)
    cli_doctor.add_parser(commands, examples)


def add_configure_parser(commands: Any, examples: Any) -> None:
    """``configure CLIENT`` under ``commands`` (the top-level subparsers); ``examples`` formats an
    epilog as the rest of the CLI does."""
    configure = commands.add_parser(
        "configure",
        help="point docker, podman, containerd, the kubelet or systemd at regauth (a diff, a backup, --undo)",
        description="Point a client at regauth by editing the files it reads. Everything else in them "
        "is kept; --dry-run shows the change as a diff; a real run keeps a backup; a second run changes "
        "nothing; --undo restores the last backup.",
        epilog=examples(
            "regauth configure docker --dry-run",
            "regauth configure podman --registries-conf",
            "regauth configure containerd --proxy http://127.0.0.1:5000",
            "regauth configure docker --undo",
        ),
    )
    clients = configure.add_subparsers(dest="client", required=True, metavar="CLIENT")
    _docker(clients, examples)
    _podman(clients, examples)
    _containerd(clients, examples)
    _systemd(clients, examples)
    from regauth.kube.configure_cli import add_kubelet_parser

    add_kubelet_parser(clients, examples)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the change as a diff; write nothing")
    parser.add_argument("--undo", action="store_true", help="restore the files the last run replaced")
    parser.add_argument("--force", action="store_true", help="with --undo: restore over later changes")
    parser.add_argument(
        "--backup-dir",
        type=argtypes.path,
        metavar="DIR",
        help="keep backups here (default: $XDG_STATE_HOME/regauth/backups)",
    )


def _registries(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registries",
        action="append",
        default=[],
        metavar="HOST[,HOST...]",
        help="also these hosts, beside every configured registry (repeatable)",
    )


def _docker(clients: Any, examples: Any) -> None:
    docker = clients.add_parser(
        "docker",
        help="credHelpers (or credsStore) in $DOCKER_CONFIG/config.json",
        description="Add credHelpers entries naming regauth for every configured registry (and "
        "--registries) to the docker CLI's config.json, or credsStore with --creds-store.",
        epilog=examples(
            "regauth configure docker",
            "regauth configure docker --registries 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "regauth configure docker --creds-store --dry-run",
        ),
    )
    _registries(docker)
    docker.add_argument(
        "--creds-store", action="store_true", help='set "credsStore": "regauth" (every registry)'
    )
    docker.add_argument(
        "--config",
        type=argtypes.path,
        metavar="DIR",
        help="the docker config directory (default: $DOCKER_CONFIG or ~/.docker)",
    )
    _common(docker)
    docker.set_defaults(func=cmd_configure_docker)


def _podman(clients: Any, examples: Any) -> None:
    podman = clients.add_parser(
        "podman",
        help="credHelpers in the containers auth file, or credential-helpers in registries.conf",
        description="For podman, skopeo, buildah and CRI-O: credHelpers entries for every configured "
        "registry in the auth file ($REGISTRY_AUTH_FILE, else ~/.config/containers/auth.json), or with "
        '--registries-conf credential-helpers = ["regauth", "containers-auth.json"] for every '
        "registry, in $CONTAINERS_REGISTRIES_CONF or else a registries.conf.d drop-in.",
        epilog=examples(
            "regauth configure podman",
            "regauth configure podman --registries-conf",
            "sudo regauth configure podman --registries-conf --system",
        ),
    )
    _registries(podman)
    podman.add_argument("--auth-file", type=argtypes.path, metavar="PATH", help="the auth file to edit")
    podman.add_argument(
        "--registries-conf",
        action="store_true",
        help="credential-helpers for every registry, not credHelpers",
    )
    podman.add_argument(
        "--system", action="store_true", help="with --registries-conf: /etc/containers/registries.conf.d"
    )
    podman.add_argument(
        "--conf-dir", type=argtypes.path, metavar="DIR", help="with --registries-conf: the drop-in directory"
    )
    _common(podman)
    podman.set_defaults(func=cmd_configure_podman)


def _containerd(clients: Any, examples: Any) -> None:
    containerd = clients.add_parser(
        "containerd",
        help="hosts.toml mirrors through regauth's proxy, and CRI's config_path",
        description="Write CERTS_DIR/<host>/hosts.toml for every configured registry (and --registries) "
        "with the proxy as its mirror, and set config_path in the CRI registry config of config.toml "
        "(containerd 1.x and 2.x keys). Replaced files go to the backup.",
        epilog=examples(
            "sudo regauth configure containerd --proxy http://127.0.0.1:5000",
            "regauth configure containerd --proxy http://127.0.0.1:5000 --certs-dir ./certs.d --no-config",
        ),
    )
    _registries(containerd)
    containerd.add_argument(
        "--proxy", type=argtypes.nonempty, metavar="URL", help="the regauth proxy, e.g. http://127.0.0.1:5000"
    )
    containerd.add_argument("--proxy-ca", type=argtypes.path, metavar="PEM", help="the CA of an https proxy")
    containerd.add_argument(
        "--certs-dir",
        type=argtypes.path,
        metavar="DIR",
        help="the hosts directory (default: config_path, else /etc/containerd/certs.d)",
    )
    containerd.add_argument(
        "--config",
        type=argtypes.path,
        metavar="PATH",
        help="containerd's config.toml (default: /etc/containerd/config.toml)",
    )
    containerd.add_argument(
        "--no-config", action="store_true", help="write hosts.toml files only (for ctr --hosts-dir)"
    )
    _common(containerd)
    containerd.set_defaults(func=cmd_configure_containerd)


def _systemd(clients: Any, examples: Any) -> None:
    systemd = clients.add_parser(
        "systemd",
        help="a hardened systemd unit running `regauth proxy`",
        description="Write regauth-proxy.service (system, or --user) running `regauth proxy` with the "
        "options after `--`, restarted on failure and hardened (no new privileges, private /tmp, the "
        "system read-only). It is not started: the command to start it is printed.",
        epilog=examples(
            "regauth configure systemd --user -- --listen 127.0.0.1:5000 --cache-dir ~/.cache/regauth-blobs",
            "sudo regauth configure systemd -- --listen 127.0.0.1:5000",
        ),
    )
    systemd.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user)")
    systemd.add_argument("--unit-dir", type=argtypes.path, metavar="DIR", help="write the unit here instead")
    systemd.add_argument(
        "--exec",
        dest="exe",
        type=argtypes.path,
        metavar="PATH",
        help="the regauth to run (default: this one)",
    )
    _common(systemd)
    systemd.add_argument(
        "proxy_args", nargs=argparse.REMAINDER, metavar="-- PROXY_OPTION", help="options for `regauth proxy`"
    )
    systemd.set_defaults(func=cmd_configure_systemd)


# --- the commands ---------------------------------------------------------------------------------


def store_of(settings: Settings, store: SecretStore | None) -> SecretStore:
    """The edge's store, or one of our own (opened lazily) for a caller that passes none."""
    if store is not None:
        return store
    from regauth.store.lazy import LazyStore

    return LazyStore.for_settings(settings)


def backup_root(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.backup_dir).expanduser() if args.backup_dir else settings.state_dir / "backups"


def run(args: argparse.Namespace, settings: Settings, client: str, make_plan: Any) -> int:
    """``--undo`` or the plan ``make_plan()`` builds, applied with the common flags."""
    from regauth.configure import core

    root = backup_root(args, settings)
    if args.force and not args.undo:
        raise UsageError("--force goes with --undo only")
    with one_at_a_time(root, client, args.dry_run):
        if args.undo:
            return core.undo(client, backup_root=root, force=args.force, dry_run=args.dry_run, say=print)
        return core.apply(make_plan(), dry_run=args.dry_run, backup_root=root, say=print)


@contextlib.contextmanager
def one_at_a_time(root: Path, client: str, dry_run: bool) -> Iterator[None]:
    """Two runs for one client at once would each back up the other's half-done state: the second
    waits. A dry run writes nothing, its lock file included."""
    if dry_run:
        yield
        return
    from regauth.fsutil import file_lock

    with file_lock(root / f".{client}.lock"):
        yield


def cmd_configure_docker(args: argparse.Namespace, settings: Settings, book: RegistryBook, *_: Any) -> int:
    from regauth.configure import docker
    from regauth.configure.hosts import registry_hosts

    def make() -> Plan:
        path = docker.config_file(settings.environ, args.config)
        return docker.plan(
            path,
            registry_hosts(book.all(), args.registries, host_wide_only=True),
            creds_store=args.creds_store,
        )

    return run(args, settings, docker.CLIENT, make)


def cmd_configure_podman(args: argparse.Namespace, settings: Settings, book: RegistryBook, *_: Any) -> int:
    from regauth.configure import podman
    from regauth.configure.hosts import registry_hosts

    def make() -> Plan:
        if args.registries_conf:
            if args.auth_file or args.registries:
                raise UsageError(
                    "--registries-conf names every registry: it takes no --auth-file or --registries"
                )
            return podman.plan_registries_conf(
                podman.registries_conf(settings.environ, args.conf_dir, args.system)
            )
        if args.system or args.conf_dir:
            raise UsageError("--system and --conf-dir go with --registries-conf")
        path = podman.auth_file(settings.environ, args.auth_file)
        order = podman.auth_files(settings.environ)
        before = order[: order.index(path)] if path in order else []
        hosts = registry_hosts(book.all(), args.registries, host_wide_only=True)
        return podman.plan_auth_file(path, hosts, before)

    return run(args, settings, podman.CLIENT, make)


def cmd_configure_containerd(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, *_: Any
) -> int:
    from regauth.configure import containerd
    from regauth.configure.hosts import registry_hosts

    def make() -> Plan:
        if not args.proxy:
            raise UsageError("--proxy URL is needed: containerd reaches credentials through regauth's proxy")
        if args.no_config and args.config:
            raise UsageError("--no-config and --config cannot go together")
        records = book.all()
        insecure = {r.registry for r in records if r.insecure}
        upstreams = [
            containerd.Upstream(h, h in insecure)
            for h in registry_hosts(records, args.registries, host_wide_only=False)
        ]
        config = (
            None
            if args.no_config
            else Path(args.config).expanduser()
            if args.config
            else containerd.DEFAULT_CONFIG
        )
        return containerd.plan(
            upstreams,
            proxy=containerd.check_proxy(args.proxy),
            certs_dir=Path(args.certs_dir).expanduser().absolute() if args.certs_dir else None,
            config=config,
            proxy_ca=str(Path(args.proxy_ca).expanduser().absolute()) if args.proxy_ca else None,
        )

    return run(args, settings, containerd.CLIENT, make)


def cmd_configure_systemd(args: argparse.Namespace, settings: Settings, book: RegistryBook, *_: Any) -> int:
    from regauth.configure import systemd

    def make() -> Plan:
        proxy_args = list(args.proxy_args)
        if proxy_args[:1] == ["--"]:
            proxy_args = proxy_args[1:]
        cache_dir, port = _check_proxy_args(proxy_args)
        exe = _regauth_exe(args.exe)
        writable = [settings.config_dir, settings.data_dir, settings.state_dir, settings.cache_dir]
        if cache_dir:
            writable.append(cache_dir)
        text = systemd.unit_text(
            exe,
            proxy_args,
            user=args.user,
            writable=writable,
            description="regauth pull-through registry proxy",
            low_port=port < 1024,
        )
        path = systemd.unit_dir(settings.environ, args.unit_dir, args.user) / systemd.UNIT
        return systemd.plan(path, text, user=args.user, cache_dir=cache_dir)

    return run(args, settings, systemd.CLIENT, make)


def _check_proxy_args(proxy_args: list[str]) -> tuple[Path | None, int]:
    """Parse the options as `regauth proxy` will, so a misspelt one fails here, not at every start;
    the blob cache directory, if any, must stay writable."""
    import io

    from regauth.cli import PROG, build_parser

    said = io.StringIO()
    try:
        # argparse's own line is captured, so the user gets one error line, not two.
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            parsed = build_parser().parse_args(["proxy", *proxy_args])
    except SystemExit as exc:
        lines = said.getvalue().strip().splitlines()
        why = lines[-1].removeprefix(f"{PROG}: error: ").split(" (see `", 1)[0] if exc.code and lines else ""
        raise UsageError(
            f"the options after `--` are not valid for `regauth proxy`{': ' + why if why else ''} "
            "(see `regauth proxy --help`)"
        ) from None
    cache_dir = Path(parsed.cache_dir).expanduser().absolute() if parsed.cache_dir else None
    _, _, port = str(parsed.listen).rpartition(":")
    return cache_dir, int(port) if port.isdigit() else 5000


def _regauth_exe(flag: str | None) -> str:
    import shutil
    import sys

    if flag:
        path = Path(flag).expanduser().absolute()
        if not path.is_file():
            raise UsageError(f"--exec {flag}: no such file")
        return str(path)
    beside = Path(sys.executable).parent / "regauth"
    found = str(beside) if beside.is_file() else shutil.which("regauth")
    if not found:
        raise UsageError("cannot find the regauth command: name it with --exec PATH")
    return str(Path(found).absolute())
