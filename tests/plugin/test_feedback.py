"""Admins' corrections in the chat: `wrong`/`miss` by reply, their immediate effect on the image and
its near-identical copies (in the admin's group; in every group on a superuser's word, a confirmation or
two groups agreeing), undo, the feedback folder, restarts, the recent-image limits."""

from __future__ import annotations

import csv

import pytest
from nonebot.adapters.onebot.v11 import Message, MessageSegment
from nonebug import App

from nailong_bot.corrections import image_id

from nailong_testkit import (
    BLUE,
    SUPERUSER,
    YELLOW,
    group_event,
    image_segment,
    md5_name,
    patterned,
    reposted,
)
from nonebug_chat import WARNING, ask, connect, post

from nailong_bot.describe import clock_text
from nailong_bot.i18n import lang

REFUSAL = "Only the group owner, admins and superusers can use this."
# What a superuser is and how to become one follows (test_chat_input.py).
SUPERUSER_REFUSAL = lang("en-US")("chat", "superusers_only")
SUPERUSER_REFUSAL_ZH = lang("zh-CN")("chat", "superusers_only")
NOT_NAILONG = "Recorded: not nailong; from now on such images are let through."
NOT_NAILONG_ZH = "已记录：这不是奶龙，以后相同的图片不再处理。"
# A hit said not to be nailong takes back the strike it cost its sender (user 5 posts every image here).
STRIKE_BACK = "\nStrike taken back from member 5 ({} left)"
STRIKE_BACK_ZH = "\n已撤销成员 5 的这次记过（还剩 {} 次）"
HERE = "\nIn this group only; in every group once a superuser confirms it (/nailong confirm)."
HERE_ZH = "\n只在本群生效；超级用户确认后（/奶龙 确认）对所有群生效。"
EVERYWHERE = "\nIn every group."
WRONG = NOT_NAILONG + HERE + STRIKE_BACK.format(0)
IS_NAILONG = "Recorded: nailong; from now on such images are acted on."
IS_NAILONG_ZH = "已记录：这是奶龙，以后相同的图片都会处理。"
CONFIRMED = "Confirmed 1: now in every group."
CONFIRMED_ZH = "已确认 1 条纠错，现在对所有群生效。"
UNDONE = "Correction undone: the model decides again."
UNDONE_ZH = "已撤销纠错，重新由模型判断。"
NO_RECENT_HIT = (
    "No hit in this group lately that is not corrected yet; or send this as a reply to the image's message or the "
    "bot's warning."
)
NOT_FOUND = "No checked image of that message is kept (only recent ones are)."

# The tiny model calls these nailong (≈ 0.95+) and not nailong (≈ 0); other seeds hash far apart.
NAILONG = patterned(YELLOW, seed=1)
OTHER = patterned(BLUE, seed=2)
UNRELATED_NAILONG = patterned(YELLOW, seed=3)


@pytest.fixture
def model_calls(guard, monkeypatch) -> list[int]:
    """Batches the model scored during the test."""
    calls: list[int] = []
    score = guard.classifier.nailong_scores

    def counted(batch):
        calls.append(len(batch))
        return score(batch)

    monkeypatch.setattr(guard.classifier, "nailong_scores", counted)
    return calls


async def test_an_admins_wrong_lets_the_image_through_in_that_group_only(
    app: App, guard, image_server, model_calls
) -> None:
    url = image_server.add("fb-wrong.jpg", NAILONG)
    await post(app, url, message_id=101, file=md5_name(NAILONG), acted_on=True)
    assert await ask(app, "/nailong wrong", reply_to=101) == WRONG

    model_calls.clear()
    # The same file again: the cache knew it as a hit, but the correction decides without the model.
    await post(app, url, message_id=102, file=md5_name(NAILONG), acted_on=False)
    assert model_calls == []
    copy = image_server.add("fb-wrong-copy.jpg", reposted(NAILONG))
    await post(app, copy, message_id=103, acted_on=False)
    # Another group: the admin of group 1 has no say there. The cache's hit (by file name) is not corrected.
    await post(app, url, message_id=104, group_id=2, file=md5_name(NAILONG), acted_on=True)
    await post(app, copy, message_id=105, group_id=2, acted_on=True)
    await post(app, image_server.add("fb-unrelated.jpg", UNRELATED_NAILONG), message_id=106, acted_on=True)


