"""``regauth-credential-provider`` held to the kubelet's contract, run as the kubelet runs it.

Every response goes through ``support.kubelet.kubelet_decode`` (the kubelet's strict decoding) and its auth
keys through the kubelet's keyring matching; exit codes and stderr are what the kubelet logs.
"""

from __future__ import annotations

import json
import time

import pytest
from support.kubelet import V1, go_seconds, keyring_lookup, kubelet_decode, request, run_plugin
from support.providers import fake_jwt
from support.records import add_record

from regauth.config import Settings
from regauth.errors import UsageError
from regauth.kube.wire import go_duration, parse_go_duration

HOST = "registry.example.com"


def test_a_static_record_answers_with_a_key_the_kubelet_matches(settings: Settings) -> None:
    add_record(settings, HOST, "s3cret", username="alice")
    image = f"{HOST}/org/app"
    proc = run_plugin(request(image), "--default-cache-duration", "12h")
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout)
    assert list(data) == ["kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"]
    assert data["cacheKeyType"] == "Registry"
    assert go_seconds(data["cacheDuration"]) == 12 * 3600
    assert keyring_lookup(data["auth"], image) == [{"username": "alice", "password": "s3cret"}]
    # Cached per registry, so the key must cover the registry's other images too.
    assert keyring_lookup(data["auth"], f"{HOST}/other/thing") == [
        {"username": "alice", "password": "s3cret"}
    ]


def test_without_a_default_the_kubelet_config_default_applies(settings: Settings) -> None:
    add_record(settings, "127.0.0.1:5000", "pw", username="u")
    proc = run_plugin(request("127.0.0.1:5000/test/app"))
    data = kubelet_decode(proc.stdout)
    assert "cacheDuration" not in data
    assert data["auth"] == {"127.0.0.1:5000": {"username": "u", "password": "pw"}}


def test_docker_hub_images_get_the_key_the_kubelet_spells(settings: Settings) -> None:
    add_record(settings, "docker.io", "hubpw", username="hubuser")
    for image in ("docker.io/library/nginx", "index.docker.io/library/nginx"):
        data = kubelet_decode(run_plugin(request(image)).stdout)
        assert keyring_lookup(data["auth"], image) == [{"username": "hubuser", "password": "hubpw"}]


@pytest.mark.parametrize(
    "api_version",
    ["credentialprovider.kubelet.k8s.io/v1beta1", "credentialprovider.kubelet.k8s.io/v1alpha1"],
)
def test_older_api_versions_are_answered_in_their_own_version(settings: Settings, api_version: str) -> None:
    add_record(settings, HOST, "s3cret", username="alice")
    proc = run_plugin(request(f"{HOST}/app", api_version))
    assert proc.returncode == 0
    assert kubelet_decode(proc.stdout, api_version)["apiVersion"] == api_version


def test_no_record_and_anonymous_records_answer_empty_auth(settings: Settings) -> None:
    add_record(settings, "anon.example.com", None)
    durations = {}
    for image in ("nothing.example.com/app", "anon.example.com/app"):
        proc = run_plugin(request(image), "--default-cache-duration=5m")
        assert (proc.returncode, proc.stderr) == (0, "")
        data = kubelet_decode(proc.stdout)
        assert data["auth"] == {}
        durations[image.partition("/")[0]] = data["cacheDuration"]
    # Nothing configured is remembered as briefly as a provider's "no credentials" (60 s by default), so
    # a record added later is used soon; an anonymous record is configured, and kept as long as any.
    assert durations == {"nothing.example.com": "1m0s", "anon.example.com": "5m0s"}


def test_a_zero_default_means_never_cache_even_for_nothing(settings: Settings) -> None:
    data = kubelet_decode(
        run_plugin(request("nothing.example.com/app"), "--default-cache-duration", "0").stdout
    )
    assert (data["auth"], data["cacheDuration"]) == ({}, "0s")


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        (b"", "not JSON"),
        (b"{nope", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (request("x.io/app", "credentialprovider.kubelet.k8s.io/v2"), "apiVersion"),
        (request("x.io/app", "client.authentication.k8s.io/v1"), "apiVersion"),
        (json.dumps({"apiVersion": V1, "image": "x.io/a"}).encode(), "kind"),
        (json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1}).encode(), "no image"),
        (request("x.io/app", serviceAccountToken=5), "serviceAccountToken"),
        (request("x.io/app", serviceAccountAnnotations=["a"]), "serviceAccountAnnotations"),
        (request("x.io/UPPER/app"), "x.io/UPPER/app"),
        (b" " * (2 << 20), "larger than"),
        # Nesting deeper than the interpreter's recursion limit, well inside the size limit.
        (b"[" * 100_000, "not JSON"),
        (b'{"kind": "CredentialProviderRequest", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not JSON"),
    ],
)
def test_a_request_that_is_not_one_exits_1_with_one_line(settings: Settings, stdin: bytes, says: str) -> None:
    proc = run_plugin(stdin)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("regauth-credential-provider: ") and proc.stderr.count("\n") == 1
    assert says in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args", [["--nope"], ["--default-cache-duration", "soon"], ["--default-cache-duration"]]
)
def test_bad_args_exit_1_with_one_line(settings: Settings, args: list[str]) -> None:
    proc = run_plugin(request(f"{HOST}/app"), *args)
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1


