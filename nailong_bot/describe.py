"""How the plugin's state reads to an operator, in one language: thresholds, actions, exemptions, mute
policies, a refresh's outcome and gate report, a model's lineage. Shared by the chat commands and the
console; the words themselves are in the catalogue (i18n/)."""

from __future__ import annotations

from datetime import datetime

from .i18n import Lang
from .refresh import RefreshRecord
from .storage import Action, GroupSettings


# Where each setting's global value is set, when a group has not set its own.
GLOBAL_SETTING = {
    "enabled": "NAILONG_DEFAULT_ENABLED",
    "threshold": "NAILONG_THRESHOLD",
    "action": "NAILONG_RECALL / NAILONG_REPLY",
    "exempt_admins": "NAILONG_EXEMPT_ADMINS",
    "allowed": "—",
    "mute": "NAILONG_MUTE_AFTER / NAILONG_MUTE_SECONDS",
    "reply_text": "NAILONG_REPLY_TEXT",
}


def source_text(lang: Lang, name: str, *, overridden: bool, from_model: bool = False) -> str:
    """Where a group's value of setting ``name`` comes from: the group itself, the global setting in
    `.env`, or (the threshold, when `.env` sets none) the model's recommendation."""
    if overridden:
        return lang("source", "group")
    if from_model:
        return lang("source", "model")
    return lang("source", "global", setting=GLOBAL_SETTING[name])


def format_threshold(value: float) -> str:
    """0.85 → "0.85", 0.99999 → "0.99999", 0 → "0.0": a plain decimal, never scientific notation."""
    text = f"{value:.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def action_label(lang: Lang, action: Action) -> str:
    return lang("action", action.value)


def exempt_admins_text(lang: Lang, exempt: bool) -> str:
    return lang("settings", "admins_exempt" if exempt else "admins_checked")


def duration(lang: Lang, seconds: float) -> str:
    """In the largest whole unit: 600 → "10 分钟" / "10 min"."""
    whole = int(seconds)
    for size, unit in ((86400, "days"), (3600, "hours"), (60, "minutes")):
        if whole >= size and whole % size == 0:
            return lang("duration", unit, n=whole // size)
    return lang("duration", "seconds", n=whole)


def mute_text(lang: Lang, settings: GroupSettings, window_seconds: float, cap_seconds: int) -> str:
    policy = settings.mute
    if not policy.mutes:
        return lang("settings", "mute_off")
    return lang(
        "settings", "mute_on", hours=f"{window_seconds / 3600:g}", after=policy.after,
        duration=duration(lang, policy.seconds), cap=duration(lang, cap_seconds),
    )  # fmt: skip


def time_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


def clock_text(seconds: float) -> str:
    """The server's local time of day, as a group reads it: "16:20"."""
    return datetime.fromtimestamp(seconds).strftime("%H:%M")


def lineage_text(lang: Lang, origin: dict | None) -> str:
    """Where the model in use came from: the base, or a refresh of it (models.lineage)."""
    if origin is None:
        return lang("model", "base_model")
    return lang(
        "model", "lineage",
        parent=origin.get("parent_version", origin.get("base_version")), corrections=origin.get("corrections"),
        number=origin.get("refresh", 1), base=origin.get("base_version"),
    )  # fmt: skip


def refresh_summary(lang: Lang, record: RefreshRecord) -> str:
    """A finished refresh in a sentence, without server paths or the trainer's log (those are in the log)."""
    if record.outcome == "passed":
        return lang("refresh", "summary_passed", base=record.base_version, version=record.version or "—")
    if record.outcome == "failed":
        reasons = "; ".join(str(reason) for reason in (record.gate or {}).get("reasons") or []) or "—"
        return lang("refresh", "summary_failed", base=record.base_version, reasons=reasons)
    return lang("refresh", "summary_error", base=record.base_version)


def refresh_heading(lang: Lang, record: RefreshRecord, key: str = "last") -> str:
    return lang(
        "refresh", key, time=time_text(record.started_at), trigger=record.trigger,
        outcome=lang("outcome", record.outcome),
    )  # fmt: skip


def gate_lines(lang: Lang, gate: dict) -> list[str]:
    """The gate's numbers, one check a line (as in `trainer refresh`'s gate.json)."""
    checks = gate.get("checks") or {}
    lines = []
    if corrections := checks.get("corrections"):
        lines.append(
            lang("gate", "corrections", mark=_mark(corrections), agreed=corrections.get("agreed"),
                 total=corrections.get("total"))
        )  # fmt: skip
    if agreement := checks.get("agreement"):
        lines.append(
            lang("gate", "agreement", mark=_mark(agreement), rate=_percent(agreement.get("rate")),
                 images=agreement.get("images"))
        )  # fmt: skip
    validation = checks.get("validation")
    if validation:
        numbers = ", ".join(f"{key} {_number(value)}" for key, value in validation.items() if key != "passed")
        lines.append(lang("gate", "validation", mark=_mark(validation), numbers=numbers))
    else:
        lines.append(lang("gate", "no_validation"))
    if isinstance(gate.get("seconds"), (int, float)):
        lines.append(lang("gate", "took", seconds=f"{gate['seconds']:.0f}", steps=gate.get("steps")))
    return lines


def refresh_lines(lang: Lang, record: RefreshRecord, key: str = "last") -> list[str]:
    """A finished refresh: when, who, its outcome in a sentence, then the gate's numbers."""
    lines = [refresh_heading(lang, record, key), refresh_summary(lang, record)]
    return lines + (gate_lines(lang, record.gate) if record.gate else [])


def _mark(check: dict) -> str:
    return "✓" if check.get("passed") else "✗"


def _percent(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "—"


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
