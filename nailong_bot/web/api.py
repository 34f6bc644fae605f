"""`POST /nailong/api/classify` and `GET /nailong/api/status`, for other bots and scripts.

An image sent here takes the group images' path (fetch → cache → corrections → model) with the same
limits: the byte cap while the body or the URL is read, the pixel and frame caps while decoding, the
download time-outs. It runs on the API's own share (:class:`~nailong_bot.runtime.ApiShare`): a few
requests at once (one more gets 429), its own downloads, refusing private addresses, and one decision
at a time, so callers of the API cannot delay a group's image. Bad input gets a 4xx with the reason;
a failed download gets one reason whatever the cause, so the API cannot be used to map a network.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import APIRouter, Depends, HTTPException, Request
from nonebot.log import logger
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from nailong_vision.decode import ImageDecodeError

from ..corrections import SOURCE_PREFIX
from ..decision import Decision
from ..fetch import FetchError
from ..models import lineage, validated_metrics
from ..pipeline import decide_bytes
from ..runtime import Runtime, get_runtime
from ..stats import Counts
from .auth import TokenAuth

# Room for a form's boundaries and part headers around the image.
_FORM_OVERHEAD = 64 * 1024
_JSON_LIMIT = 64 * 1024
# Seconds a caller is asked to wait when the API is busy: most requests take milliseconds, a URL
# download at most NAILONG_DOWNLOAD_DEADLINE.
_RETRY_AFTER = "5"
_DOWNLOAD_FAILED = (
    "图片下载失败：地址无法访问、不是公网 http(s) 地址或文件过大 / image download failed: unreachable, "
    "not a public http(s) address, or too large"
)


def running() -> Runtime:
    runtime = get_runtime()
    if runtime is None:
        raise HTTPException(503, "奶龙守卫未在运行，请查看日志 / the plugin is not running; see the log")
    return runtime


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"图片过大 / image too large: > {limit} bytes (NAILONG_MAX_IMAGE_BYTES)")


@asynccontextmanager
async def api_slot(runtime: Runtime) -> AsyncIterator[None]:
    """One of the API's request slots, held for the whole request, its body included; 429 with
    Retry-After when none is free. No queue: a waiting request would hold its connection and body."""
    if runtime.api.requests.locked():
        raise HTTPException(
            429, "接口繁忙，请稍后再试 / the API is busy, retry later", headers={"Retry-After": _RETRY_AFTER}
        )
    async with runtime.api.requests:
        yield


async def _capped(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        yield chunk


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in _capped(request, limit):
        body += chunk
    return bytes(body)


async def _form_file(request: Request, max_bytes: int) -> bytes:
    """The form's file, parsed as the body arrives (the parser spools a large file to disk)."""
    parser = MultiPartParser(
        request.headers, _capped(request, max_bytes + _FORM_OVERHEAD), max_files=1, max_fields=8
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise HTTPException(400, f"表单无法解析 / unreadable form: {error.message}") from error
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise HTTPException(400, "表单里没有图片文件 / the form holds no file")
        return await files[0].read()
    finally:
        await form.close()


async def read_image_input(request: Request, max_bytes: int) -> bytes | str:
    """The image's bytes from a raw body or a multipart form, or its URL from `{"url": ...}`."""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            payload = json.loads(await _read_body(request, _JSON_LIMIT))
        except (ValueError, RecursionError) as error:  # RecursionError: arrays nested thousands deep
            raise HTTPException(400, f"JSON 无法解析 / invalid JSON: {error}") from error
        url = payload.get("url") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not url:
            raise HTTPException(400, 'JSON 需要 {"url": "..."} / JSON must be {"url": "..."}')
        return url
    if content_type == "multipart/form-data":
        data = await _form_file(request, max_bytes)
        if len(data) > max_bytes:
            raise _too_large(max_bytes)
    else:
        data = await _read_body(request, max_bytes)
    if not data:
        raise HTTPException(
            400, "没有图片：请发送图片字节、multipart 表单或 {\"url\": ...} / no image: send its bytes, "
            "a multipart form or {\"url\": ...}"
        )
    return data


async def classify(runtime: Runtime, image: bytes | str) -> Decision:
    """Decide an image given as bytes or a URL, as a group image would be, on the API's share; 422
    when it cannot be fetched (one reason for every failure; the log has the cause) or decoded."""
    generation = runtime.cache.generation
    api = runtime.api
    try:
        # As for a group image: a URL under the fetch's limits, the deciding slot taken once the bytes are in.
        if isinstance(image, str):
            data = await api.fetcher.fetch(image, hold=api.deciding)
        else:
            data = image
            await api.deciding.acquire()
        try:
            # No group: only the corrections that apply everywhere.
            return runtime.corrections.apply(await decide_bytes(data, runtime, generation), None)
        finally:
            api.deciding.release()
    except FetchError as error:
        logger.info(f"API 图片下载失败 / API image download failed: {image[:200]!r}: {error.reason}")
        raise HTTPException(422, _DOWNLOAD_FAILED) from error
    except ImageDecodeError as error:
        raise HTTPException(422, f"图片无法解码 / image not decodable: {error}") from error


async def classify_request(request: Request) -> dict:
    """`classify` and the console's "try an image": the image in the request, decided, as JSON."""
    runtime = running()
    async with api_slot(runtime):
        image = await read_image_input(request, runtime.config.nailong_max_image_bytes)
        return decision_json(await classify(runtime, image), runtime)


def decision_json(decision: Decision, runtime: Runtime) -> dict:
    info, threshold = runtime.classifier.info, runtime.store.defaults.threshold
    correction = decision.source.removeprefix(SOURCE_PREFIX)
    from_correction = decision.source.startswith(SOURCE_PREFIX)
    return {
        "score": round(decision.score, 6),
        "nailong": decision.score >= threshold,
        "threshold": threshold,
        # model | cache | correction
        "source": "correction" if from_correction else decision.source,
        "correction_id": correction if from_correction else None,
        "model_score": None if decision.model_score is None else round(decision.model_score, 6),
        "frames": decision.frames,
        "model": {"name": info.name, "version": info.version},
    }


def model_card(runtime: Runtime) -> dict:
    """The model's name, version, threshold and the validation numbers its export wrote."""
    info = runtime.classifier.info
    return {
        "name": info.name,
        "version": info.version,
        "created_at": info.metadata.get("created_at"),
        "recommended_threshold": info.threshold,
        "threshold": runtime.store.defaults.threshold,
        "providers": list(info.providers),
        # None where nobody validated the model (a refresh without training folders).
        "metrics": validated_metrics(info),
        # None for the base model; a refreshed one names its base, corrections and gate.
        "lineage": lineage(info),
    }


def refresh_json(runtime: Runtime) -> dict:
    """Whether a refresh is running, and how the last one ended. Who started it (a QQ number), its
    folder and its gate report are the console's."""
    refresher, last = runtime.refresher, runtime.refresher.last
    return {
        "running": refresher.running_trigger is not None,
        "last": None
        if last is None
        else {
            "outcome": last.outcome,
            "finished_at": last.finished_at,
            "base_version": last.base_version,
            "version": last.version,
        },
        "auto": runtime.config.nailong_auto_refresh,
    }


def status_json(runtime: Runtime) -> dict:
    """What the API token may read: the model and totals over all groups. Each group's settings,
    allow-list and offenders, and every group and QQ number, stay in the console."""
    store, stats = runtime.store, runtime.stats
    group_ids = store.groups() | stats.groups() | runtime.strikes.groups()
    today, last_7_days = Counts(), Counts()
    for group_id in group_ids:
        today += stats.over_days(group_id, 1)
        last_7_days += stats.over_days(group_id, 7)
    defaults = store.defaults
    return {
        "model": model_card(runtime),
        "defaults": {"enabled": defaults.enabled, "threshold": defaults.threshold, "action": defaults.action.value},
        "groups": {"known": len(group_ids), "enabled": sum(store.get(group).enabled for group in group_ids)},
        "today": asdict(today),
        "last_7_days": asdict(last_7_days),
        "corrections": runtime.corrections.counts(),
        "recent_images": len(runtime.recent),
        "refresh": refresh_json(runtime),
    }


def make_router(auth: TokenAuth) -> APIRouter:
    router = APIRouter(prefix="/nailong/api", dependencies=[Depends(auth.require_bearer)])

    @router.post("/classify")
    async def classify_image(request: Request) -> dict:
        return await classify_request(request)

    @router.get("/status")
    async def status() -> dict:
        return status_json(running())

    return router
