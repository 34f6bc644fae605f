"""The review page at `/nailong/review`: the images the model was unsure of, newest first, each labelled
with one tap (是奶龙 / 不是, or the keys Y / N), all shown ones at once as not nailong, filterable by group;
`/nailong/review.json` lists what waits. Signed in as for the console (its session and form token, its
language); every label goes through the admin core (admin.label_review): a correction, audited.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .. import admin
from ..admin import Operator, Refused
from ..corrections import LABELS
from ..describe import format_threshold
from ..i18n import Lang
from ..review import Tally, Waiting
from ..runtime import Runtime
from .api import running
from .auth import TokenAuth, client_address, matches
from .console import PageLang, SignedIn, page
from .html import Html, render

HERE = Path(__file__).parent
ASSETS = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}
# Images on one page (the "none of these is nailong" button labels those shown).
SHOWN = 60
USEFUL_SHOWN = 6
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GROUP = re.compile(r"[0-9]{1,12}")
# One label per image on the page, plus the form token.
_FORM_LIMIT = 80 * (SHOWN + 2)
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NOTICES = ("nailong", "other", "gone", "failed")


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def waiting_json(entry: Waiting) -> dict:
    return {
        "sha256": entry.sha256,
        "group": entry.group_id,
        "score": entry.score,
        "time": entry.time,
        "message_id": entry.message_id,
    }


def _tile(entry: Waiting, csrf: str, action: str, words: Lang) -> Html:
    return render(
        '<li class="waiting" id="$sha256" data-sha256="$sha256" tabindex="0">'
        '<img src="/nailong/review-thumb/$sha256" alt="$alt">'
        '<div class="facts"><b>$score</b> · $where<br>$member</div>'
        '<form method="post" action="$action" class="labels">'
        '<input type="hidden" name="csrf" value="$csrf"><input type="hidden" name="sha256" value="$sha256">'
        '<button type="submit" name="label" value="nailong" class="nailong">$nailong <kbd>Y</kbd></button>'
        '<button type="submit" name="label" value="other" class="other">$other <kbd>N</kbd></button></form></li>',
        sha256=entry.sha256,
        alt=words("review", "image_alt", group=entry.group_id),
        score=f"{entry.score:.3f}",
        where=words("review", "tile", threshold=format_threshold(entry.threshold), group=entry.group_id),
        member=words("review", "member", user=entry.user_id, time=_time(entry.time)),
        csrf=csrf,
        action=action,
        nailong=words("review", "nailong"),
        other=words("review", "other"),
    )


def _useful_item(entry: Waiting, words: Lang) -> Html:
    return render(
        '<li><a href="#$sha256"><img src="/nailong/review-thumb/$sha256" alt=""></a> $score · $where</li>',
        sha256=entry.sha256,
        score=f"{entry.score:.3f}",
        where=words("review", "tile", threshold=format_threshold(entry.threshold), group=entry.group_id),
    )


def tally_rows(tally: dict[str, Tally], words: Lang) -> Html:
    """Per model version: reviewed images, how many the model got right, its precision where it called nailong."""
    rows = [
        render(
            '<tr><td>$version</td><td class="number">$reviewed</td><td class="number">$right</td>'
            '<td class="number">$precision</td></tr>',
            version=version,
            reviewed=t.reviewed,
            right=f"{t.right}（{t.right / t.reviewed:.0%}）" if t.reviewed else "—",
            precision=f"{t.called_nailong_right}/{t.called_nailong}" if t.called_nailong else "—",
        )
        for version, t in sorted(tally.items())
    ]
    empty = render('<tr><td colspan="4" class="empty">$text</td></tr>', text=words("review", "nothing_reviewed"))
    return Html("".join(rows)) or empty


def _group_options(runtime: Runtime, chosen: int | None, words: Lang) -> Html:
    groups = sorted({e.group_id for e in runtime.review.waiting()} | ({chosen} if chosen else set()))
    options = [render('<option value="">$all</option>', all=words("review", "all_groups"))]
    options += [
        render('<option value="$g"$selected>$name</option>', g=g, name=words("review", "group_option", group=g,
               n=runtime.review.count(g)), selected=Html(" selected" if g == chosen else ""))
        for g in groups
    ]  # fmt: skip
    return Html("".join(options))


async def _read_form(request: Request) -> dict[str, list[str]]:
    """The labels form: several ``sha256`` fields for "none of these is nailong"."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            raise HTTPException(413, "form too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=SHOWN + 3)
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(400, f"unreadable form: {error}") from error


