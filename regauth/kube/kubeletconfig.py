"""``regauth configure kubelet``: the kubelet's CredentialProviderConfig and the plugin in its bin dir.

It builds a ``configure.core.Plan``, so the diff of ``--dry-run``, the backup, "nothing to change" and
``--undo`` are those of every ``regauth configure``. Two files:

- the config (JSON, which the kubelet reads as it reads YAML): regauth's provider entry added or
  replaced by name, every other provider and member kept as written. A YAML file cannot be merged
  without a YAML library: it is refused with what to do.
- ``<bin-dir>/regauth-credential-provider``: a two-line ``sh`` script that runs this installation's
  plugin (the kubelet runs ``<bin-dir>/<name>``, so the name is the file name).

The provider's ``env`` names the HOME (and XDG directories) of whoever configures it: the kubelet runs
the plugin with its own environment, and the plugin must find the same records, store and cloud logins.

``--token-audience`` adds ``tokenAttributes`` (KEP-4412, kubelet 1.34+; 1.33 behind its feature gate):
the kubelet then sends each pod's service-account token for that audience, and the annotations the
clouds' workload identities are read from. The kubelet accepts ``tokenAttributes`` only on a provider
of ``credentialprovider.kubelet.k8s.io/v1`` (ours), and requires ``serviceAccountTokenAudience``,
``cacheType`` and ``requireServiceAccount``. ``cacheType`` is ``ServiceAccount``: what the plugin mints
depends on the service account and those annotations only (which the kubelet's cache key includes),
not on the pod. ``requireServiceAccount`` is false, so pods without one (static pods) are still asked
for, and answered with the node's identity; so is a service account that names no cloud identity (the
plugin's ``--node-identity-fallback``, written into ``args``). Without the flag a ``tokenAttributes``
already in regauth's entry is kept, as every member the user added is.
"""

from __future__ import annotations

import copy
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regauth.configure import jsonfile
from regauth.configure.core import Change, Plan
from regauth.configure.files import FileState, read_state
from regauth.errors import ConfigError, UsageError
from regauth.kube.main import NODE_FALLBACK, PROGRAM
from regauth.kube.patterns import CLOUD_PATTERNS, problems
from regauth.kube.wire import V1, go_duration
from regauth.printable import printable
from regauth.providers.acr_workload import ANNOTATIONS as ACR_ANNOTATIONS
from regauth.providers.ecr import ROLE_ANNOTATION
from regauth.providers.gcp_workload import ANNOTATIONS as GCP_ANNOTATIONS

CLIENT = "kubelet"
CONFIG_API = "kubelet.config.k8s.io/v1"
CONFIG_KIND = "CredentialProviderConfig"
DEFAULT_CONFIG = Path("/etc/kubernetes/image-credential-provider-config.json")
DEFAULT_BIN_DIR = Path("/usr/local/lib/kubelet/image-credential-provider")
_ENV_NAMES = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "REGAUTH_STORE")
# The service-account annotations each cloud's workload identity is configured by, as the providers
# read them (one list per provider, so a new annotation there reaches the kubelet's config too).
WORKLOAD_ANNOTATIONS = (ROLE_ANNOTATION, *ACR_ANNOTATIONS, *GCP_ANNOTATIONS)
_AUDIENCE_MAX = 1024


def plan(
    config: Path,
    bin_dir: Path,
    match_images: Sequence[str],
    *,
    default_cache_seconds: int,
    environ: Mapping[str, str],
    plugin: str,
    token_audience: str | None = None,
) -> Plan:
    if token_audience is not None:
        check_audience(token_audience)  # a mistake in the command line first, before what it finds
    if not match_images:
        raise UsageError(
            "no registries to configure the kubelet for: add one with `regauth registry add`, or leave "
            "out --no-cloud"
        )
    state = read_state(config)
    before = _load(state)
    after: dict[str, Any] = (
        copy.deepcopy(before) if before else {"apiVersion": CONFIG_API, "kind": CONFIG_KIND}
    )
    providers = after.setdefault("providers", [])
    if not isinstance(providers, list):
        raise ConfigError(f"{config}: 'providers' is not a list; it was left as it was")
    entry = provider_entry(match_images, default_cache_seconds, environ, token_audience=token_audience)
    names = [p.get("name") if isinstance(p, dict) else None for p in providers]
    if PROGRAM in names:
        old = providers[names.index(PROGRAM)]
        # Keep what the user added to our entry (tokenAttributes, say); ours are the fields we write.
        merged = {**old, **entry}
        if isinstance(old.get("args"), list) and "args" in entry:
            merged["args"] = [*old["args"], *(a for a in entry["args"] if a not in old["args"])]
        if isinstance(old.get("env"), list) and "env" in entry:
            # Ours by name (the HOME and store the plugin must find); the user's others, such as the
            # README's AWS_ECR_ROLE_ARN, kept after them.
            ours = {variable["name"] for variable in entry["env"]}
            kept = [v for v in old["env"] if not (isinstance(v, dict) and v.get("name") in ours)]
            merged["env"] = [*entry["env"], *kept]
        providers[names.index(PROGRAM)] = merged
    else:
        providers.append(entry)
    changes = [
        Change(state, jsonfile.rewrite(state, before, after), new_mode=0o644),
        Change(read_state(bin_dir / PROGRAM), wrapper(plugin), new_mode=0o755),
    ]
    cloud = any(p in CLOUD_PATTERNS for p in match_images)
    return Plan(CLIENT, changes, notes=notes(after, config, bin_dir, cloud=cloud, audience=token_audience))


