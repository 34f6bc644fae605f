"""The model store trusts nothing it is handed, end to end: `bot.py` as a real process behind a real
WebSocket, started on a data folder whose `current.json` points outside the store and whose last refresh
carries a gate report that is not one, then refreshing with a trainer that hangs (the plugin's fake
trainer, run through NAILONG_TRAINER_PYTHON as the real one is) and then with one that passes.

The bot starts on its base model, `/nailong model` and the console answer (the gate report "unreadable"),
the hung trainer's whole process group is killed at its budget plus the grace period and the outcome is
recorded and audited, a new refresh then runs and swaps its model in, and each refresh posts its result
once. No chat reply names a path on the server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time

import httpx

from bot_process import ROOT, running_bot
from nailong_testkit import (
    SUPERUSER, FakeOneBot, build_tiny_model, group_message_payload, live_members, text_segment, write_checksum,
)
from nailong_vision.handoff import CHECKPOINT_FILE, MODEL_FILE

GROUP = 501
ADMIN_TOKEN = "store-admin-token-9876543210"
BUDGET, GRACE = 10, 1  # the smallest budget the settings allow
# Runs the fake trainer in place of `python -c <launcher> <niceness> <module> refresh …`: the first refresh
# hangs (the flag file is taken), the next ones pass.
TRAINER = """#!/bin/sh
shift 4
if [ -f "{flag}" ]; then rm "{flag}"; export FAKE_TRAINER='{{"hang": true}}'; fi
PYTHONPATH="{kit}:$PYTHONPATH" exec "{python}" -m fake_trainer "$@"
"""


async def command(onebot: FakeOneBot, text: str, answers: int = 1, timeout: float = 60) -> list[str]:
    seen = len(onebot.actions("send_msg"))
    await onebot.post(group_message_payload([text_segment(text)], self_id=42, group_id=GROUP, user_id=SUPERUSER))
    deadline = time.monotonic() + timeout
    while len(onebot.actions("send_msg")) < seen + answers:
        assert time.monotonic() < deadline, f"no answer to {text!r} within {timeout}s"
        await asyncio.sleep(0.2)
    return ["".join(s["data"].get("text", "") for s in p["message"]) for _, p in onebot.actions("send_msg")[seen:]]


async def test_a_damaged_store_and_a_hung_trainer(tmp_path) -> None:
    workdir, data = tmp_path / "bot", tmp_path / "bot" / "data"
    base = build_tiny_model(tmp_path / "base" / MODEL_FILE)
    write_checksum(base)
    (tmp_path / "base" / CHECKPOINT_FILE).write_bytes(b"checkpoint")
    elsewhere = build_tiny_model(tmp_path / "elsewhere" / MODEL_FILE, version="6.6.6")
    write_checksum(elsewhere)
    store = data / "models"
    store.mkdir(parents=True)
    sha256 = hashlib.sha256(base.read_bytes()).hexdigest()
    (store / "current.json").write_text(json.dumps({"base_sha256": sha256, "current": "../../../elsewhere", "previous": []}))
    (store / "last_refresh.json").write_text(json.dumps({
        "trigger": "auto", "started_at": 1.0, "finished_at": 2.0, "outcome": "failed", "message": "gate failed",
        "base_version": "0.0.1", "version": "0.0.1+r1", "gate": {"checks": 5}, "folder": None,
    }))  # fmt: skip
    flag = tmp_path / "hang-once"
    flag.write_text("")
    trainer = tmp_path / "trainer.sh"
    trainer.write_text(TRAINER.format(flag=flag, kit=ROOT / "tests" / "plugin", python=sys.executable))
    trainer.chmod(0o755)

    async with running_bot(
        workdir,
        NAILONG_MODEL_PATH=str(base),
        NAILONG_DATA_DIR=str(data),
        NAILONG_ADMIN_TOKEN=ADMIN_TOKEN,
        NAILONG_TRAINER_PYTHON=str(trainer),
        NAILONG_REFRESH_BUDGET_SECONDS=str(BUDGET),
        NAILONG_REFRESH_GRACE_SECONDS=str(GRACE),
    ) as onebot:
        (model,) = await command(onebot, "/nailong model")
        assert model.startswith("Model in use: tiny-test 0.0.1"), model  # not 6.6.6 from outside
        assert "gate report unreadable" in model
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{onebot.port}/nailong", timeout=10) as console:
            await console.post("/login", data={"token": ADMIN_TOKEN})
            page = await console.get("/")
        assert page.status_code == 200 and "检查报告无法读取" in page.text

        started = time.monotonic()
        starting, ended = await command(onebot, "/nailong refresh", answers=2, timeout=120)
        assert starting.startswith("Refresh started") and "timed out and stopped" in ended, ended
        assert time.monotonic() - started >= BUDGET + GRACE
        (folder,) = [p for p in (store / "candidates").iterdir() if (p / "hung.json").is_file()]
        hung = json.loads((folder / "hung.json").read_text())
        assert live_members(hung["group"]) == []  # the trainer and the child it started
        audit = [json.loads(line) for line in (data / "audit.jsonl").read_text().splitlines()]
        assert [e["after"]["outcome"] for e in audit if e["action"] == "refresh-ended"] == ["timed_out"]

        # A new refresh starts; sent twice, it posts its result once.
        first = await command(onebot, "/nailong refresh")
        (again,) = await command(onebot, "/nailong refresh")
        assert first[0].startswith("Refresh started") and again.startswith("A refresh is already running")
        deadline = time.monotonic() + 120
        while len(results := [text for text in sent_texts(onebot) if text.startswith("Refresh done")]) < 2:
            assert time.monotonic() < deadline, "no result within 120 s"
            await asyncio.sleep(0.2)
        assert "New model in use: 0.0.1 → 0.0.1+r1" in results[-1], results
        await asyncio.sleep(2)
        assert len([text for text in sent_texts(onebot) if text.startswith("Refresh done")]) == 2  # not a third
        (feedback,) = await command(onebot, "/nailong feedback")
        (model,) = await command(onebot, "/nailong model")
        assert "0.0.1+r1" in model

    replies = "\n".join(sent_texts(onebot))
    for server_path in (str(tmp_path), str(ROOT), "/tmp/"):
        assert server_path not in replies, server_path


def sent_texts(onebot: FakeOneBot) -> list[str]:
    """Every message the bot has sent so far, as text."""
    return ["".join(s["data"].get("text", "") for s in p["message"]) for _, p in onebot.actions("send_msg")]
