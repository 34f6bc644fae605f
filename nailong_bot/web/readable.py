"""What the console shows for stored records, in the page's language: audit entries as one line each
("阈值 0.5113 → 0.7 · 小王 · 群 303 · 12-07 16:20"), operators by nickname where one was recorded,
and times in the server's local time zone (the one the bot runs in, named on the page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime

from ..describe import format_threshold
from ..i18n import Lang
from ..setting_input import duration_text
from .html import Html, render

# How admin.Operator.name writes an operator: "qq:10001 (小王)", "qq:10001", "web:阿龙", "web";
# the refresher's "auto" for an automatic refresh.
_CHAT_OPERATOR = re.compile(r"qq:(?P<qq>[0-9]+)(?: \((?P<nickname>.*)\))?", re.S)
_WEB_OPERATOR = re.compile(r"web(?::(?P<name>.+))?", re.S)
_GROUP = re.compile(r"group:(?P<group>-?[0-9]+)")
REPLY_TEXT_SHOWN = 40


def local_time(value: str | float | None, *, seconds: bool = False) -> str:
    """An ISO 8601 time (with its offset) or Unix seconds, in the server's local time: "12-07 16:20"."""
    if value is None:
        return "—"
    try:
        moment = datetime.fromtimestamp(value) if isinstance(value, (int, float)) else datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError, TypeError):
        return str(value)
    return moment.astimezone().strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def time_zone() -> str:
    """The server's local time zone as the page names it: "UTC+08:00"."""
    offset = datetime.now().astimezone().strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


def operator(name: object, words: Lang) -> str:
    """An audit record's operator as people know them: the nickname (else the QQ number), the console
    operator's sign-in name."""
    text = str(name)
    if (chat := _CHAT_OPERATOR.fullmatch(text)) is not None:
        return chat["nickname"] or words("readable", "qq", qq=chat["qq"])
    if (web := _WEB_OPERATOR.fullmatch(text)) is not None:
        return words("readable", "console_named", name=web["name"]) if web["name"] else words("readable", "console")
    if text == "auto":
        return words("readable", "automatic")
    return text


def correction_makers(entries: list[Mapping]) -> dict[str, str]:
    """Who made each correction, as the audit log names them ("qq:5 (小王)", with the nickname the
    correction itself does not keep), by correction id; from ``entries``, newest first."""
    makers: dict[str, str] = {}
    for entry in entries:
        after = entry.get("after")
        if entry.get("action") == "correction" and isinstance(after, Mapping):
            for correction_id in after.get("corrections") or []:
                makers.setdefault(str(correction_id), str(entry.get("operator")))
    return makers


def where(client: object, words: Lang) -> str:
    """``group:123`` as "群 123"; a console client's address as it is."""
    if client is None:
        return ""
    if (group := _GROUP.fullmatch(str(client))) is not None:
        return words("readable", "group", group=group["group"])
    return str(client)


def _setting(name: str, value: object, words: Lang) -> str:
    if value is None:
        return words("readable", "default")
    if name in ("enabled", "exempt_admins") and isinstance(value, bool):
        return words("settings", "on" if value else "off")
    if name == "threshold" and isinstance(value, (int, float)):
        return format_threshold(float(value))
    if name == "action" and isinstance(value, str):
        try:
            return words("action", value)
        except KeyError:
            return value
    if name == "allowed" and isinstance(value, list):
        return " ".join(map(str, value)) or words("settings", "none")
    if name == "mute" and isinstance(value, Mapping):
        seconds, after = value.get("seconds"), value.get("after")
        if not seconds or not isinstance(seconds, int):
            return words("settings", "mute_off")
        return words("readable", "mute", after=after, duration=duration_text(seconds))
    if name == "reply_text" and isinstance(value, str):
        cut = value if len(value) <= REPLY_TEXT_SHOWN else value[:REPLY_TEXT_SHOWN] + "…"
        return f"“{cut}”"
    return str(value)


def _settings_change(before: Mapping, after: Mapping, words: Lang) -> str:
    changes = []
    for name in after:
        if name == "group_id":
            continue
        try:
            label = words("readable", f"setting_{name}")
        except KeyError:
            label = name
        changes.append(f"{label} {_setting(name, before.get(name), words)} → {_setting(name, after[name], words)}")
    return words("readable", "list_separator").join(changes)


def _verdict(value: object, words: Lang) -> str:
    key = {"nailong": "verdict_nailong", "other": "verdict_other", "model": "verdict_model"}.get(str(value))
    return words("readable", key) if key else str(value)


def what(entry: Mapping, words: Lang) -> str:
    """What an audit entry changed, in one line of the page's language."""
    action = entry.get("action")
    before = entry.get("before") if isinstance(entry.get("before"), Mapping) else {}
    after = entry.get("after") if isinstance(entry.get("after"), Mapping) else {}
    say = lambda key, **values: words("readable", key, **values)  # noqa: E731
    if action == "group-settings":
        return _settings_change(before, after, words)
    if action == "correction":
        return say("correction", message=before.get("message_id", "—"), before=_verdict(before.get("verdict"), words),
                   after=_verdict(after.get("verdict"), words))  # fmt: skip
    if action == "correction-undone":
        verdicts = before.get("verdicts") or []
        return say("correction_undone", before=", ".join(_verdict(v, words) for v in verdicts) or "—")
    if action == "rollback":
        return say("rollback", before=before.get("model", "—"), after=after.get("model", "—"))
    if action == "refresh-started":
        return say("refresh_started", model=before.get("model", "—"))
    if action == "refresh-ended":
        outcome = after.get("outcome")
        try:
            outcome_text = words("outcome", str(outcome))
        except KeyError:
            outcome_text = str(outcome)
        return say("refresh_ended", outcome=outcome_text, model=after.get("model", "—"))
    # An action this console does not know yet: its record, compact.
    return f"{action}: {_compact(entry.get('before'))} → {_compact(entry.get('after'))}"


def _compact(value: object) -> str:
    return "—" if value is None else json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def audit_line(entry: Mapping, words: Lang) -> Html:
    """One audit entry as the console lists it: what changed, then who, where and when."""
    group = entry.get("before", {}).get("group_id") if isinstance(entry.get("before"), Mapping) else None
    place = where(entry.get("client"), words)
    if group is not None and not place.endswith(str(group)):
        # A console change to a group: the group, then the client's address.
        place = " · ".join(part for part in (words("readable", "group", group=group), place) if part)
    meta = [operator(entry.get("operator", "—"), words), place, local_time(entry.get("time"))]
    return render(
        '<li><span class="what">$what</span> <span class="meta" title="$raw">$meta</span></li>',
        what=what(entry, words),
        meta=" · ".join(part for part in meta if part),
        raw=f"{entry.get('operator', '—')} {entry.get('client') or ''} {entry.get('time', '')}".strip(),
    )
