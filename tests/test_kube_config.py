"""``regauth configure kubelet``: the CredentialProviderConfig it writes or merges, the plugin it puts in
the bin dir (run as the kubelet would run it, with the config's env), the lint, and the shared
configure behaviour (dry run, nothing to change, undo)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.kubelet import keyring_lookup, kubelet_decode, request
from support.records import add_record

from regauth.config import Settings
from regauth.errors import RegauthError
from regauth.kube.configure_cli import add_kubelet_parser
from regauth.kube.matching import parse_schemeless, urls_match
from regauth.kube.patterns import CLOUD_PATTERNS, problems
from regauth.providers.routing import route_ambient
from regauth.registries import RegistryBook

NAME = "regauth-credential-provider"


def configure(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    clients = parser.add_subparsers(dest="client", required=True)
    add_kubelet_parser(clients, lambda *lines: "\n".join(lines))
    args = parser.parse_args(["kubelet", *argv])
    code: int = args.func(args, settings, RegistryBook.for_settings(settings))
    return code


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    config, bin_dir = tmp_path / "etc" / "credential-providers.json", tmp_path / "bin"
    return (
        config,
        bin_dir,
        ["--config", str(config), "--bin-dir", str(bin_dir), "--backup-dir", str(tmp_path / "bk")],
    )


def kubelet_validate(config: dict[str, Any]) -> None:
    """The kubelet's checks of a CredentialProviderConfig (pkg/credentialprovider/plugin/config.go)."""
    assert config["kind"] == "CredentialProviderConfig" and config["apiVersion"].startswith(
        "kubelet.config.k8s.io/"
    )
    assert config["providers"]
    names = [p["name"] for p in config["providers"]]
    assert len(names) == len(set(names))
    for provider in config["providers"]:
        assert set(provider) <= {
            "name",
            "matchImages",
            "defaultCacheDuration",
            "apiVersion",
            "args",
            "env",
            "tokenAttributes",
        }
        assert (
            "/" not in provider["name"]
            and " " not in provider["name"]
            and provider["name"] not in (".", "..")
        )
        assert provider["apiVersion"].startswith("credentialprovider.kubelet.k8s.io/")
        assert provider["matchImages"] and "defaultCacheDuration" in provider
        for pattern in provider["matchImages"]:
            parse_schemeless(pattern)
        for env in provider.get("env", []):
            assert set(env) == {"name", "value"}
        if "tokenAttributes" in provider:
            token_attributes_validate(provider)


_QUALIFIED_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def token_attributes_validate(provider: dict[str, Any]) -> None:
    """The kubelet's checks of ``tokenAttributes`` (plugin/config.go, the v1 ServiceAccountTokenAttributes
    type): strict members, the three required ones, v1 only, annotation keys qualified names (case
    aside), each once, none both required and optional, required keys only with requireServiceAccount."""
    attributes = provider["tokenAttributes"]
    assert set(attributes) <= {
        "serviceAccountTokenAudience",
        "cacheType",
        "requireServiceAccount",
        "requiredServiceAccountAnnotationKeys",
        "optionalServiceAccountAnnotationKeys",
    }
    assert (
        isinstance(attributes["serviceAccountTokenAudience"], str)
        and attributes["serviceAccountTokenAudience"]
    )
    assert attributes["cacheType"] in ("Token", "ServiceAccount")
    assert isinstance(attributes["requireServiceAccount"], bool)
    assert provider["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1"
    required = attributes.get("requiredServiceAccountAnnotationKeys", [])
    optional = attributes.get("optionalServiceAccountAnnotationKeys", [])
    assert not (required and not attributes["requireServiceAccount"])
    assert not set(required) & set(optional)
    for keys in (required, optional):
        assert len(keys) == len(set(keys))
        for key in keys:
            prefix, _, name = key.lower().rpartition("/")
            assert 0 < len(name) <= 63 and _QUALIFIED_NAME.match(name), key
            assert not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)), key


