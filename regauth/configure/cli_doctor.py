"""The ``regauth doctor`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regauth import argtypes
from regauth.argtypes import amount
from regauth.config import Settings
from regauth.configure.cli import store_of
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore


def add_parser(commands: Any, examples: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check that the clients reach regauth and the records are healthy",
        description="One report, a verdict per line: the helper on the PATH of each client and "
        "answering, docker's and podman's files pointing at regauth, plaintext credentials left in "
        "them, the secret store, each record's age, host, last use and whether it can push, and with "
        "--proxy the proxy and its upstreams. Exit status 1 when anything needs action (WARN lines "
        "do not). Never a secret.",
        epilog=examples("regauth doctor", "regauth doctor --json --validate"),
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--validate", action="store_true", help="also validate every record again")
    doctor.add_argument(
        "--max-age",
        type=amount,
        default=90.0,
        metavar="DAYS",
        help="a static secret older than this needs rotating",
    )
    doctor.add_argument(
        "--unused-days",
        type=amount,
        default=90.0,
        metavar="DAYS",
        help="a record not used on this machine for longer is worth removing",
    )
    doctor.add_argument(
        "--containerd-certs-dir",
        type=argtypes.path,
        metavar="DIR",
        help="also check containerd's hosts.toml mirrors in DIR",
    )
    doctor.add_argument(
        "--proxy",
        type=argtypes.nonempty,
        metavar="URL",
        help="also ask the running proxy at URL, and each upstream through it",
    )
    doctor.add_argument(
        "--kubelet-config",
        type=argtypes.path,
        metavar="FILE",
        help="the kubelet's CredentialProviderConfig to check",
    )
    doctor.add_argument(
        "--kubelet-bin-dir",
        type=argtypes.path,
        metavar="DIR",
        help="the kubelet's --image-credential-provider-bin-dir (default: configure kubelet's)",
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore | None = None
) -> int:
    from regauth.configure import doctor

    options = doctor.Options(
        max_age_days=args.max_age,
        validate=args.validate,
        unused_days=args.unused_days,
        containerd_certs_dir=Path(args.containerd_certs_dir) if args.containerd_certs_dir else None,
        proxy=args.proxy,
        kubelet_config=Path(args.kubelet_config) if args.kubelet_config else None,
        kubelet_bin_dir=Path(args.kubelet_bin_dir) if args.kubelet_bin_dir else None,
    )
    findings = doctor.examine(settings, book.all(), options, store_of(settings, store))
    print(doctor.render(findings, args.json))
    return 1 if any(f.status == doctor.ACTION for f in findings) else 0