async def test_a_superusers_wrong_lets_the_image_through_in_every_group(app: App, guard, image_server) -> None:
    url = image_server.add("fb-wrong-su.jpg", NAILONG)
    await post(app, url, message_id=107, file=md5_name(NAILONG), acted_on=True)
    answer = await ask(app, "/nailong wrong", reply_to=107, role="member", user_id=SUPERUSER)
    assert answer == NOT_NAILONG + EVERYWHERE + STRIKE_BACK.format(0)
    await post(app, url, message_id=108, group_id=2, file=md5_name(NAILONG), acted_on=False)
    copy = image_server.add("fb-wrong-su-copy.jpg", reposted(NAILONG))
    await post(app, copy, message_id=109, group_id=3, acted_on=False)
    assert guard.corrections.counts() == {"nailong": 0, "other": 1}


async def test_a_miss_in_one_group_acts_elsewhere_once_a_superuser_confirms_it(app: App, guard, image_server) -> None:
    url = image_server.add("fb-miss.jpg", OTHER)
    await post(app, url, message_id=111, file=md5_name(OTHER), acted_on=False)
    assert await ask(app, "/奶龙 漏判", reply_to=111) == IS_NAILONG_ZH + HERE_ZH
    await post(app, url, message_id=112, file=md5_name(OTHER), acted_on=True)
    copy = image_server.add("fb-miss-copy.jpg", reposted(OTHER))
    await post(app, copy, message_id=113, group_id=3, acted_on=False)
    await post(app, image_server.add("fb-other.jpg", patterned(BLUE, seed=4)), message_id=114, acted_on=False)

    assert await ask(app, "/nailong confirm", reply_to=111) == SUPERUSER_REFUSAL
    assert await ask(app, "/奶龙 确认", reply_to=1112, role="member", user_id=SUPERUSER) == CONFIRMED_ZH
    await post(app, copy, message_id=115, group_id=3, acted_on=True)
    assert guard.corrections.pending(10) == [] and guard.corrections.counts() == {"nailong": 1, "other": 0}
    nothing = "No correction waits for a confirmation there."
    assert await ask(app, "/nailong confirm", reply_to=111, role="member", user_id=SUPERUSER) == nothing
    (record,) = [entry for entry in guard.audit.latest(10) if entry["action"] == "correction-confirmed"]
    assert record["after"] == {"verdicts": ["nailong"], "scopes": ["all"]}


async def test_a_confirmation_can_name_the_correction(app: App, guard, image_server) -> None:
    url = image_server.add("fb-confirm-id.jpg", OTHER)
    await post(app, url, message_id=116, acted_on=False)
    await ask(app, "/nailong miss", reply_to=116)
    (waiting,) = guard.corrections.pending(10)
    superuser = {"role": "member", "user_id": SUPERUSER, "group_id": 9}
    assert await ask(app, "/nailong confirm 12345", **superuser) == "A correction's id is 16 hex digits."
    assert await ask(app, f"/nailong confirm {waiting.id}", **superuser) == CONFIRMED
    await post(app, url, message_id=117, group_id=9, acted_on=True)


async def test_admins_of_two_groups_agreeing_act_in_every_group(app: App, guard, image_server) -> None:
    url = image_server.add("fb-agree.jpg", OTHER)
    for group, message in ((1, 118), (2, 119)):
        await post(app, url, message_id=message, group_id=group, acted_on=False)
    assert await ask(app, "/nailong miss", reply_to=118, group_id=1, user_id=21) == IS_NAILONG + HERE
    answer = await ask(app, "/nailong miss", reply_to=119, group_id=2, user_id=22)
    assert answer == IS_NAILONG + "\nAdmins of 2 groups agree: in every group."
    await post(app, url, message_id=120, group_id=3, acted_on=True)


async def test_reply_to_the_warning_about_a_repost_the_cache_decided(app: App, guard, image_server) -> None:
    url = image_server.add("fb-warning.jpg", NAILONG)
    await post(app, url, message_id=121, file=md5_name(NAILONG), acted_on=True)
    await post(app, url, message_id=122, file=md5_name(NAILONG), acted_on=True)  # from the cache: no bytes
    assert image_server.requests["/img/fb-warning.jpg"] == 1
    assert await ask(app, "/奶龙 误判", reply_to=1122) == NOT_NAILONG_ZH + HERE_ZH + STRIKE_BACK_ZH.format(1)
    await post(app, url, message_id=123, file=md5_name(NAILONG), acted_on=False)