def _group_filter(group: str | None, words: Lang) -> int | None:
    if not group:
        return None
    if not _GROUP.fullmatch(group):
        raise HTTPException(400, words("review", "bad_group"))
    return int(group)


def make_router(auth: TokenAuth) -> APIRouter:
    """The review routes under /nailong/, with the console's ``auth`` for their dependencies."""

    async def provide_auth(request: Request) -> None:
        request.state.nailong_auth = auth

    router = APIRouter(prefix="/nailong", include_in_schema=False, dependencies=[Depends(provide_auth)])

    @router.get("/review")
    async def review_page(request: Request, words: PageLang, group: str | None = None,
                          notice: str | None = None) -> Response:  # fmt: skip
        session = auth.session(request)
        if session is None:
            return RedirectResponse("/nailong/login", status_code=303)
        runtime, chosen = running(), _group_filter(group, words)
        waiting = runtime.review.waiting(chosen)
        shown = waiting[:SHOWN]
        action = f"/nailong/review?group={chosen}" if chosen else "/nailong/review"
        shown_notice = Html("")
        if notice in NOTICES:
            shown_notice = render('<p class="notice">$text</p>', text=words("review", f"notice_{notice}"))
        empty = render('<li class="empty">$text</li>', text=words("review", "nothing_waits"))
        content = page(
            "review.html",
            words,
            csrf=session.csrf,
            operator=session.operator,
            notice=shown_notice,
            group_options=_group_options(runtime, chosen, words),
            waiting=words("review", "waiting", n=len(waiting)),
            action=action,
            tiles=Html("".join(_tile(e, session.csrf, action, words) for e in shown)) or empty,
            all_sha256=Html("".join(render('<input type="hidden" name="sha256" value="$s">', s=e.sha256) for e in shown)),
            all_disabled=Html("" if shown else " disabled"),
            useful=Html("".join(_useful_item(e, words) for e in runtime.review.most_useful(USEFUL_SHOWN, chosen)))
            or Html('<li class="empty">—</li>'),
            tally_rows=tally_rows(await asyncio.to_thread(runtime.review.tally), words),
        )
        return HTMLResponse(content, headers=_HEADERS)

    @router.get("/review.json")
    async def review_json(session: SignedIn, words: PageLang, group: str | None = None) -> dict:
        return {"waiting": [waiting_json(e) for e in running().review.waiting(_group_filter(group, words))]}

    @router.post("/review")
    async def label(request: Request, session: SignedIn, words: PageLang) -> Response:
        form = await _read_form(request)
        if not matches((form.get("csrf") or [None])[0], session.csrf):
            raise HTTPException(403, words("console", "stale_form"))
        verdict, images = (form.get("label") or [None])[0], form.get("sha256") or []
        if verdict not in LABELS or not images or not all(_SHA256.fullmatch(s) for s in images):
            raise HTTPException(400, words("review", "bad_label"))
        runtime, labelled, gone = running(), [], []
        operator = Operator.console(session.operator, client_address(request))
        for sha256 in dict.fromkeys(images):
            try:
                done = await admin.label_review(runtime, operator, sha256, verdict)
            except Refused:
                return _answer(request, 500, {"labelled": labelled, "gone": gone, "error": "failed"}, "failed")
            (labelled if done is not None else gone).append(sha256)
        notice = verdict if labelled else "gone"
        return _answer(request, 200, {"labelled": labelled, "gone": gone}, notice)

    @router.get("/review-thumb/{sha256}")
    async def thumbnail(sha256: str, session: SignedIn, words: PageLang) -> Response:
        image = await asyncio.to_thread(running().review.read_thumbnail, sha256) if _SHA256.fullmatch(sha256) else None
        if image is None:
            raise HTTPException(404, words("review", "gone"))
        return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @router.get("/review/{name}")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "not found")
        content = (HERE / "static" / name).read_bytes()
        return Response(content, media_type=ASSETS[name], headers={"X-Content-Type-Options": "nosniff"})

    return router


def _answer(request: Request, status: int, result: dict, notice: str) -> Response:
    """JSON for the page's script (it asks for it), else back to the page (303: a reload posts nothing again)."""
    if "application/json" in request.headers.get("Accept", ""):
        return JSONResponse(result, status_code=status)
    referer_group = request.query_params.get("group", "")
    group = f"&group={referer_group}" if _GROUP.fullmatch(referer_group) else ""
    return RedirectResponse(f"/nailong/review?notice={notice}{group}", status_code=303)