def test_a_new_config_and_the_plugin_answer_as_the_kubelet_runs_them(
    settings: Settings, paths: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, bin_dir, argv = paths
    add_record(settings, "127.0.0.1:5000", "pw", username="u")
    add_record(settings, "registry.example.com", "pw2", username="v")
    assert configure(settings, *argv) == 0
    out = capsys.readouterr().out
    assert f"--image-credential-provider-config={config}" in out and "warning" not in out
    written = json.loads(config.read_text())
    kubelet_validate(written)
    [provider] = written["providers"]
    assert provider["name"] == NAME and provider["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1"
    assert provider["matchImages"][:2] == ["127.0.0.1:5000", "registry.example.com"]
    assert set(CLOUD_PATTERNS) <= set(provider["matchImages"])
    assert provider["defaultCacheDuration"] == "12h0m0s"
    # As the kubelet runs it: <bin-dir>/<name>, its own environment plus the config's env.
    plugin = bin_dir / NAME
    assert os.access(plugin, os.X_OK)
    env = {"PATH": "/usr/bin:/bin", **{e["name"]: e["value"] for e in provider["env"]}}
    image = "127.0.0.1:5000/test/app"
    assert any(urls_match(p, image) for p in provider["matchImages"])
    proc = subprocess.run([str(plugin)], input=request(image), capture_output=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    data = kubelet_decode(proc.stdout.decode())
    assert keyring_lookup(data["auth"], image) == [{"username": "u", "password": "pw"}]


def test_merging_keeps_other_providers_and_a_second_run_changes_nothing(
    settings: Settings, paths: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, argv = paths
    config.parent.mkdir()
    ecr = {
        "name": "ecr-credential-provider",
        "matchImages": ["*.dkr.ecr.*.amazonaws.com"],
        "defaultCacheDuration": "12h",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    }
    original = json.dumps(
        {"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [ecr]},
        indent=2,
    )
    config.write_text(original + "\n")
    add_record(settings, "registry.example.com", "pw", username="u")
    assert configure(settings, *argv, "--dry-run", "--no-cloud") == 0
    assert config.read_text() == original + "\n"
    assert '"registry.example.com"' in capsys.readouterr().out
    assert configure(settings, *argv, "--no-cloud", "--default-cache-duration", "30m") == 0
    written = json.loads(config.read_text())
    kubelet_validate(written)
    assert written["providers"][0] == ecr
    assert written["providers"][1]["matchImages"] == ["registry.example.com"]
    assert written["providers"][1]["defaultCacheDuration"] == "30m0s"
    capsys.readouterr()
    assert configure(settings, *argv, "--no-cloud", "--default-cache-duration", "30m") == 0
    assert "nothing to change" in capsys.readouterr().out
    assert configure(settings, *argv, "--undo") == 0
    assert config.read_text() == original + "\n"


def test_a_yaml_config_is_refused_and_left_as_it_was(
    settings: Settings, paths: tuple[Path, Path, list[str]]
) -> None:
    config, _, argv = paths
    config.parent.mkdir()
    config.write_text("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n")
    before = config.read_bytes()
    with pytest.raises(RegauthError, match="is YAML"):
        configure(settings, *argv)
    assert config.read_bytes() == before


def test_patterns_the_kubelet_never_matches_are_explained(
    settings: Settings, paths: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, argv = paths
    config.parent.mkdir()
    other = {
        "name": "mine",
        "matchImages": [
            "registry.io/*",
            "https://registry.io",
            "registry.io:443",
            "Registry.io",
            "*",
            "reg^.io",
        ],
        "defaultCacheDuration": "1h",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    }
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [other],
            }
        )
    )
    assert configure(settings, *argv) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 6
    assert "raw prefixes" in warnings[0] and "scheme" in warnings[1] and ":443" in warnings[2]
    assert (
        "case-sensitive" in warnings[3]
        and "one label" in warnings[4]
        and "refuses the whole config" in warnings[5]
    )


@pytest.mark.parametrize("pattern", CLOUD_PATTERNS)
def test_cloud_patterns_are_hosts_regauth_serves(settings: Settings, pattern: str) -> None:
    assert problems(pattern) == []
    sample = (
        pattern.replace("*-docker", "europe-west1-docker")
        .replace("*.dkr", "123456789012.dkr")
        .replace("*.", "us-east-1.", 1)
        .replace("*", "myreg")
    )
    sample = sample.replace("us-east-1.azurecr", "myreg.azurecr").replace("us-east-1.gcr", "eu.gcr")
    assert urls_match(pattern, sample + "/app"), sample
    assert route_ambient(settings, sample) in ("ecr", "acr", "gcp"), sample


@pytest.mark.parametrize(
    "host",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "123456789012.dkr-ecr.eu-west-1.on.aws",
        "public.ecr.aws",
        "myregistry.azurecr.io",
        "myregistry.azurecr.cn",
        "gcr.io",
        "eu.gcr.io",
        "us-docker.pkg.dev",
    ],
)
def test_every_cloud_host_regauth_serves_is_matched(settings: Settings, host: str) -> None:
    assert route_ambient(settings, host) in ("ecr", "acr", "gcp")
    assert any(urls_match(p, f"{host}/team/app") for p in CLOUD_PATTERNS)


def test_through_the_regauth_command(regauth_exe: str, paths: tuple[Path, Path, list[str]]) -> None:
    config, bin_dir, argv = paths
    dry = subprocess.run(
        [regauth_exe, "configure", "kubelet", *argv, "--dry-run"], capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "kubelet: dry run, nothing written (2 file(s) would change)" in dry.stdout
    assert not config.exists() and not bin_dir.exists()
    config.parent.mkdir()
    config.write_text("providers: []\n")
    refused = subprocess.run(
        [regauth_exe, "configure", "kubelet", *argv], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.startswith("regauth: error: ") and refused.stderr.count("\n") == 1
    assert "is YAML" in refused.stderr and config.read_text() == "providers: []\n"
    bad = subprocess.run(
        [regauth_exe, "configure", "kubelet", *argv, "--default-cache-duration=-1h"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and bad.stderr.startswith("regauth: error: invalid duration")


def test_disabled_records_are_not_matched(settings: Settings, paths: tuple[Path, Path, list[str]]) -> None:
    config, _, argv = paths
    book = RegistryBook.for_settings(settings)
    add_record(book, "off.example.com", "pw", name="off", username="u")
    add_record(book, "on.example.com", "pw", name="on", username="u")
    # A disabled host-wide record beside a prefix record in use: the host stays, for the prefix.
    add_record(book, "ghcr.io", "pw", name="ghcr", username="u")
    add_record(book, "ghcr.io", "pw", name="org-a", username="a", prefix="org-a")
    for name in ("off", "ghcr"):
        book.update(name, {"active": False})
    assert configure(settings, *argv, "--no-cloud") == 0
    [provider] = json.loads(config.read_text())["providers"]
    assert provider["matchImages"] == ["on.example.com", "ghcr.io"]
    for name in ("on", "org-a"):
        book.update(name, {"active": False})
    with pytest.raises(RegauthError, match="no registries to configure the kubelet for"):
        configure(settings, *argv, "--no-cloud")


def test_token_audience_writes_the_token_attributes(
    settings: Settings, paths: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, argv = paths
    add_record(settings, "registry.example.com", "pw", username="u")
    assert configure(settings, *argv, "--token-audience", "sts.amazonaws.com") == 0
    out = capsys.readouterr().out
    assert "request-serviceaccounts-token-audience" in out and "1.34" in out
    written = json.loads(config.read_text())
    kubelet_validate(written)
    [provider] = written["providers"]
    assert provider["tokenAttributes"] == {
        "serviceAccountTokenAudience": "sts.amazonaws.com",
        "cacheType": "ServiceAccount",
        "requireServiceAccount": False,
        "optionalServiceAccountAnnotationKeys": [
            "eks.amazonaws.com/ecr-role-arn",
            "kubernetes.azure.com/acr-client-id",
            "azure.workload.identity/client-id",
            "kubernetes.azure.com/acr-tenant-id",
            "azure.workload.identity/tenant-id",
            "regauth/gcp-workload-identity-provider",
            "iam.gke.io/gcp-service-account",
        ],
    }
    # Optional annotations: a service account naming no cloud identity pulls as the node did before.
    assert provider["args"] == ["--node-identity-fallback"]
    assert configure(settings, *argv, "--token-audience", "sts.amazonaws.com") == 0
    assert "nothing to change" in capsys.readouterr().out
    # Without the flag, the member is kept as every member the user added to regauth's entry is.
    assert configure(settings, *argv) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert configure(settings, *argv, "--token-audience", "api://AzureADTokenExchange") == 0
    [provider] = json.loads(config.read_text())["providers"]
    assert provider["tokenAttributes"]["serviceAccountTokenAudience"] == "api://AzureADTokenExchange"


def test_the_fallback_flag_joins_the_args_the_user_gave(
    settings: Settings, paths: tuple[Path, Path, list[str]]
) -> None:
    config, _, argv = paths
    add_record(settings, "registry.example.com", "pw", username="u")
    assert configure(settings, *argv) == 0
    written = json.loads(config.read_text())
    written["providers"][0]["args"] = ["--default-cache-duration", "1h"]
    config.write_text(json.dumps(written))
    assert configure(settings, *argv, "--token-audience", "sts.amazonaws.com") == 0
    [provider] = json.loads(config.read_text())["providers"]
    assert provider["args"] == ["--default-cache-duration", "1h", "--node-identity-fallback"]


@pytest.mark.parametrize("audience", ["", "two words", "tab\there", "x" * 1025])
def test_a_bad_token_audience_is_one_line_and_writes_nothing(
    regauth_exe: str, paths: tuple[Path, Path, list[str]], audience: str
) -> None:
    config, bin_dir, argv = paths
    bad = subprocess.run(
        [regauth_exe, "configure", "kubelet", *argv, "--token-audience", audience],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and bad.stdout == ""
    assert bad.stderr.startswith("regauth: error: invalid --token-audience") and bad.stderr.count("\n") == 1
    assert not config.exists() and not bin_dir.exists()


def test_env_the_user_added_to_the_entry_is_kept(
    settings: Settings, paths: tuple[Path, Path, list[str]]
) -> None:
    # The README's way to give every workload a role: AWS_ECR_ROLE_ARN in the entry's env.
    config, _, argv = paths
    add_record(settings, "registry.example.com", "pw", username="u")
    assert configure(settings, *argv) == 0
    written = json.loads(config.read_text())
    ours = written["providers"][0]["env"]
    role = {"name": "AWS_ECR_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/pull"}
    written["providers"][0]["env"] = [*ours, role]
    config.write_text(json.dumps(written))
    assert configure(settings, *argv, "--token-audience", "sts.amazonaws.com") == 0
    [provider] = json.loads(config.read_text())["providers"]
    assert provider["env"] == [*ours, role]
    kubelet_validate(json.loads(config.read_text()))
