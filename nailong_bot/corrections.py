"""Corrections: admins' verdicts on images the model got wrong. They override the model for the
image and its near-identical copies, and those that apply everywhere are kept as training data.

Where a correction applies (its scope):

- A group admin's correction applies in that group only, at once: one group's admin moderates one group.
- It applies in every group when a superuser makes or confirms it (chat or console), or when admins of
  ``agree_groups`` different groups, ``agree_groups`` different people, correct the same image the
  same way.
- In a group, the group's own correction of an image comes before one that applies everywhere.

Layout under the feedback folder, ready to be listed in the trainer config's ``data:`` beside the base data::

    nailong/<id>.<ext>    other/<id>.<ext>     images of the corrections that apply everywhere (ImageFolder)
    .pending/<id>.<ext>   images of group-scoped corrections, waiting for a confirmation (one copy per
                          image, whatever its label and however many groups corrected it)
    corrections.csv       every add / replace / undo, in order
    .retired/...          files of undone corrections and of superseded near-copies (hidden: not training data)

The folder is capped (``max_bytes``): the oldest retired files are deleted first; when the live
corrections alone would pass the cap, a new correction is refused (:class:`FolderFull`), never a live
correction's image dropped. A relabel of the same image moves its one copy, it never keeps another.

``corrections.csv`` is the single source of truth: loading replays it, so the files and the index
can never disagree with the log, and no second index has to be kept in step. A log from before scopes
(no ``scope`` column) is converted once at loading; see :func:`_scope_of_old_row` for the rule.

An image is identified by the pHash of its first frame (animated images: the first frame, which
``decode_frames`` always samples, so the pipeline's frames hash the same way). Nearly flat images
(solid colours) all hash alike, so their corrections match only the exact bytes.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from nonebot.log import logger

from nailong_vision.handoff import ADD, CORRECTION_LABELS, PENDING_DIR, REPLACE, RETIRED_DIR, UNDO, image_id
from nailong_vision.handoff import CORRECTION_DISTANCE as DEFAULT_MAX_DISTANCE
from nailong_vision.handoff import CORRECTIONS_COLUMNS as CSV_COLUMNS
from nailong_vision.handoff import CORRECTIONS_FILE as CSV_FILE
from nailong_vision.handoff import CORRECTIONS_V1_COLUMNS as V1_COLUMNS
from nailong_vision.handoff import SCOPE_EVERYWHERE as EVERYWHERE
from nailong_vision.phash import frame_hash, hamming

from . import persist
from .budget import DecodeBudget
from .decision import Decision

Label = Literal["nailong", "other"]
LABELS: tuple[Label, ...] = CORRECTION_LABELS

# A decision made by a correction has the source "correction:<id>".
SOURCE_PREFIX = "correction:"
DEFAULT_AGREE_GROUPS = 2
DEFAULT_MAX_BYTES = 512 << 20
# Formats the trainer reads as they are; anything else is saved as PNG of its first frame.
_KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "AVIF": "avif"}
# A corrected image is decoded at about the size the model sees (a pHash looks at 32×32).
_DECODE_SIZE = 224
# The hash index's scope for corrections that apply everywhere (group numbers are positive).
_EVERYWHERE_KEY = -1


class FolderFull(OSError):
    """A correction refused: the feedback folder is at its cap with no retired file left to delete."""


@dataclass(frozen=True)
class Correction:
    """An admin's verdict on one image."""

    id: str  # first 16 hex digits of the image's sha256; also the file's stem
    label: Label
    phash: int | None  # None: a nearly flat image, matched by exact bytes only
    file: str  # path of the image, relative to the feedback folder
    time: str  # ISO 8601
    group_id: int  # where it was made
    user_id: int | str  # who made it: the admin's QQ number, or "web[:<name>]" for the web console
    score: float | None  # the model's score when the admin corrected it
    model_version: str
    # False: it applies in group_id only, waiting for a confirmation.
    everywhere: bool = False
    # Who made it apply everywhere: a superuser's QQ number, "web[:<name>]", or "groups:<a>,<b>" (agreement).
    confirmed_by: str = ""

    @property
    def scope(self) -> int | None:
        """The group it applies in; None: every group."""
        return None if self.everywhere else self.group_id

    @property
    def scope_text(self) -> str:
        return EVERYWHERE if self.everywhere else str(self.group_id)


