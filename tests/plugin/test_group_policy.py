"""What group admins set beyond on/off: who is exempt, strikes and escalating mutes, the group's own
warning, the observe mode; the stores behind them (old files load, restarts keep them, bad files are
set aside) and the chat commands (aliases, bad input changes nothing, members are refused)."""

from __future__ import annotations

import asyncio
import json

import pytest
from nonebot.adapters.onebot.v11 import Message, MessageSegment
from nonebug import App
from pydantic import ValidationError

from nailong_bot.config import Config
from nailong_bot.i18n import lang
from nailong_bot.setting_input import (
    MAX_ECHO_CHARS,
    InvalidSetting,
    duration_text,
    parse_duration,
    parse_members,
    parse_mute,
    parse_qq,
    parse_threshold,
)
from nailong_bot.stats import Counts
from nailong_bot.storage import MUTE_OFF, Action, GroupSettings, MutePolicy, SettingsStore
from nailong_bot.strikes import StrikeStore
from nailong_bot.warning import TemplateError, parse_template, render, strike_note

from nailong_testkit import SUPERUSER, YELLOW, group_event, image_segment, still, text_segment
from nonebug_chat import WARNING, ask, connect

REFUSAL = "Only the group owner, admins and superusers can use this."
REFUSAL_ZH = "只有群主、管理员和超级用户可以使用这个命令。"
DEFAULTS = GroupSettings(enabled=True, threshold=0.7, action=Action.BOTH)
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# --- storage ---------------------------------------------------------------------------------------


async def test_a_settings_file_of_the_previous_version_loads_with_the_new_defaults(tmp_path) -> None:
    (tmp_path / "settings.json").write_text(
        '{"version": 1, "groups": {"5": {"enabled": false, "threshold": 0.9, "action": "recall"}}}'
    )
    store = SettingsStore(tmp_path, DEFAULTS)
    store.load()
    settings = store.get(5)
    assert (settings.enabled, settings.threshold, settings.action) == (False, 0.9, Action.RECALL)
    assert (settings.exempt_admins, settings.allowed, settings.mute) == (True, frozenset(), MUTE_OFF)
    assert settings.reply_text == DEFAULTS.reply_text
    assert not list(tmp_path.glob("settings.json.corrupt-*"))


async def test_new_settings_round_trip(tmp_path) -> None:
    store = SettingsStore(tmp_path, DEFAULTS)
    store.load()
    await store.update(
        5, exempt_admins=False, allowed=(222222, 111111), mute=MutePolicy(3, 600), reply_text="{user} 别发",
        action=Action.OBSERVE,
    )
    assert json.loads(store.path.read_text())["groups"]["5"] == {
        "action": "observe", "exempt_admins": False, "allowed": [222222, 111111],
        "mute": {"after": 3, "seconds": 600}, "reply_text": "{user} 别发",
    }  # fmt: skip
    reloaded = SettingsStore(tmp_path, DEFAULTS)
    reloaded.load()
    assert reloaded.get(5) == GroupSettings(
        enabled=True, threshold=0.7, action=Action.OBSERVE, exempt_admins=False,
        allowed=frozenset({111111, 222222}), mute=MutePolicy(3, 600), reply_text="{user} 别发",
    )  # fmt: skip
    await reloaded.update(5, reply_text=None)  # reset: the global text again
    assert reloaded.get(5).reply_text == DEFAULTS.reply_text


@pytest.mark.parametrize(
    "entry",
    [
        {"reply_text": "{user.__class__}"},
        {"reply_text": 5},
        {"mute": {"after": 0, "seconds": 60}},
        {"mute": "off"},
        {"allowed": ["123"]},
        {"exempt_admins": "yes"},
    ],
    ids=["template", "text-type", "mute-after", "mute-type", "allowed", "exempt"],
)
async def test_a_bad_new_setting_sets_the_file_aside(tmp_path, entry: dict) -> None:
    (tmp_path / "settings.json").write_text(json.dumps({"version": 1, "groups": {"1": entry}}))
    store = SettingsStore(tmp_path, DEFAULTS)
    store.load()
    assert store.get(1) == DEFAULTS
    assert list(tmp_path.glob("settings.json.corrupt-*"))


