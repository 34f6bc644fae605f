"""Every change an operator makes, in one place: a group's settings (detection, threshold, action,
exemptions, allow-list, mutes, warning), corrections, their confirmation for every group and their
undoing, a model refresh and a rollback.

The chat commands (commands.py) and the web console (web/console.py) only read what was asked, call
one function here and render its result; neither changes state itself. Each function here

1. takes an :class:`Operator` (who and where: a group admin in a chat, or the console's operator),
2. checks what was asked, with the same parsers for chat and console (setting_input.py), and refuses
   with :class:`Refused` (a wording key, see i18n/) before anything changes,
3. makes the change through the store that owns it (storage.py, verdicts.py, refresh.py, models.py),
4. appends ONE audit record for it (audit.py): time, operator, where, action, before, after,
5. returns a typed result for the caller to render in its own language.

A new action (a review label, say) is one more such function with its own result type: parse, change,
:func:`_audit`, return.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from nonebot.log import logger

from nailong_vision.classifier import ModelError, ModelInfo

from . import reviewing, verdicts
from .corrections import Correction, FolderFull, Label
from .describe import format_threshold
from .persist import CannotSave
from .recent import RecentImage
from .refresh import RefreshRecord
from .runtime import Runtime
from .setting_input import (
    MAX_ALLOWED,
    OFF_WORDS,
    InvalidSetting,
    check_template,
    parse_duration,
    parse_members,
    parse_mute,
    parse_mute_after,
    parse_switch,
    parse_threshold,
)
from .review import Waiting
from .storage import MUTE_OFF, REVIEW_OFF, Action, GroupSettings, MutePolicy
from .strikes import Strike

# What an admin may type for an action, in either language.
ACTION_WORDS = {
    "recall": Action.RECALL, "撤回": Action.RECALL,
    "reply": Action.REPLY, "回复": Action.REPLY,
    "both": Action.BOTH, "都要": Action.BOTH,
    "observe": Action.OBSERVE, "观察": Action.OBSERVE,
}  # fmt: skip
RESET_WORDS = ("reset", "重置", "默认")
# Below this a threshold asks to be confirmed. The bundled model recommends 0.7194; at 0.3 its validation
# false-positive rate is already 4.4 % against 1.5 % (models/evaluation/report.json, threshold_table) for
# recall 0.98 against 0.95, and at 0 every image is "nailong": `/奶龙 阈值 0` (a typo, or 5 % written as
# 0.05) once recalled the next ordinary photo. Down to 0.3 a group may still be far stricter than advised.
SAFE_THRESHOLD_FLOOR = 0.3
# The console form's checkbox that confirms a threshold below the floor.
CONFIRM_FIELD = "confirm_threshold"
# A correction's id: the first 16 hex digits of its image's sha256.
CORRECTION_ID = re.compile(r"[0-9a-f]{16}")
_NICKNAME_KEPT = 32


@dataclass(frozen=True)
class Operator:
    """Who makes a change and where: a member of a group chat (QQ number, nickname, group), or the
    console's signed-in operator (``web`` or ``web:<name>``) and the client's address."""

    id: int | str  # the QQ number, or the console's operator name; corrections record it as their maker
    superuser: bool = False
    group_id: int | None = None
    nickname: str | None = None
    client: str | None = None

    @classmethod
    def chat(cls, user_id: int, group_id: int, nickname: str | None, *, superuser: bool) -> Operator:
        # A nickname is whatever the member chose: kept short in the audit log.
        return cls(user_id, superuser=superuser, group_id=group_id, nickname=(nickname or "")[:_NICKNAME_KEPT] or None)

    @classmethod
    def console(cls, name: str, client: str) -> Operator:
        # The console is opened with NAILONG_ADMIN_TOKEN: the bot's owner, as a superuser is in chat.
        return cls(name, superuser=True, client=client)

    @property
    def name(self) -> str:
        """As the audit log names them: "qq:10001 (小王)", "web:阿龙"."""
        if isinstance(self.id, str):
            return self.id
        return f"qq:{self.id}" + (f" ({self.nickname})" if self.nickname else "")

    @property
    def where(self) -> str | None:
        """The group the command came from ("group:123"), or the console client's address."""
        return f"group:{self.group_id}" if self.group_id is not None else self.client


