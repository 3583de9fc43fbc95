"""The missing-extra hint names a command that works for how regauth was installed.

regauth is not on the package index, so ``pip install 'regauth[aws]'`` fails. The installations are
real metadata: this checkout's own editable install (through the console script), and PEP 610
``direct_url.json`` files of a wheel, a directory and an editable checkout laid out on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from regauth import install

CHECKOUT = Path(__file__).resolve().parents[1]
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_the_helper_names_this_checkouts_editable_install(helper_exe: str, tmp_path: Path) -> None:
    # boto3 made unimportable for the child, as on a machine without the aws extra.
    hidden = tmp_path / "no-boto3"
    (hidden / "boto3").mkdir(parents=True)
    (hidden / "boto3" / "__init__.py").write_text("raise ImportError('boto3 is not installed here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [helper_exe, "get"], input=ECR_HOST.encode(), capture_output=True, env=env, timeout=60, check=False
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    python = shlex.quote(str(Path(helper_exe).parent / "python"))
    wanted = f"-m pip install -e {shlex.quote(f'{CHECKOUT}[aws]')}"
    assert wanted in err and "'regauth[aws]'" not in err, err
    assert err.split("not installed: ", 1)[1].split(" -m pip")[0] in (python, shlex.quote(sys.executable))


def _dist(site: Path, direct_url: dict[str, object] | None) -> None:
    info = site / "regauth-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: regauth\nVersion: 0.1.0\nProvides-Extra: aws\nProvides-Extra: azure\n"
        'Requires-Dist: aiohttp>=3.9\nRequires-Dist: boto3>=1.28; extra == "aws"\n'
        'Requires-Dist: azure-identity>=1.15; extra == "azure"\n'
        'Requires-Dist: requests>=2.31; extra == "azure"\n'
    )
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site directory first on ``sys.path``, where a test lays out an installation's metadata."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def test_a_wheel_install_gets_the_extras_own_packages(site: Path) -> None:
    _dist(site, {"url": "file:///tmp/regauth-0.1.0-py3-none-any.whl", "archive_info": {}})
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    assert install.extra_install_command("aws") == f"{pip} 'boto3>=1.28'"
    assert install.extra_install_command("azure") == f"{pip} 'azure-identity>=1.15' 'requests>=2.31'"


def test_a_checkout_install_names_its_directory(site: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "my checkout"
    checkout.mkdir()
    _dist(site, {"url": checkout.as_uri(), "dir_info": {}})
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    assert install.extra_install_command("aws") == f"{pip} '{checkout}[aws]'"


def test_an_editable_checkout_stays_editable(site: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    checkout.mkdir()
    _dist(site, {"url": checkout.as_uri(), "dir_info": {"editable": True}})
    assert install.extra_install_command("gcp").endswith(f"-m pip install -e '{checkout}[gcp]'")


def test_a_checkout_that_is_gone_falls_back_to_the_packages(site: Path, tmp_path: Path) -> None:
    _dist(site, {"url": (tmp_path / "gone").as_uri(), "dir_info": {"editable": True}})
    assert install.extra_install_command("aws").endswith("-m pip install 'boto3>=1.28'")


def test_under_pipx_the_packages_are_injected(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "pipx-venv"
    venv.mkdir()
    (venv / "pipx_metadata.json").write_text("{}")
    monkeypatch.setattr(sys, "prefix", str(venv))
    _dist(site, {"url": "file:///tmp/regauth-0.1.0-py3-none-any.whl", "archive_info": {}})
    assert install.extra_install_command("aws") == "pipx inject regauth 'boto3>=1.28'"


def test_under_pipx_from_a_checkout_it_is_reinstalled_with_the_extra(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv, checkout = tmp_path / "pipx-venv", tmp_path / "src"
    venv.mkdir()
    checkout.mkdir()
    (venv / "pipx_metadata.json").write_text("{}")
    monkeypatch.setattr(sys, "prefix", str(venv))
    _dist(site, {"url": checkout.as_uri(), "dir_info": {}})
    assert install.extra_install_command("aws") == f"pipx install --force '{checkout}[aws]'"


def test_the_hint_costs_nothing_until_shown() -> None:
    # The helper's get imports the provider base on its general path; the metadata reader only with a hint.
    code = "import sys, regauth.providers.base; print('regauth.install' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
