"""The web console at `/nailong/`: groups and their settings (editable), recent images, corrections, the
audit log, the model card and a box to try an image. Server-rendered HTML and one small script; nothing is
loaded from outside the bot. Signed in with NAILONG_ADMIN_TOKEN (see auth.py); every change made here goes
into the audit log.

Every value put into a page is HTML-escaped unless it is :class:`Html` built by this package; thumbnails are
the small re-encoded copies the recent-images store made when each image was decided, never fetched.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from nonebot.log import logger

from nailong_vision.classifier import ModelError
from nailong_vision.decode import ImageDecodeError

from .. import verdicts
from ..commands import ACTION_LABELS, format_threshold
from ..corrections import LABELS, Correction, FolderFull
from ..persist import CannotSave
from ..models import lineage, lineage_text
from ..recent import THUMBNAIL_SIZE, RecentImage, make_thumbnail
from ..refresh import OUTCOME_NAMES, gate_lines
from ..runtime import Runtime
from ..setting_input import InvalidSetting
from ..stats import COUNT_NAMES, Counts
from .api import classify_request, model_card, running
from .auth import CSRF_HEADER, SESSION_COOKIE, Session, TokenAuth, client_address, matches, too_many_attempts
from .group_settings import settings_changes, settings_form, settings_record
from .html import Html, render

HERE = Path(__file__).parent
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
RECENT_SHOWN = 40
CORRECTIONS_SHOWN = 20
AUDIT_SHOWN = 20
_FORM_LIMIT = 4096
# A group's settings form: an allow-list of a few hundred QQ numbers, a warning of 300 Chinese characters.
_SETTINGS_FORM_LIMIT = 32 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MESSAGE_ID = re.compile(r"-?[0-9]{1,20}")
_CORRECTION_ID = re.compile(r"[0-9a-f]{16}")
_GROUP_ID = re.compile(r"[0-9]{1,12}")
# The optional name given at sign-in, recorded as the operator "web:<name>".
_OPERATOR_NAME = re.compile(r"[\w.-]{1,32}")
# The page loads nothing but its own files; thumbnails and the tried image's preview (blob:) included.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NOTICES = {
    "corrected-other": ("已记录：这不是奶龙，只在该群生效，确认后对所有群生效 / Recorded: not nailong, in that group "
                        "until confirmed below.", False),
    "corrected-nailong": ("已记录：这是奶龙，只在该群生效，确认后对所有群生效 / Recorded: nailong, in that group "
                          "until confirmed below.", False),
    "confirmed": ("已确认：这条纠错对所有群生效 / Confirmed: the correction applies in every group.", False),
    "confirm-gone": ("这条纠错已不在等待确认 / That correction no longer waits for a confirmation.", True),
    "full": ("纠错目录已满，未记录（见日志）/ The corrections folder is full: nothing recorded (see the log).", True),
    "gone": ("这张图片已从近期记录中清除 / That image was dropped from the recent images.", True),
    "failed": ("保存纠错失败，请查看日志 / Saving the correction failed; see the log.", True),
    "settings-saved": ("群设置已保存 / Group settings saved.", False),
    "settings-unchanged": ("群设置没有变化 / Nothing changed.", False),
    "refresh-started": ("已开始更新模型，完成后本页显示结果 / Refresh started; reload this page for its result.", False),
    "refresh-unavailable": ("无法更新模型，原因见下 / The model cannot be refreshed: see below why.", True),
    "rolled-back": ("已回退到上一个模型 / Rolled back to the model before.", False),
    "rollback-failed": ("未回退，请查看日志 / Not rolled back; see the log.", True),
}
CHANGED_SHOWN = 10
LABEL_NAMES = {"nailong": "是奶龙 / nailong", "other": "不是奶龙 / not nailong"}


def page(name: str, **values: object) -> Html:
    return render((HERE / "templates" / name).read_text(encoding="utf-8"), **values)


def _html_response(content: Html, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=_HEADERS)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "—"


def _model_card(runtime: Runtime) -> Html:
    card = model_card(runtime)
    metrics = card["metrics"]
    rows = [
        ("名称 / name", card["name"]),
        ("版本 / version", card["version"]),
        ("导出时间 / exported", card["created_at"] or "—"),
        ("阈值 / threshold", f"{format_threshold(card['threshold'])}（模型推荐 / recommended "
         f"{format_threshold(card['recommended_threshold'])}）"),
        ("验证集 / validation", f"{metrics.get('validation_images', '—')} 张图片 / images"),
        ("奶龙精确率 / precision", _number(metrics.get("nailong_precision"))),
        ("奶龙召回率 / recall", _number(metrics.get("nailong_recall"))),
        ("奶龙 F1", _number(metrics.get("nailong_f1"))),
        ("误判率 / false-positive rate", _number(metrics.get("nailong_fpr"))),
        ("后端 / providers", ", ".join(card["providers"])),
    ]
    items = "".join(render("<dt>$term</dt><dd>$value</dd>", term=term, value=value) for term, value in rows)
    return Html(f'<dl class="card">{items}</dl>')


def _refresh_panel(runtime: Runtime, csrf: str) -> Html:
    """The model's lineage, the last refresh with its gate report, and the refresh and rollback buttons."""
    info, refresher = runtime.classifier.info, runtime.refresher
    origin = lineage(info)
    rows = [
        ("版本 / version", info.version),
        ("来历 / lineage", "基础模型 / the base model" if origin is None else lineage_text(origin)),
        ("此后新增纠错 / corrections since", refresher.corrections_since_model()),
        ("自动更新 / automatic", "开 / on" if runtime.config.nailong_auto_refresh else "关 / off"),
    ]
    if refresher.running_trigger is not None:
        rows.append(("正在更新 / running", refresher.running_trigger))
    items = "".join(render("<dt>$term</dt><dd>$value</dd>", term=term, value=value) for term, value in rows)
    parts = [f'<dl class="card">{items}</dl>']
    last = refresher.last
    if last is not None:
        parts.append(render(
            '<div class="gate $outcome"><h3>上次更新 / last refresh: $time（$trigger）$name</h3><p>$message</p>',
            outcome=last.outcome, time=_time(last.started_at), trigger=last.trigger,
            name=OUTCOME_NAMES[last.outcome], message=last.message,
        ))  # fmt: skip
        if last.gate:
            parts.append("<ul>" + "".join(render("<li>$line</li>", line=line) for line in gate_lines(last.gate)) + "</ul>")
            changed = last.gate.get("changed") or []
            parts.append(render("<p>判断改变的图片 / images that changed: $n</p>", n=len(changed)))
            parts.append("<ul class=\"changed\">" + "".join(
                render("<li><code>$file</code> $before → $after</li>", file=item.get("file"),
                       before=_number(item.get("before")), after=_number(item.get("after")))
                for item in changed[:CHANGED_SHOWN] if isinstance(item, dict)
            ) + "</ul>")  # fmt: skip
        parts.append("</div>")
    unavailable = refresher.unavailable()
    if unavailable is not None:
        parts.append(render('<p class="notice error">$reason</p>', reason=unavailable))
    parts.append(render(
        '<form method="post" action="/nailong/refresh" class="inline"><input type="hidden" name="csrf" value="$csrf">'
        '<button type="submit"$disabled>开始更新 / Refresh now</button></form>'
        '<form method="post" action="/nailong/rollback" class="inline"><input type="hidden" name="csrf" value="$csrf">'
        '<button type="submit" class="quiet"$no_rollback>回退到上一个模型 / Roll back</button></form>',
        csrf=csrf,
        disabled=Html(" disabled" if unavailable or refresher.running_trigger else ""),
        no_rollback=Html("" if runtime.models.can_roll_back() else " disabled"),
    ))  # fmt: skip
    return Html("".join(parts))


