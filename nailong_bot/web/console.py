"""The web console at `/nailong/`: groups and their settings (editable), recent images, corrections, the
audit log, the model card and a box to try an image. Server-rendered HTML and one small script; nothing is
loaded from outside the bot. Signed in with NAILONG_ADMIN_TOKEN (see auth.py).

A thin adapter over the admin core (admin.py): each form is read, handed to the core with the signed-in
:class:`~nailong_bot.admin.Operator`, and its result shown; every change, and its audit record, is made
there. The page follows the browser's Accept-Language, or the language chosen with its switch
(``?lang=``, kept in a cookie); the words are in the catalogue (i18n/).

Every value put into a page is HTML-escaped unless it is :class:`Html` built by this package; thumbnails are
the small re-encoded copies the recent-images store made when each image was decided, never fetched.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from nonebot.log import logger

from nailong_vision.decode import ImageDecodeError

from .. import admin
from ..admin import Operator, Refused
from ..corrections import LABELS, Correction
from ..describe import format_threshold, gate_lines, lineage_text, refresh_heading, refresh_summary
from ..i18n import LOCALES, Lang, from_accept_language, lang, supported
from ..models import lineage
from ..recent import THUMBNAIL_SIZE, RecentImage, make_thumbnail
from ..runtime import Runtime
from ..stats import COUNT_NAMES, Counts
from .api import classify_request, model_card, running
from .auth import CSRF_HEADER, SESSION_COOKIE, Session, TokenAuth, client_address, matches, too_many_attempts
from .group_settings import settings_form
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
_GROUP_ID = re.compile(r"[0-9]{1,12}")
# The optional name given at sign-in, recorded as the operator "web:<name>".
_OPERATOR_NAME = re.compile(r"[\w.-]{1,32}")
LANG_COOKIE = "nailong_lang"
# The page loads nothing but its own files; thumbnails and the tried image's preview (blob:) included.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The notices a redirect back to the console may name (?notice=), and whether each is an error.
NOTICES = {
    "corrected-other": False, "corrected-nailong": False, "gone": True, "failed": True,
    "settings-saved": False, "settings-unchanged": False, "refresh-started": False,
    "refresh-unavailable": True, "rolled-back": False, "rollback-failed": True,
    "confirmed": False, "confirm-gone": True, "full": True,
}  # fmt: skip
CHANGED_SHOWN = 10


# --- Dependencies: the auth state, the page's language, the session, a checked form ---


async def _auth(request: Request) -> TokenAuth:
    return request.state.nailong_auth


Auth = Annotated[TokenAuth, Depends(_auth)]
RunningRuntime = Annotated[Runtime, Depends(running)]


async def page_lang(request: Request) -> Lang:
    """The language asked for with ?lang=, else the one chosen before (cookie), else the browser's."""
    chosen = supported(request.query_params.get("lang")) or supported(request.cookies.get(LANG_COOKIE))
    return lang(chosen or from_accept_language(request.headers.get("Accept-Language")))


PageLang = Annotated[Lang, Depends(page_lang)]


async def signed_in(request: Request, auth: Auth, words: PageLang) -> Session:
    session = auth.session(request)
    if session is None:
        raise HTTPException(401, words("console", "sign_in_first"))
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


async def _read_form(request: Request, words: Lang, *, limit: int = _FORM_LIMIT, max_fields: int = 8) -> dict[str, str]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, words("console", "form_too_large"))
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(400, words("console", "form_unreadable", error=error)) from error
    return {name: values[0] for name, values in fields.items()}


@dataclass(frozen=True)
class Posted:
    """A form posted by the signed-in operator, its CSRF token checked."""

    session: Session
    form: dict[str, str]
    operator: Operator


def posted_form(*, limit: int = _FORM_LIMIT, max_fields: int = 8) -> Callable[..., Awaitable[Posted]]:
    """A dependency: the form (at most ``limit`` bytes), refused (403) unless it carries the session's
    CSRF token."""

    async def checked(request: Request, session: SignedIn, words: PageLang) -> Posted:
        form = await _read_form(request, words, limit=limit, max_fields=max_fields)
        if not matches(form.get("csrf"), session.csrf):
            raise HTTPException(403, words("console", "stale_form"))
        return Posted(session, form, Operator.console(session.operator, client_address(request)))

    return checked


Form = Annotated[Posted, Depends(posted_form())]
SettingsForm = Annotated[Posted, Depends(posted_form(limit=_SETTINGS_FORM_LIMIT, max_fields=12))]


