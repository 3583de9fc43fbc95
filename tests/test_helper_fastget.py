"""The helper's fast ``get``: the same bytes as the general path, or no answer at all."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest
from fuzz.targets import run_in_process
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.records import add_record

from regauth.config import Settings, load_settings
from regauth.helper import fastget
from regauth.helper.backend import RegauthBackend
from regauth.helper.fastget import answer
from regauth.helper.protocol import serve
from regauth.layout import RECORD_TYPES
from regauth.registries import Registry, RegistryBook
from regauth.servers import normalize_registry
from regauth.store import open_store


def general_get(server: bytes) -> tuple[int, str]:
    settings = load_settings()
    out = io.StringIO()
    code = serve(
        "get",
        server,
        out,
        RegauthBackend.for_settings(settings, stderr=io.StringIO()),
    )
    return code, out.getvalue()


def fast_get(server: bytes) -> str | None:
    return answer(server, os.environ)


def test_record_fields_match_the_registry_record() -> None:
    assert set(Registry._fields) == set(RECORD_TYPES)


@pytest.mark.parametrize(
    ("username", "secret"),
    [
        ("alice", "s3cret"),
        ("<token>", "eyJhbGciOi.identity.token"),
        ("bob", '<&>\u2028\u2029 "quoted" \\ tab\t nl\n ctl\x01 é 😀'),
        ("", "empty-user"),
    ],
)
@pytest.mark.parametrize(
    "asked", ["registry.example:5000", "https://registry.example:5000/v2/", " REGISTRY.example:5000 \n"]
)
def test_fast_and_general_paths_give_the_same_bytes(
    settings: Settings, username: str, secret: str, asked: str
) -> None:
    add_record(settings, "registry.example:5000", secret, username=username)
    code, general = general_get(asked.encode())
    assert code == 0
    assert fast_get(asked.encode()) == general
    assert json.loads(general)["Secret"] == secret


def test_docker_hub_spellings_are_one_registry(settings: Settings) -> None:
    add_record(settings, "docker.io", "hubsecret", username="hubuser")
    for asked in ("https://index.docker.io/v1/", "docker.io", "registry-1.docker.io"):
        code, general = general_get(asked.encode())
        assert code == 0
        assert fast_get(asked.encode()) == general


@hsettings(max_examples=40, deadline=None)
@given(secret=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_any_secret_round_trips_identically(secret: str) -> None:
    settings = load_settings()
    name = "prop.example"
    book = RegistryBook.for_settings(settings)
    if any(r.registry == name for r in book.all()):
        book.remove(name)
    add_record(settings, name, secret, username="u")
    assert fast_get(name.encode()) == general_get(name.encode())[1]


def _store_with_record(settings: Settings) -> None:
    add_record(settings, "registry.example", "pw", username="u")
    assert fast_get(b"registry.example") is not None


@pytest.mark.parametrize(
    "env",
    [
        {"REGAUTH_LOG_LEVEL": "DEBUG"},
        {"REGAUTH_LOG_LEVEL": "info"},
        {"REGAUTH_LOG_LEVEL": "LOUD"},
        {"REGAUTH_PASSPHRASE": "pass phrase"},
        {"REGAUTH_STORE": "keyring"},
        {"REGAUTH_STORE": "nonsense"},
        {"REGAUTH_STORE": "auto"},  # no remembered choice: the general path probes
    ],
)
def test_declines_settings_it_does_not_handle(settings: Settings, env: dict[str, str]) -> None:
    _store_with_record(settings)
    assert answer(b"registry.example", {**os.environ, **env}) is None


def test_answers_a_remembered_auto_choice_of_file(settings: Settings) -> None:
    _store_with_record(settings)
    settings.store_choice_file.write_text("file\n")
    assert answer(b"registry.example", {**os.environ, "REGAUTH_STORE": "auto"}) is not None
    settings.store_choice_file.write_text("keyring\n")
    assert answer(b"registry.example", {**os.environ, "REGAUTH_STORE": "auto"}) is None


@pytest.mark.parametrize(
    "server",
    [b"", b"   \n", b"unknown.example", b"ftp://registry.example", b"\xff\xfe", b"a" * (1024 * 1024 + 1)],
)
def test_declines_input_the_general_path_must_answer(settings: Settings, server: bytes) -> None:
    _store_with_record(settings)
    assert fast_get(server) is None


def test_declines_anonymous_and_provider_records(settings: Settings) -> None:
    add_record(settings, "anon.example")
    RegistryBook.for_settings(settings).add(
        Registry(id="", name="ecr", registry="123456789012.dkr.ecr.us-east-1.amazonaws.com", provider="ecr"),
        None,
    )
    assert fast_get(b"anon.example") is None
    assert fast_get(b"123456789012.dkr.ecr.us-east-1.amazonaws.com") is None


def _damage_registries(settings: Settings, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(settings.registries_file.read_text())
    edit(data)
    settings.registries_file.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["registries"].append("not an object"),
        lambda d: d["registries"].append({"id": "x", "name": "n", "registry": "r", "color": "blue"}),
        lambda d: d["registries"].append({"id": "x", "name": "n"}),
        lambda d: d["registries"].append({"id": 7, "name": "n", "registry": "r"}),
        lambda d: d.update(registries={}),
        lambda d: d.pop("registries"),
    ],
)
def test_a_damaged_registries_file_is_left_to_the_general_path(settings: Settings, edit) -> None:  # type: ignore[no-untyped-def]
    _store_with_record(settings)
    _damage_registries(settings, edit)
    assert fast_get(b"registry.example") is None
    code, out = general_get(b"registry.example")
    assert code == 1 and "damaged" in out


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:10],
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),
        lambda b: b"XXXXX" + b[5:],
        lambda b: b"",
    ],
)
def test_a_damaged_secret_store_is_left_to_the_general_path(settings: Settings, damage) -> None:  # type: ignore[no-untyped-def]
    _store_with_record(settings)
    settings.secrets_file.write_bytes(damage(settings.secrets_file.read_bytes()))
    assert fast_get(b"registry.example") is None
    assert general_get(b"registry.example")[0] == 1


def test_missing_files_are_left_to_the_general_path(settings: Settings) -> None:
    assert fast_get(b"registry.example") is None
    _store_with_record(settings)
    settings.key_file.unlink()
    assert fast_get(b"registry.example") is None
    assert general_get(b"registry.example")[0] == 1


def test_a_record_without_its_secret_is_left_to_the_general_path(settings: Settings) -> None:
    record = add_record(settings, "registry.example", "pw", username="u")
    open_store(settings).delete(record.secret_key)
    assert fast_get(b"registry.example") is None
    assert general_get(b"registry.example")[0] == 1


def test_a_number_too_long_to_read_is_left_to_the_general_path(settings: Settings) -> None:
    # json.loads raises a plain ValueError here (int's digit limit), not a JSONDecodeError.
    _store_with_record(settings)
    text = settings.registries_file.read_text()
    settings.registries_file.write_text(text.replace('"version": 1', '"version": ' + "1" * 5000, 1))
    assert fast_get(b"registry.example") is None
    code, out = general_get(b"registry.example")
    assert code == 1 and "damaged" in out


def test_a_fault_of_the_fast_path_is_raised_not_declined(settings: Settings) -> None:
    """Only the conditions it expects make it decline: a bug (here a wrong type handed in) is raised,
    so that the tests above fail on it instead of passing on the general path's answer."""
    _store_with_record(settings)
    with pytest.raises(AttributeError):
        answer("registry.example", os.environ)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        answer(b"registry.example", {**os.environ, "XDG_CONFIG_HOME": 7})  # type: ignore[dict-item]
    with pytest.raises(AttributeError):
        fastget._record_for("registry.example", "a str, not the file's bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", ["abc", "-1", "inf", "nan"])
