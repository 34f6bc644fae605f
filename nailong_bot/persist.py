"""How the plugin's files are written and set aside, in one place.

A store whose folder or file cannot be written (a read-only data folder, a directory where its file
should be) still starts with what it could read; its ``save_error`` says why, it refuses changes
with :class:`CannotSave`, and the runtime says so once at start-up.

The fsync decision, stated once: what an admin did (group settings, the corrections log) is
fsynced before it counts as saved, so that it survives a power loss; what the bot can do without
(recent images and their journal, the copies of corrected images) is not, since losing the last few
costs only the chance to correct those messages.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path


class CannotSave(Exception):
    """A change was refused because its store cannot write its files; the message says why."""


def write_atomically(path: Path, data: bytes, *, durable: bool, tmp: Path | None = None) -> None:
    """Replace ``path`` with ``data``: a crash leaves the old file or the new one, never half a file.
    ``durable``: fsync before replacing (see above). ``tmp``: where the data is written first (same
    filesystem), by default beside ``path``."""
    tmp = tmp or path.with_name(path.name + ".tmp")
    with tmp.open("wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    os.replace(tmp, path)


def append(path: Path, text: str, *, durable: bool) -> None:
    """Append ``text`` to ``path`` (created if missing). ``durable``: fsync before returning."""
    with path.open("a", encoding="utf-8", newline="") as file:
        file.write(text)
        if durable:
            file.flush()
            os.fsync(file.fileno())


def set_aside(path: Path) -> Path:
    """Rename a file that cannot be read to ``<name>.corrupt-<time>`` (kept for inspection, nothing
    lost); returns the new path."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


def unwritable_reason(directory: Path) -> str | None:
    """Why files cannot be created in ``directory`` (made if missing), or None when they can.
    Found by creating and removing a file: permission bits say nothing for root, nor for a
    read-only filesystem."""
    probe = directory / f".write-test-{uuid.uuid4().hex}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as error:
        return describe(error)
    return None


def describe(error: OSError) -> str:
    """"<path>: <what the OS said>", for log lines and replies."""
    return f"{error.filename}: {error.strerror}" if error.filename and error.strerror else str(error)


# An absolute path up to its last component (POSIX or Windows).
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][^/\\\s:'\"，。）)\]]+)+[/\\]")


def without_paths(text: str) -> str:
    """``text`` with each absolute path cut to its last component, for what is posted to a group: the
    server's layout is the operator's business (the full text goes to the log)."""
    return _PATH.sub("", text)
