"""`bot.py` as a real process in conditions the shared bot fixture does not have: a model that tells
which way is up (for photos saved rotated) and a data folder that cannot be written."""

from __future__ import annotations


from bot_process import running_bot
from nailong_testkit import (
    YELLOW,
    FakeOneBot,
    build_tiny_model,
    group_message_payload,
    image_segment,
    saved_with_orientation,
    still,
    text_segment,
    upright_scene,
)


def image_event(url: str, group_id: int, message_id: int) -> dict:
    return group_message_payload(
        [image_segment(url)], self_id=42, group_id=group_id, user_id=5, message_id=message_id
    )


async def admin_command(onebot: FakeOneBot, text: str, group_id: int) -> str:
    """The text of the bot's answer to an admin's command."""
    seen = len(onebot.actions("send_msg"))
    await onebot.post(
        group_message_payload([text_segment(text)], self_id=42, group_id=group_id, user_id=5, role="admin")
    )
    await onebot.wait_for("send_msg", group_id=group_id)
    (_, params), *_ = onebot.actions("send_msg")[seen:]
    return "".join(segment["data"].get("text", "") for segment in params["message"])


async def test_a_nailong_photo_saved_rotated_is_recalled(tmp_path, image_server) -> None:
    # The model only looks at the top half: upright, the photo's top half is nailong yellow; as stored
    # (Orientation = 8, turned a quarter), it is half blue.
    model = build_tiny_model(tmp_path / "top-half.onnx", top_half=True)
    photo = saved_with_orientation(upright_scene((160, 160)), 8, "JPEG", quality=95)
    async with running_bot(tmp_path / "bot", NAILONG_MODEL_PATH=str(model)) as onebot:
        url = image_server.add("e2e-rotated.jpg", photo)
        await onebot.post(image_event(url, group_id=301, message_id=8001))
        await onebot.wait_for("delete_msg", message_id=8001)


async def test_an_unwritable_data_folder_still_guards_and_says_so(tmp_path, image_server) -> None:
    (tmp_path / "a-file").write_text("")  # a file where the data folder's parent should be: fails for root too
    workdir = tmp_path / "bot"
    async with running_bot(workdir, NAILONG_DATA_DIR=str(tmp_path / "a-file" / "data")) as onebot:
        await onebot.post(image_event(image_server.add("ro-1.jpg", still(YELLOW)), group_id=302, message_id=8101))
        await onebot.wait_for("delete_msg", message_id=8101)
        answer = await admin_command(onebot, "/nailong off", group_id=302)
        assert answer.startswith("Cannot save, nothing changed")
        await onebot.post(image_event(image_server.add("ro-2.jpg", still(YELLOW)), group_id=302, message_id=8102))
        await onebot.wait_for("delete_msg", message_id=8102)
    log = (workdir / "bot.log").read_text(errors="replace")
    assert "cannot save group settings, recent images (for corrections), corrections" in log