def test_a_counts_file_of_the_previous_version_loads(tmp_path) -> None:
    from datetime import date

    from nailong_bot.stats import GroupCounts

    old = {"checked": 3, "hits": 1, "recalls": 1, "failed_recalls": 0, "corrections": 0}
    (tmp_path / "stats.json").write_text(json.dumps({"version": 1, "days": {date.today().isoformat(): {"1": old}}}))
    counts = GroupCounts(tmp_path)
    counts.load()
    assert counts.over_days(1, 1) == Counts(checked=3, hits=1, recalls=1)


def test_mutes_double_from_the_policys_strike_up_to_the_cap() -> None:
    policy = MutePolicy(after=3, seconds=600)
    assert [policy.duration(strike, cap=3000) for strike in range(1, 7)] == [0, 0, 600, 1200, 2400, 3000]
    assert policy.duration(10_000, cap=3000) == 3000
    assert MUTE_OFF.duration(5, cap=3000) == 0


# --- strikes ---------------------------------------------------------------------------------------


async def test_strikes_count_in_a_rolling_window_and_survive_a_restart(tmp_path) -> None:
    clock = Clock()
    strikes = StrikeStore(tmp_path, window=24 * HOUR, clock=clock)
    strikes.load()
    assert strikes.add(1, 5, message_id=100) == 1
    clock.now += 20 * HOUR
    assert strikes.add(1, 5, message_id=101) == 2
    assert strikes.add(2, 5, message_id=102) == 1  # per group
    assert strikes.add(1, 6, message_id=103) == 1  # per member
    await strikes.save()
    restarted = StrikeStore(tmp_path, window=24 * HOUR, clock=clock)
    restarted.load()
    assert restarted.count(1, 5) == 2 and restarted.top(1) == [(5, 2), (6, 1)]
    clock.now += 5 * HOUR  # the first strike is now 25 h old
    assert restarted.count(1, 5) == 1
    assert restarted.add(1, 5, message_id=104) == 2


async def test_a_strike_is_taken_back_by_its_message(tmp_path) -> None:
    strikes = StrikeStore(tmp_path, window=24 * HOUR)
    strikes.load()
    strikes.add(1, 5, message_id=100)
    strikes.add(1, 5, message_id=101)
    strikes.note_mute(1, 101, 600)
    (removed,) = await strikes.remove(1, {101})
    assert (removed.user_id, removed.message_id, removed.muted) == (5, 101, 600)
    assert await strikes.remove(2, {100}) == []  # another group's message of the same id
    assert strikes.count(1, 5) == 1
    reloaded = StrikeStore(tmp_path, window=24 * HOUR)
    reloaded.load()
    assert reloaded.count(1, 5) == 1


@pytest.mark.parametrize("content", [b"{oops", b'{"strikes": {}}', b'{"strikes": [{"group_id": "x"}]}'])
def test_a_corrupted_strikes_file_is_set_aside(tmp_path, content: bytes, caplog_loguru) -> None:
    (tmp_path / "strikes.json").write_bytes(content)
    strikes = StrikeStore(tmp_path, window=24 * HOUR)
    strikes.load()
    assert strikes.top(1) == []
    (aside,) = tmp_path.glob("strikes.json.corrupt-*")
    assert aside.read_bytes() == content
    assert any("strikes file corrupted" in line for line in caplog_loguru)


# --- the warning template and typed values ------------------------------------------------------------


def test_a_template_renders_its_placeholders() -> None:
    message = render("{user} 第 {strikes} 次了，得分 {score}，{{别}}", user_id=12345, score=0.987, strikes=3)
    assert message == Message(
        [MessageSegment.at(12345), MessageSegment.text(" 第 3 次了，得分 0.99，{别}")]
    )


@pytest.mark.parametrize(
    "template",
    ["{user.__class__}", "{user[0]}", "{0}", "{}", "{score:>99999}", "{user!r}", "{name}", "{", "}", "a{b", "",
     "x" * 301],  # fmt: skip
)
def test_unusable_templates_are_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(template)


