"""The kubelet plugin with service-account tokens (KEP-4412): ECR pulls with the workload's own role.

moto in server mode plays STS and ECR, behind ``support.aws_recorder`` (boto3 finds it through
``AWS_ENDPOINT_URL``), which records what each call carried: the pod's token sent to
``AssumeRoleWithWebIdentity`` unsigned, ``GetAuthorizationToken`` signed with the key STS returned and
not the node's. Every response goes through the kubelet's strict decoding.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.sts.models import sts_backends
from support.aws_recorder import ECR_TOKEN, WEB_IDENTITY, Recorder, recorder
from support.kubelet import go_seconds, keyring_lookup, kubelet_decode, request, run_plugin
from support.metadata_stand_in import MetadataStandIn, black_hole
from support.providers import fake_jwt, start_moto
from support.records import add_record

from regauth.config import Settings
from regauth.providers.cache import PREFIX, CachedToken
from regauth.providers.ecr import PAST_EXPIRY_TTL, ROLE_ANNOTATION, WORKLOAD_SESSION_NAME
from regauth.providers.workload import Workload
from regauth.store.lazy import LazyStore

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{HOST}/team/app"
ISSUER = "https://oidc.cluster.example.test"
ROLE_A = "arn:aws:iam::111122223333:role/team-a-pull"
ROLE_B = "arn:aws:iam::111122223333:role/team-b-pull"
NODE_KEY = "testing"  # what start_moto gives the node: the key a node-identity call is signed with


def pod_token(namespace: str, name: str, *, pod: str = "pod-1") -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": ["sts.amazonaws.com"],
        "exp": now + 3600,
        "iat": now,
        "kubernetes.io": {"namespace": namespace, "pod": {"name": pod}, "serviceaccount": {"name": name}},
    }
    return fake_jwt(claims)


def sa_request(token: str, role: str | None = None, image: str = IMAGE) -> bytes:
    annotations = {} if role is None else {ROLE_ANNOTATION: role}
    return request(image, serviceAccountToken=token, serviceAccountAnnotations=annotations)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    server = start_moto(monkeypatch)
    host, port = server.get_host_and_port()
    try:
        with recorder(f"http://{host}:{port}") as site:
            monkeypatch.setenv("AWS_ENDPOINT_URL", site.url)
            monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
            yield site
    finally:
        server.stop()


def workload_tokens(settings: Settings) -> dict[str, CachedToken]:
    store = LazyStore.for_settings(settings)
    found = {}
    for key in store.keys():
        text = store.get(key)
        if key.startswith(f"{PREFIX}ecr/") and text is not None and (token := CachedToken.from_text(text)):
            found[key] = token
    return found


def assumed_key(role: str, session_name: str) -> set[str]:
    """The access keys moto's STS handed out for ``role`` under ``session_name``."""
    account = role.split(":")[4]
    return {
        assumed.access_key_id
        for assumed in sts_backends[account]["aws"].assumed_roles
        if assumed.role_arn == role and assumed.session_name == session_name
    }


def test_a_service_account_with_the_role_annotation_pulls_with_that_role(
    aws: Recorder, settings: Settings, metadata_service: MetadataStandIn
) -> None:
    token = pod_token("team-a", "puller")
    probes = sum(metadata_service.hits.values())
    before = time.time()
    proc = run_plugin(sa_request(token, ROLE_A), "--default-cache-duration", "12h")
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout, service_account_token=token)
    assert list(data) == ["kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"]
    assert keyring_lookup(data["auth"], IMAGE) == [{"username": "AWS", "password": "123456789012-auth-token"}]
    assert data["cacheKeyType"] == "Registry"
    # moto's ECR token "expires" in 2015, taken as PAST_EXPIRY_TTL from the mint; STS's session lasts
    # an hour: the earlier end counts, and the kubelet keeps the answer for half of what is left.
    assert 0 < go_seconds(data["cacheDuration"]) <= PAST_EXPIRY_TTL // 2
    assert go_seconds(data["cacheDuration"]) >= (PAST_EXPIRY_TTL - (time.time() - before) - 60) // 2

    (sts,) = aws.of(WEB_IDENTITY)
    # The pod's token went to STS, unsigned: the node's credentials were neither searched nor used.
    assert sts.key_id is None
    assert (sts.form["RoleArn"], sts.form["WebIdentityToken"]) == (ROLE_A, token)
    assert sts.form["RoleSessionName"] == WORKLOAD_SESSION_NAME
    (ecr,) = aws.of(ECR_TOKEN)
    assert ecr.key_id in assumed_key(ROLE_A, WORKLOAD_SESSION_NAME) and ecr.key_id != NODE_KEY
    assert sum(metadata_service.hits.values()) == probes