# --- Rendering ---


def page(name: str, words: Lang, **values: object) -> Html:
    template = (HERE / "templates" / name).read_text(encoding="utf-8")
    switch = _language_switch(words)
    return render(template, **words.scope("page"), html_lang=words.locale, language_switch=switch, **values)


def _language_switch(words: Lang) -> Html:
    """Links to the page in the other languages (each named in its own language)."""
    return Html(" ".join(
        render('<a class="language" href="?lang=$locale" hreflang="$locale">$name</a>', locale=locale,
               name=lang(locale)("console", "language_name"))
        for locale in LOCALES if locale != words.locale
    ))  # fmt: skip


def _html_response(content: Html, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=_HEADERS)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "—"


def _definitions(rows: list[tuple[str, object]]) -> Html:
    items = "".join(render("<dt>$term</dt><dd>$value</dd>", term=term, value=value) for term, value in rows)
    return Html(f'<dl class="card">{items}</dl>')


def _model_card(runtime: Runtime, words: Lang) -> Html:
    card = model_card(runtime)
    metrics = card["metrics"]
    say = lambda key: words("console", key)  # noqa: E731
    return _definitions([
        (say("model_name"), card["name"]),
        (say("model_version"), card["version"]),
        (say("model_exported"), card["created_at"] or "—"),
        (say("model_threshold"), words("console", "threshold_recommended",
                                       threshold=format_threshold(card["threshold"]),
                                       recommended=format_threshold(card["recommended_threshold"]))),
        (say("model_validation"), words("console", "images", n=metrics.get("validation_images", "—"))),
        (say("model_precision"), _number(metrics.get("nailong_precision"))),
        (say("model_recall"), _number(metrics.get("nailong_recall"))),
        (say("model_f1"), _number(metrics.get("nailong_f1"))),
        (say("model_fpr"), _number(metrics.get("nailong_fpr"))),
        (say("model_providers"), ", ".join(card["providers"])),
    ])  # fmt: skip


def _refresh_panel(runtime: Runtime, csrf: str, words: Lang) -> Html:
    """The model's lineage, the last refresh with its gate report, and the refresh and rollback buttons."""
    info, refresher = runtime.classifier.info, runtime.refresher
    say = lambda key, **values: words("console", key, **values)  # noqa: E731
    rows: list[tuple[str, object]] = [
        (say("model_version"), info.version),
        (say("lineage"), lineage_text(words, lineage(info))),
        (say("corrections_since"), refresher.corrections_since_model()),
        (say("automatic"), words("settings", "on" if runtime.config.nailong_auto_refresh else "off")),
    ]
    if refresher.running_trigger is not None:
        rows.append((say("running"), refresher.running_trigger))
    parts = [_definitions(rows)]
    last = refresher.last
    if last is not None:
        parts.append(render('<div class="gate $outcome"><h3>$heading</h3><p>$summary</p>', outcome=last.outcome,
                            heading=refresh_heading(words, last), summary=refresh_summary(words, last)))  # fmt: skip
        if last.gate:
            lines = gate_lines(words, last.gate)
            parts.append("<ul>" + "".join(render("<li>$line</li>", line=line) for line in lines) + "</ul>")
            changed = last.gate.get("changed") or []
            parts.append(render("<p>$text</p>", text=say("images_changed", n=len(changed))))
            parts.append("<ul class=\"changed\">" + "".join(
                render("<li><code>$file</code> $before → $after</li>", file=item.get("file"),
                       before=_number(item.get("before")), after=_number(item.get("after")))
                for item in changed[:CHANGED_SHOWN] if isinstance(item, dict)
            ) + "</ul>")  # fmt: skip
        parts.append("</div>")
    unavailable = refresher.unavailable()
    if unavailable is not None:
        # The operator's own console: where the checkpoint is missing helps here (never in a group).
        reason = words("unavailable", unavailable, checkpoint=refresher.checkpoint, folder=refresher.checkpoint.parent)
        parts.append(render('<p class="notice error">$reason</p>', reason=reason))
    parts.append(render(
        '<form method="post" action="/nailong/refresh" class="inline"><input type="hidden" name="csrf" value="$csrf">'
        '<button type="submit"$disabled>$refresh</button></form>'
        '<form method="post" action="/nailong/rollback" class="inline"><input type="hidden" name="csrf" value="$csrf">'
        '<button type="submit" class="quiet"$no_rollback>$rollback</button></form>',
        csrf=csrf, refresh=say("refresh_now"), rollback=say("roll_back"),
        disabled=Html(" disabled" if unavailable or refresher.running_trigger else ""),
        no_rollback=Html("" if runtime.models.can_roll_back() else " disabled"),
    ))  # fmt: skip
    return Html("".join(parts))


