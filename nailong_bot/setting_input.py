"""What an admin types for a group setting, in the chat or in the console, read the same way: each
parser returns the value or raises InvalidSetting, whose phrase (the catalogue's ``invalid`` scope) says
why, in the language of whoever reads it."""

from __future__ import annotations

import math
import re

from .i18n import Phrase, WordedError
from .qq import MAX_QQ, MIN_QQ, is_qq
from .storage import MUTE_OFF, MutePolicy
from .warning import TemplateError, parse_template

SWITCH_WORDS = {
    "on": True, "开": True, "开启": True, "true": True, "yes": True, "1": True,
    "off": False, "关": False, "关闭": False, "false": False, "no": False, "0": False,
}  # fmt: skip
OFF_WORDS = ("off", "关", "关闭")
# A bare number is minutes: "/奶龙 禁言 3 10" reads as ten minutes, and the answer says so.
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|sec|秒|m|min|分|分钟|h|小时|时|d|天)?", re.IGNORECASE)
_UNIT_SECONDS = {
    "s": 1, "sec": 1, "秒": 1, "m": 60, "min": 60, "分": 60, "分钟": 60, "": 60,
    "h": 3600, "小时": 3600, "时": 3600, "d": 86400, "天": 86400,
}  # fmt: skip
MIN_MUTE_SECONDS = 60  # QQ mutes by the minute
MAX_MUTE_SECONDS = 30 * 24 * 3600  # QQ's longest mute
MAX_MUTE_AFTER = 100
MAX_ALLOWED = 500
# Longer input is refused before it is read as a number: a 400-digit duration is no setting.
MAX_NUMBER_CHARS = 20
# What a reply repeats of the text it refuses, at most; the rest is cut ("…").
MAX_ECHO_CHARS = 40


class InvalidSetting(WordedError):
    """A value that cannot be a setting; its phrase says why."""

    SCOPE = "invalid"


def cut(text: str, *, quoted: bool = False) -> str | Phrase:
    """``text`` as a reply repeats it (``quoted``: as Python's repr): its first MAX_ECHO_CHARS
    characters, then how long it was."""
    shown = text[:MAX_ECHO_CHARS]
    shown = repr(shown) if quoted else shown
    return shown if len(text) <= MAX_ECHO_CHARS else Phrase("invalid", "cut", {"shown": shown, "length": len(text)})


def echo(text: str) -> str | Phrase:
    """``text`` quoted for a reply that refuses it, cut (see :func:`cut`)."""
    return cut(text, quoted=True)


def parse_threshold(text: str) -> float:
    """A decimal within 0..1 and below 1, kept as given (rounding would turn 0.99999 into 1.0, which is off)."""
    try:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError
        value = float(text)
    except ValueError:
        raise InvalidSetting("threshold_not_number", max_chars=MAX_NUMBER_CHARS, typed=echo(text)) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidSetting("threshold_range", typed=echo(text))
    if value == 1.0:
        # No score reaches above 1, so this would silently check nothing: switching off is said plainly.
        raise InvalidSetting("threshold_off", value=text)
    return value


def parse_switch(text: str) -> bool:
    value = SWITCH_WORDS.get(text.strip().lower())
    if value is None:
        raise InvalidSetting("switch", typed=echo(text))
    return value


def parse_duration(text: str) -> int:
    """"10m", "1h", "600s", "1d", "10分钟", or a bare number of minutes → seconds, 1 minute to 30 days."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidSetting("duration_form", typed=echo(text))
    too_long = len(match.group(1)) > MAX_NUMBER_CHARS  # 400 digits would be infinite seconds
    seconds = 0 if too_long else round(float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "").lower()])
    if not MIN_MUTE_SECONDS <= seconds <= MAX_MUTE_SECONDS:
        raise InvalidSetting("duration_range", typed=echo(text))
    return seconds


def duration_text(seconds: int) -> str:
    """Seconds as :func:`parse_duration` reads them back, in the largest whole unit: 600 → "10m"."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_mute_after(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", text.strip()) or not 1 <= int(text) <= MAX_MUTE_AFTER:
        raise InvalidSetting("mute_after", max=MAX_MUTE_AFTER, typed=echo(text))
    return int(text)


def parse_mute(words: list[str]) -> MutePolicy:
    """["off"] or [strike, duration]: ["3", "10m"] (or ["3", "10", "分钟"]) mutes from the third strike
    for ten minutes."""
    if len(words) == 1 and words[0].lower() in OFF_WORDS:
        return MUTE_OFF
    if len(words) < 2:
        raise InvalidSetting("mute_two_values")
    return MutePolicy(after=parse_mute_after(words[0]), seconds=parse_duration("".join(words[1:])))


def _qq(word: str) -> int | None:
    # At most 10 digits are read: int() of thousands of digits is slow, and refused past 4,300.
    return int(word) if re.fullmatch(r"[0-9]{5,10}", word) and is_qq(int(word)) else None


def parse_qq(text: str) -> int:
    """One QQ number (typed, or an @-mention's ``qq``) within QQ's range."""
    number = _qq(text.strip())
    if number is None:
        raise _not_qq([text.strip()])
    return number


def _not_qq(words: list[str]) -> InvalidSetting:
    shown = tuple(cut(word) for word in words[:3])
    return InvalidSetting("not_qq", shown=shown, more="…" if len(words) > 3 else "", min=MIN_QQ, max=MAX_QQ)


def parse_members(text: str) -> tuple[int, ...]:
    """QQ numbers separated by spaces or commas (either width), sorted, each once."""
    words = [word for word in re.split(r"[\s,，、]+", text.strip()) if word]
    bad = [word for word in words if _qq(word) is None]
    if bad:
        raise _not_qq(bad)
    members = tuple(sorted({int(word) for word in words}))
    if len(members) > MAX_ALLOWED:
        raise InvalidSetting("allow_list_size", max=MAX_ALLOWED)
    return members


def check_template(text: str) -> str:
    try:
        parse_template(text)
    except TemplateError as error:
        raise InvalidSetting(error.phrase.key, **error.phrase.values) from None
    return text
