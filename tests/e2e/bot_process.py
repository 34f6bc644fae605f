"""Run `bot.py` as a real process, configured only through its environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The test kit lives with the plugin tests; the end-to-end test and bench/ reuse it.
sys.path.insert(0, str(ROOT / "tests" / "plugin"))

from nailong_testkit import SUPERUSER, FakeOneBot, build_tiny_model, free_port  # noqa: E402

ACCESS_TOKEN = "e2e-secret"


def bot_environment(workdir: Path, port: int, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("NAILONG_", "ONEBOT_"))}
    env.update(
        {
            "ENVIRONMENT": "prod",
            "DRIVER": "~fastapi+~websockets+~httpx",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "ONEBOT_ACCESS_TOKEN": ACCESS_TOKEN,
            "SUPERUSERS": json.dumps([str(SUPERUSER)]),
            "LOG_LEVEL": "INFO",
            "LOCALSTORE_DATA_DIR": str(workdir / "localstore"),
            "NAILONG_MODEL_PATH": str(workdir / "tiny.onnx"),
            "NAILONG_ONNX_PROVIDERS": "CPUExecutionProvider",
            "NAILONG_READ_TIMEOUT": "1",
            "NAILONG_FETCH_RETRIES": "0",
            "NAILONG_REPLY_TEXT": "检测到奶龙图片",
            **overrides,
        }
    )
    return env


def start_bot(workdir: Path, port: int, **overrides: str) -> subprocess.Popen:
    """`python bot.py`, run from ``workdir`` (so no developer `.env` is read), logging to bot.log.

    Without NAILONG_MODEL_PATH in ``overrides`` the bot runs on a tiny test model.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if "NAILONG_MODEL_PATH" not in overrides and not (workdir / "tiny.onnx").exists():
        build_tiny_model(workdir / "tiny.onnx")
    log = (workdir / "bot.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py")],
        cwd=workdir,
        env=bot_environment(workdir, port, **overrides),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_bot(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_exit(process: subprocess.Popen, timeout: float) -> int | None:
    """The exit code, or None (after killing it) if the process was still running."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if process.poll() is None:
        process.kill()
        process.wait()
        return None
    return process.returncode


@asynccontextmanager
async def running_bot(workdir: Path, **overrides: str) -> AsyncIterator[FakeOneBot]:
    """`bot.py` running (see :func:`start_bot`) with a fake OneBot implementation connected to it;
    ``.process`` is the bot, ``.port`` its port. A failure inside the block prints the bot's log."""
    process = start_bot(workdir, port := free_port(), **overrides)
    onebot = FakeOneBot(port, self_id=42, access_token=ACCESS_TOKEN)
    onebot.process = process  # type: ignore[attr-defined]
    try:
        await onebot.connect(timeout=60)
        yield onebot
    except Exception:
        print((workdir / "bot.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        await onebot.close()
        stop_bot(process)
