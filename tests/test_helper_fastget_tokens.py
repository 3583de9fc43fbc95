"""The fast ``get`` of a cloud token fresh in the token cache: the general path's bytes, or no answer.

Tokens are put in the cache as a mint would (``TokenCache.put`` under the provider's own key), so no
SDK and no cloud is involved: a miss here would make the general path mint, which these tests avoid.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.records import add_record

from regauth import usage
from regauth.config import Settings, load_settings
from regauth.helper.backend import RegauthBackend
from regauth.helper.fastget import answer
from regauth.helper.protocol import serve
from regauth.providers import tokenkey
from regauth.providers.base import Credential
from regauth.providers.cache import TokenCache, cache_key
from regauth.providers.routing import make_provider
from regauth.providers.table import PROVIDERS
from regauth.registries import Registry, RegistryBook
from regauth.store import open_store

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ACR = "myreg.azurecr.io"
GCP = "europe-docker.pkg.dev"
USERNAMES = {"ecr": "AWS", "acr": "00000000-0000-0000-0000-000000000000", "gcp": "oauth2accesstoken"}
MINTING = [kind.name for kind in PROVIDERS.values() if kind.mints]


def general_get(server: str) -> tuple[int, str]:
    out = io.StringIO()
    backend = RegauthBackend.for_settings(load_settings(), stderr=io.StringIO())
    return serve("get", server.encode(), out, backend), out.getvalue()


def cache_token(
    settings: Settings,
    provider: str,
    host: str,
    record: Registry | None,
    secret: str,
    *,
    minted_ago: float = 60.0,
    lifetime: float = 12 * 3600.0,
) -> str:
    """Put a token in the cache under the key the general path computes; return the key."""
    identity = make_provider(provider, settings).identity(host, record)  # type: ignore[attr-defined]
    key = cache_key(provider, host, identity)
    minted = time.time() - minted_ago
    credential = Credential(username=USERNAMES[provider], secret=secret, expires_at=minted + lifetime)
    assert TokenCache(settings, open_store(settings)).put(key, credential, minted)
    return key


def add_cloud_record(settings: Settings, provider: str, host: str, **options: str) -> Registry:
    return RegistryBook.for_settings(settings).add(
        Registry(id="", name=f"{provider}-rec", registry=host, provider=provider, options=options), None
    )


@pytest.mark.parametrize(
    ("provider", "host", "options"),
    [
        ("ecr", ECR, {}),
        ("ecr", ECR, {"profile": "prod", "role_arn": "arn:aws:iam::123456789012:role/puller"}),
        ("acr", ACR, {"tenant_id": "t", "client_id": "c"}),
        ("gcp", GCP, {"key_file": "/etc/ä-key.json"}),
    ],
)
@pytest.mark.parametrize("asked", ["{host}", "https://{host}/v2/", " {HOST} \n"])
def test_a_record_with_a_cached_token_gives_the_same_bytes(
    settings: Settings, provider: str, host: str, options: dict[str, str], asked: str
) -> None:
    record = add_cloud_record(settings, provider, host, **options)
    cache_token(settings, provider, host, record, 'tok<&>\u2028"en\\ é')
    server = asked.format(host=host, HOST=host.upper())
    code, general = general_get(server)
    assert code == 0, general
    assert answer(server.encode(), os.environ) == general
    assert json.loads(general)["Username"] == USERNAMES[provider]


@pytest.mark.parametrize(
    ("provider", "host"), [("ecr", ECR), ("ecr", "public.ecr.aws"), ("acr", ACR), ("gcp", GCP)]
)
def test_an_ambient_cloud_host_with_a_cached_token_gives_the_same_bytes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, provider: str, host: str
) -> None:
    # An identity-selecting variable of each cloud, and some of regauth's other records beside.
    for name in ("AWS_PROFILE", "AZURE_CLIENT_ID", "CLOUDSDK_CONFIG"):
        monkeypatch.setenv(name, f"sel-{name.lower()}")
    add_record(settings, "static.example", "pw", username="u")
    # Settings read again: the identity is of the environment as it is now.
    cache_token(load_settings(), provider, host, None, "ambient-token")
    code, general = general_get(host)
    assert code == 0, general
    assert answer(host.encode(), os.environ) == general
    # Another identity is another key: the fast path does not answer with this token.
    monkeypatch.setenv("AWS_PROFILE", "other")
    monkeypatch.setenv("AZURE_CLIENT_ID", "other")
    monkeypatch.setenv("CLOUDSDK_CONFIG", "other")
    assert answer(host.encode(), os.environ) is None


def test_an_ambient_token_with_no_registries_file_at_all(settings: Settings) -> None:
    cache_token(settings, "ecr", ECR, None, "no-records-yet")
    assert not settings.registries_file.exists()
    code, general = general_get(ECR)
    assert code == 0 and answer(ECR.encode(), os.environ) == general


@pytest.mark.parametrize(
    ("minted_ago", "lifetime"),
    [
        (7 * 3600.0, 12 * 3600.0),  # past half of a long life: re-minted by the general path
        (3300.0, 3600.0),  # within 5 minutes of a short one's expiry
        (100.0, 50.0),  # expired
    ],
)
def test_a_stale_token_is_left_to_the_general_path(
    settings: Settings, minted_ago: float, lifetime: float
) -> None:
    record = add_cloud_record(settings, "ecr", ECR)
    cache_token(settings, "ecr", ECR, record, "stale", minted_ago=minted_ago, lifetime=lifetime)
    assert answer(ECR.encode(), os.environ) is None


@pytest.mark.parametrize(
    "env",
    [
        {"REGAUTH_NO_CACHE": "1"},
        {"REGAUTH_NO_CACHE": "0"},  # only the general path decides what a value means
        {"GITHUB_TOKEN": "ghp_x"},  # the env provider is asked first for a host with no record
        {"CI_JOB_TOKEN": "job", "CI_REGISTRY": ECR},
    ],
)
def test_declines_what_the_general_path_must_decide(settings: Settings, env: dict[str, str]) -> None:
    cache_token(settings, "ecr", ECR, None, "ambient")
    assert answer(ECR.encode(), os.environ) is not None
    assert answer(ECR.encode(), {**os.environ, **env}) is None


def test_a_disabled_record_is_not_answered_from_an_ambient_token(settings: Settings) -> None:
    record = add_cloud_record(settings, "ecr", ECR)
    cache_token(settings, "ecr", ECR, None, "ambient")
    RegistryBook.for_settings(settings).update(record.name, {"active": False})
    assert answer(ECR.encode(), os.environ) is None
    code, out = general_get(ECR)
    assert code == 1 and "credentials not found" in out


@pytest.mark.parametrize(
    "entry",
    [
        "not json",
        "[]",
        '{"username":"AWS","secret":"s","expires_at":9e9}',
        '{"username":"AWS","secret":"s","expires_at":NaN,"minted_at":1}',
        '{"username":"AWS","secret":"s","expires_at":"later","minted_at":1}',
    ],
)
def test_an_entry_this_version_cannot_read_is_left_to_the_general_path(
    settings: Settings, entry: str
) -> None:
    key = cache_token(settings, "ecr", ECR, None, "ambient")
    open_store(settings).set(key, entry)
    assert answer(ECR.encode(), os.environ) is None


def test_two_providers_with_an_entry_for_one_host_are_left_to_the_general_path(settings: Settings) -> None:
    cache_token(settings, "ecr", ECR, None, "one")
    identity = tokenkey.identity_text(None, os.environ, tokenkey.IDENTITY_VARS["gcp"])
    open_store(settings).set(
        cache_key("gcp", ECR, identity), open_store(settings).get(cache_key_of(settings))
    )
    assert answer(ECR.encode(), os.environ) is None


def cache_key_of(settings: Settings) -> str:
    return cache_key("ecr", ECR, make_provider("ecr", settings).identity(ECR, None))  # type: ignore[attr-defined]


# --- the shared rules hold for every minting provider ------------------------------------------------


@pytest.mark.parametrize("name", MINTING)
def test_identity_variables_are_the_providers_own(name: str) -> None:
    module = __import__(PROVIDERS[name].target.partition(":")[0], fromlist=["IDENTITY_VARS"])
    assert tokenkey.IDENTITY_VARS[name] == module.IDENTITY_VARS


_ENV_NAMES = sorted({v for names in tokenkey.IDENTITY_VARS.values() for v in names} | {"HOME", "OTHER"})


@hsettings(max_examples=60, deadline=None)
@given(
    env=st.dictionaries(st.sampled_from(_ENV_NAMES), st.text(max_size=12), max_size=6),
    options=st.dictionaries(
        st.sampled_from(["profile", "region", "tenant_id", "key_file"]), st.text(max_size=8)
    ),
    with_record=st.booleans(),
)
def test_the_fast_identity_is_each_providers_identity(
    env: dict[str, str], options: dict[str, str], with_record: bool
) -> None:
    for name in MINTING:
        provider = PROVIDERS[name].load()(env, lambda message: None)
        record = Registry(id="abc123", name="r", registry=ECR, provider=name, options=options, updated_at="t")
        fields = (record.id, record.updated_at, record.options) if with_record else None
        fast = tokenkey.identity_text(fields, env, tokenkey.IDENTITY_VARS[name])
        assert provider.identity(ECR, record if with_record else None) == fast  # type: ignore[attr-defined]


_HOSTS = [ECR, "public.ecr.aws", "123456789012.dkr-ecr.us-east-1.on.aws", ACR, "a.azurecr.cn", GCP, "gcr.io"]
_HOSTS += ["eu.gcr.io", "ghcr.io", "registry.example", "azurecr.io", "x.azurecr.io.example", "docker.io"]


@pytest.mark.parametrize("host", _HOSTS)
def test_at_most_one_minting_provider_serves_a_host_whatever_the_environment(host: str) -> None:
    """What the fast get's ambient rule rests on (fastget._ambient_token)."""
    environments: list[dict[str, str]] = [{}, {name: "x" for name in _ENV_NAMES}]
    answers = {
        tuple(name for name in MINTING if PROVIDERS[name].load()(env, lambda m: None).serves(host))
        for env in environments
    }
    assert len(answers) == 1 and len(next(iter(answers))) <= 1