class Refused(Exception):
    """Nothing was changed. ``key`` names the reason in the wording catalogue's ``refused`` scope, and
    ``values`` fill its placeholders."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key, values)
        self.key = key
        self.values = values


# --- Results ---


@dataclass(frozen=True)
class SettingsChange:
    group_id: int
    before: GroupSettings
    after: GroupSettings

    @property
    def changed(self) -> tuple[str, ...]:
        """The names of the settings that changed (none: the group already had these values)."""
        names = (f.name for f in fields(GroupSettings))
        return tuple(name for name in names if getattr(self.before, name) != getattr(self.after, name))


@dataclass(frozen=True)
class AllowListChange:
    settings: SettingsChange
    # The members named, and those of them whose place on the list changed.
    named: tuple[int, ...]
    changed: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.settings.after.allowed)


@dataclass(frozen=True)
class Forgiven:
    """A strike taken back by a correction, and the member's strikes left."""

    strike: Strike
    left: int


@dataclass(frozen=True)
class Corrected:
    label: Label
    added: list[Correction]
    forgiven: list[Forgiven]
    images: list[RecentImage]


@dataclass(frozen=True)
class Undone:
    corrections: list[Correction]


@dataclass(frozen=True)
class Confirmed:
    """Group-scoped corrections that now apply in every group."""

    corrections: list[Correction]


@dataclass(frozen=True)
class ReviewLabelled:
    entry: Waiting
    label: Label
    added: list[Correction]
    # True/False: recalled or the recall failed; None: not tried (labelled other, or past QQ's window).
    recalled: bool | None


@dataclass(frozen=True)
class RefreshStarted:
    task: asyncio.Task[RefreshRecord]
    already_running: bool
    budget_seconds: int


@dataclass(frozen=True)
class RolledBack:
    left: ModelInfo
    now: ModelInfo


# --- Group settings ---


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
        "review_floor": settings.review_floor,
    }
    return {name: values[name] for name in names}


async def change_settings(runtime: Runtime, operator: Operator, group_id: int, **changes: object) -> SettingsChange:
    """Change a group's settings (values already checked by the functions below). One audit record
    when anything changed, none when the group already had these values."""
    store = runtime.store
    before = store.get(group_id)
    if store.save_error is not None:
        logger.error(f"群设置无法保存 / settings cannot be saved: group={group_id}: {store.save_error}")
        raise Refused("cannot_save")
    try:
        after = await store.change(group_id, operator.name, **changes)
    except CannotSave as error:
        logger.error(f"群设置无法保存 / settings cannot be saved: group={group_id}: {error}")
        raise Refused("cannot_save") from error
    except OSError as error:
        logger.error(f"保存群设置失败 / saving settings failed: group={group_id}: {error}")
        raise Refused("save_failed") from error
    result = SettingsChange(group_id, before, after)
    if result.changed:
        await _audit(
            runtime, operator, "group-settings",
            before={"group_id": group_id, **settings_record(before, result.changed)},
            after={"group_id": group_id, **settings_record(after, result.changed)},
        )  # fmt: skip
    return result


def _checked(parse, *args: object):
    """``parse(*args)``, its InvalidSetting turned into a refusal that carries the reason (a phrase,
    rendered in the reader's language)."""
    try:
        return parse(*args)
    except InvalidSetting as error:
        raise Refused("invalid", reason=error.phrase) from None


def parse_action(word: str) -> Action:
    action = ACTION_WORDS.get(word.strip().lower())
    if action is None:
        raise Refused("unknown_action", given=word[:40])
    return action


async def set_enabled(runtime: Runtime, operator: Operator, group_id: int, enabled: bool) -> SettingsChange:
    return await change_settings(runtime, operator, group_id, enabled=enabled)


def checked_threshold(text: str, *, confirmed: bool) -> float:
    """A threshold as typed; one below :data:`SAFE_THRESHOLD_FLOOR` only when ``confirmed``."""
    value = _checked(parse_threshold, text)
    if value < SAFE_THRESHOLD_FLOOR and not confirmed:
        raise Refused("threshold_below_floor", value=format_threshold(value), floor=SAFE_THRESHOLD_FLOOR)
    return value


async def set_threshold(
    runtime: Runtime, operator: Operator, group_id: int, text: str, *, confirmed: bool = False
) -> SettingsChange:
    """A new threshold; one below the safe floor is refused unless ``confirmed``."""
    threshold = checked_threshold(text, confirmed=confirmed)
    return await change_settings(runtime, operator, group_id, threshold=threshold)


async def set_action(runtime: Runtime, operator: Operator, group_id: int, word: str) -> SettingsChange:
    return await change_settings(runtime, operator, group_id, action=parse_action(word))


