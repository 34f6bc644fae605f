"""Per-group settings, kept in one JSON file that survives restarts.

Only what an admin changed is stored; everything else follows the global settings, so changing
`.env` later still reaches groups that never touched that setting. A file written before a setting
existed simply lacks it, and the group follows the global setting there.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path

from nonebot.log import logger

from . import persist
from .config import DEFAULT_REPLY_TEXT
from .qq import MAX_QQ, MIN_QQ, is_qq
from .warning import parse_template

SETTINGS_FILE = "settings.json"
_FORMAT_VERSION = 1


class Action(str, Enum):
    RECALL = "recall"
    REPLY = "reply"
    BOTH = "both"
    # Only reachable through NAILONG_RECALL=false and NAILONG_REPLY=false: hits are only logged.
    LOG = "log"
    # A trial: decided and counted as usual, nothing done in the group (no strike, no mute either).
    OBSERVE = "observe"

    @property
    def recalls(self) -> bool:
        return self in (Action.RECALL, Action.BOTH)

    @property
    def replies(self) -> bool:
        return self in (Action.REPLY, Action.BOTH)

    @classmethod
    def from_flags(cls, recall: bool, reply: bool) -> Action:
        if recall and reply:
            return cls.BOTH
        return cls.RECALL if recall else cls.REPLY if reply else cls.LOG


@dataclass(frozen=True)
class MutePolicy:
    """Mute a member from their ``after``-th strike within the strike window, for ``seconds``,
    doubled on each further strike up to a cap. ``seconds`` 0: never mute."""

    after: int = 1
    seconds: int = 0

    @property
    def mutes(self) -> bool:
        return self.seconds > 0

    def duration(self, strike: int, cap: int) -> int:
        """Seconds to mute for the ``strike``-th strike (0: none)."""
        if not self.mutes or strike < self.after:
            return 0
        # The exponent is bounded: past 2**32 every duration is at the cap anyway.
        return min(cap, self.seconds * 2 ** min(strike - self.after, 32))

    @classmethod
    def from_json(cls, raw: object) -> MutePolicy:
        if not isinstance(raw, dict):
            raise ValueError(f"mute must be an object: {raw!r}")
        after, seconds = raw.get("after"), raw.get("seconds")
        if not (isinstance(after, int) and not isinstance(after, bool) and after >= 1):
            raise ValueError(f"mute.after must be a whole number ≥ 1: {after!r}")
        if not (isinstance(seconds, int) and not isinstance(seconds, bool) and seconds >= 0):
            raise ValueError(f"mute.seconds must be a whole number ≥ 0: {seconds!r}")
        return cls(after, seconds)


MUTE_OFF = MutePolicy()
# The review floor that turns the band off: no score is in [1, threshold).
REVIEW_OFF = 1.0


def default_review_floor(configured: float | None, model_floor: float | None) -> float:
    """NAILONG_REVIEW_FLOOR, else the model's (its calibration's); a model without one has no band."""
    if configured is not None:
        return configured
    return REVIEW_OFF if model_floor is None else model_floor


@dataclass(frozen=True)
class GroupOverrides:
    """What a group's admins set; ``None`` means "as the global setting"."""

    enabled: bool | None = None
    threshold: float | None = None
    action: Action | None = None
    exempt_admins: bool | None = None
    # Members whose images are never checked here (no global list: empty unless set).
    allowed: tuple[int, ...] | None = None
    mute: MutePolicy | None = None
    # A warning template (see warning.py), checked before it is stored.
    reply_text: str | None = None
    # The lower end of the review band; REVIEW_OFF: no band.
    review_floor: float | None = None

    @classmethod
    def from_json(cls, raw: object, *, where: str = "") -> GroupOverrides:
        """``where``: the entry's place in the file, for the warning about dropped allow-list entries."""
        if not isinstance(raw, dict):
            raise ValueError(f"group entry is not an object: {raw!r}")
        enabled, threshold, action = raw.get("enabled"), raw.get("threshold"), raw.get("action")
        exempt_admins, allowed = raw.get("exempt_admins"), raw.get("allowed")
        mute, reply_text, review_floor = raw.get("mute"), raw.get("reply_text"), raw.get("review_floor")
        for name, switch in (("enabled", enabled), ("exempt_admins", exempt_admins)):
            if switch is not None and not isinstance(switch, bool):
                raise ValueError(f"{name} must be true/false: {switch!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be within 0..1: {threshold!r}")
        if review_floor is not None and not (
            isinstance(review_floor, (int, float)) and not isinstance(review_floor, bool) and 0.0 <= review_floor <= 1.0
        ):
            raise ValueError(f"review_floor must be within 0..1: {review_floor!r}")
        if allowed is not None and not (
            isinstance(allowed, list) and all(isinstance(m, int) and not isinstance(m, bool) for m in allowed)
        ):
            raise ValueError(f"allowed must be a list of QQ numbers: {allowed!r}")
        if allowed is not None and not all(map(is_qq, allowed)):
            # Stored before numbers were checked (QQ 0, 20 digits): dropped, the rest of the group kept.
            dropped = [m for m in allowed if not is_qq(m)]
            allowed = [m for m in allowed if is_qq(m)]
            logger.warning(
                f"豁免名单里不是 QQ 号的条目已删除 / allow-list entries that are not QQ numbers ({MIN_QQ}..{MAX_QQ}) "
                f"dropped: {where} {', '.join(str(m)[:20] for m in dropped[:5])}{'…' if len(dropped) > 5 else ''}"
            )
        if reply_text is not None:
            if not isinstance(reply_text, str):
                raise ValueError(f"reply_text must be text: {reply_text!r}")
            parse_template(reply_text)  # a TemplateError is a ValueError
        return cls(
            enabled=enabled,
            threshold=None if threshold is None else float(threshold),
            action=None if action is None else Action(action),
            exempt_admins=exempt_admins,
            allowed=None if allowed is None else tuple(sorted(set(allowed))),
            mute=None if mute is None else MutePolicy.from_json(mute),
            reply_text=reply_text,
            review_floor=None if review_floor is None else float(review_floor),
        )

    def to_json(self) -> dict:
        data = asdict(self)
        if self.action is not None:
            data["action"] = self.action.value
        if self.allowed is not None:
            data["allowed"] = list(self.allowed)
        return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class GroupSettings:
    """A group's effective settings."""

    enabled: bool
    threshold: float
    action: Action
    # The group owner, admins and superusers are not checked.
    exempt_admins: bool = True
    allowed: frozenset[int] = frozenset()
    mute: MutePolicy = MUTE_OFF
    # A warning template (see warning.py).
    reply_text: str = DEFAULT_REPLY_TEXT
    # Scores in [review_floor, threshold) are queued for an admin's review instead of acted on.
    review_floor: float = REVIEW_OFF

    def in_review_band(self, score: float) -> bool:
        return self.review_floor <= score < self.threshold

    @property
    def reviews(self) -> bool:
        return self.review_floor < self.threshold


