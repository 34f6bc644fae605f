"""`bot.py` as a real process with its default trust settings (issue 21, findings 6, 7 and 12; issue 24's
start-up log): clients on other loopback addresses (127.0.0.2…) stand for other machines.

- Wrong tokens are counted per real client and per token: a forged X-Forwarded-For neither locks out
  another client nor spreads one client's guesses, and right API calls do not clear wrong admin tokens.
- The API token's status carries no group, no allow-list, no offender, no QQ number.
- Connections that send no whole request are closed after NAILONG_IDLE_TIMEOUT; the quiet OneBot
  WebSocket stays up.
- The start-up log gives the WebSocket and console addresses, and says what a superuser is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from bot_process import running_bot
from nailong_testkit import YELLOW, FakeOneBot, group_message_payload, image_segment, patterned, text_segment

API_TOKEN = "trust-api-token-0123456789"
ADMIN_TOKEN = "trust-admin-token-9876543210"
IDLE_TIMEOUT = 2
GROUP = 331
OFFENDER, ALLOWED = 2233445566, 1357924680


@pytest.fixture(scope="module")
async def bot(tmp_path_factory) -> AsyncIterator[FakeOneBot]:
    workdir = tmp_path_factory.mktemp("trust-bot")
    settings = {
        "NAILONG_API_TOKEN": API_TOKEN,
        "NAILONG_ADMIN_TOKEN": ADMIN_TOKEN,
        "NAILONG_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "SUPERUSERS": "[]",
    }
    async with running_bot(workdir, **settings) as onebot:
        onebot.workdir = workdir  # type: ignore[attr-defined]
        yield onebot


def client(bot: FakeOneBot, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address``."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{bot.port}/nailong",
        transport=httpx.AsyncHTTPTransport(local_address=address),
        timeout=10,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def guess(n: int) -> str:
    return f"guess-{n:02d}-abcdefghijk"


async def test_the_start_up_log_says_where_to_connect_and_what_a_superuser_is(bot) -> None:
    log = (bot.workdir / "bot.log").read_text(errors="replace")
    assert f"ws://127.0.0.1:{bot.port}/onebot/v11/ws" in log
    assert f"web console: http://127.0.0.1:{bot.port}/nailong/" in log
    assert 'SUPERUSERS=["你的QQ号"]' in log and "超级用户是机器人的主人" in log


async def test_a_forged_forwarded_for_neither_locks_out_another_client_nor_spreads_guesses(bot) -> None:
    # Every other guess claims to come from the victim, the rest each from an address of their own.
    def claimed(n: int) -> dict[str, str]:
        return {"X-Forwarded-For": "127.0.0.3" if n % 2 == 0 else f"198.51.100.{n}"}

    async with client(bot) as attacker, client(bot, "127.0.0.3") as victim:
        bearers = [await attacker.get("/api/status", headers={**bearer(guess(n)), **claimed(n)}) for n in range(20)]
        logins = [await attacker.post("/login", data={"token": guess(n)}, headers=claimed(n)) for n in range(20)]
        # The attacker's guesses all count against the attacker: it is locked out, right tokens included…
        assert bearers[0].status_code == logins[0].status_code == 401
        assert bearers[-1].status_code == logins[-1].status_code == 429
        assert (await attacker.get("/api/status", headers=bearer(API_TOKEN))).status_code == 429
        assert (await attacker.post("/login", data={"token": ADMIN_TOKEN})).status_code == 429
        # …and the address it claimed is not.
        assert (await victim.get("/api/status", headers=bearer(API_TOKEN))).status_code == 200
        assert (await victim.post("/login", data={"token": ADMIN_TOKEN})).status_code == 303
        assert (await victim.get("/api/status", headers=bearer(guess(99)))).status_code == 401
    # An operator whose proxy is not listed learns why everyone behind it would share one throttle.
    log = (bot.workdir / "bot.log").read_text(errors="replace")
    assert log.count("carried X-Forwarded-For, which counts for nothing while FORWARDED_ALLOW_IPS is empty") == 1


async def test_right_api_calls_do_not_clear_wrong_admin_tokens(bot) -> None:
    async with client(bot, "127.0.0.5") as api_holder:
        logins, api_calls = [], []
        for n in range(60):
            logins.append((await api_holder.post("/login", data={"token": guess(n)})).status_code)
            if n % 4 == 3:
                api_calls.append((await api_holder.get("/api/status", headers=bearer(API_TOKEN))).status_code)
    assert 429 in logins
    assert set(api_calls) == {200}  # the sign-in's lock is the sign-in's alone


async def test_the_api_token_reads_totals_not_people(bot, image_server) -> None:
    await bot.post(group_message_payload([text_segment(f"/nailong allow {ALLOWED}")], self_id=42, group_id=GROUP,
                                         user_id=5, role="admin"))  # fmt: skip
    await bot.wait_for("send_msg", group_id=GROUP)
    url = image_server.add("trust-nailong.jpg", patterned(YELLOW, seed=81))
    await bot.post(group_message_payload([image_segment(url)], self_id=42, group_id=GROUP, user_id=OFFENDER,
                                         message_id=8801))  # fmt: skip
    await bot.wait_for("delete_msg", message_id=8801)
    async with client(bot, "127.0.0.6") as script:
        answer = await script.get("/api/status", headers=bearer(API_TOKEN))
    status = answer.json()
    assert status["groups"]["known"] >= 1 and status["today"]["hits"] >= 1
    for private in (str(OFFENDER), str(ALLOWED), str(GROUP), "allowed", "strikes", "chat:"):
        assert private not in answer.text


async def test_idle_connections_are_closed_and_the_quiet_onebot_websocket_stays(bot, image_server) -> None:
    port = bot.port
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    trickling = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    for _, writer in trickling:
        writer.write(b"GET /nailong/login HTTP/1.1\r\nHost: bot\r\n")

    async def trickle() -> None:  # slowloris: a header byte now and then never completes a request
        while True:
            await asyncio.sleep(0.3)
            for _, writer in trickling:
                with contextlib.suppress(OSError):
                    writer.write(b"X")

    async def closed_by_the_bot(reader: asyncio.StreamReader) -> bool:
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
        return True

    trickler = asyncio.create_task(trickle())
    try:
        closed = await asyncio.wait_for(
            asyncio.gather(*(closed_by_the_bot(reader) for reader, _ in silent + trickling)), timeout=60
        )
    finally:
        trickler.cancel()
        for _, writer in silent + trickling:
            writer.close()
    assert len(closed) == 100
    # The WebSocket has been quiet for longer than the time-out, and still carries events.
    await asyncio.sleep(2 * IDLE_TIMEOUT)
    nailong = patterned(YELLOW, seed=82)
    url = image_server.add("trust-after-idle.jpg", nailong)
    await bot.post(group_message_payload([image_segment(url)], self_id=42, group_id=GROUP + 1, user_id=6,
                                         message_id=8901))  # fmt: skip
    await bot.wait_for("delete_msg", message_id=8901)