async def test_a_correction_is_saved_as_training_data(app: App, guard, image_server) -> None:
    url = image_server.add("fb-saved.jpg", NAILONG)
    await post(app, url, message_id=131, acted_on=True)
    assert await ask(app, "/nailong wrong", reply_to=1131, user_id=77) == WRONG
    feedback = guard.corrections.feedback_dir
    # One group's word waits beside the training folders; a superuser's confirmation moves it in.
    assert not list((feedback / "other").iterdir())
    (waiting,) = (feedback / ".pending").iterdir()
    assert waiting.read_bytes() == NAILONG
    await ask(app, "/nailong confirm", reply_to=1131, role="member", user_id=SUPERUSER)
    (saved,) = (feedback / "other").iterdir()
    assert saved.read_bytes() == NAILONG and saved.suffix == ".jpg"
    with guard.corrections.csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    made, confirmed = rows[0], rows[-1]
    assert (made["action"], made["label"], made["group_id"], made["user_id"], made["scope"]) == (
        "add", "other", "1", "77", "1"
    )
    assert (confirmed["action"], confirmed["scope"], confirmed["confirmed_by"]) == ("add", "all", str(SUPERUSER))
    assert (confirmed["group_id"], confirmed["user_id"]) == ("1", "77")  # who made it and where stay
    assert float(made["score"]) >= 0.9 and made["model_version"] == "0.0.1"


async def test_only_the_contradicted_image_of_a_message_is_corrected(app: App, guard, image_server) -> None:
    urls = [image_server.add("fb-multi-other.jpg", OTHER), image_server.add("fb-multi-hit.jpg", NAILONG)]
    event = group_event([image_segment(u) for u in urls], message_id=141)
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), event)
        ctx.should_call_api("delete_msg", {"message_id": 141}, result=None)
        warning = Message([MessageSegment.at(5), MessageSegment.text(" " + WARNING)])
        ctx.should_call_api("send_group_msg", {"group_id": 1, "message": warning}, result={"message_id": 1141})
    assert await ask(app, "/nailong wrong", reply_to=1141) == WRONG
    assert [c.label for c in guard.corrections.pending(10)] == ["other"]
    assert guard.corrections.lookup(None, image_id=image_id(NAILONG), group_id=1) is not None
    assert guard.corrections.lookup(None, image_id=image_id(OTHER), group_id=1) is None


async def test_members_cannot_correct(app: App, guard, image_server) -> None:
    await post(app, image_server.add("fb-member.jpg", NAILONG), message_id=151, acted_on=True)
    for text in ("/nailong wrong", "/nailong miss", "/奶龙 误判", "/nailong undo", "/nailong feedback"):
        assert await ask(app, text, reply_to=151, role="member") == (
            "只有群主、管理员和超级用户可以使用这个命令。" if "奶龙" in text else REFUSAL
        )
    assert len(guard.corrections) == 0
    assert not list(guard.corrections.feedback_dir.rglob("*.jpg"))


async def test_undo_is_for_superusers_and_restores_the_model(app: App, guard, image_server) -> None:
    url = image_server.add("fb-undo.jpg", NAILONG)
    await post(app, url, message_id=161, acted_on=True)
    assert await ask(app, "/nailong wrong", reply_to=161) == WRONG
    assert await ask(app, "/nailong undo", reply_to=161) == SUPERUSER_REFUSAL
    assert await ask(app, "/奶龙 撤销", reply_to=161, role="owner") == SUPERUSER_REFUSAL_ZH
    assert len(guard.corrections) == 1
    await post(app, url, message_id=162, acted_on=False)
    assert await ask(app, "/奶龙 撤销", reply_to=1161, role="member", user_id=SUPERUSER) == UNDONE_ZH
    assert len(guard.corrections) == 0
    await post(app, url, message_id=163, acted_on=True)
    answer = await ask(app, "/nailong undo", reply_to=161, role="member", user_id=SUPERUSER)
    assert answer == "That image has no correction."


async def test_feedback_reports_counts_and_the_folder(app: App, guard, image_server) -> None:
    await post(app, image_server.add("fb-count-1.jpg", NAILONG), message_id=171, acted_on=True)
    await post(app, image_server.add("fb-count-2.jpg", OTHER), message_id=172, acted_on=False)
    await ask(app, "/nailong wrong", reply_to=171)
    await ask(app, "/nailong miss", reply_to=172)
    assert await ask(app, "/nailong feedback", reply_to=None) == SUPERUSER_REFUSAL
    answer = await ask(app, "/奶龙 反馈", reply_to=None, role="member", user_id=SUPERUSER)
    # The folder is for the console and the log: no server path in a group.
    assert answer == (
        "纠错图片：对所有群生效的是奶龙 0 张，不是奶龙 0 张；只在一个群生效、等待确认的 2 张（目录见控制台的「从纠错中学习」和日志，"
        "重新训练时加入 trainer 配置的 data: 列表）"
    )