def _count_cells(counts: Counts) -> Html:
    return Html(
        "".join(render('<td class="number">$n</td>', n=getattr(counts, name)) for name in COUNT_NAMES)
    )


def _group_rows(runtime: Runtime) -> Html:
    store, stats = runtime.store, runtime.stats
    rows = []
    for group_id in sorted(store.groups() | stats.groups()):
        settings = store.get(group_id)
        rows.append(
            render(
                '<tr data-group="$group"><td>$group</td><td class="$state">$enabled</td>'
                '<td class="number">$threshold</td><td>$action</td>$today$week</tr>',
                group=group_id,
                state="on" if settings.enabled else "off",
                enabled="开 / on" if settings.enabled else "关 / off",
                threshold=format_threshold(settings.threshold),
                action=ACTION_LABELS[settings.action],
                today=_count_cells(stats.over_days(group_id, 1)),
                week=_count_cells(stats.over_days(group_id, 7)),
            )
        )
    return Html("".join(rows)) or Html(
        '<tr><td colspan="18" class="empty">还没有群的数据 / no group seen yet</td></tr>'
    )


def _recent_item(entry: RecentImage, csrf: str) -> Html:
    # A hit can be wrong; an image let through can be a missed nailong.
    label, button = ("other", "误判 / wrong") if entry.hit else ("nailong", "漏判 / missed")
    return render(
        '<li class="$kind" data-message="$message_id">'
        '<img src="/nailong/thumb/$sha256" alt="群 $group 的图片 / image in group $group" loading="lazy">'
        '<div><span class="verdict $kind">$verdict</span> 得分 / score <b>$score</b></div>'
        '<div>群 / group $group · 消息 / message $message_id</div><div>$time</div>'
        '<form method="post" action="/nailong/correct">'
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="message_id" value="$message_id">'
        '<input type="hidden" name="sha256" value="$sha256"><input type="hidden" name="label" value="$label">'
        '<button type="submit" class="correct">$button</button></form></li>',
        kind="hit" if entry.hit else "pass",
        verdict="命中 / hit" if entry.hit else "放过 / let through",
        score="纠错 / correction" if entry.score is None else f"{entry.score:.3f}",
        group=entry.group_id,
        message_id=entry.message_id,
        sha256=entry.sha256,
        time=_time(entry.stored_at),
        csrf=csrf,
        label=label,
        button=button,
    )


