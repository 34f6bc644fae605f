"""The web console at `/nailong/`, in this order under a bar of links: the groups (counts and hits per day,
chart.py), recent images (each with its correction and undo), each group's settings (editable,
group_settings.py), corrections, the audit log (readable lines, readable.py), a box to try an image,
refreshing the model and last the model card. Server-rendered HTML and one small script that nothing needs;
nothing is loaded from outside the bot. Stacked cards on a phone (static/console.css). Signed in with
NAILONG_ADMIN_TOKEN (see auth.py).

A form's answer comes back to the card it was sent from (``#anchor``), so the page stays in place; a
refused settings form comes back with what was entered and the reason beside each field.

A thin adapter over the admin core (admin.py): each form is read, handed to the core with the signed-in
:class:`~nailong_bot.admin.Operator`, and its result shown; every change, and its audit record, is made
there. The page follows the browser's Accept-Language, or the language chosen with its switch
(``?lang=``, kept in a cookie); the words are in the catalogue (i18n/).

Every value put into a page is HTML-escaped unless it is :class:`Html` built by this package; thumbnails are
the small re-encoded copies the recent-images store made when each image was decided, never fetched.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from nonebot.log import logger

from nailong_vision.decode import ImageDecodeError

from .. import admin
from ..admin import Operator, Refused
from ..corrections import LABELS, Correction, image_id
from ..describe import (
    format_threshold,
    gate_lines,
    lineage_text,
    refresh_heading,
    refresh_summary,
    rolled_back_note,
)
from ..i18n import LOCALES, Lang, from_accept_language, lang, supported
from ..models import lineage
from ..recent import THUMBNAIL_SIZE, RecentImage, make_thumbnail
from ..runtime import Runtime
from ..stats import COUNT_NAMES, KEEP_DAYS
from .api import classify_request, model_card, running
from .auth import CSRF_HEADER, SESSION_COOKIE, Session, TokenAuth, client_address, matches, too_many_attempts
from .chart import hits_chart
from .group_settings import field_errors, settings_form
from .html import Html, render
from .readable import audit_line, correction_makers, local_time, operator, time_zone

HERE = Path(__file__).parent
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
RECENT_SHOWN = 40
CORRECTIONS_SHOWN = 20
AUDIT_SHOWN = 20
# The audit entries read for the nicknames of who made the corrections shown.
AUDIT_READ = 200
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
    "undone": False, "not-corrected": True, "confirmed": False, "confirm-gone": True, "full": True,
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


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "—"


def _definitions(rows: list[tuple[str, object]]) -> Html:
    items = "".join(render("<dt>$term</dt><dd>$value</dd>", term=term, value=value) for term, value in rows)
    return Html(f'<dl class="card">{items}</dl>')


def _model_card(runtime: Runtime, words: Lang) -> Html:
    card = model_card(runtime)
    metrics = card["metrics"]
    say = lambda key: words("console", key)  # noqa: E731
    # None: nobody validated this model (a refresh without training folders): no numbers are its own.
    validation = [(say("model_validation"), words("model", "not_validated"))] if metrics is None else [
        (say("model_validation"), words("console", "images", n=metrics.get("validation_images", "—"))),
        (say("model_precision"), _number(metrics.get("nailong_precision"))),
        (say("model_recall"), _number(metrics.get("nailong_recall"))),
        (say("model_f1"), _number(metrics.get("nailong_f1"))),
        (say("model_fpr"), _number(metrics.get("nailong_fpr"))),
    ]
    return _definitions([
        (say("model_name"), card["name"]),
        (say("model_version"), card["version"]),
        (say("model_exported"), card["created_at"] or "—"),
        (say("model_threshold"), words("console", "threshold_recommended",
                                       threshold=format_threshold(card["threshold"]),
                                       recommended=format_threshold(card["recommended_threshold"]))),
        *validation,
        (say("model_providers"), ", ".join(card["providers"])),
        (say("model_reviewed"), _reviewed(runtime, words)),
    ])  # fmt: skip


def _reviewed(runtime: Runtime, words: Lang) -> str:
    """How the model in use fared with the images admins reviewed (the review page)."""
    tally = runtime.review.tally().get(runtime.model_version)
    if tally is None or not tally.reviewed:
        return words("console", "reviewed_none")
    return words("console", "reviewed", reviewed=tally.reviewed, right=tally.right)


def _refresh_panel(runtime: Runtime, csrf: str, words: Lang) -> Html:
    """The model's lineage, the last refresh with its gate report, and the refresh and rollback buttons."""
    info, refresher = runtime.classifier.info, runtime.refresher
    say = lambda key, **values: words("console", key, **values)  # noqa: E731
    rows: list[tuple[str, object]] = [
        (say("model_version"), info.version),
        (say("lineage"), lineage_text(words, lineage(info))),
        (say("corrections_since"), refresher.corrections_since_model()),
        # The operator's own console: where the corrections are, to add them to a training run.
        (say("feedback_folder"), render("<code>$folder</code>", folder=runtime.corrections.feedback_dir.absolute())),
        (say("automatic"), words("settings", "on" if runtime.config.nailong_auto_refresh else "off")),
    ]
    if refresher.running_trigger is not None:
        rows.append((say("running"), refresher.running_trigger))
    parts = [_definitions(rows)]
    last = refresher.last
    if last is not None:
        parts.append(render('<div class="gate $outcome"><h3>$heading</h3><p>$summary</p>', outcome=last.outcome,
                            heading=refresh_heading(words, last), summary=refresh_summary(words, last)))  # fmt: skip
        if (note := rolled_back_note(words, last, info.version)) is not None:
            parts.append(render("<p>$note</p>", note=note))
        lines = gate_lines(words, last)
        parts.append("<ul>" + "".join(render("<li>$line</li>", line=line) for line in lines) + "</ul>")
        if last.folder is not None:  # the operator's own console: where the report and the trainer's log are
            parts.append(render("<p><code>$folder</code></p>", folder=last.folder))
        if last.gate is not None:
            changed = last.gate.changed
            parts.append(render("<p>$text</p>", text=say("images_changed", n=len(changed))))
            parts.append("<ul class=\"changed\">" + "".join(
                render("<li><code>$file</code> $before → $after</li>", file=item.file,
                       before=_number(item.before), after=_number(item.after))
                for item in changed[:CHANGED_SHOWN]
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


def _group_card(runtime: Runtime, group_id: int, words: Lang) -> Html:
    """A group at a glance: on or off, threshold and action, its counts today, over 7 and over 31 days
    (images checked and hits always, the others once there are any), and its hits per day."""
    settings, stats = runtime.store.get(group_id), runtime.stats
    windows = [stats.over_days(group_id, days) for days in (1, 7, KEEP_DAYS)]
    shown = [name for name in COUNT_NAMES if name in ("checked", "hits") or getattr(windows[-1], name)]
    rows = "".join(
        render("<tr><th>$name</th>$cells</tr>", name=words("counts", name), cells=Html("".join(
            render('<td class="number">$n</td>', n=getattr(counts, name)) for counts in windows)))
        for name in shown
    )  # fmt: skip
    return render(
        '<article class="group card" id="group-$group" data-group="$group">'
        '<h3>$heading <span class="$state">$enabled</span></h3>'
        '<p>$summary · <a href="#settings-$group">$edit</a></p>'
        '<table class="counts"><thead><tr><th></th><th>$today</th><th>$week</th><th>$month</th></tr></thead>'
        "<tbody>$rows</tbody></table>$chart</article>",
        group=group_id,
        heading=words("form", "heading", group=group_id),
        state="on" if settings.enabled else "off",
        enabled=words("settings", "on" if settings.enabled else "off"),
        summary=words("console", "group_summary", threshold=format_threshold(settings.threshold),
                      action=words("action", settings.action.value)),
        edit=words("console", "edit_settings"),
        today=words("page", "th_today"), week=words("page", "th_week"), month=words("page", "th_month"),
        rows=Html(rows),
        chart=hits_chart(stats.by_day(group_id), words),
    )  # fmt: skip


def _group_cards(runtime: Runtime, words: Lang) -> Html:
    groups = sorted(runtime.store.groups() | runtime.stats.groups())
    return Html("".join(_group_card(runtime, group, words) for group in groups)) or render(
        '<p class="empty">$text</p>', text=words("console", "no_group")
    )


def image_anchor(entry: RecentImage) -> str:
    """The id of an image's card on the page: a correction made there comes back to it."""
    return f"image-{entry.message_id}-{entry.sha256[:12]}"


def _recent_item(
    entry: RecentImage, correction: Correction | None, makers: dict[str, str], csrf: str, words: Lang
) -> Html:
    """An image's card: the model's call and, once corrected, the correction with its undo; otherwise the
    button that corrects it (a hit can be wrong, an image let through can be a missed nailong)."""
    say = lambda key, **values: words("console", key, **values)  # noqa: E731
    fields = render(
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="message_id" value="$message_id">'
        '<input type="hidden" name="sha256" value="$sha256">',
        csrf=csrf, message_id=entry.message_id, sha256=entry.sha256,
    )  # fmt: skip
    if correction is not None:
        state = render(
            '<div class="state corrected">$label</div><div class="by">$by</div><div class="scope">$scope</div>'
            '<form method="post" action="/nailong/undo">$fields<button type="submit" class="undo quiet">$undo</button>'
            "</form>",
            label=say("corrected_to", label=say(f"label_{correction.label}")),
            by=say("corrected_by", who=operator(_maker(correction, makers), words), when=local_time(correction.time)),
            scope=say("applies_everywhere", by=correction.confirmed_by) if correction.everywhere
            else say("applies_in_group"),
            fields=fields, undo=say("undo"),
        )  # fmt: skip
    else:
        label, button = ("other", "wrong") if entry.hit else ("nailong", "missed")
        state = render(
            '<form method="post" action="/nailong/correct">$fields<input type="hidden" name="label" value="$label">'
            '<button type="submit" class="correct">$button</button></form>',
            fields=fields, label=label, button=say(button),
        )  # fmt: skip
    return render(
        '<li class="$kind$corrected" id="$anchor" data-message="$message_id">'
        '<img src="/nailong/thumb/$sha256" alt="$alt" loading="lazy">'
        '<div><span class="verdict $kind">$verdict</span> $score</div>'
        '<div class="where">$where</div><div class="when">$time</div>$state</li>',
        kind="hit" if entry.hit else "pass",
        corrected=" corrected" if correction is not None else "",
        anchor=image_anchor(entry),
        alt=say("image_in_group", group=entry.group_id),
        verdict=say("hit" if entry.hit else "let_through"),
        score=say("decided_by_correction") if entry.score is None else f"{say('score')} {entry.score:.3f}",
        where=say("group_and_message", group=entry.group_id, message_id=entry.message_id),
        message_id=entry.message_id,
        sha256=entry.sha256,
        time=local_time(entry.stored_at),
        state=state,
    )


def _maker(correction: Correction, makers: dict[str, str]) -> str:
    """Who made a correction as the audit log names them: with their nickname when the entry was read,
    else as the correction keeps them (a QQ number, or the console's operator)."""
    user = correction.user_id
    return makers.get(correction.id) or (f"qq:{user}" if isinstance(user, int) else user)


def _correction_row(correction: Correction, makers: dict[str, str], words: Lang) -> Html:
    say = lambda key: words("page", key)  # noqa: E731
    if correction.everywhere:
        scope = words("console", "applies_everywhere", by=correction.confirmed_by)
    else:
        scope = words("console", "applies_in_group")
    return render(
        '<tr data-correction="$id"><td data-label="$l_time">$time</td><td data-label="$l_label">$label</td>'
        '<td data-label="$l_group">$group</td><td data-label="$l_by">$operator</td>'
        '<td data-label="$l_scope">$scope</td>'
        '<td data-label="$l_score" class="number">$score</td><td data-label="$l_model">$version</td>'
        '<td data-label="$l_id"><code>$id</code></td></tr>',
        l_time=say("th_time"), l_label=say("th_corrected_to"), l_group=say("th_group"), l_by=say("th_by"),
        l_scope=say("th_applies_in"), l_score=say("th_score"), l_model=say("th_model"), l_id=say("th_id"),
        id=correction.id,
        time=local_time(correction.time),
        label=words("console", f"label_{correction.label}"),
        group=correction.group_id,
        operator=operator(_maker(correction, makers), words),
        scope=scope,
        score="—" if correction.score is None else f"{correction.score:.3f}",
        version=correction.model_version,
    )  # fmt: skip


def _pending_row(correction: Correction, makers: dict[str, str], csrf: str, words: Lang) -> Html:
    """A group's correction waiting for a confirmation, with the button that makes it apply everywhere."""
    say = lambda key: words("page", key)  # noqa: E731
    return render(
        '<tr data-pending="$id"><td data-label="$l_time">$time</td><td data-label="$l_label">$label</td>'
        '<td data-label="$l_group">$group</td><td data-label="$l_by">$operator</td>'
        '<td data-label="$l_id"><code>$id</code></td>'
        '<td><form method="post" action="/nailong/confirm"><input type="hidden" name="csrf" value="$csrf">'
        '<input type="hidden" name="group_id" value="$group"><input type="hidden" name="correction_id" value="$id">'
        '<button type="submit">$button</button></form></td></tr>',
        l_time=say("th_time"), l_label=say("th_corrected_to"), l_group=say("th_group"), l_by=say("th_by"),
        l_id=say("th_id"),
        id=correction.id,
        time=local_time(correction.time),
        label=words("console", f"label_{correction.label}"),
        group=correction.group_id,
        operator=operator(_maker(correction, makers), words),
        csrf=csrf,
        button=words("console", "confirm"),
    )  # fmt: skip


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


def _settings_forms(runtime: Runtime, csrf: str, words: Lang, again: SettingsAgain | None = None) -> Html:
    groups = sorted(runtime.store.groups() | runtime.stats.groups() | runtime.strikes.groups())
    if again is not None and again.group_id not in groups:
        groups = sorted([*groups, again.group_id])
    return Html("".join(
        settings_form(runtime, group, csrf, words, **(again.shown() if again and again.group_id == group else {}))
        for group in groups
    )) or render('<p class="empty">$text</p>', text=words("console", "no_group"))  # fmt: skip


@dataclass(frozen=True)
class SettingsAgain:
    """A group's settings form shown again after a refusal: what was entered, and why each field (or the
    whole form, key "") was refused."""

    group_id: int
    entered: Mapping[str, str]
    errors: Mapping[str, str]

    def shown(self) -> dict[str, object]:
        return {"entered": self.entered, "errors": self.errors}


def _notice(notice: str | None, words: Lang) -> Html:
    if notice not in NOTICES:
        return Html("")
    error = " error" if NOTICES[notice] else ""
    return render(
        '<p class="notice$error" role="status">$text <button type="button" class="dismiss" hidden '
        'aria-label="$dismiss"></button></p>',
        error=error, text=words("notice", notice), dismiss=words("page", "dismiss"),
    )  # fmt: skip


def _to_console(notice: str | None = None, anchor: str | None = None) -> RedirectResponse:
    """Back to the console, at the card the form came from (``anchor``), so the page stays in place.
    303: the browser follows a POST's answer with a GET, so reloading does not post again."""
    target = "/nailong/" if notice is None else f"/nailong/?notice={notice}"
    return RedirectResponse(target + (f"#{anchor}" if anchor else ""), status_code=303)


def _login_page(words: Lang, error: str, status_code: int) -> HTMLResponse:
    return _html_response(
        page("login.html", words, error=render('<p class="error">$text</p>', text=error)), status_code
    )


def _throttled_login_page(words: Lang, seconds: int) -> HTMLResponse:
    refused = too_many_attempts(seconds)  # its status and Retry-After; the page says it in one language
    response = _login_page(words, words("console", "too_many_tokens", seconds=seconds), refused.status_code)
    response.headers.update(refused.headers or {})
    return response


def _keep_language(request: Request, response: Response) -> Response:
    """A language chosen with the switch (?lang=) is kept for the next pages."""
    if (chosen := supported(request.query_params.get("lang"))) is not None:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="strict", path="/nailong")
    return response


# --- Routes ---

routes = APIRouter()


async def _console_page(
    session: Session, runtime: Runtime, words: Lang, notice: str | None = None, again: SettingsAgain | None = None
) -> Html:
    recent = await asyncio.to_thread(runtime.recent.newest, RECENT_SHOWN)
    corrections = await asyncio.to_thread(runtime.corrections.newest, len(runtime.corrections))
    audit = await asyncio.to_thread(runtime.audit.latest, AUDIT_READ)
    # Each image's correction where it was posted: its group's own, else the one for every group.
    corrected = {(correction.scope, correction.id): correction for correction in corrections}
    makers = correction_makers(audit)
    pending = [correction for correction in corrections if not correction.everywhere]
    csrf, say = session.csrf, lambda key, **values: words("console", key, **values)  # noqa: E731
    return page(
        "console.html",
        words,
        csrf=csrf,
        operator=session.operator,
        notice=_notice(notice, words),
        overall_chart=hits_chart(runtime.stats.by_day(), words),
        group_cards=_group_cards(runtime, words),
        group_settings=_settings_forms(runtime, csrf, words, again),
        recent_items=Html("".join(
            _recent_item(entry, _correction_of(entry, corrected), makers, csrf, words) for entry in recent
        )) or render('<li class="empty">$text</li>', text=say("no_image")),
        correction_rows=Html("".join(_correction_row(c, makers, words) for c in corrections[:CORRECTIONS_SHOWN]))
        or render('<tr><td colspan="8" class="empty">$text</td></tr>', text=say("no_correction")),
        pending_rows=Html("".join(_pending_row(c, makers, csrf, words) for c in pending[:CORRECTIONS_SHOWN]))
        or render('<tr><td colspan="6" class="empty">$text</td></tr>', text=say("no_pending")),
        audit_lines=Html("".join(audit_line(entry, words) for entry in audit[:AUDIT_SHOWN]))
        or render('<li class="empty">$text</li>', text=say("no_change")),
        refresh_panel=_refresh_panel(runtime, csrf, words),
        model_card=_model_card(runtime, words),
        times_local=say("times_local", zone=time_zone()),
    )  # fmt: skip


def _correction_of(entry: RecentImage, corrected: dict[tuple[int | None, str], Correction]) -> Correction | None:
    """The correction of exactly this image (the id is corrections.image_id of the same bytes) that applies
    in its group: the group's own, else the one for every group."""
    correction_id = entry.sha256[: len(image_id(b""))]
    return corrected.get((entry.group_id, correction_id)) or corrected.get((None, correction_id))


@routes.get("/")
async def console(request: Request, auth: Auth, words: PageLang, notice: str | None = None) -> Response:
    session = auth.session(request)
    if session is None:
        return _keep_language(request, RedirectResponse("/nailong/login", status_code=303))
    content = await _console_page(session, running(), words, notice)
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
    kept = await _kept_image(runtime, message_id, form.get("sha256"))
    if kept is None:
        return _to_console("gone")
    try:
        await admin.correct(runtime, posted.operator, [kept], label)  # type: ignore[arg-type]
    except Refused as refused:
        return _to_console("full" if refused.key == "feedback_full" else "failed", image_anchor(kept[0]))
    return _to_console(f"corrected-{label}", image_anchor(kept[0]))


@routes.post("/confirm")
async def confirm(posted: Form, runtime: RunningRuntime, words: PageLang) -> Response:
    group, correction_id = posted.form.get("group_id", ""), posted.form.get("correction_id", "")
    if not _GROUP_ID.fullmatch(group) or not admin.CORRECTION_ID.fullmatch(correction_id):
        raise HTTPException(400, words("console", "confirm_needs"))
    try:
        await admin.confirm(runtime, posted.operator, [(int(group), correction_id)])
    except Refused as refused:
        notices = {"nothing_to_confirm": "confirm-gone", "feedback_full": "full"}
        return _to_console(notices.get(refused.key, "failed"), "pending")
    return _to_console("confirmed", "pending")


@routes.post("/undo")
async def undo(posted: Form, runtime: RunningRuntime, words: PageLang) -> Response:
    message_id = posted.form.get("message_id", "")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise HTTPException(400, words("console", "correct_needs"))
    kept = await _kept_image(runtime, message_id, posted.form.get("sha256"))
    if kept is None:
        return _to_console("gone")
    try:
        await admin.undo(runtime, posted.operator, [kept])
    except Refused as refused:
        return _to_console("not-corrected" if refused.key == "no_correction" else "failed", image_anchor(kept[0]))
    return _to_console("undone", image_anchor(kept[0]))


async def _kept_image(runtime: Runtime, message_id: str, sha256: str | None) -> tuple[RecentImage, bytes] | None:
    """A recent image of a message, with its bytes; None once it is no longer kept."""
    entries = await asyncio.to_thread(runtime.recent.lookup, int(message_id))
    entry = next((e for e in entries if e.sha256 == sha256), None)
    if entry is None:
        return None
    try:
        return entry, await asyncio.to_thread(runtime.recent.read, entry)
    except FileNotFoundError:
        return None


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
        return await _settings_form_again(posted, runtime, words, group_id, refused, status)
    return _to_console("settings-saved" if change.changed else "settings-unchanged", f"settings-{group_id}")


async def _settings_form_again(
    posted: Posted, runtime: Runtime, words: Lang, group_id: int, refused: Refused, status_code: int
) -> HTMLResponse:
    """The console again, nothing changed: the group's form keeps every value entered, with the reason
    beside each field that was refused (or above the form when no one field was)."""
    errors = field_errors(posted.form, runtime.store.get(group_id), runtime.store.defaults.reply_text, words)
    if not errors:
        errors = {"": words("refused", refused.key, **refused.values)}
    again = SettingsAgain(group_id, posted.form, errors)
    return _html_response(await _console_page(posted.session, runtime, words, again=again), status_code)


@routes.post("/refresh")
async def start_refresh(posted: Form, runtime: RunningRuntime) -> Response:
    try:
        admin.start_refresh(runtime, posted.operator)
    except Refused:
        return _to_console("refresh-unavailable", "refresh")
    return _to_console("refresh-started", "refresh")


@routes.post("/rollback")
async def rollback(posted: Form, runtime: RunningRuntime) -> Response:
    try:
        await admin.rollback(runtime, posted.operator)
    except Refused:
        return _to_console("rollback-failed", "refresh")
    return _to_console("rolled-back", "refresh")



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