def test_typed_values() -> None:
    assert [parse_duration(text) for text in ("10m", "10", "1h", "1.5h", "600s", "1d", "10分钟", "2小时", "1天")] == [
        600, 600, 3600, 5400, 600, 86400, 600, 7200, 86400
    ]
    assert [duration_text(seconds) for seconds in (600, 5400, 86400, 90)] == ["10m", "90m", "1d", "90s"]
    for bad in ("10x", "-5m", "30s", "31d", "m", "1e3"):
        with pytest.raises(InvalidSetting):
            parse_duration(bad)
    assert parse_mute(["3", "10m"]) == MutePolicy(3, 600) and parse_mute(["关"]) == MUTE_OFF
    assert parse_mute(["3", "10", "分钟"]) == MutePolicy(3, 600)
    for bad in (["0", "10m"], ["3"], ["x", "10m"], ["3", "10m", "1"], []):
        with pytest.raises(InvalidSetting):
            parse_mute(bad)
    assert parse_members("222222, 111111，333333 111111") == (111111, 222222, 333333)
    with pytest.raises(InvalidSetting, match="not a QQ number: abc"):
        parse_members("111111 abc")


@pytest.mark.parametrize(
    ("parse", "text", "says"),
    [
        (parse_duration, "1" * 400, "a mute lasts from 1 minute to 30 days"),
        (parse_duration, "9" * 21 + "m", "a mute lasts from 1 minute to 30 days"),
        (parse_threshold, "9" * 400, "threshold must be a number within 0..1"),
        (parse_threshold, "0." + "5" * 50_000, "threshold must be a number within 0..1"),
        (parse_qq, "0", "not a QQ number: 0"),
        (parse_qq, "9999", "not a QQ number: 9999"),
        (parse_qq, "4294967296", "not a QQ number: 4294967296"),
        (parse_qq, "12345678901234567890", "not a QQ number: 12345678901234567890"),
        (parse_qq, "5" * 5000, "not a QQ number: " + "5" * MAX_ECHO_CHARS + "… (5000 characters)"),
        (parse_members, "123456 0", "not a QQ number: 0"),
    ],
    ids=["400-digits", "21-digits", "threshold-400-digits", "threshold-50000", "qq-0", "qq-4-digits",
         "qq-2**32", "qq-20-digits", "qq-5000-digits", "members-0"],
)  # fmt: skip
def test_oversized_and_out_of_range_values_are_refused_briefly(parse, text: str, says: str) -> None:
    """Issue 21: a 400-digit duration raised OverflowError (a 500 in the console, no answer in chat),
    QQ 0 and 20 digits were stored, and refusals repeated the whole input."""
    with pytest.raises(InvalidSetting) as refused:
        parse(text)
    shown = lang("en-US").text(refused.value.phrase)
    assert says in shown and len(shown) < 200


def test_qq_range_edges() -> None:
    assert parse_qq("10000") == 10000 and parse_qq(" 4294967295 ") == 4294967295


async def test_stored_allow_list_entries_out_of_range_are_dropped_and_the_rest_kept(tmp_path, caplog_loguru) -> None:
    entry = {"allowed": [0, 12345678901234567890, 123456], "threshold": 0.6, "mute": {"after": 2, "seconds": 600}}
    (tmp_path / "settings.json").write_text(json.dumps({"version": 1, "groups": {"7": entry}}))
    store = SettingsStore(tmp_path, DEFAULTS)
    store.load()
    settings = store.get(7)
    assert (settings.allowed, settings.threshold, settings.mute) == ({123456}, 0.6, MutePolicy(2, 600))
    assert not list(tmp_path.glob("settings.json.corrupt-*"))
    assert any("allow-list entries that are not QQ numbers" in line and "group=7" in line for line in caplog_loguru)


# --- chat commands -----------------------------------------------------------------------------------


async def test_exempt_admins_switch(app: App, guard) -> None:
    assert (await ask(app, "/nailong exempt-admins off")) == "Set: owner, admins and superusers are checked too"
    assert guard.store.get(1).exempt_admins is False
    assert (await ask(app, "/奶龙 豁免管理 开")) == "已设置：群主、管理员和超级用户免检"
    assert guard.store.get(1).exempt_admins is True
    assert (await ask(app, "/nailong exempt-admins maybe")).startswith("Nothing changed: use on or off: 'maybe'")
    assert guard.store.get(1).exempt_admins is True