def test_a_static_record_answers_a_request_with_a_service_account_token(settings: Settings) -> None:
    # A static secret is what the admin gave regauth for this registry, not the node's cloud identity:
    # answered as without a token (see regauth/providers/routing.py), never with the token itself.
    add_record(settings, HOST, "s3cret", username="alice")
    token = fake_jwt({"sub": "system:serviceaccount:team-a:puller"})
    annotations = {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::123456789012:role/x"}
    proc = run_plugin(
        request(f"{HOST}/app", serviceAccountToken=token, serviceAccountAnnotations=annotations),
        "--default-cache-duration",
        "1h",
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout, service_account_token=token)
    assert list(data) == ["kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"]
    assert data["auth"] == {HOST: {"username": "alice", "password": "s3cret"}}
    assert go_seconds(data["cacheDuration"]) == 3600


def test_the_strict_decoder_refuses_a_service_account_cache_type_field() -> None:
    # The v1 response has no such field (the cache type is tokenAttributes.cacheType in the kubelet's
    # config): the kubelet's strict decoding drops a response that has one.
    answer = '{"kind":"CredentialProviderResponse","apiVersion":"%s","cacheKeyType":"Registry",%s"auth":{}}\n'
    kubelet_decode(answer % (V1, ""))
    with pytest.raises(AssertionError, match="unknown fields"):
        kubelet_decode(answer % (V1, '"serviceAccountTokenCacheType":"ServiceAccount",'))


def test_the_secret_never_reaches_stderr_and_a_broken_store_is_one_line(settings: Settings) -> None:
    add_record(settings, HOST, "s3cret", username="alice")
    settings.secrets_file.write_bytes(b"damaged")
    proc = run_plugin(request(f"{HOST}/app"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "s3cret" not in proc.stderr and "Traceback" not in proc.stderr


def test_go_durations() -> None:
    assert [go_duration(s) for s in (0, 59, 60, 3599, 3600, 21600, 43199)] == [
        "0s",
        "59s",
        "1m0s",
        "59m59s",
        "1h0m0s",
        "6h0m0s",
        "11h59m59s",
    ]
    assert [parse_go_duration(t) for t in ("0", "12h", "1h30m", "90s", "1.5m", "500ms")] == [
        0,
        43200,
        5400,
        90,
        90,
        0.5,
    ]
    for bad in ("", "-1h", "12", "1d", "h", "1..5s"):
        with pytest.raises(UsageError):
            parse_go_duration(bad)
    # Go's time.Duration is int64 nanoseconds: past about 292 years ParseDuration fails, and the kubelet
    # drops the response (or refuses its whole config) with it.
    assert parse_go_duration("2562047h") == 2562047 * 3600
    for overflow in ("2562048h", "9" * 400 + "h", "1" * 400 + "s"):
        with pytest.raises(UsageError, match="invalid duration"):
            parse_go_duration(overflow)


@pytest.mark.parametrize("duration", ["3000000h", "1" * 400 + "h"])
def test_a_default_cache_duration_go_cannot_hold_is_one_line(settings: Settings, duration: str) -> None:
    proc = run_plugin(request(f"{HOST}/app"), "--default-cache-duration", duration)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert (
        proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "invalid duration" in proc.stderr
    )


def test_minted_tokens_are_cached_for_half_their_remaining_life() -> None:
    from regauth.kube.answer import cache_seconds
    from regauth.providers.base import Credential

    now = time.time()
    assert cache_seconds(Credential("AWS", "t", now + 12 * 3600), 600, now) == 6 * 3600
    assert cache_seconds(Credential("AWS", "t", now + 1.5), 600, now) == 0
    assert cache_seconds(Credential("AWS", "t", now - 5), 600, now) == 0
    assert cache_seconds(Credential("u", "p"), 600, now) == 600
    assert cache_seconds(Credential("u", "p"), None, now) is None
