"""The NoneBot side of the plugin: metadata, settings, the web routes, start-up and shutdown."""

from importlib.metadata import PackageNotFoundError, version

from nonebot import get_driver, get_plugin_config, require
from nonebot.adapters import Bot
from nonebot.drivers import ASGIMixin
from nonebot.log import logger
from nonebot.plugin import PluginMetadata

require("nonebot_plugin_localstore")

import nonebot_plugin_localstore as localstore  # noqa: E402

from nailong_vision.classifier import ModelError  # noqa: E402

from . import forward, pipeline  # noqa: E402, F401  (pipeline registers the image matcher)
from . import runtime  # noqa: E402
from .commands import help_text  # noqa: E402
from .config import TOKEN_RECIPE, Config  # noqa: E402


# The project's page for the NoneBot store; pyproject.toml's [project.urls] Homepage says the same.
HOMEPAGE = "https://github.com/nailong-bot/nailong_bot"


def _installed_version() -> str:
    """The version pip installed; a bare checkout that was never installed has none."""
    try:
        return version("nailong-bot")
    except PackageNotFoundError:
        return "0+unknown"


__plugin_meta__ = PluginMetadata(
    name="奶龙守卫",
    description="自动识别群里的奶龙图片（含动图、表情），撤回并提醒；群管理用命令开关和调整 / "
    "Recalls nailong images posted in QQ groups",
    usage="在群里发送图片时自动检测，命中后按本群设置撤回和/或回复警告。\n"
    "判断错了：回复图片或警告发送 /奶龙 误判 或 /奶龙 漏判，立即在本群生效，超级用户确认后对所有群生效 / "
    "Wrong call: reply to the image or the warning with /nailong wrong or /nailong miss (this group at once; every "
    "group once a superuser confirms it).\n" + help_text(),
    type="application",
    config=Config,
    homepage=HOMEPAGE,
    supported_adapters={"~onebot.v11"},
    extra={"version": _installed_version()},
)

plugin_config = get_plugin_config(Config)
driver = get_driver()


def _mount_web(config: Config) -> bool:
    """The HTTP API and the web console, on the driver's FastAPI app, each when its token is set;
    False when the driver has no FastAPI app."""
    from fastapi import FastAPI

    from . import web  # only loaded when switched on

    app = driver.server_app if isinstance(driver, ASGIMixin) else None
    if not isinstance(app, FastAPI):
        logger.warning(
            "设置了 NAILONG_API_TOKEN 或 NAILONG_ADMIN_TOKEN，但驱动不是 ~fastapi，HTTP API 和控制台未启用 / a web "
            "token is set but the driver is not ~fastapi: no HTTP API and no console"
        )
        return False
    api_token, admin_token = config.nailong_api_token, config.nailong_admin_token
    web.mount(
        app,
        api_token=None if api_token is None else api_token.get_secret_value(),
        admin_token=None if admin_token is None else admin_token.get_secret_value(),
        session_hours=config.nailong_session_hours,
        secure_cookie=config.nailong_secure_cookie,
        trusts_proxies=bool(config.forwarded_allow_ips),
    )
    if api_token is not None:
        logger.info("HTTP API 已启用 / HTTP API enabled: /nailong/api/ (NAILONG_API_TOKEN)")
    if admin_token is not None:
        logger.info("网页控制台已启用 / web console enabled: /nailong/ (NAILONG_ADMIN_TOKEN)")
    else:
        # Before there were two tokens the API token also opened the console: say where it went.
        logger.warning(
            "网页控制台未启用：控制台现在需要单独的 NAILONG_ADMIN_TOKEN（与 NAILONG_API_TOKEN 不同），"
            "API 令牌只能用于 classify 和 status / the web console is off: it now needs its own "
            "NAILONG_ADMIN_TOKEN (different from NAILONG_API_TOKEN); the API token opens only classify and status. "
            f"{TOKEN_RECIPE}"
        )
    return True


web_mounted = (
    plugin_config.nailong_api_token is not None or plugin_config.nailong_admin_token is not None
) and _mount_web(plugin_config)


def _where_to_connect() -> None:
    """The addresses an operator needs next, and who may use the superusers' commands."""
    if isinstance(driver, ASGIMixin):
        host, port = str(driver.config.host), driver.config.port
        listens_everywhere = host in ("0.0.0.0", "::")
        if listens_everywhere:
            host = "127.0.0.1"
        base = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        elsewhere = (
            "；OneBot 实现在别的机器或容器里时，把 127.0.0.1 换成这台机器的地址 / from another machine or a "
            "container, put this machine's address for 127.0.0.1"
            if listens_everywhere
            else ""
        )
        logger.info(
            f"OneBot 实现请连接反向 WebSocket / OneBot implementations connect to: ws://{base}/onebot/v11/ws{elsewhere}"
        )
        if web_mounted and plugin_config.nailong_admin_token is not None:
            logger.info(f"网页控制台 / web console: http://{base}/nailong/")
    if not driver.config.superusers:
        logger.warning(
            "没有设置超级用户（SUPERUSERS）。超级用户是机器人的主人：在每个群都能用管理命令，模型、更新、回退、"
            '撤销纠错等命令只有他们能用。在 .env 里写 SUPERUSERS=["你的QQ号"]（多个用逗号隔开），然后重启 / no '
            "superusers are set (SUPERUSERS). Superusers own the bot: they may use the admin commands in every "
            "group, and only they may use model, refresh, rollback and undo. Put SUPERUSERS=[\"your QQ number\"] "
            "in .env and restart."
        )


@driver.on_startup
async def _start() -> None:
    data_dir = plugin_config.nailong_data_dir or localstore.get_plugin_data_dir()
    try:
        await runtime.start(plugin_config, data_dir)
    except ModelError as error:
        # Fail fast: a guard that silently checks nothing is worse than a bot that does not start.
        logger.error(f"奶龙守卫无法启动 / nailong_bot cannot start: {error}")
        raise
    _where_to_connect()


@driver.on_shutdown
async def _stop() -> None:
    await runtime.stop()


@driver.on_bot_disconnect
async def _disconnected(bot: Bot) -> None:
    forward.connection_lost(bot.self_id)
