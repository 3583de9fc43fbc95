"""The kubelet's image matching (pkg/credentialprovider URLsMatch), as a table of the reference's rules.

Each row is (pattern, image, whether the kubelet matches them): labels matched one by one with Go's
filepath.Match, ports equal, paths as raw prefixes, and what Go's url.Parse does to odd patterns.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regauth.kube.answer import auth_key
from regauth.kube.matching import label_match, urls_match

TABLE = [
    # one glob per label, anywhere in the host, whole or partial
    ("*.kubernetes.io", "prefix.kubernetes.io", True),
    ("prefix.*.io", "prefix.kubernetes.io", True),
    ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
    ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
    ("*.azurecr.io", "myregistry.azurecr.io/app", True),
    ("*-docker.pkg.dev", "europe-west1-docker.pkg.dev/p/r/app", True),
    ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", True),
    # a glob is one label: never zero labels, never two
    ("*.kubernetes.io", "kubernetes.io", False),
    ("*.io", "prefix.kubernetes.io", False),
    ("*.azurecr.io", "myregistry.westeurope.azurecr.io/app", False),
    ("*-good.kubernetes.io", "prefix-bad.kubernetes.io", False),
    ("*.kubernetes.io", "prefix.kubernetes.ioo", False),
    # paths: a raw prefix of the image's path, no glob
    ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
    ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
    ("registry.io/org", "registry.io/organisation/app", True),
    ("registry.io/org/", "registry.io/organisation/app", False),
    ("registry.io/org", "registry.io/other/app", False),
    ("registry.io/*", "registry.io/org/app", False),
    ("registry.io/org/app", "registry.io/org", False),
    ("registry.io", "registry.io/any/depth/app", True),
    # ports: equal or both absent
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
    ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1112/blah", False),
    ("registry.io:5000", "registry.io/app", False),
    ("registry.io", "registry.io:5000/app", False),
    ("registry.io:443", "registry.io/app", False),
    ("127.0.0.1:5000", "127.0.0.1:5000/test/app", True),
    ("[::1]:5000", "[::1]:5000/app", True),
    ("localhost:5000", "localhost:5000/app", True),
    ("localhost", "localhost/app", True),
    # case matters: filepath.Match compares bytes
    ("Registry.io", "registry.io/app", False),
    # Go's filepath.Match: ?, classes, escapes; a malformed glob matches nothing
    ("reg[a-z]stry.io", "registry.io/app", True),
    # Go negates a class with "^", and "!" is a member (fnmatch differs); "^" and "\\" are no host
    # characters for url.Parse, so such a pattern matches nothing
    ("reg[!a-z]stry.io", "registry.io/app", True),
    ("reg[^a]stry.io", "registry.io/app", False),
    ("reg\\istry.io", "registry.io/app", False),
    ("reg[]stry.io", "registry.io/app", False),
    ("reg[z-a]stry.io", "registry.io/app", False),
    # Go's url.Parse: "?" starts the query and "#" the fragment, a scheme becomes part of the host
    ("registr?.io", "registry.io/app", False),
    ("registry.io#x", "registry.io/app", True),
    ("https://registry.io", "registry.io/app", False),
    ("registry.io:port", "registry.io/app", False),
    ("reg istry.io", "reg istry.io/app", False),
]


@pytest.mark.parametrize(("pattern", "image", "expected"), TABLE)
def test_urls_match_as_the_kubelet(pattern: str, image: str, expected: bool) -> None:
    assert urls_match(pattern, image) is expected


@pytest.mark.parametrize(
    ("glob", "label", "expected"),
    [
        ("*", "", True),
        ("a*b", "axxb", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("[^a]x", "bx", True),
        ("[^a]x", "ax", False),
        ("[a-c]", "b", True),
        ("[-a]", "a", False),
        ("a\\*", "a*", True),
        ("a\\", "a", False),
        ("[a", "a", False),
    ],
)
def test_label_match_is_go_filepath_match(glob: str, label: str, expected: bool) -> None:
    assert label_match(glob, label) is expected


@pytest.mark.parametrize(
    ("image", "key"),
    [
        ("registry.example.com/org/app", "registry.example.com"),
        ("127.0.0.1:5000/test/app", "127.0.0.1:5000"),
        ("docker.io/library/nginx", "docker.io"),
        ("index.docker.io/library/nginx", "index.docker.io"),
        ("localhost/app", "localhost"),
        ("[::1]:5000/app", "[::1]:5000"),
        # no registry named: the keyring's Docker Hub fallback key
        ("library/nginx", "index.docker.io"),
    ],
)
def test_the_auth_key_is_the_registry_as_the_image_spells_it(image: str, key: str) -> None:
    assert auth_key(image) == key
    if "/" in image and key != "index.docker.io" or image.startswith("index.docker.io/"):
        assert urls_match(key, image)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_component = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)?", fullmatch=True)


@given(
    labels=st.lists(_label, min_size=2, max_size=4),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.lists(_component, min_size=1, max_size=3),
)
def test_the_auth_key_always_covers_the_image_and_its_registrys_others(
    labels: list[str], port: int | None, path: list[str]
) -> None:
    host = ".".join(labels) + (f":{port}" if port else "")
    image = f"{host}/{'/'.join(path)}"
    key = auth_key(image)
    assert key == host
    assert urls_match(key, image) and urls_match(key, f"{host}/other/app")
    # A key never reaches past its registry: another port or one more label is another registry.
    assert not urls_match(key, f"{host}0/app" if port else f"{host}:1/app")
    assert not urls_match(key, f"x.{host}/app")
