"""The warning a hit gets: the group's template with its placeholders filled in, and which strike it is.

A template is plain text with ``{user}`` (an at-mention of the sender), ``{score}`` and ``{strikes}``;
``{{`` and ``}}`` are braces themselves. It is parsed here and never given to ``str.format``, so nothing
an admin types reaches an attribute or an index: ``{user.__class__}`` is just an unknown placeholder.
"""

from __future__ import annotations

import re

from nonebot.adapters.onebot.v11 import Message, MessageSegment

PLACEHOLDERS = {
    "user": "@发送者 / an at-mention of the sender",
    "score": "得分 / the score",
    "strikes": "24 小时内第几次 / which strike this is",
}
MAX_TEMPLATE_LENGTH = 300
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A template that cannot be used; the message says why, in Chinese and English."""


def parse_template(template: str) -> list[tuple[str, str]]:
    """The template as ("text", literal) and ("field", name) parts; TemplateError when it is empty,
    too long, names an unknown placeholder or has a lone brace."""
    if not template.strip():
        raise TemplateError("警告内容不能为空 / the warning cannot be empty")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(
            f"警告内容最多 {MAX_TEMPLATE_LENGTH} 个字符（现在 {len(template)} 个）/ the warning may have at most "
            f"{MAX_TEMPLATE_LENGTH} characters (it has {len(template)})"
        )
    parts: list[tuple[str, str]] = []
    literal, position = "", 0
    for token in _TOKEN.finditer(template):
        literal += template[position : token.start()]
        position = token.end()
        text, name = token.group(0), token.group(1)
        if text in ("{{", "}}"):
            literal += text[0]
        elif name is None:
            raise TemplateError(
                f"第 {token.start() + 1} 个字符是单独的 {text}；花括号本身请写成 {{{{ 或 }}}} / a lone {text} at "
                f"character {token.start() + 1}; write a brace itself as {{{{ or }}}}"
            )
        elif name not in PLACEHOLDERS:
            raise TemplateError(
                f"未知的占位符 {{{name}}}，可用 / unknown placeholder {{{name}}}; available: "
                + " ".join(f"{{{known}}}" for known in PLACEHOLDERS)
            )
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


def format_duration(seconds: float) -> tuple[str, str]:
    """(Chinese, English) in the largest whole unit: 600 → ("10 分钟", "10 min")."""
    whole = int(seconds)
    for size, zh, en in ((86400, "天", "d"), (3600, "小时", "h"), (60, "分钟", "min")):
        if whole >= size and whole % size == 0:
            return f"{whole // size} {zh}", f"{whole // size} {en}"
    return f"{whole} 秒", f"{whole} s"


def strike_note(strike: int, *, window_seconds: float, mute_after: int, muted_seconds: int) -> str:
    """Which strike this is, for the warning of a group that mutes repeat offenders."""
    hours = window_seconds / 3600
    window_zh, window_en = (
        (f"{hours:g} 小时", f"{hours:g} h") if hours == int(hours) else format_duration(window_seconds)
    )
    if muted_seconds > 0:
        zh, en = format_duration(muted_seconds)
        return f"（{window_zh}内第 {strike} 次，已禁言 {zh} / strike {strike} within {window_en}: muted for {en}）"
    if strike < mute_after:
        return (
            f"（{window_zh}内第 {strike} 次，第 {mute_after} 次起禁言 / strike {strike} within {window_en}; "
            f"a mute from strike {mute_after}）"
        )
    return f"（{window_zh}内第 {strike} 次 / strike {strike} within {window_en}）"
