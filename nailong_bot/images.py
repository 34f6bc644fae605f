"""The images of a message: what the OneBot implementation told us, and what was decided."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nonebot.adapters.onebot.v11 import Message

from .decision import Decision

# OneBot implementations name received images after their MD5, e.g. "E81A3C…B7623.jpg".
_MD5_NAME = re.compile(r"[0-9a-fA-F]{32,64}")


@dataclass(frozen=True)
class ImageRef:
    """One image of a message, as the OneBot implementation described it."""

    file: str | None
    url: str | None
    # Identity that stays the same when the image is posted again (None: hash the bytes).
    key: str | None


@dataclass(frozen=True)
class CheckedImage:
    """One image and its decision, handed on to whatever acts on it."""

    ref: ImageRef
    decision: Decision
    # The downloaded bytes; None when the decision came from the cache.
    data: bytes | None


def well_formed(message: Message) -> Message:
    """The segments with a type and a data object: a sender or implementation may put anything in a
    segment (``"data": null``, a string), and one such segment must not hide the rest."""
    return Message(s for s in message if isinstance(s.type, str) and isinstance(s.data, dict))


def image_refs(message: Message) -> list[ImageRef]:
    """Images and stickers in a message: `image` segments (stickers are sub_type 1) and `mface`."""
    refs = []
    for segment in well_formed(message):
        data = segment.data
        url = _text(data, "url")
        if segment.type == "image":
            file = _text(data, "file")
            name = _MD5_NAME.search(file) if file and "://" not in file else None
            refs.append(ImageRef(file=file, url=url, key=f"md5:{name.group().lower()}" if name else None))
        elif segment.type == "mface" and url:
            package, emoji = data.get("emoji_package_id"), data.get("emoji_id")
            key = f"mface:{package}:{emoji}" if package and emoji else None
            refs.append(ImageRef(file=None, url=url, key=key))
    return refs


def _text(data: dict, key: str) -> str | None:
    """A segment's string field; anything else a sender or implementation puts there counts as absent."""
    value = data.get(key)
    return value if isinstance(value, str) and value else None
