"""Who may use the web routes (issues 14, 21): console sessions that end, CSRF on sign-out, wrong tokens
throttled per client and per token, two tokens with two scopes, weak tokens refused without being printed, and the
Secure cookie over HTTPS. The same through the real server: tests/e2e/test_web_process.py."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from nailong_bot.config import Config
from nailong_bot.web import mount
from nailong_bot.web.auth import CSRF_HEADER, SESSION_COOKIE, Sessions, Throttle

from nailong_testkit import YELLOW, still

API_TOKEN = "auth-api-token-0123456789"
ADMIN_TOKEN = "auth-admin-token-9876543210"
WRONG = "wrong-token-abcdefghijk"


def web_app(**settings: object) -> FastAPI:
    app = FastAPI()
    mount(app, API_TOKEN, ADMIN_TOKEN, **settings)
    return app


def client_for(app, address: str = "127.0.0.1", base_url: str = "http://bot") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
def app(guard) -> FastAPI:
    return web_app()


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    return await client.post("/nailong/login", data={"token": token})


async def form_token(client: httpx.AsyncClient) -> str:
    page = (await client.get("/nailong/")).text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


async def test_the_old_cookie_after_sign_out_is_refused(app) -> None:
    async with client_for(app) as browser, client_for(app) as thief:
        await sign_in(browser)
        cookie = browser.cookies[SESSION_COOKIE]
        csrf = await form_token(browser)
        thief.cookies.set(SESSION_COOKIE, cookie)
        assert (await thief.get("/nailong/")).status_code == 200  # the cookie is the session
        signed_out = await browser.post("/nailong/logout", data={"csrf": csrf})
        assert signed_out.status_code == 303 and SESSION_COOKIE not in browser.cookies
        page = await thief.get("/nailong/")
        assert page.status_code == 303 and page.headers["Location"] == "/nailong/login"
        assert (await thief.post("/nailong/correct", data={"csrf": csrf})).status_code == 401
        assert (await thief.post("/nailong/try", content=still(YELLOW), headers={CSRF_HEADER: csrf})).status_code == 401


async def test_sign_out_needs_the_form_token(app) -> None:
    async with client_for(app) as browser:
        await sign_in(browser)
        csrf = await form_token(browser)
        assert (await browser.post("/nailong/logout")).status_code == 403
        assert (await browser.post("/nailong/logout", data={"csrf": "forged"})).status_code == 403
        assert (await browser.get("/nailong/")).status_code == 200  # still signed in
        assert (await browser.post("/nailong/logout", data={"csrf": csrf})).status_code == 303
        assert (await browser.get("/nailong/")).status_code == 303


async def test_every_sign_in_gets_its_own_random_session_and_form_token(app) -> None:
    async with client_for(app) as first, client_for(app) as second:
        await sign_in(first)
        await sign_in(second)
        cookies = first.cookies[SESSION_COOKIE], second.cookies[SESSION_COOKIE]
        tokens = await form_token(first), await form_token(second)
        assert cookies[0] != cookies[1] and tokens[0] != tokens[1]
        for value in (*cookies, *tokens):
            assert len(value) >= 40 and ADMIN_TOKEN not in value and API_TOKEN not in value
        # One session's form token is no good in another.
        assert (await second.post("/nailong/logout", data={"csrf": tokens[0]})).status_code == 403


async def test_the_session_cookie_flags_and_lifetime(guard) -> None:
    async with client_for(web_app(session_hours=2)) as browser:
        cookie = (await sign_in(browser)).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/nailong" in cookie
    assert "Max-Age=7200" in cookie and "Secure" not in cookie


@pytest.mark.parametrize(
    ("base_url", "settings"),
    [("https://bot", {}), ("http://bot", {"secure_cookie": True})],
    ids=["https", "setting"],
)
async def test_the_cookie_is_secure_over_https_or_when_set(guard, base_url: str, settings: dict) -> None:
    async with client_for(web_app(**settings), base_url=base_url) as browser:
        answer = await sign_in(browser)
    assert answer.status_code == 303 and "Secure" in answer.headers["Set-Cookie"]


async def test_behind_a_trusted_proxy_its_forwarded_headers_count(guard) -> None:
    """The server's proxy-headers layer (uvicorn's, as NoneBot runs it) believes X-Forwarded-Proto and
    X-Forwarded-For only from the proxies in FORWARDED_ALLOW_IPS."""
    trusted = ProxyHeadersMiddleware(web_app(), trusted_hosts="10.0.0.2")
    https = {"X-Forwarded-Proto": "https"}
    async with client_for(trusted, "10.0.0.2") as proxy, client_for(trusted, "203.0.113.9") as stranger:
        answer = await proxy.post("/nailong/login", data={"token": ADMIN_TOKEN}, headers=https)
        assert "Secure" in answer.headers["Set-Cookie"]
        answer = await stranger.post("/nailong/login", data={"token": ADMIN_TOKEN}, headers=https)
        assert "Secure" not in answer.headers["Set-Cookie"]
        # Through the proxy each client is counted by its own address; a stranger's header is ignored.
        for _ in range(5):
            await proxy.post("/nailong/login", data={"token": WRONG}, headers={"X-Forwarded-For": "198.51.100.1"})
        assert (await proxy.post("/nailong/login", data={"token": ADMIN_TOKEN},
                                 headers={"X-Forwarded-For": "198.51.100.1"})).status_code == 429
        assert (await proxy.post("/nailong/login", data={"token": ADMIN_TOKEN},
                                 headers={"X-Forwarded-For": "198.51.100.2"})).status_code == 303
        for number in range(5):
            claimed = {"X-Forwarded-For": f"192.0.2.{number}"}
            await stranger.post("/nailong/login", data={"token": WRONG}, headers=claimed)
        assert (await stranger.post("/nailong/login", data={"token": ADMIN_TOKEN})).status_code == 429


async def test_the_20th_wrong_sign_in_gets_429(app, caplog_loguru) -> None:
    async with client_for(app, "192.0.2.7") as attacker, client_for(app, "192.0.2.8") as admin:
        answers = [await attacker.post("/nailong/login", data={"token": f"{WRONG}{n}"}) for n in range(20)]
        assert [a.status_code for a in answers[:4]] == [401] * 4
        last = answers[-1]
        assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1
        assert "错误令牌过多" in last.text and "too many wrong tokens" not in last.text  # one language
        # Locked out even with the right token: a lock that checked tokens would still answer guesses.
        assert (await sign_in(attacker)).status_code == 429
        assert SESSION_COOKIE not in attacker.cookies
        # Another client is not affected.
        assert (await sign_in(admin)).status_code == 303
    assert sum("too many wrong tokens (NAILONG_ADMIN_TOKEN) from 192.0.2.7" in line for line in caplog_loguru) == 1
    assert not any(WRONG in line for line in caplog_loguru)


async def test_wrong_bearers_get_429_and_the_right_one_is_then_refused_too(app) -> None:
    async with client_for(app, "192.0.2.9") as attacker, client_for(app, "192.0.2.10") as script:
        answers = [
            await attacker.get("/nailong/api/status", headers={"Authorization": f"Bearer {WRONG}{n}"})
            for n in range(20)
        ]
        assert [a.status_code for a in answers[:4]] == [401] * 4 and answers[-1].status_code == 429
        assert int(answers[-1].headers["Retry-After"]) >= 1
        right = {"Authorization": f"Bearer {API_TOKEN}"}
        assert (await attacker.get("/nailong/api/status", headers=right)).status_code == 429
        assert (await script.get("/nailong/api/status", headers=right)).status_code == 200
        # A request with no token guesses nothing and is not counted.
        for _ in range(10):
            assert (await script.get("/nailong/api/status")).status_code == 401
        assert (await script.get("/nailong/api/status", headers=right)).status_code == 200


async def test_the_two_tokens_are_throttled_apart(app) -> None:
    """Issue 21: one valid API call after every 4 wrong admin tokens used to clear the sign-in's count."""
    right = {"Authorization": f"Bearer {API_TOKEN}"}
    async with client_for(app, "192.0.2.11") as api_holder:
        logins, api_calls = [], []
        for n in range(60):
            logins.append((await api_holder.post("/nailong/login", data={"token": f"{WRONG}{n}"})).status_code)
            if n % 4 == 3:
                api_calls.append((await api_holder.get("/nailong/api/status", headers=right)).status_code)
        assert 429 in logins
        # The sign-in's lock leaves the API open, and a right admin token is refused during it.
        assert set(api_calls) == {200}
        assert (await sign_in(api_holder)).status_code == 429
        # Wrong bearers lock the API alone.
        for n in range(20):
            await api_holder.get("/nailong/api/status", headers={"Authorization": f"Bearer {WRONG}{n}"})
        assert (await api_holder.get("/nailong/api/status", headers=right)).status_code == 429
    async with client_for(app, "192.0.2.12") as admin:
        for n in range(20):
            await admin.get("/nailong/api/status", headers={"Authorization": f"Bearer {WRONG}{n}"})
        assert (await sign_in(admin)).status_code == 303


