"""What an admin typed, read the way they meant it: `/奶龙 状态` however a phone keyboard wrote it.

NoneBot's ``on_command`` matches the first text segment against a trie of ``COMMAND_START`` + name,
case-sensitive, and needs a space after the name when ``force_whitespace`` is set. Chinese input methods
type the slash as `／` (full width) or `、` (many pinyin keyboards), and people write `/奶龙开启` or
`/NAILONG status`. Widening ``COMMAND_START`` would change every other plugin of the operator's bot, so
the plugin reads its own command here instead:

- a start: `/`, `／`, `、` or one of the bot's own ``COMMAND_START``; none is needed when the message
  is addressed to the bot (an @-mention of it, which the adapter removes and marks as ``to_me``);
- the command word `奶龙` (the answer in Chinese) or `nailong` (in English), in any letter case;
- then a space, the end, or a sub-command's name written right after it (`/奶龙开启`). Anything else
  glued on (`/奶龙图`) is not this command: another plugin may own it.

:func:`closest` finds what a typo meant, over every sub-command name of both languages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from nonebot.adapters.onebot.v11 import Message, MessageSegment

# The slash as phones type it: ASCII, full width, and the pinyin keyboards' "、".
STARTS = ("/", "／", "、")
COMMAND_WORDS = {"奶龙": "zh-CN", "nailong": "en-US"}
# How far a typo may be from a name (edits, a swap of neighbours counting as one) to be suggested.
_SHORT_NAME = 4
_CLOSE_SHORT, _CLOSE_LONG = 1, 2


@dataclass(frozen=True)
class Typed:
    """A command as typed: its language, and the message after the command word (the sub-command's
    name first, at-mentions kept as segments)."""

    locale: str
    arg: Message

    @property
    def text(self) -> str:
        return self.arg.extract_plain_text().strip()

    @property
    def words(self) -> list[str]:
        return self.text.split()


def read(message: Message, *, to_me: bool, starts: Iterable[str], names: Collection[str]) -> Typed | None:
    """The `/奶龙` or `/nailong` command in ``message``, or None when it is not one. ``starts``: the
    bot's own COMMAND_START (used beside :data:`STARTS`; "" in it: no start needed); ``names``: the
    sub-command names, lower case; ``to_me``: the message was addressed to the bot."""
    if not message or not message[0].is_text():
        return None
    text = str(message[0]).lstrip()
    prefixes = sorted({*STARTS, *(s for s in starts if s)}, key=len, reverse=True)
    start = next((prefix for prefix in prefixes if text.startswith(prefix)), None)
    if start is not None:
        text = text[len(start) :].lstrip()
    elif not (to_me or "" in starts):
        return None
    for word, locale in COMMAND_WORDS.items():
        if text[: len(word)].lower() == word:
            rest = text[len(word) :]
            break
    else:
        return None
    if rest and not rest[0].isspace():
        glued = rest.split(maxsplit=1)[0]
        if glued.lower() not in names:
            return None
    arg = Message(message[1:])
    if rest.strip():
        arg.insert(0, MessageSegment.text(rest.lstrip()))
    return Typed(locale, arg)


def closest(given: str, names: Iterable[str]) -> str | None:
    """The name ``given`` most likely meant (the first listed among equally close ones), or None when
    none is close: a few edits away, or ``given`` is how the name begins."""
    given = given.lower()
    best: tuple[int, str] | None = None
    for name in names:
        allowed = _CLOSE_SHORT if len(name) <= _SHORT_NAME else _CLOSE_LONG
        distance = 1 if name.startswith(given) and name != given else _edits(given, name)
        if distance <= allowed and distance < len(name) and (best is None or distance < best[0]):
            best = (distance, name)
    return None if best is None else best[1]


def _edits(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``: inserting, deleting or replacing a character, or swapping two
    neighbours (the optimal string alignment distance)."""
    rows = [list(range(len(b) + 1))]
    for i, char_a in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
