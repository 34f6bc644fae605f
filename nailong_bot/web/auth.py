"""Who may use the web routes. Two tokens, two jobs: the API token (a Bearer header) opens only
`classify` and `status`; the admin token opens the console, through its sign-in form.

A sign-in starts a server-side session: a random id in an HttpOnly, SameSite=Strict cookie (Secure over
HTTPS) and a random form token for the page's forms, both unrelated to the token, which never reaches
the browser again. A session ends at sign-out or after its lifetime; sessions live in memory only.

Wrong tokens are throttled per client and per token: a few are free, then each one locks the client out
for twice as long as the one before (429 with Retry-After). The API token and the admin token count
apart, so a right API token never clears wrong admin-token guesses, and a lock on one leaves the other
open. The client is the TCP peer, or the address a proxy in FORWARDED_ALLOW_IPS reports (server.py);
nothing else a client sends picks whose failures it adds to. So a client on another address can lock
out only itself; it cannot lock out someone else, nor spread its guesses over addresses it only claims.
Clients that share one address (one IPv4 NAT, one IPv6 /64, one proxy that reports no address) share
one lock: an attacker among them can keep the others from signing in, though not out of a signed-in
session. A right token is refused during a lock too: checked then, guesses would go on at full speed.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from nonebot.log import logger

SESSION_COOKIE = "nailong_session"
CSRF_HEADER = "X-CSRF-Token"


def matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison: the time taken says nothing about how much of a guess was right."""
    return given is not None and expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def client_address(request: Request) -> str:
    """The client's address as the server reports it. Behind a reverse proxy the server (uvicorn) takes it
    from X-Forwarded-For, but only from a proxy listed in FORWARDED_ALLOW_IPS (default: none)."""
    return request.client.host if request.client else "unknown"


def _throttle_key(address: str) -> str:
    # One IPv6 host usually holds a whole /64: counted per address, it could rotate through them freely.
    # An IPv4 client of a dual-stack socket (::ffff:a.b.c.d) is counted as that IPv4 address, or every
    # IPv4 client would share one /64.
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


@dataclass
class _Failures:
    count: int
    locked_until: float
    last: float


class Throttle:
    """Failed credentials per client. After ``free`` failures the client is locked out for 1 s, then
    2 s, 4 s… up to ``max_delay``; attempts during a lock are refused unchecked, so they cost the
    attacker time and teach nothing. A client is forgotten ``forget_after`` seconds after its last
    failure or at its first success. At most ``max_clients`` are kept (the longest quiet go first), so
    an attacker rotating addresses cannot grow the table."""

    def __init__(
        self,
        token: str,
        *,
        free: int = 5,
        max_delay: float = 300.0,
        forget_after: float = 3600.0,
        max_clients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token  # the setting whose token is guessed, for the log
        self.free, self.max_delay, self.forget_after, self.max_clients = free, max_delay, forget_after, max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None when it may now."""
        failures = self._clients.get(_throttle_key(address))
        if failures is None:
            return None
        wait = failures.locked_until - self._clock()
        return math.ceil(wait) if wait > 0 else None

    def failed(self, address: str) -> None:
        key, now = _throttle_key(address), self._clock()
        failures = self._clients.pop(key, None)
        if failures is None or now - failures.last > self.forget_after:
            failures = _Failures(count=0, locked_until=0.0, last=now)
        failures.count += 1
        failures.last = now
        if failures.count >= self.free:
            delay = min(2.0 ** (failures.count - self.free), self.max_delay)
            failures.locked_until = now + delay
            if failures.count == self.free:
                logger.warning(
                    f"来自 {key} 的错误令牌（{self.token}）过多，暂停它的尝试（每次错误加倍）/ too many wrong "
                    f"tokens ({self.token}) from {key}: its attempts are paused, for twice as long after each "
                    "further failure"
                )
        self._clients[key] = failures
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._clients.pop(_throttle_key(address), None)


def too_many_attempts(seconds: int) -> HTTPException:
    return HTTPException(
        429,
        f"错误令牌过多，请 {seconds} 秒后再试 / too many wrong tokens: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str  # the page's form token: a form from another site cannot know it
    operator: str  # "web", or "web:<name>" when a name was given at sign-in
    expires_at: float


class Sessions:
    """Signed-in browsers, by the random id in their cookie. At most ``max_sessions``: a sign-in beyond
    that ends the oldest session."""

    def __init__(
        self, lifetime: float, *, max_sessions: int = 64, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lifetime, self.max_sessions = lifetime, max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}  # oldest first

    def start(self, operator: str) -> Session:
        now = self._clock()
        self._sessions = {key: s for key, s in self._sessions.items() if s.expires_at > now}
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[next(iter(self._sessions))]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), operator, now + self.lifetime)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, ended or expired)."""
        session = self._sessions.get(session_id) if session_id else None
        if session is not None and session.expires_at <= self._clock():
            del self._sessions[session.id]
            return None
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)


