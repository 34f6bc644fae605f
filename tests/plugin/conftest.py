"""nonebug set-up: NoneBot with the OneBot v11 adapter and the plugin, on a tiny test model."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nonebot
import pytest
from nonebug import NONEBOT_INIT_KWARGS

from nailong_testkit import SUPERUSER, ImageServer, build_tiny_model

_workdir = Path(tempfile.mkdtemp(prefix="nailong-plugin-tests-"))
TINY_MODEL = _workdir / "tiny.onnx"


def pytest_configure(config: pytest.Config) -> None:
    build_tiny_model(TINY_MODEL)
    # Every plugin setting is pinned here: init arguments win over the environment and `.env`.
    init_kwargs = {
        "driver": "~fastapi+~httpx",
        "superusers": {str(SUPERUSER)},
        "command_start": {"/"},
        "command_sep": {"."},
        "log_level": "WARNING",
        "localstore_data_dir": str(_workdir / "localstore"),
        "nailong_model_path": str(TINY_MODEL),
        "nailong_threshold": None,
        "nailong_recall": True,
        "nailong_reply": True,
        "nailong_reply_text": "检测到奶龙图片",
        "nailong_mute_seconds": 0,
        "nailong_default_enabled": True,
        "nailong_data_dir": str(_workdir / "data"),
        "nailong_onnx_providers": ["CPUExecutionProvider"],
        "nailong_onnx_threads": 1,
        "nailong_workers": 2,
        "nailong_max_downloads": 4,
        "nailong_max_image_bytes": 10 * 1024 * 1024,
        "nailong_max_frames": 8,
        "nailong_connect_timeout": 1.0,
        "nailong_read_timeout": 0.5,
        "nailong_fetch_retries": 1,
    }
    config.stash[NONEBOT_INIT_KWARGS] = init_kwargs
    # Loaded here, before test modules are imported (they import nailong_bot's modules) and whatever
    # the order of test directories: nonebug's own init then finds NoneBot ready and starts its lifespan.
    nonebot.init(**init_kwargs)
    # Something collected earlier may have imported nailong_bot as a library (no NoneBot then):
    # forget it, so that NoneBot loads it as a plugin.
    for name in [m for m in sys.modules if m == "nailong_bot" or m.startswith("nailong_bot.")]:
        del sys.modules[name]
    from nonebot.adapters.onebot.v11 import Adapter

    nonebot.get_driver().register_adapter(Adapter)
    if nonebot.load_plugin("nailong_bot") is None:
        raise pytest.UsageError("nailong_bot failed to load; see the log above")


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    with ImageServer(slow_seconds=2.0) as server:
        yield server


StartGuard = Callable[..., Awaitable["object"]]


@pytest.fixture
async def start_guard(tmp_path: Path) -> AsyncIterator[StartGuard]:
    """Restart the plugin's runtime with fresh state (settings in tmp_path) and optional overrides."""
    from nailong_bot import plugin_config, runtime

    async def start(data_dir: Path = tmp_path / "data", **overrides: object):
        config = plugin_config.model_copy(update={"nailong_fetch_retries": 0, **overrides})
        return await runtime.start(config, data_dir)

    yield start
    # Leave a runtime with the session's settings for whatever runs next.
    await runtime.start(plugin_config, tmp_path / "after")


@pytest.fixture
async def guard(start_guard: StartGuard):
    return await start_guard()


@pytest.fixture
def caplog_loguru() -> Iterator[list[str]]:
    """Lines NoneBot's (loguru) logger writes during the test."""
    from nonebot.log import logger

    lines: list[str] = []
    handler_id = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(handler_id)
