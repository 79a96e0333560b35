"""The feature server's token rule, applied to the console's pages.

When the server guards reads (`--auth-reads`), every console page needs the token too, given by
either of:

- `Authorization: Bearer <token>` on the request (curl, or a reverse proxy that adds it);
- the session cookie the login page sets (`POST /ui/login` with the token): `fsplug_console`,
  HttpOnly, SameSite=Strict, Path=/ui, Secure when the request came over HTTPS (directly or
  through a proxy's `X-Forwarded-Proto: https`). Its value is an HMAC of a fixed text keyed by the
  token, not the token: every worker (and a restarted server) accepts it, a new token voids it,
  and the cookie never reveals the token.

Comparisons are constant-time. Without `--auth-reads` the console is as open as the read endpoints.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

__all__ = ["COOKIE", "session_value", "TokenRule"]

COOKIE = "fsplug_console"
_SESSION_TEXT = b"fsplug console session v1"


def session_value(token: bytes) -> str:
    """The session cookie's value for `token` (an HMAC-SHA256, hex)."""
    return hmac.new(token, _SESSION_TEXT, hashlib.sha256).hexdigest()


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v)
    return None


def _cookies(scope: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = _header(scope, b"cookie")
    if raw is None:
        return out
    for part in raw.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(key, value)
    return out


class TokenRule:
    """Whether a console request may read, and the cookie that proves it.

    Args:
        token: the server's API token (None: no token configured).
        required: the server guards reads (`auth_reads`); the console then needs the token.
    """

    def __init__(self, token: bytes | None, required: bool):
        self.token = token
        self.required = required and token is not None
        self._session = session_value(token) if token is not None else ""

    def check_token(self, given: str) -> bool:
        """Whether `given` (typed into the login form) is the token."""
        return self.token is not None and hmac.compare_digest(given.encode(), self.token)

    def allows(self, scope: dict[str, Any]) -> bool:
        """Whether this request may read: no token needed, or a right bearer token or session cookie."""
        if not self.required:
            return True
        auth = _header(scope, b"authorization")
        if auth is not None:
            scheme, _, value = auth.partition(b" ")
            if scheme.lower() == b"bearer" and self.token is not None \
                    and hmac.compare_digest(value.strip(), self.token):
                return True
        cookie = _cookies(scope).get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie, self._session)

    def set_cookie(self, scope: dict[str, Any]) -> str:
        """The `Set-Cookie` value that logs this browser in."""
        return f"{COOKIE}={self._session}; Path=/ui; HttpOnly; SameSite=Strict{_secure(scope)}"

    @staticmethod
    def clear_cookie(scope: dict[str, Any]) -> str:
        """The `Set-Cookie` value that logs this browser out."""
        return f"{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{_secure(scope)}"


def _secure(scope: dict[str, Any]) -> str:
    proto = _header(scope, b"x-forwarded-proto")
    https = scope.get("scheme") == "https" or (proto is not None and proto.strip().lower() == b"https")
    return "; Secure" if https else ""
