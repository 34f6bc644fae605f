"""The operators' wording, Chinese and English, in one catalogue: one JSON file per locale beside this
module (``zh-CN.json``, ``en-US.json``), in the style of nonebot-plugin-alconna's i18n files: scopes at
the top level, keys inside them, ``{name}`` placeholders filled with :meth:`str.format`.

Only the plugin's own values fill a placeholder (numbers, versions, names already checked); what a user
typed is passed as a value, never as the template, so nothing typed is ever formatted.

Code that does not know its reader's language (a parser refusing a value, say) says what it means as a
:class:`Phrase`, a key and its values; whoever shows it renders it in the reader's language. A value may
itself be a Phrase, or a tuple of them (shown as a list).

``/奶龙`` answers in Chinese and ``/nailong`` in English; the console follows the browser's
Accept-Language unless its language switch was used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
LOCALES = ("zh-CN", "en-US")
DEFAULT_LOCALE = "zh-CN"
_LANGUAGE_RANGE = re.compile(r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*")


@cache
def catalogue(locale: str) -> dict[str, dict[str, str]]:
    """A locale's scopes and their keys, read once."""
    raw = json.loads((HERE / f"{locale}.json").read_text(encoding="utf-8"))
    return {scope: keys for scope, keys in raw.items() if not scope.startswith("$")}


@dataclass(frozen=True)
class Phrase:
    """Words not yet in a language: a catalogue key and the values for its placeholders."""

    scope: str
    key: str
    values: Mapping[str, object] = field(default_factory=dict)


class WordedError(ValueError):
    """An error whose reason is a :class:`Phrase` of ``SCOPE``, shown to its reader with
    :meth:`Lang.text`; ``str()`` gives it in every language, one after the other, for the log."""

    SCOPE = ""

    def __init__(self, key: str, /, **values: object) -> None:
        self.phrase = Phrase(self.SCOPE, key, values)
        super().__init__(" / ".join(Lang(locale).text(self.phrase) for locale in LOCALES))


@dataclass(frozen=True)
class Lang:
    """The wording of one locale: ``lang("chat", "enabled")``, ``lang("chat", "threshold_set", value="0.8")``."""

    locale: str

    def __call__(self, scope: str, key: str, /, **values: object) -> str:
        template = catalogue(self.locale)[scope][key]
        return template.format(**{name: self._value(value) for name, value in values.items()}) if values else template

    def text(self, phrase: Phrase) -> str:
        """A :class:`Phrase` in this language."""
        return self(phrase.scope, phrase.key, **phrase.values)

    def duration(self, seconds: float) -> str:
        """In the largest whole unit: 600 → "10 分钟" / "10 min"."""
        whole = int(seconds)
        for size, unit in ((86400, "days"), (3600, "hours"), (60, "minutes")):
            if whole >= size and whole % size == 0:
                return self("duration", unit, n=whole // size)
        return self("duration", "seconds", n=whole)

    def _value(self, value: object) -> object:
        if isinstance(value, Phrase):
            return self.text(value)
        if isinstance(value, tuple):
            return ", ".join(str(self._value(item)) for item in value)
        return value

    def scope(self, scope: str) -> dict[str, str]:
        """Every key of a scope with no placeholder to fill, e.g. a page's labels."""
        return dict(catalogue(self.locale)[scope])

    @property
    def english(self) -> bool:
        return self.locale == "en-US"


def lang(locale: str | None) -> Lang:
    """The wording of ``locale`` ("zh-CN", "en-US", or just "zh"/"en"); the default for anything else."""
    return Lang(supported(locale) or DEFAULT_LOCALE)


def supported(locale: str | None) -> str | None:
    """The catalogue's locale for a language tag ("en", "en-GB", "zh-Hans-CN" …), or None."""
    if not locale:
        return None
    primary = locale.strip().split("-")[0].lower()
    return next((known for known in LOCALES if known.split("-")[0].lower() == primary), None)


def from_accept_language(header: str | None) -> str:
    """The locale an Accept-Language header prefers among the catalogue's ("en-US,en;q=0.9,zh;q=0.8" →
    "en-US"); the default when it names none of them."""
    ranked = []
    for position, part in enumerate((header or "")[:512].split(",")[:16]):
        match = _LANGUAGE_RANGE.fullmatch(part)
        if match is None:
            continue
        try:
            weight = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if weight > 0 and (locale := supported(match.group(1))) is not None:
            ranked.append((-weight, position, locale))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE
