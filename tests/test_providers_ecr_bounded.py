"""The ecr provider's AWS calls against hostile local stand-ins: an STS that floods a body that never
ends (where the pod's token goes), and one that trickles it. botocore reads a whole answer into memory
and its read timeout bounds each socket read, not the answer: each answer must be cut at a size cap
and a deadline, with one line the kubelet logs, and nothing sent on to ECR.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import botocore.exceptions
import pytest
import trustme
from support.kubelet import request, run_plugin
from support.providers import Endless, StandIn, fake_jwt, stand_in

from regauth.config import Settings
from regauth.providers.awshttp import MAX_BODY, bounded
from regauth.providers.ecr import ROLE_ANNOTATION

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROLE = "arn:aws:iam::111122223333:role/team-a-pull"


def pod_token() -> str:
    now = int(time.time())
    return fake_jwt(
        {"iss": "https://oidc.example.test", "sub": "system:serviceaccount:team-a:puller", "exp": now + 3600}
    )


@pytest.fixture
def flood(ca: trustme.CA) -> Iterator[tuple[Endless, StandIn]]:
    body = Endless(chunk=b"<x>" * 21000)
    with stand_in(ca, {"/": lambda path, form: (200, body)}, tls=False) as site:
        yield body, site


def test_an_sts_that_floods_is_cut_at_the_cap_in_one_line(
    settings: Settings, flood: tuple[Endless, StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    body, site = flood
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", site.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", site.url + "/ecr")  # never reached: STS failed
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    token = pod_token()
    stdin = request(
        f"{HOST}/team/app", serviceAccountToken=token, serviceAccountAnnotations={ROLE_ANNOTATION: ROLE}
    )
    proc = run_plugin(stdin)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and token not in proc.stderr
    assert f"passed {MAX_BODY} bytes" in proc.stderr, proc.stderr
    assert body.gone.wait(30) and body.sent < Endless.LIMIT
    assert site.hits == {"/": 1}


def test_an_answer_that_trickles_is_cut_at_the_deadline_and_not_asked_again(ca: trustme.CA) -> None:
    trickle = Endless(chunk=b" ", pause=0.02)
    with stand_in(ca, {"/": lambda path, form: (200, trickle)}, tls=False) as site:
        client = boto3.session.Session(
            aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        ).client("sts", endpoint_url=site.url)
        with pytest.raises(
            botocore.exceptions.BotoCoreError, match=r"no complete answer from \S+ within 0.5s"
        ):
            bounded(client, seconds=0.5).get_caller_identity()
        assert trickle.gone.wait(30)
        # The deadline is the client's, across botocore's retries: the next attempt is not even sent.
        assert site.hits == {"/": 1}


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"authorizationData": None},
        {"authorizationData": [{}]},
        {"authorizationData": [{"authorizationToken": 5}]},
        {"authorizationData": [{"authorizationToken": "QVdTOnNlY3JldA==", "expiresAt": "soon"}]},
    ],
)
def test_an_ecr_answer_without_its_token_is_one_line(
    settings: Settings, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, answer: dict[str, object]
) -> None:
    with stand_in(ca, {"/": lambda path, form: (200, answer)}, tls=False) as site:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", site.url)
        proc = run_plugin(request(f"{HOST}/team/app"))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert site.hits == {"/": 1}
