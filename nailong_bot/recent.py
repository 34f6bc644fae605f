"""Recent images: the images the bot decided lately, kept on disk so an admin's correction can
refer to a message even after the bot recalled it.

Layout under the store's directory: ``index.jsonl``, a journal with one line per change (an image
entry, or a warning → image message link), ``images/<sha256>`` (each distinct image once) and
``thumbs/<sha256>`` (its thumbnail for the console, a small JPEG made when the image was decided).
Loading replays the journal; once it has grown to twice what is live it is rewritten with only the
live entries. Bounded by count, total bytes and age; the oldest entries go first. Methods are
synchronous and block on file I/O: call them from a worker thread. They are safe to call from several
threads at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from nonebot.log import logger
from PIL import Image

from nailong_vision.handoff import RECENT_IMAGES as IMAGES_DIR
from nailong_vision.handoff import RECENT_INDEX as INDEX_FILE

from . import persist

THUMBNAILS_DIR = "thumbs"
THUMBNAIL_SIZE = (240, 240)
# The journal is compacted once it holds this many times the live lines (and at least the minimum).
_COMPACT_FACTOR = 2
_MIN_COMPACT_LINES = 64

DEFAULT_MAX_IMAGES = 500
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_AGE = 3 * 24 * 3600.0
_NAME_KEPT = 32


def make_thumbnail(frame: Image.Image) -> bytes:
    """A decoded frame as the console shows it: re-encoded small, never the posted bytes themselves."""
    small = frame.copy()
    small.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass(frozen=True)
class RecentImage:
    """One decided image of a message (a message may hold several)."""

    message_id: int
    group_id: int
    image_key: str  # the pipeline's identity of the image within the message
    sha256: str  # content hash: the stored file's name
    size: int
    score: float | None  # model score; None when a correction decided, not the model
    model_version: str
    hit: bool  # decided as nailong
    stored_at: float  # wall-clock seconds (the store outlives restarts)
    # Who posted it: QQ number, and the group card or nickname then (None: not known, as in older entries).
    sender: int | None = None
    sender_name: str | None = None


class RecentImages:
    def __init__(
        self,
        directory: Path,
        *,
        max_images: int = DEFAULT_MAX_IMAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the store in ``directory`` and load its index."""
        self.directory = directory
        self.max_images = max_images
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._images_dir = directory / IMAGES_DIR
        self._thumbnails_dir = directory / THUMBNAILS_DIR
        self._index_path = directory / INDEX_FILE
        self._lock = threading.Lock()
        self._entries: list[RecentImage] = []  # oldest first
        self._warnings: dict[int, int] = {}  # bot's warning message id → image message id
        self._journal_lines = 0
        # Why images cannot be kept (set by _load); None when they can.
        self.save_error: str | None = None
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        """Bytes of the distinct stored images."""
        return sum({entry.sha256: entry.size for entry in self._entries}.values())

    def remember(
        self,
        message_id: int,
        group_id: int,
        image_bytes: bytes,
        *,
        image_key: str,
        score: float | None,
        model_version: str,
        hit: bool,
        preview: Image.Image | None = None,
        sender: int | None = None,
        sender_name: str | None = None,
    ) -> None:
        """Store a decided image, and its thumbnail made from ``preview`` (its decoded first frame) if
        none is stored yet; the same (message, image_key) remembered again replaces the old one."""
        if len(image_bytes) > self.max_bytes or self.max_images <= 0 or self.save_error is not None:
            return
        sha256 = hashlib.sha256(image_bytes).hexdigest()
        entry = RecentImage(
            message_id=message_id,
            group_id=group_id,
            image_key=image_key,
            sha256=sha256,
            size=len(image_bytes),
            score=None if score is None else float(score),
            model_version=model_version,
            hit=hit,
            stored_at=self._clock(),
            sender=sender,
            sender_name=_short(sender_name),
        )
        new_thumbnail = preview is not None and not (self._thumbnails_dir / sha256).exists()
        thumbnail = make_thumbnail(preview) if new_thumbnail else None  # outside the lock: ~ms of CPU
        with self._lock:
            path = self._images_dir / sha256
            if not path.exists():
                persist.write_atomically(path, image_bytes, durable=False)
            if thumbnail is not None:
                persist.write_atomically(self._thumbnails_dir / sha256, thumbnail, durable=False)
            self._add(entry)

    def remember_repost(
        self,
        message_id: int,
        group_id: int,
        *,
        image_key: str,
        hit: bool,
        sender: int | None = None,
        sender_name: str | None = None,
    ) -> bool:
        """Store an image that was decided without its bytes (a repost the cache knew by
        ``image_key``) under its new message, sharing the latest stored copy with that key.
        False when no copy is stored any more."""
        if self.save_error is not None:
            return False
        with self._lock:
            earlier = next((e for e in reversed(self._entries) if e.image_key == image_key), None)
            if earlier is None:
                return False
            again = replace(
                earlier, message_id=message_id, group_id=group_id, hit=hit, stored_at=self._clock(),
                sender=sender, sender_name=_short(sender_name),
            )  # fmt: skip
            self._add(again)
            return True

    def link_reply(self, warning_message_id: int, message_id: int) -> None:
        """Let a reply to the bot's warning find the images of the message it warned about."""
        if self.save_error is not None:
            return
        with self._lock:
            self._warnings[warning_message_id] = message_id
            self._journal({"warning": [warning_message_id, message_id]})

    def lookup(self, message_id: int) -> list[RecentImage]:
        """The images of a message, given its id or the id of the bot's warning about it."""
        with self._lock:
            found = self._images_of(message_id)
            if not found and message_id in self._warnings:
                found = self._images_of(self._warnings[message_id])
            return found

    def hits(self, group_id: int, limit: int) -> list[list[RecentImage]]:
        """The images of this group's newest messages decided as nailong, newest message first (at most
        ``limit`` messages; past max_age: none). In a group where hits are only recalled, nothing is left
        to reply to, so admins correct them by these."""
        with self._lock:
            messages = dict.fromkeys(e.message_id for e in reversed(self._entries) if e.group_id == group_id and e.hit)
            return [found for message in list(messages)[:limit] if (found := self._images_of(message))]

    def newest(self, limit: int) -> list[RecentImage]:
        """The kept images, newest first."""
        with self._lock:
            oldest_kept = self._clock() - self.max_age
            return [e for e in reversed(self._entries) if e.stored_at >= oldest_kept][:limit]

    def read(self, entry: RecentImage) -> bytes:
        """The stored bytes; FileNotFoundError if the image was evicted since it was looked up."""
        return (self._images_dir / entry.sha256).read_bytes()

    def read_thumbnail(self, entry: RecentImage) -> bytes | None:
        """The stored thumbnail; None if it was never made (an image kept before thumbnails were) or
        the image was evicted since it was looked up."""
        try:
            return (self._thumbnails_dir / entry.sha256).read_bytes()
        except FileNotFoundError:
            return None

    def keep_thumbnail(self, entry: RecentImage, thumbnail: bytes) -> None:
        """Store a thumbnail made later, for an image that is still kept."""
        with self._lock:
            if any(e.sha256 == entry.sha256 for e in self._entries):
                persist.write_atomically(self._thumbnails_dir / entry.sha256, thumbnail, durable=False)

    def _add(self, entry: RecentImage) -> None:
        """Append an entry whose file is stored, and journal it; under the lock."""
        self._apply(entry)
        self._journal({"image": asdict(entry)})

    def _apply(self, entry: RecentImage) -> None:
        """Append an entry, replacing the same (message, image_key), and enforce the bounds."""
        key = (entry.message_id, entry.image_key)
        replaced = [old for old in self._entries if (old.message_id, old.image_key) == key]
        self._entries = [old for old in self._entries if old not in replaced]
        self._entries.append(entry)
        self._evict()
        self._delete_unreferenced({old.sha256 for old in replaced})

    def _images_of(self, message_id: int) -> list[RecentImage]:
        oldest_kept = self._clock() - self.max_age
        return [e for e in self._entries if e.message_id == message_id and e.stored_at >= oldest_kept]

    def _evict(self) -> None:
        """Drop the oldest entries until every bound holds, with the files nothing else refers to."""
        sizes = {entry.sha256: entry.size for entry in self._entries}
        references = Counter(entry.sha256 for entry in self._entries)
        total = sum(sizes.values())
        oldest_kept = self._clock() - self.max_age
        dropped = 0
        for entry in self._entries:
            within_bounds = len(self._entries) - dropped <= self.max_images and total <= self.max_bytes
            if within_bounds and entry.stored_at >= oldest_kept:
                break
            dropped += 1
            references[entry.sha256] -= 1
            if references[entry.sha256] == 0:
                total -= entry.size
        if dropped:
            evicted, self._entries = self._entries[:dropped], self._entries[dropped:]
            self._delete_unreferenced({entry.sha256 for entry in evicted})
            kept_messages = {entry.message_id for entry in self._entries}
            self._warnings = {w: m for w, m in self._warnings.items() if m in kept_messages}

    def _delete_unreferenced(self, sha256s: set[str]) -> None:
        for sha256 in sha256s - {entry.sha256 for entry in self._entries}:
            (self._images_dir / sha256).unlink(missing_ok=True)
            (self._thumbnails_dir / sha256).unlink(missing_ok=True)

    def _load(self) -> None:
        """Open the store. One that cannot write its files keeps nothing, not even what it could
        read (corrections by reply then answer that nothing can be saved, rather than half work)."""
        self.save_error = (
            persist.unwritable_reason(self._images_dir)
            or persist.unwritable_reason(self._thumbnails_dir)
            or persist.unwritable_reason(self.directory)
        )
        if self.save_error is None:
            try:
                self._replay_journal()
            except OSError as error:
                self.save_error = persist.describe(error)
        if self.save_error is not None:
            self._entries, self._warnings = [], {}

    def _replay_journal(self) -> None:
        """Replay the journal. At a line that cannot be read (a crash mid-write, a damaged file) the
        file is set aside (kept for inspection) and what was read before it is kept."""
        if self._index_path.exists():
            try:
                with self._index_path.open(encoding="utf-8") as journal:
                    for line in journal:
                        self._replay(json.loads(line))
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                aside = persist.set_aside(self._index_path)
                logger.warning(
                    f"近期图片索引已损坏，已移到 {aside}，保留之前读到的 {len(self._entries)} 张 / recent-images "
                    f"index corrupted ({error!r}); moved to {aside}, kept the {len(self._entries)} images read before"
                )
        # Files no entry refers to (left by a crash or a discarded index) would escape the byte bound.
        referenced = {entry.sha256 for entry in self._entries}
        for path in [*self._images_dir.iterdir(), *self._thumbnails_dir.iterdir()]:
            if path.name not in referenced:
                path.unlink(missing_ok=True)
        present = {path.name for path in self._images_dir.iterdir()}
        self._entries = [entry for entry in self._entries if entry.sha256 in present]
        with self._lock:
            self._evict()
            self._compact()

    def _replay(self, record: dict) -> None:
        if "image" in record:
            self._apply(RecentImage(**record["image"]))
        else:
            warning_message_id, message_id = record["warning"]
            self._warnings[int(warning_message_id)] = int(message_id)

    def _journal(self, record: dict) -> None:
        """Record one change: an appended line, where rewriting a whole index of 500 entries cost
        ~10 ms of CPU per image. Under the lock."""
        live = len(self._entries) + len(self._warnings)
        if self._journal_lines >= max(_MIN_COMPACT_LINES, _COMPACT_FACTOR * live):
            self._compact()  # the change is already in memory, so the rewrite holds it
            return
        persist.append(self._index_path, json.dumps(record, ensure_ascii=False) + "\n", durable=False)
        self._journal_lines += 1

    def _compact(self) -> None:
        """Rewrite the journal with only the live entries and links."""
        records = [{"image": asdict(entry)} for entry in self._entries]
        records += [{"warning": [w, m]} for w, m in self._warnings.items()]
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        persist.write_atomically(self._index_path, text.encode("utf-8"), durable=False)
        self._journal_lines = len(records)