def test_a_setting_the_general_path_refuses_is_left_to_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, ttl: str
) -> None:
    """The general path refuses a bad REGAUTH_NO_CREDENTIALS_TTL on every get, a static one too: the
    fast path must not answer 0 with a secret where the general one says what is wrong."""
    _store_with_record(settings)
    monkeypatch.setenv("REGAUTH_NO_CREDENTIALS_TTL", ttl)
    ran = run_in_process("get", b"registry.example")
    assert ran.code == 1 and ran.out.startswith("REGAUTH_NO_CREDENTIALS_TTL=") and ran.out.count("\n") == 1
    assert fast_get(b"registry.example") is None


def test_a_remembered_choice_the_general_path_refuses_is_left_to_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store-backend file larger than the general path reads is its error, whatever it holds."""
    _store_with_record(settings)
    settings.store_choice_file.write_text("file" + " " * 100 + "\n")
    monkeypatch.setenv("REGAUTH_STORE", "auto")
    ran = run_in_process("get", b"registry.example")
    assert ran.code == 1 and "larger than" in ran.out and ran.out.count("\n") == 1
    assert fast_get(b"registry.example") is None


@pytest.mark.parametrize("stored", ["http://h.example:443", "https://h.example"])
@pytest.mark.parametrize("asked", ["http://h.example:443", "h.example:443", "h.example"])
def test_plain_http_on_port_443_gives_both_paths_one_answer(stored: str, asked: str) -> None:
    """The server "http://h:443" is the host "h:443", and "h:443" with no scheme is "h": the general
    path looked the record up by normalising its host again, so it answered h's record (or none)
    where the fast path answered the h:443 one."""
    login = {"ServerURL": stored, "Username": "u", "Secret": "s-" + stored}
    assert run_in_process("store", json.dumps(login).encode()).code == 0
    code, general = general_get(asked.encode())
    fast = fast_get(asked.encode())
    assert fast is None or (code, fast) == (0, general)
    if normalize_registry(asked) == normalize_registry(stored):
        assert code == 0 and json.loads(general)["Secret"] == "s-" + stored, general
    else:
        assert code == 1 and general == "credentials not found in native keychain\n"


@pytest.mark.parametrize("which", ["registries_file", "secrets_file", "key_file", "store_choice_file"])
def test_a_huge_file_is_read_no_further_than_the_general_path_reads_it(
    settings: Settings, helper_exe: str, which: str
) -> None:
    """A 2 GiB file (sparse: it costs no disk) in place of one of regauth's: the fast get reads at most
    what the general path reads of it, under a 1 GiB address-space limit, and the general path says it
    is too large (or damaged) in one line. It read the whole file, and died of a MemoryError."""
    import resource

    _store_with_record(settings)
    path = getattr(settings, which)
    with open(path, "wb") as handle:
        handle.truncate(2 << 30)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {**os.environ, "REGAUTH_STORE": "auto" if which == "store_choice_file" else "file"}
    proc = subprocess.run(
        [helper_exe, "get"],
        input=b"registry.example",
        capture_output=True,
        timeout=120,
        env=env,
        preexec_fn=limited,
        check=False,
    )
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr, proc.stderr[-500:]
    assert proc.stdout.count(b"\n") == 1 and (b"larger than" in proc.stdout or b"damaged" in proc.stdout)
