"""How the plugin's files are written and set aside, in one place.

The fsync decision, stated once: what an admin did (group settings, the corrections log) is
fsynced before it counts as saved, so that it survives a power loss; what the bot can do without
(recent images and their journal, the copies of corrected images) is not, since losing the last few
costs only the chance to correct those messages.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


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