def _correction_row(correction: Correction) -> Html:
    return render(
        '<tr data-correction="$id"><td>$time</td><td>$label</td><td>$group</td><td>$operator</td><td>$scope</td>'
        '<td class="number">$score</td><td>$version</td><td><code>$id</code></td></tr>',
        id=correction.id,
        time=correction.time,
        label=LABEL_NAMES[correction.label],
        group=correction.group_id,
        operator=correction.user_id,
        scope=f"所有群 / every group（{correction.confirmed_by}）" if correction.everywhere else "只在该群 / that group",
        score="—" if correction.score is None else f"{correction.score:.3f}",
        version=correction.model_version,
    )


def _pending_row(correction: Correction, csrf: str) -> Html:
    """A group's correction waiting for a confirmation, with the button that makes it apply everywhere."""
    return render(
        '<tr data-pending="$id"><td>$time</td><td>$label</td><td>$group</td><td>$operator</td><td><code>$id</code></td>'
        '<td><form method="post" action="/nailong/confirm"><input type="hidden" name="csrf" value="$csrf">'
        '<input type="hidden" name="group_id" value="$group"><input type="hidden" name="correction_id" value="$id">'
        '<button type="submit">确认，对所有群生效 / Confirm for every group</button></form></td></tr>',
        id=correction.id,
        time=correction.time,
        label=LABEL_NAMES[correction.label],
        group=correction.group_id,
        operator=correction.user_id,
        csrf=csrf,
    )


def _audit_row(entry: dict) -> Html:
    def shown(value: object) -> str:
        return "—" if value is None else json.dumps(value, ensure_ascii=False, default=str)

    return render(
        "<tr><td>$time</td><td>$operator</td><td>$client</td><td>$action</td><td><code>$before</code></td>"
        "<td><code>$after</code></td></tr>",
        time=entry.get("time", "—"),
        operator=entry.get("operator", "—"),
        client=entry.get("client") or "—",
        action=entry.get("action", "—"),
        before=shown(entry.get("before")),
        after=shown(entry.get("after")),
    )


def _thumbnail(runtime: Runtime, entry: RecentImage) -> bytes | None:
    """The thumbnail stored when the image was decided. One kept before thumbnails were stored is
    made now, once, under the decode budget; None when the image cannot be shown."""
    stored = runtime.recent.read_thumbnail(entry)
    if stored is not None:
        return stored
    try:
        data = runtime.recent.read(entry)
        options = {"max_frames": 1, "max_pixels": runtime.config.nailong_max_pixels, "draft_size": THUMBNAIL_SIZE[0]}
        with runtime.decode_budget.frames(data, **options) as (first,):
            made = make_thumbnail(first)
    except (FileNotFoundError, ImageDecodeError):
        return None
    runtime.recent.keep_thumbnail(entry, made)
    return made


