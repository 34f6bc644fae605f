"""The one token behind the API and the console: a Bearer header for the API; for the console a
session cookie and a form token derived from it, so the token itself never sits in the browser."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

SESSION_COOKIE = "nailong_session"
CSRF_HEADER = "X-CSRF-Token"


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TokenAuth:
    def __init__(self, token: str) -> None:
        self._token = token
        # Both change with the token: a new NAILONG_API_TOKEN logs every browser out.
        self.session = _derive(token, "nailong console session")
        self.csrf = _derive(token, "nailong console form")

    def token_matches(self, given: str | None) -> bool:
        return _same(given, self._token)

    def require_bearer(self, request: Request) -> None:
        """API dependency: 401 before anything else runs unless `Authorization: Bearer <token>`."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.token_matches(given.strip()):
            raise HTTPException(
                401,
                "需要正确的令牌：Authorization: Bearer <NAILONG_API_TOKEN> / "
                "a valid token is required: Authorization: Bearer <NAILONG_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def logged_in(self, request: Request) -> bool:
        return _same(request.cookies.get(SESSION_COOKIE), self.session)

    def csrf_matches(self, given: str | None) -> bool:
        return _same(given, self.csrf)