async def test_allow_list_by_mention_and_number(app: App, guard) -> None:
    answer = await ask(app, "/nailong allow ", mentions=(123456,))
    assert answer == "Now exempt: 123456 (1 on the list)"
    assert await ask(app, "/奶龙 豁免 654321 777777") == "已豁免：654321, 777777（名单共 3 人）"
    assert await ask(app, "/nailong disallow 777777") == (
        "No longer exempt: 777777 (2 on the list)"
    )
    assert await ask(app, "/nailong disallow 999999") == "Not on the allow-list: 999999"
    assert await ask(app, "/奶龙 豁免名单") == "豁免名单（2 人）：123456, 654321"
    assert (await ask(app, "/nailong allow abc")).startswith("Nothing changed: not a QQ number: abc")
    assert (await ask(app, "/nailong allow")).startswith("Allow-list (2): 123456, 654321\nUsage: /nailong allow")
    assert guard.store.get(1).allowed == {123456, 654321}
    assert await ask(app, "/nailong allowed", group_id=2) == "The allow-list is empty."


async def test_a_refused_value_is_explained_in_the_commands_language_only(app: App, guard) -> None:
    """Issue 24: refusals said everything twice, "阈值必须… / threshold must…"."""
    chinese = await ask(app, "/奶龙 阈值 abc")
    assert chinese.startswith("未更改：阈值必须是 0 到 1 之间的数字") and "'abc'" in chinese
    english = await ask(app, "/nailong threshold abc")
    assert english.startswith("Nothing changed: threshold must be a number within 0..1") and "'abc'" in english
    assert not any("\u4e00" <= c <= "\u9fff" for c in english), english
    assert not any(c.isascii() and c.isalpha() for c in chinese.split("\n")[0].replace("abc", "")), chinese
    long = await ask(app, "/奶龙 豁免 " + "5" * 4000)
    assert "（共 4000 字）" in long and "characters" not in long
    assert guard.store.get(1).threshold == 0.7 and guard.store.get(1).allowed == frozenset()


async def test_oversized_chat_input_gets_a_short_answer(app: App, guard) -> None:
    """Issue 21: these got no answer (an exception) or echoed 50,000 characters back."""
    mention = await ask(app, "/nailong allow ", mentions=(int("5" * 4000),))
    assert "not a QQ number: 5555" in mention and "… (4000 characters)" in mention
    assert len(mention) < 400
    assert "not a QQ number: 0" in await ask(app, "/nailong allow ", mentions=(0,))
    assert "a mute lasts from 1 minute to 30 days" in await ask(app, "/nailong mute 3 " + "1" * 400)
    assert len((await ask(app, "/nailong " + "x" * 50_000)).splitlines()[0]) < 200
    assert len(await ask(app, "/nailong action " + "y" * 50_000)) < 300
    assert guard.store.get(1).allowed == frozenset() and not guard.store.get(1).mute.mutes


def test_the_strike_note_and_default_warning_are_in_the_groups_language() -> None:
    """What group members read follows NAILONG_LANGUAGE (Chinese unless set), never both at once."""
    note = dict(window_seconds=24 * 3600, mute_after=3)
    assert strike_note(lang("zh-CN"), 2, muted_seconds=0, **note) == "（24 小时内第 2 次，第 3 次起禁言）"
    assert strike_note(lang("en-US"), 3, muted_seconds=600, **note) == " (strike 3 within 24 h: muted for 10 min)"
    assert strike_note(lang("en-US"), 4, window_seconds=5400, mute_after=3, muted_seconds=0) == (
        " (strike 4 within 90 min)"
    )
    assert Config().nailong_language == "zh-CN" and Config(nailong_language="en").nailong_language == "en-US"
    # The default warning group members read is in that language too, unless NAILONG_REPLY_TEXT is set.
    assert Config().default_warning == "检测到奶龙图片，请不要发奶龙哦～"
    assert Config(nailong_language="en-US").default_warning == "Nailong image detected, please don't post it."
    assert Config(nailong_language="en-US", nailong_reply_text="{user} 别发").default_warning == "{user} 别发"
    with pytest.raises(ValidationError):
        Config(nailong_reply_text="{nick}")
    with pytest.raises(ValidationError):
        Config(nailong_language="fr")


