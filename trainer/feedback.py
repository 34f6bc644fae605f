"""What the bot leaves for a refresh to learn from, read without touching it: the admins' corrections
and the recent images.

Both folders belong to the running plugin (``nailong_vision/handoff.py`` names their files and columns,
``nailong_bot/corrections.py`` and ``nailong_bot/recent.py`` describe their layout); this module only reads
them, so a refresh can run beside the bot. It does not import the plugin: the trainer runs in an
interpreter that need not have NoneBot.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from nailong_vision.handoff import (
    ADD,
    CORRECTION_LABELS,
    CORRECTIONS_FILE,
    RECENT_IMAGES,
    RECENT_INDEX,
    REPLACE,
    SCOPE_COLUMN,
    SCOPE_EVERYWHERE,
    UNDO,
)

log = logging.getLogger(__name__)


class FeedbackError(ValueError):
    """The bot's folders cannot be used as they are; the message says why."""


@dataclass(frozen=True)
class CorrectionFile:
    """One active correction: the admins' label for an image file."""

    id: str  # the image's id (handoff.image_id)
    label: str
    path: Path
    phash: int | None  # None: a nearly flat image, matched by its exact bytes only


def read_corrections(feedback_dir: str | Path) -> list[CorrectionFile]:
    """The active corrections that apply in every group, oldest first: ``corrections.csv`` replayed the
    way the plugin replays it (``add`` makes one active, ``replace`` and ``undo`` end it, each in its
    scope; ``.retired/`` files are never read). A correction that applies in one group only is the word of
    one group's admin, waiting for a superuser's confirmation: it is not learned. Unreadable rows and
    corrections whose file is gone are skipped with a warning."""
    feedback_dir = Path(feedback_dir)
    log_path = feedback_dir / CORRECTIONS_FILE
    if not log_path.is_file():
        raise FeedbackError(f"没有纠错记录 / no corrections log: {log_path}")
    with log_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        needed = {"action", "id", "label", "file", "phash"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise FeedbackError(f"纠错记录的列不对 / {log_path} lacks the columns {sorted(needed)}")
        if SCOPE_COLUMN not in reader.fieldnames:
            raise FeedbackError(
                f"纠错记录是旧格式（没有 {SCOPE_COLUMN} 列），先启动一次机器人把它升级 / {log_path} is from before "
                f"scopes (no {SCOPE_COLUMN} column): start the bot once to upgrade it"
            )
        rows = list(reader)
    active: dict[tuple[str, str], CorrectionFile] = {}
    skipped = 0
    for row in rows:
        try:
            key = (row[SCOPE_COLUMN], row["id"])
            if row["action"] == ADD:
                if row["label"] not in CORRECTION_LABELS:
                    raise ValueError(row["label"])
                active.pop(key, None)  # re-added: the newest position
                active[key] = CorrectionFile(row["id"], row["label"], feedback_dir / row["file"],
                                             int(row["phash"], 16) if row["phash"] else None)
            elif row["action"] in (REPLACE, UNDO):
                active.pop(key, None)
            else:
                raise ValueError(row["action"])
        except (ValueError, TypeError, KeyError):
            skipped += 1
    everywhere = [c for (scope, _), c in active.items() if scope == SCOPE_EVERYWHERE]
    missing = [c for c in everywhere if not c.path.is_file()]
    if skipped or missing:
        log.warning("纠错记录跳过 %d 行无法读取、%d 个文件缺失 / corrections: skipped %d unreadable rows, %d missing files",
                    skipped, len(missing), skipped, len(missing))
    return [c for c in everywhere if c.path.is_file()]


@dataclass(frozen=True)
class RecentFile:
    """One distinct image the recent store holds, with the score the bot's model gave it."""

    path: Path
    score: float | None  # P(nailong) by the model that decided it; None where a correction decided
    model_version: str


def read_recent(recent_dir: str | Path) -> list[RecentFile]:
    """The distinct image files the recent store still holds, oldest first (an image posted again counts
    once, with its latest score). A damaged journal line (a crash mid-write) ends the reading, as it does
    in the plugin."""
    recent_dir = Path(recent_dir)
    index = recent_dir / RECENT_INDEX
    if not index.is_file():
        raise FeedbackError(f"没有近期图片索引 / no recent-images index: {index}")
    latest: dict[str, RecentFile] = {}
    with index.open(encoding="utf-8") as journal:
        for line in journal:
            try:
                record = json.loads(line)
                if "image" in record:
                    image = record["image"]
                    score = None if image.get("score") is None else float(image["score"])
                    latest.pop(str(image["sha256"]), None)
                    latest[str(image["sha256"])] = RecentFile(recent_dir / RECENT_IMAGES / str(image["sha256"]), score,
                                                              str(image.get("model_version", "")))
            except (ValueError, TypeError, KeyError, AttributeError):
                log.warning("近期图片索引有损坏的行，之后的不读 / recent-images index damaged; read up to there: %s", index)
                break
    return [entry for entry in latest.values() if entry.path.is_file()]
