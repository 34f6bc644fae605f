"""Oversized input through `bot.py`, the real WebSocket and real HTTP (issue 21, finding 8): a 400-digit
mute duration, an @-mention of a 5,000-digit QQ number, QQ 0 and 20-digit numbers, a 50,000-character
unknown sub-command, each answered with a short, clear refusal; and allow-list entries stored before
numbers were checked no longer stop the group's console form from saving."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx

from bot_process import running_bot
from nailong_testkit import group_message_payload, text_segment
from test_group_policy_process import ADMIN, ask

ADMIN_TOKEN = "bounded-input-admin-token-0123456789abcdef"
GROUP = 501
STORED_BAD = 502  # its allow-list was saved with QQ 0 and a 20-digit number


async def test_oversized_input_is_refused_clearly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text(json.dumps({
        "version": 1, "groups": {str(STORED_BAD): {"allowed": [0, 12345678901234567890, 123456], "enabled": True}},
    }))  # fmt: skip
    async with running_bot(tmp_path / "bot", NAILONG_DATA_DIR=str(data), NAILONG_ADMIN_TOKEN=ADMIN_TOKEN) as onebot:
        duration = await ask(onebot, "/nailong mute 3 " + "1" * 400, GROUP)
        assert "a mute lasts from 1 minute to 30 days" in duration and "禁言" not in duration
        assert len(duration) < 500

        seen = len(onebot.actions("send_msg"))
        huge = {"type": "at", "data": {"qq": "5" * 5000}}
        command = [text_segment("/nailong allow "), huge]
        await onebot.post(group_message_payload(command, self_id=42, group_id=GROUP, user_id=ADMIN, role="admin"))
        for _ in range(400):
            if len(onebot.actions("send_msg")) > seen:
                break
            await asyncio.sleep(0.05)
        _, answer = onebot.actions("send_msg")[seen]
        mention = "".join(segment["data"].get("text", "") for segment in answer["message"])
        assert "not a QQ number: 5555" in mention and "… (5000 characters)" in mention and len(mention) < 500

        for typed in ("0", "12345678901234567890", "9999"):
            assert f"not a QQ number: {typed}" in await ask(onebot, f"/nailong allow {typed}", GROUP)
        assert "不是 QQ 号：0（QQ 号是 10000 到 4294967295 的整数）" in await ask(onebot, "/奶龙 豁免 0", GROUP)
        accepted = await ask(onebot, "/nailong allow 10000 4294967295", GROUP)
        assert "10000, 4294967295" in accepted and "not a QQ number" not in accepted

        unknown = (await ask(onebot, "/nailong " + "x" * 50_000, GROUP)).splitlines()[0]
        assert "xxxx" in unknown and len(unknown) < 200

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{onebot.port}/nailong", timeout=20) as console:
            await console.post("/login", data={"token": ADMIN_TOKEN})
            page = (await console.get("/")).text
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
            shown = re.search(rf'id="settings-{STORED_BAD}".*?name="allowed" value="([^"]*)"', page, re.S).group(1)
            assert shown == "123456"
            form = {"csrf": csrf, "group_id": str(GROUP), "mute_after": "3", "mute_duration": "1" * 400}
            refused = await console.post("/settings", data=form)
            assert refused.status_code == 400 and "禁言时长须在 1 分钟到 30 天之间" in refused.text
            form = {"csrf": csrf, "group_id": str(STORED_BAD), "allowed": shown, "threshold": "0.6"}
            saved = await console.post("/settings", data=form)
            assert saved.status_code == 303 and saved.headers["Location"].startswith("/nailong/?notice=settings-saved")
    stored = json.loads((data / "settings.json").read_text())["groups"][str(STORED_BAD)]
    assert stored["allowed"] == [123456] and stored["threshold"] == 0.6 and stored["enabled"] is True
    log = (tmp_path / "bot" / "bot.log").read_text(errors="replace")
    assert f"allow-list entries that are not QQ numbers (10000..4294967295) dropped: group={STORED_BAD}" in log