def provider_entry(
    match_images: Sequence[str],
    default_cache_seconds: int,
    environ: Mapping[str, str],
    *,
    token_audience: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": PROGRAM,
        "matchImages": list(match_images),
        # The plugin leaves cacheDuration out for a secret that does not expire: this is what applies.
        "defaultCacheDuration": go_duration(default_cache_seconds),
        # tokenAttributes needs v1 here: the kubelet refuses it on any other version.
        "apiVersion": V1,
    }
    env = [{"name": name, "value": environ[name]} for name in _ENV_NAMES if environ.get(name)]
    if env:
        entry["env"] = env
    if token_audience is not None:
        entry["tokenAttributes"] = token_attributes(token_audience)
        # The annotations are optional: a service account naming no cloud identity pulls as the node
        # did before tokenAttributes, as ecr-credential-provider falls back, instead of failing.
        entry["args"] = [NODE_FALLBACK]
    return entry


def token_attributes(audience: str) -> dict[str, Any]:
    """The ``tokenAttributes`` member for ``audience`` (the kubelet's ServiceAccountTokenAttributes)."""
    return {
        "serviceAccountTokenAudience": check_audience(audience),
        "cacheType": "ServiceAccount",
        "requireServiceAccount": False,
        "optionalServiceAccountAnnotationKeys": list(WORKLOAD_ANNOTATIONS),
    }


def check_audience(audience: str) -> str:
    """The kubelet refuses an empty audience (and the whole config with it); the API server's token
    request would refuse whitespace or control characters at the first pull instead."""
    if not audience or len(audience) > _AUDIENCE_MAX or not audience.isprintable() or " " in audience:
        raise UsageError(
            f"invalid --token-audience {printable(audience[:60])!r}: give the audience the registry's "
            f"token exchange expects, 1-{_AUDIENCE_MAX} printable characters without spaces"
        )
    return audience


def wrapper(plugin: str) -> bytes:
    return f'#!/bin/sh\n# written by `regauth configure kubelet`\nexec {shlex.quote(plugin)} "$@"\n'.encode()


def plugin_path() -> str:
    """This installation's ``regauth-credential-provider``: beside the interpreter, else on PATH."""
    import shutil

    beside = Path(sys.executable).parent / PROGRAM
    found = str(beside) if beside.is_file() else shutil.which(PROGRAM)
    if not found:
        raise UsageError(f"cannot find {PROGRAM} (installed with regauth): is regauth installed?")
    return str(Path(found).absolute())


def lint(config: Mapping[str, Any]) -> list[str]:
    """A warning for every matchImages pattern in ``config`` the kubelet would not match as meant."""
    found: list[str] = []
    for provider in config.get("providers") or []:
        if not isinstance(provider, dict):
            continue
        for pattern in provider.get("matchImages") or []:
            if isinstance(pattern, str):
                found.extend(f"warning: provider {provider.get('name')!r}: {p}" for p in problems(pattern))
    return found


def notes(
    config: Mapping[str, Any], path: Path, bin_dir: Path, *, cloud: bool, audience: str | None = None
) -> list[str]:
    found = lint(config)
    if cloud:
        found.append(
            "note: ECR, ACR and Google registry images now ask regauth; on a node without that cloud's "
            "credentials (or its SDK) such a pull logs regauth's error and goes on anonymously "
            "(--no-cloud leaves the cloud hosts out)"
        )
    if audience is not None:
        found.append(
            "note: tokenAttributes needs kubelet 1.34 or later (1.33 with the "
            "KubeletServiceAccountTokenForCredentialProviders feature gate), and the nodes must be allowed "
            f"to request tokens for the audience {audience!r}: an RBAC rule with the verb "
            "request-serviceaccounts-token-audience on that resource, bound to the group system:nodes"
        )
    return [
        *found,
        "kubelet flags: --image-credential-provider-config="
        f"{path} --image-credential-provider-bin-dir={bin_dir} (then restart the kubelet)",
    ]


def _load(state: FileState) -> dict[str, Any]:
    if state.data is not None and state.data.strip() and not state.data.lstrip().startswith(b"{"):
        raise ConfigError(
            f"{state.path} is YAML, which regauth cannot merge without losing its comments: convert it to "
            "JSON (the kubelet reads both), or write regauth's config elsewhere with --config"
        )
    data = jsonfile.load_object(state)
    if data and (
        data.get("kind") != CONFIG_KIND
        or not str(data.get("apiVersion", "")).startswith("kubelet.config.k8s.io/")
    ):
        raise ConfigError(f"{state.path} is not a kubelet {CONFIG_KIND}; it was left as it was")
    return data
