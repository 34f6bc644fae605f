"""Per-group settings, kept in one JSON file that survives restarts.

Only what an admin changed is stored; everything else follows the global settings, so changing
`.env` later still reaches groups that never touched that setting.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

from nonebot.log import logger

from . import persist

SETTINGS_FILE = "settings.json"
_FORMAT_VERSION = 1


class Action(str, Enum):
    RECALL = "recall"
    REPLY = "reply"
    BOTH = "both"
    # Only reachable through NAILONG_RECALL=false and NAILONG_REPLY=false: hits are only logged.
    LOG = "log"

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
class GroupOverrides:
    """What a group's admins set; ``None`` means "as the global setting"."""

    enabled: bool | None = None
    threshold: float | None = None
    action: Action | None = None

    @classmethod
    def from_json(cls, raw: object) -> GroupOverrides:
        if not isinstance(raw, dict):
            raise ValueError(f"group entry is not an object: {raw!r}")
        enabled, threshold, action = raw.get("enabled"), raw.get("threshold"), raw.get("action")
        if enabled is not None and not isinstance(enabled, bool):
            raise ValueError(f"enabled must be true/false: {enabled!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be within 0..1: {threshold!r}")
        return cls(
            enabled=enabled,
            threshold=None if threshold is None else float(threshold),
            action=None if action is None else Action(action),
        )

    def to_json(self) -> dict:
        data = asdict(self)
        if self.action is not None:
            data["action"] = self.action.value
        return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class GroupSettings:
    """A group's effective settings."""

    enabled: bool
    threshold: float
    action: Action


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
                int(group): GroupOverrides.from_json(entry) for group, entry in raw["groups"].items()
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
        return GroupSettings(
            enabled=self.defaults.enabled if overrides.enabled is None else overrides.enabled,
            threshold=self.defaults.threshold if overrides.threshold is None else overrides.threshold,
            action=self.defaults.action if overrides.action is None else overrides.action,
        )

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

    def _write(self, snapshot: dict) -> None:
        text = json.dumps(snapshot, ensure_ascii=False, indent=2)
        persist.write_atomically(self.path, text.encode("utf-8"), durable=True)
