"""The console's form for a group's settings, rendered from the group's settings in the page's language.
What it posts is read and checked by the admin core (admin.form_changes), with the same parsers as the
chat commands, so both accept and refuse the same values."""

from __future__ import annotations

from ..admin import ACTION_WORDS, CONFIRM_FIELD, SAFE_THRESHOLD_FLOOR
from ..describe import format_threshold, mute_text
from ..i18n import Lang
from ..runtime import Runtime
from ..setting_input import duration_text
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


def settings_form(runtime: Runtime, group_id: int, csrf: str, words: Lang) -> Html:
    """One group's settings, editable: the same settings, checks and audit record as the chat commands."""
    settings = runtime.store.get(group_id)
    switch = [("on", words("form", "on")), ("off", words("form", "off"))]
    actions = [(action.value, words("action", action.value)) for action in dict.fromkeys(ACTION_WORDS.values())]
    if settings.action.value not in dict(actions):  # "log" comes only from the global settings
        actions.append((settings.action.value, words("action", settings.action.value)))
    top = runtime.strikes.top(group_id, TOP_OFFENDERS_SHOWN)
    return render(
        '<form method="post" action="/nailong/settings" class="group-settings" id="settings-$group" '
        'data-group="$group"><h3>$heading</h3>'
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="group_id" value="$group">'
        '<label>$l_enabled <select name="enabled">$enabled</select></label>'
        '<label>$l_threshold <input name="threshold" value="$threshold" inputmode="decimal" size="8"></label>'
        '<label>$l_confirm <input type="checkbox" name="$confirm_field" value="yes"></label>'
        '<label>$l_action <select name="action">$action</select></label>'
        '<label>$l_exempt <select name="exempt_admins">$exempt_admins</select></label>'
        '<label>$l_allowed <input name="allowed" value="$allowed" size="30"></label>'
        '<label>$l_mute_from <input name="mute_after" value="$mute_after" size="3" inputmode="numeric"> $l_mute_for '
        '<input name="mute_duration" value="$mute_duration" size="6" placeholder="10m"> $l_mute_hint</label>'
        '<label class="wide">$l_warning <input name="reply_text" value="$reply_text" maxlength="300"></label>'
        '<p class="hint">$mute_now</p>'
        '<p class="offenders">$offenders</p>'
        '<button type="submit">$save</button></form>',
        group=group_id,
        csrf=csrf,
        heading=words("form", "heading", group=group_id),
        l_enabled=words("form", "enabled"),
        l_threshold=words("form", "threshold"),
        l_confirm=words("form", "confirm_threshold", floor=SAFE_THRESHOLD_FLOOR),
        confirm_field=CONFIRM_FIELD,
        l_action=words("form", "action"),
        l_exempt=words("form", "exempt_admins"),
        l_allowed=words("form", "allowed"),
        l_mute_from=words("form", "mute_from"),
        l_mute_for=words("form", "mute_for"),
        l_mute_hint=words("form", "mute_hint"),
        l_warning=words("form", "warning"),
        save=words("form", "save"),
        enabled=_options(switch, "on" if settings.enabled else "off"),
        threshold=format_threshold(settings.threshold),
        action=_options(actions, settings.action.value),
        exempt_admins=_options(switch, "on" if settings.exempt_admins else "off"),
        allowed=" ".join(map(str, sorted(settings.allowed))),
        mute_after=settings.mute.after,
        mute_duration=duration_text(settings.mute.seconds) if settings.mute.mutes else "",
        reply_text=settings.reply_text,
        mute_now=words("form", "mute_now", mute=mute_text(
            words, settings, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)),
        offenders=words("form", "offenders", top=", ".join(f"{user} ×{count}" for user, count in top)
                        or words("settings", "none")),
    )  # fmt: skip
