"""The ``configure kubelet`` subcommand: its parser and what it does (beside ``configure.cli``'s)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regauth import argtypes
from regauth.config import Settings
from regauth.configure import cli as configure_cli
from regauth.kube import kubeletconfig
from regauth.kube.patterns import match_images
from regauth.kube.wire import parse_go_duration
from regauth.registries import RegistryBook


def add_kubelet_parser(clients: Any, examples: Any) -> None:
    kubelet = clients.add_parser(
        "kubelet",
        help="the kubelet's image credential provider config, and the plugin in its bin dir",
        description="Write (or merge into) the kubelet's CredentialProviderConfig with regauth's plugin "
        "for every configured registry and the cloud registries regauth serves, and put "
        "regauth-credential-provider into the plugin directory. Patterns the kubelet would never "
        "match are explained.",
        epilog=examples(
            "sudo regauth configure kubelet --dry-run",
            "sudo regauth configure kubelet --config /etc/kubernetes/credential-providers.json "
            "--bin-dir /usr/libexec/kubelet-plugins",
            "sudo regauth configure kubelet --token-audience sts.amazonaws.com",
        ),
    )
    kubelet.add_argument(
        "--config",
        type=argtypes.path,
        metavar="FILE",
        help=f"the CredentialProviderConfig (default: {kubeletconfig.DEFAULT_CONFIG})",
    )
    kubelet.add_argument(
        "--bin-dir",
        type=argtypes.path,
        metavar="DIR",
        help=f"the kubelet's plugin directory (default: {kubeletconfig.DEFAULT_BIN_DIR})",
    )
    kubelet.add_argument(
        "--default-cache-duration",
        default="12h",
        metavar="DURATION",
        help="how long the kubelet keeps a static credential (Go form; default: 12h)",
    )
    kubelet.add_argument(
        "--no-cloud", action="store_true", help="only the configured records, no cloud hosts"
    )
    kubelet.add_argument(
        "--token-audience",
        metavar="AUDIENCE",
        help="have the kubelet send each pod's service-account token for AUDIENCE (tokenAttributes, "
        "kubelet 1.34+), so pulls use the workload's cloud identity",
    )
    configure_cli._common(kubelet)
    kubelet.set_defaults(func=cmd_configure_kubelet)


def cmd_configure_kubelet(args: argparse.Namespace, settings: Settings, book: RegistryBook, *_: Any) -> int:
    def make() -> Any:
        config = Path(args.config).expanduser().absolute() if args.config else kubeletconfig.DEFAULT_CONFIG
        bin_dir = (
            Path(args.bin_dir).expanduser().absolute() if args.bin_dir else kubeletconfig.DEFAULT_BIN_DIR
        )
        return kubeletconfig.plan(
            config,
            bin_dir,
            match_images(book.all(), cloud=not args.no_cloud),
            default_cache_seconds=int(parse_go_duration(args.default_cache_duration)),
            environ=settings.environ,
            plugin=kubeletconfig.plugin_path(),
            token_audience=args.token_audience,
        )

    return configure_cli.run(args, settings, kubeletconfig.CLIENT, make)
