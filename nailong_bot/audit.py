"""The audit log: every change an operator makes through the web console or the API, one JSON object a
line in ``audit.jsonl`` under the data folder, only ever appended to.

Rotated by size: a line that would take the file past ``max_bytes`` first renames it to
``audit.jsonl.1`` (``.1`` to ``.2``, and so on; the oldest past ``keep`` is deleted), so the log holds at
most ``max_bytes × (keep + 1)``. The latest entries are read across the rotated files.

Each line holds the time, the operator (``web`` or ``web:<name>`` from the console's sign-in), the
client's address, the action and what it changed, before and after. A line is fsynced before the
change is reported done (what an admin did must survive a power loss, see persist.py). When the file
cannot be written the entry goes into the bot's log instead, so the trail is never silently lost, and
the change itself still stands: refusing it afterwards would not undo it.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from nonebot.log import logger

from . import persist

AUDIT_FILE = "audit.jsonl"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_KEEP = 3
_TAIL_BLOCK = 64 * 1024


class AuditLog:
    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> None:
        """``max_bytes``: the size a file is rotated at; ``keep`` (≥ 1): rotated files kept (``.1`` newest).
        Blocks on file I/O (a probe that the folder can be written)."""
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        # Why entries cannot be written (said once at start-up); None when they can.
        self.save_error = persist.unwritable_reason(path.parent)
        if self.save_error is None and path.is_dir():
            self.save_error = f"{path}: 是一个文件夹 / is a directory"

    def record(self, operator: str, action: str, *, before: Any, after: Any, client: str | None = None) -> None:
        """Append one entry. ``before`` and ``after``: JSON-able values saying what ``action`` changed.
        Blocks on file I/O (fsync): call it in a worker thread."""
        entry = {
            "time": datetime.now().astimezone().isoformat(timespec="seconds"),
            "operator": operator,
            "client": client,
            "action": action,
            "before": before,
            "after": after,
        }
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        error = self.save_error
        if error is None:
            try:
                with self._lock:
                    self._rotate_before(len(line.encode("utf-8")))
                    persist.append(self.path, line, durable=True)
                return
            except OSError as failure:
                error = persist.describe(failure)
        logger.error(
            f"操作记录无法写入，记在这里 / audit entry not saved ({error}), logged here instead: {line.strip()}"
        )

    def rotated(self, number: int) -> Path:
        """The ``number``-th rotated file (1: the newest); 0: the file being written."""
        return self.path if number == 0 else self.path.with_name(f"{self.path.name}.{number}")

    def _rotate_before(self, size: int) -> None:
        """Rotate when ``size`` more bytes would take the file past ``max_bytes`` (an empty file takes
        any line, however long)."""
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return
        if current == 0 or current + size <= self.max_bytes:
            return
        # The oldest first: ``.keep`` is replaced (dropped) by ``.keep-1``, and so on down to the current file.
        for number in range(self.keep, 0, -1):
            older = self.rotated(number - 1)
            if older.exists():
                os.replace(older, self.rotated(number))

    def latest(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first, from the file being written and then the
        rotated ones. Reads only the files' tails; a line that is not JSON (cut short by a crash) is
        skipped. Blocks on file I/O."""
        entries: list[dict[str, Any]] = []
        for number in range(self.keep + 1):
            if len(entries) >= limit:
                break
            entries += _newest_entries(self.rotated(number), limit - len(entries))
        return entries


def _newest_entries(path: Path, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` entries of one file, newest first."""
    if limit <= 0:
        return []
    try:
        with path.open("rb") as file:
            end = file.seek(0, 2)
            start = end
            tail = b""
            while start > 0 and tail.count(b"\n") <= limit:
                start = max(0, start - _TAIL_BLOCK)
                file.seek(start)
                tail = file.read(end - start)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    lines = tail.splitlines()
    if start > 0:
        lines = lines[1:]  # begins mid-line
    entries = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        if len(entries) == limit:
            break
    return entries
