"""The console's form for a group's settings, rendered from the group's settings in the page's language.
What it posts is read and checked by the admin core (admin.form_changes), with the same parsers as the
chat commands, so both accept and refuse the same values."""

from __future__ import annotations

from collections.abc import Mapping

from ..admin import ACTION_WORDS, CONFIRM_FIELD, SAFE_THRESHOLD_FLOOR, Refused, form_changes
from ..describe import format_threshold, mute_text
from ..i18n import Lang
from ..runtime import Runtime
from ..storage import GroupSettings
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


# The form's fields, each with the inputs it posts (the mute is two: from which strike, and for how long).
FIELDS = {
    "enabled": ("enabled",), "threshold": ("threshold", CONFIRM_FIELD), "action": ("action",),
    "exempt_admins": ("exempt_admins",), "allowed": ("allowed",), "mute": ("mute_after", "mute_duration"),
    "reply_text": ("reply_text",),
}  # fmt: skip


def field_errors(
    form: Mapping[str, str], current: GroupSettings, default_text: str, words: Lang
) -> dict[str, str]:
    """Why each field of a refused form was refused, by field name: each field is checked on its own
    with the core's own check (admin.form_changes), which changes nothing."""
    errors = {}
    for field, names in FIELDS.items():
        entered = {name: form[name] for name in names if name in form}
        if not entered:
            continue
        try:
            form_changes(entered, current, default_text)
        except Refused as refused:
            # Beside its field the reason is enough; the form's own line says nothing was saved.
            if refused.key == "invalid":
                errors[field] = words.text(refused.values["reason"])
            else:
                errors[field] = words("refused", refused.key, **refused.values)
    return errors


def settings_form(
    runtime: Runtime,
    group_id: int,
    csrf: str,
    words: Lang,
    *,
    entered: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> Html:
    """One group's settings, editable: the same settings, checks and audit record as the chat commands.
    A form refused is shown again with what was ``entered`` and the ``errors`` beside their fields (key "":
    the whole form)."""
    settings = runtime.store.get(group_id)
    entered, errors = entered or {}, errors or {}
    switch = [("on", words("form", "on")), ("off", words("form", "off"))]
    actions = [(action.value, words("action", action.value)) for action in dict.fromkeys(ACTION_WORDS.values())]
    if settings.action.value not in dict(actions):  # "log" comes only from the global settings
        actions.append((settings.action.value, words("action", settings.action.value)))
    top = runtime.strikes.top(group_id, TOP_OFFENDERS_SHOWN)
    saved = {
        "enabled": "on" if settings.enabled else "off",
        "threshold": format_threshold(settings.threshold),
        "action": settings.action.value,
        "exempt_admins": "on" if settings.exempt_admins else "off",
        "allowed": " ".join(map(str, sorted(settings.allowed))),
        "mute_after": str(settings.mute.after),
        "mute_duration": duration_text(settings.mute.seconds) if settings.mute.mutes else "",
        "reply_text": settings.reply_text,
    }
    value = {name: entered.get(name, shown) for name, shown in saved.items()}
    first_error = next((field for field in FIELDS if field in errors), None)

    marks: dict[str, object] = {}
    for field in FIELDS:
        # Each refused field: its reason beside it, tied to its input; the first one gets the focus.
        bad = field in errors
        marks[f"{field}_error"] = render(
            '<p class="field-error" id="s$group-$field-error">$text</p>',
            group=group_id, field=field, text=errors[field],
        ) if bad else ""  # fmt: skip
        marks[f"{field}_attributes"] = Html(
            f' aria-invalid="true" aria-describedby="s{group_id}-{field}-error"'
            + (" autofocus" if field == first_error else "")
        ) if bad else ""  # fmt: skip
    above = errors.get("") or (words("console", "settings_not_saved", group=group_id) if errors else None)
    form_error = render('<p class="field-error form-error">$text</p>', text=above) if above else ""
    return render(
        '<form method="post" action="/nailong/settings" class="group-settings$refused" id="settings-$group" '
        'data-group="$group"><h3>$heading</h3>$form_error'
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="group_id" value="$group">'
        '<div class="field"><label for="s$group-enabled">$l_enabled</label>'
        '<select id="s$group-enabled" name="enabled"$enabled_attributes>$enabled</select>$enabled_error</div>'
        '<div class="field"><label for="s$group-threshold">$l_threshold</label>'
        '<input id="s$group-threshold" name="threshold" value="$threshold" inputmode="decimal"$threshold_attributes>'
        '<label class="confirm"><input type="checkbox" name="$confirm_field" value="yes"$confirmed> $l_confirm</label>'
        "$threshold_error</div>"
        '<div class="field"><label for="s$group-action">$l_action</label>'
        '<select id="s$group-action" name="action"$action_attributes>$action</select>$action_error</div>'
        '<div class="field"><label for="s$group-exempt">$l_exempt</label>'
        '<select id="s$group-exempt" name="exempt_admins"$exempt_admins_attributes>$exempt_admins</select>'
        "$exempt_admins_error</div>"
        '<div class="field wide"><label for="s$group-allowed">$l_allowed</label>'
        '<input id="s$group-allowed" name="allowed" value="$allowed"$allowed_attributes>$allowed_error</div>'
        '<div class="field wide mute"><label for="s$group-mute-after">$l_mute_from</label> '
        '<input id="s$group-mute-after" name="mute_after" value="$mute_after" size="3" inputmode="numeric"'
        '$mute_attributes> <label for="s$group-mute-duration">$l_mute_for</label> '
        '<input id="s$group-mute-duration" name="mute_duration" value="$mute_duration" size="6" placeholder="10m"'
        '$mute_attributes> <span class="hint">$l_mute_hint</span>$mute_error</div>'
        '<div class="field wide"><label for="s$group-warning">$l_warning</label>'
        '<input id="s$group-warning" name="reply_text" value="$reply_text" maxlength="300"$reply_text_attributes>'
        "$reply_text_error</div>"
        '<p class="hint">$mute_now</p>'
        '<p class="offenders">$offenders</p>'
        '<button type="submit">$save</button></form>',
        group=group_id,
        csrf=csrf,
        refused=" refused" if errors else "",
        form_error=form_error,
        heading=words("form", "heading", group=group_id),
        l_enabled=words("form", "enabled"),
        l_threshold=words("form", "threshold"),
        l_confirm=words("form", "confirm_threshold", floor=SAFE_THRESHOLD_FLOOR),
        confirm_field=CONFIRM_FIELD,
        confirmed=Html(" checked") if CONFIRM_FIELD in entered else "",
        l_action=words("form", "action"),
        l_exempt=words("form", "exempt_admins"),
        l_allowed=words("form", "allowed"),
        l_mute_from=words("form", "mute_from"),
        l_mute_for=words("form", "mute_for"),
        l_mute_hint=words("form", "mute_hint"),
        l_warning=words("form", "warning"),
        save=words("form", "save"),
        enabled=_options(switch, value["enabled"]),
        threshold=value["threshold"],
        action=_options(actions, value["action"]),
        exempt_admins=_options(switch, value["exempt_admins"]),
        allowed=value["allowed"],
        mute_after=value["mute_after"],
        mute_duration=value["mute_duration"],
        reply_text=value["reply_text"],
        mute_now=words("form", "mute_now", mute=mute_text(
            words, settings, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)),
        offenders=words("form", "offenders", top=", ".join(f"{user} ×{count}" for user, count in top)
                        or words("settings", "none")),
        **marks,
    )  # fmt: skip
