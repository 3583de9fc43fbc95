"""How regauth was installed, for hints that name a command: what to run to add an optional extra.

regauth is not on the package index, so ``pip install 'regauth[aws]'`` cannot work. From a checkout
(editable or not) the extra comes with the checkout's path; from a wheel, the extra's own packages
are installed beside it; under pipx, ``pipx inject``. Computed only when a hint is shown: reading the
distribution's metadata costs a few milliseconds that a credential ``get`` must not pay.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import metadata
from urllib.parse import unquote, urlsplit

DIST = "regauth"


def extra_install_command(extra: str) -> str:
    """The command that adds ``extra`` (``aws``, ``azure``, ``gcp``) to this regauth installation."""
    dist = _installed()
    checkout = _checkout(dist)
    if os.path.exists(os.path.join(sys.prefix, "pipx_metadata.json")):
        # pipx keeps its own venv: inject the packages there, or reinstall from the checkout.
        if checkout is not None:
            return f"pipx install --force {shlex.quote(f'{checkout[0]}[{extra}]')}"
        return "pipx inject regauth " + " ".join(shlex.quote(r) for r in _requirements(dist, extra))
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    if checkout is not None:
        path, editable = checkout
        return f"{pip} {'-e ' if editable else ''}{shlex.quote(f'{path}[{extra}]')}"
    return f"{pip} " + " ".join(shlex.quote(r) for r in _requirements(dist, extra))


def _installed() -> metadata.Distribution | None:
    # The installed one, not a stale ``regauth.egg-info`` of a checkout that is the working directory:
    # only an installer writes direct_url.json (PEP 610).
    found = list(metadata.distributions(name=DIST))
    return next((d for d in found if d.read_text("direct_url.json")), found[0] if found else None)


def _checkout(dist: metadata.Distribution | None) -> tuple[str, bool] | None:
    """(the source directory, editable) when regauth was installed from a directory that still exists."""
    text = dist.read_text("direct_url.json") if dist is not None else None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("dir_info"), dict):
        return None  # a wheel or an archive: no checkout to point at
    url = urlsplit(str(data.get("url", "")))
    path = unquote(url.path)
    if url.scheme != "file" or not os.path.isdir(path):
        return None
    return path, bool(data["dir_info"].get("editable"))


def _requirements(dist: metadata.Distribution | None, extra: str) -> list[str]:
    """The extra's requirements (``boto3>=1.28``) as the distribution's metadata lists them."""
    found = []
    for line in (dist.requires or []) if dist is not None else []:
        requirement, _, marker = line.partition(";")
        if f'extra == "{extra}"' in marker.replace("'", '"'):
            found.append(requirement.strip().replace(" ", ""))
    return found or [f"the packages of regauth's {extra!r} extra"]
