"""Every route of the API and the console, read from the app (so a route added later is driven too),
with malformed paths, query strings, headers and bodies, signed in and not: never a 5xx, and malformed
bodies and paths never succeed."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from nailong_bot.web import mount

from nailong_testkit import bomb_png, truncated_jpeg

API_TOKEN = "bad-input-api-token-0123456789"
ADMIN_TOKEN = "bad-input-admin-token-9876543210"
DEEP = 30_000

BAD_PATH_VALUES = [
    "..", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%00", "x" * 5000, "--1", "-1", "%ff%fe", "%F0%9F%98%80", "0" * 64,
]  # fmt: skip
BAD_QUERIES = [
    "notice=%ff%fe", "a=" + "x" * 10_000, "%00=%00", "notice=" + "[" * 20_000, "=&&&==", "notice=gone&notice=failed",
]  # fmt: skip


def bad_bodies(csrf: str) -> list[tuple[str, dict[str, str | bytes], bytes]]:
    """(name, headers, body): each wrong in its own way."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    as_json = {"Content-Type": "application/json"}
    correct = f"csrf={csrf}&label=other&sha256={'0' * 64}&message_id="
    return [
        ("json-nested-deep", as_json, b"[" * DEEP + b"]" * DEEP),
        ("json-url-nested-deep", as_json, b'{"url": ' + b"[" * DEEP),
        ("json-not-utf8", as_json, b"\xff\xfe\x00{"),
        ("json-url-not-a-string", as_json, b'{"url": 5}'),
        ("json-url-unparsable", as_json, b'{"url": "http://[::1/a.jpg"}'),
        ("json-url-nul", as_json, b'{"url": "http://\\u0000/a.jpg"}'),
        ("json-url-label-too-long", as_json, b'{"url": "http://' + b"a" * 300 + b'.invalid/a.jpg"}'),
        ("json-url-private", as_json, b'{"url": "http://10.0.0.1/a.jpg"}'),
        ("json-too-large", as_json, b'{"url": "' + b"a" * 200_000 + b'"}'),
        ("multipart-without-boundary", {"Content-Type": "multipart/form-data"}, b"--x\r\n\r\n"),
        ("multipart-garbage", {"Content-Type": "multipart/form-data; boundary=x"}, b"\x00\xff" * 1000),
        ("multipart-no-file", {"Content-Type": "multipart/form-data; boundary=x"},
         b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n'),
        ("form-not-utf8", form, b"csrf=\xff\xfe&label=\xff"),
        ("form-message-id-double-minus", form, (correct + "--1").encode()),
        ("form-message-id-long", form, (correct + "9" * 3900).encode()),
        ("form-message-id-huge", form, (correct + "9" * 40).encode()),
        ("form-message-id-float", form, (correct + "1e5").encode()),
        ("form-many-fields", form, b"a=1&" * 500),
        ("form-too-large", form, b"token=" + b"x" * 10_000),
        ("image-empty", {"Content-Type": "image/jpeg"}, b""),
        ("image-html", {"Content-Type": "image/jpeg"}, b"<!doctype html><p>403</p>"),
        ("image-truncated", {"Content-Type": "image/jpeg"}, truncated_jpeg()),
        ("image-bomb", {"Content-Type": "image/png"}, bomb_png()),
        ("content-length-superscript", {"Content-Length": "²".encode("latin-1")}, b"x"),
        ("content-length-huge", {"Content-Length": "9" * 30}, b"x"),
    ]  # fmt: skip


BAD_HEADERS: list[tuple[str, dict[str, str | bytes]]] = [
    ("authorization-not-latin", {"Authorization": b"Bearer \xff\xfe"}),
    ("authorization-long", {"Authorization": "Bearer " + "x" * 10_000}),
    ("authorization-scheme-only", {"Authorization": "Bearer"}),
    ("cookie-garbage", {"Cookie": "=;;;==; nailong_session=" + "x" * 5000}),
    ("csrf-not-latin", {"X-CSRF-Token": b"\xff\xfe"}),
    ("content-type-garbage", {"Content-Type": ";;;/=="}),
    ("forwarded-garbage", {"X-Forwarded-Proto": "\x7f", "X-Forwarded-For": "::::, 999.1.1.1"}),
]


def nailong_routes(app: FastAPI) -> list[tuple[str, list[str]]]:
    """(path, methods) of the plugin's routes, as the app lists them (a mount: any path under it)."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.165 includes routers lazily
    except ImportError:
        routes = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    found = []
    for route in routes:
        if route.path and route.path.startswith("/nailong"):
            methods = getattr(route, "methods", None)
            found.append((route.path, sorted(methods)) if methods else (route.path + "/{rest}", ["GET"]))
    return found


def filled(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


@pytest.fixture
async def web_app(guard) -> FastAPI:
    app = FastAPI()
    mount(app, API_TOKEN, ADMIN_TOKEN)
    return app


async def sign_in(client: httpx.AsyncClient) -> str:
    """Sign the client into the console; the page's CSRF token."""
    answer = await client.post("/nailong/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303
    page = await client.get("/nailong/")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


async def test_no_route_answers_bad_input_with_a_5xx(web_app) -> None:
    routes = nailong_routes(web_app)
    assert {"/nailong/api/classify", "/nailong/api/status", "/nailong/correct"} <= {path for path, _ in routes}
    failures: list[str] = []

    async def drive(client, who: str, case: str, method: str, path: str, *, must_fail: bool, **request) -> None:
        answer = await client.request(method, path, **request)
        if answer.status_code >= 500 or (must_fail and answer.status_code < 300):
            failures.append(f"{who} {method} {path[:80]} {case}: {answer.status_code} {answer.text[:200]}")

    # Signed in first (this reaches the parsing behind the checks), then anonymous. Each route gets a
    # client of its own, from an address of its own: wrong tokens sent to one route (its bad headers,
    # the sign-in form's bad bodies) get that client throttled, which must not hide the next route.
    for n, (who, (path, methods)) in enumerate((who, route) for who in ("signed-in", "anonymous") for route in routes):
        transport = httpx.ASGITransport(app=web_app, raise_app_exceptions=False, client=(f"10.0.{n}.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot", timeout=30) as client:
            csrf = await sign_in(client) if who == "signed-in" else "0" * 64
            credentials = {"Authorization": f"Bearer {API_TOKEN}", "X-CSRF-Token": csrf} if who == "signed-in" else {}
            sample = filled(path, "0" * 64)
            for value in BAD_PATH_VALUES if "{" in path else []:
                for method in methods:
                    await drive(client, who, f"path={value[:20]}", method, filled(path, value),
                                must_fail=True, headers=credentials)  # fmt: skip
            for method in methods:
                for query in BAD_QUERIES:
                    await drive(client, who, f"query={query[:20]}", method, f"{sample}?{query}",
                                must_fail=False, headers=credentials)  # fmt: skip
                for case, headers in BAD_HEADERS:
                    await drive(client, who, case, method, sample, must_fail=False, headers={**credentials, **headers})
                for case, headers, body in bad_bodies(csrf) if method != "GET" else []:
                    await drive(client, who, case, method, sample, must_fail=True,
                                headers={**credentials, **headers}, content=body)  # fmt: skip
            for method in {"PUT", "DELETE", "PATCH"} - set(methods):
                await drive(client, who, "wrong-method", method, sample, must_fail=True, headers=credentials)
    assert not failures, "\n".join(failures)