# --- in a process: nothing of the provider is imported -------------------------------------------------

NEVER_ON_A_HIT = (
    "typing",
    "re",
    "json",
    "boto3",
    "botocore",
    "azure",
    "google",
    "regauth.config",
    "regauth.registries",
    "regauth.providers.routing",
    "regauth.providers.ecr",
    "regauth.providers.acr",
    "regauth.providers.gcp",
    "regauth.providers.cache",
    "regauth.providers.hosts",
)


@pytest.mark.parametrize("with_record", [True, False])
def test_a_cached_token_hit_imports_no_sdk_provider_or_general_path(
    settings: Settings, helper_exe: str, with_record: bool
) -> None:
    record = add_cloud_record(settings, "ecr", ECR) if with_record else None
    cache_token(settings, "ecr", ECR, record, "hit")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", helper_exe, "get"],
        input=ECR.encode(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["Secret"] == "hit"
    names: set[str] = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names = set() if name == "site" else names | {name}
    assert "regauth.helper.fastget" in names
    assert sorted(n for n in names if n in NEVER_ON_A_HIT or n.split(".")[0] in NEVER_ON_A_HIT) == []


# --- the last-use mark ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "general"])
def test_an_answered_get_marks_its_record_used(settings: Settings, path: str) -> None:
    static = add_record(settings, "static.example", "pw", username="u")
    cloud = add_cloud_record(settings, "ecr", ECR)
    cache_token(settings, "ecr", ECR, cloud, "tok")
    state = str(settings.state_dir)
    for record, host in ((static, "static.example"), (cloud, ECR)):
        assert usage.last_used(state, record.id) is None
        if path == "fast":
            assert answer(host.encode(), os.environ) is not None
        else:
            assert general_get(host)[0] == 0
        marked = usage.last_used(state, record.id)
        assert marked is not None and abs(marked - time.time()) < 3600


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_get_answers_where_the_mark_cannot_be_written(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: str
) -> None:
    """A state dir that cannot be written (here a file in its place: the tests run as root, whom a
    read-only mode does not stop) costs the mark, never the answer."""
    add_record(settings, "static.example", "pw", username="u")
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    if path == "fast":
        out = answer(b"static.example", os.environ)
    else:
        code, out = general_get("static.example")
        assert code == 0
    assert out is not None and json.loads(out)["Secret"] == "pw"
    assert blocker.read_text() == ""


_ENTRY = {"username": "AWS", "secret": "s", "expires_at": 9e9, "minted_at": 1}


@pytest.mark.parametrize(
    "damaged",
    [
        json.dumps({**_ENTRY, "expires_at": 10**400}),
        json.dumps({**_ENTRY, "minted_at": 10**400}),
        # Nested past json's stack: in the keyring store any program of the user's can write an entry.
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_a_damaged_entry_is_minted_again(settings: Settings, helper_exe: str, damaged: str) -> None:
    """A damaged entry (an integer no float holds, deep nesting) is one this version cannot read, as
    ``token_fields`` promises: re-minted (here: no AWS credentials, so not found), never a traceback."""
    key = cache_token(settings, "ecr", ECR, None, "ambient")
    open_store(settings).set(key, damaged)
    assert answer(ECR.encode(), os.environ) is None
    proc = subprocess.run([helper_exe, "get"], input=ECR.encode(), capture_output=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (1, b"credentials not found in native keychain\n"), proc.stderr
    assert b"Traceback" not in proc.stderr
