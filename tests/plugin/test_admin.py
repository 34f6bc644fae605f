"""The admin core (admin.py): every change checked first, made once, audited once, returned as a typed
result; and the chat commands and the console only adapt it (they change no state themselves)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nailong_bot import admin
from nailong_bot.admin import AllowListChange, Operator, Refused, SettingsChange
from nailong_bot.cache import content_key
from nailong_bot.storage import Action, MutePolicy

from nailong_testkit import YELLOW, patterned

ROOT = Path(__file__).resolve().parents[2]
ADMIN = Operator.chat(5, 1, "群主小王", superuser=False)
OWNER = Operator.console("web:ops", "127.0.0.1")


def audit_lines(guard) -> list[dict]:
    return list(reversed(guard.audit.latest(100)))


def test_operators_name_who_and_where() -> None:
    assert (ADMIN.name, ADMIN.where, ADMIN.superuser) == ("qq:5 (群主小王)", "group:1", False)
    assert (OWNER.name, OWNER.where, OWNER.superuser) == ("web:ops", "127.0.0.1", True)
    assert Operator.chat(6, 2, "", superuser=True).name == "qq:6"


async def test_a_setting_changed_is_one_audit_record_and_a_typed_result(guard) -> None:
    change = await admin.set_threshold(guard, ADMIN, 1, "0.8")
    assert isinstance(change, SettingsChange) and change.changed == ("threshold",)
    assert (change.before.threshold, change.after.threshold) == (0.7, 0.8)
    (entry,) = audit_lines(guard)
    assert (entry["operator"], entry["client"], entry["action"]) == ("qq:5 (群主小王)", "group:1", "group-settings")
    assert (entry["before"], entry["after"]) == ({"group_id": 1, "threshold": 0.7}, {"group_id": 1, "threshold": 0.8})
    # The same value again changes nothing, and records nothing.
    assert (await admin.set_threshold(guard, ADMIN, 1, "0.8")).changed == ()
    assert len(audit_lines(guard)) == 1


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda g: admin.set_threshold(g, ADMIN, 1, "abc"), "invalid"),
        (lambda g: admin.set_threshold(g, ADMIN, 1, "1"), "invalid"),
        (lambda g: admin.set_action(g, ADMIN, 1, "kick"), "unknown_action"),
        (lambda g: admin.set_exempt_admins(g, ADMIN, 1, "maybe"), "invalid"),
        (lambda g: admin.set_mute(g, ADMIN, 1, ["3", "40d"]), "invalid"),
        (lambda g: admin.set_warning(g, ADMIN, 1, "{user.__class__}"), "invalid"),
        (lambda g: admin.allow(g, ADMIN, 1, typed="abc"), "invalid"),
        (lambda g: admin.allow(g, ADMIN, 1), "no_members"),
        (lambda g: admin.allow(g, ADMIN, 1, mentioned=["9" * 5000]), "invalid"),  # an @-mention of 5,000 digits
        (lambda g: admin.allow(g, ADMIN, 1, mentioned=["all"]), "invalid"),  # @全体成员
        (lambda g: admin.disallow(g, ADMIN, 1, typed="123456"), "not_allowed"),
        (lambda g: admin.rollback(g, ADMIN), "superusers_only"),
        (lambda g: admin.rollback(g, OWNER), "no_earlier_model"),
    ],
)
async def test_what_cannot_be_done_is_refused_with_nothing_changed_or_recorded(guard, call, key: str) -> None:
    with pytest.raises(Refused) as refused:
        await call(guard)
    assert refused.value.key == key
    assert guard.store.get(1) == guard.store.defaults and not guard.store.path.exists()
    assert audit_lines(guard) == []


async def test_each_kind_of_setting_goes_through_the_core(guard) -> None:
    await admin.set_enabled(guard, ADMIN, 1, False)
    await admin.set_action(guard, ADMIN, 1, "观察")
    await admin.set_exempt_admins(guard, ADMIN, 1, "off")
    await admin.set_mute(guard, ADMIN, 1, ["3", "10m"])
    await admin.set_warning(guard, ADMIN, 1, "{user} 别发")
    added = await admin.allow(guard, ADMIN, 1, mentioned=["111111"], typed="222222 111111")
    assert isinstance(added, AllowListChange) and added.named == (111111, 222222) and added.size == 2
    removed = await admin.disallow(guard, ADMIN, 1, typed="222222 333333")
    assert removed.changed == (222222,) and removed.size == 1
    await admin.set_warning(guard, ADMIN, 1, "重置")
    settings = guard.store.get(1)
    assert (settings.enabled, settings.action, settings.exempt_admins) == (False, Action.OBSERVE, False)
    assert settings.mute == MutePolicy(3, 600) and settings.allowed == {111111}
    assert settings.reply_text == guard.store.defaults.reply_text
    actions = [(e["action"], sorted(e["after"])) for e in audit_lines(guard)]
    assert actions == [
        ("group-settings", ["enabled", "group_id"]),
        ("group-settings", ["action", "group_id"]),
        ("group-settings", ["exempt_admins", "group_id"]),
        ("group-settings", ["group_id", "mute"]),
        ("group-settings", ["group_id", "reply_text"]),
        ("group-settings", ["allowed", "group_id"]),
        ("group-settings", ["allowed", "group_id"]),
        ("group-settings", ["group_id", "reply_text"]),
    ]


async def test_the_consoles_form_is_checked_whole_then_one_change_and_one_record(guard) -> None:
    refused_form = {"threshold": "0.5", "reply_text": "{nick}"}
    with pytest.raises(Refused):
        await admin.change_settings_form(guard, OWNER, 1, refused_form)
    assert guard.store.get(1).threshold == 0.7 and audit_lines(guard) == []  # not even the good field
    change = await admin.change_settings_form(guard, OWNER, 1, {"threshold": "0.5", "action": "reply", "enabled": "on"})
    assert change.changed == ("threshold", "action")
    (entry,) = audit_lines(guard)
    assert (entry["operator"], entry["client"]) == ("web:ops", "127.0.0.1")
    assert entry["after"] == {"group_id": 1, "threshold": 0.5, "action": "reply"}


async def test_a_correction_and_its_undoing_are_one_record_each(guard) -> None:
    data = patterned(YELLOW, seed=81)
    guard.recent.remember(81, 1, data, image_key=content_key(data), score=0.97, model_version="0.0.1", hit=True)
    (entry,) = guard.recent.lookup(81)
    corrected = await admin.correct(guard, ADMIN, [(entry, data)], "other")
    assert corrected.label == "other" and len(corrected.added) == 1 and corrected.images == [entry]
    assert corrected.added[0].user_id == 5  # the corrections record the QQ number as before
    with pytest.raises(Refused) as refused:
        await admin.undo(guard, ADMIN, [(entry, data)])
    assert refused.value.key == "superusers_only" and len(guard.corrections) == 1
    undone = await admin.undo(guard, OWNER, [(entry, data)])
    assert [c.id for c in undone.corrections] == [c.id for c in corrected.added]
    assert [(e["action"], e["operator"]) for e in audit_lines(guard)] == [
        ("correction", "qq:5 (群主小王)"),
        ("correction-undone", "web:ops"),
    ]


async def test_a_refresh_needs_a_superuser(guard) -> None:
    with pytest.raises(Refused) as refused:
        admin.start_refresh(guard, ADMIN)
    assert refused.value.key == "superusers_only" and guard.refresher.running is None


# State is changed only through admin.py: the chat commands and the console call it, and never the stores'
# changing methods (nor verdicts.py, which changes corrections).
_CHANGING = {"change", "update", "add", "undo", "remove", "rollback", "swap_in", "start", "record", "remember",
             "correct", "change_corrections", "clear", "save"}  # fmt: skip
_STATE = ("store", "corrections", "strikes", "models", "refresher", "audit", "recent", "stats", "cache", "verdicts")


@pytest.mark.parametrize("module", ["nailong_bot/commands.py", "nailong_bot/web/console.py",
                                    "nailong_bot/web/group_settings.py"])  # fmt: skip
def test_the_adapters_change_no_state_themselves(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    changes = [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _CHANGING
        and ast.unparse(node.func.value).split(".")[-1] in _STATE
    ]
    assert changes == []
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "verdicts" not in imported and "commands" not in imported  # the console no longer imports the chat