async def set_exempt_admins(runtime: Runtime, operator: Operator, group_id: int, text: str) -> SettingsChange:
    return await change_settings(runtime, operator, group_id, exempt_admins=_checked(parse_switch, text))


async def set_mute(runtime: Runtime, operator: Operator, group_id: int, words: list[str]) -> SettingsChange:
    """["off"], or [strike, duration] such as ["3", "10m"]."""
    return await change_settings(runtime, operator, group_id, mute=_checked(parse_mute, words))


async def set_warning(runtime: Runtime, operator: Operator, group_id: int, text: str) -> SettingsChange:
    """A warning template, or a reset word for the default."""
    if text.strip().lower() in RESET_WORDS:
        return await change_settings(runtime, operator, group_id, reply_text=None)
    return await change_settings(runtime, operator, group_id, reply_text=_checked(check_template, text))


async def set_review_floor(runtime: Runtime, operator: Operator, group_id: int, text: str) -> SettingsChange:
    """The lower end of the group's review band, below its threshold; an off word: no band."""
    if text.strip().lower() in OFF_WORDS:
        return await change_settings(runtime, operator, group_id, review_floor=REVIEW_OFF)
    threshold = runtime.store.get(group_id).threshold
    try:
        floor = float(text)
    except ValueError:
        floor = math.nan
    if not (math.isfinite(floor) and 0.0 <= floor < threshold):
        raise Refused("review_floor", threshold=format_threshold(threshold), given=text[:20])
    return await change_settings(runtime, operator, group_id, review_floor=floor)


def _members(mentioned: Iterable[str], typed: str) -> tuple[int, ...]:
    """The QQ numbers of the at-mentions (as the event carries them) and those typed, checked alike."""
    members = _checked(parse_members, " ".join([*mentioned, typed]))
    if not members:
        raise Refused("no_members")
    return members


async def allow(
    runtime: Runtime, operator: Operator, group_id: int, *, mentioned: Iterable[str] = (), typed: str = ""
) -> AllowListChange:
    """Put members (at-mentioned, or QQ numbers typed) on the group's allow-list."""
    members = _members(mentioned, typed)
    allowed = runtime.store.get(group_id).allowed
    changed = tuple(sorted(allowed | set(members)))
    if len(changed) > MAX_ALLOWED:
        raise Refused("allow_list_full", limit=MAX_ALLOWED)
    settings = await change_settings(runtime, operator, group_id, allowed=changed)
    return AllowListChange(settings, members, tuple(sorted(set(members) - allowed)))


async def disallow(
    runtime: Runtime, operator: Operator, group_id: int, *, mentioned: Iterable[str] = (), typed: str = ""
) -> AllowListChange:
    """Take members off the group's allow-list; refused when none of them is on it."""
    members = _members(mentioned, typed)
    allowed = runtime.store.get(group_id).allowed
    if not allowed & set(members):
        raise Refused("not_allowed", members=", ".join(map(str, members)))
    settings = await change_settings(runtime, operator, group_id, allowed=tuple(sorted(allowed - set(members))))
    return AllowListChange(settings, members, tuple(sorted(allowed & set(members))))


def form_changes(form: Mapping[str, str], current: GroupSettings, default_text: str) -> dict[str, object]:
    """The settings the console's form changes (a field left as it was is no change, so the group keeps
    following the global setting there). Refused for the first value that cannot be a setting."""
    changes: dict[str, object] = {}
    if "enabled" in form and (enabled := _checked(parse_switch, form["enabled"])) != current.enabled:
        changes["enabled"] = enabled
    if "threshold" in form and form["threshold"].strip() != format_threshold(current.threshold):
        changes["threshold"] = checked_threshold(form["threshold"].strip(), confirmed=CONFIRM_FIELD in form)
    if "action" in form and form["action"] != current.action.value:
        changes["action"] = parse_action(form["action"])
    if "exempt_admins" in form and (exempt := _checked(parse_switch, form["exempt_admins"])) != current.exempt_admins:
        changes["exempt_admins"] = exempt
    if "allowed" in form and frozenset(allowed := _checked(parse_members, form["allowed"])) != current.allowed:
        changes["allowed"] = allowed
    if "mute_duration" in form:
        duration = form["mute_duration"].strip()
        mute = MUTE_OFF
        if duration and duration.lower() not in OFF_WORDS:
            after = _checked(parse_mute_after, form.get("mute_after", "1"))
            mute = MutePolicy(after, _checked(parse_duration, duration))
        if mute != current.mute and (mute.mutes or current.mute.mutes):
            changes["mute"] = mute
    if "reply_text" in form:
        text = form["reply_text"].strip()
        if not text and current.reply_text != default_text:
            changes["reply_text"] = None
        elif text and text != current.reply_text:
            changes["reply_text"] = _checked(check_template, text)
    return changes


