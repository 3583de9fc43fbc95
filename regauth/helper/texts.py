"""Every string of the docker-credential-helpers protocol, defined once: clients match on them."""

from __future__ import annotations

PROGRAM = "docker-credential-regauth"
PACKAGE = "regauth"

ACTIONS = ("store", "get", "erase", "list", "version")
USAGE = f"Usage: {PROGRAM} <store|get|erase|list|version>"
UNKNOWN_ACTION = PROGRAM + ": unknown action: {action}"

# The Docker CLI and containers/image compare against this exact text to fall back to anonymous.
NOT_FOUND = "credentials not found in native keychain"
MISSING_SERVER_URL = "no credentials server URL"
MISSING_USERNAME = "no credentials username"

FIELD_SERVER_URL = "ServerURL"
FIELD_USERNAME = "Username"
FIELD_SECRET = "Secret"

# A credential is a few KiB at most (an identity token); anything far larger is a mistake or abuse.
MAX_INPUT_BYTES = 1024 * 1024