async def test_what_cannot_be_corrected_gets_one_line(app: App, guard, image_server) -> None:
    assert await ask(app, "/nailong miss", reply_to=None) == (
        "Send this as a reply to the image's message or to the bot's warning."
    )
    assert await ask(app, "/nailong wrong", reply_to=None) == NO_RECENT_HIT
    assert await ask(app, "/nailong miss", reply_to=999_999) == NOT_FOUND
    await post(app, image_server.add("fb-elsewhere.jpg", NAILONG), message_id=181, group_id=5, acted_on=True)
    assert await ask(app, "/nailong wrong", reply_to=181, group_id=6) == NOT_FOUND  # another group's message
    (entry,) = guard.recent.lookup(181)
    (guard.recent.directory / "images" / entry.sha256).unlink()
    answer = await ask(app, "/nailong wrong", reply_to=181, group_id=5)
    assert answer == "That image was dropped from the recent images."
    assert len(guard.corrections) == 0


async def test_wrong_without_a_reply_corrects_the_groups_latest_hit(app: App, guard, image_server) -> None:
    # In a recall-only group the recalled message is gone and there is no warning: nothing to reply to.
    url = image_server.add("fb-latest.jpg", NAILONG)
    await post(app, url, message_id=191, file=md5_name(NAILONG), acted_on=True)
    await post(app, image_server.add("fb-later-miss.jpg", OTHER), message_id=192, acted_on=False)
    other_group = image_server.add("fb-other-group.jpg", UNRELATED_NAILONG)
    await post(app, other_group, message_id=193, group_id=2, acted_on=True)

    answer = await ask(app, "/奶龙 误判", reply_to=None)
    posted_at = clock_text(guard.recent.lookup(191)[0].stored_at)
    assert answer == (
        f"{NOT_NAILONG_ZH}{HERE_ZH}\n（本群最近一次未纠错的命中：tester {posted_at} 发的图片）{STRIKE_BACK_ZH.format(0)}"
    )
    correction = guard.corrections.lookup(None, image_id=image_id(NAILONG), group_id=1)
    assert correction is not None and correction.label == "other" and correction.group_id == 1
    assert len(guard.corrections) == 1  # not the later miss, not the other group's hit
    await post(app, url, message_id=194, file=md5_name(NAILONG), acted_on=False)
    assert await ask(app, "/nailong wrong", reply_to=None, group_id=3) == NO_RECENT_HIT


async def test_corrections_survive_a_restart(app: App, start_guard, image_server, tmp_path) -> None:
    data_dir = tmp_path / "kept"
    await start_guard(data_dir)
    url = image_server.add("fb-restart.jpg", NAILONG)
    await post(app, url, message_id=191, acted_on=True)
    assert await ask(app, "/nailong wrong", reply_to=191) == WRONG
    restarted = await start_guard(data_dir)
    assert [c.label for c in restarted.corrections.pending(10)] == ["other"]
    await post(app, url, message_id=192, acted_on=False)
    # The recent images survive as well: a reply to a message from before the restart still works.
    assert await ask(app, "/nailong undo", reply_to=191, role="member", user_id=SUPERUSER) == UNDONE


async def test_recent_image_limits_come_from_the_settings(app: App, start_guard, image_server) -> None:
    images = [patterned(BLUE, seed) for seed in (10, 11, 12)]
    guard = await start_guard(nailong_recent_max_images=2, nailong_recent_max_age_hours=2)
    assert (guard.recent.max_images, guard.recent.max_age) == (2, 7200)
    for message_id, data in enumerate(images, start=201):
        url = image_server.add(f"fb-limit-{message_id}.jpg", data)
        await post(app, url, message_id=message_id, acted_on=False)
    assert len(guard.recent) == 2
    assert await ask(app, "/nailong miss", reply_to=201) == NOT_FOUND  # the oldest went first
    assert await ask(app, "/nailong miss", reply_to=203) == IS_NAILONG + HERE

    guard = await start_guard(nailong_recent_max_bytes=len(images[0]) + len(images[1]) - 1)
    for message_id, data in enumerate(images[:2], start=211):
        url = image_server.add(f"fb-bytes-{message_id}.jpg", data)
        await post(app, url, message_id=message_id, acted_on=False)
    assert len(guard.recent) == 1 and guard.recent.total_bytes == len(images[1])

    guard = await start_guard(nailong_recent_max_images=0)
    await post(app, image_server.add("fb-none.jpg", images[0]), message_id=221, acted_on=False)
    assert len(guard.recent) == 0


async def test_a_full_corrections_folder_refuses_with_one_line(app: App, guard, image_server) -> None:
    guard.corrections.max_bytes = 1024  # below one image: nothing retired to delete
    await post(app, image_server.add("fb-full.jpg", NAILONG), message_id=221, acted_on=True)
    assert await ask(app, "/nailong wrong", reply_to=221) == (
        "The corrections folder is full: nothing recorded; tell the bot's operator."
    )
    assert len(guard.corrections) == 0
