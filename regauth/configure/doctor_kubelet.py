"""``regauth doctor``'s kubelet checks: its CredentialProviderConfig names regauth's plugin for every
record in use, and the plugin the kubelet would run is there and answers.

The kubelet runs ``<bin-dir>/regauth-credential-provider`` for an image only when one of the entry's
``matchImages`` covers it (the kubelet's own matching, ``kube.matching``), so a record added after
``configure kubelet`` is not used until the config is written again. The bin dir is a kubelet flag,
not in the config: it is ``--kubelet-bin-dir``, else the one ``configure kubelet`` writes by default.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from regauth.configure.findings import ACTION, OK, Finding
from regauth.registries import Registry

CHECK = "kubelet"
# A ``--version`` that takes longer than this will not answer the kubelet in time either.
_ANSWER_SECONDS = 10.0


def kubelet_findings(
    path: Path, config: dict[str, Any], records: Sequence[Registry], bin_dir: Path | None
) -> Iterator[Finding]:
    from regauth.kube.kubeletconfig import DEFAULT_BIN_DIR
    from regauth.kube.main import PROGRAM

    providers = config.get("providers")
    entries = [p for p in providers if isinstance(p, dict)] if isinstance(providers, list) else []
    ours = next((p for p in entries if p.get("name") == PROGRAM), None)
    if ours is None:
        yield Finding(CHECK, ACTION, f"{path}: no {PROGRAM} provider; run `regauth configure kubelet`")
        return
    yield Finding(CHECK, OK, f"{path}: the kubelet runs {PROGRAM}")
    yield from _coverage(path, ours.get("matchImages"), records)
    yield from _plugin((bin_dir or DEFAULT_BIN_DIR) / PROGRAM)


def _coverage(path: Path, patterns: object, records: Sequence[Registry]) -> Iterator[Finding]:
    from regauth.kube.matching import NoURL, urls_match

    given = [p for p in patterns if isinstance(p, str)] if isinstance(patterns, list) else []

    def covered(image: str) -> bool:
        for pattern in given:
            try:
                if urls_match(pattern, image):
                    return True
            except NoURL:
                continue  # the kubelet refuses such a pattern; `configure kubelet` lints it
        return False

    missing = [r.location for r in records if not covered(_sample_image(r))]
    if missing:
        yield Finding(
            CHECK,
            ACTION,
            f"{path}: matchImages cover no image of {', '.join(missing)}; run `regauth configure kubelet`",
        )


def _sample_image(record: Registry) -> str:
    # An image in the record's reach: its prefix, if any, then a repository.
    return f"{record.location}/app"


def _plugin(plugin: Path) -> Iterator[Finding]:
    if not plugin.is_file():
        yield Finding(
            CHECK,
            ACTION,
            f"{plugin}: no such file; `regauth configure kubelet --bin-dir DIR` installs it in the "
            "kubelet's --image-credential-provider-bin-dir (give doctor --kubelet-bin-dir DIR)",
        )
        return
    try:
        proc = subprocess.run(
            [str(plugin), "--version"], capture_output=True, text=True, timeout=_ANSWER_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        what = f"{plugin}: does not run ({type(exc).__name__}); reinstall it with `regauth configure kubelet`"
        yield Finding(CHECK, ACTION, what)
        return
    if proc.returncode != 0 or "regauth" not in proc.stdout:
        failed = f"`--version` failed (exit {proc.returncode})"
        what = f"{plugin}: {failed}; reinstall it with `regauth configure kubelet`"
        yield Finding(CHECK, ACTION, what)
        return
    yield Finding(CHECK, OK, f"{plugin}: answers ({proc.stdout.strip()})")
