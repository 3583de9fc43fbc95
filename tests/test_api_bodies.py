"""Any JSON body is read into a checked body or refused as a malformed field (422): never another
exception, which would be a 500. Bodies as schemathesis would send them, and odder ones."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from regauth.api.errors import FieldError
from regauth.api.records import read_body
from regauth.errors import UsageError
from regauth.registries import Registry, check_record

_TEXT = st.text(max_size=40) | st.sampled_from(["ghcr.io", "https://h:5000/v2/", "[::1]:5000", "a" * 300])
_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | _TEXT
    | st.dictionaries(_TEXT, _TEXT | st.integers(), max_size=3)
)
_FIELDS = st.sampled_from(
    "name url username password token provider options ca_pem insecure repository active validate x".split()
)


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(_FIELDS, _VALUES, max_size=6), st.booleans())
def test_a_body_is_read_or_refused_by_field(data: dict[str, Any], create: bool) -> None:
    try:
        body = read_body(data, create=create)
    except FieldError as exc:
        assert exc.field and "\n" not in exc.message
        return
    fields = dict(body.fields)
    record = Registry(
        id="", **{"name": fields.pop("name", "unsaved"), "registry": fields.pop("registry", "h.io"), **fields}
    )
    try:
        check_record(record)
    except UsageError:
        pass