class SettingsStore:
    def __init__(self, data_dir: Path, defaults: GroupSettings) -> None:
        self.path = data_dir / SETTINGS_FILE
        self.defaults = defaults
        self._groups: dict[int, GroupOverrides] = {}
        self._write_lock = asyncio.Lock()
        # Why changes cannot be saved (set by load); None when they can.
        self.save_error: str | None = None

    def load(self) -> None:
        """Read the file; a corrupted one is renamed aside (nothing is lost) and defaults are used.
        A file that cannot be read or replaced (a read-only folder, a directory in its place) leaves
        the defaults or what was read, and ``save_error`` says why changes will be refused."""
        self.save_error = persist.unwritable_reason(self.path.parent)
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("groups"), dict):
                raise ValueError("expected {'groups': {...}}")
            self._groups = {
                int(group): GroupOverrides.from_json(entry, where=f"group={group}")
                for group, entry in raw["groups"].items()
            }
        except OSError as error:
            self.save_error = persist.describe(error)
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError included
            self._groups = {}
            # Set aside for inspection (nothing is lost); where nothing can be written it stays put.
            kept_at = self.path if self.save_error else persist.set_aside(self.path)
            logger.warning(
                f"群设置文件已损坏，已保留在 {kept_at}，改用默认设置 / settings file corrupted ({error}); "
                f"kept at {kept_at}, using defaults"
            )

    def get(self, group_id: int) -> GroupSettings:
        overrides = self._groups.get(group_id, GroupOverrides())
        defaults = self.defaults
        return GroupSettings(
            enabled=defaults.enabled if overrides.enabled is None else overrides.enabled,
            threshold=defaults.threshold if overrides.threshold is None else overrides.threshold,
            action=defaults.action if overrides.action is None else overrides.action,
            exempt_admins=defaults.exempt_admins if overrides.exempt_admins is None else overrides.exempt_admins,
            allowed=defaults.allowed if overrides.allowed is None else frozenset(overrides.allowed),
            mute=defaults.mute if overrides.mute is None else overrides.mute,
            reply_text=defaults.reply_text if overrides.reply_text is None else overrides.reply_text,
            review_floor=defaults.review_floor if overrides.review_floor is None else overrides.review_floor,
        )

    def overridden(self, group_id: int) -> frozenset[str]:
        """The names of the settings this group's admins set (the others follow the global settings)."""
        overrides = self._groups.get(group_id, GroupOverrides())
        return frozenset(f.name for f in fields(GroupOverrides) if getattr(overrides, f.name) is not None)

    def groups(self) -> set[int]:
        """The groups whose admins changed a setting."""
        return set(self._groups)

    def is_enabled(self, group_id: int) -> bool:
        overrides = self._groups.get(group_id)
        return self.defaults.enabled if overrides is None or overrides.enabled is None else overrides.enabled

    async def update(self, group_id: int, **changes: object) -> GroupSettings:
        """Change a group's settings and write the file before returning; CannotSave when the
        file cannot be written (see ``save_error``)."""
        if self.save_error is not None:
            raise persist.CannotSave(f"群设置 / settings: {self.save_error}")
        async with self._write_lock:
            groups = dict(self._groups)
            groups[group_id] = replace(groups.get(group_id, GroupOverrides()), **changes)
            snapshot = {
                "version": _FORMAT_VERSION,
                "groups": {str(group): entry.to_json() for group, entry in groups.items()},
            }
            # Kept in memory only once it is on disk: a failed write changes nothing.
            await asyncio.to_thread(self._write, snapshot)
            self._groups = groups
        return self.get(group_id)

    async def change(self, group_id: int, operator: int | str, **changes: object) -> GroupSettings:
        """:meth:`update`, logged with who changed what: the admin's QQ number, or "web" for the console."""
        before = self.get(group_id)
        after = await self.update(group_id, **changes)
        changed = {
            name: (getattr(before, name), getattr(after, name))
            for name in (field.name for field in fields(GroupSettings))
            if getattr(before, name) != getattr(after, name)
        }
        logger.info(
            f"群设置已更改 / group settings changed: group={group_id} operator={operator} "
            + ", ".join(f"{name}: {old!r} → {new!r}" for name, (old, new) in changed.items())
        )
        return after

    def _write(self, snapshot: dict) -> None:
        text = json.dumps(snapshot, ensure_ascii=False, indent=2)
        persist.write_atomically(self.path, text.encode("utf-8"), durable=True)
