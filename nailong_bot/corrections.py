"""Corrections: admins' verdicts on images the model got wrong. They override the model for the
image and its near-identical copies, and are kept as training data.

Layout under the feedback folder, ready to be listed in the trainer config's ``data:`` beside the base data::

    nailong/<id>.<ext>    other/<id>.<ext>     the corrected images (ImageFolder layout)
    corrections.csv       every add / replace / undo, in order
    .retired/<label>/     files of undone or superseded corrections (hidden: not training data)

``corrections.csv`` is the single source of truth: loading replays it, so the files and the index
can never disagree with the log, and no second index has to be kept in step.

An image is identified by the pHash of its first frame (animated images: the first frame, which
``decode_frames`` always samples, so the pipeline's frames hash the same way). Nearly flat images
(solid colours) all hash alike, so their corrections match only the exact bytes.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from nonebot.log import logger

from nailong_vision.handoff import CORRECTION_DISTANCE as DEFAULT_MAX_DISTANCE
from nailong_vision.handoff import ADD, CORRECTION_LABELS, REPLACE, RETIRED_DIR, UNDO, image_id
from nailong_vision.handoff import CORRECTIONS_COLUMNS as CSV_COLUMNS
from nailong_vision.handoff import CORRECTIONS_FILE as CSV_FILE
from nailong_vision.phash import frame_hash, hamming

from . import persist
from .budget import DecodeBudget
from .decision import Decision, Override

Label = Literal["nailong", "other"]
LABELS: tuple[Label, ...] = CORRECTION_LABELS

# A decision made by a correction has the source "correction:<id>".
SOURCE_PREFIX = "correction:"
# Formats the trainer reads as they are; anything else is saved as PNG of its first frame.
_KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "AVIF": "avif"}
# A corrected image is decoded at about the size the model sees (a pHash looks at 32×32).
_DECODE_SIZE = 224


@dataclass(frozen=True)
class Correction:
    """An admin's verdict on one image."""

    id: str  # first 16 hex digits of the image's sha256; also the file's stem
    label: Label
    phash: int | None  # None: a nearly flat image, matched by exact bytes only
    file: str  # path of the training image, relative to the feedback folder
    time: str  # ISO 8601
    group_id: int
    user_id: int | str  # the admin's QQ number, or "web" for the web console
    score: float | None  # the model's score when the admin corrected it
    model_version: str


