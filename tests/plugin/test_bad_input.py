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
        reply = Message([MessageSegment.at(5), MessageSegment.text(" 检测到奶龙图片")])
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


@pytest.mark.parametrize("route", ["redirect-loop", "redirect-file", "bad-gzip"])
async def test_errors_retrying_cannot_help_are_one_warning(start_guard, image_server, caplog_loguru, route) -> None:
    from nailong_bot.pipeline import check_image, image_refs

    guard = await start_guard(nailong_fetch_retries=2)
    event = group_event([image_segment(image_server.url(route))], message_id=43)
    (ref,) = image_refs(event.message)
    caplog_loguru.clear()
    assert await check_image(None, event, ref, guard) is None
    (line,) = caplog_loguru  # no retry, no traceback: one line
    assert "| WARNING " in line and "image download failed" in line


async def test_segment_fields_that_are_not_strings(app: App, guard, image_server, caplog_loguru) -> None:
    url = image_server.add("odd-fields.jpg", still(YELLOW, size=(77, 77)))
    odd = [
        {"type": "image", "data": {"file": 123, "url": url}},
        {"type": "image", "data": {"file": ["A" * 32], "url": {"href": url}}},
        {"type": "mface", "data": {"url": 7, "emoji_package_id": 1, "emoji_id": "x"}},
    ]
    async with app.test_matcher() as ctx:
        bot = ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")
        ctx.receive_event(bot, group_event(odd, message_id=44))
        ctx.should_call_api("delete_msg", {"message_id": 44}, result=None)
        reply = Message([MessageSegment.at(5), MessageSegment.text(" 检测到奶龙图片")])
        ctx.should_call_api("send_group_msg", {"group_id": 1, "message": reply}, result={"message_id": 1})
    assert not any("| ERROR " in line for line in caplog_loguru)
    assert guard.stats.over_days(1, 1).checked == 1