def _count_headings(words: Lang) -> Html:
    return Html("".join(render("<th>$name</th>", name=words("counts", name)) for name in COUNT_NAMES))


def _count_cells(counts: Counts) -> Html:
    return Html("".join(render('<td class="number">$n</td>', n=getattr(counts, name)) for name in COUNT_NAMES))


def _group_rows(runtime: Runtime, words: Lang) -> Html:
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
                enabled=words("settings", "on" if settings.enabled else "off"),
                threshold=format_threshold(settings.threshold),
                action=words("action", settings.action.value),
                today=_count_cells(stats.over_days(group_id, 1)),
                week=_count_cells(stats.over_days(group_id, 7)),
            )
        )
    return Html("".join(rows)) or render(
        '<tr><td colspan="18" class="empty">$text</td></tr>', text=words("console", "no_group")
    )


def _recent_item(entry: RecentImage, csrf: str, words: Lang) -> Html:
    # A hit can be wrong; an image let through can be a missed nailong.
    label, button = ("other", "wrong") if entry.hit else ("nailong", "missed")
    say = lambda key, **values: words("console", key, **values)  # noqa: E731
    return render(
        '<li class="$kind" data-message="$message_id">'
        '<img src="/nailong/thumb/$sha256" alt="$alt" loading="lazy">'
        '<div><span class="verdict $kind">$verdict</span> $score_label <b>$score</b></div>'
        '<div>$where</div><div>$time</div>'
        '<form method="post" action="/nailong/correct">'
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="message_id" value="$message_id">'
        '<input type="hidden" name="sha256" value="$sha256"><input type="hidden" name="label" value="$label">'
        '<button type="submit" class="correct">$button</button></form></li>',
        kind="hit" if entry.hit else "pass",
        alt=say("image_in_group", group=entry.group_id),
        verdict=say("hit" if entry.hit else "let_through"),
        score_label=say("score"),
        score=say("correction") if entry.score is None else f"{entry.score:.3f}",
        where=say("group_and_message", group=entry.group_id, message_id=entry.message_id),
        message_id=entry.message_id,
        sha256=entry.sha256,
        time=_time(entry.stored_at),
        csrf=csrf,
        label=label,
        button=say(button),
    )


def _correction_row(correction: Correction, words: Lang) -> Html:
    if correction.everywhere:
        scope = words("console", "applies_everywhere", by=correction.confirmed_by)
    else:
        scope = words("console", "applies_in_group")
    return render(
        '<tr data-correction="$id"><td>$time</td><td>$label</td><td>$group</td><td>$operator</td><td>$scope</td>'
        '<td class="number">$score</td><td>$version</td><td><code>$id</code></td></tr>',
        id=correction.id,
        time=correction.time,
        label=words("console", f"label_{correction.label}"),
        group=correction.group_id,
        operator=correction.user_id,
        scope=scope,
        score="—" if correction.score is None else f"{correction.score:.3f}",
        version=correction.model_version,
    )


