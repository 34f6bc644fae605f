"""`python bot.py` against a fake OneBot v11 implementation over a real reverse WebSocket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot_process import start_bot, wait_for_exit
from nailong_testkit import (
    BAD_INPUTS,
    BLUE,
    SUPERUSER,
    YELLOW,
    FakeOneBot,
    free_port,
    group_message_payload,
    image_segment,
    md5_name,
    still,
    text_segment,
)

WARNING = "检测到奶龙图片"


def warning_segments(quoting: int | None = None) -> list[dict]:
    """The default warning to user 5: it @s them, and quotes the message only when it was not recalled."""
    segments = [{"type": "at", "data": {"qq": "5"}}, {"type": "text", "data": {"text": f" {WARNING}"}}]
    return segments if quoting is None else [{"type": "reply", "data": {"id": str(quoting)}}, *segments]


def image_event(url: str | None, group_id: int, message_id: int, **extra) -> dict:
    return group_message_payload(
        [image_segment(url, **extra)], self_id=42, group_id=group_id, user_id=5, message_id=message_id
    )


async def command(
    onebot: FakeOneBot, text: str, group_id: int, *, role: str = "admin", user_id: int = 5
) -> str:
    """Send a command; return the text of the bot's answer in that group."""
    seen = len(onebot.actions("send_msg"))
    await onebot.post(
        group_message_payload([text_segment(text)], self_id=42, group_id=group_id, user_id=user_id, role=role)
    )
    for _ in range(100):
        answers = onebot.actions("send_msg")[seen:]
        if answers:
            (_, params), *_ = answers
            assert params["group_id"] == group_id and params["message_type"] == "group"
            return "".join(s["data"].get("text", "") for s in params["message"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer to {text!r}; calls: {onebot.calls}")


async def test_nailong_image_is_recalled_and_warned(onebot: FakeOneBot, image_server) -> None:
    url = image_server.add("e2e-hit.jpg", still(YELLOW))
    await onebot.post(image_event(url, group_id=101, message_id=5001))
    await onebot.wait_for("delete_msg", message_id=5001)
    _, params = await onebot.wait_for("send_group_msg", group_id=101)
    assert params["message"] == warning_segments()


async def test_other_image_makes_no_api_call(onebot: FakeOneBot, image_server) -> None:
    other = image_server.add("e2e-miss.jpg", still(BLUE))
    barrier = image_server.add("e2e-barrier.jpg", still(YELLOW, size=(90, 90)))
    await onebot.post(image_event(other, group_id=102, message_id=5002))
    await onebot.post(image_event(barrier, group_id=102, message_id=5003))
    await onebot.wait_for("send_group_msg", group_id=102)
    await asyncio.sleep(0.3)
    assert image_server.requests["/img/e2e-miss.jpg"] == 1
    assert not [p for _, p in onebot.actions("delete_msg") if p["message_id"] == 5002]
    assert len([p for _, p in onebot.actions("send_group_msg") if p["group_id"] == 102]) == 1  # the barrier's


async def test_admin_switches_a_group_off(onebot: FakeOneBot, image_server) -> None:
    answer = await command(onebot, "/nailong off", group_id=103)
    assert answer == "Nailong detection is OFF in this group."
    url = image_server.add("e2e-disabled.jpg", still(YELLOW, size=(70, 70)))
    await onebot.post(image_event(url, group_id=103, message_id=5004))
    status = await command(onebot, "/奶龙 状态", group_id=103)
    assert "奶龙检测：已关闭" in status and "阈值：0.7" in status and "tiny-test 0.0.1" in status
    assert image_server.requests["/img/e2e-disabled.jpg"] == 0
    assert not [p for _, p in onebot.actions("delete_msg") if p["message_id"] == 5004]


async def test_members_are_refused(onebot: FakeOneBot) -> None:
    answer = await command(onebot, "/nailong threshold 0.1", group_id=104, role="member")
    assert answer == "Only the group owner, admins and superusers can use this."
    status = await command(onebot, "/nailong status", group_id=104, role="member", user_id=SUPERUSER)
    assert "Threshold: 0.7" in status


async def test_failed_recall_falls_back_to_a_reply(onebot: FakeOneBot, image_server) -> None:
    assert await command(onebot, "/nailong action recall", group_id=105) == "Action set to: recall"
    onebot.responses["delete_msg"] = (102, None)
    try:
        url = image_server.add("e2e-not-admin.jpg", still(YELLOW, size=(60, 60)))
        await onebot.post(image_event(url, group_id=105, message_id=5005))
        await onebot.wait_for("delete_msg", message_id=5005)
        _, params = await onebot.wait_for("send_group_msg", group_id=105)
        assert params["message"] == warning_segments(quoting=5005)
    finally:
        del onebot.responses["delete_msg"]


async def test_message_as_a_cq_code_string(onebot: FakeOneBot, image_server) -> None:
    # Implementations set to `message_format: string` post CQ codes, with `&` and `,` in the url escaped.
    url = image_server.add("e2e-cq.jpg", still(YELLOW, size=(70, 70))) + "?appid=1407&fileid=a,b"
    escaped = url.replace("&", "&amp;").replace(",", "&#44;")
    payload = image_event(url, group_id=110, message_id=5012)
    payload["message"] = f"看[CQ:image,file=ABC.image,subType=0,url={escaped}]"
    await onebot.post(payload)
    await onebot.wait_for("delete_msg", message_id=5012)
    assert image_server.requests["/img/e2e-cq.jpg"] == 1


async def test_image_without_url_is_asked_for(onebot: FakeOneBot, image_server) -> None:
    data = still(YELLOW, size=(50, 50))
    url = image_server.add("e2e-get-image.jpg", data)
    onebot.responses["get_image"] = (0, {"file": "/data/cache/x.jpg", "url": url})
    try:
        await onebot.post(image_event(None, group_id=106, message_id=5006, file=md5_name(data)))
        await onebot.wait_for("get_image", file=md5_name(data))
        await onebot.wait_for("delete_msg", message_id=5006)
    finally:
        del onebot.responses["get_image"]


async def test_repost_is_decided_without_download(onebot: FakeOneBot, image_server) -> None:
    data = still(YELLOW, size=(40, 40))
    url = image_server.add("e2e-sticker.jpg", data)
    for message_id in (5007, 5008):
        await onebot.post(
            image_event(url, group_id=107, message_id=message_id, file=md5_name(data), sub_type=1)
        )
        await onebot.wait_for("delete_msg", message_id=message_id)
    assert image_server.requests["/img/e2e-sticker.jpg"] == 1


async def test_broken_download_then_next_message(onebot: FakeOneBot, image_server) -> None:
    good = image_server.add("e2e-after-reset.jpg", still(YELLOW, size=(30, 30)))
    await onebot.post(image_event(image_server.url("reset"), group_id=108, message_id=5009))
    await onebot.post(image_event(image_server.url("html"), group_id=108, message_id=5010))
    await onebot.post(image_event(good, group_id=108, message_id=5011))
    await onebot.wait_for("delete_msg", message_id=5011)
    assert onebot.process.poll() is None  # type: ignore[attr-defined]


async def test_bad_input_keeps_memory_bounded(onebot: FakeOneBot, image_server) -> None:
    for message_id, make_url in enumerate(BAD_INPUTS.values(), start=5100):
        await onebot.post(image_event(make_url(image_server), group_id=109, message_id=message_id))
    good = image_server.add("e2e-after-bad-input.jpg", still(YELLOW, size=(20, 20)))
    await onebot.post(image_event(good, group_id=109, message_id=5199))
    await onebot.wait_for("delete_msg", timeout=30, message_id=5199)
    await asyncio.sleep(2.5)  # the slow download gives up after its time-out
    assert [p["message_id"] for _, p in onebot.actions("delete_msg") if p["message_id"] >= 5100] == [5199]
    assert onebot.process.poll() is None  # type: ignore[attr-defined]
    status = Path(f"/proc/{onebot.process.pid}/status").read_text()  # type: ignore[attr-defined]
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert peak_kib < 400 * 1024


async def test_connection_without_the_token_is_refused(onebot: FakeOneBot) -> None:
    import websockets

    intruder = FakeOneBot(onebot.port, self_id=43)
    with pytest.raises(websockets.InvalidStatus):
        await intruder.connect(timeout=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NAILONG_MODEL_PATH": "/nonexistent/nailong.onnx"}, "model file not found"),
        ({"NAILONG_THRESHOLD": "2"}, "nailong_bot failed to load"),
    ],
    ids=["missing-model", "bad-setting"],
)
def test_start_up_fails_fast_with_a_clear_message(tmp_path, overrides: dict, message: str) -> None:
    process = start_bot(tmp_path, free_port(), **overrides)
    assert wait_for_exit(process, timeout=60) not in (None, 0)
    assert message in (tmp_path / "bot.log").read_text(errors="replace")
