"""Start the bot: NoneBot2 + OneBot v11 + nailong_bot.

OneBot implementations (NapCat, Lagrange.OneBot, LLOneBot) connect by reverse WebSocket to
ws://HOST:PORT/onebot/v11/ws. Settings come from the environment or `.env` (see `.env.example`).
"""

import gc
import sys

import nonebot
from nonebot.adapters.onebot.v11 import Adapter as OneBotV11Adapter
from nonebot.log import default_format, logger
from nonebot.log import logger_id as default_logger_id

# While it starts, NoneBot logs every setting at DEBUG, tokens included: its start is logged from INFO up.
logger.remove(default_logger_id)
starting = logger.add(sys.stdout, level="INFO", diagnose=False, format=default_format)
nonebot.init()
logger.remove(starting)
# NoneBot's console handler takes every record (level 0) and filters by LOG_LEVEL afterwards, so each
# debug line is still formatted; a handler at LOG_LEVEL lets loguru drop them before any work.
logger.add(sys.stdout, level=nonebot.get_driver().config.log_level, diagnose=False, format=default_format)
nonebot.get_driver().register_adapter(OneBotV11Adapter)
if nonebot.load_plugin("nailong_bot") is None:
    # NoneBot only logs a plugin that fails to import (e.g. a bad setting); without it the bot is useless.
    sys.exit("nailong_bot 加载失败，原因见上方日志 / nailong_bot failed to load, see the log above")


@nonebot.get_driver().on_startup
async def _freeze_startup_objects() -> None:
    """Runs after the plugins' start-up. What exists by now lives as long as the bot; frozen, it is left
    out of every later full garbage collection, which otherwise scans ~90k objects and stalls the event
    loop for 40–60 ms each time (bench/bench_plugin.py, max latency)."""
    gc.collect()
    gc.freeze()


if __name__ == "__main__":
    # Trusted proxies (FORWARDED_ALLOW_IPS) and the idle-connection time-out, for uvicorn: see server.py.
    from nailong_bot.server import uvicorn_options

    nonebot.run(**uvicorn_options())