def test_two_service_accounts_get_two_tokens_and_a_second_pod_is_answered_from_the_cache(
    aws: Recorder, settings: Settings
) -> None:
    # The same role for both: the service account alone keeps their tokens apart.
    first = run_plugin(sa_request(pod_token("team-a", "puller"), ROLE_A))
    other = run_plugin(sa_request(pod_token("team-b", "puller"), ROLE_A))
    assert (first.returncode, other.returncode) == (0, 0), first.stderr + other.stderr
    exchanged = [call.form["WebIdentityToken"] for call in aws.of(WEB_IDENTITY)]
    assert [Workload(t, {}).subject() for t in exchanged] == [
        "system:serviceaccount:team-a:puller",
        "system:serviceaccount:team-b:puller",
    ]
    cached = workload_tokens(settings)
    assert len(cached) == 2, "one token cache entry per service account"

    # Another pod of team-a/puller, with a token of its own: no new exchange, the same registry token.
    again = run_plugin(sa_request(pod_token("team-a", "puller", pod="pod-2"), ROLE_A))
    assert (again.returncode, again.stderr) == (0, "")
    assert kubelet_decode(again.stdout)["auth"] == kubelet_decode(first.stdout)["auth"]
    assert len(aws.of(WEB_IDENTITY)) == 2 and len(aws.of(ECR_TOKEN)) == 2
    assert workload_tokens(settings).keys() == cached.keys()


def test_the_workload_token_is_kept_apart_from_the_node_token(aws: Recorder, settings: Settings) -> None:
    node = run_plugin(request(IMAGE))
    pod = run_plugin(sa_request(pod_token("team-a", "puller"), ROLE_A))
    assert (node.returncode, pod.returncode) == (0, 0), node.stderr + pod.stderr
    signers = [call.key_id for call in aws.of(ECR_TOKEN)]
    assert signers[0] == NODE_KEY and signers[1] in assumed_key(ROLE_A, WORKLOAD_SESSION_NAME)
    assert len(workload_tokens(settings)) == 2


def test_the_session_ending_first_bounds_the_cache(aws: Recorder, settings: Settings) -> None:
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=120)
    stamp = soon.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    aws.sts_rewrite = lambda body: re.sub(
        rb"<Expiration>[^<]*</Expiration>", b"<Expiration>" + stamp + b"</Expiration>", body
    )
    proc = run_plugin(sa_request(pod_token("team-a", "puller"), ROLE_A))
    assert proc.returncode == 0, proc.stderr
    assert go_seconds(kubelet_decode(proc.stdout)["cacheDuration"]) <= 60
    (token,) = workload_tokens(settings).values()
    assert token.expires_at <= soon.timestamp() + 1


@pytest.mark.parametrize("source", ["record", "env"])
def test_without_the_annotation_the_record_or_the_kubelet_env_names_the_role(
    aws: Recorder, settings: Settings, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    if source == "record":
        add_record(settings, HOST, provider="ecr", options={"workload_role_arn": ROLE_B})
    else:
        # As ecr-credential-provider, the variable the kubelet config's `env` can set for the plugin.
        monkeypatch.setenv("AWS_ECR_ROLE_ARN", ROLE_B)
    proc = run_plugin(sa_request(pod_token("team-b", "puller")))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [call.form["RoleArn"] for call in aws.of(WEB_IDENTITY)] == [ROLE_B]


def test_a_service_account_without_a_role_is_refused_in_one_line(aws: Recorder, settings: Settings) -> None:
    token = pod_token("team-c", "default")
    proc = run_plugin(sa_request(token))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("regauth-credential-provider: ") and proc.stderr.count("\n") == 1
    assert ROLE_ANNOTATION in proc.stderr and "team-c/default" in proc.stderr
    assert token not in proc.stderr and "Traceback" not in proc.stderr
    assert aws.calls == []


def test_with_node_identity_fallback_a_service_account_without_a_role_gets_the_node_s(
    aws: Recorder, settings: Settings
) -> None:
    token = pod_token("kube-system", "coredns")
    proc = run_plugin(sa_request(token), "--node-identity-fallback")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert kubelet_decode(proc.stdout, service_account_token=token)["auth"][HOST]["username"] == "AWS"
    assert aws.of(WEB_IDENTITY) == [] and [call.key_id for call in aws.of(ECR_TOKEN)] == [NODE_KEY]


def test_an_sts_that_rejects_the_token_and_echoes_it_is_one_line_without_it(
    aws: Recorder, settings: Settings
) -> None:
    token = pod_token("team-a", "puller")
    aws.sts_answer = (
        400,
        (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider for {token}</Message>"
            "</Error><RequestId>r-1</RequestId></ErrorResponse>"
        ).encode(),
    )
    proc = run_plugin(sa_request(token, ROLE_A))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.count("\n") == 1 and "InvalidIdentityToken" in proc.stderr
    assert "trust policy" in proc.stderr and ISSUER in proc.stderr
    assert token not in proc.stderr and token.split(".")[1] not in proc.stderr
    # Nor the part of it that fits a shortened message: the message is shortened after the token is out.
    assert token[:40] not in proc.stderr and token.split(".")[1][:40] not in proc.stderr
    assert aws.of(ECR_TOKEN) == []


def test_the_token_is_never_written_anywhere(
    aws: Recorder, settings: Settings, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.setenv("REGAUTH_LOG_LEVEL", "DEBUG")
    token = pod_token("team-a", "puller")
    for args in ([], ["--node-identity-fallback"]):
        for role in (ROLE_A, None, "not-an-arn"):
            proc = run_plugin(sa_request(token, role), *args)
            assert token not in proc.stdout + proc.stderr
    payload = token.split(".")[1].encode()
    for path in isolated_env.rglob("*"):
        if path.is_file():
            assert payload not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        (sa_request("not-a-jwt", ROLE_A), "not a JWT"),
        (sa_request("a.b.c", ROLE_A), "not a JWT"),
        (sa_request(fake_jwt({"iss": ISSUER}), ROLE_A), "names no service account"),
        (sa_request(pod_token("team-a", "puller"), "arn:aws:iam::1:user/x"), "not an IAM role ARN"),
        (
            request(
                IMAGE,
                "credentialprovider.kubelet.k8s.io/v1beta1",
                serviceAccountToken=pod_token("team-a", "puller"),
            ),
            "v1 only",
        ),
        (request(IMAGE, serviceAccountToken="x.y.z", serviceAccountAnnotations={"k": 1}), "map of strings"),
    ],
)
def test_a_malformed_token_or_annotation_is_exit_1_with_one_line(
    aws: Recorder, settings: Settings, stdin: bytes, says: str
) -> None:
    proc = run_plugin(stdin)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("regauth-credential-provider: ") and proc.stderr.count("\n") == 1
    assert says in proc.stderr and "Traceback" not in proc.stderr and "eyJ" not in proc.stderr
    assert aws.calls == []


