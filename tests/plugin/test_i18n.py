"""The wording catalogue (i18n/): every key in both languages with the same placeholders, and the
console's language from Accept-Language."""

from __future__ import annotations

import string

import pytest

from nailong_bot.i18n import LOCALES, catalogue, from_accept_language, lang, supported


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_key_is_in_every_language_with_the_same_placeholders() -> None:
    reference = catalogue(LOCALES[0])
    for locale in LOCALES[1:]:
        other = catalogue(locale)
        assert other.keys() == reference.keys(), locale
        for scope, keys in reference.items():
            assert other[scope].keys() == keys.keys(), (locale, scope, set(other[scope]) ^ set(keys))
            for key, text in keys.items():
                assert placeholders(other[scope][key]) == placeholders(text), (locale, scope, key)


@pytest.mark.parametrize("locale", LOCALES)
def test_no_text_is_doubled_or_empty(locale: str) -> None:
    for scope, keys in catalogue(locale).items():
        for key, text in keys.items():
            assert text.strip(), (scope, key)
            # The old style said everything twice: "中文 / English".
            assert not ("/" in text and any("\u4e00" <= c <= "\u9fff" for c in text.split(" / ")[0])
                        and " / " in text and text.split(" / ")[-1][:1].isascii()
                        and text.split(" / ")[-1][:1].isalpha()), (locale, scope, key, text)  # fmt: skip


def test_a_template_is_filled_only_with_the_values_given() -> None:
    assert lang("zh-CN")("chat", "threshold_set", value="0.8") == "阈值已设为 0.8"
    assert lang("en-US")("chat", "threshold_set", value="0.8") == "Threshold set to 0.8"
    # What a user typed is a value, never a template.
    assert lang("en-US")("refused", "unknown_action", given="{0.__class__}") == "Unknown action: {0.__class__}"


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en-US"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en-GB", "en-US"),
        ("zh-Hant-TW", "zh-CN"),
        ("fr-FR,en;q=0.5", "en-US"),
        ("fr-FR", "zh-CN"),
        ("en;q=0, zh;q=0.1", "zh-CN"),
        ("", "zh-CN"),
        (None, "zh-CN"),
        ("x" * 10000, "zh-CN"),
    ],
)
def test_the_console_follows_accept_language(header: str | None, locale: str) -> None:
    assert from_accept_language(header) == locale


def test_unknown_locales_fall_back_to_chinese() -> None:
    assert supported("de") is None and lang("de").locale == "zh-CN" and lang("en").locale == "en-US"
