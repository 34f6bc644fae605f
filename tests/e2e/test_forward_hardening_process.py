"""`python bot.py` against hostile merged forwards, through the real reverse WebSocket: a forward that
never answers, answers slowly, nests, is malformed, is huge or is over the WebSocket frame limit must
neither hide nor delay the image posted beside it."""

from __future__ import annotations

import asyncio
import time

from bot_process import running_bot
from nailong_testkit import YELLOW, FakeOneBot, group_message_payload, image_segment, still, text_segment

GROUP = 131


def forward(forward_id: str) -> dict:
    return {"type": "forward", "data": {"id": forward_id}}


def node(*content: dict) -> dict:
    return {"type": "node", "data": {"user_id": "7", "nickname": "someone", "content": list(content)}}


async def post(onebot: FakeOneBot, segments: list[dict], message_id: int, group_id: int = GROUP) -> float:
    """Post a group message; returns when it was sent."""
    sent = time.monotonic()
    await onebot.post(group_message_payload(segments, self_id=42, group_id=group_id, user_id=5, message_id=message_id))
    return sent


async def test_hostile_forwards_neither_hide_nor_delay_the_image_beside_them(tmp_path, image_server) -> None:
    async with running_bot(tmp_path / "bot", NAILONG_FORWARD_DEADLINE="30") as onebot:
        # Warm up (the first decision loads lazily initialised parts of the model session).
        await post(onebot, [image_segment(image_server.add("fh-warm.jpg", still(YELLOW, size=(40, 40))))], 9000)
        await onebot.wait_for("delete_msg", timeout=30, message_id=9000)

        # A forward that never answers: the nailong beside it is acted on at once (within 2 s).
        onebot.delays["get_forward_msg"] = None
        beside = image_server.add("fh-never.jpg", still(YELLOW, size=(41, 41)))
        sent = await post(onebot, [forward("NEVER"), image_segment(beside)], 9001)
        recalled_at, _ = await onebot.wait_for("delete_msg", timeout=10, message_id=9001)
        assert recalled_at - sent < 2.0

        # Three nested forwards answering after 3 s each, with sixty more inside them.
        onebot.delays["get_forward_msg"] = 3.0
        onebot.responses["get_forward_msg"] = lambda params: (
            0, {"messages": [{"message": [forward(f"{params['id']}-{i}")]} for i in range(20)]}
        )  # fmt: skip
        beside = image_server.add("fh-nested.jpg", still(YELLOW, size=(42, 42)))
        sent = await post(onebot, [forward("N1"), forward("N2"), forward("N3"), image_segment(beside)], 9002)
        recalled_at, _ = await onebot.wait_for("delete_msg", timeout=10, message_id=9002)
        assert recalled_at - sent < 2.0
        # Looked up side by side, not one after another.
        await onebot.wait_for("get_forward_msg", timeout=10, id="N3")
        assert sum(params["id"] in ("N1", "N2", "N3") for _, params in onebot.actions("get_forward_msg")) == 3

        # A malformed forward (segments whose data is null or a string) next to a nailong: acted on,
        # and the forward's well-formed images are still checked.
        del onebot.delays["get_forward_msg"]
        inside = image_server.add("fh-inside.jpg", still(YELLOW, size=(43, 43)))
        malformed = {
            "messages": [
                {"message": [{"type": "image", "data": None}, {"type": "text", "data": "x"}]},
                {"message": [{"type": "forward", "data": None}, image_segment(inside)]},
                None,
            ]
        }
        onebot.responses["get_forward_msg"] = (0, malformed)
        beside = image_server.add("fh-malformed.jpg", still(YELLOW, size=(44, 44)))
        await post(onebot, [forward("BAD"), image_segment(beside)], 9003)
        await onebot.wait_for("delete_msg", timeout=10, message_id=9003)
        # Only the malformed forward: its good image still decides.
        await post(onebot, [forward("BAD-ALONE")], 9004)
        await onebot.wait_for("delete_msg", timeout=10, message_id=9004)

        # A 10,000-node forward: only the first 100 nodes are read; the nailong in node 101 is not seen,
        # and another group's nailong is not held up.
        nodes = [node(text_segment("x"))] * 100 + [node(image_segment(inside))] + [node(text_segment("x"))] * 9899
        onebot.responses["get_forward_msg"] = (0, {"message": nodes})
        for message_id in range(9010, 9015):
            await post(onebot, [forward(f"HUGE-{message_id}")], message_id)
        other = image_server.add("fh-other-group.jpg", still(YELLOW, size=(46, 46)))
        await post(onebot, [image_segment(other)], 9020, group_id=GROUP + 1)
        await onebot.wait_for("delete_msg", timeout=10, message_id=9020)
        await onebot.wait_for("get_forward_msg", timeout=10, id="HUGE-9014")
        await asyncio.sleep(1.0)
        assert not [p for _, p in onebot.actions("delete_msg") if 9010 <= p["message_id"] < 9015]
    log = (tmp_path / "bot" / "bot.log").read_text(errors="replace")
    assert "malformed nodes or segments in a forward skipped" in log
    assert "forward over its limits" in log
    assert "Traceback" not in log


async def test_an_answer_over_the_frame_limit_is_explained_once(tmp_path, image_server) -> None:
    async with running_bot(tmp_path / "bot") as onebot:
        beside = image_server.add("fh-oversized.jpg", still(YELLOW, size=(47, 47)))
        onebot.delays["get_forward_msg"] = 1.0  # the image is acted on before the connection drops
        onebot.responses["get_forward_msg"] = (0, {"message": [node(text_segment("x" * 1000))] * 17_500})
        await post(onebot, [forward("OVERSIZED"), image_segment(beside)], 9101)
        await onebot.wait_for("delete_msg", timeout=30, message_id=9101)
        log_path = tmp_path / "bot" / "bot.log"
        for _ in range(100):
            if "over the WebSocket frame limit" in log_path.read_text(errors="replace"):
                break
            await asyncio.sleep(0.1)
    log = log_path.read_text(errors="replace")
    assert log.count("over the WebSocket frame limit") == 1