def test_an_sts_that_never_answers_ends_within_the_kubelets_minute(
    aws: Recorder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # boto3's own retries would wait 3 x 20 s on STS: the client's deadline (awshttp) answers first.
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    token = pod_token("team-a", "puller")
    with black_hole() as hole:
        sts = f"http://127.0.0.1:{hole.port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
        proc = run_plugin(sa_request(token, ROLE_A))  # fails the test if the kubelet's 60 s pass
        assert hole.settle() >= 1, "the exchange went to the endpoint that never answers"
    assert (proc.returncode, proc.stdout) == (1, "") and proc.stderr.count("\n") == 1
    assert f"no complete answer from {sts}/ within 20s" in proc.stderr
    assert token not in proc.stderr
    assert aws.of(ECR_TOKEN) == []


def test_a_registry_with_nothing_configured_is_an_empty_answer_with_a_token_too(settings: Settings) -> None:
    token = pod_token("team-a", "puller")
    proc = run_plugin(sa_request(token, ROLE_A, image="nothing.example.com/app"))
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout, service_account_token=token)
    assert (data["auth"], data["cacheDuration"]) == ({}, "1m0s")


@pytest.mark.parametrize(
    "credentials",
    [
        "<Credentials><SessionToken>s</SessionToken></Credentials>",
        "<Credentials><AccessKeyId>AKIAX</AccessKeyId></Credentials>",
        "",
    ],
)
def test_an_sts_answer_without_the_session_keys_is_one_line(
    aws: Recorder, settings: Settings, credentials: str
) -> None:
    aws.sts_answer = (
        200,
        (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<AssumeRoleWithWebIdentityResult>{credentials}</AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        ).encode(),
    )
    proc = run_plugin(sa_request(pod_token("team-a", "puller"), ROLE_A))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "STS AssumeRoleWithWebIdentity answered no " in proc.stderr
    assert aws.of(ECR_TOKEN) == []


def test_concurrent_pulls_of_several_service_accounts_mint_once_each_and_never_share(
    aws: Recorder, settings: Settings
) -> None:
    import concurrent.futures

    accounts = [("team-a", "puller"), ("team-b", "puller"), ("team-a", "builder")]
    jobs = [
        sa_request(pod_token(ns, name, pod=f"pod-{i}"), ROLE_A) for i in range(2) for ns, name in accounts
    ]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        procs = list(pool.map(run_plugin, jobs))
    assert [(p.returncode, p.stderr) for p in procs] == [(0, "")] * len(jobs)
    # One exchange per service account, whatever the interleaving, each with that account's own token.
    subjects = sorted(Workload(call.form["WebIdentityToken"], {}).subject() for call in aws.of(WEB_IDENTITY))
    assert subjects == sorted(f"system:serviceaccount:{ns}:{name}" for ns, name in accounts)
    # Each ECR call was signed by a different assumed session: no account's token came from another's.
    signers = [call.key_id for call in aws.of(ECR_TOKEN)]
    assert len(signers) == len(set(signers)) == len(accounts)
    assert set(signers) <= assumed_key(ROLE_A, WORKLOAD_SESSION_NAME)
    assert len(workload_tokens(settings)) == len(accounts)