def _pending_row(correction: Correction, csrf: str, words: Lang) -> Html:
    """A group's correction waiting for a confirmation, with the button that makes it apply everywhere."""
    return render(
        '<tr data-pending="$id"><td>$time</td><td>$label</td><td>$group</td><td>$operator</td><td><code>$id</code></td>'
        '<td><form method="post" action="/nailong/confirm"><input type="hidden" name="csrf" value="$csrf">'
        '<input type="hidden" name="group_id" value="$group"><input type="hidden" name="correction_id" value="$id">'
        '<button type="submit">$button</button></form></td></tr>',
        id=correction.id,
        time=correction.time,
        label=words("console", f"label_{correction.label}"),
        group=correction.group_id,
        operator=correction.user_id,
        csrf=csrf,
        button=words("console", "confirm"),
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


def _settings_forms(runtime: Runtime, csrf: str, words: Lang) -> Html:
    groups = sorted(runtime.store.groups() | runtime.stats.groups() | runtime.strikes.groups())
    return Html("".join(settings_form(runtime, group, csrf, words) for group in groups)) or render(
        '<p class="empty">$text</p>', text=words("console", "no_group")
    )


def _notice(notice: str | None, words: Lang) -> Html:
    if notice not in NOTICES:
        return Html("")
    error = " error" if NOTICES[notice] else ""
    return render('<p class="notice$error">$text</p>', error=error, text=words("notice", notice))


def _settings_refused(group_id: int, refused: Refused, words: Lang, status_code: int) -> HTMLResponse:
    """A page of its own saying why nothing changed, with the way back to the form."""
    reason = words("refused", refused.key, **refused.values)
    text = words("console", "settings_unchanged", group=group_id, reason=reason)
    return _html_response(page("settings_refused.html", words, group=group_id, refused=text), status_code)


def _to_console(notice: str | None = None) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET, so reloading does not post again.
    target = "/nailong/" if notice is None else f"/nailong/?notice={notice}"
    return RedirectResponse(target, status_code=303)


def _login_page(words: Lang, error: str, status_code: int) -> HTMLResponse:
    return _html_response(
        page("login.html", words, error=render('<p class="error">$text</p>', text=error)), status_code
    )


def _throttled_login_page(words: Lang, seconds: int) -> HTMLResponse:
    refused = too_many_attempts(seconds)
    response = _login_page(words, refused.detail, refused.status_code)
    response.headers.update(refused.headers or {})
    return response


def _keep_language(request: Request, response: Response) -> Response:
    """A language chosen with the switch (?lang=) is kept for the next pages."""
    if (chosen := supported(request.query_params.get("lang"))) is not None:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="strict", path="/nailong")
    return response


# --- Routes ---

routes = APIRouter()


@routes.get("/")
async def console(request: Request, auth: Auth, words: PageLang, notice: str | None = None) -> Response:
    session = auth.session(request)
    if session is None:
        return _keep_language(request, RedirectResponse("/nailong/login", status_code=303))
    runtime = running()
    recent = await asyncio.to_thread(runtime.recent.newest, RECENT_SHOWN)
    corrections = await asyncio.to_thread(runtime.corrections.newest, CORRECTIONS_SHOWN)
    pending = await asyncio.to_thread(runtime.corrections.pending, CORRECTIONS_SHOWN)
    audit = await asyncio.to_thread(runtime.audit.latest, AUDIT_SHOWN)
    csrf, say = session.csrf, lambda key: words("console", key)  # noqa: E731
    content = page(
        "console.html",
        words,
        csrf=csrf,
        operator=session.operator,
        notice=_notice(notice, words),
        model_card=_model_card(runtime, words),
        refresh_panel=_refresh_panel(runtime, csrf, words),
        count_headings=_count_headings(words),
        group_rows=_group_rows(runtime, words),
        group_settings=_settings_forms(runtime, csrf, words),
        recent_items=Html("".join(_recent_item(entry, csrf, words) for entry in recent))
        or render('<li class="empty">$text</li>', text=say("no_image")),
        correction_rows=Html("".join(_correction_row(c, words) for c in corrections))
        or render('<tr><td colspan="8" class="empty">$text</td></tr>', text=say("no_correction")),
        pending_rows=Html("".join(_pending_row(c, csrf, words) for c in pending))
        or render('<tr><td colspan="6" class="empty">$text</td></tr>', text=say("no_pending")),
        audit_rows=Html("".join(_audit_row(entry) for entry in audit))
        or render('<tr><td colspan="6" class="empty">$text</td></tr>', text=say("no_change")),
    )
    return _keep_language(request, _html_response(content))


@routes.get("/login")
async def login_form(request: Request, words: PageLang) -> Response:
    return _keep_language(request, _html_response(page("login.html", words, error="")))


@routes.post("/login")
async def login(request: Request, auth: Auth, words: PageLang) -> Response:
    address = client_address(request)
    if (seconds := auth.admin_retry_after(request)) is not None:
        return _throttled_login_page(words, seconds)
    form = await _read_form(request, words)
    name = form.get("name", "").strip()
    if name and not _OPERATOR_NAME.fullmatch(name):
        return _login_page(words, words("console", "bad_name"), 400)
    given = form.get("token")
    if not auth.check_admin_token(request, given):
        if (seconds := auth.admin_retry_after(request)) is not None:
            return _throttled_login_page(words, seconds)
        if auth.is_api_token(given):
            return _login_page(words, words("console", "api_token_given"), 401)
        return _login_page(words, words("console", "wrong_token"), 401)
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


@routes.post("/logout")
async def logout(request: Request, auth: Auth, words: PageLang) -> Response:
    session = auth.session(request)
    if session is not None:
        if not matches((await _read_form(request, words)).get("csrf"), session.csrf):
            raise HTTPException(403, words("console", "stale_form"))
        auth.sessions.end(session)
    response = RedirectResponse("/nailong/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=auth.cookie_secure(request), path="/nailong"
    )
    return response


