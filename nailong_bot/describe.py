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
    "review_floor": "NAILONG_REVIEW_FLOOR",
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


def mute_text(lang: Lang, settings: GroupSettings, window_seconds: float, cap_seconds: int) -> str:
    policy = settings.mute
    if not policy.mutes:
        return lang("settings", "mute_off")
    return lang(
        "settings", "mute_on", hours=f"{window_seconds / 3600:g}", after=policy.after,
        duration=lang.duration(policy.seconds), cap=lang.duration(cap_seconds),
    )  # fmt: skip


def review_text(lang: Lang, settings: GroupSettings, waiting: int) -> str:
    """The group's review band and how many images wait in it, or "off"."""
    if not settings.reviews:
        return lang("settings", "off")
    low, high = format_threshold(settings.review_floor), format_threshold(settings.threshold)
    return lang("settings", "review_band", low=low, high=high, waiting=waiting)


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
        # Which checks failed is in the gate's lines below it, in the reader's language (the trainer's own
        # reasons are for the log).
        return lang("refresh", "summary_failed", base=record.base_version)
    if record.outcome == "timed_out":
        return lang("refresh", "summary_timed_out", base=record.base_version)
    return lang("refresh", "summary_error", base=record.base_version)


def refresh_heading(lang: Lang, record: RefreshRecord, key: str = "last") -> str:
    return lang(
        "refresh", key, time=time_text(record.started_at), trigger=record.trigger,
        outcome=lang("outcome", record.outcome),
    )  # fmt: skip


def gate_lines(lang: Lang, record: RefreshRecord) -> list[str]:
    """The gate's numbers, one check a line; one line saying so where its report cannot be read."""
    gate = record.gate
    if gate is None:
        return [lang("gate", "unreadable")] if record.gate_error is not None else []
    corrections, agreement, validation = gate.checks.corrections, gate.checks.agreement, gate.checks.validation
    lines = [
        lang("gate", "corrections", mark=_mark(corrections.passed), agreed=corrections.agreed, total=corrections.total),
        lang("gate", "agreement", mark=_mark(agreement.passed), rate=f"{agreement.rate:.1%}", images=agreement.images),
    ]
    if validation is not None:
        lines.append(lang(
            "gate", "validation", mark=_mark(validation.passed), recall_before=f"{validation.recall_before:.3f}",
            recall_after=f"{validation.recall_after:.3f}", fpr_before=f"{validation.fpr_before:.4f}",
            fpr_after=f"{validation.fpr_after:.4f}", images=validation.images,
        ))  # fmt: skip
    else:
        lines.append(lang("gate", "no_validation"))
    lines.append(lang("gate", "took", seconds=f"{gate.seconds:.0f}", steps=gate.steps))
    return lines


def rolled_back_note(lang: Lang, record: RefreshRecord, in_use: str) -> str | None:
    """Where the model a refresh left running (the one it swapped in, or the one it kept) no longer runs
    (a rollback since), the one that does."""
    left_running = record.version if record.outcome == "passed" else record.base_version
    if left_running is not None and left_running != in_use:
        return lang("refresh", "rolled_back_since", version=in_use)
    return None


def refresh_lines(lang: Lang, record: RefreshRecord, in_use: str, key: str = "last") -> list[str]:
    """A finished refresh: when, who, its outcome in a sentence, the model in use where a rollback
    followed it, then the gate's numbers."""
    lines = [refresh_heading(lang, record, key), refresh_summary(lang, record)]
    if (note := rolled_back_note(lang, record, in_use)) is not None:
        lines.append(note)
    return lines + gate_lines(lang, record)


def _mark(passed: bool) -> str:
    return "✓" if passed else "✗"