class TokenAuth:
    def __init__(
        self,
        api_token: str | None,
        admin_token: str | None,
        *,
        session_hours: float = 12.0,
        secure_cookie: bool = False,
        trusts_proxies: bool = False,
    ) -> None:
        self._api_token, self._admin_token = api_token, admin_token
        self.secure_cookie = secure_cookie
        self.sessions = Sessions(session_hours * 3600)
        # One per token: a success with one never clears the other's failures.
        self.api_throttle = Throttle("NAILONG_API_TOKEN")
        self.admin_throttle = Throttle("NAILONG_ADMIN_TOKEN")
        self._hint_at_proxies = not trusts_proxies  # until said once

    def _failed(self, throttle: Throttle, request: Request) -> None:
        throttle.failed(client_address(request))
        if self._hint_at_proxies and "x-forwarded-for" in request.headers:
            # Since FORWARDED_ALLOW_IPS trusts no one by default, a proxy left out counts all its clients as one.
            self._hint_at_proxies = False
            logger.warning(
                f"来自 {client_address(request)} 的错误令牌带着 X-Forwarded-For，但 FORWARDED_ALLOW_IPS 是空的，这个头"
                "不算数。如果它是你的反向代理，把它的地址写进 FORWARDED_ALLOW_IPS，否则经它来的所有人共用一个限流 / "
                f"a wrong token from {client_address(request)} carried X-Forwarded-For, which counts for nothing while "
                "FORWARDED_ALLOW_IPS is empty. If that is your reverse proxy, list it in FORWARDED_ALLOW_IPS, or "
                "everyone behind it shares one throttle"
            )

    async def require_bearer(self, request: Request) -> None:
        """API dependency: before anything else runs, 429 for a locked-out client, 401 unless
        `Authorization: Bearer <NAILONG_API_TOKEN>`. Async so that it runs on the event loop, as all
        users of the throttle and the sessions do (FastAPI would run a plain function in a thread)."""
        address = client_address(request)
        if (seconds := self.api_throttle.retry_after(address)) is not None:
            raise too_many_attempts(seconds)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not matches(given.strip(), self._api_token):
            if header:  # a credential was tried: no header at all guesses nothing
                self._failed(self.api_throttle, request)
                if (seconds := self.api_throttle.retry_after(address)) is not None:
                    raise too_many_attempts(seconds)
            raise HTTPException(
                401,
                "需要正确的令牌：Authorization: Bearer <NAILONG_API_TOKEN> / "
                "a valid token is required: Authorization: Bearer <NAILONG_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        self.api_throttle.succeeded(address)

    def admin_retry_after(self, request: Request) -> int | None:
        """Whole seconds until this client may try the admin token again, or None when it may now."""
        return self.admin_throttle.retry_after(client_address(request))

    def check_admin_token(self, request: Request, given: str | None) -> bool:
        """Whether ``given`` is the admin token; a wrong one counts against the client."""
        if matches(given, self._admin_token):
            self.admin_throttle.succeeded(client_address(request))
            return True
        self._failed(self.admin_throttle, request)
        return False

    def is_api_token(self, given: str | None) -> bool:
        return matches(given, self._api_token)

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def cookie_secure(self, request: Request) -> bool:
        """Whether the session cookie gets `Secure`: the request came over HTTPS (behind a trusted proxy,
        X-Forwarded-Proto says so), or NAILONG_SECURE_COOKIE is set."""
        return self.secure_cookie or request.url.scheme == "https"
