"""The review queue: images the model was unsure of (see reviewing.py), waiting for an operator's label.

Layout under the store's directory: ``queue.json`` (the waiting images, oldest first, and per model version
the tally of reviewed images the model got right), ``images/<sha256>`` (the posted bytes, for the
correction) and ``thumbs/<sha256>`` (a small JPEG for the page). The same image waits once, however often
it is posted. Bounded per group (the oldest goes first) and by the bytes of all waiting images.
Methods of :class:`ReviewQueue` block on file I/O: call them from a worker thread; they are thread-safe.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from nonebot.log import logger

from . import persist
from .corrections import Label

QUEUE_FILE = "queue.json"
IMAGES_DIR = "images"
THUMBNAILS_DIR = "thumbs"
_FORMAT_VERSION = 1

DEFAULT_MAX_PER_GROUP = 100
DEFAULT_MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Waiting:
    """An image waiting for a label."""

    sha256: str
    group_id: int
    message_id: int
    user_id: int  # who posted it
    self_id: str  # the bot account that saw it: a recall goes through it
    score: float  # the model's score
    threshold: float  # the group's threshold then: how near the model came to acting
    model_version: str
    # The model's own recommended threshold: its call, for the tally of how often it was right.
    model_threshold: float
    time: float  # wall-clock seconds when it was posted
    size: int


@dataclass
class Tally:
    """Reviewed images of one model version: how many, how many the model got right at its own
    threshold, and of those it called nailong how many were (its running precision from real groups)."""

    reviewed: int = 0
    right: int = 0
    called_nailong: int = 0
    called_nailong_right: int = 0

    def count(self, model_said_nailong: bool, label: Label) -> None:
        is_nailong = label == "nailong"
        self.reviewed += 1
        self.right += int(model_said_nailong == is_nailong)
        if model_said_nailong:
            self.called_nailong += 1
            self.called_nailong_right += int(is_nailong)


@dataclass
class _State:
    waiting: list[Waiting] = field(default_factory=list)  # oldest first
    tally: dict[str, Tally] = field(default_factory=dict)


class ReviewQueue:
    def __init__(
        self,
        directory: Path,
        *,
        max_per_group: int = DEFAULT_MAX_PER_GROUP,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the queue in ``directory``. Blocks on file I/O."""
        self.directory = directory
        self.max_per_group = max_per_group
        self.max_bytes = max_bytes
        self.clock = clock
        self._path = directory / QUEUE_FILE
        self._images_dir = directory / IMAGES_DIR
        self._thumbnails_dir = directory / THUMBNAILS_DIR
        # Reentrant: a change looks entries up under it too.
        self._lock = threading.RLock()
        self._state = _State()
        # Why images cannot be queued (set by _load); None when they can.
        self.save_error: str | None = None
        self._load()

    def __len__(self) -> int:
        return len(self._state.waiting)

    def count(self, group_id: int) -> int:
        with self._lock:
            return sum(1 for entry in self._state.waiting if entry.group_id == group_id)

    def waiting(self, group_id: int | None = None) -> list[Waiting]:
        """The waiting images (of one group, or all), newest first."""
        with self._lock:
            return [e for e in reversed(self._state.waiting) if group_id is None or e.group_id == group_id]

    def most_useful(self, limit: int, group_id: int | None = None) -> list[Waiting]:
        """The waiting images nearest their group's threshold (the model's hardest calls), newest first on a tie."""
        return sorted(self.waiting(group_id), key=lambda e: e.threshold - e.score)[:limit]

    def get(self, sha256: str) -> Waiting | None:
        with self._lock:
            return next((e for e in self._state.waiting if e.sha256 == sha256), None)

    def tally(self) -> dict[str, Tally]:
        with self._lock:
            return {version: Tally(**asdict(t)) for version, t in self._state.tally.items()}

    def add(self, entry: Waiting, image_bytes: bytes, thumbnail: bytes) -> bool:
        """Queue an image with its thumbnail; False when it already waits (or cannot be kept)."""
        if self.save_error is not None or entry.size > self.max_bytes:
            return False
        with self._lock:
            if any(e.sha256 == entry.sha256 for e in self._state.waiting):
                return False
            persist.write_atomically(self._images_dir / entry.sha256, image_bytes, durable=False)
            persist.write_atomically(self._thumbnails_dir / entry.sha256, thumbnail, durable=False)
            self._state.waiting.append(entry)
            self._evict(entry.group_id)
            self._save()
            return any(e.sha256 == entry.sha256 for e in self._state.waiting)

    def read(self, entry: Waiting) -> bytes:
        """The posted bytes; FileNotFoundError once it no longer waits."""
        return (self._images_dir / entry.sha256).read_bytes()

    def read_thumbnail(self, sha256: str) -> bytes | None:
        if self.get(sha256) is None:
            return None
        try:
            return (self._thumbnails_dir / sha256).read_bytes()
        except FileNotFoundError:
            return None

    def resolve(self, sha256: str, label: Label) -> Waiting | None:
        """Take a labelled image off the queue and count whether the model was right; None if it was not
        waiting (labelled meanwhile, or evicted)."""
        with self._lock:
            entry = self.get(sha256)
            if entry is None:
                return None
            self._state.waiting.remove(entry)
            tally = self._state.tally.setdefault(entry.model_version, Tally())
            tally.count(entry.score >= entry.model_threshold, label)
            self._save()
            self._delete_files({sha256})
            return entry

    def _evict(self, group_id: int) -> None:
        """Drop the group's oldest beyond its cap, then the oldest of all beyond the byte bound; under the lock."""
        waiting = self._state.waiting
        over = self.count(group_id) - self.max_per_group
        dropped = [e for e in waiting if e.group_id == group_id][: max(over, 0)]
        kept = [e for e in waiting if e not in dropped]
        total = sum(e.size for e in kept)
        while kept and total > self.max_bytes:
            total -= kept[0].size
            dropped.append(kept.pop(0))
        self._state.waiting = kept
        self._delete_files({e.sha256 for e in dropped})

    def _delete_files(self, sha256s: set[str]) -> None:
        for sha256 in sha256s:
            (self._images_dir / sha256).unlink(missing_ok=True)
            (self._thumbnails_dir / sha256).unlink(missing_ok=True)

    def _save(self) -> None:
        snapshot = {
            "version": _FORMAT_VERSION,
            "waiting": [asdict(e) for e in self._state.waiting],
            "tally": {version: asdict(t) for version, t in self._state.tally.items()},
        }
        persist.write_atomically(self._path, json.dumps(snapshot, ensure_ascii=False).encode("utf-8"), durable=False)

    def _load(self) -> None:
        """Read the queue. An unreadable file is set aside (kept for inspection) and the queue starts
        empty; images whose files are gone are dropped, and files no entry refers to are deleted."""
        self.save_error = persist.unwritable_reason(self._images_dir) or persist.unwritable_reason(
            self._thumbnails_dir
        )
        if self.save_error is not None:
            return
        try:
            if self._path.exists():
                self._state = _parse(json.loads(self._path.read_text(encoding="utf-8")))
        except OSError as error:
            self.save_error = persist.describe(error)
            return
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            aside = persist.set_aside(self._path)
            logger.warning(
                f"复核队列文件已损坏，已移到 {aside}，队列从空开始 / review queue corrupted ({error!r}); moved to "
                f"{aside}, starting empty"
            )
        present = {path.name for path in self._images_dir.iterdir()}
        self._state.waiting = [e for e in self._state.waiting if e.sha256 in present]
        referenced = {e.sha256 for e in self._state.waiting}
        for path in [*self._images_dir.iterdir(), *self._thumbnails_dir.iterdir()]:
            if path.name not in referenced:
                path.unlink(missing_ok=True)


def _parse(raw: dict) -> _State:
    if not isinstance(raw, dict) or not isinstance(raw.get("waiting"), list) or not isinstance(raw.get("tally"), dict):
        raise ValueError("expected {'waiting': [...], 'tally': {...}}")
    names = {f.name for f in fields(Waiting)}
    waiting = []
    for item in raw["waiting"]:
        if not isinstance(item, dict) or set(item) != names:
            raise ValueError(f"unreadable entry {item!r}")
        waiting.append(Waiting(**item))
    return _State(waiting, {str(version): Tally(**counts) for version, counts in raw["tally"].items()})