def _short(name: str | None) -> str | None:
    """A nickname is whatever the member chose: kept short."""
    return (name or "")[:_NAME_KEPT] or None


class ActedHits:
    """Per group, the latest hit acted on, and the hits whose images are not kept yet.

    Keeping runs after acting (a recall never waits for the disk) and finishes in no fixed order, so the
    store's last kept hit need not be the last one recalled. A correction waits for the hits being kept, or
    `/nailong wrong` sent right after a recall would find nothing, or the group's previous hit."""

    def __init__(self) -> None:
        self._latest: dict[int, int] = {}
        self._pending: dict[int, set[asyncio.Future[None]]] = {}

    @contextmanager
    def acting(self, group_id: int, message_id: int) -> Iterator[None]:
        """Around acting on a hit and keeping its images."""
        self._latest[group_id] = message_id
        done = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(group_id, set())
        pending.add(done)
        try:
            yield
        finally:
            done.set_result(None)
            pending.discard(done)
            if not pending:
                del self._pending[group_id]

    def latest(self, group_id: int) -> int | None:
        """The message of the group's latest hit acted on since start-up."""
        return self._latest.get(group_id)

    async def settled(self, group_id: int, timeout: float) -> None:
        """Return once the group's hits acted on so far are kept, or after ``timeout`` seconds."""
        if pending := self._pending.get(group_id):
            await asyncio.wait(set(pending), timeout=timeout)