async def test_mute_policy(app: App, guard) -> None:
    assert await ask(app, "/nailong mute 3 10m") == (
        "Mute set: from strike 3 within 24 h: muted for 10 min, doubled each further strike, at most 1 d"
    )
    assert guard.store.get(1).mute == MutePolicy(3, 600)
    assert (await ask(app, "/奶龙 禁言 2 1小时")).startswith("禁言已设为：24 小时内第 2 次起禁言 1 小时")
    for bad in ("/nailong mute 3", "/nailong mute 0 10m", "/nailong mute 3 10x", "/nailong mute 3 40d"):
        assert "Usage: /nailong mute 3 10m" in await ask(app, bad)
    assert guard.store.get(1).mute == MutePolicy(2, 3600)
    assert await ask(app, "/奶龙 禁言 关") == "禁言已设为：不禁言"
    assert guard.store.get(1).mute == MUTE_OFF


async def test_warning_text(app: App, guard) -> None:
    answer = await ask(app, "/nailong text {user}  请不要发奶龙（第 {strikes} 次，{score}）")
    assert answer == "Warning set to: {user}  请不要发奶龙（第 {strikes} 次，{score}）"
    assert guard.store.get(1).reply_text == "{user}  请不要发奶龙（第 {strikes} 次，{score}）"
    for bad, reason in (
        ("{user.__class__}", "unknown placeholder {user.__class__}"),
        ("{nick} 别发", "unknown placeholder {nick}"),
        ("别发 }", "a lone } at character 4"),
        ("x" * 301, "at most 300 characters"),
    ):
        answer = await ask(app, f"/nailong text {bad}")
        assert answer.startswith("Nothing changed: ") and reason in answer
    assert guard.store.get(1).reply_text == "{user}  请不要发奶龙（第 {strikes} 次，{score}）"
    assert await ask(app, "/奶龙 文案 重置") == f"警告已恢复默认：{WARNING}"
    assert guard.store.get(1).reply_text == WARNING
    assert (await ask(app, "/nailong text")).startswith(
        f"Now: {WARNING} (the global default, NAILONG_REPLY_TEXT in .env)\nUsage: /nailong text"
    )


async def test_observe_action(app: App, guard) -> None:
    assert await ask(app, "/奶龙 动作 观察") == (
        "动作已设为：观察：只统计，不处理"
    )
    assert guard.store.get(1).action is Action.OBSERVE


@pytest.mark.parametrize(
    "text",
    [
        "/nailong exempt-admins off", "/nailong allow 123456", "/nailong disallow 123456", "/nailong allowed",
        "/nailong mute 3 10m", "/nailong mute off", "/nailong text {user} 走开", "/nailong text reset",
        "/nailong action observe", "/奶龙 禁言 3 10分钟", "/奶龙 豁免 123456", "/奶龙 文案 走开",
    ],
)  # fmt: skip
async def test_members_cannot_change_these(app: App, guard, text: str) -> None:
    before = guard.store.get(1)
    assert await ask(app, text, role="member") == (REFUSAL_ZH if "奶龙" in text else REFUSAL)
    assert guard.store.get(1) == before and not guard.store.path.exists()


async def test_status_shows_everything(app: App, guard) -> None:
    await ask(app, "/nailong exempt-admins off")
    await ask(app, "/nailong allow 123456")
    await ask(app, "/nailong mute 3 10m")
    await ask(app, "/nailong text {user} 走开")
    guard.strikes.add(1, 777777, message_id=1)
    guard.stats.add(1, exempt=4, observed=1)
    lines = (await ask(app, "/nailong status")).splitlines()
    assert lines[5:] == [
        "Exempt: owner, admins and superusers are checked too; allow-list: 123456",
        "Mute: from strike 3 within 24 h: muted for 10 min, doubled each further strike, at most 1 d",
        "Warning: {user} 走开",
        "Today: 4 images of exempt senders, 1 hits observed",
        "Review: off",
        "Most strikes: 777777 ×1",
    ]