class Corrections:
    def __init__(
        self, feedback_dir: Path, *, max_distance: int = DEFAULT_MAX_DISTANCE, budget: DecodeBudget | None = None
    ) -> None:
        """Open (or create) the feedback folder and replay its log. Blocks on file I/O. ``budget``: the
        plugin's decode budget, which decoding a corrected image waits for (None: unbounded)."""
        self.feedback_dir = feedback_dir
        self.max_distance = max_distance
        self._budget = budget or DecodeBudget(None)
        self.csv_path = feedback_dir / CSV_FILE
        self._lock = threading.Lock()
        self._by_id: dict[str, Correction] = {}  # insertion order: oldest first
        # Rebuilt on every change and swapped in whole, so lookup() reads it without the lock.
        self._hashes: tuple[np.ndarray, list[Correction]] = (np.empty(0, np.uint64), [])
        # Why corrections cannot be saved (set by _load); None when they can.
        self.save_error: str | None = None
        self._load()

    def __len__(self) -> int:
        return len(self._by_id)

    def counts(self) -> dict[str, int]:
        """Active corrections per label."""
        counts = dict.fromkeys(LABELS, 0)
        with self._lock:
            for correction in self._by_id.values():
                counts[correction.label] += 1
        return counts

    def newest(self, limit: int) -> list[Correction]:
        """The active corrections, newest first."""
        with self._lock:
            return list(reversed(self._by_id.values()))[:limit]

    def lookup(
        self, frames_or_hash: Sequence[Image.Image] | Image.Image | int | None, *, image_bytes: bytes | None = None
    ) -> Correction | None:
        """The correction that decides this image: the exact bytes (when given) first, else the
        nearest pHash within ``max_distance`` bits (the newest on a tie). Frames: only the first is
        hashed. Fast: one vectorised pass over all corrections, nothing at all while there are none."""
        if not self._by_id:
            return None
        if image_bytes is not None and (exact := self._by_id.get(image_id(image_bytes))) is not None:
            return exact
        if isinstance(frames_or_hash, int) or frames_or_hash is None:
            query = frames_or_hash
        else:
            first = frames_or_hash if isinstance(frames_or_hash, Image.Image) else frames_or_hash[0]
            query = frame_hash(first)
        hashes, corrections = self._hashes
        if query is None or not corrections:
            return None
        distances = _popcount(hashes ^ np.uint64(query))
        newest_nearest = len(distances) - 1 - int(np.argmin(distances[::-1]))
        return corrections[newest_nearest] if distances[newest_nearest] <= self.max_distance else None

    def add(
        self,
        image_bytes: bytes,
        *,
        label: Label,
        group_id: int,
        user_id: int | str,
        score: float | None,
        model_version: str,
    ) -> Correction:
        """Record a verdict and save the image as training data. It replaces an earlier correction
        of the same bytes, and of near-identical images with the other label (the newest word
        wins). Raises ImageDecodeError for anything that is not an image, CannotSave where nothing
        can be written (see ``save_error``); nothing is written then."""
        self._require_saving()
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}: {label!r}")
        with self._budget.frames(image_bytes, max_frames=1, draft_size=_DECODE_SIZE) as (first,):
            new = Correction(
                id=image_id(image_bytes),
                label=label,
                phash=frame_hash(first),
                file=f"{label}/{image_id(image_bytes)}.{_extension(image_bytes)}",
                time=datetime.now().astimezone().isoformat(timespec="seconds"),
                group_id=group_id,
                user_id=user_id,
                score=None if score is None else float(score),
                model_version=model_version,
            )
            with self._lock:
                for old in self._superseded_by(new):
                    retired = self._retire(old) if old.file != new.file else old.file
                    self._append_row(REPLACE, old, file=retired, group_id=group_id, user_id=user_id)
                    del self._by_id[old.id]
                self._save_image(new, image_bytes, first)
                self._append_row(ADD, new)
                self._by_id[new.id] = new
                self._rebuild_hashes()
        return new

    def undo(
        self,
        image_bytes: bytes | None = None,
        *,
        correction_id: str | None = None,
        group_id: int = 0,
        user_id: int = 0,
    ) -> Correction | None:
        """Remove a correction, given its id or an image it decides (exact bytes, else nearest
        pHash). Its file leaves the training folder for ``.retired/``. None if nothing matched;
        ImageDecodeError for bytes that are neither a corrected image nor decodable; CannotSave
        where nothing can be written."""
        self._require_saving()
        if (image_bytes is None) == (correction_id is None):
            raise ValueError("give exactly one of image_bytes / correction_id")
        if correction_id is None:
            with self._budget.frames(image_bytes, max_frames=1, draft_size=_DECODE_SIZE) as (first,):
                query = frame_hash(first)
        with self._lock:
            if correction_id is not None:
                target = self._by_id.get(correction_id)
            else:
                target = self.lookup(query, image_bytes=image_bytes)
            if target is None:
                return None
            retired = self._retire(target)
            self._append_row(UNDO, target, file=retired, group_id=group_id, user_id=user_id)
            del self._by_id[target.id]
            self._rebuild_hashes()
        return target

    def _require_saving(self) -> None:
        if self.save_error is not None:
            raise persist.CannotSave(f"纠错 / corrections: {self.save_error}")

    def _superseded_by(self, new: Correction) -> list[Correction]:
        superseded = [old for old in self._by_id.values() if old.id == new.id]
        if new.phash is not None:
            superseded += [
                old
                for old in self._by_id.values()
                if old.id != new.id
                and old.label != new.label
                and old.phash is not None
                and hamming(old.phash, new.phash) <= self.max_distance
            ]
        return superseded

    def _rebuild_hashes(self) -> None:
        hashed = [c for c in self._by_id.values() if c.phash is not None]
        self._hashes = (np.array([c.phash for c in hashed], dtype=np.uint64), hashed)

    def _save_image(self, correction: Correction, image_bytes: bytes, first: Image.Image) -> None:
        target = self.feedback_dir / correction.file
        target.parent.mkdir(parents=True, exist_ok=True)
        if correction.file.endswith(".png") and _format(image_bytes) != "PNG":
            buffer = io.BytesIO()
            first.save(buffer, format="PNG")
            image_bytes = buffer.getvalue()
        # The temporary file sits outside the label folders so a training run never picks it up.
        tmp = self.feedback_dir / f".{correction.id}.tmp"
        persist.write_atomically(target, image_bytes, durable=False, tmp=tmp)

    def _retire(self, correction: Correction) -> str:
        """Move a correction's file out of the training folder; returns where it went."""
        retired = f"{RETIRED_DIR}/{correction.file}"
        source = self.feedback_dir / correction.file
        if source.exists():
            (self.feedback_dir / retired).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, self.feedback_dir / retired)
        return retired

    def _append_row(self, action: str, correction: Correction, **changes: object) -> None:
        row = {
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
        }
        if action != ADD:
            row.update(time=datetime.now().astimezone().isoformat(timespec="seconds"), **changes)
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=CSV_COLUMNS)
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            writer.writeheader()
        writer.writerow(row)
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
                if reader.fieldnames is not None and tuple(reader.fieldnames) != CSV_COLUMNS:
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
        skipped = 0
        for row in rows:
            try:
                correction = _correction_from_row(row)
            except (ValueError, TypeError, KeyError):
                skipped += 1
                continue
            if row["action"] == ADD:
                self._by_id.pop(correction.id, None)  # re-added: moves to the newest position
                self._by_id[correction.id] = correction
            elif row["action"] in (REPLACE, UNDO):
                self._by_id.pop(correction.id, None)
            else:
                skipped += 1
        if skipped:
            logger.warning(
                f"纠错记录中有 {skipped} 行无法读取，已跳过 / skipped {skipped} unreadable rows in {self.csv_path}"
            )
        self._rebuild_hashes()


def correction_override(corrections: Corrections) -> Override:
    """The decider override through which corrections decide their images before the model does."""

    def decide_by_correction(image_bytes: bytes, frames: list[Image.Image]) -> Decision | None:
        correction = corrections.lookup(frames, image_bytes=image_bytes)
        if correction is None:
            return None
        return Decision(1.0 if correction.label == "nailong" else 0.0, source=SOURCE_PREFIX + correction.id)

    return decide_by_correction


def _correction_from_row(row: dict[str, str]) -> Correction:
    if None in row or None in row.values():
        raise ValueError("wrong number of fields")
    label = row["label"]
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    return Correction(
        id=row["id"],
        label=label,
        phash=int(row["phash"], 16) if row["phash"] else None,
        file=row["file"],
        time=row["time"],
        group_id=int(row["group_id"]),
        user_id=int(row["user_id"]) if row["user_id"].isdigit() else row["user_id"],
        score=float(row["score"]) if row["score"] else None,
        model_version=row["model_version"],
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
