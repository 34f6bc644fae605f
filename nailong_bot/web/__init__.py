"""The HTTP API (`/nailong/api/`) and the web console (`/nailong/`) on the NoneBot driver's FastAPI app.

Mounted only when NAILONG_API_TOKEN is set; both need that token (the API as a Bearer header, the
console through its login form and a session cookie).
"""

from __future__ import annotations

from fastapi import FastAPI

from . import api, console
from .auth import TokenAuth


def mount(app: FastAPI, token: str) -> None:
    auth = TokenAuth(token)
    app.include_router(api.make_router(auth))
    app.include_router(console.make_router(auth))