async def change_settings_form(
    runtime: Runtime, operator: Operator, group_id: int, form: Mapping[str, str]
) -> SettingsChange:
    """The console's settings form for one group: every field checked first, then one change and one
    audit record."""
    current = runtime.store.get(group_id)
    changes = form_changes(form, current, runtime.store.defaults.reply_text)
    if not changes:
        return SettingsChange(group_id, current, current)
    return await change_settings(runtime, operator, group_id, **changes)


# --- Corrections (the one path to the stores is verdicts.py) ---


async def correct(
    runtime: Runtime, operator: Operator, images: list[tuple[RecentImage, bytes]], label: Label
) -> Corrected:
    """Record ``label`` for kept images of one message (with their bytes): see :func:`verdicts.correct`.
    A superuser's correction in a chat applies in every group; any other, the console's included, in the
    image's group until a superuser confirms it (:func:`confirm`, the console's "waiting" panel) or
    admins of enough groups agree."""
    everywhere = operator.superuser and operator.group_id is not None
    try:
        verdict = await verdicts.correct(runtime, images, label, operator=operator.id, everywhere=everywhere)
    except FolderFull as error:
        logger.error(f"纠错目录已满 / feedback folder full: group={images[0][0].group_id}: {error}")
        raise Refused("feedback_full") from error
    except OSError as error:
        logger.error(f"保存纠错失败 / saving a correction failed: group={images[0][0].group_id}: {error}")
        raise Refused("correction_failed") from error
    first = images[0][0]
    forgiven = [Forgiven(s, runtime.strikes.count(s.group_id, s.user_id)) for s in verdict.forgiven]
    await _audit(
        runtime, operator, "correction",
        before={
            "group_id": first.group_id,
            "message_id": first.message_id,
            "images": [entry.sha256 for entry, _ in images],
            "verdict": "nailong" if first.hit else "other",
            "score": None if first.score is None else round(first.score, 6),
        },
        after={
            "verdict": label,
            "corrections": [correction.id for correction in verdict.added],
            # Where each applies: "all", or the group (until confirmed).
            "scopes": [correction.scope_text for correction in verdict.added],
            # The members whose strike for this message was taken back, if any.
            **({"strikes_taken_back": [s.user_id for s in verdict.forgiven]} if verdict.forgiven else {}),
        },
    )  # fmt: skip
    return Corrected(label, verdict.added, forgiven, [entry for entry, _ in images])


async def undo(runtime: Runtime, operator: Operator, images: list[tuple[RecentImage, bytes]]) -> Undone:
    """Undo the corrections of these images in their group (the group's own and the one for every group;
    superusers only); the model decides them there again."""
    _superuser(operator)
    corrections = runtime.corrections
    group_id = images[0][0].group_id
    user_id = operator.id if isinstance(operator.id, int) else 0

    def undo_all() -> list[Correction]:
        return [c for _, data in images for c in corrections.undo(data, group_id=group_id, user_id=user_id)]

    try:
        undone = await verdicts.change_corrections(runtime, undo_all)
    except OSError as error:
        logger.error(f"保存纠错失败 / saving a correction failed: group={group_id}: {error}")
        raise Refused("correction_failed") from error
    if not undone:
        raise Refused("no_correction")
    logger.info(f"已撤销纠错 / corrections undone: {[c.id for c in undone]} group={group_id} by {operator.name}")
    await _audit(
        runtime, operator, "correction-undone",
        before={"group_id": group_id, "corrections": [c.id for c in undone], "verdicts": [c.label for c in undone],
                "scopes": [c.scope_text for c in undone]},
        after={"verdict": "model"},
    )  # fmt: skip
    return Undone(undone)