# --- the image path -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "user_id"), [("owner", 5), ("admin", 5), ("member", SUPERUSER)], ids=["owner", "admin", "superuser"]
)
async def test_owner_admins_and_superusers_are_not_checked(app: App, guard, image_server, role, user_id) -> None:
    url = image_server.add(f"exempt-{role}.jpg", still(YELLOW))
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([image_segment(url)], role=role, user_id=user_id))
    assert image_server.requests[f"/img/exempt-{role}.jpg"] == 0
    assert guard.stats.over_days(1, 1) == Counts(exempt=1)


async def test_admins_are_checked_when_the_group_says_so(app: App, guard, image_server) -> None:
    await guard.store.update(1, exempt_admins=False)
    url = image_server.add("checked-admin.jpg", still(YELLOW))
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([image_segment(url)], role="admin", message_id=61))
        ctx.should_call_api("delete_msg", {"message_id": 61}, result=None)
        warning = Message([MessageSegment.at(5), MessageSegment.text(" " + WARNING)])
        ctx.should_call_api("send_group_msg", {"group_id": 1, "message": warning}, result={"message_id": 1})


async def test_an_allowed_member_is_not_checked_even_when_admins_are(app: App, guard, image_server) -> None:
    await guard.store.update(1, exempt_admins=False, allowed=(5,))
    url = image_server.add("allowed-member.jpg", still(YELLOW))
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([image_segment(url)], user_id=5))
    assert image_server.requests["/img/allowed-member.jpg"] == 0
    assert guard.stats.over_days(1, 1).exempt == 1


async def test_observe_decides_counts_and_does_nothing(app: App, guard, image_server) -> None:
    await guard.store.update(1, action=Action.OBSERVE, mute=MutePolicy(1, 600))
    url = image_server.add("observed.jpg", still(YELLOW))
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([image_segment(url)], message_id=62))
    assert image_server.requests["/img/observed.jpg"] == 1
    assert guard.stats.over_days(1, 1) == Counts(checked=1, hits=1, observed=1)
    assert guard.strikes.count(1, 5) == 0  # a trial earns no strike
    assert [entry.hit for entry in guard.recent.lookup(62)] == [True]  # shown in the console


@pytest.mark.parametrize(
    ("template", "says_strikes"), [("{user} 第 {strikes} 次（{score}）", True), ("{user} 别发（{score}）", False)],
    ids=["template-says-the-strike", "strike-line-added"],
)
async def test_third_strike_mutes_with_the_groups_words(
    app: App, guard, image_server, template: str, says_strikes: bool
) -> None:
    await guard.store.update(1, mute=MutePolicy(3, 600), reply_text=template)
    url = image_server.add("strikes.jpg", still(YELLOW))
    async with app.test_matcher() as ctx:
        bot = connect(ctx)
        for strike, message_id in ((1, 71), (2, 72), (3, 73)):
            ctx.receive_event(bot, group_event([image_segment(url)], user_id=8, message_id=message_id))
            ctx.should_call_api("delete_msg", {"message_id": message_id}, result=None)
            if strike == 3:
                ctx.should_call_api("set_group_ban", {"group_id": 1, "user_id": 8, "duration": 600}, result=None)
                note = "（24 小时内第 3 次，已禁言 10 分钟）"
            else:
                note = f"（24 小时内第 {strike} 次，第 3 次起禁言）"
            # Recalled, so not quoted; the group's own words say which strike, or the strike line does (once).
            words = f" 第 {strike} 次（1.00）" if says_strikes else " 别发（1.00）"
            warning = Message([MessageSegment.at(8), MessageSegment.text(words)])
            if not says_strikes:
                warning += MessageSegment.text(note)
            sent = {"message_id": 1000 + message_id}
            ctx.should_call_api("send_group_msg", {"group_id": 1, "message": warning}, result=sent)
    assert guard.strikes.top(1) == [(8, 3)]
    # "wrong" on the third takes its strike back and lifts its mute.
    from nailong_bot.commands import nailong_command

    answers: list[str] = []
    async with app.test_matcher(nailong_command) as ctx:
        bot = connect(ctx)
        ctx.receive_event(bot, group_event([text_segment("/nailong wrong")], role="admin", reply_to=1073))
        ctx.should_call_api("set_group_ban", {"group_id": 1, "user_id": 8, "duration": 0}, result=None)

        async def capture(event, message, **kwargs):
            answers.append(str(message))

        bot.send = capture  # type: ignore[method-assign]
    assert answers[0].endswith(
        "Strike taken back from member 8 (2 left), mute lifted"
    )
    assert guard.strikes.count(1, 8) == 2


