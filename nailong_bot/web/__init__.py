"""The HTTP API (`/nailong/api/`) and the web console (`/nailong/`) on the NoneBot driver's FastAPI app.

The API is mounted when NAILONG_API_TOKEN is set (a Bearer header), the console (with its review page) when
NAILONG_ADMIN_TOKEN is set (its sign-in form, then a session cookie); see auth.py.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import api, console, review
from .auth import TokenAuth


def mount(
    app: FastAPI,
    api_token: str | None = None,
    admin_token: str | None = None,
    *,
    session_hours: float = 12.0,
    secure_cookie: bool = False,
    trusts_proxies: bool = False,
) -> None:
    """Add the routes whose token is given; they share one auth state (sessions, throttles).
    ``trusts_proxies``: whether the server believes some proxies' X-Forwarded-For (FORWARDED_ALLOW_IPS)."""
    auth = TokenAuth(
        api_token, admin_token, session_hours=session_hours, secure_cookie=secure_cookie, trusts_proxies=trusts_proxies
    )
    if api_token is not None:
        app.include_router(api.make_router(auth))
    if admin_token is not None:
        app.include_router(console.make_router(auth))
        app.include_router(review.make_router(auth))