def test_throttle_delays_grow_and_are_forgotten() -> None:
    now = [1000.0]
    throttle = Throttle("NAILONG_ADMIN_TOKEN", free=3, max_delay=8, forget_after=60, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None
    waits = []
    for _ in range(6):
        throttle.failed("192.0.2.1")
        waits.append(throttle.retry_after("192.0.2.1"))
        now[0] += waits[-1]
    assert waits == [1, 2, 4, 8, 8, 8]
    assert throttle.retry_after("192.0.2.1") is None
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 8
    now[0] += 61  # quiet for longer than forget_after: starts again
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None
    throttle.succeeded("192.0.2.1")
    assert len(throttle) == 0


def test_throttle_table_stays_bounded_and_ipv6_counts_per_64() -> None:
    throttle = Throttle("NAILONG_ADMIN_TOKEN", free=2, max_clients=100)
    for number in range(10_000):
        throttle.failed(f"10.{number // 256 % 256}.{number % 256}.1")
    assert len(throttle) == 100
    # Rotating through one /64 is one client.
    throttle.failed("2001:db8::1")
    throttle.failed("2001:db8::ffff:2")
    assert throttle.retry_after("2001:db8::3") == 1
    assert throttle.retry_after("2001:db8:0:1::1") is None
    # IPv4 clients of a dual-stack socket stay apart.
    throttle.failed("::ffff:192.0.2.1")
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("::ffff:192.0.2.1") == 1 and throttle.retry_after("::ffff:192.0.2.2") is None


def test_a_session_ends_at_its_expiry() -> None:
    now = [0.0]
    sessions = Sessions(lifetime=3600, max_sessions=3, clock=lambda: now[0])
    first = sessions.start("web")
    now[0] = 3599
    assert sessions.get(first.id) is first
    now[0] = 3600
    assert sessions.get(first.id) is None
    kept = [sessions.start(f"web:{n}") for n in range(4)]
    assert sessions.get(kept[0].id) is None and all(sessions.get(s.id) for s in kept[1:])
    assert sessions.get(None) is None and sessions.get("") is None


async def test_the_api_token_opens_neither_the_console_nor_any_change(app, guard) -> None:
    async with client_for(app) as client:
        refused = await sign_in(client, API_TOKEN)
        assert refused.status_code == 401 and "这是 API 令牌" in refused.text
        assert SESSION_COOKIE not in client.cookies
        bearer = {"Authorization": f"Bearer {API_TOKEN}"}
        for path in ("/nailong/correct", "/nailong/try", "/nailong/logout"):
            assert (await client.post(path, headers=bearer, data={"csrf": "x"})).status_code in (401, 303)
        assert (await client.get("/nailong/", headers=bearer)).headers["Location"] == "/nailong/login"
        # And the admin token is no API token.
        admin_bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await client.get("/nailong/api/status", headers=admin_bearer)).status_code == 401
        assert (await client.get("/nailong/api/status", headers=bearer)).status_code == 200
        assert (await sign_in(client)).status_code == 303
    assert len(guard.corrections) == 0 and guard.audit.latest(5) == []


