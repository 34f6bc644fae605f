"""Per-group settings on disk: round trip, atomic writes, corrupted files kept aside."""

from __future__ import annotations

import json

import pytest
from nonebot.adapters.onebot.v11 import Adapter, Bot
from nonebug import App

from nailong_bot.storage import Action, GroupSettings, SettingsStore
from nailong_testkit import YELLOW, group_event, image_segment, still

DEFAULTS = GroupSettings(enabled=True, threshold=0.7, action=Action.BOTH)


async def test_only_changes_are_stored(tmp_path) -> None:
    store = SettingsStore(tmp_path, DEFAULTS)
    store.load()
    await store.update(5, threshold=0.9)
    assert json.loads(store.path.read_text()) == {"version": 1, "groups": {"5": {"threshold": 0.9}}}
    # A later change of the global default still reaches settings the group never touched.
    reloaded = SettingsStore(tmp_path, GroupSettings(enabled=False, threshold=0.5, action=Action.RECALL))
    reloaded.load()
    assert reloaded.get(5) == GroupSettings(enabled=False, threshold=0.9, action=Action.RECALL)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"groups": []}',
        b'{"groups": {"abc": {}}}',
        b'{"groups": {"1": {"threshold": 7}}}',
        b'{"groups": {"1": {"action": "explode"}}}',
        b'{"groups": {"1": {"enabled": "yes"}}}',
    ],
    ids=["syntax", "empty", "binary", "list", "groups-list", "bad-group", "threshold", "action", "enabled"],
)
async def test_corrupted_file_is_kept_aside(tmp_path, content: bytes, caplog_loguru) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    store = SettingsStore(tmp_path, DEFAULTS)
    store.load()
    assert store.get(1) == DEFAULTS
    (aside,) = tmp_path.glob("settings.json.corrupt-*")
    assert aside.read_bytes() == content
    assert not path.exists()
    assert any("settings file corrupted" in line for line in caplog_loguru)
    await store.update(1, enabled=False)  # and the store keeps working
    assert json.loads(path.read_text())["groups"] == {"1": {"enabled": False}}


async def test_corrupted_file_at_startup_does_not_stop_the_bot(
    app: App, start_guard, tmp_path, image_server
) -> None:
    data_dir = tmp_path / "corrupt"
    data_dir.mkdir()
    (data_dir / "settings.json").write_text('{"groups": {"1": {"enabled": fal')
    guard = await start_guard(data_dir)
    assert list(data_dir.glob("settings.json.corrupt-*"))
    url = image_server.add("after-corruption.jpg", still(YELLOW))
    async with app.test_matcher() as ctx:
        bot = ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")
        ctx.receive_event(bot, group_event([image_segment(url)], message_id=31))
        ctx.should_call_api("delete_msg", {"message_id": 31}, result=None)
        ctx.should_call_api(
            "send_group_msg",
            {"group_id": 1, "message": _warning()},
            result={"message_id": 1},
        )
    assert guard.store.get(1).enabled


def _warning():
    from nonebot.adapters.onebot.v11 import Message, MessageSegment

    return Message([MessageSegment.at(5), MessageSegment.text(" 检测到奶龙图片")])
