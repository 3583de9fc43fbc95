"""Image references, parsed as distribution/reference does."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from regauth.errors import UsageError
from regauth.printable import quoted
from regauth.servers import DOCKER_HUB

# --- Image references -------------------------------------------------------------------------------
#
# The grammar and the normalisation of github.com/distribution/reference v0.6 (reference.go,
# normalize.go, regexp.go) with go-digest's digest validation; checked by hand rather than with ``re`` so
# importing this module stays cheap:
#
#     reference        := name [ ":" tag ] [ "@" digest ]
#     name             := [domain "/"] path
#     domain           := host [":" port]        host: domain-name | "[" IPv6 hex and ":" "]"
#     domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]     port: [0-9]+
#     path             := path-component ["/" path-component]*      at most 255 characters
#     path-component   := [a-z0-9]+ (separator [a-z0-9]+)*          separator: "." | "_" | "__" | "-"+
#     tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
#     digest           := "sha256:" 64 | "sha384:" 96 | "sha512:" 128 lower-case hex digits
#
# Deliberate differences: a first component that distribution takes for a domain but that is no valid
# host (``my_reg.local/app``) is an error here, where distribution falls back to a reference with an
# empty domain; and ``familiar()`` keeps ``docker.io/`` or ``library/`` where dropping them would make
# the string parse to another reference (``docker.io/foo.bar/app``).
#
# ``ImageReference`` is a NamedTuple, not a dataclass: this module is on the credential helper's path and
# ``dataclasses`` would import ``inspect`` (~14 ms).

DEFAULT_TAG = "latest"
PATH_MAX = 255
TAG_MAX = 128
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_LEGACY_HUB = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WORD = _ALNUM | {"_"}
_TAG_CHARS = _WORD | {".", "-"}
_PATH_SEPARATORS = frozenset("._-")
_DIGITS = frozenset("0123456789")
_LOWER_HEX = frozenset("0123456789abcdef")
_HEX = _LOWER_HEX | frozenset("ABCDEF")


class ImageReference(NamedTuple):
    """A parsed, normalised image reference; make one with ``parse_reference``.

    ``domain`` is as written (distribution does not lower-case it; use ``normalize_registry`` for the
    credential key) except that no domain and ``index.docker.io`` become ``docker.io``; ``path`` has the
    ``library/`` prefix for Docker Hub official images. ``tag`` and ``digest`` are None when absent.
    The constructor does not validate; ``parse_reference`` does.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name: ``docker.io/library/ubuntu``."""
        return f"{self.domain}/{self.path}"

    @property
    def repository(self) -> str:
        """The repository name as Docker shows it: ``ubuntu``, ``user/app``, ``ghcr.io/org/app``."""
        if self.domain != DOCKER_HUB:
            return self.name
        path = self.path
        rest = path[len(_OFFICIAL_PREFIX) :]
        if path.startswith(_OFFICIAL_PREFIX) and "/" not in rest and not _is_image_id(rest):
            return rest
        first, slash, _ = path.partition("/")
        return self.name if slash and _names_a_domain(first) else path

    def familiar(self) -> str:
        """The short form Docker shows (``ubuntu:22.04``); it parses back to this reference."""
        return self.repository + self._suffix()

    def with_default_tag(self) -> ImageReference:
        """This reference, tagged ``latest`` if it has neither a tag nor a digest (as ``docker pull``)."""
        if self.tag is None and self.digest is None:
            return self._replace(tag=DEFAULT_TAG)
        return self

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        return tag + (f"@{self.digest}" if self.digest is not None else "")


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise an image reference as ``docker pull`` does (ParseNormalizedNamed).

    ``ubuntu`` gives ``docker.io/library/ubuntu`` with no tag: call ``with_default_tag()`` for the
    ``latest`` that Docker assumes. Raises ``UsageError`` saying what is wrong and where.
    """
    if not text:
        raise _invalid(text, "it is empty")
    if _is_image_id(text):
        raise _invalid(text, "a 64-digit hex string is an image ID, not a repository name")
    domain, remainder = _split_domain(text)
    name_and_tag, at, digest = remainder.partition("@")
    path, colon, tag = name_and_tag.partition(":")
    typed_domain = text[: len(text) - len(remainder) - 1] if len(remainder) < len(text) else ""
    _check_path(text, typed_domain, path)
    if domain == DOCKER_HUB and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if len(path) > PATH_MAX:
        raise _invalid(text, f"repository path {_q(path)} is {len(path)} characters, at most {PATH_MAX}")
    if colon:
        _check_tag(text, tag)
    if at:
        _check_digest(text, digest)
    return ImageReference(domain, path, tag if colon else None, digest if at else None)


def check_repository(text: str) -> str:
    """``text`` if it is a repository path within a registry (``org/app``: the path grammar, at most
    255 characters, no domain, tag or digest), else ``UsageError`` saying what is wrong and where."""
    _check_path(text, "", text)
    if len(text) > PATH_MAX:
        raise _invalid(text, f"repository path is {len(text)} characters, at most {PATH_MAX}")
    return text


def check_tag(tag: str) -> str:
    """``tag`` if it is a tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``), else ``UsageError``."""
    _check_tag(tag, tag)
    return tag


def is_digest(text: str) -> bool:
    """Whether ``text`` is ``algorithm:hex`` with a supported algorithm and its length of lower-case hex."""
    return _passes(_check_digest, text)


def is_tag(text: str) -> bool:
    return _passes(_check_tag, text)


def is_repository(text: str) -> bool:
    return _passes(lambda _, path: check_repository(path), text)