async def test_each_token_mounts_only_its_routes(guard) -> None:
    api_only, console_only = FastAPI(), FastAPI()
    mount(api_only, api_token=API_TOKEN)
    mount(console_only, admin_token=ADMIN_TOKEN)
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    async with client_for(api_only) as client:
        assert (await client.get("/nailong/login")).status_code == 404
        assert (await client.get("/nailong/api/status", headers=bearer)).status_code == 200
    async with client_for(console_only) as client:
        assert (await client.get("/nailong/login")).status_code == 200
        assert (await client.get("/nailong/api/status", headers=bearer)).status_code == 404


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("Sh0rt-t0ken", "only 11 characters"),
        ("a" * 16, "only 1 different characters"),
        (" " * 16, "only 1 different characters"),
        ("passwordpassword", "only 7 different characters"),
        ("abcdefgh" + "a" * 12, "bits of entropy"),
    ],
    ids=["short", "identical", "spaces", "repeated-word", "mostly-one-character"],
)
@pytest.mark.parametrize("setting", ["nailong_api_token", "nailong_admin_token"])
def test_a_weak_token_is_refused_and_never_printed(token: str, reason: str, setting: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Config(**{setting: token})
    message = str(refused.value)
    assert reason in message and "token too weak" in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    assert token not in message and token not in repr(refused.value)


def test_strong_tokens_pass_and_are_kept_secret() -> None:
    for _ in range(2000):
        Config(nailong_api_token=secrets.token_urlsafe(12))  # 16 random characters always pass
    config = Config(nailong_api_token=API_TOKEN, nailong_admin_token=ADMIN_TOKEN)
    assert config.nailong_admin_token.get_secret_value() == ADMIN_TOKEN
    assert API_TOKEN not in repr(config) and ADMIN_TOKEN not in str(config.model_dump())


def test_the_two_tokens_must_differ() -> None:
    with pytest.raises(ValidationError, match="must differ") as refused:
        Config(nailong_api_token=API_TOKEN, nailong_admin_token=API_TOKEN)
    assert API_TOKEN not in str(refused.value)


async def test_signing_in_again_ends_the_previous_session(app) -> None:
    async with client_for(app) as browser, client_for(app) as thief:
        await sign_in(browser)
        first = browser.cookies[SESSION_COOKIE]
        await sign_in(browser)
        assert browser.cookies[SESSION_COOKIE] != first
        thief.cookies.set(SESSION_COOKIE, first)
        assert (await thief.get("/nailong/")).status_code == 303
        assert (await browser.get("/nailong/")).status_code == 200


def test_the_server_believes_forwarded_headers_only_from_listed_proxies() -> None:
    from nailong_bot.server import uvicorn_options

    assert Config().forwarded_allow_ips is None and Config(forwarded_allow_ips="").forwarded_allow_ips is None
    assert uvicorn_options(Config())["proxy_headers"] is False  # not even this machine
    listed = uvicorn_options(Config(forwarded_allow_ips="127.0.0.1, 10.0.0.0/8", nailong_idle_timeout=7))
    assert listed["proxy_headers"] is True and listed["forwarded_allow_ips"] == "127.0.0.1,10.0.0.0/8"
    assert listed["timeout_keep_alive"] == 7
    with pytest.raises(ValidationError, match="'nginx' in FORWARDED_ALLOW_IPS is not an address or network"):
        Config(forwarded_allow_ips="nginx")