@routes.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    content = (HERE / "static" / name).read_bytes()
    return Response(content, media_type=STATIC[name], headers={"X-Content-Type-Options": "nosniff"})


@routes.get("/thumb/{sha256}")
async def thumbnail(sha256: str, session: SignedIn, runtime: RunningRuntime, words: PageLang) -> Response:
    kept = await asyncio.to_thread(runtime.recent.newest, runtime.config.nailong_recent_max_images)
    entry = next((e for e in kept if e.sha256 == sha256), None) if _SHA256.fullmatch(sha256) else None
    if entry is None:
        raise HTTPException(404, words("console", "not_recent"))
    image = await asyncio.to_thread(_thumbnail, runtime, entry)
    if image is None:
        raise HTTPException(404, words("console", "cannot_show"))
    # Named by its content, so it never changes.
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@routes.post("/correct")
async def correct(posted: Form, runtime: RunningRuntime, words: PageLang) -> Response:
    form = posted.form
    label, message_id = form.get("label"), form.get("message_id", "")
    if label not in LABELS or not _MESSAGE_ID.fullmatch(message_id):
        raise HTTPException(400, words("console", "correct_needs"))
    entries = await asyncio.to_thread(runtime.recent.lookup, int(message_id))
    entry = next((e for e in entries if e.sha256 == form.get("sha256")), None)
    if entry is None:
        return _to_console("gone")
    try:
        data = await asyncio.to_thread(runtime.recent.read, entry)
    except FileNotFoundError:
        return _to_console("gone")
    try:
        await admin.correct(runtime, posted.operator, [(entry, data)], label)  # type: ignore[arg-type]
    except Refused as refused:
        return _to_console("full" if refused.key == "feedback_full" else "failed")
    return _to_console(f"corrected-{label}")


@routes.post("/confirm")
async def confirm(posted: Form, runtime: RunningRuntime, words: PageLang) -> Response:
    group, correction_id = posted.form.get("group_id", ""), posted.form.get("correction_id", "")
    if not _GROUP_ID.fullmatch(group) or not admin.CORRECTION_ID.fullmatch(correction_id):
        raise HTTPException(400, words("console", "confirm_needs"))
    try:
        await admin.confirm(runtime, posted.operator, [(int(group), correction_id)])
    except Refused as refused:
        notices = {"nothing_to_confirm": "confirm-gone", "feedback_full": "full"}
        return _to_console(notices.get(refused.key, "failed"))
    return _to_console("confirmed")


@routes.post("/settings")
async def change_settings(posted: SettingsForm, runtime: RunningRuntime, words: PageLang) -> Response:
    group = posted.form.get("group_id", "")
    if not re.fullmatch(r"[0-9]{1,12}", group) or int(group) == 0:
        raise HTTPException(400, words("console", "group_needed"))
    group_id = int(group)
    try:
        change = await admin.change_settings_form(runtime, posted.operator, group_id, posted.form)
    except Refused as refused:
        status = 500 if refused.key in ("cannot_save", "save_failed") else 400
        return _settings_refused(group_id, refused, words, status)
    return _to_console("settings-saved" if change.changed else "settings-unchanged")


@routes.post("/refresh")
async def start_refresh(posted: Form, runtime: RunningRuntime) -> Response:
    try:
        admin.start_refresh(runtime, posted.operator)
    except Refused:
        return _to_console("refresh-unavailable")
    return _to_console("refresh-started")


@routes.post("/rollback")
async def rollback(posted: Form, runtime: RunningRuntime) -> Response:
    try:
        await admin.rollback(runtime, posted.operator)
    except Refused:
        return _to_console("rollback-failed")
    return _to_console("rolled-back")


@routes.post("/try")
async def try_image(request: Request, session: SignedIn, words: PageLang) -> dict:
    if not matches(request.headers.get(CSRF_HEADER), session.csrf):
        raise HTTPException(403, words("console", "stale_form"))
    return await classify_request(request)


def make_router(auth: TokenAuth) -> APIRouter:
    """The console's routes under /nailong/, with this ``auth`` (sessions, throttle) for their dependencies."""

    async def provide_auth(request: Request) -> None:
        request.state.nailong_auth = auth

    router = APIRouter(prefix="/nailong", include_in_schema=False, dependencies=[Depends(provide_auth)])
    router.include_router(routes)
    return router