class Corrections:
    def __init__(
        self,
        feedback_dir: Path,
        *,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        budget: DecodeBudget | None = None,
        agree_groups: int = DEFAULT_AGREE_GROUPS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        superusers: Collection[str] = (),
    ) -> None:
        """Open (or create) the feedback folder and replay its log. Blocks on file I/O. ``budget``: the
        plugin's decode budget, which decoding a corrected image waits for (None: unbounded).
        ``agree_groups``: how many groups' admins agreeing make a correction apply everywhere.
        ``max_bytes``: the folder's cap. ``superusers``: their QQ numbers, read only to convert a log
        written before scopes."""
        self.feedback_dir = feedback_dir
        self.max_distance = max_distance
        self.agree_groups = agree_groups
        self.max_bytes = max_bytes
        self._superusers = frozenset(str(user) for user in superusers)
        self._budget = budget or DecodeBudget(None)
        self.csv_path = feedback_dir / CSV_FILE
        self._lock = threading.Lock()
        # (scope, id) → correction; insertion order: oldest first.
        self._active: dict[tuple[int | None, str], Correction] = {}
        # Rebuilt on every change and swapped in whole, so lookup() reads it without the lock:
        # the hashes, the scope of each (_EVERYWHERE_KEY: everywhere), and the corrections.
        self._index: tuple[np.ndarray, np.ndarray, list[Correction]] = (
            np.empty(0, np.uint64), np.empty(0, np.int64), []
        )  # fmt: skip
        # Why corrections cannot be saved (set by _load); None when they can.
        self.save_error: str | None = None
        self._load()

    def __len__(self) -> int:
        return len(self._active)

    def counts(self) -> dict[str, int]:
        """Active corrections that apply everywhere, per label."""
        counts = dict.fromkeys(LABELS, 0)
        with self._lock:
            for correction in self._active.values():
                if correction.everywhere:
                    counts[correction.label] += 1
        return counts

    def newest(self, limit: int, *, everywhere: bool | None = None) -> list[Correction]:
        """The active corrections, newest first; ``everywhere``: only those that do (True) or wait for
        a confirmation (False)."""
        with self._lock:
            chosen = [c for c in reversed(self._active.values()) if everywhere is None or c.everywhere == everywhere]
        return chosen[:limit]

    def pending(self, limit: int) -> list[Correction]:
        """Group-scoped corrections, newest first: what waits for a superuser's confirmation."""
        return self.newest(limit, everywhere=False)

    def lookup(
        self,
        frames_or_hash: Sequence[Image.Image] | Image.Image | int | None,
        *,
        image_id: str | None = None,
        group_id: int | None = None,
    ) -> Correction | None:
        """The correction that decides this image in ``group_id`` (None: one that applies everywhere):
        the group's own first, then one that applies everywhere; in each, the exact image (``image_id``,
        when given) first, else the nearest pHash within ``max_distance`` bits (the newest on a tie).
        Frames: only the first is hashed. Fast: one vectorised pass, nothing at all while there are none."""
        if not self._active:
            return None
        if isinstance(frames_or_hash, int) or frames_or_hash is None:
            query = frames_or_hash
        else:
            first = frames_or_hash if isinstance(frames_or_hash, Image.Image) else frames_or_hash[0]
            query = frame_hash(first)
        for scope in (group_id, None) if group_id is not None else (None,):
            if image_id is not None and (exact := self._active.get((scope, image_id))) is not None:
                return exact
            if query is not None and (nearest := self._nearest(query, scope)) is not None:
                return nearest
        return None

    def deciding(self, image_bytes: bytes, group_id: int | None) -> Correction | None:
        """The correction that decides an image in ``group_id``, given its bytes (decoded under the
        budget: blocks). ImageDecodeError for bytes that are not an image."""
        with self._budget.frames(image_bytes, max_frames=1, draft_size=_DECODE_SIZE) as (first,):
            query = frame_hash(first)
        return self.lookup(query, image_id=image_id(image_bytes), group_id=group_id)

    def apply(self, decision: Decision, group_id: int | None) -> Decision:
        """``decision`` (the model's, perhaps cached) as the corrections that apply in ``group_id`` have it
        (None: those that apply everywhere). Never cached: the cache holds only what the model said, so
        no group's correction can reach another group through it."""
        correction = self.lookup(decision.phash, image_id=decision.image_id or None, group_id=group_id)
        if correction is None:
            return decision
        score = 1.0 if correction.label == "nailong" else 0.0
        return replace(decision, score=score, source=SOURCE_PREFIX + correction.id, model_score=None)

    def add(
        self,
        image_bytes: bytes,
        *,
        label: Label,
        group_id: int,
        user_id: int | str,
        score: float | None,
        model_version: str,
        everywhere: bool = False,
    ) -> Correction:
        """Record a verdict: in ``group_id`` only, or ``everywhere`` (a superuser's word). A group's word
        applies everywhere once admins of ``agree_groups`` groups agree. It replaces earlier corrections
        of the same bytes, and of near-identical images with the other label, in its scope (the newest
        word wins); one that applies everywhere on a superuser's word replaces every group's too.
        Raises ImageDecodeError for anything that is not an image, CannotSave where nothing can be
        written (see ``save_error``), FolderFull at the folder's cap; nothing is written then."""
        self._require_saving()
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}: {label!r}")
        with self._budget.frames(image_bytes, max_frames=1, draft_size=_DECODE_SIZE) as (first,):
            correction_id, extension = image_id(image_bytes), _extension(image_bytes)
            new = Correction(
                id=correction_id,
                label=label,
                phash=frame_hash(first),
                file=_file_for(everywhere, label, correction_id, extension),
                time=_now(),
                group_id=group_id,
                user_id=user_id,
                score=None if score is None else float(score),
                model_version=model_version,
                everywhere=everywhere,
                confirmed_by=str(user_id) if everywhere else "",
            )
            with self._lock:
                superseded = self._superseded_by(new, every_group=everywhere)
                agreeing = [] if everywhere else self._agreeing(new)
                if agreeing:
                    groups = ",".join(str(g) for g in sorted({group_id, *(c.group_id for c in agreeing)}))
                    new = replace(
                        new, everywhere=True, confirmed_by=f"groups:{groups}",
                        file=_file_for(True, label, correction_id, extension),
                    )  # fmt: skip
                    superseded += self._superseded_by(new, every_group=False) + agreeing
                self._put(new, image_bytes, first, superseded, actor=(group_id, user_id))
        if agreeing:
            logger.info(
                f"{len(agreeing) + 1} 个群的管理员意见一致，纠错对所有群生效 / admins of {len(agreeing) + 1} groups "
                f"agree: correction {new.id} now applies everywhere ({new.confirmed_by})"
            )
        return new

    def confirm(self, group_id: int, correction_id: str, *, operator: int | str, where: int = 0) -> Correction | None:
        """A superuser's (or the console's) confirmation: group ``group_id``'s correction ``correction_id``
        applies everywhere from now on, and replaces every group's corrections of the image. None when
        that group has no such correction. ``where``: the group the confirmation was sent in (0: the
        console). CannotSave / FolderFull / OSError as for :meth:`add`."""
        self._require_saving()
        with self._lock:
            local = self._active.get((group_id, correction_id))
            if local is None:
                return None
            data = (self.feedback_dir / local.file).read_bytes()
            new = replace(
                local, everywhere=True, confirmed_by=str(operator), time=_now(),
                file=_file_for(True, local.label, local.id, Path(local.file).suffix.lstrip(".")),
            )  # fmt: skip
            self._put(new, data, None, self._superseded_by(new, every_group=True), actor=(where, operator))
        return new

    def undo(
        self,
        image_bytes: bytes | None = None,
        *,
        correction_id: str | None = None,
        group_id: int = 0,
        user_id: int | str = 0,
    ) -> list[Correction]:
        """Remove corrections: every one with ``correction_id``, or those that decide an image in
        ``group_id`` (the group's own and the one that applies everywhere, so that the model decides
        there again; exact bytes, else nearest pHash). Their files leave the folder for ``.retired/``.
        Empty if nothing matched; ImageDecodeError for bytes that are neither a corrected image nor
        decodable; CannotSave where nothing can be written."""
        self._require_saving()
        if (image_bytes is None) == (correction_id is None):
            raise ValueError("give exactly one of image_bytes / correction_id")
        if image_bytes is not None:
            with self._budget.frames(image_bytes, max_frames=1, draft_size=_DECODE_SIZE) as (first,):
                query = frame_hash(first)
        with self._lock:
            if correction_id is not None:
                targets = [c for c in self._active.values() if c.id == correction_id]
            else:
                found = (
                    self.lookup(query, image_id=image_id(image_bytes), group_id=scope)
                    for scope in (group_id, None)
                )
                targets = list({(c.scope, c.id): c for c in found if c is not None}.values())
            for target in targets:
                del self._active[(target.scope, target.id)]
            for target in targets:
                retired = self._release(target.file, same_bytes_kept=False)
                self._append_row(UNDO, target, file=retired, group_id=group_id, user_id=user_id)
            self._rebuild_index()
        return targets

    def folder_bytes(self) -> int:
        """What the feedback folder takes on disk (its files' sizes)."""
        return sum(size for _, size, _ in _files(self.feedback_dir))

    def _require_saving(self) -> None:
        if self.save_error is not None:
            raise persist.CannotSave(f"纠错 / corrections: {self.save_error}")

    def _same_image(self, a: Correction, b: Correction) -> bool:
        if a.id == b.id:
            return True
        return a.phash is not None and b.phash is not None and hamming(a.phash, b.phash) <= self.max_distance

    def _agreeing(self, new: Correction) -> list[Correction]:
        """Other groups' corrections of the same image with the same label, when with ``new`` they make
        ``agree_groups`` groups and as many people; else empty."""
        others = [
            c
            for c in self._active.values()
            if not c.everywhere and c.group_id != new.group_id and c.label == new.label
            and str(c.user_id) != str(new.user_id) and self._same_image(c, new)
        ]  # fmt: skip
        groups = {new.group_id} | {c.group_id for c in others}
        people = {str(new.user_id)} | {str(c.user_id) for c in others}
        return others if min(len(groups), len(people)) >= self.agree_groups else []

    def _superseded_by(self, new: Correction, *, every_group: bool) -> list[Correction]:
        """The corrections ``new`` replaces: in its scope, those of the same bytes or of near-identical
        images with the other label; with ``every_group``, also every group's of the image."""

        def replaced(old: Correction) -> bool:
            if old.scope == new.scope:
                return old.id == new.id or (old.label != new.label and self._same_image(old, new))
            return every_group and self._same_image(old, new)

        return [old for old in self._active.values() if replaced(old)]

    def _put(
        self,
        new: Correction,
        data: bytes,
        first: Image.Image | None,
        superseded: list[Correction],
        *,
        actor: tuple[int, int | str],
    ) -> None:
        """Save ``new``'s image, end ``superseded`` and make ``new`` active (under the lock)."""
        if not (self.feedback_dir / new.file).exists():
            self._make_room(len(data))
            self._save_image(new, data, first)
        for old in dict.fromkeys(superseded):
            del self._active[(old.scope, old.id)]
        self._active[(new.scope, new.id)] = new
        for old in dict.fromkeys(superseded):
            kept_at = self._release(old.file, same_bytes_kept=old.id == new.id)
            self._append_row(REPLACE, old, file=new.file if old.id == new.id else kept_at,
                             group_id=actor[0], user_id=actor[1])  # fmt: skip
        self._append_row(ADD, new)
        self._rebuild_index()

    def _release(self, file: str, *, same_bytes_kept: bool) -> str:
        """A file no longer referenced by ``file``'s correction: kept while another active correction
        uses it, deleted when its bytes live on in the new correction's file, else retired. Returns
        where it is now."""
        if any(c.file == file for c in self._active.values()):
            return file
        source = self.feedback_dir / file
        if same_bytes_kept:
            source.unlink(missing_ok=True)
            return file
        retired = f"{RETIRED_DIR}/{file}"
        if source.exists():
            (self.feedback_dir / retired).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, self.feedback_dir / retired)
        return retired

    def _make_room(self, needed: int) -> None:
        """Delete the oldest retired files until ``needed`` more bytes fit under the cap; FolderFull
        when the live corrections leave no room."""
        files = list(_files(self.feedback_dir))
        total = sum(size for _, size, _ in files)
        retired_dir = self.feedback_dir / RETIRED_DIR
        retired = sorted((mtime, size, path) for path, size, mtime in files if retired_dir in path.parents)
        freed = []
        while total + needed > self.max_bytes and retired:
            _, size, path = retired.pop(0)
            path.unlink(missing_ok=True)
            total -= size
            freed.append(path.name)
        if freed:
            logger.info(
                f"纠错目录接近上限，删除了 {len(freed)} 个最旧的已退役文件 / feedback folder near its cap: deleted "
                f"the {len(freed)} oldest retired files"
            )
        if total + needed > self.max_bytes:
            raise FolderFull(
                errno.ENOSPC,
                f"纠错目录已满（{total >> 20} MB，上限 {self.max_bytes >> 20} MB），请撤销旧的纠错或调高 "
                f"NAILONG_FEEDBACK_MAX_MB / feedback folder full ({total >> 20} MB of {self.max_bytes >> 20} MB): "
                f"undo old corrections or raise NAILONG_FEEDBACK_MAX_MB",
            )

    def _nearest(self, query: int, scope: int | None) -> Correction | None:
        hashes, scopes, corrections = self._index
        positions = np.flatnonzero(scopes == (_EVERYWHERE_KEY if scope is None else scope))
        if not len(positions):
            return None
        distances = _popcount(hashes[positions] ^ np.uint64(query))
        newest_nearest = len(distances) - 1 - int(np.argmin(distances[::-1]))
        if distances[newest_nearest] > self.max_distance:
            return None
        return corrections[positions[newest_nearest]]

    def _rebuild_index(self) -> None:
        hashed = [c for c in self._active.values() if c.phash is not None]
        self._index = (
            np.array([c.phash for c in hashed], dtype=np.uint64),
            np.array([_EVERYWHERE_KEY if c.everywhere else c.group_id for c in hashed], dtype=np.int64),
            hashed,
        )

    def _save_image(self, correction: Correction, image_bytes: bytes, first: Image.Image | None) -> None:
        target = self.feedback_dir / correction.file
        target.parent.mkdir(parents=True, exist_ok=True)
        if first is not None and correction.file.endswith(".png") and _format(image_bytes) != "PNG":
            buffer = io.BytesIO()
            first.save(buffer, format="PNG")
            image_bytes = buffer.getvalue()
        # The temporary file sits outside the label folders so a training run never picks it up.
        tmp = self.feedback_dir / f".{correction.id}.tmp"
        persist.write_atomically(target, image_bytes, durable=False, tmp=tmp)

    def _append_row(self, action: str, correction: Correction, **changes: object) -> None:
        if action != ADD:
            changes["time"] = _now()
        self._append_rows([{**_row(action, correction), **changes}])

    def _append_rows(self, rows: list[dict[str, object]]) -> None:
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=CSV_COLUMNS)
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            writer.writeheader()
        writer.writerows(rows)
        persist.append(self.csv_path, lines.getvalue(), durable=True)

    def _load(self) -> None:
        """Open the folder and replay the log. Where they cannot be written, the corrections that
        could be read still decide their images, and ``save_error`` says why changes are refused."""
        self.save_error = persist.unwritable_reason(self.feedback_dir)
        try:
            self._replay_log()
        except OSError as error:
            self.save_error = persist.describe(error)

    def _replay_log(self) -> None:
        """Unreadable rows are skipped with a warning; an unrecognisable log is set aside (its
        images stay in the folder) and a new one is started."""
        if self.save_error is None:
            for label in LABELS:
                (self.feedback_dir / label).mkdir(parents=True, exist_ok=True)
        if not self.csv_path.exists():
            return
        if self.save_error is None:
            with self.csv_path.open("rb+") as handle:
                # A crash mid-append can leave a last line without its newline; end it before appending.
                size = handle.seek(0, os.SEEK_END)
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")
        try:
            with self.csv_path.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                columns = None if reader.fieldnames is None else tuple(reader.fieldnames)
                if columns is not None and columns not in (CSV_COLUMNS, V1_COLUMNS):
                    raise ValueError(f"unexpected columns {reader.fieldnames}")
                rows = list(reader)
        except (ValueError, UnicodeDecodeError, csv.Error) as error:
            # Set aside for inspection; where nothing can be written it stays put.
            kept_at = self.csv_path if self.save_error else persist.set_aside(self.csv_path)
            logger.warning(
                f"纠错记录无法读取，已保留在 {kept_at}，重新开始记录 / corrections log unreadable ({error}); "
                f"kept at {kept_at}, starting a new one"
            )
            return
        if columns == V1_COLUMNS:
            rows = self._scoped_v1_rows(rows)
        skipped = 0
        for row in rows:
            try:
                correction = _correction_from_row(row)
            except (ValueError, TypeError, KeyError):
                skipped += 1
                continue
            key = (correction.scope, correction.id)
            if row["action"] == ADD:
                self._active.pop(key, None)  # re-added: moves to the newest position
                self._active[key] = correction
            elif row["action"] in (REPLACE, UNDO):
                self._active.pop(key, None)
            else:
                skipped += 1
        if skipped:
            logger.warning(
                f"纠错记录中有 {skipped} 行无法读取，已跳过 / skipped {skipped} unreadable rows in {self.csv_path}"
            )
        self._rebuild_index()

    def _scoped_v1_rows(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """A log from before scopes, each row given its scope (see :func:`_scope_of_old_row`); written back
        (the old log kept beside it as ``corrections.csv.v1-<time>``) and the group-scoped corrections'
        images moved out of the training folders, where the folder can be written."""
        scoped, scope_of_id = [], {}
        for row in rows:
            row = dict(row)
            if row.get("action") == ADD:
                row["scope"], row["confirmed_by"] = _scope_of_old_row(row, self._superusers)
                if row["scope"] != EVERYWHERE and row.get("file"):
                    row["file"] = f"{PENDING_DIR}/{Path(row['file']).name}"
                scope_of_id[row.get("id")] = row["scope"]
            else:  # before scopes an image had one correction: this row ends it, whatever its scope
                row["scope"], row["confirmed_by"] = scope_of_id.get(row.get("id"), EVERYWHERE), ""
            scoped.append(row)
        if self.save_error is not None:
            return scoped
        active = {row["id"]: row for row in scoped if row["action"] == ADD}
        for row in scoped:
            if row["action"] != ADD:
                active.pop(row.get("id"), None)
        for row in active.values():
            if row["scope"] != EVERYWHERE:
                moved = self.feedback_dir / row["file"]
                before = self.feedback_dir / row["label"] / moved.name
                if before.is_file() and not moved.exists():
                    moved.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(before, moved)
        backup = self.csv_path.with_name(f"{CSV_FILE}.v1-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(self.csv_path, backup)
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({column: row.get(column, "") for column in CSV_COLUMNS} for row in scoped)
        # A crash leaves the old log or the new one, never neither.
        persist.write_atomically(self.csv_path, lines.getvalue().encode("utf-8"), durable=True)
        groups = sum(1 for row in active.values() if row["scope"] != EVERYWHERE)
        logger.warning(
            f"纠错记录已升级：{groups} 条管理员的纠错只对各自的群生效，等待超级用户确认；旧记录保留在 {backup.name} / "
            f"corrections log upgraded: {groups} admins' corrections now apply in their own group only, waiting "
            f"for a superuser's confirmation; the old log is kept as {backup.name}"
        )
        return scoped


def _scope_of_old_row(row: dict[str, str], superusers: frozenset[str]) -> tuple[str, str]:
    """(scope, confirmed_by) of a correction made before scopes. A superuser's applies everywhere, as
    one made now would; any other applies in the group it was made in (no admin's word reaches another
    group until confirmed); one with no group (0) applies nowhere until a superuser confirms it."""
    if row.get("user_id", "") in superusers:
        return EVERYWHERE, row["user_id"]
    return row.get("group_id", "") or "0", ""


def _file_for(everywhere: bool, label: str, correction_id: str, extension: str) -> str:
    return f"{label if everywhere else PENDING_DIR}/{correction_id}.{extension}"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _files(folder: Path):
    """(path, size, mtime) of every file under ``folder``."""
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            yield path, stat.st_size, stat.st_mtime


def _row(action: str, correction: Correction) -> dict[str, object]:
    return {
        "time": correction.time,
        "action": action,
        "id": correction.id,
        "label": correction.label,
        "group_id": correction.group_id,
        "user_id": correction.user_id,
        "score": "" if correction.score is None else f"{correction.score:.6f}",
        "model_version": correction.model_version,
        "file": correction.file,
        "phash": "" if correction.phash is None else f"{correction.phash:016x}",
        "scope": correction.scope_text,
        "confirmed_by": correction.confirmed_by,
    }


def _correction_from_row(row: dict[str, str]) -> Correction:
    if None in row or None in row.values():
        raise ValueError("wrong number of fields")
    label = row["label"]
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    scope = row["scope"]
    everywhere = scope == EVERYWHERE
    return Correction(
        id=row["id"],
        label=label,
        phash=int(row["phash"], 16) if row["phash"] else None,
        file=row["file"],
        time=row["time"],
        # A row that ends a correction names who ended it; the scope names the group it applied in.
        group_id=int(row["group_id"]) if everywhere or row["action"] == ADD else int(scope),
        user_id=int(row["user_id"]) if row["user_id"].isdigit() else row["user_id"],
        score=float(row["score"]) if row["score"] else None,
        model_version=row["model_version"],
        everywhere=everywhere,
        confirmed_by=row["confirmed_by"],
    )


_BITS_IN_BYTE = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (a byte table: np.bitwise_count needs numpy 2, we support 1.26)."""
    return _BITS_IN_BYTE[values.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def _format(image_bytes: bytes) -> str | None:
    with Image.open(io.BytesIO(image_bytes)) as image:
        return image.format


def _extension(image_bytes: bytes) -> str:
    return _KEPT_FORMATS.get(_format(image_bytes) or "", "png")
