"""EXIF orientation: a photo saved rotated (Orientation = 3, 6, 8, the mirrored 2, 4, 5, 7) is decoded
upright, as people see it, by the decode the plugin and the trainer share; a rotated nailong is acted on."""

from __future__ import annotations

import io

import numpy as np
import pytest
from nonebot.adapters.onebot.v11 import Adapter, Bot, Message, MessageSegment
from nonebug import App
from PIL import Image, ImageOps

from nailong_testkit import (
    BLUE,
    YELLOW,
    build_tiny_model,
    group_event,
    image_segment,
    saved_with_orientation,
    upright_scene,
)
from nailong_vision.decode import decode_frames


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_decoded_upright(orientation: int) -> None:
    upright = upright_scene()
    data = saved_with_orientation(upright, orientation)
    (frame,) = decode_frames(data)
    assert np.array_equal(np.asarray(frame), np.asarray(upright))
    # The same as Pillow's own viewer transform.
    assert np.array_equal(np.asarray(frame), np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))))


def test_a_reduced_jpeg_draft_is_turned_upright_too() -> None:
    data = saved_with_orientation(upright_scene((1200, 800)), 8, "JPEG", quality=95)
    (frame,) = decode_frames(data, draft_size=64)
    assert frame.size == (150, 100)  # the draft decoded an eighth of the stored 800×1200, then turned
    pixels = np.asarray(frame).astype(int)
    assert np.abs(pixels[30, 75] - YELLOW).max() < 30 and np.abs(pixels[80, 75] - BLUE).max() < 30


@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00MM\x00*\xff\xff\xff\xff",  # an IFD offset past the end
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00",
    ],
    ids=["damaged", "orientation-9"],
)
def test_a_bad_exif_block_leaves_the_image_as_stored(exif: bytes) -> None:
    buffer = io.BytesIO()
    upright_scene().save(buffer, format="PNG", exif=exif)
    (frame,) = decode_frames(buffer.getvalue())
    assert np.array_equal(np.asarray(frame), np.asarray(upright_scene()))


async def test_a_rotated_nailong_photo_is_acted_on(app: App, start_guard, tmp_path, image_server) -> None:
    # A model that only looks at the top half of the picture: upright, this scene is nailong.
    await start_guard(nailong_model_path=build_tiny_model(tmp_path / "top-half.onnx", top_half=True))
    upright = upright_scene((160, 160))
    rotated = saved_with_orientation(upright, 8, "JPEG", quality=95)
    stored_top = Image.open(io.BytesIO(rotated)).crop((0, 0, 160, 80))
    assert np.asarray(stored_top)[..., 2].mean() > 60  # as stored, the top half is half blue
    url = image_server.add("rotated-nailong.jpg", rotated)
    async with app.test_matcher() as ctx:
        bot = ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")
        ctx.receive_event(bot, group_event([image_segment(url)], message_id=601))
        ctx.should_call_api("delete_msg", {"message_id": 601}, result=None)
        warning = Message([MessageSegment.at(5), MessageSegment.text(" 检测到奶龙图片")])
        ctx.should_call_api("send_group_msg", {"group_id": 1, "message": warning}, result={"message_id": 1})
