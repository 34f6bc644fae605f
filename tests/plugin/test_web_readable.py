"""What the console shows for stored records: audit entries as readable lines in the page's language
(nicknames, local time), and the hits-per-day chart drawn as SVG on the server."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from nailong_bot.i18n import lang
from nailong_bot.stats import Counts
from nailong_bot.web.chart import hits_chart
from nailong_bot.web.readable import audit_line, local_time, operator, time_zone, what

ZH, EN = lang("zh-CN"), lang("en-US")


def entry(action: str, before: object, after: object, operator: str = "qq:5 (小王)", client: str = "group:303") -> dict:
    return {"time": "2026-12-07T16:20:05+00:00", "operator": operator, "client": client, "action": action,
            "before": before, "after": after}  # fmt: skip


def test_a_settings_change_reads_as_the_issue_asks() -> None:
    change = entry("group-settings", {"group_id": 303, "threshold": 0.5113}, {"group_id": 303, "threshold": 0.7})
    assert what(change, ZH) == "阈值 0.5113 → 0.7"
    assert what(change, EN) == "threshold 0.5113 → 0.7"
    line = audit_line(change, ZH)
    local = datetime.fromisoformat("2026-12-07T16:20:05+00:00").astimezone().strftime("%m-%d %H:%M")
    assert f'<span class="what">阈值 0.5113 → 0.7</span> <span class="meta" title="qq:5 (小王) group:303 ' in line
    assert f">小王 · 群 303 · {local}</span>" in line


def test_every_setting_and_action_has_words() -> None:
    before = {"group_id": 1, "enabled": True, "action": "both", "exempt_admins": True, "allowed": [],
              "mute": {"after": 1, "seconds": 0}, "reply_text": "检测到奶龙图片"}  # fmt: skip
    after = {"group_id": 1, "enabled": False, "action": "observe", "exempt_admins": False, "allowed": [1, 2],
             "mute": {"after": 3, "seconds": 600}, "reply_text": None}  # fmt: skip
    assert what(entry("group-settings", before, after), ZH) == (
        "检测 已开启 → 已关闭；动作 撤回并回复 → 观察：只统计，不处理；管理员免检 已开启 → 已关闭；豁免名单 无 → 1 2；"
        "禁言 不禁言 → 第 3 次起禁言 10m；警告 “检测到奶龙图片” → 默认"
    )
    assert what(entry("correction", {"message_id": 8001, "verdict": "nailong"}, {"verdict": "other"}), EN) == (
        "correction, message 8001: nailong → not nailong"
    )
    assert what(entry("correction-undone", {"verdicts": ["other"]}, {"verdict": "model"}), ZH) == "撤销纠错：不是奶龙 → 由模型判断"
    assert what(entry("rollback", {"model": "r1"}, {"model": "r0"}), ZH) == "模型回退 r1 → r0"
    assert what(entry("refresh-started", {"model": "r0"}, None), EN) == "refresh started (from r0)"
    ended = entry("refresh-ended", {"model": "r0"}, {"outcome": "failed", "model": "r0", "candidate": "r1"})
    assert what(ended, ZH) == "模型更新结束：未通过检查，模型未变，使用 r0"
    # An action this console does not know yet still shows what it changed.
    assert what(entry("review-label", {"id": 1}, {"label": "other"}), EN) == 'review-label: {"id":1} → {"label":"other"}'


def test_operators_by_nickname_and_console_name() -> None:
    assert operator("qq:5 (群主小王)", ZH) == "群主小王"
    assert operator("qq:5", ZH) == "QQ 5"
    assert operator("web:ops", ZH) == "ops（控制台）" and operator("web:ops", EN) == "ops (console)"
    assert operator("web", EN) == "console" and operator("auto", ZH) == "自动更新"
    assert operator("someone else", ZH) == "someone else"


def test_times_are_the_servers_local_time() -> None:
    moment = datetime(2026, 12, 7, 8, 20, tzinfo=datetime.now().astimezone().tzinfo)
    assert local_time(moment.isoformat()) == "12-07 08:20"
    assert local_time(moment.timestamp()) == "12-07 08:20"
    assert local_time("not a time") == "not a time" and local_time(None) == "—"
    assert re.fullmatch(r"UTC[+-][0-9]{2}:[0-9]{2}", time_zone())


def test_the_chart_is_an_svg_of_hits_per_day() -> None:
    today = date(2026, 12, 7)
    days = [(today - timedelta(days=30 - n), Counts(checked=10 * n, hits=n % 4)) for n in range(31)]
    chart = hits_chart(days, ZH)
    assert chart.startswith('<figure class="chart"><svg viewBox="0 0 320 112" role="img"')
    assert chart.count("<rect ") == 31 and chart.count('class="bar today"') == 1
    assert "<title>12-07：命中 2，检查 300</title>" in chart  # today, the last bar
    assert ">11-07</text>" in chart and ">12-07</text>" in chart
    assert "近 31 天命中 45 次，单日最多 3 次" in chart
    heights = [float(h) for h in re.findall(r'height="([0-9.]+)" class="bar', chart)]
    assert max(heights) == 84.0 and heights[0] == 0.0  # the peak fills the plot; a day with none has no bar
    assert "http" not in chart and "href" not in chart  # nothing from outside
    quiet = hits_chart([(today, Counts(checked=4))], EN)
    assert quiet == '<figure class="chart"><figcaption>No hits in 1 days</figcaption></figure>'
