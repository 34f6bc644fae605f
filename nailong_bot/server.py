"""How the bot's HTTP server is run: uvicorn, started by NoneBot's FastAPI driver, which passes the
keyword arguments of `nonebot.run(...)` on to `uvicorn.run` (the driver has no `fastapi_*` setting for
these). `bot.py` runs it as ``nonebot.run(**uvicorn_options())``; a bot of your own should do the same.

- Proxies: X-Forwarded-For and X-Forwarded-Proto are believed only from FORWARDED_ALLOW_IPS, empty by
  default (uvicorn would trust this machine). The web routes' throttle counts failures per client as
  the server reports it (web/auth.py), so this one setting decides both.
- Idle connections: uvicorn's keep-alive time-out runs only after an answer, and the first byte that
  arrives stops it; a connection that never sends a whole request is kept for ever (uvicorn issues
  #160, #1192). The protocol below closes a connection that has no whole request NAILONG_IDLE_TIMEOUT
  seconds after it opened or after its last answer, however slowly bytes trickle in. A request being
  answered, and a WebSocket (the OneBot connection), are never cut by it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nonebot import get_plugin_config
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .config import Config


class _IdleDeadline:
    """Mixed into uvicorn's HTTP protocol (h11 or httptools: both have these hooks)."""

    timeout_keep_alive: float
    transport: asyncio.Transport
    cycle: Any  # the request being answered, or the last one (uvicorn's RequestResponseCycle)
    _idle_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_idle_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_idle_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_deadline is not None:
            self._idle_deadline.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_idle_deadline(self) -> None:
        if self._idle_deadline is not None:
            self._idle_deadline.cancel()
        self._idle_deadline = asyncio.get_running_loop().call_later(self.timeout_keep_alive, self._idle_deadline_due)

    def _idle_deadline_due(self) -> None:
        self._idle_deadline = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed already, or handed to the WebSocket protocol
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its answer arms the deadline again
        self.transport.close()


class IdleTimeoutHTTPProtocol(_IdleDeadline, AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol (httptools when installed, else h11) with the idle deadline."""


def uvicorn_options(config: Config | None = None) -> dict[str, Any]:
    """The keyword arguments for ``nonebot.run``: trusted proxies and the idle time-out."""
    config = config or get_plugin_config(Config)
    proxies = config.forwarded_allow_ips or []
    return {
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies),
        "timeout_keep_alive": config.nailong_idle_timeout,
        "http": IdleTimeoutHTTPProtocol,
    }