def count_writes(monkeypatch) -> list[int]:
    """The bytes of every strikes write from now on (appends to the journal and whole files alike)."""
    from nailong_bot import persist

    writes: list[int] = []
    append, write = persist.append, persist.write_atomically

    def appended(path, text, **kwargs):
        writes.append(len(text.encode()))
        append(path, text, **kwargs)

    def written(path, data, **kwargs):
        writes.append(len(data))
        write(path, data, **kwargs)

    monkeypatch.setattr(persist, "append", appended)
    monkeypatch.setattr(persist, "write_atomically", written)
    return writes


async def test_strike_saves_in_a_flood_coalesce_and_lose_nothing(tmp_path, monkeypatch) -> None:
    strikes = StrikeStore(tmp_path, window=24 * HOUR)
    strikes.load()
    writes = count_writes(monkeypatch)

    async def hit(message_id: int) -> None:
        strikes.add(1, 5, message_id)
        await strikes.save()

    await asyncio.gather(*(hit(message_id) for message_id in range(50)))
    assert len(writes) < 50
    reloaded = StrikeStore(tmp_path, window=24 * HOUR)
    reloaded.load()
    assert reloaded.count(1, 5) == 50


async def test_a_hit_among_thousands_of_strikes_writes_one_short_line(tmp_path, monkeypatch) -> None:
    """Issue 21: strikes.json was rewritten whole on every hit (3 MB at 30,000 strikes)."""
    strikes = StrikeStore(tmp_path, window=24 * HOUR)
    strikes.load()
    for message_id in range(3000):
        strikes.add(1, 100_000 + message_id % 300, message_id)
    await strikes.save()
    writes = count_writes(monkeypatch)
    assert strikes.add(1, 100_000, 5000) == 11
    strikes.note_mute(1, 5000, 600)
    await strikes.save()
    (written,) = writes
    assert written < 400
    reloaded = StrikeStore(tmp_path, window=24 * HOUR)
    reloaded.load()
    assert reloaded.count(1, 100_000) == 11 and len(reloaded.top(1, 1000)) == 300
    assert [s.muted for s in await reloaded.remove(1, {5000})] == [600]


async def test_the_journal_is_folded_into_the_snapshot_and_replays_safely(tmp_path, caplog_loguru) -> None:
    clock = Clock()
    strikes = StrikeStore(tmp_path, window=24 * HOUR, clock=clock)
    strikes.load()
    for message_id in range(1200):  # past the journal's 1,000 lines: one save folds it
        strikes.add(2, 100_000 + message_id % 7, message_id)
        if message_id % 100 == 0:
            await strikes.save()
    await strikes.save()
    # Folded at the save that took the journal to as many lines as strikes (1,001), appended after.
    assert len(json.loads(strikes.path.read_text())["strikes"]) == 1001
    assert len(strikes.journal_path.read_bytes().splitlines()) == 199
    snapshot = strikes.path.read_bytes()
    strikes.add(2, 100_000, 5000)
    strikes.note_mute(2, 5000, 600)
    await strikes.remove(2, {0, 1})
    journal = strikes.journal_path.read_bytes()
    # A crash right after a fold wrote its snapshot leaves the old journal beside it: replaying it
    # again changes nothing. A line cut short by a crash is skipped.
    strikes.journal_path.write_bytes(journal + journal + b'{"add": {"group_id": 2, "us')
    reloaded = StrikeStore(tmp_path, window=24 * HOUR, clock=clock)
    reloaded.load()
    assert sum(n for _, n in reloaded.top(2, 10)) == 1200 + 1 - 2 and strikes.path.read_bytes() == snapshot
    assert reloaded.count(2, 100_000) == strikes.count(2, 100_000)
    assert [s.muted for s in await reloaded.remove(2, {5000})] == [600]
    assert any("1 unreadable strike journal lines skipped" in line for line in caplog_loguru)
    clock.now += 25 * HOUR
    assert reloaded.top(2) == [] and reloaded.groups() == set()