async def _read_form(request: Request, *, limit: int = _FORM_LIMIT, max_fields: int = 8) -> dict[str, str]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, "表单过大 / form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(400, f"表单无法解析 / unreadable form: {error}") from error
    return {name: values[0] for name, values in fields.items()}


def _settings_forms(runtime: Runtime, csrf: str) -> Html:
    groups = sorted(runtime.store.groups() | runtime.stats.groups() | runtime.strikes.groups())
    return Html("".join(settings_form(runtime, group, csrf) for group in groups)) or Html(
        '<p class="empty">还没有群的数据 / no group seen yet</p>'
    )


def _settings_refused(group_id: int, reason: str, status_code: int) -> HTMLResponse:
    """A page of its own saying why nothing changed, with the way back to the form."""
    return _html_response(page("settings_refused.html", group=group_id, reason=reason), status_code)


def _to_console(notice: str | None = None) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET, so reloading does not post again.
    target = "/nailong/" if notice is None else f"/nailong/?notice={notice}"
    return RedirectResponse(target, status_code=303)


def _login_page(error: str, status_code: int) -> HTMLResponse:
    return _html_response(page("login.html", error=render('<p class="error">$text</p>', text=error)), status_code)


def _throttled_login_page(seconds: int) -> HTMLResponse:
    refused = too_many_attempts(seconds)
    response = _login_page(refused.detail, refused.status_code)
    response.headers.update(refused.headers or {})
    return response


