"""What an operator installs: plugin metadata, no torch, settings documented in .env.example."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plugin_metadata() -> None:
    import nonebot

    from nailong_bot.config import Config

    plugin = nonebot.get_plugin("nailong_bot")
    assert plugin is not None and plugin.metadata is not None
    meta = plugin.metadata
    assert meta.name == "奶龙守卫" and meta.config is Config and meta.supported_adapters == {"~onebot.v11"}
    assert "/nailong on" in meta.usage and "/奶龙" in meta.usage
    assert meta.extra["version"] == version("nailong-bot")
    # The NoneBot store asks for the homepage; PyPI shows pyproject's, which must be the same.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert meta.homepage and f'Homepage = "{meta.homepage}"' in pyproject


def test_plugin_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "import nonebot\n"
        "nonebot.init(driver='~fastapi')\n"
        "from nonebot.adapters.onebot.v11 import Adapter\n"
        "nonebot.get_driver().register_adapter(Adapter)\n"
        "assert nonebot.load_plugin('nailong_bot') is not None\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m])\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120, capture_output=True)


def test_shared_modules_import_without_nonebot_or_torch() -> None:
    """The trainer shares nailong_vision; importing the plugin package alone sets nothing up."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import nailong_vision.classifier, nailong_vision.decode\n"
        "import nailong_vision.phash, nailong_vision.preprocess\n"
        "assert 'nonebot' not in sys.modules\n"
        "import nailong_bot\n"
        "assert not hasattr(nailong_bot, '__plugin_meta__')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_every_setting_is_in_env_example() -> None:
    from nailong_bot.config import Config

    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    expected = {name.upper() for name in Config.model_fields} | {
        "SUPERUSERS",
        "HOST",
        "PORT",
        "DRIVER",
        "ONEBOT_ACCESS_TOKEN",
    }
    assert expected <= documented, expected - documented
    for name in expected:
        line = re.search(rf"^(.*)\n#?\s*{name}=", example, flags=re.MULTILINE)
        assert line and line.group(1).startswith("#"), f"{name} needs a one-line comment above it"
