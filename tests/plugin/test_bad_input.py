"""Hostile and broken input: no crash, no action, and the next message is still handled."""

from __future__ import annotations

import io
import time

import pytest
from nonebot.adapters.onebot.v11 import Adapter, Bot, Message, MessageSegment
from nonebug import App
from PIL import Image

from nailong_vision.decode import decode_frames
from nailong_testkit import BAD_INPUTS, YELLOW, gif_300_frames, group_event, image_segment, still

MB = 1024 * 1024


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_then_a_good_image(app: App, start_guard, image_server, case: str) -> None:
    await start_guard(nailong_max_image_bytes=2 * MB)
    bad_url = BAD_INPUTS[case](image_server)
    good_url = image_server.add(f"after-{case}.jpg", still(YELLOW))
    started = time.monotonic()
    async with app.test_matcher() as ctx:
        bot = ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")
        ctx.receive_event(bot, group_event([image_segment(bad_url)], message_id=41))
        ctx.receive_event(bot, group_event([image_segment(good_url)], message_id=42))
        ctx.should_call_api("delete_msg", {"message_id": 42}, result=None)
        reply = Message([MessageSegment.reply(42), MessageSegment.text("检测到奶龙图片")])
        ctx.should_call_api("send_group_msg", {"group_id": 1, "message": reply}, result={"message_id": 1})
    assert time.monotonic() - started < 5


def test_300_frame_gif_is_sampled_to_the_frame_cap() -> None:
    frames = decode_frames(gif_300_frames(), max_frames=8)
    assert len(frames) == 8


def test_long_animation_is_sampled_within_the_decoding_budget() -> None:
    # Reaching frame k decodes every frame before it: a tiny file with many large frames would
    # take seconds, so only the frames the budget affords (here the first 10) are sampled.
    frames = [Image.new("L", (1000, 1000), 5 * i) for i in range(40)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=20)
    sampled = decode_frames(buffer.getvalue(), max_frames=8, max_decoded_pixels=10_000_000)
    indices = [sample.getpixel((0, 0))[0] // 5 for sample in sampled]
    assert len(sampled) == 8 and indices[0] == 0 and max(indices) == 9