def make_router(auth: TokenAuth) -> APIRouter:
    router = APIRouter(prefix="/nailong", include_in_schema=False)

    def require_login(request: Request) -> Session:
        session = auth.session(request)
        if session is None:
            raise HTTPException(401, "请先登录 / please sign in at /nailong/login")
        return session

    def require_form_token(session: Session, given: str | None) -> None:
        if not matches(given, session.csrf):
            raise HTTPException(403, "表单已过期，请刷新页面 / stale form, reload the page")

    @router.get("/")
    async def console(request: Request, notice: str | None = None) -> Response:
        session = auth.session(request)
        if session is None:
            return RedirectResponse("/nailong/login", status_code=303)
        runtime = running()
        recent = await asyncio.to_thread(runtime.recent.newest, RECENT_SHOWN)
        corrections = await asyncio.to_thread(runtime.corrections.newest, CORRECTIONS_SHOWN)
        pending = await asyncio.to_thread(runtime.corrections.pending, CORRECTIONS_SHOWN)
        audit = await asyncio.to_thread(runtime.audit.latest, AUDIT_SHOWN)
        shown_notice = Html("")
        if notice in NOTICES:
            text, is_error = NOTICES[notice]
            shown_notice = render('<p class="notice$error">$text</p>', error=" error" if is_error else "", text=text)
        return _html_response(
            page(
                "console.html",
                csrf=session.csrf,
                operator=session.operator,
                notice=shown_notice,
                model_card=_model_card(runtime),
                refresh_panel=_refresh_panel(runtime, session.csrf),
                group_rows=_group_rows(runtime),
                group_settings=_settings_forms(runtime, session.csrf),
                recent_items=Html("".join(_recent_item(entry, session.csrf) for entry in recent))
                or Html('<li class="empty">还没有检查过图片 / no image checked yet</li>'),
                correction_rows=Html("".join(_correction_row(c) for c in corrections))
                or Html('<tr><td colspan="8" class="empty">还没有纠错 / no correction yet</td></tr>'),
                pending_rows=Html("".join(_pending_row(c, session.csrf) for c in pending))
                or Html('<tr><td colspan="6" class="empty">没有等待确认的纠错 / nothing waits for a confirmation</td></tr>'),
                audit_rows=Html("".join(_audit_row(entry) for entry in audit))
                or Html('<tr><td colspan="6" class="empty">还没有操作记录 / no change recorded yet</td></tr>'),
            )
        )

    @router.get("/login")
    async def login_form() -> Response:
        return _html_response(page("login.html", error=""))

    @router.post("/login")
    async def login(request: Request) -> Response:
        address = client_address(request)
        if (seconds := auth.admin_retry_after(request)) is not None:
            return _throttled_login_page(seconds)
        form = await _read_form(request)
        name = form.get("name", "").strip()
        if name and not _OPERATOR_NAME.fullmatch(name):
            return _login_page("名字最多 32 个字母、数字、_ . - / a name is up to 32 letters, digits, _ . -", 400)
        given = form.get("token")
        if not auth.check_admin_token(request, given):
            if (seconds := auth.admin_retry_after(request)) is not None:
                return _throttled_login_page(seconds)
            if auth.is_api_token(given):
                return _login_page(
                    "这是 API 令牌，控制台要用 NAILONG_ADMIN_TOKEN / that is the API token: the console needs "
                    "NAILONG_ADMIN_TOKEN",
                    401,
                )
            return _login_page("令牌不对 / wrong token", 401)
        if (previous := auth.session(request)) is not None:
            auth.sessions.end(previous)
        session = auth.sessions.start(f"web:{name}" if name else "web")
        logger.info(f"控制台登录 / console sign-in: {session.operator} from {address}")
        response = _to_console()
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            max_age=int(auth.sessions.lifetime),
            httponly=True,
            samesite="strict",
            secure=auth.cookie_secure(request),
            path="/nailong",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = auth.session(request)
        if session is not None:
            require_form_token(session, (await _read_form(request)).get("csrf"))
            auth.sessions.end(session)
        response = RedirectResponse("/nailong/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="strict", secure=auth.cookie_secure(request), path="/nailong"
        )
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "not found")
        content = (HERE / "static" / name).read_bytes()
        return Response(content, media_type=STATIC[name], headers={"X-Content-Type-Options": "nosniff"})

    @router.get("/thumb/{sha256}")
    async def thumbnail(request: Request, sha256: str) -> Response:
        require_login(request)
        runtime = running()
        kept = await asyncio.to_thread(runtime.recent.newest, runtime.config.nailong_recent_max_images)
        entry = next((e for e in kept if e.sha256 == sha256), None) if _SHA256.fullmatch(sha256) else None
        if entry is None:
            raise HTTPException(404, "这张图片已不在近期记录中 / not among the recent images")
        image = await asyncio.to_thread(_thumbnail, runtime, entry)
        if image is None:
            raise HTTPException(404, "这张图片无法显示 / this image cannot be shown")
        # Named by its content, so it never changes.
        return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @router.post("/correct")
    async def correct(request: Request) -> Response:
        session = require_login(request)
        form = await _read_form(request)
        require_form_token(session, form.get("csrf"))
        label, message_id = form.get("label"), form.get("message_id", "")
        if label not in LABELS or not _MESSAGE_ID.fullmatch(message_id):
            raise HTTPException(400, "需要 label=nailong|other 和 message_id / label and message_id required")
        runtime = running()
        entries = await asyncio.to_thread(runtime.recent.lookup, int(message_id))
        entry = next((e for e in entries if e.sha256 == form.get("sha256")), None)
        if entry is None:
            return _to_console("gone")
        try:
            data = await asyncio.to_thread(runtime.recent.read, entry)
        except FileNotFoundError:
            return _to_console("gone")
        try:
            verdict = await verdicts.correct(runtime, [(entry, data)], label, operator=session.operator)
        except FolderFull as error:
            logger.error(f"纠错目录已满 / feedback folder full: group={entry.group_id}: {error}")
            return _to_console("full")
        except OSError as error:
            logger.error(f"保存纠错失败 / saving a correction failed: group={entry.group_id}: {error}")
            return _to_console("failed")
        await asyncio.to_thread(
            runtime.audit.record,
            session.operator,
            "correction",
            before={
                "group_id": entry.group_id,
                "message_id": entry.message_id,
                "image": entry.sha256,
                "verdict": "nailong" if entry.hit else "other",
                "score": None if entry.score is None else round(entry.score, 6),
            },
            after={
                "verdict": label,
                "corrections": [correction.id for correction in verdict.added],
                # The members whose strike for this message was taken back, if any.
                **({"strikes_taken_back": [s.user_id for s in verdict.forgiven]} if verdict.forgiven else {}),
            },
            client=client_address(request),
        )
        return _to_console(f"corrected-{label}")

    @router.post("/confirm")
    async def confirm(request: Request) -> Response:
        session = require_login(request)
        form = await _read_form(request)
        require_form_token(session, form.get("csrf"))
        group, correction_id = form.get("group_id", ""), form.get("correction_id", "")
        if not _GROUP_ID.fullmatch(group) or not _CORRECTION_ID.fullmatch(correction_id):
            raise HTTPException(400, "需要 group_id 和 correction_id / group_id and correction_id required")
        runtime = running()
        try:
            confirmed = await verdicts.confirm(runtime, [(int(group), correction_id)], operator=session.operator)
        except FolderFull as error:
            logger.error(f"纠错目录已满 / feedback folder full: {error}")
            return _to_console("full")
        except OSError as error:
            logger.error(f"确认纠错失败 / confirming a correction failed: group={group}: {error}")
            return _to_console("failed")
        if not confirmed:
            return _to_console("confirm-gone")
        await asyncio.to_thread(
            runtime.audit.record,
            session.operator,
            "correction-confirm",
            before={"group_id": int(group), "correction": correction_id, "scope": int(group)},
            after={"correction": correction_id, "label": confirmed[0].label, "scope": "all"},
            client=client_address(request),
        )
        return _to_console("confirmed")

    @router.post("/settings")
    async def change_settings(request: Request) -> Response:
        session = require_login(request)
        form = await _read_form(request, limit=_SETTINGS_FORM_LIMIT, max_fields=12)
        require_form_token(session, form.get("csrf"))
        group = form.get("group_id", "")
        if not re.fullmatch(r"[0-9]{1,12}", group) or int(group) == 0:
            raise HTTPException(400, "需要群号 group_id / group_id required")
        runtime, group_id = running(), int(group)
        try:
            changes = settings_changes(form, runtime.store.get(group_id), runtime.store.defaults.reply_text)
        except InvalidSetting as error:
            return _settings_refused(group_id, str(error), 400)
        if not changes:
            return _to_console("settings-unchanged")
        before = runtime.store.get(group_id)
        try:
            after = await runtime.store.change(group_id, session.operator, **changes)
        except (CannotSave, OSError) as error:
            logger.error(f"保存群设置失败 / saving settings failed: group={group_id}: {error}")
            return _settings_refused(group_id, f"保存失败 / saving failed: {error}", 500)
        await asyncio.to_thread(
            runtime.audit.record,
            session.operator,
            "group-settings",
            before={"group_id": group_id, **settings_record(before, changes)},
            after={"group_id": group_id, **settings_record(after, changes)},
            client=client_address(request),
        )
        return _to_console("settings-saved")

    async def checked_form(request: Request) -> Session:
        session = require_login(request)
        require_form_token(session, (await _read_form(request)).get("csrf"))
        return session

    @router.post("/refresh")
    async def start_refresh(request: Request) -> Response:
        session = await checked_form(request)
        runtime = running()
        if runtime.refresher.unavailable() is not None:
            return _to_console("refresh-unavailable")
        before = runtime.model_version
        runtime.refresher.start(session.operator)
        await asyncio.to_thread(
            runtime.audit.record, session.operator, "refresh", before={"model": before},
            after={"started": True}, client=client_address(request),
        )  # fmt: skip
        return _to_console("refresh-started")

    @router.post("/rollback")
    async def rollback(request: Request) -> Response:
        session = await checked_form(request)
        runtime = running()
        try:
            left, now = await runtime.models.rollback()
        except ModelError as error:
            logger.warning(f"控制台回退失败 / rollback from the console failed: {error}")
            return _to_console("rollback-failed")
        logger.info(f"模型已回退 / model rolled back: {left.version} → {now.version} ({session.operator})")
        await asyncio.to_thread(
            runtime.audit.record, session.operator, "rollback", before={"model": left.version},
            after={"model": now.version}, client=client_address(request),
        )  # fmt: skip
        return _to_console("rolled-back")

    @router.post("/try")
    async def try_image(request: Request) -> dict:
        require_form_token(require_login(request), request.headers.get(CSRF_HEADER))
        return await classify_request(request)

    return router
