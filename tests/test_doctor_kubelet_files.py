"""``regauth doctor --kubelet-config`` on the forms the kubelet reads: a YAML file (the kubelet reads
YAML and JSON; doctor reads JSON only, so it must not claim regauth's entry is missing), and a
directory of config files (newer kubelets merge the providers of every file in it). In each case the
rest of the report still comes out."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import ok, regauth

YAML = """\
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: regauth-credential-provider
    matchImages: ["registry.lab:5000"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
"""


def test_a_yaml_config_is_not_called_missing_an_entry(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(YAML)
    proc = regauth("doctor", "--kubelet-config", str(config))
    assert "no regauth-credential-provider provider" not in proc.stdout, proc.stdout
    assert f"WARN   kubelet: {config} is YAML, which doctor does not read" in proc.stdout
    assert "store:" in proc.stdout


def test_a_directory_of_configs(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    ok(regauth("registry", "add", "lab", "--url", "registry.lab:5000", "--no-validate"))
    configs, bin_dir = tmp_path / "providers.d", tmp_path / "bin"
    configs.mkdir()
    (configs / "10-ecr.json").write_text(
        json.dumps({"kind": "CredentialProviderConfig", "providers": [{"name": "ecr-credential-provider"}]})
    )
    flags = ["--kubelet-config", str(configs), "--kubelet-bin-dir", str(bin_dir)]
    proc = regauth("doctor", *flags)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr
    assert f"ACTION kubelet: {configs}: no regauth-credential-provider provider" in proc.stdout
    assert "store:" in proc.stdout  # the rest of the report is there

    ours = tmp_path / "ours.json"
    ok(regauth("configure", "kubelet", "--no-cloud", "--config", str(ours), "--bin-dir", str(bin_dir)))
    ours.rename(configs / "20-regauth.json")
    out = regauth("doctor", *flags).stdout
    assert f"ok     kubelet: {configs}: the kubelet runs regauth-credential-provider" in out, out
    assert "matchImages cover no image" not in out
