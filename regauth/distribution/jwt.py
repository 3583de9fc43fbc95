"""A JWT's claims, read without verifying its signature.

regauth reads tokens only for what their issuer says of them (an expiry, a tenant, the granted
actions, a service account's name) and never trusts them for anything: the party that receives a
token is the one that verifies it. One reading for every such use.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of the compact JWS ``token``; {} when it is none (not three parts, a payload that is
    not base64url JSON of an object)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}
