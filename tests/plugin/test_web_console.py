"""The web console's server side (the browser test in tests/e2e drives it in Chromium): login, the page,
thumbnails, corrections by the same path as the chat command and into the audit log, the try box, group
settings.
Sessions, throttling and the two tokens' scopes: test_web_auth.py."""

from __future__ import annotations

import html
import io
import json
import re

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from nailong_bot import admin
from nailong_bot.admin import Operator
from nailong_bot.cache import content_key
from nailong_bot.corrections import Corrections
from nailong_bot.web import mount
from nailong_bot.web.auth import CSRF_HEADER

from nailong_testkit import BLUE, YELLOW, patterned, still
from nonebug_chat import post

API_TOKEN = "console-api-token-0123456789"
ADMIN_TOKEN = "console-admin-token-9876543210"
NAILONG = patterned(YELLOW, seed=51)


@pytest.fixture
async def browser(guard):
    """A client that has not signed in yet."""
    app = FastAPI()
    mount(app, API_TOKEN, ADMIN_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        yield client


async def form_token(client: httpx.AsyncClient) -> str:
    """The form token of the client's session, as the page gives it to its forms."""
    page = (await client.get("/nailong/")).text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


@pytest.fixture
async def signed_in(browser):
    answer = await browser.post("/nailong/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303 and answer.headers["Location"] == "/nailong/"
    return browser


@pytest.fixture
async def csrf(signed_in) -> str:
    return await form_token(signed_in)


def keep_hit(guard, data: bytes, message_id: int, group_id: int = 9) -> str:
    guard.recent.remember(
        message_id, group_id, data, image_key=content_key(data), score=0.97, model_version="0.0.1", hit=True
    )
    return guard.recent.lookup(message_id)[0].sha256


async def test_the_console_needs_the_token(browser) -> None:
    assert (await browser.get("/nailong/")).headers["Location"] == "/nailong/login"
    wrong = await browser.post("/nailong/login", data={"token": "not-the-token-at-all"})
    assert wrong.status_code == 401 and "令牌不对" in wrong.text
    assert "nailong_session" not in browser.cookies
    for path in ("/nailong/thumb/" + "0" * 64,):
        assert (await browser.get(path)).status_code == 401
    assert (await browser.post("/nailong/correct", data={"csrf": "x"})).status_code == 401
    assert (await browser.post("/nailong/try", content=still(YELLOW), headers={CSRF_HEADER: "x"})).status_code == 401


async def test_the_page_shows_groups_hits_corrections_and_the_model(signed_in, csrf, guard) -> None:
    guard.stats.add(9, checked=3, hits=1, recalls=1)
    sha256 = keep_hit(guard, NAILONG, message_id=901)
    guard.corrections.add(
        patterned(BLUE, seed=52), label="nailong", group_id=9, user_id=5, score=0.2, model_version="<script>x</script>"
    )
    page = await signed_in.get("/nailong/")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    text = page.text
    assert '<article class="group card" id="group-9" data-group="9"><h3>群 9 <span class="on">已开启</span></h3>' in text
    assert "近 31 天命中 1 次，单日最多 1 次" in text  # the group's chart, and the overall one
    assert f'<img src="/nailong/thumb/{sha256}"' in text and "命中" in text and "0.970" in text
    assert "误判" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text and "<script>x" not in text
    assert "tiny-test" in text and 'content="' + csrf + '"' in text


async def test_thumbnails_come_only_from_the_recent_images(signed_in, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=902)
    thumb = await signed_in.get(f"/nailong/thumb/{sha256}")
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 240
    assert (await signed_in.get("/nailong/thumb/" + "a" * 64)).status_code == 404
    assert (await signed_in.get("/nailong/thumb/..%2Fsettings.json")).status_code == 404


async def test_thumbnails_are_made_when_an_image_is_decided_and_served_from_disk(
    app, signed_in, guard, image_server
) -> None:
    url = image_server.add("console-decided.png", patterned(YELLOW, seed=53, fmt="PNG", size=(900, 700)), "image/png")
    await post(app, url, message_id=905, acted_on=True)
    (entry,) = guard.recent.lookup(905)
    stored = guard.recent.directory / "thumbs" / entry.sha256
    assert max(Image.open(stored).size) <= 240
    (guard.recent.directory / "images" / entry.sha256).unlink()  # no original left to decode
    thumb = await signed_in.get(f"/nailong/thumb/{entry.sha256}")
    assert thumb.status_code == 200 and thumb.content == stored.read_bytes()


async def test_an_image_kept_without_a_thumbnail_gets_one_once(signed_in, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=906)  # as kept before thumbnails were stored
    stored = guard.recent.directory / "thumbs" / sha256
    assert not stored.exists()
    thumb = await signed_in.get(f"/nailong/thumb/{sha256}")
    assert thumb.status_code == 200 and thumb.content == stored.read_bytes()


async def test_marking_a_hit_wrong_is_a_correction_by_web(signed_in, csrf, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=903)
    guard.cache.put(content_key(NAILONG), object())
    form = {"csrf": csrf, "message_id": "903", "sha256": sha256, "label": "other"}
    assert (await signed_in.post("/nailong/correct", data={**form, "csrf": "stale"})).status_code == 403
    assert len(guard.corrections) == 0
    answer = await signed_in.post("/nailong/correct", data=form)
    anchor = f"image-903-{sha256[:12]}"
    assert answer.status_code == 303 and answer.headers["Location"] == f"/nailong/?notice=corrected-other#{anchor}"
    (correction,) = guard.corrections.newest(5)
    assert (correction.label, correction.group_id, correction.user_id, correction.score) == ("other", 9, "web", 0.97)
    assert not correction.everywhere  # in the image's group, until confirmed
    assert len(guard.cache) == 1  # the cache holds the model's word; corrections are applied after it
    assert guard.stats.over_days(9, 1).corrections == 1
    assert Corrections(guard.corrections.feedback_dir).newest(5)[0].user_id == "web"  # as read back after a restart
    page = (await signed_in.get(answer.headers["Location"])).text
    assert "已记录：这不是奶龙" in page and f'<tr data-correction="{correction.id}">' in page
    assert f'<tr data-pending="{correction.id}">' in page
    assert '<div class="scope">只在该群</div>' in page  # the image's card says where it applies
    # Not yet for every group: the try box (no group) still asks the model.
    tried = await signed_in.post("/nailong/try", content=NAILONG, headers={CSRF_HEADER: csrf})
    assert tried.json()["source"] == "model"


async def test_the_console_confirms_what_waits_for_a_confirmation(signed_in, csrf, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=907)
    answer = await signed_in.post("/nailong/correct", data={"csrf": csrf, "message_id": "907", "sha256": sha256,
                                                             "label": "other"})
    assert answer.headers["Location"].startswith("/nailong/?notice=corrected-other")
    (waiting,) = guard.corrections.pending(5)
    form = {"csrf": csrf, "group_id": "9", "correction_id": waiting.id}
    assert (await signed_in.post("/nailong/confirm", data={**form, "csrf": "stale"})).status_code == 403
    assert (await signed_in.post("/nailong/confirm", data={**form, "correction_id": "../x"})).status_code == 400
    assert guard.corrections.pending(5) == [waiting]
    answer = await signed_in.post("/nailong/confirm", data=form)
    assert answer.headers["Location"] == "/nailong/?notice=confirmed#pending"
    assert guard.corrections.pending(5) == [] and guard.corrections.counts() == {"nailong": 0, "other": 1}
    (record,) = [entry for entry in guard.audit.latest(10) if entry["action"] == "correction-confirmed"]
    assert record["operator"] == "web" and record["before"] == {"corrections": [waiting.id], "scopes": ["9"]}
    assert record["after"] == {"verdicts": ["other"], "scopes": ["all"]}
    again = await signed_in.post("/nailong/confirm", data=form)
    assert again.headers["Location"] == "/nailong/?notice=confirm-gone#pending"
    page = (await signed_in.get("/nailong/")).text
    assert "没有等待确认的纠错" in page and "所有群（web）" in page
    tried = await signed_in.post("/nailong/try", content=NAILONG, headers={CSRF_HEADER: csrf})
    assert tried.json()["source"] == "correction" and tried.json()["nailong"] is False


async def test_a_correction_lands_in_the_audit_log_and_on_the_page(browser, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=904)
    signed_in = await browser.post("/nailong/login", data={"token": ADMIN_TOKEN, "name": "阿龙"})
    assert signed_in.status_code == 303
    form = {"csrf": await form_token(browser), "message_id": "904", "sha256": sha256, "label": "other"}
    assert (await browser.post("/nailong/correct", data=form)).status_code == 303
    (correction,) = guard.corrections.newest(5)
    assert correction.user_id == "web:阿龙"
    lines = (guard.audit.path).read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[-1])
    assert entry["operator"] == "web:阿龙" and entry["client"] == "127.0.0.1" and entry["action"] == "correction"
    assert entry["before"] == {"group_id": 9, "message_id": 904, "images": [sha256], "verdict": "nailong", "score": 0.97}
    assert entry["after"] == {"verdict": "other", "corrections": [correction.id], "scopes": ["9"]}
    assert entry["time"][:4].isdigit() and len(lines) == 1
    page = (await browser.get("/nailong/")).text
    audit = page[page.index('<section id="audit">'):]
    assert '<span class="what">纠错 消息 904：是奶龙 → 不是奶龙</span>' in audit
    assert "阿龙（控制台） · 群 9 · 127.0.0.1 · " in audit


async def test_audit_entries_are_escaped_on_the_page(signed_in, guard) -> None:
    guard.audit.record("web:<b>x</b>", "<script>alert(1)</script>", before={"a": "<i>"}, after=None, client="::1")
    page = (await signed_in.get("/nailong/")).text
    audit = page[page.index('<section id="audit">'):]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in audit and "<script>alert" not in audit
    assert "&lt;b&gt;x&lt;/b&gt;（控制台）" in audit and "&lt;i&gt;" in audit


async def test_the_page_shows_the_latest_audit_entries_across_a_rotation(signed_in, guard) -> None:
    guard.audit.max_bytes = 1500  # about ten entries a file
    for number in range(30):
        guard.audit.record("web", f"step-{number:02d}", before=None, after=None)
    assert guard.audit.rotated(2).exists() and len(guard.audit.path.read_text().splitlines()) < 20
    page = (await signed_in.get("/nailong/")).text
    shown = re.findall(r"step-([0-9]{2})", page[page.index('<section id="audit">'):])
    assert shown == [f"{number:02d}" for number in range(29, 9, -1)]


async def test_a_bad_sign_in_name_is_refused(browser) -> None:
    answer = await browser.post("/nailong/login", data={"token": ADMIN_TOKEN, "name": "<script>"})
    assert answer.status_code == 400 and "nailong_session" not in browser.cookies


async def test_a_dropped_image_cannot_be_corrected(signed_in, csrf, guard) -> None:
    form = {"csrf": csrf, "message_id": "999", "sha256": "b" * 64, "label": "nailong"}
    answer = await signed_in.post("/nailong/correct", data=form)
    assert answer.headers["Location"] == "/nailong/?notice=gone"
    assert len(guard.corrections) == 0
    assert (await signed_in.post("/nailong/undo", data=form)).headers["Location"] == "/nailong/?notice=gone"
    assert guard.audit.latest(5) == []  # nothing changed, nothing recorded


async def test_try_box_needs_the_page_token_and_answers_like_the_api(signed_in, csrf) -> None:
    assert (await signed_in.post("/nailong/try", content=still(YELLOW))).status_code == 403
    answer = await signed_in.post("/nailong/try", content=still(YELLOW), headers={CSRF_HEADER: csrf})
    assert answer.status_code == 200 and answer.json()["nailong"] is True
    bad = await signed_in.post("/nailong/try", content=b"not an image", headers={CSRF_HEADER: csrf})
    assert bad.status_code == 422 and "图片无法解码" in bad.json()["detail"]


async def test_sign_out(signed_in, csrf) -> None:
    answer = await signed_in.post("/nailong/logout", data={"csrf": csrf})
    assert answer.headers["Location"] == "/nailong/login"
    assert (await signed_in.get("/nailong/")).status_code == 303


async def test_group_settings_are_edited_like_the_chat_commands(signed_in, csrf, guard, caplog_loguru) -> None:
    guard.stats.add(9, checked=1)
    guard.strikes.add(9, 777777, message_id=1)
    page = (await signed_in.get("/nailong/")).text
    assert 'action="/nailong/settings" class="group-settings" id="settings-9" data-group="9">' in page
    assert '<label for="s9-threshold">阈值</label>' in page
    assert "777777 ×1" in page
    form = {
        "csrf": csrf, "group_id": "9", "enabled": "on", "threshold": "0.7", "action": "observe",
        "exempt_admins": "off", "allowed": "123456 654321", "mute_after": "3", "mute_duration": "10m",
        "reply_text": "{user} 走开",
    }  # fmt: skip
    assert (await signed_in.post("/nailong/settings", data={**form, "csrf": "stale"})).status_code == 403
    assert not guard.store.path.exists()
    answer = await signed_in.post("/nailong/settings", data=form)
    assert answer.status_code == 303 and answer.headers["Location"] == "/nailong/?notice=settings-saved#settings-9"
    settings = guard.store.get(9)
    assert (settings.action.value, settings.exempt_admins, settings.allowed) == ("observe", False, {123456, 654321})
    assert (settings.mute.after, settings.mute.seconds, settings.reply_text) == (3, 600, "{user} 走开")
    # Fields left as they were stay unset: the group still follows the global threshold and switch.
    assert set(json.loads(guard.store.path.read_text())["groups"]["9"]) == {
        "action", "exempt_admins", "allowed", "mute", "reply_text"
    }
    assert any("operator=web" in line and "group=9" in line for line in caplog_loguru)
    (entry,) = guard.audit.latest(5)
    assert (entry["operator"], entry["action"]) == ("web", "group-settings")
    assert entry["before"] == {
        "group_id": 9, "action": "both", "exempt_admins": True, "allowed": [], "mute": {"after": 1, "seconds": 0},
        "reply_text": "检测到奶龙图片",
    }  # fmt: skip
    assert entry["after"]["action"] == "observe" and entry["after"]["allowed"] == [123456, 654321]

    bad = {**form, "reply_text": "{user.__class__}", "threshold": "0.4"}
    refused = await signed_in.post("/nailong/settings", data=bad)
    assert refused.status_code == 400 and "未知的占位符 {user.__class__}" in refused.text
    assert guard.store.get(9) == settings
    unchanged = await signed_in.post("/nailong/settings", data=form)
    assert unchanged.headers["Location"] == "/nailong/?notice=settings-unchanged#settings-9"
    cleared = await signed_in.post("/nailong/settings", data={**form, "mute_duration": "", "reply_text": ""})
    assert cleared.status_code == 303
    assert not guard.store.get(9).mute.mutes and guard.store.get(9).reply_text == guard.store.defaults.reply_text
    assert (await signed_in.post("/nailong/settings", data={**form, "group_id": "abc"})).status_code == 400


async def test_a_threshold_below_the_floor_needs_the_forms_checkbox(signed_in, csrf, guard) -> None:
    guard.stats.add(9, checked=1)
    page = (await signed_in.get("/nailong/")).text
    assert '<input type="checkbox" name="confirm_threshold" value="yes"> 低于 0.3 也要设置</label>' in page
    form = {"csrf": csrf, "group_id": "9", "threshold": "0.2"}
    refused = await signed_in.post("/nailong/settings", data=form)
    assert refused.status_code == 400
    assert re.search(r'<p class="field-error" id="s9-threshold-error">[^<]*阈值 0.2 低于安全下限 0.3', refused.text)
    assert guard.store.get(9).threshold == 0.7 and guard.audit.latest(5) == []
    # Confirmed, but another field refused: the box stays ticked and the threshold has no error of its own.
    other_bad = await signed_in.post("/nailong/settings", data={**form, "confirm_threshold": "yes", "reply_text": "{"})
    shown = settings_form_of(other_bad.text, 9)
    assert other_bad.status_code == 400 and 'value="yes" checked>' in shown and "s9-threshold-error" not in shown
    confirmed = await signed_in.post("/nailong/settings", data={**form, "confirm_threshold": "yes"})
    assert confirmed.status_code == 303 and guard.store.get(9).threshold == 0.2
    assert len(guard.audit.latest(5)) == 1


async def test_settings_need_the_login(browser) -> None:
    assert (await browser.post("/nailong/settings", data={"csrf": "x", "group_id": "9"})).status_code == 401


async def test_the_console_follows_the_browsers_language_and_its_switch(signed_in) -> None:
    chinese = (await signed_in.get("/nailong/")).text
    assert '<html lang="zh-CN">' in chinese and "<h2>群设置</h2>" in chinese and "Group settings" not in chinese
    assert 'href="?lang=en-US"' in chinese  # the switch, named in its own language
    english = await signed_in.get("/nailong/", headers={"Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"})
    assert '<html lang="en-US">' in english.text and "<h2>Group settings</h2>" in english.text
    assert "群设置" not in english.text and 'href="?lang=zh-CN"' in english.text
    # The switch wins over the browser, and is kept for the next pages.
    switched = await signed_in.get("/nailong/?lang=en-US", headers={"Accept-Language": "zh-CN"})
    assert "<h2>Group settings</h2>" in switched.text and signed_in.cookies.get("nailong_lang") == "en-US"
    assert "<h2>Group settings</h2>" in (await signed_in.get("/nailong/", headers={"Accept-Language": "zh-CN"})).text


async def test_no_label_is_doubled_on_the_page(signed_in, guard) -> None:
    """The console used to say everything twice, "中文 / English"; each page is now in one language."""
    keep_hit(guard, NAILONG, message_id=907)
    for language in ("zh-CN", "en-US"):
        page = (await signed_in.get(f"/nailong/?lang={language}&notice=settings-saved")).text
        visible = re.sub(r"<script.*?</script>|<[^>]+>", "\n", page)
        doubled = [line for line in visible.splitlines() if re.search(r"[\u4e00-\u9fff].* / [A-Za-z]", line)]
        assert doubled == [], (language, doubled)
    login = (await signed_in.get("/nailong/login", headers={"Accept-Language": "en"})).text
    assert "Admin token" in login and "管理令牌" not in login


def settings_form_of(page: str, group_id: int) -> str:
    start = page.index(f'id="settings-{group_id}"')
    return page[start : page.index("</form>", start)]


async def test_a_refused_setting_is_shown_beside_its_field_with_the_other_values_kept(signed_in, csrf, guard) -> None:
    """A bad value used to open a page of its own, and going back lost the other edits. The console now
    comes back (400) with every value as entered and the reason under the field that was refused."""
    guard.stats.add(9, checked=1)
    form = {
        "csrf": csrf, "group_id": "9", "enabled": "on", "threshold": "1.5", "action": "observe", "exempt_admins": "off",
        "allowed": "123456 654321", "mute_after": "3", "mute_duration": "10m", "reply_text": "{user} <走开> {nope}",
    }  # fmt: skip
    refused = await signed_in.post("/nailong/settings", data=form)
    assert refused.status_code == 400 and guard.audit.latest(5) == [] and not guard.store.path.exists()
    shown = settings_form_of(refused.text, 9)
    assert 'class="group-settings refused"' in refused.text and "群 9 的设置未保存" in shown
    assert 'value="1.5" inputmode="decimal" aria-invalid="true" aria-describedby="s9-threshold-error" autofocus' in shown
    assert re.search(r'<p class="field-error" id="s9-threshold-error">[^<]*1\.5', shown)
    assert 'aria-describedby="s9-reply_text-error"' in shown and "{nope}" in shown
    assert 'value="{user} &lt;走开&gt; {nope}"' in shown  # kept, and escaped
    assert 'value="123456 654321"' in shown and 'value="10m"' in shown and 'value="3"' in shown
    assert '<option value="observe" selected>' in shown and 'aria-describedby="s9-allowed-error"' not in shown
    # Corrected, it saves all of it.
    saved = await signed_in.post("/nailong/settings", data={**form, "threshold": "0.8", "reply_text": "{user} 走开"})
    assert saved.status_code == 303
    assert guard.store.get(9).threshold == 0.8 and guard.store.get(9).allowed == {123456, 654321}


async def test_a_refused_fields_reason_is_in_the_pages_language_only(signed_in, csrf, guard) -> None:
    """Issue 24: the reason beside a field said it twice, "阈值必须… / threshold must…"."""
    guard.stats.add(9, checked=1)
    form = {"csrf": csrf, "group_id": "9", "threshold": "1.5", "reply_text": "{nope}", "allowed": "5" * 100}
    reasons = {
        "zh-CN": ("阈值必须在 0 到 1 之间：'1.5'", "未知的占位符 {nope}", "不是 QQ 号：" + "5" * 40 + "…（共 100 字）"),
        "en-US": ("threshold must be within 0..1: '1.5'", "unknown placeholder {nope}",
                  "not a QQ number: " + "5" * 40 + "… (100 characters)"),
    }  # fmt: skip
    for language, expected in reasons.items():
        refused = await signed_in.post("/nailong/settings", data=form, headers={"Accept-Language": language})
        assert refused.status_code == 400
        form_shown = settings_form_of(refused.text, 9)
        errors = re.findall(r'<p class="field-error" id="s9-[a-z_]+-error">([^<]*)</p>', form_shown)
        shown = [html.unescape(error) for error in errors]
        assert len(shown) == 3 and all(reason in " ".join(shown) for reason in expected), (language, shown)
        other_script = r"[\u4e00-\u9fff]" if language == "en-US" else r"[A-Za-z]{3,}"
        assert not [text for text in shown if re.search(other_script, re.sub(r"\{\w+\}|'[^']*'", "", text))], shown
    assert guard.store.get(9).threshold != 1.5 and guard.audit.latest(5) == []


async def test_the_learning_section_shows_the_corrections_folder(signed_in, guard) -> None:
    """`/奶龙 反馈` sends the operator here for the folder (a group never sees a server path)."""
    page = (await signed_in.get("/nailong/")).text
    learning = page[page.index('id="refresh"') :]
    folder = guard.corrections.feedback_dir.absolute()
    assert f"<dt>纠错目录（重新训练时加入 trainer 配置的 data: 列表）</dt><dd><code>{folder}</code></dd>" in learning


async def test_a_corrected_image_shows_its_correction_and_can_be_undone_in_place(signed_in, csrf, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=910)
    anchor = f"image-910-{sha256[:12]}"
    page = (await signed_in.get("/nailong/")).text
    assert f'<li class="hit" id="{anchor}"' in page and ">误判</button>" in page
    form = {"csrf": csrf, "message_id": "910", "sha256": sha256, "label": "other"}
    assert (await signed_in.post("/nailong/correct", data=form)).status_code == 303
    page = (await signed_in.get("/nailong/")).text
    card = page[page.index(f'id="{anchor}"') : page.index("</li>", page.index(f'id="{anchor}"'))]
    assert "已纠正：不是奶龙" in card and "控制台 · " in card and 'action="/nailong/undo"' in card
    assert ">误判</button>" not in card
    undone = await signed_in.post("/nailong/undo", data={key: form[key] for key in ("csrf", "message_id", "sha256")})
    assert undone.headers["Location"] == f"/nailong/?notice=undone#{anchor}" and len(guard.corrections) == 0
    assert guard.audit.latest(1)[0]["action"] == "correction-undone"
    page = (await signed_in.get("/nailong/?notice=undone")).text
    assert "已撤销纠错" in page and ">误判</button>" in page
    again = await signed_in.post("/nailong/undo", data={key: form[key] for key in ("csrf", "message_id", "sha256")})
    assert again.headers["Location"] == f"/nailong/?notice=not-corrected#{anchor}"


async def test_groups_hits_and_images_come_first_the_model_last_with_links_to_each(signed_in) -> None:
    page = (await signed_in.get("/nailong/")).text
    sections = re.findall(r'<section id="([a-z]+)">', page)
    assert sections == ["groups", "recent", "settings", "pending", "corrections", "audit", "try", "refresh", "model"]
    nav = page[page.index('<nav class="sections"') : page.index("</nav>")]
    assert re.findall(r'href="#([a-z]+)"', nav) == sections


async def test_a_correction_made_in_chat_shows_its_maker_by_nickname(signed_in, guard) -> None:
    sha256 = keep_hit(guard, NAILONG, message_id=911)
    (entry,) = guard.recent.lookup(911)
    member = Operator.chat(5, 9, "群主小王", superuser=False)
    await admin.correct(guard, member, [(entry, guard.recent.read(entry))], "other")
    page = (await signed_in.get("/nailong/")).text
    card = page[page.index(f'id="image-911-{sha256[:12]}"') :]
    assert '<div class="by">群主小王 · ' in card[: card.index("</li>")]
    assert '<td data-label="操作人">群主小王</td>' in page
    assert '<span class="what">纠错 消息 911：是奶龙 → 不是奶龙</span>' in page and ">群主小王 · 群 9 · " in page
