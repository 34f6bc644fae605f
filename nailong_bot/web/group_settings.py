"""The console's form for a group's settings: rendered from the group's settings, read back with the
same parsers as the chat commands (setting_input.py), so both accept and refuse the same values."""

from __future__ import annotations

from collections.abc import Iterable

from ..commands import ACTION_LABELS, ACTION_NAMES, describe_mute, format_threshold
from ..runtime import Runtime
from ..setting_input import (
    OFF_WORDS,
    InvalidSetting,
    check_template,
    duration_text,
    echo,
    parse_duration,
    parse_members,
    parse_mute_after,
    parse_switch,
    parse_threshold,
)
from ..storage import MUTE_OFF, GroupSettings, MutePolicy
from .html import Html, render

TOP_OFFENDERS_SHOWN = 5


def _options(choices: list[tuple[str, str]], selected: str) -> Html:
    return Html(
        "".join(
            render('<option value="$value"$selected>$label</option>', value=value, label=label,
                   selected=Html(" selected") if value == selected else "")
            for value, label in choices
        )
    )  # fmt: skip


_SWITCH_CHOICES = [("on", "开 / on"), ("off", "关 / off")]
_ACTION_CHOICES = [(name, ACTION_LABELS[action]) for name, action in ACTION_NAMES.items() if name == action.value]


def settings_form(runtime: Runtime, group_id: int, csrf: str) -> Html:
    """One group's settings, editable: the same settings, checks and log line as the chat commands."""
    settings = runtime.store.get(group_id)
    actions = _ACTION_CHOICES
    if settings.action.value not in dict(actions):  # "log" comes only from the global settings
        actions = [*actions, (settings.action.value, ACTION_LABELS[settings.action])]
    top = runtime.strikes.top(group_id, TOP_OFFENDERS_SHOWN)
    return render(
        '<form method="post" action="/nailong/settings" class="group-settings" id="settings-$group" '
        'data-group="$group"><h3>群 / group $group</h3>'
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="group_id" value="$group">'
        '<label>检测 / detection <select name="enabled">$enabled</select></label>'
        '<label>阈值 / threshold <input name="threshold" value="$threshold" inputmode="decimal" size="8"></label>'
        '<label>动作 / action <select name="action">$action</select></label>'
        '<label>群主、管理员、超级用户免检 / exempt owner, admins, superusers '
        '<select name="exempt_admins">$exempt_admins</select></label>'
        '<label>豁免名单（QQ 号，空格分隔）/ allow-list (QQ numbers) <input name="allowed" value="$allowed" size="30"></label>'
        '<label>禁言：第 <input name="mute_after" value="$mute_after" size="3" inputmode="numeric"> 次起，禁言 '
        '<input name="mute_duration" value="$mute_duration" size="6" placeholder="10m">（空为不禁言）/ mute from '
        'this strike for this long (empty: never)</label>'
        '<label class="wide">警告（空为默认，可用 {user} {score} {strikes}）/ warning (empty: the default) '
        '<input name="reply_text" value="$reply_text" maxlength="300"></label>'
        '<p class="hint">当前禁言规则 / mute now: $mute_now</p>'
        '<p class="offenders">记过最多 / most strikes: $offenders</p>'
        '<button type="submit">保存 / Save</button></form>',
        group=group_id,
        csrf=csrf,
        enabled=_options(_SWITCH_CHOICES, "on" if settings.enabled else "off"),
        threshold=format_threshold(settings.threshold),
        action=_options(actions, settings.action.value),
        exempt_admins=_options(_SWITCH_CHOICES, "on" if settings.exempt_admins else "off"),
        allowed=" ".join(map(str, sorted(settings.allowed))),
        mute_after=settings.mute.after,
        mute_duration=duration_text(settings.mute.seconds) if settings.mute.mutes else "",
        reply_text=settings.reply_text,
        mute_now=describe_mute(settings, runtime.strikes.window, runtime.config.nailong_mute_max_seconds),
        offenders=", ".join(f"{user} ×{count}" for user, count in top) or "无 / none",
    )


def settings_changes(form: dict[str, str], current: GroupSettings, default_text: str) -> dict[str, object]:
    """The settings the form changes (a field left as it was is no change, so the group keeps following
    the global setting there). Raises InvalidSetting for the first value that cannot be a setting."""
    changes: dict[str, object] = {}
    if "enabled" in form and (enabled := parse_switch(form["enabled"])) != current.enabled:
        changes["enabled"] = enabled
    if "threshold" in form and form["threshold"].strip() != format_threshold(current.threshold):
        changes["threshold"] = parse_threshold(form["threshold"].strip())
    if "action" in form and form["action"] != current.action.value:
        action = ACTION_NAMES.get(form["action"])
        if action is None:
            raise InvalidSetting(f"未知的动作 / unknown action: {echo(form['action'])}")
        changes["action"] = action
    if "exempt_admins" in form and (exempt := parse_switch(form["exempt_admins"])) != current.exempt_admins:
        changes["exempt_admins"] = exempt
    if "allowed" in form and frozenset(allowed := parse_members(form["allowed"])) != current.allowed:
        changes["allowed"] = allowed
    if "mute_duration" in form:
        duration = form["mute_duration"].strip()
        mute = MUTE_OFF
        if duration and duration.lower() not in OFF_WORDS:
            mute = MutePolicy(parse_mute_after(form.get("mute_after", "1")), parse_duration(duration))
        if mute != current.mute and (mute.mutes or current.mute.mutes):
            changes["mute"] = mute
    if "reply_text" in form:
        text = form["reply_text"].strip()
        if not text and current.reply_text != default_text:
            changes["reply_text"] = None
        elif text and text != current.reply_text:
            changes["reply_text"] = check_template(text)
    return changes


def settings_record(settings: GroupSettings, names: Iterable[str]) -> dict[str, object]:
    """These settings as JSON values, for the audit log."""
    values = {
        "enabled": settings.enabled,
        "threshold": settings.threshold,
        "action": settings.action.value,
        "exempt_admins": settings.exempt_admins,
        "allowed": sorted(settings.allowed),
        "mute": {"after": settings.mute.after, "seconds": settings.mute.seconds},
        "reply_text": settings.reply_text,
    }
    return {name: values[name] for name in names}
