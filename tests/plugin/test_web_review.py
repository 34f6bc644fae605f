"""The review page's server side (the e2e tests drive it over the real server and in Chromium): it needs a
console session, lists what waits, and a label is a correction with an audit entry and a tally; bad input
is refused and changes nothing."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from fastapi import FastAPI

from nailong_bot.review import Waiting
from nailong_bot.web import mount

from nailong_testkit import YELLOW, patterned

API_TOKEN = "review-api-token-0123456789"
ADMIN_TOKEN = "review-admin-token-9876543210"


@pytest.fixture
async def browser(guard):
    app = FastAPI()
    mount(app, API_TOKEN, ADMIN_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        yield client


@pytest.fixture
async def csrf(browser) -> str:
    assert (await browser.post("/nailong/login", data={"token": ADMIN_TOKEN, "name": "ops"})).status_code == 303
    page = (await browser.get("/nailong/review")).text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


def queue(guard, seed: int, group_id: int = 9, score: float = 0.5) -> str:
    data = patterned(YELLOW, seed=seed)
    sha256 = hashlib.sha256(data).hexdigest()
    entry = Waiting(
        sha256=sha256, group_id=group_id, message_id=seed, user_id=5, self_id="42", score=score, threshold=0.7,
        model_version="0.0.1", model_threshold=0.7, time=guard.review.clock() - 600, size=len(data),
    )  # fmt: skip
    assert guard.review.add(entry, data, b"thumbnail")
    return sha256


async def test_the_review_page_needs_a_session(browser, guard) -> None:
    sha256 = queue(guard, 1)
    assert (await browser.get("/nailong/review")).headers["Location"] == "/nailong/login"
    assert (await browser.get("/nailong/review.json")).status_code == 401
    assert (await browser.get(f"/nailong/review-thumb/{sha256}")).status_code == 401
    answer = await browser.post("/nailong/review", data={"csrf": "x", "sha256": sha256, "label": "other"})
    assert answer.status_code == 401 and len(guard.review) == 1


async def test_the_page_lists_what_waits_newest_first_by_group(browser, csrf, guard) -> None:
    first, second, elsewhere = queue(guard, 1), queue(guard, 2), queue(guard, 3, group_id=10)
    page = (await browser.get("/nailong/review")).text
    assert re.findall(r'data-sha256="([0-9a-f]{64})"', page) == [elsewhere, second, first]
    assert "3 张等待" in page and "群 9（2）" in page
    assert page.count('name="sha256"') == 6  # one per tile, and each in "none of these"
    english = (await browser.get("/nailong/review?lang=en-US")).text
    assert '<html lang="en-US">' in english and "3 waiting" in english and "Group 9 (2)" in english
    mine = (await browser.get("/nailong/review?group=9")).text
    assert elsewhere not in mine and "2 张等待" in mine
    listed = (await browser.get("/nailong/review.json?group=9")).json()["waiting"]
    assert [(e["sha256"], e["group"], e["message_id"], e["score"]) for e in listed] == [
        (second, 9, 2, 0.5), (first, 9, 1, 0.5)]  # fmt: skip
    assert (await browser.get(f"/nailong/review-thumb/{first}")).content == b"thumbnail"
    assert (await browser.get("/nailong/review?group=abc")).status_code == 400


@pytest.mark.parametrize(
    "form",
    [{"label": "other"}, {"label": "yes", "sha256": "0" * 64}, {"label": "other", "sha256": "../../etc"}],
    ids=["no-image", "bad-label", "bad-sha256"],
)
async def test_bad_labels_are_refused(browser, csrf, guard, form: dict) -> None:
    queue(guard, 1)
    assert (await browser.post("/nailong/review", data={"csrf": csrf, **form})).status_code == 400
    assert len(guard.review) == 1 and len(guard.corrections) == 0


async def test_a_stale_form_token_is_refused(browser, csrf, guard) -> None:
    sha256 = queue(guard, 1)
    assert (await browser.post("/nailong/review", data={"sha256": sha256, "label": "other"})).status_code == 403
    forged = await browser.post("/nailong/review", data={"csrf": csrf[:-1] + "x", "sha256": sha256, "label": "other"})
    assert forged.status_code == 403 and len(guard.review) == 1 and len(guard.corrections) == 0


async def test_a_label_is_a_correction_audited_and_tallied(browser, csrf, guard) -> None:
    nailong, other = queue(guard, 1, score=0.6), queue(guard, 2, score=0.3)
    answer = await browser.post("/nailong/review", data={"csrf": csrf, "sha256": nailong, "label": "nailong"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/nailong/review?notice=nailong"
    # "None of these is nailong": every image on the page at once; one already labelled is said to be gone.
    both = await browser.post(
        "/nailong/review", data={"csrf": csrf, "sha256": [nailong, other], "label": "other"},
        headers={"Accept": "application/json"},
    )  # fmt: skip
    assert both.json() == {"labelled": [other], "gone": [nailong]}
    # Labels are corrections in the image's group (waiting for a confirmation to apply in every group).
    assert len(guard.review) == 0 and sorted(c.label for c in guard.corrections.pending(5)) == ["nailong", "other"]
    entries = [e for e in guard.audit.latest(10) if e["action"] == "review"]
    assert [(e["operator"], e["after"]["label"], e["after"]["recalled"]) for e in entries] == [
        ("web:ops", "other", None), ("web:ops", "nailong", None)]  # fmt: skip  (ten minutes old: not recalled)
    tally = guard.review.tally()["0.0.1"]
    assert (tally.reviewed, tally.right) == (2, 1)  # the model (0.7) let both through: right on the other
    page = (await browser.get("/nailong/review")).text
    assert "没有等待复核的图片" in page and '<td class="number">2</td><td class="number">1（50%）</td>' in page
    card = (await browser.get("/nailong/")).text
    assert "群里复核" in card and "复核 2 张，判断正确 1 张" in card
