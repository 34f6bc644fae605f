"""The warning a hit gets: the group's template with its placeholders filled in, and which strike it is.

A template is plain text with ``{user}`` (an at-mention of the sender), ``{score}`` and ``{strikes}``;
``{{`` and ``}}`` are braces themselves. It is parsed here and never given to ``str.format``, so nothing
an admin types reaches an attribute or an index: ``{user.__class__}`` is just an unknown placeholder.
"""

from __future__ import annotations

import re

from nonebot.adapters.onebot.v11 import Message, MessageSegment

from .i18n import Lang, WordedError

# What each means is said in the catalogue (chat.placeholders): an at-mention of the sender, the score,
# which strike within the window this is.
PLACEHOLDERS = ("user", "score", "strikes")
MAX_TEMPLATE_LENGTH = 300
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(WordedError):
    """A template that cannot be used; its phrase (the catalogue's ``invalid`` scope) says why."""

    SCOPE = "invalid"


def parse_template(template: str) -> list[tuple[str, str]]:
    """The template as ("text", literal) and ("field", name) parts; TemplateError when it is empty,
    too long, names an unknown placeholder or has a lone brace."""
    if not template.strip():
        raise TemplateError("template_empty")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError("template_long", max=MAX_TEMPLATE_LENGTH, length=len(template))
    parts: list[tuple[str, str]] = []
    literal, position = "", 0
    for token in _TOKEN.finditer(template):
        literal += template[position : token.start()]
        position = token.end()
        text, name = token.group(0), token.group(1)
        if text in ("{{", "}}"):
            literal += text[0]
        elif name is None:
            raise TemplateError("template_brace", brace=text, position=token.start() + 1)
        elif name not in PLACEHOLDERS:
            known = " ".join(f"{{{known}}}" for known in PLACEHOLDERS)
            raise TemplateError("template_placeholder", name=f"{{{name}}}", known=known)
        else:
            if literal:
                parts.append(("text", literal))
            literal = ""
            parts.append(("field", name))
    literal += template[position:]
    if literal:
        parts.append(("text", literal))
    return parts


def placeholders_in(template: str) -> set[str]:
    """The placeholders a checked template uses."""
    return {value for kind, value in parse_template(template) if kind == "field"}


def render(template: str, *, user_id: int, score: float, strikes: int) -> Message:
    """The warning's segments (a checked template; an unusable one raises TemplateError). It always
    @s the sender: first, unless the template places ``{user}`` itself."""
    values = {"score": f"{score:.2f}", "strikes": str(strikes)}
    message, text = Message(), ""
    parts = parse_template(template)
    if ("field", "user") not in parts:
        parts = [("field", "user"), ("text", " "), *parts]
    for kind, value in parts:
        if kind == "field" and value == "user":
            if text:
                message.append(MessageSegment.text(text))
            message.append(MessageSegment.at(user_id))
            text = ""
        else:
            text += value if kind == "text" else values[value]
    if text:
        message.append(MessageSegment.text(text))
    return message


def strike_note(lang: Lang, strike: int, *, window_seconds: float, mute_after: int, muted_seconds: int) -> str:
    """Which strike this is, for the warning of a group that mutes repeat offenders, in ``lang`` (the
    group's language, NAILONG_LANGUAGE)."""
    hours = window_seconds / 3600
    window = lang("duration", "hours", n=f"{hours:g}") if hours == int(hours) else lang.duration(window_seconds)
    if muted_seconds > 0:
        return lang("warning", "strike_muted", window=window, strike=strike, muted=lang.duration(muted_seconds))
    if strike < mute_after:
        return lang("warning", "strike_mute_from", window=window, strike=strike, after=mute_after)
    return lang("warning", "strike", window=window, strike=strike)
