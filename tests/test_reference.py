"""Image-reference parsing (against distribution/reference v0.6's grammar) and host normalisation."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regauth.errors import RegauthError, UsageError
from regauth.reference import ImageReference, parse_reference
from regauth.servers import DOCKER_HUB, normalize_registry

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8
SHA384 = "sha384:" + "0123456789abcdef" * 6


# --- An oracle: distribution/reference's regexp.go + normalize.go + go-digest, transcribed ---------------
# Go's regexp picks the submatch a backtracking engine would, so Python's re (ASCII, fullmatch) agrees.

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REMOTE = _COMPONENT + r"(?:/" + _COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = r"(?:" + _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(
    r"((?:" + _DOMAIN + r"/)?" + _REMOTE + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
_NAME_RE = re.compile(r"(?:(" + _DOMAIN + r")/)?(" + _REMOTE + r")", re.ASCII)
_GO_DIGEST = {"sha256": 64, "sha384": 96, "sha512": 128}

Parts = tuple[str, str, str | None, str | None]


def _oracle_split_domain(name: str) -> tuple[str, str]:
    maybe_domain, slash, rest = name.partition("/")
    if not slash:
        return "docker.io", "library/" + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, rest
    elif maybe_domain == "index.docker.io":
        domain, remote = "docker.io", rest
    elif any(c in maybe_domain for c in ".:") or maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, rest
    else:
        domain, remote = "docker.io", name
    if domain == "docker.io" and "/" not in remote:
        remote = "library/" + remote
    return domain, remote


def oracle(text: str) -> Parts | None:
    """ParseNormalizedNamed(text) as (domain, path, tag, digest), or None where it returns an error."""
    if re.fullmatch(r"[a-f0-9]{64}", text):
        return None
    domain, remainder = _oracle_split_domain(text)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        return None
    match = _REFERENCE_RE.fullmatch(domain + "/" + remainder)
    if match is None:
        return None
    name = _NAME_RE.fullmatch(match[1])
    assert name is not None
    path = name[2]
    if len(path) > 255:
        return None
    digest = match[3]
    if digest is not None:
        algorithm, _, hex_part = digest.partition(":")
        size = _GO_DIGEST.get(algorithm)
        if size is None or not re.fullmatch(f"[a-f0-9]{{{size}}}", hex_part):
            return None
    return (name[1] or "", path, match[2], digest)


def parts(ref: ImageReference) -> Parts:
    return (ref.domain, ref.path, ref.tag, ref.digest)


# --- The table -------------------------------------------------------------------------------------

VALID: list[tuple[str, Parts]] = [
    ("ubuntu", ("docker.io", "library/ubuntu", None, None)),
    ("library/ubuntu", ("docker.io", "library/ubuntu", None, None)),
    ("docker.io/ubuntu", ("docker.io", "library/ubuntu", None, None)),
    ("index.docker.io/ubuntu", ("docker.io", "library/ubuntu", None, None)),
    ("index.docker.io/user/app:v1", ("docker.io", "user/app", "v1", None)),
    ("docker.io/username/myapp:1.0", ("docker.io", "username/myapp", "1.0", None)),
    ("user/app", ("docker.io", "user/app", None, None)),
    ("ubuntu:22.04", ("docker.io", "library/ubuntu", "22.04", None)),
    ("ubuntu:Latest_V-1.x", ("docker.io", "library/ubuntu", "Latest_V-1.x", None)),
    ("ubuntu:_", ("docker.io", "library/ubuntu", "_", None)),
    ("ubuntu@" + SHA256, ("docker.io", "library/ubuntu", None, SHA256)),
    ("ubuntu@" + SHA384, ("docker.io", "library/ubuntu", None, SHA384)),
    ("ubuntu@" + SHA512, ("docker.io", "library/ubuntu", None, SHA512)),
    ("localhost/a", ("localhost", "a", None, None)),
    ("localhost:5000/a/b@" + SHA256, ("localhost:5000", "a/b", None, SHA256)),
    ("[::1]:5000/a/b", ("[::1]:5000", "a/b", None, None)),
    ("[::1]/a", ("[::1]", "a", None, None)),
    ("[2001:DB8::1]:443/a:t", ("[2001:DB8::1]:443", "a", "t", None)),
    ("ghcr.io/org/app:1.2.3@" + SHA256, ("ghcr.io", "org/app", "1.2.3", SHA256)),
    ("127.0.0.1:5000/a", ("127.0.0.1:5000", "a", None, None)),
    ("example:5000/a", ("example:5000", "a", None, None)),
    ("my-registry.local:99999/a", ("my-registry.local:99999", "a", None, None)),  # no range check
    ("Example.COM/app", ("Example.COM", "app", None, None)),  # domain case is kept
    ("Foo/bar", ("Foo", "bar", None, None)),  # v0.5+: an upper-case first component is a domain
    ("registry-1.docker.io/ubuntu", ("registry-1.docker.io", "ubuntu", None, None)),  # not an alias here
    ("docker.io:443/ubuntu", ("docker.io:443", "ubuntu", None, None)),
    ("a__b", ("docker.io", "library/a__b", None, None)),
    ("a---b", ("docker.io", "library/a---b", None, None)),
    ("a.b", ("docker.io", "library/a.b", None, None)),
    ("a_b", ("docker.io", "library/a_b", None, None)),
    ("ab_c__d-e--f/g.0", ("docker.io", "ab_c__d-e--f/g.0", None, None)),
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None)),  # no "/": a tag, not a port
    ("example.com", ("docker.io", "library/example.com", None, None)),
    ("0" * 64 + ":tag", ("docker.io", "library/" + "0" * 64, "tag", None)),
    ("example.com/" + "a" * 255, ("example.com", "a" * 255, None, None)),
    ("x" * 247, ("docker.io", "library/" + "x" * 247, None, None)),  # 255 with "library/"
    ("h" * 200 + ".io/" + "a" * 255, ("h" * 200 + ".io", "a" * 255, None, None)),  # domain not counted
    ("a:" + "t" * 128, ("docker.io", "library/a", "t" * 128, None)),
]

INVALID: list[tuple[str, str]] = [
    ("", "is empty"),
    ("ubuntu/Foo", "must be lowercase"),
    ("Ubuntu", "must be lowercase"),
    ("foo/Bar:tag", 'path component "Bar" is not lowercase'),
    ("Foo_bar/x", "a repository name must be lowercase"),
    ("example.com/" + "a" * 256, "is 256 characters, at most 255"),
    ("x" * 248, "is 256 characters, at most 255"),
    ("a:" + "t" * 129, "is 129 characters, at most 128"),
    ("a:" + "x" * 200, "is 200 characters, at most 128"),
    ("a@sha256:abc", 'digest "sha256:abc" has 3 hex digits, sha256 needs 64'),
    ("a@sha256:" + "a" * 63, "has 63 hex digits, sha256 needs 64"),
    ("a@sha256:" + "a" * 65, "has 65 hex digits, sha256 needs 64"),
    ("a@sha512:" + "a" * 64, "has 64 hex digits, sha512 needs 128"),
    ("a@sha256:" + "A" * 64, "upper-case hex digits"),
    ("a@sha256:" + "g" * 64, '"g", which is not a hex digit'),
    ("a@SHA256:" + "a" * 64, 'unsupported algorithm "SHA256"'),
    ("a@md5:" + "a" * 32, 'unsupported algorithm "md5"'),
    ("a@sha256+b64:" + "a" * 64, 'unsupported algorithm "sha256+b64"'),
    ("a@blake3:" + "a" * 64, 'unsupported algorithm "blake3"'),
    ("a@" + "a" * 64, 'has no ":"'),
    ("a@", 'digest after "@" is empty'),
    ("a:", 'tag after ":" is empty'),
    ("a:.x", "must start with a letter, a digit or"),
    ("a:-x", "must start with a letter, a digit or"),
    ("a:x/y", 'registry host "a:x" has a non-numeric port "x"'),
    ("a:x+y", 'contains "+"'),
    ("a:t@" + SHA256 + "@" + SHA256, "which is not a hex digit"),
    ("a..b", 'has the separator ".."'),
    ("a___b", 'has the separator "___"'),
    ("a._b", 'has the separator "._"'),
    ("a-_b", 'has the separator "-_"'),
    ("-a", 'path component "-a" must start with a lowercase letter or digit'),
    ("a-", "must end with a lowercase letter or digit"),
    ("_a", "must start with"),
    ("a/", "has an empty component"),
    ("/a", "has an empty component"),
    ("a//b", "has an empty component"),
    ("ghcr.io/", 'repository name is empty after the registry "ghcr.io"'),
    (":tag", "repository name is empty"),
    ("@" + SHA256, "repository name is empty"),
    ("0123456789abcdef" * 4, "image ID"),
    ("a b", 'contains " "'),
    (" ubuntu", 'contains " "'),
    ("ubuntu\n", 'contains "\\x0a"'),
    ("caf\u00e9", 'contains "\\xe9"'),
    ("a$b", 'contains "$"'),
    ("my_reg.local/app", 'registry host "my_reg.local" has an invalid name part "my_reg"'),
    ("-bad.io/a", 'name part "-bad" starting or ending with "-"'),
    ("bad..io/a", 'invalid name part ""'),
    ("host:/a", 'non-numeric port ""'),
    ("host:5000:1/a", 'non-numeric port "5000:1"'),
    ("host:\u0665/a", "non-numeric port"),
    ("[::1/a", 'has no closing "]"'),
    ("[]/a", 'path component "[]" contains "["'),  # no "." or ":": not a domain
    ("[]:5000/a", "is not an IPv6 address"),
    ("[::g]/a", "is not an IPv6 address"),
    ("[::1]x/a", 'has "x" after the IPv6 address'),
    ("[::1]:/a", 'non-numeric port ""'),
    ("::1/a", 'invalid name part ""'),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t[:40] for t, _ in VALID])
def test_valid_references(text: str, expected: Parts) -> None:
    ref = parse_reference(text)
    assert parts(ref) == expected
    assert oracle(text) == expected


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[t[:40] for t, _ in INVALID])
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_reference(text)
    assert message in str(info.value)
    assert str(info.value).startswith("invalid reference ")
    assert "\n" not in str(info.value)
    expected = oracle(text)
    assert expected is None or expected[0] == ""  # distribution rejects it too, or see below


def test_domain_less_fallback_is_an_error_here() -> None:
    # distribution falls back to no domain at all when the "domain" is not a valid host but the whole
    # name is a valid path; such a reference has no registry, so regauth rejects it.
    assert oracle("my_reg.local/app") == ("", "my_reg.local/app", None, None)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(UsageError) as info:
        parse_reference("a:" + "x" * 200)
    assert len(str(info.value)) < 200
    assert "is 200 characters, at most 128" in str(info.value)


def test_error_is_a_regauth_usage_error() -> None:
    with pytest.raises(RegauthError):
        parse_reference("Ubuntu")


# --- Forms, default tag, immutability --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "full", "familiar", "repository"),
    [
        ("ubuntu", "docker.io/library/ubuntu", "ubuntu", "ubuntu"),
        ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04", "ubuntu"),
        ("docker.io/user/app@" + SHA256, "docker.io/user/app@" + SHA256, "user/app@" + SHA256, "user/app"),
        ("library/a/b", "docker.io/library/a/b", "library/a/b", "library/a/b"),
        (
            "ghcr.io/org/app:1@" + SHA256,
            "ghcr.io/org/app:1@" + SHA256,
            "ghcr.io/org/app:1@" + SHA256,
            "ghcr.io/org/app",
        ),
        ("[::1]:5000/a", "[::1]:5000/a", "[::1]:5000/a", "[::1]:5000/a"),
        # Dropping "docker.io/" would make "foo.bar" a registry: keep it.
        ("docker.io/foo.bar/app", "docker.io/foo.bar/app", "docker.io/foo.bar/app", "docker.io/foo.bar/app"),
        (
            "docker.io/localhost/app",
            "docker.io/localhost/app",
            "docker.io/localhost/app",
            "docker.io/localhost/app",
        ),
        # Dropping "library/" would leave an image ID.
        (
            "library/" + "a" * 64,
            "docker.io/library/" + "a" * 64,
            "library/" + "a" * 64,
            "library/" + "a" * 64,
        ),
    ],
)
def test_string_forms(text: str, full: str, familiar: str, repository: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.repository == repository
    assert parse_reference(familiar) == ref


def test_name_is_domain_and_path() -> None:
    assert parse_reference("localhost:5000/a/b:t").name == "localhost:5000/a/b"
    assert parse_reference("ubuntu").name == "docker.io/library/ubuntu"


def test_default_tag_only_without_tag_or_digest() -> None:
    assert parse_reference("ubuntu").with_default_tag().tag == "latest"
    assert str(parse_reference("ubuntu").with_default_tag()) == "docker.io/library/ubuntu:latest"
    assert parse_reference("ubuntu:22.04").with_default_tag().tag == "22.04"
    digested = parse_reference("ubuntu@" + SHA256)
    assert digested.with_default_tag() == digested
    assert digested.with_default_tag().tag is None


def test_reference_is_a_frozen_hashable_value() -> None:
    ref = parse_reference("ubuntu")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
    assert ref == ImageReference("docker.io", "library/ubuntu")
    assert len({ref, parse_reference("docker.io/library/ubuntu")}) == 1


# --- Properties ------------------------------------------------------------------------------------

_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=5)
_separator = st.sampled_from([".", "_", "__", "-", "--", "---"])
_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=3),
)
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(min_value=0, max_value=99999).map(lambda p: f":{p}")
_host = st.one_of(
    st.lists(_label, min_size=2, max_size=3).map(".".join),
    st.just("localhost"),
    st.just("index.docker.io"),
    st.just("docker.io"),
    st.from_regex(r"\[[0-9a-fA-F:]{1,12}\]", fullmatch=True),
    _label.filter(lambda s: s.lower() != s),  # upper-case: a domain
)
_domain = st.one_of(_host, st.tuples(_host, _port).map("".join), _label.map(lambda h: f"{h}:5000"))
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.one_of(
    st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True),
    st.from_regex(r"sha512:[a-f0-9]{128}", fullmatch=True),
)
_references = st.builds(
    lambda domain, path, tag, digest: (
        (f"{domain}/" if domain else "")
        + path
        + (f":{tag}" if tag else "")
        + (f"@{digest}" if digest else "")
    ),
    st.one_of(st.none(), _domain),
    _path,
    st.one_of(st.none(), _tag),
    st.one_of(st.none(), _digest),
)


@given(_references)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_grammar_references_round_trip(text: str) -> None:
    expected = oracle(text)
    if expected is None or expected[0] == "":  # a 64-hex name, or "a.b_c/d" (see above)
        with pytest.raises(UsageError):
            parse_reference(text)
        return
    ref = parse_reference(text)
    assert parts(ref) == expected
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert str(ref).startswith(ref.name)


@given(st.text(alphabet="aAz09._-/:@[]+ ", max_size=24))
def test_agrees_with_distribution_on_near_miss_text(text: str) -> None:
    expected = oracle(text)
    if expected is None or expected[0] == "":
        with pytest.raises(UsageError):
            parse_reference(text)
    else:
        assert parts(parse_reference(text)) == expected


@given(st.text(max_size=80))
def test_arbitrary_text_only_raises_usage_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert parse_reference(str(ref)) == ref


# --- normalize_registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "registry.hub.docker.com",
        "https://registry-1.docker.io/v2/",
        "INDEX.DOCKER.IO",
        "docker.io:443",
        "user@docker.io",
    ],
)
def test_docker_hub_aliases(server: str) -> None:
    assert normalize_registry(server) == DOCKER_HUB


@pytest.mark.parametrize(
    "server",
    [
        "host.example",
        "host.example:443",
        "https://host.example:443",
        "http://host.example",
        "https://host.example",
        "https://host.example/",
        "https://host.example/v2/?x=1#f",
        "HOST.Example",
        "  https://HOST.example/  ",
        "https://user:pw@host.example/",
        "http://host.example:80",
    ],
)
def test_same_host_spellings_are_equal(server: str) -> None:
    assert normalize_registry(server) == "host.example"


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("localhost:5000", "localhost:5000"),
        ("https://localhost:5000/v2/", "localhost:5000"),
        ("http://host:443", "host:443"),
        ("host:80", "host:80"),
        ("[::1]:5000", "[::1]:5000"),
        ("https://[::1]:5000/", "[::1]:5000"),
        ("[::1]", "[::1]"),
        ("[::1]:443", "[::1]"),
        ("[FE80::1]", "[fe80::1]"),
        ("docker.io:5000", "docker.io:5000"),
    ],
)
def test_ports_and_ipv6(server: str, expected: str) -> None:
    assert normalize_registry(server) == expected


@pytest.mark.parametrize(
    "server",
    [
        "",
        "https://",
        "host:",
        "host:0",
        "host:65536",
        "host:http",
        "host:-1",
        "ftp://host",
        "[::1",
        "[]",
        "[::1]x",
        "[zz]",
        "ho st",
        "-host",
        "host-",
        "a..b",
        "host:\u00b2",
        "host:\uff15",
        "[::1]:abc",
        "[::1]:",
        "[::1]:70000",
        "::1",
    ],
)
def test_bad_servers_raise_usage_error(server: str) -> None:
    with pytest.raises(UsageError):
        normalize_registry(server)


@given(st.text(max_size=40))
def test_normalize_registry_raises_only_usage_error(server: str) -> None:
    try:
        host = normalize_registry(server)
    except UsageError:
        return
    assert host and host.isascii() and host == host.lower()


def test_a_huge_server_address_makes_a_short_error() -> None:
    # A megabyte on the helper's stdin must not come back as a megabyte (twice) on its error line.
    with pytest.raises(UsageError) as info:
        normalize_registry("\x00" * 1_000_000)
    message = str(info.value)
    assert len(message) < 300 and message.isascii() and message.isprintable()