async def confirm(runtime: Runtime, operator: Operator, targets: list[tuple[int, str]]) -> Confirmed:
    """A superuser's confirmation: each waiting correction (group, id) applies in every group from now on,
    and the refresh learns it. Refused when none of them waits any more."""
    _superuser(operator)
    try:
        confirmed = await verdicts.confirm(runtime, targets, operator=operator.id, where=operator.group_id or 0)
    except FolderFull as error:
        logger.error(f"纠错目录已满 / feedback folder full: {error}")
        raise Refused("feedback_full") from error
    except OSError as error:
        logger.error(f"确认纠错失败 / confirming corrections failed: {targets}: {error}")
        raise Refused("correction_failed") from error
    if not confirmed:
        raise Refused("nothing_to_confirm")
    await _audit(
        runtime, operator, "correction-confirmed",
        before={"corrections": [c.id for c in confirmed], "scopes": [str(c.group_id) for c in confirmed]},
        after={"verdicts": [c.label for c in confirmed], "scopes": [c.scope_text for c in confirmed]},
    )  # fmt: skip
    return Confirmed(confirmed)


async def confirm_images(runtime: Runtime, operator: Operator, images: list[tuple[RecentImage, bytes]]) -> Confirmed:
    """Confirm the group's corrections that decide these kept images in their group (a chat reply)."""
    _superuser(operator)
    return await confirm(runtime, operator, await verdicts.pending_for(runtime, images, images[0][0].group_id))


async def confirm_id(runtime: Runtime, operator: Operator, correction_id: str) -> Confirmed:
    """Confirm a waiting correction named by its id (as the console shows it), in whichever group it
    waits; refused when the groups it waits in disagree on it."""
    _superuser(operator)
    if not CORRECTION_ID.fullmatch(correction_id):
        raise Refused("bad_correction_id")
    corrections = runtime.corrections
    waiting = [c for c in await asyncio.to_thread(corrections.pending, len(corrections)) if c.id == correction_id]
    if len({c.label for c in waiting}) > 1:
        raise Refused("groups_disagree")
    return await confirm(runtime, operator, [(c.group_id, c.id) for c in waiting])


async def label_review(runtime: Runtime, operator: Operator, sha256: str, label: Label) -> ReviewLabelled | None:
    """Label an image waiting for review: a correction (see :func:`reviewing.label`). None when it no
    longer waits (labelled meanwhile, or evicted)."""
    try:
        labelled = await reviewing.label(runtime, sha256, label, operator=operator.id)
    except OSError as error:
        logger.error(f"保存复核标注失败 / saving a review label failed: {sha256}: {error}")
        raise Refused("correction_failed") from error
    if labelled is None:
        return None
    entry = labelled.entry
    await _audit(
        runtime, operator, "review",
        before={"group_id": entry.group_id, "message_id": entry.message_id, "user_id": entry.user_id,
                "image": entry.sha256, "score": round(entry.score, 6), "model_version": entry.model_version},
        after={"label": label, "corrections": [c.id for c in labelled.corrections], "recalled": labelled.recalled},
    )  # fmt: skip
    return ReviewLabelled(entry, label, labelled.corrections, labelled.recalled)


# --- The model: refresh and rollback ---


def start_refresh(runtime: Runtime, operator: Operator) -> RefreshStarted:
    """Start a refresh (superusers only), or join the one running. The refresher records its start and
    its outcome in the audit log, whoever started it (automatic mode included)."""
    _superuser(operator)
    refresher = runtime.refresher
    if (reason := refresher.unavailable()) is not None:
        raise Refused(reason)
    already = refresher.running is not None and not refresher.running.done()
    task = refresher.start(operator.name, where=operator.where)
    return RefreshStarted(task, already, runtime.config.nailong_refresh_budget_seconds)


async def rollback(runtime: Runtime, operator: Operator) -> RolledBack:
    """Return to the model before (superusers only)."""
    _superuser(operator)
    if not await asyncio.to_thread(runtime.models.can_roll_back):
        raise Refused("no_earlier_model")
    try:
        left, now = await runtime.models.rollback()
    except ModelError as error:
        logger.warning(f"未回退 / not rolled back ({operator.name}): {error}")
        raise Refused("not_rolled_back") from error
    logger.info(f"模型已回退 / model rolled back: {left.version} → {now.version} ({operator.name})")
    await _audit(runtime, operator, "rollback", before={"model": left.version}, after={"model": now.version})
    return RolledBack(left, now)


def _superuser(operator: Operator) -> None:
    if not operator.superuser:
        raise Refused("superusers_only")


async def _audit(runtime: Runtime, operator: Operator, action: str, *, before: Any, after: Any) -> None:
    await asyncio.to_thread(
        runtime.audit.record, operator.name, action, before=before, after=after, client=operator.where
    )