def _passes(check: Callable[[str, str], object], text: str) -> bool:
    try:
        check(text, text)
    except UsageError:
        return False
    return True


def pull_scope(repository: str) -> str:
    """The token scope that pulls ``repository`` (distribution's resource scope grammar)."""
    return f"repository:{repository}:pull"


def _split_domain(text: str) -> tuple[str, str]:
    """Domain and the rest, by distribution's splitDockerDomain rules (the domain checked here)."""
    first, slash, rest = text.partition("/")
    if not slash:
        return DOCKER_HUB, text
    if first == _LEGACY_HUB:
        return DOCKER_HUB, rest
    if not _names_a_domain(first):
        return DOCKER_HUB, text
    problem = _domain_problem(first)
    if problem is None:
        return first, rest
    if "." in first or ":" in first or first == "localhost":
        raise _invalid(text, problem)
    # Taken for a domain only because a repository name cannot hold upper case.
    raise _invalid(text, f"{problem}, and a repository name must be lowercase")


def _names_a_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def _domain_problem(domain: str) -> str | None:
    """Why ``domain`` is not ``host[:port]`` per distribution's domain grammar, or None."""
    where = f"registry host {_q(domain)}"
    if domain.startswith("["):
        body, bracket, after = domain[1:].partition("]")
        if not bracket:
            return f'{where} has no closing "]"'
        if not body or any(c not in _HEX and c != ":" for c in body):
            return f'{where} is not an IPv6 address (hex digits and ":" between "[" and "]")'
        if after and not after.startswith(":"):
            return f"{where} has {_q(after)} after the IPv6 address"
        port = after[1:] if after else None
    else:
        host, colon, port_text = domain.partition(":")
        port = port_text if colon else None
        for label in host.split("."):
            if not label or any(c not in _ALNUM and c != "-" for c in label):
                return f'{where} has an invalid name part {_q(label)} (letters, digits and "-" only)'
            if label.startswith("-") or label.endswith("-"):
                return f'{where} has name part {_q(label)} starting or ending with "-"'
    if port is not None and (not port or any(c not in _DIGITS for c in port)):
        return f"{where} has a non-numeric port {_q(port)}"
    return None


def _check_path(text: str, typed_domain: str, path: str) -> None:
    if not path:
        after = f" after the registry {_q(typed_domain)}" if typed_domain else ""
        raise _invalid(text, f"repository name is empty{after}")
    if path.startswith("/") or path.endswith("/") or "//" in path:
        raise _invalid(text, f"repository path {_q(path)} has an empty component (leading, trailing or //)")
    for component in path.split("/"):
        problem = _component_problem(component)
        if problem:
            raise _invalid(text, f"path component {_q(component)} {problem}")


def _component_problem(component: str) -> str | None:
    """Why ``component`` is not ``[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*``, or None."""
    for char in component:
        if char not in _LOWER_ALNUM and char not in _PATH_SEPARATORS:
            if "A" <= char <= "Z":
                return "is not lowercase: a repository name must be lowercase"
            return f'contains {_q(char)} (allowed: a-z, 0-9, ".", "_", "-")'
    if component[0] in _PATH_SEPARATORS:
        return "must start with a lowercase letter or digit"
    if component[-1] in _PATH_SEPARATORS:
        return "must end with a lowercase letter or digit"
    run = ""
    for char in component + "a":
        if char in _PATH_SEPARATORS:
            run += char
            continue
        if run and run not in (".", "_", "__") and set(run) != {"-"}:
            return f'has the separator {_q(run)} (allowed: ".", "_", "__" or a run of "-")'
        run = ""
    return None


def _check_tag(text: str, tag: str) -> None:
    if not tag:
        raise _invalid(text, 'the tag after ":" is empty')
    if len(tag) > TAG_MAX:
        raise _invalid(text, f"tag {_q(tag)} is {len(tag)} characters, at most {TAG_MAX}")
    bad = next((c for c in tag if c not in _TAG_CHARS), None)
    if bad is not None:
        raise _invalid(text, f'tag {_q(tag)} contains {_q(bad)} (allowed: A-Z, a-z, 0-9, "_", ".", "-")')
    if tag[0] in ".-":
        raise _invalid(text, f'tag {_q(tag)} must start with a letter, a digit or "_"')


def _check_digest(text: str, digest: str) -> None:
    where = f"digest {_q(digest)}"
    algorithm, colon, hex_part = digest.partition(":")
    if not digest:
        raise _invalid(text, 'the digest after "@" is empty')
    if not colon:
        raise _invalid(text, f'{where} has no ":" (expected algorithm:hex, e.g. sha256:<64 hex digits>)')
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        supported = ", ".join(DIGEST_HEX_LENGTHS)
        raise _invalid(text, f"{where} has unsupported algorithm {_q(algorithm)} (supported: {supported})")
    bad = next((c for c in hex_part if c not in _HEX), None)
    if bad is not None:
        raise _invalid(text, f"{where} contains {_q(bad)}, which is not a hex digit")
    if len(hex_part) != expected:
        raise _invalid(text, f"{where} has {len(hex_part)} hex digits, {algorithm} needs {expected}")
    if any(c not in _LOWER_HEX for c in hex_part):
        raise _invalid(text, f"{where} has upper-case hex digits; they must be lowercase")


def _is_image_id(text: str) -> bool:
    return len(text) == 64 and all(c in _LOWER_HEX for c in text)


def _invalid(text: str, detail: str) -> UsageError:
    return UsageError(f"invalid reference {_q(text)}: {detail}")


def _q(value: str) -> str:
    return quoted(value)
