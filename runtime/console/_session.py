"""Console sign-in: the bearer token in an HttpOnly cookie, re-checked on every request, and CSRF.

The cookie holds the token itself (SameSite=Strict, HttpOnly, Path=<console prefix>, Secure
over HTTPS), so revoking a token in the tokens file signs its holder out on the next request.
Every form post must carry a CSRF token derived from the session (HMAC with a per-process
key) and, when the browser sends an Origin header, come from this host.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from runtime.auth import TokenAuthority
from runtime.ports import Identity

COOKIE = "homeostat_console"


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    csrf: str

    def has_role(self, role: str) -> bool:
        return role in self.identity.roles


class Sessions:
    """Resolves the console cookie to a `Session`; issues and checks CSRF tokens."""

    def __init__(self, auth: TokenAuthority, *, path: str, key: bytes | None = None) -> None:
        self._auth = auth
        self._key = key or secrets.token_bytes(32)
        self.path = path

    def csrf_for(self, token: str) -> str:
        material = b"csrf:" + hashlib.sha256(token.encode("utf-8")).digest()
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()

    def resolve(self, token: str) -> Identity | None:
        return self._auth.resolve(token)

    def current(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        identity = self._auth.resolve(token)
        if identity is None:
            return None
        return Session(identity, self.csrf_for(token))

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf, presented)

    @staticmethod
    def same_origin(request: Request) -> bool:
        """False when the browser says the form came from another site (Origin header)."""
        origin = request.headers.get("origin")
        if origin is None:
            return True  # non-browser clients; the CSRF token still has to match
        if origin == "null":
            return False
        return urlsplit(origin).netloc == request.headers.get("host", "")

    def cookie_args(self, request: Request) -> dict[str, object]:
        return {
            "key": COOKIE,
            "path": self.path,
            "httponly": True,
            "samesite": "strict",
            "secure": request.url.scheme == "https",
        }
